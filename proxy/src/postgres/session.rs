//! One Postgres session: the gate's phases (DESIGN §3, `crate::gate`) for each
//! statement of the simple and the extended query protocol.
//!
//! Nothing reaches the backend before the gate cleared it (decided, and held until
//! approved if policy says so) and audited it: the only function that sends SQL that
//! runs, [`Outbound::send`], takes the gate's [`Permit`].
//!
//! Extended-protocol messages are collected until Sync (or Flush) and decided
//! together: Parse is cleared when it arrives in the batch, and the decision is bound
//! to the statement name, so every later Bind/Execute of it is covered. If a
//! statement of a batch is refused, none of the batch's executions run (only the
//! Parse/Bind/Describe before the first Execute, under a Sync of our own) and the
//! client gets the error and its ReadyForQuery. A refusal inside a transaction block
//! fails the block on the backend too (`fail_open_transaction`), as a Postgres error
//! would, so a later COMMIT keeps nothing of it.
//!
//! Here: the session's state and loop, and what both protocols share (clearing a SQL
//! string, refusing, outbound messages). `simple` and `extended` drive the two query
//! protocols; `client` is the [`Door`] the gate talks to while a statement is held.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use pgwire::messages::PgWireBackendMessage as B;
use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{Authentication, ParameterStatus};
use portcullis_raft::model::{Protocol, SessionStatus};
use tokio_util::sync::CancellationToken;

use super::backend::{self, BackendTarget};
use super::cancel::{self, CancelRegistry, CancelTarget};
use super::catalog::{Catalog, CatalogCache};
use super::classify::{DEFAULT_MAX_SQL_BYTES, Lineage, Statement, StatementKind, classify};
use super::conn::{BackendConn, ClientConn, ClientMessage};
use super::copy_out::CopyOut;
use super::relay::{Columns, Limits, MaskingCatalog, Outcome};
use super::reply;
use super::requests::{door_rules, policy_request, statement_writes};
use super::settings::PgSettings;
use super::startup::Admitted;
use crate::error::{Error, Result};
use crate::gate::{Cleared, Gate, GateSession, Judgement, Opening, Permit, Refusal, ResultRecord, Work};
use crate::policy::Request;
use crate::store::Store;

mod client;
mod extended;
mod simple;

use client::PgClient;

/// What the backend runs to fail its open transaction when we refuse a statement in it
/// (`fail_open_transaction`); its error goes to the server log, not to the client.
const FAIL_TRANSACTION: &str = "DO $portcullis$ BEGIN RAISE EXCEPTION 'a statement in this transaction was refused by Portcullis'; END $portcullis$";

/// What a session borrows from its door.
pub(crate) struct SessionDeps<'d, S: Store> {
    pub gate: &'d Arc<Gate<S>>,
    pub cancels: &'d CancelRegistry,
    pub catalogs: &'d CatalogCache,
    pub settings: &'d PgSettings,
}

/// A SQL string classified and decided by policy (not yet cleared: held or refused).
pub(super) struct JudgedSql {
    pub judgement: Judgement,
    /// Per statement: where its result columns come from (column masking follows them).
    pub lineages: Vec<Lineage>,
    /// Whether any statement may change state (strict audit commits those first).
    pub writes: bool,
    /// Whether it may run code the gateway cannot see into (a `DO` block, a procedure, a
    /// user's function, dynamic SQL): code that could change how Postgres reads the next
    /// statement (see `extended`).
    pub runs_unseen_code: bool,
    /// A `COPY ... TO STDOUT` among the statements: its rows are masked as they stream.
    pub copy_out: Option<CopyOut>,
}

/// A SQL string the gate cleared: the decision and what the relay needs to mask.
pub(super) struct ClearedSql {
    pub cleared: Cleared,
    pub lineages: Vec<Lineage>,
    pub writes: bool,
    pub copy_out: Option<CopyOut>,
}

/// A statement prepared through this gateway, with the decision bound to its name.
pub(super) struct Prepared {
    /// Shared with every portal bound from it.
    pub decided: Arc<Decided>,
    /// Learned from the backend's RowDescription.
    pub columns: Option<Columns>,
    /// Learned from the backend's ParameterDescription.
    pub param_types: Option<Vec<u32>>,
}

