//! One Postgres session: the per-statement phases of DESIGN §3.
//!
//! classify → decide → hold → audit → relay → mask → record. Nothing reaches the
//! backend before `decide` allowed it (and `hold` got its approval), and in strict
//! audit mode not before its audit record is committed (writes) or, for reads, not
//! back to the client before that. `record` runs on every exit of a statement.
//!
//! Extended-protocol messages are collected until Sync (or Flush) and decided
//! together: Parse is decided when it arrives in the batch, and the decision is
//! bound to the statement name, so every later Bind/Execute of it is covered. If a
//! statement of a batch is refused, none of the batch's executions run (only the
//! Parse/Bind/Describe before the first Execute, under a Sync of our own) and the
//! client gets the error and its ReadyForQuery. A refusal inside a transaction block
//! fails the block on the backend too (`fail_open_transaction`), as a Postgres error
//! would, so a later COMMIT keeps nothing of it.
//!
//! Here: the session's state, its loop, and the phases both protocols share (decide,
//! audit, record). `simple` and `extended` drive the two query protocols; `hold`
//! is the approval wait.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgwire::messages::PgWireBackendMessage as B;
use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{Authentication, ParameterStatus};
use portcullis_raft::command::Op;
use portcullis_raft::model::{
    AuditMode, Event, Protocol as ResourceProtocol, Resource, Session as SessionRecord, SessionStatus, now_millis,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::backend::{self, BackendTarget};
use super::classify::{CopyDirection, Lineage, Statement, classify};
use super::conn::{BackendConn, ClientConn};
use super::door::{CancelTarget, PgDoor, backend_key_data, new_cancel_key};
use super::relay::{Columns, Outcome};
use super::reply;
use super::startup::Admitted;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::mask::MaskPlan;
use crate::policy::{Decision, Protocol, Request, Verdict, Who};
use crate::store::Store;

/// What the backend runs to fail its open transaction when we refuse a statement in it
/// (`fail_open_transaction`); its error goes to the server log, not to the client.
const FAIL_TRANSACTION: &str = "DO $portcullis$ BEGIN RAISE EXCEPTION 'a statement in this transaction was refused by Portcullis'; END $portcullis$";

/// A statement prepared through this gateway, with the decision bound to its name.
pub(super) struct Prepared {
    text: String,
    kinds: String,
    masks: MaskPlan,
    lineages: Vec<Lineage>,
    rule: Option<String>,
    approval: Option<String>,
    columns: Option<Columns>,
}

/// Per-session state, passed through the phases.
struct Session<'d, S: Store> {
    door: &'d PgDoor<S>,
    client: ClientConn,
    backend: BackendConn,
    identity: Identity,
    who: Who,
    resource: Resource,
    session_id: String,
    /// Last transaction status the backend reported; used in our own ReadyForQuery.
    tx_status: u8,
    statements: HashMap<String, Prepared>,
    /// Portal → statement name.
    portals: HashMap<String, String>,
    /// Extended-protocol messages waiting for Sync or Flush.
    batch: Vec<F>,
    /// The last exchange's result record, not yet handed to the store: it rides along
    /// with the session's next audit record (one commit per statement instead of two),
    /// or goes alone once the session is idle for `RESULT_FLUSH_AFTER` or ends.
    pending_result: Option<Event>,
    /// Notified by a cancel request for this session (see `CancelTarget::hold`).
    hold_cancel: Arc<tokio::sync::Notify>,
}

/// How long a result record waits for the session's next statement to ride along with.
const RESULT_FLUSH_AFTER: Duration = Duration::from_millis(20);

