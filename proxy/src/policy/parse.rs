//! [`parse`]: YAML text → validated [`PolicyDoc`]. Two passes: serde (shape, unknown
//! fields; its errors carry a position) then validation of names, regexes, durations and
//! action-specific fields, located with a [`SourceMap`] scan.

use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use super::json::{JsonCondition, JsonMatch};
use super::locate::{Position, SourceMap};
use super::{
    Action, ApprovalCovers, Approvers, DEFAULT_REVIEW_TIMEOUT, Glob, KNOWN_KINDS, Match, PolicyDoc, Protocol, Rule,
};
use crate::error::Error;
use crate::mask::{Detector, MaskPlan};

// === the file's shape ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDoc {
    name: String,
    rules: Vec<RawRule>,
}

/// The fields only a review rule has.
struct ReviewFields {
    approvers: Option<RawApprovers>,
    timeout: Option<String>,
    covers: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    #[serde(rename = "match", default)]
    matcher: RawMatch,
    action: String,
    reason: Option<String>,
    approvers: Option<RawApprovers>,
    timeout: Option<String>,
    approval_covers: Option<String>,
    mask: Option<RawMask>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    groups: Option<Vec<String>>,
    resources: Option<Vec<String>>,
    protocols: Option<Vec<String>>,
    kinds: Option<Vec<String>>,
    tables: Option<Vec<String>>,
    functions: Option<Vec<String>>,
    commands: Option<Vec<String>>,
    only_commands: Option<Vec<String>>,
    paths: Option<Vec<String>>,
    text: Option<String>,
    json: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    missing_where: Option<bool>,
    dynamic_sql: Option<bool>,
    writes: Option<bool>,
    locks_rows: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovers {
    groups: Vec<String>,
    #[serde(default = "one")]
    count: u32,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMask {
    #[serde(default)]
    columns: Vec<String>,
    #[serde(default)]
    detectors: Vec<String>,
}

// === parse ===

/// Parses and validates one policy document. Errors are [`Error::PolicyInvalid`] with the
/// line and column of the offending field (for semantic errors: best effort within the rule).
pub fn parse(source: &str) -> Result<PolicyDoc, Error> {
    let raw: RawDoc = serde_yaml_ng::from_str(source).map_err(yaml_error)?;
    let map = SourceMap::new(source);
    if raw.name.trim().is_empty() {
        return Err(invalid(map.doc_key("name"), "name must not be empty"));
    }
    let rules = raw
        .rules
        .into_iter()
        .enumerate()
        .map(|(index, rule)| RuleCheck { map: &map, index }.rule(&raw.name, rule))
        .collect::<Result<_, _>>()?;
    Ok(PolicyDoc { name: raw.name, rules })
}

fn invalid((line, column): Position, reason: impl Into<String>) -> Error {
    Error::PolicyInvalid { line, column, reason: reason.into() }
}

/// serde_yaml_ng's message ends with its own " at line L column C"; we print those apart.
fn yaml_error(e: serde_yaml_ng::Error) -> Error {
    let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
    let message = e.to_string().replacen(&format!(" at line {line} column {column}"), "", 1);
    invalid((line, column), message)
}

/// Validates rule `index` of a document, locating errors through `map`.
struct RuleCheck<'a> {
    map: &'a SourceMap<'a>,
    index: usize,
}

// === impl RuleCheck ===

impl RuleCheck<'_> {
    fn err(&self, path: &[&str], needle: Option<&str>, reason: impl Into<String>) -> Error {
        invalid(self.map.rule(self.index, path, needle), reason)
    }

    fn rule(&self, doc: &str, raw: RawRule) -> Result<Rule, Error> {
        let label = match &raw.name {
            Some(name) => format!("{doc}/{name}"),
            None => format!("{doc}/#{}", self.index + 1),
        };
        let mut matcher = self.matcher(&label, raw.matcher)?;
        let review = ReviewFields { approvers: raw.approvers, timeout: raw.timeout, covers: raw.approval_covers };
        let action = self.action(&label, &raw.action, raw.reason, review, raw.mask)?;
        if let Some(json) = matcher.json.as_mut() {
            // In doubt (a body policy cannot read), only the rules that restrict match.
            json.doubt_matches = !matches!(action, Action::Allow);
        }
        Ok(Rule { label, matcher, action })
    }