/// A portal as the backend has it: the statement it was bound from, with that
/// statement's decision at the time (a later Parse of the same name does not change
/// what the portal runs), and the parameters it was bound with.
#[derive(Clone)]
pub(super) struct Portal {
    pub statement: String,
    pub decided: Arc<Decided>,
    /// As shown to people (see `params::render`).
    pub params: Vec<Option<String>>,
    /// The result formats its Bind asked for (what the rows will be in).
    pub result_formats: Vec<i16>,
    /// The approval of this portal's execution, once given (a portal run in several
    /// Executes, each fetching some rows, is one execution).
    pub approved: Option<Cleared>,
}

/// How a prepared statement's decision applies to its executions.
pub(super) enum Clearance {
    /// Cleared at Parse: allowed, or approved for every execution
    /// (`approval_covers: statement`).
    Statement(Cleared),
    /// Held at each execution, where the approver sees its parameters.
    EachExecution(Judgement),
}

/// The decided text of a prepared statement.
pub(super) struct Decided {
    pub work: Work,
    pub clearance: Clearance,
    pub lineages: Vec<Lineage>,
    /// Parameter types the client declared in its Parse (0: unspecified).
    pub declared_types: Vec<u32>,
    /// See [`JudgedSql::runs_unseen_code`].
    pub runs_unseen_code: bool,
}

impl Decided {
    pub fn judgement(&self) -> &Judgement {
        match &self.clearance {
            Clearance::Statement(c) => &c.judgement,
            Clearance::EachExecution(j) => j,
        }
    }
}

/// Per-session state, passed through the phases.
struct Session<'d, S: Store> {
    deps: SessionDeps<'d, S>,
    gate: GateSession<S>,
    client: ClientConn,
    backend: BackendConn,
    /// Last transaction status the backend reported; used in our own ReadyForQuery.
    tx_status: TransactionStatus,
    /// Named statements the backend confirmed (ParseComplete), by name.
    statements: HashMap<String, Prepared>,
    /// Portals the backend confirmed (BindComplete), by name.
    portals: HashMap<String, Portal>,
    /// Extended-protocol messages waiting for Sync or Flush.
    batch: Vec<F>,
    /// About how many bytes `batch` holds (bounded by `max_batch_bytes`).
    batch_bytes: usize,
    /// Notified by a cancel request for this session (see `CancelTarget::hold`).
    hold_cancel: Arc<tokio::sync::Notify>,
    /// The resource's catalog: which functions have side effects, which columns hold
    /// masked data.
    catalog: Arc<Catalog>,
    /// Whether `catalog` describes the schema as the backend has it (not if it could
    /// not be read, or DDL this session ran has not been read back yet).
    schema_trusted: bool,
    /// This session ran DDL (or code that may run some) since it last read the catalog.
    ran_ddl: bool,
    /// How the session logged in to the backend: to read the catalog again on a
    /// connection of its own.
    target: BackendTarget,
}

