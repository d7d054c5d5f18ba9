//! One client session as the gate sees it: its record in the session index, and the
//! per-unit phases decide, clear (hold), audit, refused and record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use portcullis_raft::command::Op;
use portcullis_raft::model::{AuditMode, Event, Resource, Session as SessionRecord, SessionStatus, now_millis};
use tokio::task::JoinHandle;

use super::audit::{self, Effect, Permit};
use super::door::Door;
use super::judgement::{Combined, Judgement};
use super::record::{self, Recorded, RefusalRecord, ResultRecord, StartRecord, StatementRecord, Work};
use super::refusal::Refusal;
use super::{Gate, metrics};
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::policy::{Protocol, Request, Who};
use crate::store::Store;

/// Records kept back at most before they are handed over on their own.
const MAX_PENDING: usize = 8;

/// How long a result record waits for the session's next statement to ride along with
/// before the door hands it over on its own ([`GateSession::flush_pending`]).
pub const RESULT_FLUSH_AFTER: std::time::Duration = std::time::Duration::from_millis(20);

/// A client that authenticated at a door and may start a session.
pub struct Opening {
    pub identity: Identity,
    pub resource: Resource,
    pub protocol: Protocol,
    /// The client's address, as the door saw it.
    pub client_addr: String,
    /// The door hands over the session's pending records soon after it goes quiet
    /// ([`GateSession::flush_pending`], within [`RESULT_FLUSH_AFTER`] of the last unit of
    /// work being audited or recorded), so in fast mode statement records may wait in the
    /// session and go in batches too ("fast: batched, async", DESIGN §3).
    pub flushes_when_idle: bool,
}

/// Work that policy allowed, or a human approved: what [`GateSession::audit`] takes.
#[derive(Debug, Clone)]
pub struct Cleared {
    pub judgement: Judgement,
    /// The approval that released it, if it was held.
    pub approval: Option<String>,
}

/// Per-session state of the gate, passed `&mut` through the phases.
pub struct GateSession<S: Store> {
    gate: Arc<Gate<S>>,
    id: String,
    pub(super) identity: Identity,
    who: Who,
    pub(super) resource: Resource,
    pub(super) protocol: Protocol,
    /// See [`Opening::flushes_when_idle`].
    flushes_when_idle: bool,
    /// Records not yet handed to the store (the last unit's result, the session's
    /// start): they ride along with the session's next audit record (one commit per
    /// unit instead of two), or go alone when the door finds the session idle
    /// ([`flush_pending`](Self::flush_pending)) or it ends. Everything a session hands
    /// over is queued in call order, so its records keep their order.
    /// std mutex: never held across an await. The methods take `&self`, so a door whose
    /// session runs several units of work at once (SSH channels) can share it.
    pending: Mutex<Vec<Event>>,
    /// Held while records are handed to the store, so that they queue in call order.
    order: tokio::sync::Mutex<()>,
    pub(super) meters: metrics::SessionMeters,
    _open: metrics::OpenSession,
    _slot: IdentitySlot,
}

/// Appends records to one session from anywhere (see [`GateSession::recorder`]). Its
/// records are queued in call order with the session's others, and bounded by the same
/// backlog; their commit is awaited in the background.
pub struct Recorder<S: Store> {
    gate: Arc<Gate<S>>,
    session: String,
    meter: metrics::CommitMeter,
}

impl<S: Store> Clone for Recorder<S> {
    fn clone(&self) -> Self {
        Recorder { gate: self.gate.clone(), session: self.session.clone(), meter: self.meter.clone() }
    }
}

impl<S: Store> Recorder<S> {
    /// Queue one record of `kind`; the handle resolves with its commit.
    pub async fn append(&self, kind: &'static str, detail: &impl serde::Serialize) -> JoinHandle<Result<()>> {
        let events = vec![record::event(&self.session, kind, detail)];
        let room = self.gate.backlog.reserve(1).await;
        audit::commit(self.gate.store.as_ref(), events, self.meter.clone(), room).await
    }
}

