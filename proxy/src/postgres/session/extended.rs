//! The extended query protocol: messages collected until Sync (or Flush), Parse
//! decided and its decision bound to the statement name, Bind binding that decision
//! and its parameters to the portal, every Execute audited.
//!
//! A statement that policy sends to review is held at each execution by default, and
//! the approver sees the parameters that execution runs with; one approval releases
//! one execution (a review rule with `approval_covers: statement` holds it once, at
//! Parse, for every execution).
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

use super::super::relay::{Expect, RowsContext, relay};
use super::{Clearance, Decided, JudgedSql, Outbound, Portal, Prepared, Session, ready};
use crate::error::{Error, Result};
use crate::gate::{Cleared, Combined, Effect, Permit, Refusal, Work};
use crate::policy::ApprovalCovers;
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
        bound: Box<Portal>,
    },
    ClosePortal {
        name: String,
    },
}

/// One Execute of the batch, decided (and, if held, approved).
struct Execution {
    work: Work,
    decided: Arc<Decided>,
    /// The approval of this execution, when its statement is held per execution.
    approved: Option<Cleared>,
}

impl Execution {
    fn cleared(&self) -> Option<&Cleared> {
        match (&self.decided.clearance, &self.approved) {
            (_, Some(c)) | (Clearance::Statement(c), None) => Some(c),
            (Clearance::EachExecution(_), None) => None,
        }
    }
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