/// Run an admitted session to its end.
pub(crate) async fn run<S: Store>(
    deps: SessionDeps<'_, S>,
    mut client: ClientConn,
    admitted: Admitted,
    peer: SocketAddr,
    stop: CancellationToken,
) -> Result<()> {
    let Admitted { identity, resource, params } = admitted;
    let slot = match deps.gate.reserve(&identity.subject) {
        Ok(slot) => slot,
        Err(e) => {
            client.send(reply::fatal(reply::code_for(&e), &e.to_string())).await?;
            return Err(e);
        }
    };
    let settings = match super::startup_params::sort(&params) {
        Ok(s) => s,
        Err(refused) => {
            tracing::info!(%peer, subject = %identity.subject, reason = %refused.message, "postgres startup refused");
            client.send(reply::fatal(refused.code, &refused.message)).await?;
            return Ok(());
        }
    };
    // The backend login: the first of the resource's group logins the caller's groups
    // name, else the resource's own.
    let (user, sealed) = match resource.logins.iter().find(|l| identity.in_any(&l.groups)) {
        Some(login) => (Some(login.username.clone()), login.secret.as_ref()),
        None => (resource.username.clone(), resource.secret.as_ref()),
    };
    let password = match sealed {
        Some(sealed) => Some(deps.gate.store().open_secret(sealed)?),
        None => None,
    };
    let target = BackendTarget {
        addr: resource.address.clone(),
        user: user.or_else(|| params.get("user").cloned()).unwrap_or_else(|| "postgres".into()),
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
        settings,
    };
    let backend = match backend::connect(&target, deps.settings.backend_timeout).await {
        Ok(b) => b,
        Err(e) => {
            client
                .send(reply::fatal(reply::CONNECTION_FAILURE, &format!("resource {} unavailable: {e}", resource.name)))
                .await?;
            return Err(e);
        }
    };

    let (catalog, schema_trusted) = match deps
        .catalogs
        .get(&resource.name, &target, deps.settings.backend_timeout)
        .await
    {
        Ok(catalog) => (catalog, true),
        Err(e) => {
            // Without the catalog every function call counts as having side effects, and
            // result columns are judged from the statement text alone.
            tracing::warn!(resource = %resource.name, error = %e, "catalog unavailable; every call counts as a write");
            (Arc::new(Catalog::default()), false)
        }
    };

    // --- the session opens in the index before the client may do anything.
    // Not `flushes_when_idle`: the door flushes while it waits for the client, not while
    // a statement runs, and a statement may run for hours.
    let opening = Opening {
        identity,
        resource,
        protocol: Protocol::Postgres,
        client_addr: peer.to_string(),
        flushes_when_idle: false,
    };
    let gate = match deps.gate.open(opening, slot).await {
        Ok(g) => g,
        Err(e) => {
            client
                .send(reply::fatal(
                    reply::CANNOT_CONNECT_NOW,
                    &format!("the session could not be recorded, so it may not start: {e}"),
                ))
                .await?;
            return Err(e);
        }
    };

    gate.note_start(&target.user, &target.settings);

    // --- greet the client like a Postgres server would.
    let ours = cancel::new_key();
    let hold_cancel = Arc::new(tokio::sync::Notify::new());
    if let Some(key) = &backend.key {
        deps.cancels.register(
            ours,
            CancelTarget {
                addr: gate.resource().address.clone(),
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
    client.queue(B::BackendKeyData(cancel::backend_key_data(ours)))?;
    client.queue(B::ReadyForQuery(ReadyForQuery::new(TransactionStatus::Idle)))?;
    client.flush().await?;
    tracing::info!(session = %gate.id(), subject = %gate.identity().subject, resource = %gate.resource().name, %peer, "postgres session opened");

    let cancels = deps.cancels;
    let mut session = Session {
        deps,
        gate,
        client,
        backend: backend.conn,
        tx_status: TransactionStatus::Idle,
        statements: HashMap::new(),
        portals: HashMap::new(),
        batch: Vec::new(),
        batch_bytes: 0,
        hold_cancel,
        catalog,
        schema_trusted,
        ran_ddl: false,
        target,
    };
    let result = session.serve(stop).await;
    // Tell the client why the connection ends, as Postgres does.
    if let Err(e @ (Error::Protocol(_) | Error::Limit { .. } | Error::PinnedSettingChanged { .. })) = &result {
        let _ = session.client.send(reply::fatal(reply::code_for(e), &e.to_string())).await;
    }
    cancels.forget(ours);
    session.client.shutdown().await;
    let status = if result.is_ok() { SessionStatus::Closed } else { SessionStatus::Failed };
    session.gate.close(status).await;
    result
}

fn ready(status: TransactionStatus) -> B {
    B::ReadyForQuery(ReadyForQuery::new(status))
}

// === impl Session ===

impl<S: Store> Session<'_, S> {
    async fn serve(&mut self, stop: CancellationToken) -> Result<()> {
        let idle_limit = self.deps.settings.idle_in_transaction;
        loop {
            let idle_flush = tokio::time::sleep(crate::gate::RESULT_FLUSH_AFTER);
            let in_transaction = self.tx_status != TransactionStatus::Idle && self.batch.is_empty();
            let idle_too_long = tokio::time::sleep(idle_limit);
            let msg = tokio::select! {
                _ = stop.cancelled() => {
                    let _ = self.client.send(reply::fatal("57P01", "this Portcullis node is shutting down")).await;
                    return Ok(());
                }
                _ = idle_flush, if self.gate.has_pending() => {
                    drop(self.gate.flush_pending().await);
                    continue;
                }
                _ = idle_too_long, if in_transaction && !idle_limit.is_zero() => {
                    return Err(Error::Limit {
                        code: reply::IDLE_IN_TRANSACTION_TIMEOUT,
                        detail: format!("terminating connection: idle in a transaction for {idle_limit:?} (the gateway's limit)"),
                    });
                }
                m = self.client.read_session() => match m? {
                    Some(ClientMessage::Pg(msg)) => Some(msg),
                    Some(ClientMessage::FunctionCall) => {
                        self.function_call().await?;
                        continue;
                    }
                    None => None,
                },
                // Between exchanges the backend speaks only for asynchronous messages
                // (LISTEN notifications, notices) or to end the session.
                m = self.backend.read(), if self.batch.is_empty() => {
                    self.relay_idle(m?).await?;
                    continue;
                }
            };
            let Some(msg) = msg else { return Ok(()) };
            match msg {
                F::Query(q) => self.simple_query(q.query).await?,
                F::Parse(_) | F::Bind(_) | F::Describe(_) | F::Execute(_) | F::Close(_) => self.buffer(msg)?,
                F::Sync(_) | F::Flush(_) => {
                    self.batch.push(msg);
                    self.batch_bytes = 0;
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

    /// A backend message while no exchange runs: notifications, notices and parameter
    /// reports go to the client at once (a client waiting on LISTEN sends nothing); an
    /// error (the backend is being terminated) is passed on and ends the session.
    async fn relay_idle(&mut self, msg: B) -> Result<()> {
        let ended = |detail: String| Error::Backend { addr: self.backend.addr.clone(), detail };
        match msg {
            B::NotificationResponse(_) | B::NoticeResponse(_) => self.client.send(msg).await,
            B::ParameterStatus(p) => {
                backend::check_pinned(&p.name, &p.value)?;
                self.client.send(B::ParameterStatus(p)).await
            }
            B::ErrorResponse(e) => {
                let error = ended("ended the session".into());
                self.client.send(B::ErrorResponse(e)).await?;
                Err(error)
            }
            other => Err(ended(format!("sent {other:?} between exchanges"))),
        }
    }

    /// A FunctionCall (the fast-path interface; psycopg2's large objects use it) names a
    /// function by oid with binary arguments: nothing policy could judge. Refused like a
    /// statement (recorded), and the session goes on.
    async fn function_call(&mut self) -> Result<()> {
        let refusal = Refusal::Unsupported {
            detail: "FunctionCall (the fast-path function interface) is not supported through Portcullis; call the function in SQL".into(),
        };
        self.gate.refused(&Work::query("<FunctionCall>"), None, &refusal).await;
        self.refuse(&refusal, true).await
    }

    /// Keep an extended-protocol message until Sync, within the batch limits.
    fn buffer(&mut self, msg: F) -> Result<()> {
        let settings = self.deps.settings;
        self.batch_bytes = self.batch_bytes.saturating_add(approx_size(&msg));
        if self.batch_bytes > settings.max_batch_bytes || self.batch.len() >= settings.max_batch_messages {
            return Err(Error::Limit {
                code: reply::PROGRAM_LIMIT_EXCEEDED,
                detail: format!(
                    "more than {} bytes or {} messages sent before a Sync (the gateway's limits); connection closed",
                    settings.max_batch_bytes, settings.max_batch_messages
                ),
            });
        }
        self.batch.push(msg);
        Ok(())
    }

    /// Phases "classify", "decide" and "hold" for one SQL string: one policy request
    /// per statement, combined by the gate. Refusals are recorded by the gate; the
    /// outer error ends the session.
    async fn clear_sql(&mut self, work: &Work) -> Result<std::result::Result<ClearedSql, Refusal>> {
        let judged = match self.judge_sql(work).await? {
            Ok(j) => j,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let JudgedSql { judgement, lineages, writes, copy_out, .. } = judged;
        let cleared = self.clear(work, judgement).await?;
        Ok(cleared.map(|cleared| ClearedSql { cleared, lineages, writes, copy_out }))
    }

    /// Phase "hold" (through the gate) for decided work.
    async fn clear(&mut self, work: &Work, judgement: Judgement) -> Result<std::result::Result<Cleared, Refusal>> {
        let mut door = PgClient { client: &mut self.client, cancel: &self.hold_cancel };
        self.gate.clear(&mut door, work, judgement).await
    }

    /// Phases "classify" and "decide" for one SQL string: one policy request per
    /// statement, combined by the gate. An unclassifiable string is refused (recorded).
    async fn judge_sql(&mut self, work: &Work) -> Result<std::result::Result<JudgedSql, Refusal>> {
        self.refresh_catalog().await;
        let statements = match classify_off_thread(work.text()).await {
            Ok(s) => s,
            Err(e) => {
                let refusal = Refusal::from(e).located_in(work.text());
                self.gate.refused(work, None, &refusal).await;
                return Ok(Err(refusal));
            }
        };
        let resource = &self.gate.resource().name;
        // A statement writes if its kind does, or if it calls a function with side
        // effects (a SELECT of nextval): audited ahead, and `match.writes` for policy.
        let volatility = &self.catalog.volatility;
        let writes: Vec<bool> =
            statements.iter().map(|st| statement_writes(st, |f| volatility.is_side_effect_free(f))).collect();
        let requests: Vec<Request> =
            statements.iter().zip(&writes).map(|(st, writes)| policy_request(resource, st, *writes)).collect();
        if statements.iter().any(|st| matches!(st.kind, StatementKind::Ddl | StatementKind::Do | StatementKind::Call)) {
            // It may change relations or functions: the catalog is read again once it has run.
            self.ran_ddl = true;
        }
        let mut judgement = self.gate.decide(&requests)?;
        // COPY ... TO STDOUT rows are masked as they stream (`copy_out`).
        let copy_out = statements.iter().find_map(|st| st.copy_out.clone());
        door_rules(&mut judgement, &statements);
        let writes = writes.contains(&true);
        let runs_unseen_code = statements.iter().any(|st| {
            matches!(
                st.kind,
                StatementKind::Do
                    | StatementKind::Call
                    | StatementKind::Prepare
                    | StatementKind::Set
                    | StatementKind::Grant
                    | StatementKind::Other(_)
            ) || st.dynamic_sql
                || st.functions.iter().any(|f| !self.catalog.volatility.is_builtin_side_effect_free(f))
        });
        let lineages = statements.into_iter().map(|st| st.lineage).collect();
        Ok(Ok(JudgedSql { judgement, lineages, writes, runs_unseen_code, copy_out }))
    }

    /// Read the catalog again if this session's copy is no longer the one to use: it
    /// expired, another session of the node ran DDL, or this one did (then once it has
    /// committed, so that the new copy shows it; until then views and computed columns
    /// are masked whole, see `SchemaView::settled`).
    async fn refresh_catalog(&mut self) {
        let resource = &self.gate.resource().name;
        if self.ran_ddl {
            if self.tx_status != TransactionStatus::Idle {
                return;
            }
            self.deps.catalogs.forget(resource);
        } else if self.deps.catalogs.is_current(resource, &self.catalog) {
            return;
        }
        match self.deps.catalogs.get(resource, &self.target, self.deps.settings.backend_timeout).await {
            Ok(catalog) => {
                self.catalog = catalog;
                self.schema_trusted = true;
                self.ran_ddl = false;
            }
            Err(e) => {
                // Keep the old copy for what functions do; judge columns by text alone.
                tracing::warn!(resource = %resource, error = %e, "catalog unavailable; result columns judged from statement text");
                self.schema_trusted = false;
            }
        }
    }

    /// The catalog result masking may go by (see `refresh_catalog`).
    fn masking_catalog(&self) -> Option<MaskingCatalog> {
        self.schema_trusted.then(|| MaskingCatalog { catalog: self.catalog.clone(), settled: !self.ran_ddl })
    }

    /// Tell the client a statement was refused: the error and, for a finished
    /// exchange, our own ReadyForQuery.
    async fn refuse(&mut self, refusal: &Refusal, with_ready: bool) -> Result<()> {
        if with_ready {
            self.fail_open_transaction().await?;
        }
        self.client.queue(reply::refusal(refusal))?;
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
        if self.tx_status != TransactionStatus::Transaction {
            return Ok(());
        }
        self.backend.send(&F::Query(pgwire::messages::simplequery::Query::new(FAIL_TRANSACTION.into()))).await?;
        self.drain_until_ready().await
    }

    /// Read and drop backend output up to ReadyForQuery (results we may not release).
    async fn drain_until_ready(&mut self) -> Result<()> {
        loop {
            if let B::ReadyForQuery(r) = self.backend.read().await? {
                self.tx_status = r.status;
                return Ok(());
            }
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            preview_rows: self.deps.settings.preview_rows,
            preview_value_chars: self.deps.settings.preview_value_chars,
        }
    }

    /// Phase "record" for what the relay saw.
    async fn record(&mut self, outcome: Outcome, started: Instant) {
        if let Some(s) = outcome.ready_status {
            self.tx_status = s;
            // Postgres drops every portal when a transaction ends (cursors WITH HOLD
            // aside, which the gateway never binds): so does the mirror, or a client
            // could grow it without bound with portal names it never closes.
            if s == TransactionStatus::Idle {
                self.portals.clear();
            }
        }
        let result = ResultRecord {
            tags: outcome.tags,
            rows: outcome.rows,
            error: outcome.error,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            preview: outcome.preview,
            ..ResultRecord::default()
        };
        self.gate.record(result).await;
    }
}

/// About the memory a buffered client message holds.
fn approx_size(msg: &F) -> usize {
    const OVERHEAD: usize = 64;
    let strings =
        |a: &Option<String>, b: &Option<String>| a.as_ref().map_or(0, String::len) + b.as_ref().map_or(0, String::len);
    OVERHEAD
        + match msg {
            F::Parse(p) => p.query.len() + strings(&p.name, &None) + p.type_oids.len() * 4,
            F::Bind(b) => {
                strings(&b.portal_name, &b.statement_name)
                    + b.parameters.iter().map(|v| v.as_ref().map_or(0, |v| v.len()) + 8).sum::<usize>()
                    + (b.parameter_format_codes.len() + b.result_column_format_codes.len()) * 2
            }
            F::Describe(d) => strings(&d.name, &None),
            F::Execute(e) => strings(&e.name, &None),
            F::Close(c) => strings(&c.name, &None),
            _ => 0,
        }
}

/// Parsing takes about a millisecond per 10 KiB: texts past this size are classified
/// on a blocking thread, so one client's big statements cannot stall the node's async
/// workers (and with them its lease renewal).
const CLASSIFY_INLINE_MAX: usize = 64 * 1024;

async fn classify_off_thread(sql: &str) -> Result<Vec<Statement>> {
    if sql.len() <= CLASSIFY_INLINE_MAX || sql.len() > DEFAULT_MAX_SQL_BYTES {
        return classify(sql);
    }
    let owned = sql.to_string();
    tokio::task::spawn_blocking(move || classify(&owned))
        .await
        .unwrap_or_else(|e| Err(Error::SqlTooComplex { detail: format!("the classifier failed: {e}") }))
}

/// Client messages on their way to the backend. Messages that run SQL (Query,
/// Execute) leave only under a [`Permit`] that covers them all: phase "relay" cannot
/// run work the gate did not decide and audit.
#[derive(Default)]
struct Outbound {
    messages: Vec<F>,
}

impl Outbound {
    fn push(&mut self, msg: F) {
        self.messages.push(msg);
    }

    fn len(&self) -> usize {
        self.messages.len()
    }

    fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    fn truncate(&mut self, len: usize) {
        self.messages.truncate(len);
    }

    fn retain(&mut self, keep: impl FnMut(&F) -> bool) {
        self.messages.retain(keep);
    }

    /// Send everything, if `permit` covers every message that runs SQL.
    async fn send(self, backend: &mut BackendConn, permit: &Permit) -> Result<()> {
        let runs = self.messages.iter().filter(|m| matches!(m, F::Query(_) | F::Execute(_))).count();
        if runs > permit.covers() {
            return Err(Error::Unpermitted { runs, covered: permit.covers() });
        }
        for m in &self.messages {
            backend.queue(m)?;
        }
        backend.flush().await
    }
}