/// One of an identity's session slots on this node, given back on drop.
pub struct IdentitySlot {
    open: Arc<Mutex<HashMap<String, usize>>>,
    subject: String,
}

impl IdentitySlot {
    fn take(open: &Arc<Mutex<HashMap<String, usize>>>, subject: &str, max: usize) -> Result<Self> {
        let mut counts = open.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(subject.to_string()).or_default();
        if *n >= max {
            return Err(Error::TooManySessions { subject: subject.to_string(), max });
        }
        *n += 1;
        Ok(IdentitySlot { open: open.clone(), subject: subject.to_string() })
    }
}

impl Drop for IdentitySlot {
    fn drop(&mut self) {
        let mut counts = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.subject) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.subject);
            }
        }
    }
}

// === impl Gate (sessions) ===

impl<S: Store> Gate<S> {
    /// Phase "authenticate" ends here: record the session in the index. Nothing may
    /// happen for the client before it is committed.
    pub async fn open(self: &Arc<Self>, opening: Opening, slot: IdentitySlot) -> Result<GateSession<S>> {
        let Opening { identity, resource, protocol, client_addr, flushes_when_idle } = opening;
        let id = portcullis_raft::ids::random_id();
        let record = SessionRecord {
            id: id.clone(),
            identity: identity.subject.clone(),
            resource: resource.name.clone(),
            protocol,
            node: self.store.node_id(),
            client_addr,
            started_at: now_millis(),
            ended_at: None,
            status: SessionStatus::Open,
            events: 0,
        };
        self.store.submit(Op::OpenSession { session: record }).await?;
        let meters = metrics::SessionMeters::register(protocol, &resource.name, resource.audit);
        Ok(GateSession {
            gate: self.clone(),
            id,
            who: Who::from(&identity),
            identity,
            resource,
            protocol,
            flushes_when_idle,
            pending: Mutex::new(Vec::new()),
            order: tokio::sync::Mutex::new(()),
            meters,
            _open: metrics::OpenSession::start(protocol),
            _slot: slot,
        })
    }
}

impl<S: Store> Gate<S> {
    /// One of `subject`'s session slots on this node, taken before the door spends
    /// anything on the session (a backend connection); refused past
    /// [`GateSettings::max_sessions_per_identity`](super::GateSettings::max_sessions_per_identity).
    pub fn reserve(&self, subject: &str) -> Result<IdentitySlot> {
        IdentitySlot::take(&self.open_by_identity, subject, self.settings.max_sessions_per_identity)
    }
}

// === impl GateSession ===

impl<S: Store> GateSession<S> {
    /// The session's id in the index.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn resource(&self) -> &Resource {
        &self.resource
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Longest text a record or an approval request keeps.
    pub(super) fn record_text_max(&self) -> usize {
        self.gate.settings.record_text_max
    }

    /// The replicated store (a door uses it for its own commands: withdrawing an
    /// abandoned hold).
    pub fn store(&self) -> &Arc<S> {
        &self.gate.store
    }

    /// Whether this node holds the quorum lease right now. Doors check it before
    /// deciding anything, and refuse with [`Refusal::LeaseLost`] when it does not.
    pub fn serving(&self) -> bool {
        self.gate.store.is_serving()
    }

    /// Checked before deciding anything: [`Refusal::LeaseLost`] (counted, not recorded:
    /// the record could not commit) when this node may not serve.
    pub fn check_lease(&self) -> Result<(), Refusal> {
        if self.serving() {
            return Ok(());
        }
        metrics::refused(self.protocol, Refusal::LeaseLost.label());
        Err(Refusal::LeaseLost)
    }

    /// Phase "decide": what policy says about the requests one unit of work makes.
    pub fn decide(&self, requests: &[Request]) -> Result<Judgement> {
        let policies = self.gate.policies()?;
        Ok(Judgement::of(&policies, &self.who, requests))
    }