/// Run an admitted session to its end.
pub async fn run<S: Store>(
    door: &PgDoor<S>,
    mut client: ClientConn,
    admitted: Admitted,
    peer: SocketAddr,
    stop: CancellationToken,
) -> Result<()> {
    let Admitted { identity, resource, params } = admitted;
    let password = match &resource.secret {
        Some(sealed) => Some(door.store.open_secret(sealed)?),
        None => None,
    };
    let target = BackendTarget {
        addr: resource.address.clone(),
        user: resource.username.clone().or_else(|| params.get("user").cloned()).unwrap_or_else(|| "postgres".into()),
        password,
        database: resource.options.get("database").cloned().unwrap_or_else(|| resource.name.clone()),
        tls: match super::backend_tls::BackendTls::from_options(&resource.options) {
            Ok(t) => t,
            Err(e) => {
                client
                    .send(reply::fatal(reply::CONNECTION_FAILURE, &format!("resource {}: {e}", resource.name)))
                    .await?;
                return Err(e);
            }
        },
    };
    let backend = match backend::connect(&target, door.settings.backend_timeout).await {
        Ok(b) => b,
        Err(e) => {
            client
                .send(reply::fatal(reply::CONNECTION_FAILURE, &format!("resource {} unavailable: {e}", resource.name)))
                .await?;
            return Err(e);
        }
    };

    // --- record: the session opens (committed before the client may do anything).
    let session_id = portcullis_raft::ids::random_id();
    let record = SessionRecord {
        id: session_id.clone(),
        identity: identity.subject.clone(),
        resource: resource.name.clone(),
        protocol: ResourceProtocol::Postgres,
        node: door.store.node_id(),
        client_addr: peer.to_string(),
        started_at: now_millis(),
        ended_at: None,
        status: SessionStatus::Open,
        events: 0,
    };
    if let Err(e) = door.store.submit(Op::OpenSession { session: record }).await {
        client
            .send(reply::fatal(
                reply::CANNOT_CONNECT_NOW,
                &format!("the session could not be recorded, so it may not start: {e}"),
            ))
            .await?;
        return Err(e);
    }

    // --- greet the client like a Postgres server would.
    let ours = new_cancel_key();
    let hold_cancel = Arc::new(tokio::sync::Notify::new());
    if let Some(key) = &backend.key {
        door.register_cancel(
            ours,
            CancelTarget {
                addr: resource.address.clone(),
                pid: key.pid,
                secret: key.secret_key.clone(),
                hold: hold_cancel.clone(),
            },
        );
    }
    client.queue(B::Authentication(Authentication::Ok))?;
    for (name, value) in &backend.parameters {
        client.queue(B::ParameterStatus(ParameterStatus::new(name.clone(), value.clone())))?;
    }
    client.queue(B::BackendKeyData(backend_key_data(ours)))?;
    client.queue(B::ReadyForQuery(ReadyForQuery::new(TransactionStatus::Idle)))?;
    client.flush().await?;
    tracing::info!(session = %session_id, subject = %identity.subject, resource = %resource.name, %peer, "postgres session opened");

    let who = Who::from(&identity);
    let mut session = Session {
        door,
        client,
        backend: backend.conn,
        identity,
        who,
        resource,
        session_id: session_id.clone(),
        tx_status: b'I',
        statements: HashMap::new(),
        portals: HashMap::new(),
        batch: Vec::new(),
        pending_result: None,
        hold_cancel,
    };
    let result = session.serve(stop).await;
    // The last result record is committed before the session's end is.
    if let Some(handle) = session.flush_result().await {
        let _ = handle.await;
    }
    if let Err(e @ Error::Protocol(_)) = &result {
        // Tell the client why the connection ends, as Postgres does.
        let _ = session.client.send(reply::fatal(reply::PROTOCOL_VIOLATION, &e.to_string())).await;
    }
    door.forget_cancel(ours);
    let status = if result.is_ok() { SessionStatus::Closed } else { SessionStatus::Failed };
    if let Err(e) = door.store.submit(Op::CloseSession { id: session_id.clone(), at: now_millis(), status }).await {
        tracing::warn!(session = %session_id, error = %e, "could not record the session's end");
    }
    result
}

fn ready(status: u8) -> B {
    let status = match status {
        b'T' => TransactionStatus::Transaction,
        b'E' => TransactionStatus::Error,
        _ => TransactionStatus::Idle,
    };
    B::ReadyForQuery(ReadyForQuery::new(status))
}

// === impl Session ===

