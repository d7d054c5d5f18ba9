//! Phase "hold": a statement that policy sends to review waits here for a human, until
//! a decision, the deadline, the loss of the lease, the client's cancel request, or the
//! client going away.

use portcullis_raft::command::Op;
use portcullis_raft::model::{Approval, ApprovalStatus, now_millis};

use super::super::reply;
use super::{Review, Session};
use crate::error::Result;
use crate::store::Store;

/// What ended the wait.
enum Waited {
    Decided(Option<Box<Approval>>),
    Canceled,
    ClientGone,
    LeaseLost,
}

/// A held statement's fate.
pub(super) enum Hold {
    Approved(String),
    Refused { code: &'static str, message: String, approval: String },
}

impl<S: Store> Session<'_, S> {
    /// Phase "hold": register an approval request and wait for its decision, the
    /// deadline, or the loss of the lease, whichever comes first.
    pub(super) async fn hold(&mut self, action: &str, review: &Review) -> Result<Hold> {
        let id = portcullis_raft::ids::random_id();
        let now = now_millis();
        let timeout_ms = u64::try_from(review.timeout.as_millis()).unwrap_or(u64::MAX);
        let approval = Approval {
            id: id.clone(),
            requester: self.identity.subject.clone(),
            resource: self.resource.name.clone(),
            session_id: self.session_id.clone(),
            action: action.to_string(),
            approver_groups: review.groups.clone(),
            approvals_needed: review.needed,
            votes: vec![],
            status: ApprovalStatus::Pending,
            reason: review.reason.clone(),
            created_at: now,
            expires_at: now.saturating_add(timeout_ms),
            node: self.door.store.node_id(),
        };
        if let Err(e) = self.door.store.submit(Op::RequestApproval { approval }).await {
            return Ok(Hold::Refused {
                code: reply::CANNOT_CONNECT_NOW,
                message: format!("the approval request could not be recorded, so the statement was not run: {e}"),
                approval: id,
            });
        }
        let groups = review.groups.join(", ");
        self.client.queue(reply::notice(
            &format!(
                "waiting for approval {id} (needs {} from [{groups}], up to {:?}): {}",
                review.needed, review.timeout, review.reason
            ),
            Some(&format!("approve with: portcullis approvals approve {id}")),
        ))?;
        self.client.flush().await?;
        let mut serving = self.door.store.serving();
        let hold_cancel = self.hold_cancel.clone();
        let outcome = tokio::select! {
            d = self.door.store.wait_approval(&id, review.timeout) => Waited::Decided(d?.map(Box::new)),
            _ = hold_cancel.notified() => Waited::Canceled,
            _ = self.client.gone() => Waited::ClientGone,
            _ = serving.wait_for(|s| !*s) => Waited::LeaseLost,
        };
        let decided = match outcome {
            Waited::Decided(d) => d.map(|a| *a),
            Waited::Canceled | Waited::ClientGone => {
                // The client gave up (psql's Ctrl-C) or went away: the statement never
                // runs, and the approval is withdrawn so nobody approves what will not
                // happen. Should a decision win that race, the statement still does not
                // run; the audit record of the refusal says so.
                if let Err(e) = self
                    .door
                    .store
                    .submit(Op::WithdrawApproval { id: id.clone(), at: now_millis(), reason: None })
                    .await
                {
                    tracing::warn!(approval = %id, error = %e, "could not withdraw a canceled approval; it expires at its deadline");
                }
                let message = if matches!(outcome, Waited::Canceled) {
                    format!("canceling statement due to user request while it waited for approval {id}; not run")
                } else {
                    format!("the client went away while its statement waited for approval {id}; not run")
                };
                return Ok(Hold::Refused { code: reply::QUERY_CANCELED, message, approval: id });
            }
            Waited::LeaseLost => {
                return Ok(Hold::Refused {
                    code: reply::CANNOT_CONNECT_NOW,
                    message: format!(
                        "this node lost its quorum lease while statement waited for approval {id}; not run"
                    ),
                    approval: id,
                });
            }
        };
        match decided {
            Some(a) if a.status == ApprovalStatus::Approved => Ok(Hold::Approved(id)),
            Some(a) if a.status == ApprovalStatus::Denied => {
                let by = a.votes.iter().rev().find(|v| !v.approve).map(|v| v.approver.clone()).unwrap_or_default();
                Ok(Hold::Refused {
                    code: reply::INSUFFICIENT_PRIVILEGE,
                    message: format!("approval {id} denied by {by}: {}", a.reason),
                    approval: id,
                })
            }
            _ => {
                // Past the deadline: make it final, so a late approval cannot release it.
                let _ = self
                    .door
                    .store
                    .submit(Op::ExpireApproval { id: id.clone(), at: now_millis().max(now.saturating_add(timeout_ms)) })
                    .await;
                Ok(Hold::Refused {
                    code: reply::QUERY_CANCELED,
                    message: format!(
                        "approval {id} expired after {:?} without a decision; statement not run",
                        review.timeout
                    ),
                    approval: id,
                })
            }
        }
    }
}