    /// Act on a judgement: a deny is refused (and recorded); a review is held until a
    /// human decides; an allow passes. The outer error ends the session (the door could
    /// not talk to its client); the inner one refuses this unit of work, already recorded.
    pub async fn clear<D: Door>(
        &self,
        door: &mut D,
        work: &Work,
        judgement: Judgement,
    ) -> Result<Result<Cleared, Refusal>> {
        self.meters.decided(judgement.action());
        let approval = match &judgement.verdict {
            Combined::Allow => None,
            Combined::Deny { reason } => {
                let refusal = Refusal::Denied { reason: reason.clone() };
                self.refused(work, Some(&judgement), &refusal).await;
                return Ok(Err(refusal));
            }
            Combined::Review(review) => match self.hold(door, &work.describe(), review).await? {
                Ok(approval) => Some(approval),
                Err(refusal) => {
                    self.refused(work, Some(&judgement), &refusal).await;
                    return Ok(Err(refusal));
                }
            },
        };
        Ok(Ok(Cleared { judgement, approval }))
    }

    /// Phase "audit": hand the `statement` records of cleared work to the store (with
    /// the previous result record riding along) and return the permit the relay needs.
    /// Strict mode: for [`Effect::Writes`] the records are committed before this returns;
    /// for [`Effect::Reads`] the permit carries the commit, and results wait for it.
    pub async fn audit(&self, cleared: &[(&Work, &Cleared)], effect: Effect) -> Result<Permit, Refusal> {
        let max = self.gate.settings.record_text_max;
        let records = cleared.iter().map(|(work, c)| {
            let j = &c.judgement;
            let statement = StatementRecord {
                work: Recorded { work, max },
                kinds: &j.kinds,
                decision: if c.approval.is_some() { "approved" } else { "allow" },
                rules: &j.rules,
                approval: c.approval.as_deref(),
                masked: !j.masks.is_empty(),
            };
            record::event(&self.id, "statement", &statement)
        });
        let records: Vec<Event> = records.collect();
        let mode = self.resource.audit;
        if mode == AuditMode::Fast && self.flushes_when_idle {
            // Batched: they wait with the session's other pending records, in order,
            // until there are enough of them or the door finds the session quiet.
            let full = {
                let mut pending = self.pending();
                pending.extend(records);
                pending.len() >= MAX_PENDING
            };
            if full {
                drop(self.flush_pending().await);
            }
            return Ok(Permit::new(cleared.len(), None));
        }
        let commit = self.hand_over(records).await;
        match (mode, effect) {
            (AuditMode::Fast, _) => {
                tokio::spawn(async move {
                    if let Ok(Err(e)) = commit.await {
                        tracing::warn!(error = %e, "fast-mode audit record could not be committed");
                    }
                });
                Ok(Permit::new(cleared.len(), None))
            }
            (AuditMode::Strict, Effect::Writes) => match commit.await {
                Ok(Ok(())) => Ok(Permit::new(cleared.len(), None)),
                _ => {
                    let refusal = Refusal::AuditNotCommitted { results_withheld: false };
                    metrics::refused(self.protocol, refusal.label());
                    Err(refusal)
                }
            },
            (AuditMode::Strict, Effect::Reads) => Ok(Permit::new(cleared.len(), Some(commit))),
        }
    }

