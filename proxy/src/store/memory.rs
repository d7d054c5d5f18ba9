//! An in-memory [`Store`] for tests of the gate and the doors (feature `test-util`):
//! one node, no Raft. Approvals follow the state machine's rules that the gate relies
//! on (first final decision wins; withdraw and expire only touch pending ones), and a
//! test can take the lease away or hold audit commits back to watch what waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_raft::command::{Op, Response};
use portcullis_raft::model::{
    Approval, ApprovalStatus, ApprovalVote, Event, Policy, Resource, SealedSecret, Session, SshAuthority, now_millis,
};
use tokio::sync::watch;

use super::{Committed, Store};
use crate::error::{Error, Result};

/// The state a test can read back.
#[derive(Default)]
struct State {
    resources: HashMap<String, Resource>,
    policies: Vec<Policy>,
    approvals: HashMap<String, Approval>,
    sessions: HashMap<String, Session>,
    events: Vec<Event>,
    /// Handed over, not committed yet.
    queued: Vec<Event>,
    ssh_authority: Option<SshAuthority>,
}

pub struct MemoryStore {
    /// std mutex: never held across an await. Shared with commits under way.
    shared: Arc<Mutex<State>>,
    serving: watch::Sender<bool>,
    /// Bumped on every approval change, for `wait_approval`.
    approvals_changed: watch::Sender<u64>,
    /// While false, audit appends wait (a cluster that has not committed them yet).
    commits_flow: watch::Sender<bool>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            shared: Arc::default(),
            serving: watch::Sender::new(true),
            approvals_changed: watch::Sender::new(0),
            commits_flow: watch::Sender::new(true),
        }
    }
}

// === impl MemoryStore ===

impl MemoryStore {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Store a policy document as `policy apply` would (not validated here).
    pub fn put_policy(&self, name: &str, source: &str) {
        let mut s = self.state();
        s.policies.retain(|p| p.name != name);
        s.policies.push(Policy {
            name: name.into(),
            source: source.into(),
            updated_at: now_millis(),
            updated_by: "test".into(),
        });
    }

    pub fn put_resource(&self, resource: Resource) {
        self.state().resources.insert(resource.name.clone(), resource);
    }

    /// Give or take the quorum lease.
    pub fn set_serving(&self, serving: bool) {
        self.serving.send_replace(serving);
    }

    /// Hold audit commits back (`false`) or let them through (`true`).
    pub fn let_commits_flow(&self, flow: bool) {
        self.commits_flow.send_replace(flow);
    }

    /// An approver's vote, as `approvals approve|deny` would cast it.
    pub fn decide(&self, id: &str, approver: &str, approve: bool, reason: &str) -> Result<Approval> {
        let mut s = self.state();
        let a = s.approvals.get_mut(id).ok_or_else(|| Error::Refused(format!("no approval {id}")))?;
        if a.status != ApprovalStatus::Pending {
            return Err(Error::Refused(format!("approval {id} is already {:?}", a.status)));
        }
        if a.requester == approver {
            return Err(Error::Refused("the requester may not decide".into()));
        }
        a.votes.push(ApprovalVote { approver: approver.into(), approve, reason: reason.into(), at: now_millis() });
        a.reason = reason.into();
        let approvals = a.votes.iter().filter(|v| v.approve).count();
        if !approve {
            a.status = ApprovalStatus::Denied;
        } else if approvals >= usize::try_from(a.approvals_needed).unwrap_or(usize::MAX) {
            a.status = ApprovalStatus::Approved;
        }
        let a = a.clone();
        drop(s);
        self.approvals_changed.send_modify(|n| *n += 1);
        Ok(a)
    }

    pub fn approvals(&self) -> Vec<Approval> {
        self.state().approvals.values().cloned().collect()
    }

    /// Every committed audit event, in commit order.
    pub fn events(&self) -> Vec<Event> {
        self.state().events.clone()
    }

    pub fn sessions(&self) -> Vec<Session> {
        self.state().sessions.values().cloned().collect()
    }

    fn finish_pending(&self, id: &str, reason: Option<String>) {
        let mut s = self.state();
        if let Some(a) = s.approvals.get_mut(id)
            && a.status == ApprovalStatus::Pending
        {
            a.status = ApprovalStatus::Expired;
            if let Some(r) = reason {
                a.reason = r;
            }
        }
        drop(s);
        self.approvals_changed.send_modify(|n| *n += 1);
    }
}

impl Store for MemoryStore {
    fn node_id(&self) -> u64 {
        1
    }

    fn is_serving(&self) -> bool {
        *self.serving.borrow()
    }

    fn serving(&self) -> watch::Receiver<bool> {
        self.serving.subscribe()
    }

    fn resource(&self, name: &str) -> Result<Option<Arc<Resource>>> {
        Ok(self.state().resources.get(name).cloned().map(Arc::new))
    }

    fn policies(&self) -> Result<Arc<Vec<Policy>>> {
        Ok(Arc::new(self.state().policies.clone()))
    }

    /// Test secrets are not sealed: the "ciphertext" is the secret.
    fn open_secret(&self, sealed: &SealedSecret) -> Result<String> {
        Ok(sealed.ciphertext.clone())
    }

    fn seal_secret(&self, plaintext: &str) -> Result<SealedSecret> {
        Ok(SealedSecret { nonce: String::new(), ciphertext: plaintext.to_string() })
    }

    fn ssh_authority(&self) -> Result<Option<SshAuthority>> {
        Ok(self.state().ssh_authority.clone())
    }

    async fn submit(&self, op: Op) -> Result<Response> {
        match op {
            Op::OpenSession { session } => {
                self.state().sessions.insert(session.id.clone(), session);
            }
            Op::CloseSession { id, at, status } => {
                if let Some(s) = self.state().sessions.get_mut(&id) {
                    s.ended_at = Some(at);
                    s.status = status;
                }
            }
            Op::RequestApproval { approval } => {
                self.state().approvals.insert(approval.id.clone(), approval);
                self.approvals_changed.send_modify(|n| *n += 1);
            }
            Op::WithdrawApproval { id, reason, .. } => {
                self.finish_pending(&id, Some(reason.unwrap_or_else(|| "withdrawn".into())))
            }
            Op::ExpireApproval { id, .. } => self.finish_pending(&id, None),
            Op::SetSshAuthority { authority } => {
                self.state().ssh_authority.get_or_insert(authority);
            }
            other => return Err(Error::Store(format!("the memory store does not apply {other:?}"))),
        }
        Ok(Response::Done)
    }

    async fn enqueue(&self, events: Vec<Event>) -> Result<Committed> {
        // Queued in call order; committed (moved to `events`, in queue order) once
        // commits flow.
        let ticket = {
            let mut s = self.state();
            s.queued.extend(events);
            s.queued.len() + s.events.len()
        };
        let mut flow = self.commits_flow.subscribe();
        let state = self.shared.clone();
        Ok(Box::pin(async move {
            flow.wait_for(|f| *f).await.map_err(|e| Error::Store(e.to_string()))?;
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            while s.events.len() < ticket && !s.queued.is_empty() {
                let mut e = s.queued.remove(0);
                e.seq = s.events.iter().filter(|x| x.session_id == e.session_id).count() as u64;
                s.events.push(e);
            }
            Ok(())
        }))
    }

    async fn wait_approval(&self, id: &str, timeout: Duration) -> Result<Option<Approval>> {
        let mut changed = self.approvals_changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen = self.state().approvals.get(id).cloned();
            match &seen {
                Some(a) if a.status.is_final() => return Ok(seen),
                _ => {}
            }
            if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
                return Ok(seen);
            }
        }
    }
}