    /// The decision a statement name has at this point of the batch, and the confirmed
    /// statement it comes from (with what was learned of it), if it is not new.
    fn statement<'s, S: Store>(
        &'s self,
        session: &'s Session<'_, S>,
        name: &str,
    ) -> Option<(&'s Arc<Decided>, Option<&'s Prepared>)> {
        for change in self.changes.iter().rev() {
            match change {
                Change::Prepare { name: n, decided } if n == name => return Some((decided, None)),
                Change::CloseStatement { name: n } if n == name => return None,
                _ => {}
            }
        }
        session.statements.get(name).map(|p| (&p.decided, Some(p)))
    }

    /// Note the approval of `portal`'s execution: on its pending Bind if the batch has
    /// one, else on the confirmed portal.
    fn approve<S: Store>(&mut self, session: &mut Session<'_, S>, portal: &str, cleared: &Cleared) {
        for change in self.changes.iter_mut().rev() {
            match change {
                Change::Bind { portal: p, bound } if p == portal => {
                    bound.approved = Some(cleared.clone());
                    return;
                }
                Change::ClosePortal { name } if name == portal => return,
                _ => {}
            }
        }
        if let Some(p) = session.portals.get_mut(portal) {
            p.approved = Some(cleared.clone());
        }
    }

    fn portal<'s, S: Store>(&'s self, session: &'s Session<'_, S>, name: &str) -> Option<&'s Portal> {
        for change in self.changes.iter().rev() {
            match change {
                Change::Bind { portal, bound } if portal == name => return Some(bound),
                Change::ClosePortal { name: n } if n == name => return None,
                _ => {}
            }
        }
        session.portals.get(name)
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
        let mut executions: Vec<Execution> = Vec::new();
        // Where the first Execute starts in `outbound` / `expects`: a refused batch runs
        // nothing from there on (see below).
        let mut first_execute: Option<(usize, usize)> = None;
        // An Execute of this batch ran code the gateway cannot see into.
        let mut unseen_code_ran = false;

        for msg in batch {
            if refusal.is_some() {
                break;
            }
            match msg {
                F::Parse(ref p) => {
                    let name = p.name.clone().unwrap_or_default();
                    let work = Work::prepared(p.query.as_str().into(), Vec::new());
                    let judged = match self.judge_sql(&work).await? {
                        Ok(j) => j,
                        Err(r) => {
                            refusal = Some(r);
                            continue;
                        }
                    };
                    let JudgedSql { mut judgement, lineages, runs_unseen_code, copy_out, .. } = judged;
                    if copy_out.is_some() && !judgement.masks.is_empty() {
                        judgement.deny(
                            "denied: COPY ... TO STDOUT under a mask rule runs through the simple query protocol only (its rows are masked there)".into(),
                        );
                    }
                    // Postgres reports a changed setting only at the Sync, after it has
                    // read this Parse: text whose reading depends on the pinned settings
                    // may not follow code the gateway cannot see in the same pipeline.
                    if unseen_code_ran && reading_depends_on_settings(&p.query) {
                        let r = Refusal::Denied {
                            reason: "denied: this statement's text (a backslash or non-ASCII) may be read differently after the code an earlier statement of the same pipeline ran; send a Sync first".into(),
                        };
                        self.gate.refused(&work, Some(&judgement), &r).await;
                        refusal = Some(r);
                        continue;
                    }
                    let clearance = match &judgement.verdict {
                        Combined::Review(r) if r.covers == ApprovalCovers::Execution => {
                            Clearance::EachExecution(judgement)
                        }
                        _ => match self.clear(&work, judgement).await? {
                            Ok(cleared) => Clearance::Statement(cleared),
                            Err(r) => {
                                refusal = Some(r);
                                continue;
                            }
                        },
                    };
                    // The unnamed statement is replaced; a named one must not exist.
                    let change = if !name.is_empty() && view.statement(self, &name).is_some() {
                        Change::Duplicate { name }
                    } else {
                        let declared_types = p.type_oids.clone();
                        Change::Prepare {
                            name,
                            decided: Arc::new(Decided { work, clearance, lineages, declared_types, runs_unseen_code }),
                        }
                    };
                    outbound.push(msg);
                    expects.push_back(Expect::Completion { confirms: view.push(change) });
                }
                F::Bind(ref b) => {
                    let statement = b.statement_name.clone().unwrap_or_default();
                    let found = view.statement(self, &statement).map(|(decided, prepared)| {
                        let types = prepared.and_then(|p| p.param_types.as_deref()).unwrap_or(&decided.declared_types);
                        let params = super::super::params::render(b, types, &decided.judgement().masks);
                        (decided.clone(), params)
                    });
                    let Some((decided, params)) = found else {
                        let what = format!("statement {statement:?} was not prepared");
                        refusal = Some(self.undecided(what).await);
                        continue;
                    };
                    let portal = b.portal_name.clone().unwrap_or_default();
                    let result_formats = b.result_column_format_codes.clone();
                    let bound = Portal { statement, decided, params, result_formats, approved: None };
                    outbound.push(msg);
                    let bound = Box::new(bound);
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
                    let found = view.portal(self, &portal).map(|bound| {
                        // Columns learned for the statement apply if it is still the one bound.
                        let columns = view
                            .statement(self, &bound.statement)
                            .filter(|(decided, _)| Arc::ptr_eq(decided, &bound.decided))
                            .and_then(|(_, prepared)| prepared?.columns.clone())
                            .map(|c| c.with_formats(&bound.result_formats));
                        let work = Work::prepared(bound.decided.work.shared_text(), bound.params.clone());
                        (bound.decided.clone(), columns, work, bound.approved.clone())
                    });
                    let Some((decided, columns, work, mut approved)) = found else {
                        // Not bound here: a portal no decision covers (a SQL cursor from
                        // DECLARE is a portal too, and its rows would leave unmasked).
                        refusal = Some(self.undecided(format!("portal {portal:?} was not bound")).await);
                        continue;
                    };
                    if let (Clearance::EachExecution(judgement), None) = (&decided.clearance, &approved) {
                        // Phase "hold" for this execution, its parameters shown.
                        match self.clear(&work, judgement.clone()).await? {
                            Ok(cleared) => {
                                view.approve(self, &portal, &cleared);
                                approved = Some(cleared);
                            }
                            Err(r) => {
                                refusal = Some(r);
                                continue;
                            }
                        }
                    }
                    let masks = decided.judgement().masks.clone();
                    first_execute.get_or_insert((outbound.len(), expects.len()));
                    if !masks.is_empty() && columns.is_none() {
                        // Learn the columns so masks by name apply; the answer stays ours.
                        outbound.push(F::Describe(Describe::new(b'P', Some(portal.clone()))));
                        expects.push_back(Expect::Describe { inject: true, statement: None, portal: Some(portal) });
                    }
                    let lineages = decided.lineages.clone();
                    unseen_code_ran |= decided.runs_unseen_code;
                    executions.push(Execution { work, decided, approved });
                    outbound.push(msg);
                    expects.push_back(Expect::Rows(Box::new(RowsContext::new(
                        masks,
                        lineages,
                        self.masking_catalog(),
                        columns,
                        false,
                    ))));
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
            let audited: Option<Vec<_>> = executions.iter().map(|e| e.cleared().map(|c| (&e.work, c))).collect();
            // Every execution was cleared above; a gap would be a bug: run nothing.
            let Some(audited) = audited else {
                return Err(Error::Unpermitted { runs: executions.len(), covered: 0 });
            };
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
            for (statement, types) in &outcome.param_types {
                if let Some(p) = self.statements.get_mut(statement) {
                    p.param_types = Some(types.clone());
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
                    self.statements.insert(name, Prepared { decided, columns: None, param_types: None });
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
                    self.portals.insert(portal, *bound);
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
        let work = Work::prepared("".into(), Vec::new());
        self.gate.refused(&work, None, &refusal).await;
        refusal
    }
}

/// Whether Postgres could read `sql` differently under other settings of
/// `standard_conforming_strings` or `client_encoding`: only a backslash or a non-ASCII
/// byte can change how a text is read; plain ASCII without backslashes cannot.
fn reading_depends_on_settings(sql: &str) -> bool {
    sql.bytes().any(|b| b == b'\\' || !b.is_ascii())
}
