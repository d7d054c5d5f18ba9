//! The extended query protocol: messages collected until Sync (or Flush), Parse
//! cleared and its decision bound to the statement name, Bind binding that decision
//! to the portal, every Execute audited.
//!
//! The gateway's statements and portals mirror the backend's, not the client's
//! intent: a batch's Parse, Bind and Close change them only once the backend confirms
//! each (ParseComplete, BindComplete, CloseComplete). Postgres refuses a Parse of a
//! statement name that already exists and keeps the old statement, and a portal keeps
//! running the statement it was bound from even after that name is closed and parsed
//! again; the mirror does the same, so a decision always belongs to what will run.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::extendedquery::{Describe, Sync as SyncMsg};

use super::super::relay::{Columns, Expect, RowsContext, relay};
use super::{Decided, Outbound, Portal, Prepared, Session, ready};
use crate::error::{Error, Result};
use crate::gate::{Effect, Permit, Refusal, Work};
use crate::store::Store;

/// A change to the statements or portals that waits for the backend's confirmation.
enum Change {
    Prepare {
        name: String,
        decided: Arc<Decided>,
    },
    /// A Parse of a name that exists: the backend must refuse it (42P05).
    Duplicate {
        name: String,
    },
    CloseStatement {
        name: String,
    },
    Bind {
        portal: String,
        bound: Portal,
    },
    ClosePortal {
        name: String,
    },
}

/// The statements and portals as they will be after the batch's changes so far.
#[derive(Default)]
struct BatchView {
    changes: Vec<Change>,
}

impl BatchView {
    /// Record `change`; returns its index for [`Expect::Completion::confirms`].
    fn push(&mut self, change: Change) -> Option<usize> {
        self.changes.push(change);
        Some(self.changes.len() - 1)
    }

    /// The decision a statement name has at this point of the batch, and its columns
    /// where known.
    fn statement<S: Store>(&self, session: &Session<'_, S>, name: &str) -> Option<(Arc<Decided>, Option<Columns>)> {
        for change in self.changes.iter().rev() {
            match change {
                Change::Prepare { name: n, decided } if n == name => return Some((decided.clone(), None)),
                Change::CloseStatement { name: n } if n == name => return None,
                _ => {}
            }
        }
        session.statements.get(name).map(|p| (p.decided.clone(), p.columns.clone()))
    }

    fn portal<S: Store>(&self, session: &Session<'_, S>, name: &str) -> Option<Portal> {
        for change in self.changes.iter().rev() {
            match change {
                Change::Bind { portal, bound } if portal == name => return Some(bound.clone()),
                Change::ClosePortal { name: n } if n == name => return None,
                _ => {}
            }
        }
        session.portals.get(name).cloned()
    }
}

impl<S: Store> Session<'_, S> {
    pub(super) async fn run_batch(&mut self) -> Result<()> {
        let started = Instant::now();
        let batch = std::mem::take(&mut self.batch);
        let ends_with_sync = matches!(batch.last(), Some(F::Sync(_)));
        let mut outbound = Outbound::default();
        let mut expects: VecDeque<Expect> = VecDeque::new();
        let mut view = BatchView::default();
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
                            // The unnamed statement is replaced; a named one must not exist.
                            let change = if !name.is_empty() && view.statement(self, &name).is_some() {
                                Change::Duplicate { name }
                            } else {
                                Change::Prepare { name, decided: Arc::new(Decided { work, sql }) }
                            };
                            outbound.push(msg);
                            expects.push_back(Expect::Completion { confirms: view.push(change) });
                        }
                        Err(r) => refusal = Some(r),
                    }
                }
                F::Bind(ref b) => {
                    let statement = b.statement_name.clone().unwrap_or_default();
                    let Some((decided, _)) = view.statement(self, &statement) else {
                        let what = format!("statement {statement:?} was not prepared");
                        refusal = Some(self.undecided(what).await);
                        continue;
                    };
                    let portal = b.portal_name.clone().unwrap_or_default();
                    let bound = Portal { statement, decided };
                    outbound.push(msg);
                    expects.push_back(Expect::Completion { confirms: view.push(Change::Bind { portal, bound }) });
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
                    let Some(bound) = view.portal(self, &portal) else {
                        // Not bound here: a portal no decision covers (a SQL cursor from
                        // DECLARE is a portal too, and its rows would leave unmasked).
                        refusal = Some(self.undecided(format!("portal {portal:?} was not bound")).await);
                        continue;
                    };
                    // Columns learned for the statement apply if it is still the one bound.
                    let columns = view
                        .statement(self, &bound.statement)
                        .filter(|(d, _)| Arc::ptr_eq(d, &bound.decided))
                        .and_then(|(_, c)| c);
                    let decided = bound.decided;
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
                    let change = if c.target_type == b'S' {
                        Change::CloseStatement { name }
                    } else {
                        Change::ClosePortal { name }
                    };
                    outbound.push(msg);
                    expects.push_back(Expect::Completion { confirms: view.push(change) });
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
            self.confirm(view, &outcome.confirmed)?;
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

    /// Apply the batch's changes the backend confirmed, in order.
    fn confirm(&mut self, view: BatchView, confirmed: &[usize]) -> Result<()> {
        let mut changes: Vec<Option<Change>> = view.changes.into_iter().map(Some).collect();
        for &i in confirmed {
            match changes.get_mut(i).and_then(Option::take) {
                Some(Change::Prepare { name, decided }) => {
                    self.statements.insert(name, Prepared { decided, columns: None });
                }
                Some(Change::Duplicate { name }) => {
                    // Our mirror and the backend disagree about what `name` is: fail closed.
                    return Err(Error::Protocol(format!(
                        "the backend accepted a Parse of statement {name:?}, which already existed; session ended"
                    )));
                }
                Some(Change::CloseStatement { name }) => {
                    self.statements.remove(&name);
                }
                Some(Change::Bind { portal, bound }) => {
                    self.portals.insert(portal, bound);
                }
                Some(Change::ClosePortal { name }) => {
                    self.portals.remove(&name);
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Refuse (and record) a message that names a statement or portal no decision of
    /// this gateway covers; `what` says which.
    async fn undecided(&mut self, what: String) -> Refusal {
        let refusal = Refusal::Undecided { detail: format!("{what} through this gateway, so no decision covers it") };
        self.gate.refused(&Work::Sql { sql: String::new(), extended: true }, None, &refusal).await;
        refusal
    }
}