    /// Record that a unit of work was refused, and count it. In strict mode the record
    /// is committed before this returns, so the client hears of a refusal only once it
    /// is on record, whichever phase refused. Refusals that say the cluster is out of
    /// reach (the lease is lost, an audit commit failed) are counted but not recorded:
    /// their record could not commit either, and the client is told at once.
    pub async fn refused(&self, work: &Work, judgement: Option<&Judgement>, refusal: &Refusal) {
        metrics::refused(self.protocol, refusal.label());
        if matches!(refusal, Refusal::LeaseLost | Refusal::AuditNotCommitted { .. }) {
            return;
        }
        let (kinds, rules) = match judgement {
            Some(j) => (j.kinds.as_slice(), j.rules.as_slice()),
            None => (&[][..], &[][..]),
        };
        let max = self.gate.settings.record_text_max;
        let reason = record::bounded(&refusal.to_string(), max).to_string();
        let work = Recorded { work, max };
        let detail = RefusalRecord { work, kinds, rules, approval: refusal.approval(), reason };
        let mode = self.resource.audit;
        let commit = self.hand_over(vec![record::event(&self.id, "refused", &detail)]).await;
        // Without the lease the commit cannot succeed soon; do not keep the client waiting for it.
        if mode == AuditMode::Strict && self.serving() {
            if let Ok(Err(e)) = commit.await {
                tracing::warn!(session = %self.id, error = %e, "the record of a refusal could not be committed");
            }
        } else {
            tokio::spawn(async move {
                if let Ok(Err(e)) = commit.await {
                    tracing::warn!(error = %e, "the record of a refusal could not be committed");
                }
            });
        }
    }

    /// Record how the session started: the backend login it runs as, and the client's
    /// settings (e.g. its `application_name`); rides along with the session's first record.
    pub fn note_start(&self, backend_user: &str, settings: &[(String, String)]) {
        let settings = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let start = StartRecord { backend_user, settings };
        self.pending().push(record::event(&self.id, "start", &start));
    }

    /// Phase "record": what came back. Kept back briefly so that it commits with the
    /// next unit's record.
    pub async fn record(&self, mut result: ResultRecord) {
        let max = self.gate.settings.record_text_max;
        if let Some(error) = &mut result.error {
            error.truncate(record::bounded(error, max).len());
        }
        for tag in &mut result.tags {
            tag.truncate(record::bounded(tag, max).len());
        }
        if self.pending().len() >= MAX_PENDING {
            self.flush_pending().await;
        }
        self.pending().push(record::event(&self.id, "result", &result));
    }

    /// Whether records wait to ride along (the door flushes them when idle).
    pub fn has_pending(&self) -> bool {
        !self.pending().is_empty()
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hand the pending records and then `records` to the store, in call order with
    /// every other hand-over of this session; the handle resolves with their commit.
    async fn hand_over(&self, records: Vec<Event>) -> JoinHandle<Result<()>> {
        let _order = self.order.lock().await;
        let events: Vec<Event> = std::mem::take(&mut *self.pending()).into_iter().chain(records).collect();
        let room = self.gate.backlog.reserve(events.len()).await;
        audit::commit(self.gate.store.as_ref(), events, self.meters.commits.clone(), room).await
    }

    /// Hand the pending records (if any) to the store now, on their own; their commit
    /// is awaited in the background (the handle says when).
    pub async fn flush_pending(&self) -> Option<JoinHandle<()>> {
        if self.pending().is_empty() {
            return None;
        }
        let commit = self.hand_over(Vec::new()).await;
        Some(tokio::spawn(async move {
            if let Ok(Err(e)) = commit.await {
                tracing::warn!(error = %e, "result record could not be committed");
            }
        }))
    }

    /// A handle that appends records to this session without borrowing it (a
    /// terminal's recording, written while other units of work are decided).
    pub fn recorder(&self) -> Recorder<S> {
        Recorder { gate: self.gate.clone(), session: self.id.clone(), meter: self.meters.commits.clone() }
    }

    /// The session ends: its last result record is committed, then its end.
    pub async fn close(self, status: SessionStatus) {
        if let Some(handle) = self.flush_pending().await {
            let _ = handle.await;
        }
        let op = Op::CloseSession { id: self.id.clone(), at: now_millis(), status };
        if let Err(e) = self.gate.store.submit(op).await {
            tracing::warn!(session = %self.id, error = %e, "could not record the session's end");
        }
    }
}
