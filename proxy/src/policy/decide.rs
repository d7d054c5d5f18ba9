//! [`PolicySet::decide`]: every matching rule counts; deny > review > allow > default deny.

use std::time::Duration;

use super::{Action, ApprovalCovers, Decision, MaskPlan, PolicyDoc, Request, Verdict, Who};

/// Every loaded policy document, evaluated together.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    docs: Vec<PolicyDoc>,
}

/// The combined review of every matching `review` rule.
struct PendingReview {
    rule: String,
    groups: Vec<String>,
    count: u32,
    timeout: Duration,
    reason: Option<String>,
    covers: ApprovalCovers,
}

// === impl PolicySet ===

impl PolicySet {
    pub fn new(docs: Vec<PolicyDoc>) -> Self {
        PolicySet { docs }
    }

    pub fn docs(&self) -> &[PolicyDoc] {
        &self.docs
    }

    /// Whether any rule has `match.json`: only then does the HTTP door read request
    /// bodies as JSON (a body it did not read is [`JsonBody::Unreadable`](super::JsonBody)).
    pub fn reads_json(&self) -> bool {
        self.docs.iter().flat_map(|doc| &doc.rules).any(|rule| rule.matcher.json.is_some())
    }

    /// Decides one request. See the module docs for the semantics.
    pub fn decide(&self, who: &Who, req: &Request) -> Decision {
        let mut deny: Option<(&str, &str)> = None;
        let mut review: Option<PendingReview> = None;
        let mut allow: Option<&str> = None;
        let mut masks = MaskPlan::default();

        let matching = self.docs.iter().flat_map(|doc| &doc.rules).filter(|rule| rule.matcher.matches(who, req));
        for rule in matching {
            match &rule.action {
                Action::Deny { reason } => {
                    deny.get_or_insert((&rule.label, reason));
                }
                Action::Review { approvers, timeout, reason, covers } => match &mut review {
                    None => {
                        review = Some(PendingReview {
                            rule: rule.label.clone(),
                            groups: approvers.groups.clone(),
                            count: approvers.count,
                            timeout: *timeout,
                            reason: reason.clone(),
                            covers: *covers,
                        });
                    }
                    Some(pending) => {
                        for group in &approvers.groups {
                            if !pending.groups.contains(group) {
                                pending.groups.push(group.clone());
                            }
                        }
                        pending.count = pending.count.max(approvers.count);
                        pending.timeout = pending.timeout.min(*timeout);
                        // The narrower approval wins: one execution unless every rule says statement.
                        if *covers == ApprovalCovers::Execution {
                            pending.covers = ApprovalCovers::Execution;
                        }
                        if pending.reason.is_none() {
                            pending.reason.clone_from(reason);
                        }
                    }
                },
                Action::Allow => {
                    allow.get_or_insert(&rule.label);
                }
                Action::Mask(plan) => masks.merge(plan),
            }
        }

        if let Some((rule, reason)) = deny {
            let verdict = Verdict::Deny { reason: reason.to_owned() };
            return Decision { verdict, rule: Some(rule.to_owned()), masks: MaskPlan::default() };
        }
        if let Some(pending) = review {
            let reason = pending
                .reason
                .unwrap_or_else(|| format!("{} on {} requires approval ({})", req.kind, req.resource, pending.rule));
            let verdict = Verdict::Review {
                approver_groups: pending.groups,
                approvals_needed: pending.count,
                timeout: pending.timeout,
                reason,
                covers: pending.covers,
            };
            return Decision { verdict, rule: Some(pending.rule), masks };
        }
        if let Some(rule) = allow {
            return Decision { verdict: Verdict::Allow, rule: Some(rule.to_owned()), masks };
        }
        let reason = format!("no policy rule allows {} on {} for {}", req.kind, req.resource, who.subject);
        Decision { verdict: Verdict::Deny { reason }, rule: None, masks: MaskPlan::default() }
    }
}
