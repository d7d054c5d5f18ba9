//! The extended query protocol: messages collected until Sync (or Flush), Parse
//! cleared and its decision bound to the statement name, every Execute audited.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::extendedquery::{Describe, Sync as SyncMsg};

use super::super::relay::{Expect, RowsContext, relay};
use super::{Decided, Outbound, Prepared, Session, ready};
use crate::error::Result;
use crate::gate::{Effect, Permit, Refusal, Work};
use crate::store::Store;

impl<S: Store> Session<'_, S> {
    pub(super) async fn run_batch(&mut self) -> Result<()> {
        let started = Instant::now();
        let batch = std::mem::take(&mut self.batch);
        let ends_with_sync = matches!(batch.last(), Some(F::Sync(_)));
        let mut outbound = Outbound::default();
        let mut expects: VecDeque<Expect> = VecDeque::new();
        let mut refusal: Option<Refusal> = self.gate.check_lease().err();
        // The batch's executions, audited together once the whole batch is cleared.
        let mut executions: Vec<Arc<Decided>> = Vec::new();
        // Where the first Execute starts in `outbound` / `expects`: a refused batch runs
        // nothing from there on (see below).
        let mut first_execute: Option<(usize, usize)> = None;

        for msg in batch {
            if refusal.is_some() {
                break;
            }
            match msg {
                F::Parse(ref p) => {
                    let name = p.name.clone().unwrap_or_default();
                    let work = Work::Sql { sql: p.query.clone(), extended: true };
                    match self.clear_sql(&work).await? {
                        Ok(sql) => {
                            let decided = Arc::new(Decided { work, sql });
                            self.statements.insert(name, Prepared { decided, columns: None });
                            outbound.push(msg);
                            expects.push_back(Expect::Completion { inject: false });
                        }
                        Err(r) => refusal = Some(r),
                    }
                }
                F::Bind(ref b) => {
                    let statement = b.statement_name.clone().unwrap_or_default();
                    if !self.statements.contains_key(&statement) {
                        let r = Refusal::Undecided {
                            detail: format!(
                                "statement {statement:?} was not prepared through this gateway, so no decision covers it"
                            ),
                        };
                        self.gate.refused(&Work::Sql { sql: String::new(), extended: true }, None, &r).await;
                        refusal = Some(r);
                        continue;
                    }
                    self.portals.insert(b.portal_name.clone().unwrap_or_default(), statement);
                    outbound.push(msg);
                    expects.push_back(Expect::Completion { inject: false });
                }
                F::Describe(ref d) => {
                    let name = d.name.clone().unwrap_or_default();
                    let (statement, portal) =
                        if d.target_type == b'S' { (Some(name), None) } else { (None, Some(name)) };
                    outbound.push(msg);
                    expects.push_back(Expect::Describe { inject: false, statement, portal });
                }
                F::Execute(ref e) => {
                    let portal = e.name.clone().unwrap_or_default();
                    let prepared = self.portals.get(&portal).and_then(|s| self.statements.get(s));
                    let Some(prepared) = prepared else {
                        // Not bound here: a portal no decision covers (a SQL cursor from
                        // DECLARE is a portal too, and its rows would leave unmasked).
                        let r = Refusal::Undecided {
                            detail: format!(
                                "portal {portal:?} was not bound through this gateway, so no decision covers it"
                            ),
                        };
                        self.gate.refused(&Work::Sql { sql: String::new(), extended: true }, None, &r).await;
                        refusal = Some(r);
                        continue;
                    };
                    let decided = prepared.decided.clone();
                    let columns = prepared.columns.clone();
                    let masks = decided.sql.cleared.judgement.masks.clone();
                    first_execute.get_or_insert((outbound.len(), expects.len()));
                    if !masks.is_empty() && columns.is_none() {
                        // Learn the columns so masks by name apply; the answer stays ours.
                        outbound.push(F::Describe(Describe::new(b'P', Some(portal.clone()))));
                        expects.push_back(Expect::Describe { inject: true, statement: None, portal: Some(portal) });
                    }
                    let lineages = decided.sql.lineages.clone();
                    executions.push(decided);
                    outbound.push(msg);
                    expects.push_back(Expect::Rows(Box::new(RowsContext::new(masks, lineages, columns, false))));
                }
                F::Close(ref c) => {
                    let name = c.name.clone().unwrap_or_default();
                    if c.target_type == b'S' {
                        self.statements.remove(&name);
                    } else {
                        self.portals.remove(&name);
                    }
                    outbound.push(msg);
                    expects.push_back(Expect::Completion { inject: false });
                }
                F::Sync(_) => {
                    outbound.push(msg);
                    expects.push_back(Expect::Ready { inject: false });
                }
                F::Flush(_) => outbound.push(msg),
                _ => {}
            }
        }
        // Phase "audit": the executions' records, together. Strict mode commits them
        // before anything of the batch is sent (`Effect::Writes`), whatever they are:
        // a batch is sent in one piece.
        let mut permit = Permit::nothing();
        if refusal.is_none() && !executions.is_empty() {
            let audited: Vec<_> = executions.iter().map(|d| (&d.work, &d.sql.cleared)).collect();
            match self.gate.audit(&audited, Effect::Writes).await {
                Ok(p) => permit = p,
                Err(r) => {
                    refusal = Some(r);
                    outbound = Outbound::default();
                    expects.clear();
                }
            }
        }
        if refusal.is_some() && !outbound.is_empty() {
            // A refused statement fails the whole batch, as an error inside Postgres's
            // implicit transaction would roll back what ran before it: nothing from the
            // first Execute on is sent. What comes before it (Parse, Bind, Describe) runs
            // under a Sync of our own, so named statements stay in step with the backend;
            // then the client gets the refusal.
            if let Some((f, e)) = first_execute {
                outbound.truncate(f);
                expects.truncate(e);
            }
            outbound.retain(|m| !matches!(m, F::Sync(_) | F::Flush(_)));
            expects.retain(|e| !matches!(e, Expect::Ready { .. }));
            outbound.push(F::Sync(SyncMsg::new()));
            expects.push_back(Expect::Ready { inject: true });
        }
        if !outbound.is_empty() {
            outbound.send(&mut self.backend, &permit).await?;
            let limits = self.limits();
            let outcome = relay(&mut self.backend, &mut self.client, expects, &limits).await?;
            for (statement, _portal, columns) in &outcome.described {
                if let Some(p) = statement.as_ref().and_then(|s| self.statements.get_mut(s)) {
                    p.columns = Some(columns.clone());
                }
            }
            self.record(outcome, started).await;
        }
        if let Some(refusal) = refusal {
            // The backend is idle here (anything sent ended with a Sync of ours).
            self.fail_open_transaction().await?;
            self.client.queue(super::super::reply::refusal(&refusal))?;
            if ends_with_sync {
                self.client.queue(ready(self.tx_status))?;
            }
            self.client.flush().await?;
        }
        Ok(())
    }
}
