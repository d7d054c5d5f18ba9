//! Phase "decide": one policy decision per classified request, combined into the
//! verdict for the whole unit of work (a SQL string may hold several statements).
//!
//! Any deny denies; any review holds (approver groups add up, the most approvals and
//! the shortest timeout win); masks add up. Pure code over a [`PolicySet`].

use std::time::Duration;

use crate::mask::MaskPlan;
use crate::policy::{ApprovalCovers, PolicySet, Request, Verdict, Who};

/// What policy said about one unit of work.
#[derive(Debug, Clone)]
pub struct Judgement {
    /// Kind of each request judged, in order (`select`, `exec`, `post`, ...).
    pub kinds: Vec<String>,
    /// The rules that decided, in order (`doc/rule`), for the audit.
    pub rules: Vec<String>,
    /// Masks every result of the work gets.
    pub masks: MaskPlan,
    pub verdict: Combined,
}

/// The combined verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Combined {
    Allow,
    /// `reason` is the client-facing message, naming the rule.
    Deny {
        reason: String,
    },
    Review(Review),
}

/// A hold for human review, as the matching review rules combine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub groups: Vec<String>,
    pub needed: u32,
    pub timeout: Duration,
    pub reason: String,
    /// What one approval releases (the narrowest of the matching rules).
    pub covers: ApprovalCovers,
}

// === impl Judgement ===

impl Judgement {
    /// Decide every request with `policies` and combine the decisions. Stops at the
    /// first deny (nothing after it matters).
    pub fn of(policies: &PolicySet, who: &Who, requests: &[Request]) -> Judgement {
        let mut j =
            Judgement { kinds: Vec::new(), rules: Vec::new(), masks: MaskPlan::default(), verdict: Combined::Allow };
        for request in requests {
            let d = policies.decide(who, request);
            j.kinds.push(request.kind.clone());
            if let Some(r) = &d.rule {
                j.rules.push(r.clone());
            }
            match d.verdict {
                Verdict::Deny { reason } => {
                    let rule = d.rule.map(|r| format!(" (rule {r})")).unwrap_or_default();
                    j.verdict = Combined::Deny { reason: format!("denied by policy{rule}: {reason}") };
                    return j;
                }
                Verdict::Review { approver_groups, approvals_needed, timeout, reason, covers } => {
                    if !matches!(j.verdict, Combined::Review(_)) {
                        j.verdict = Combined::Review(Review { groups: Vec::new(), needed: 1, timeout, reason, covers });
                    }
                    if let Combined::Review(r) = &mut j.verdict {
                        for g in approver_groups {
                            if !r.groups.contains(&g) {
                                r.groups.push(g);
                            }
                        }
                        r.needed = r.needed.max(approvals_needed);
                        r.timeout = r.timeout.min(timeout);
                        if covers == ApprovalCovers::Execution {
                            r.covers = ApprovalCovers::Execution;
                        }
                    }
                }
                Verdict::Allow => {}
            }
            j.masks.merge(&d.masks);
        }
        j
    }

    /// Overrule the decision with a deny the door found (e.g. output it cannot mask).
    pub fn deny(&mut self, reason: String) {
        self.verdict = Combined::Deny { reason };
    }

    /// The action label for metrics: allow, deny or review.
    pub fn action(&self) -> &'static str {
        match self.verdict {
            Combined::Allow => "allow",
            Combined::Deny { .. } => "deny",
            Combined::Review(_) => "review",
        }
    }
}
