//! The extended query protocol: messages collected until Sync (or Flush), Parse
//! decided and its decision bound to the statement name, every Execute audited.

use std::collections::VecDeque;
use std::time::Instant;

use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::extendedquery::{Describe, Sync as SyncMsg};

use super::super::relay::{Expect, RowsContext, relay};
use super::super::reply;
use super::hold::Hold;
use super::{Prepared, Session, ready};
use crate::error::Result;
use crate::store::Store;

impl<S: Store> Session<'_, S> {
    pub(super) async fn run_batch(&mut self) -> Result<()> {
        let started = Instant::now();
        let batch = std::mem::take(&mut self.batch);
        let ends_with_sync = matches!(batch.last(), Some(F::Sync(_)));
        let mut forward: Vec<F> = Vec::with_capacity(batch.len() + 1);
        let mut expects: VecDeque<Expect> = VecDeque::new();
        let mut commits = Vec::new();
        let mut refusal: Option<(&'static str, String)> = None;
        // The batch's executions, audited together once the whole batch is allowed.
        let mut executions = Vec::new();
        // Where the first Execute starts in `forward` / `expects`: a refused batch runs
        // nothing from there on (see below).
        let mut first_execute: Option<(usize, usize)> = None;

        if !self.serving() {
            refusal = Some((
                reply::CANNOT_CONNECT_NOW,
                "this Portcullis node lost its quorum lease; statement not run".into(),
            ));
        }
        for msg in batch {
            if refusal.is_some() {
                break;
            }
            match msg {
                F::Parse(ref p) => {
                    let name = p.name.clone().unwrap_or_default();
                    match self.prepare(&p.query).await? {
                        Ok(prepared) => {
                            self.statements.insert(name, prepared);
                            forward.push(msg);
                            expects.push_back(Expect::Completion { inject: false });
                        }
                        Err(r) => refusal = Some(r),
                    }
                }
                F::Bind(ref b) => {
                    let statement = b.statement_name.clone().unwrap_or_default();
                    if !self.statements.contains_key(&statement) {
                        refusal = Some((
                            reply::INSUFFICIENT_PRIVILEGE,
                            format!(
                                "statement {statement:?} was not prepared through this gateway, so no decision covers it"
                            ),
                        ));
                        continue;
                    }
                    self.portals.insert(b.portal_name.clone().unwrap_or_default(), statement);
                    forward.push(msg);
                    expects.push_back(Expect::Completion { inject: false });
                }
                F::Describe(ref d) => {
                    let name = d.name.clone().unwrap_or_default();
                    let (statement, portal) =
                        if d.target_type == b'S' { (Some(name), None) } else { (None, Some(name)) };
                    forward.push(msg);
                    expects.push_back(Expect::Describe { inject: false, statement, portal });
                }
                F::Execute(ref e) => {
                    let portal = e.name.clone().unwrap_or_default();
                    let Some(statement) = self.portals.get(&portal).cloned() else {
                        // Unknown portal: the backend answers with its own error.
                        first_execute.get_or_insert((forward.len(), expects.len()));
                        forward.push(msg);
                        expects.push_back(Expect::Rows(Box::default()));
                        continue;
                    };
                    let Some(prepared) = self.statements.get(&statement) else { continue };
                    let masks = prepared.masks.clone();
                    let lineages = prepared.lineages.clone();
                    let columns = prepared.columns.clone();
                    let event = self.event(
                        "statement",
                        serde_json::json!({
                            "sql": prepared.text, "kinds": prepared.kinds, "decision": if prepared.approval.is_some() { "approved" } else { "allow" },
                            "rules": prepared.rule, "approval": prepared.approval, "masked": !masks.is_empty(), "extended": true,
                        }),
                    );
                    executions.push(event);
                    first_execute.get_or_insert((forward.len(), expects.len()));
                    if !masks.is_empty() && columns.is_none() {
                        // Learn the columns so masks by name apply; the answer stays ours.
                        forward.push(F::Describe(Describe::new(b'P', Some(portal.clone()))));
                        expects.push_back(Expect::Describe { inject: true, statement: None, portal: Some(portal) });
                    }
                    forward.push(msg);
                    expects.push_back(Expect::Rows(Box::new(RowsContext::new(masks, lineages, columns, false))));
                }
                F::Close(ref c) => {
                    let name = c.name.clone().unwrap_or_default();
                    if c.target_type == b'S' {
                        self.statements.remove(&name);
                    } else {
                        self.portals.remove(&name);
                    }
                    forward.push(msg);
                    expects.push_back(Expect::Completion { inject: false });
                }
                F::Sync(_) => {
                    forward.push(msg);
                    expects.push_back(Expect::Ready { inject: false });
                }
                F::Flush(_) => forward.push(msg),
                _ => {}
            }
        }
        if refusal.is_none()
            && !executions.is_empty()
            && let Some(c) = self.audit_all(executions).await
        {
            commits.push(c);
        }
        // Strict audit: every execution's record is committed before anything is sent.
        for c in commits {
            if !matches!(c.await, Ok(Ok(()))) {
                refusal = Some((
                    reply::CANNOT_CONNECT_NOW,
                    "the audit record could not be committed (no quorum); statement not run".into(),
                ));
                forward.clear();
                expects.clear();
                break;
            }
        }
        if refusal.is_some() && !forward.is_empty() {
            // A refused statement fails the whole batch, as an error inside Postgres's
            // implicit transaction would roll back what ran before it: nothing from the
            // first Execute on is sent. What comes before it (Parse, Bind, Describe) runs
            // under a Sync of our own, so named statements stay in step with the backend;
            // then the client gets the refusal.
            if let Some((f, e)) = first_execute {
                forward.truncate(f);
                expects.truncate(e);
            }
            forward.retain(|m| !matches!(m, F::Sync(_) | F::Flush(_)));
            expects.retain(|e| !matches!(e, Expect::Ready { .. }));
            forward.push(F::Sync(SyncMsg::new()));
            expects.push_back(Expect::Ready { inject: true });
        }
        if !forward.is_empty() {
            for m in &forward {
                self.backend.queue(m)?;
            }
            self.backend.flush().await?;
            let limits = self.limits();
            let outcome = relay(&mut self.backend, &mut self.client, expects, &limits).await?;
            if let Some(s) = outcome.ready_status {
                self.tx_status = s;
            }
            for (statement, _portal, columns) in &outcome.described {
                if let Some(p) = statement.as_ref().and_then(|s| self.statements.get_mut(s)) {
                    p.columns = Some(columns.clone());
                }
            }
            self.record(&outcome, started).await;
        }
        if let Some((code, message)) = refusal {
            // The backend is idle here (anything sent ended with a Sync of ours).
            self.fail_open_transaction().await?;
            self.client.queue(reply::error(code, &message))?;
            if ends_with_sync {
                self.client.queue(ready(self.tx_status))?;
            }
            self.client.flush().await?;
        }
        Ok(())
    }

    /// Classify, decide and (if needed) hold a Parse; the outer error is fatal to the
    /// session, the inner one refuses the statement.
    async fn prepare(&mut self, sql: &str) -> Result<std::result::Result<Prepared, (&'static str, String)>> {
        let judgement = match self.judge(sql) {
            Ok(j) => j,
            Err(e) => return Ok(Err((reply::code_for(&e), e.to_string()))),
        };
        if let Some(reason) = judgement.denied {
            let refused =
                self.event("refused", serde_json::json!({"sql": sql, "kinds": judgement.kinds, "reason": reason}));
            drop(self.audit(refused).await);
            return Ok(Err((reply::INSUFFICIENT_PRIVILEGE, reason)));
        }
        let mut approval = None;
        if let Some(review) = &judgement.review {
            match self.hold(sql, review).await? {
                Hold::Approved(id) => approval = Some(id),
                Hold::Refused { code, message, approval } => {
                    let refused =
                        self.event("refused", serde_json::json!({"sql": sql, "approval": approval, "reason": message}));
                    drop(self.audit(refused).await);
                    return Ok(Err((code, message)));
                }
            }
        }
        Ok(Ok(Prepared {
            text: sql.to_string(),
            kinds: judgement.kinds.join(","),
            masks: judgement.masks,
            lineages: judgement.lineages,
            rule: judgement.rules.first().cloned(),
            approval,
            columns: None,
        }))
    }
}
