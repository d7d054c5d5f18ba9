//! Masking: the `mask` phase (DESIGN §3). After `relay`, each result value (a Postgres
//! `DataRow` column, an SSH output chunk, an HTTP body) passes through the request's
//! [`MaskPlan`], built by [`crate::policy`] from every matching `mask` rule.
//!
//! Two kinds of masking, both pure functions of `(column, value)`:
//! - **columns**: a glob on the result column name (ASCII case ignored); a match replaces
//!   the whole value with `***`.
//! - **detectors**: patterns found *inside* any text value, each match replaced in place
//!   ([`Detector`] lists them and their replacements).
//!
//! Detectors run in a fixed order whatever order the policy lists them in: `api_key`,
//! `jwt`, `email`, `credit_card`, `ssn`, so `token=eyJ…` becomes `token=***` rather than a
//! half-masked mix. Each has a cheap pre-check so ordinary values cost no regex at all.

mod detect;

use std::fmt;

use crate::policy::Glob;

/// What the column mask writes instead of the value.
pub const COLUMN_MASK: &str = "***";

/// A pattern detector applied to every text value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    /// `alice@example.com` → `a***@example.com` (first character and domain kept).
    Email,
    /// 13–19 digits, optionally grouped by spaces or dashes, with a valid Luhn checksum
    /// → `****-****-****-1234` (last four kept).
    CreditCard,
    /// US SSN `123-45-6789` (not area 000, 666 or 9xx, group 00, serial 0000)
    /// → `***-**-6789`.
    Ssn,
    /// Stripe `sk_live_…`, AWS `AKIA…`, GitHub `ghp_…`, Slack `xoxb-…` keep their prefix
    /// (`sk_live_***`); `api_key=…`, `secret: …`, `token=…`, `password=…` keep the name
    /// (`api_key=***`).
    ApiKey,
    /// `eyJ….eyJ….sig` → `[jwt masked]`.
    Jwt,
}

// === impl Detector ===

impl Detector {
    /// Every detector, in the order they are applied.
    pub const ALL: [Detector; 5] =
        [Detector::ApiKey, Detector::Jwt, Detector::Email, Detector::CreditCard, Detector::Ssn];

    /// The name used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::CreditCard => "credit_card",
            Detector::Ssn => "ssn",
            Detector::ApiKey => "api_key",
            Detector::Jwt => "jwt",
        }
    }

    /// Parses a policy-file name; `None` for anything unknown.
    pub fn from_name(name: &str) -> Option<Self> {
        Detector::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// Position in [`Detector::ALL`], the application order.
    fn rank(self) -> usize {
        Detector::ALL.iter().position(|d| *d == self).unwrap_or(usize::MAX)
    }

    /// Masks every match of this detector in `value`; `None` when nothing matched.
    pub fn apply(self, value: &str) -> Option<String> {
        detect::apply(self, value)
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to mask in the results of one request: the union of every matching `mask` rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaskPlan {
    /// Result columns whose whole value becomes `***`.
    pub columns: Vec<Glob>,
    /// Detectors run over every text value, kept sorted in application order.
    pub detectors: Vec<Detector>,
}

// === impl MaskPlan ===

impl MaskPlan {
    pub fn new(columns: Vec<Glob>, detectors: Vec<Detector>) -> Self {
        let mut plan = MaskPlan::default();
        plan.merge(&MaskPlan { columns, detectors });
        plan
    }

    /// Nothing to mask: relays can skip the per-value work entirely.
    pub fn has_detectors(&self) -> bool {
        !self.detectors.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty() && self.detectors.is_empty()
    }

    /// Adds `other`'s columns and detectors (no duplicates, detectors in application order).
    pub fn merge(&mut self, other: &MaskPlan) {
        for column in &other.columns {
            if !self.columns.contains(column) {
                self.columns.push(column.clone());
            }
        }
        for detector in &other.detectors {
            if !self.detectors.contains(detector) {
                self.detectors.push(*detector);
            }
        }
        self.detectors.sort_by_key(|d| d.rank());
    }

    /// Whether the whole of `column` is masked.
    pub fn masks_column(&self, column: &str) -> bool {
        self.columns.iter().any(|glob| glob.matches_ignore_ascii_case(column))
    }

    /// The masked form of `value` in result column `column`, or `None` if it is unchanged.
    pub fn mask_value(&self, column: &str, value: &str) -> Option<String> {
        if self.masks_column(column) {
            return Some(COLUMN_MASK.to_owned());
        }
        self.detect(value)
    }

    /// `value` with every detector's matches masked, or `None` if none matched.
    pub fn detect(&self, value: &str) -> Option<String> {
        let mut current: Option<String> = None;
        for detector in &self.detectors {
            let input = current.as_deref().unwrap_or(value);
            if let Some(masked) = detector.apply(input) {
                current = Some(masked);
            }
        }
        current
    }
}

#[cfg(test)]
mod tests;
