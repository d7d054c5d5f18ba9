//! Phase "hold": work that policy sends to review waits here for a human, until a
//! decision (through any node), the deadline, the loss of the lease, or the client
//! giving up (a cancel, or its connection ending).

use portcullis_raft::command::Op;
use portcullis_raft::model::{Approval, ApprovalStatus, now_millis};

use super::door::{Door, GaveUp, Waiting};
use super::judgement::Review;
use super::metrics::HoldTimer;
use super::refusal::Refusal;
use super::session::GateSession;
use crate::error::Result;
use crate::store::Store;

/// What ended the wait.
enum Waited {
    Decided(Option<Box<Approval>>),
    GaveUp(GaveUp),
    LeaseLost,
}

impl<S: Store> GateSession<S> {
    /// Register an approval request for `action` (the text an approver reads), tell the
    /// client, and wait. `Ok(Ok(id))`: approved by approval `id`; `Ok(Err(_))`: refused
    /// (not yet recorded: [`clear`](Self::clear) does that); `Err`: the door failed.
    pub(super) async fn hold<D: Door>(
        &self,
        door: &mut D,
        action: &str,
        review: &Review,
    ) -> Result<Result<String, Refusal>> {
        let approval = self.new_approval(action, review, None);
        let (id, now) = (approval.id.clone(), approval.created_at);
        let timeout_ms = approval.expires_at.saturating_sub(now);
        let store = self.store().clone();
        if let Err(e) = store.submit(Op::RequestApproval { approval }).await {
            return Ok(Err(Refusal::HoldNotRecorded { detail: e.to_string() }));
        }
        let timer = HoldTimer::start(self.protocol);
        door.tell_waiting(&Waiting {
            approval: &id,
            needed: review.needed,
            groups: &review.groups,
            timeout: review.timeout,
            reason: &review.reason,
        })
        .await?;
        let mut serving = store.serving();
        let waited = tokio::select! {
            d = store.wait_approval(&id, review.timeout) => Waited::Decided(d?.map(Box::new)),
            how = door.gave_up() => Waited::GaveUp(how),
            _ = serving.wait_for(|s| !*s) => Waited::LeaseLost,
        };
        let decided = match waited {
            Waited::Decided(d) => d.map(|a| *a),
            Waited::GaveUp(how) => {
                timer.finish("gave_up");
                // The work never runs, and the approval is withdrawn so nobody approves
                // what will not happen. Should a decision win that race, the work still
                // does not run; the record of the refusal says so.
                let withdraw = Op::WithdrawApproval { id: id.clone(), at: now_millis(), reason: None };
                if let Err(e) = store.submit(withdraw).await {
                    tracing::warn!(approval = %id, error = %e, "could not withdraw a canceled approval; it expires at its deadline");
                }
                return Ok(Err(match how {
                    GaveUp::Canceled => Refusal::CanceledWhileHeld { approval: id },
                    GaveUp::Gone => Refusal::ClientGoneWhileHeld { approval: id },
                }));
            }
            Waited::LeaseLost => {
                timer.finish("lease_lost");
                return Ok(Err(Refusal::LeaseLostWhileHeld { approval: id }));
            }
        };
        match decided {
            Some(a) if a.status == ApprovalStatus::Approved => {
                timer.finish("approved");
                Ok(Ok(id))
            }
            Some(a) if a.status == ApprovalStatus::Denied => {
                timer.finish("denied");
                let by = a.votes.iter().rev().find(|v| !v.approve).map(|v| v.approver.clone()).unwrap_or_default();
                Ok(Err(Refusal::ApprovalDenied { approval: id, by, reason: a.reason }))
            }
            _ => {
                timer.finish("expired");
                // Past the deadline: make it final, so a late approval cannot release it.
                let at = now_millis().max(now.saturating_add(timeout_ms));
                let _ = store.submit(Op::ExpireApproval { id: id.clone(), at }).await;
                Ok(Err(Refusal::ApprovalExpired { approval: id, after: review.timeout }))
            }
        }
    }
}

impl<S: Store> GateSession<S> {
    /// A pending approval request for `action` (the text an approver reads) by this
    /// session's identity; `request_digest` for a deferred request (see `deferred`).
    pub(super) fn new_approval(&self, action: &str, review: &Review, request_digest: Option<String>) -> Approval {
        let now = now_millis();
        let timeout_ms = u64::try_from(review.timeout.as_millis()).unwrap_or(u64::MAX);
        Approval {
            id: portcullis_raft::ids::random_id(),
            requester: self.identity.subject.clone(),
            resource: self.resource.name.clone(),
            session_id: self.id().to_string(),
            action: bounded_action(action, self.record_text_max()),
            approver_groups: review.groups.clone(),
            approvals_needed: review.needed,
            votes: vec![],
            status: ApprovalStatus::Pending,
            reason: review.reason.clone(),
            created_at: now,
            expires_at: now.saturating_add(timeout_ms),
            node: self.store().node_id(),
            request_digest,
            used_at: None,
        }
    }
}

/// The text an approver reads: whole, or cut with its length and digest (the approver
/// can ask the requester for the rest and compare).
fn bounded_action(action: &str, max: usize) -> String {
    let cut = super::record::bounded(action, max);
    if cut.len() == action.len() {
        return action.to_string();
    }
    format!("{cut}… [cut: {} bytes in all, sha256 {}]", action.len(), super::record::sha256_hex(action))
}