impl<S: Store> Session<'_, S> {
    async fn serve(&mut self, stop: CancellationToken) -> Result<()> {
        loop {
            let idle_flush = tokio::time::sleep(RESULT_FLUSH_AFTER);
            let msg = tokio::select! {
                _ = stop.cancelled() => {
                    let _ = self.client.send(reply::fatal("57P01", "this Portcullis node is shutting down")).await;
                    return Ok(());
                }
                _ = idle_flush, if self.pending_result.is_some() => {
                    drop(self.flush_result().await);
                    continue;
                }
                m = self.client.read() => m?,
            };
            let Some(msg) = msg else { return Ok(()) };
            match msg {
                F::Query(q) => self.simple_query(q.query).await?,
                F::Parse(_) | F::Bind(_) | F::Describe(_) | F::Execute(_) | F::Close(_) => self.batch.push(msg),
                F::Sync(_) => {
                    self.batch.push(msg);
                    self.run_batch().await?;
                }
                F::Flush(_) => {
                    self.batch.push(msg);
                    self.run_batch().await?;
                }
                F::Terminate(_) => {
                    let _ = self.backend.send(&msg).await;
                    return Ok(());
                }
                F::CopyData(_) | F::CopyDone(_) | F::CopyFail(_) => {
                    // Outside COPY FROM STDIN these are ignored, as Postgres does.
                }
                other => return Err(Error::Protocol(format!("unexpected message {other:?}"))),
            }
        }
    }

    fn serving(&self) -> bool {
        self.door.store.is_serving()
    }

    /// Phase "decide" for one statement.
    fn decide(&self, statement: &Statement) -> Result<Decision> {
        let set = self.door.policy_set()?;
        let request = Request {
            resource: self.resource.name.clone(),
            protocol: Protocol::Postgres,
            kind: statement.kind.name().to_string(),
            tables: statement.tables.clone(),
            functions: statement.functions.clone(),
            text: statement.text.clone(),
            missing_where: statement.missing_where,
        };
        Ok(set.decide(&self.who, &request))
    }

    /// Phases "classify" and "decide" for a SQL string: one decision per statement,
    /// combined: any deny denies; any review holds; masks add up.
    fn judge(&self, sql: &str) -> Result<Judgement> {
        let statements = classify(sql)?;
        let mut j = Judgement {
            kinds: Vec::new(),
            writes: false,
            masks: MaskPlan::default(),
            lineages: statements.iter().map(|s| s.lineage.clone()).collect(),
            rules: Vec::new(),
            review: None,
            denied: None,
        };
        for st in &statements {
            let d = self.decide(st)?;
            j.kinds.push(st.kind.name().to_string());
            j.writes |= st.kind.writes();
            if let Some(r) = &d.rule {
                j.rules.push(r.clone());
            }
            match d.verdict {
                Verdict::Deny { reason } => {
                    let rule = d.rule.map(|r| format!(" (rule {r})")).unwrap_or_default();
                    j.denied = Some(format!("denied by policy{rule}: {reason}"));
                    return Ok(j);
                }
                Verdict::Review { approver_groups, approvals_needed, timeout, reason } => {
                    let r = j.review.get_or_insert_with(|| Review {
                        groups: Vec::new(),
                        needed: 1,
                        timeout,
                        reason: reason.clone(),
                    });
                    for g in approver_groups {
                        if !r.groups.contains(&g) {
                            r.groups.push(g);
                        }
                    }
                    r.needed = r.needed.max(approvals_needed);
                    r.timeout = r.timeout.min(timeout);
                }
                Verdict::Allow => {}
            }
            j.masks.merge(&d.masks);
        }
        // COPY ... TO STDOUT streams rows as raw CopyData, which the relay cannot mask:
        // under a mask plan it would leak what a SELECT hides. Fail closed.
        if !j.masks.is_empty() && statements.iter().any(|st| st.copy_direction == Some(CopyDirection::ToClient)) {
            j.denied = Some(format!(
                "denied: COPY ... TO STDOUT on {} cannot be masked (a mask rule applies); use SELECT",
                self.resource.name
            ));
        }
        Ok(j)
    }

    /// Queue an error and, for a finished exchange, our own ReadyForQuery.
    async fn refuse(&mut self, code: &str, message: &str, with_ready: bool) -> Result<()> {
        if with_ready {
            self.fail_open_transaction().await?;
        }
        self.client.queue(reply::error(code, message))?;
        if with_ready {
            self.client.queue(ready(self.tx_status))?;
        }
        self.client.flush().await
    }

    /// A refused statement inside a transaction block fails the transaction, as any
    /// error inside Postgres does: the backend (idle, in the block) runs one statement
    /// that raises, so the client and the backend agree the block is aborted, later
    /// statements get the backend's 25P02, and a COMMIT rolls back what ran before the
    /// refusal instead of committing it behind the client's back.
    async fn fail_open_transaction(&mut self) -> Result<()> {
        if self.tx_status != b'T' {
            return Ok(());
        }
        self.backend.send(&F::Query(pgwire::messages::simplequery::Query::new(FAIL_TRANSACTION.into()))).await?;
        self.drain_until_ready().await
    }

    fn event(&self, kind: &str, detail: serde_json::Value) -> Event {
        Event {
            session_id: self.session_id.clone(),
            seq: 0,
            at: now_millis(),
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    /// Phase "audit". Strict mode returns a commit to await (before relaying a write,
    /// or before releasing a read's results); fast mode commits in the background.
    ///
    /// Every record holds a permit of the door's audit backlog until it is committed,
    /// so a session that outruns the cluster (fast mode) waits here instead of queueing
    /// without bound and starving replication.
    fn audit(&mut self, event: Event) -> impl Future<Output = Option<JoinHandle<Result<()>>>> + Send + 'static {
        self.audit_all(vec![event])
    }

    /// As [`audit`](Self::audit) for several records that commit together.
    fn audit_all(
        &mut self,
        records: Vec<Event>,
    ) -> impl Future<Output = Option<JoinHandle<Result<()>>>> + Send + 'static {
        // Take what the future needs now: it must not borrow the session across awaits.
        let store = self.door.store.clone();
        let backlog = self.door.audit_backlog.clone();
        let strict = self.resource.audit == AuditMode::Strict;
        let events: Vec<Event> = self.pending_result.take().into_iter().chain(records).collect();
        async move {
            let permits = u32::try_from(events.len()).unwrap_or(1);
            let permit = backlog.acquire_many_owned(permits).await.ok();
            let handle = tokio::spawn(async move {
                let result = store.append(events).await;
                drop(permit);
                result
            });
            if strict {
                return Some(handle);
            }
            tokio::spawn(async move {
                if let Ok(Err(e)) = handle.await {
                    tracing::warn!(error = %e, "fast-mode audit record could not be committed");
                }
            });
            None
        }
    }

    /// Phase "record": the result of an exchange. Kept back briefly so that it commits
    /// with the next statement's record (see `pending_result`); a result still pending
    /// is flushed first, so records keep their order.
    async fn record(&mut self, outcome: &Outcome, started: Instant) {
        let detail = serde_json::json!({
            "tags": outcome.tags,
            "rows": outcome.rows,
            "error": outcome.error,
            "duration_ms": started.elapsed().as_secs_f64() * 1000.0,
            "preview": outcome.preview,
        });
        let event = self.event("result", detail);
        drop(self.flush_result().await);
        self.pending_result = Some(event);
    }

    /// Hand the pending result record (if any) to the store on its own, in the
    /// background; the handle says when it is committed.
    fn flush_result(&mut self) -> impl Future<Output = Option<JoinHandle<()>>> + Send + 'static {
        let pending = self.pending_result.take();
        let store = self.door.store.clone();
        let backlog = self.door.audit_backlog.clone();
        async move {
            let event = pending?;
            let permit = backlog.acquire_owned().await.ok();
            Some(tokio::spawn(async move {
                if let Err(e) = store.append(vec![event]).await {
                    tracing::warn!(error = %e, "result record could not be committed");
                }
                drop(permit);
            }))
        }
    }
}

/// The combined decision for one SQL string.
pub(super) struct Judgement {
    kinds: Vec<String>,
    writes: bool,
    masks: MaskPlan,
    /// Per statement: where its result columns come from (column masking follows them).
    lineages: Vec<Lineage>,
    rules: Vec<String>,
    review: Option<Review>,
    denied: Option<String>,
}

pub(super) struct Review {
    groups: Vec<String>,
    needed: u32,
    timeout: Duration,
    reason: String,
}

mod extended;
mod hold;
mod simple;
