//! Phase "hold" for a client that will not wait (HTTP `Prefer: respond-async`): the
//! approval request is recorded covering exactly one request (its digest), the client
//! is told which approval to wait for, and nothing runs. Once approved, the client
//! repeats the same request with the approval's id, through any node; the replicated
//! state lets that approval be used once, by its requester, for that request only
//! (`Op::UseApproval`), so two nodes cannot both relay it.

use portcullis_raft::command::Op;
use portcullis_raft::model::now_millis;

use super::judgement::{Combined, Judgement};
use super::record::Work;
use super::refusal::Refusal;
use super::session::{Cleared, GateSession};
use crate::error::Error;
use crate::store::Store;

impl<S: Store> GateSession<S> {
    /// Record an approval request for `work` covering `request_digest` and refuse the
    /// work for now as [`Refusal::Deferred`] (recorded), which names the approval. A
    /// judgement that is not a review is cleared or refused as [`clear`](Self::clear)
    /// would: `Ok` only for an allow.
    pub async fn defer(&self, work: &Work, judgement: Judgement, request_digest: String) -> Result<Cleared, Refusal> {
        let review = match &judgement.verdict {
            Combined::Review(review) => review,
            Combined::Allow => {
                self.meters.decided(judgement.action());
                return Ok(Cleared { judgement, approval: None });
            }
            Combined::Deny { reason } => {
                self.meters.decided(judgement.action());
                let refusal = Refusal::Denied { reason: reason.clone() };
                self.refused(work, Some(&judgement), &refusal).await;
                return Err(refusal);
            }
        };
        self.meters.decided(judgement.action());
        let approval = self.new_approval(&work.describe(), review, Some(request_digest));
        let (id, until) = (approval.id.clone(), approval.expires_at);
        if let Err(e) = self.store().submit(Op::RequestApproval { approval }).await {
            return Err(Refusal::HoldNotRecorded { detail: e.to_string() });
        }
        let refusal = Refusal::Deferred { approval: id, decide_by: until };
        self.refused(work, Some(&judgement), &refusal).await;
        Err(refusal)
    }

    /// A repeated request presenting approval `id`: when policy still sends it to
    /// review, the approval is used up (once, cluster-wide) if it was approved for
    /// exactly this request (`request_digest`) of this identity; else the refusal, with
    /// the state's reason, recorded. Allow and deny are decided as always (an approval
    /// does not overrule a deny that came since).
    pub async fn use_approval(
        &self,
        work: &Work,
        judgement: Judgement,
        id: &str,
        request_digest: &str,
    ) -> Result<Cleared, Refusal> {
        self.meters.decided(judgement.action());
        match &judgement.verdict {
            Combined::Allow => return Ok(Cleared { judgement, approval: None }),
            Combined::Deny { reason } => {
                let refusal = Refusal::Denied { reason: reason.clone() };
                self.refused(work, Some(&judgement), &refusal).await;
                return Err(refusal);
            }
            Combined::Review(_) => {}
        }
        let op = Op::UseApproval {
            id: id.to_string(),
            requester: self.identity.subject.clone(),
            request_digest: request_digest.to_string(),
            at: now_millis(),
        };
        match self.store().submit(op).await {
            Ok(_) => Ok(Cleared { judgement, approval: Some(id.to_string()) }),
            Err(Error::Refused(why)) => {
                let refusal = Refusal::ApprovalUnusable { approval: id.to_string(), why };
                self.refused(work, Some(&judgement), &refusal).await;
                Err(refusal)
            }
            Err(e) => Err(Refusal::HoldNotRecorded { detail: e.to_string() }),
        }
    }
}