    fn matcher(&self, label: &str, raw: RawMatch) -> Result<Match, Error> {
        let groups = self.list("groups", raw.groups)?;
        let resources = self.globs("resources", raw.resources)?;
        let tables = self.globs("tables", raw.tables)?;
        let functions = self.globs("functions", raw.functions)?;
        let commands = self.globs("commands", raw.commands)?;
        let only_commands = self.globs("only_commands", raw.only_commands)?;
        let paths = self.globs("paths", raw.paths)?;
        let protocols = match self.list("protocols", raw.protocols)? {
            None => None,
            Some(names) => Some(
                names
                    .iter()
                    .map(|name| {
                        Protocol::from_name(name).ok_or_else(|| {
                            self.err(
                                &["match"],
                                Some(name),
                                format!("unknown protocol \"{name}\" (expected postgres, ssh or http)"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let kinds = match self.list("kinds", raw.kinds)? {
            None => None,
            Some(names) => Some(
                names
                    .into_iter()
                    .map(|name| {
                        let lower = name.to_ascii_lowercase();
                        if KNOWN_KINDS.contains(&lower.as_str()) {
                            Ok(lower)
                        } else {
                            let known = KNOWN_KINDS.join(", ");
                            Err(self.err(
                                &["match"],
                                Some(&name),
                                format!("unknown kind \"{name}\" (expected one of {known})"),
                            ))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let text = match raw.text {
            None => None,
            Some(pattern) => Some(Regex::new(&pattern).map_err(|e| {
                self.err(&["match", "text"], None, format!("invalid regex \"{pattern}\": {}", regex_reason(&e)))
            })?),
        };
        let json = match raw.json {
            None => None,
            Some(map) if map.is_empty() => {
                return Err(self.err(
                    &["match"],
                    Some("json"),
                    format!("rule {label}: match.json is empty and would match anything; omit it"),
                ));
            }
            Some(map) => Some(JsonMatch {
                conditions: map
                    .iter()
                    .map(|(pointer, value)| {
                        JsonCondition::parse(pointer, value).map_err(|reason| {
                            let needle = (!pointer.is_empty()).then_some(pointer.as_str());
                            self.err(&["match", "json"], needle, format!("rule {label}: match.json: {reason}"))
                        })
                    })
                    .collect::<Result<_, _>>()?,
                doubt_matches: true,
            }),
        };
        Ok(Match {
            groups,
            resources,
            protocols,
            kinds,
            tables,
            functions,
            commands,
            only_commands,
            paths,
            text,
            json,
            missing_where: raw.missing_where,
            dynamic_sql: raw.dynamic_sql,
            writes: raw.writes,
            locks_rows: raw.locks_rows,
        })
    }

    /// An omitted list matches anything; an empty one would match nothing, so it is refused.
    fn list(&self, field: &str, list: Option<Vec<String>>) -> Result<Option<Vec<String>>, Error> {
        match list {
            Some(items) if items.is_empty() => Err(self.err(
                &["match"],
                Some(field),
                format!("match.{field} is empty and would match nothing; omit it to match anything"),
            )),
            Some(items) if items.iter().any(|i| i.is_empty()) => {
                Err(self.err(&["match"], Some(field), format!("match.{field} has an empty entry")))
            }
            other => Ok(other),
        }
    }

    fn globs(&self, field: &str, list: Option<Vec<String>>) -> Result<Option<Vec<Glob>>, Error> {
        Ok(self.list(field, list)?.map(|patterns| patterns.into_iter().map(Glob::new).collect()))
    }

    fn action(
        &self,
        label: &str,
        action: &str,
        reason: Option<String>,
        review: ReviewFields,
        mask: Option<RawMask>,
    ) -> Result<Action, Error> {
        let ReviewFields { approvers, timeout, covers } = review;
        let only = |field: &str, present: bool, owner: &str| {
            if present {
                Err(self.err(&[field], None, format!("{field} applies only to {owner} rules, not {action}")))
            } else {
                Ok(())
            }
        };
        match action {
            "allow" | "deny" | "review" | "mask" => {}
            other => {
                return Err(self.err(
                    &["action"],
                    Some(other),
                    format!("unknown action \"{other}\" (expected allow, deny, review or mask)"),
                ));
            }
        }
        if action != "review" {
            only("approvers", approvers.is_some(), "review")?;
            only("timeout", timeout.is_some(), "review")?;
            only("approval_covers", covers.is_some(), "review")?;
        }
        if action != "mask" {
            only("mask", mask.is_some(), "mask")?;
        }
        if action == "allow" || action == "mask" {
            only("reason", reason.is_some(), "deny and review")?;
        }
        match action {
            "allow" => Ok(Action::Allow),
            "deny" => Ok(Action::Deny { reason: reason.unwrap_or_else(|| format!("denied by policy rule {label}")) }),
            "review" => {
                let Some(approvers) = approvers else {
                    return Err(self.err(
                        &["action"],
                        Some("review"),
                        "review rule needs approvers, e.g. approvers: { groups: [dba], count: 1 }",
                    ));
                };
                if approvers.groups.is_empty() || approvers.groups.iter().any(String::is_empty) {
                    return Err(self.err(
                        &["approvers"],
                        Some("groups"),
                        "approvers.groups must name at least one group",
                    ));
                }
                if approvers.count == 0 {
                    return Err(self.err(&["approvers"], Some("count"), "approvers.count must be at least 1"));
                }
                let timeout = match timeout {
                    None => DEFAULT_REVIEW_TIMEOUT,
                    Some(text) => self.timeout(&text)?,
                };
                let covers = match covers.as_deref() {
                    None | Some("execution") => ApprovalCovers::Execution,
                    Some("statement") => ApprovalCovers::Statement,
                    Some(other) => {
                        return Err(self.err(
                            &["approval_covers"],
                            Some(other),
                            format!("unknown approval_covers \"{other}\" (expected execution or statement)"),
                        ));
                    }
                };
                Ok(Action::Review {
                    approvers: Approvers { groups: approvers.groups, count: approvers.count },
                    timeout,
                    reason,
                    covers,
                })
            }
            _ => {
                let Some(mask) = mask else {
                    return Err(self.err(
                        &["action"],
                        Some("mask"),
                        "mask rule needs a mask block with columns or detectors",
                    ));
                };
                self.mask(mask).map(Action::Mask)
            }
        }
    }

    fn timeout(&self, text: &str) -> Result<Duration, Error> {
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => Err(self.err(&["timeout"], None, "timeout must be longer than zero")),
            Ok(d) => Ok(d),
            Err(e) => Err(self.err(&["timeout"], None, format!("invalid timeout \"{text}\": {e} (e.g. 30s, 5m, 1h)"))),
        }
    }

    fn mask(&self, raw: RawMask) -> Result<MaskPlan, Error> {
        if raw.columns.is_empty() && raw.detectors.is_empty() {
            return Err(self.err(&["mask"], None, "mask needs at least one of columns or detectors"));
        }
        if raw.columns.iter().any(String::is_empty) {
            return Err(self.err(&["mask"], Some("columns"), "mask.columns has an empty entry"));
        }
        let detectors = raw
            .detectors
            .iter()
            .map(|name| {
                Detector::from_name(name).ok_or_else(|| {
                    let known: Vec<&str> = Detector::ALL.iter().map(|d| d.as_str()).collect();
                    self.err(
                        &["mask"],
                        Some(name),
                        format!("unknown detector \"{name}\" (expected one of {})", known.join(", ")),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MaskPlan::new(raw.columns.into_iter().map(Glob::new).collect(), detectors))
    }
}

/// The one-line cause of a regex error (syntax errors span several lines).
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: ").map(str::to_owned))
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}
