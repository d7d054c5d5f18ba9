//! The simple query protocol: one Query message, one or more statements, all decided
//! before any of it is sent.

use std::collections::VecDeque;
use std::time::Instant;

use pgwire::messages::PgWireBackendMessage as B;
use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::response::TransactionStatus;

use super::super::classify::Lineage;
use super::super::relay::{Expect, Limits, RowsContext, relay};
use super::super::reply;
use super::Session;
use super::hold::Hold;
use crate::error::Result;
use crate::mask::MaskPlan;
use crate::store::Store;

impl<S: Store> Session<'_, S> {
    pub(super) async fn simple_query(&mut self, sql: String) -> Result<()> {
        let started = Instant::now();
        if !self.serving() {
            return self
                .refuse(
                    reply::CANNOT_CONNECT_NOW,
                    "this Portcullis node lost its quorum lease; statement not run",
                    true,
                )
                .await;
        }
        let judgement = match self.judge(&sql) {
            Ok(j) => j,
            Err(e) => {
                let refused = self.event("refused", serde_json::json!({"sql": sql, "reason": e.to_string()}));
                drop(self.audit(refused).await);
                return self.refuse(reply::code_for(&e), &e.to_string(), true).await;
            }
        };
        if let Some(reason) = &judgement.denied {
            let refused =
                self.event("refused", serde_json::json!({"sql": sql, "kinds": judgement.kinds, "reason": reason}));
            let commit = self.audit(refused).await;
            if let Some(c) = commit {
                let _ = c.await;
            }
            return self.refuse(reply::INSUFFICIENT_PRIVILEGE, reason, true).await;
        }
        let mut approval = None;
        if let Some(review) = &judgement.review {
            match self.hold(&sql, review).await? {
                Hold::Approved(id) => approval = Some(id),
                Hold::Refused { code, message, approval } => {
                    let refused =
                        self.event("refused", serde_json::json!({"sql": sql, "approval": approval, "reason": message}));
                    drop(self.audit(refused).await);
                    return self.refuse(code, &message, true).await;
                }
            }
        }
        let event = self.event(
            "statement",
            serde_json::json!({
                "sql": sql, "kinds": judgement.kinds, "decision": if approval.is_some() { "approved" } else { "allow" },
                "rules": judgement.rules, "approval": approval, "masked": !judgement.masks.is_empty(),
            }),
        );
        let commit = self.audit(event).await;
        if judgement.writes
            && let Some(c) = commit
        {
            // Strict: a write reaches the backend only once its record is committed.
            if !matches!(c.await, Ok(Ok(()))) {
                return self
                    .refuse(
                        reply::CANNOT_CONNECT_NOW,
                        "the audit record could not be committed (no quorum); statement not run",
                        true,
                    )
                    .await;
            }
            return self.forward_query(sql, judgement.masks, judgement.lineages, None, started).await;
        }
        self.forward_query(sql, judgement.masks, judgement.lineages, commit, started).await
    }

    /// Send a simple query and relay its results; `commit` (strict reads) must land
    /// before any result is released.
    async fn forward_query(
        &mut self,
        sql: String,
        masks: MaskPlan,
        lineages: Vec<Lineage>,
        commit: Option<tokio::task::JoinHandle<Result<()>>>,
        started: Instant,
    ) -> Result<()> {
        self.backend.send(&F::Query(pgwire::messages::simplequery::Query::new(sql))).await?;
        if let Some(c) = commit
            && !matches!(c.await, Ok(Ok(())))
        {
            self.drain_until_ready().await?;
            return self
                .refuse(
                    reply::CANNOT_CONNECT_NOW,
                    "the audit record could not be committed (no quorum); results withheld",
                    true,
                )
                .await;
        }
        let ctx = RowsContext::new(masks, lineages, None, true);
        let expects = VecDeque::from([Expect::Rows(Box::new(ctx)), Expect::Ready { inject: false }]);
        let limits = self.limits();
        let outcome = relay(&mut self.backend, &mut self.client, expects, &limits).await?;
        if let Some(s) = outcome.ready_status {
            self.tx_status = s;
        }
        self.record(&outcome, started).await;
        Ok(())
    }

    /// Read and drop backend output up to ReadyForQuery (results we may not release).
    pub(super) async fn drain_until_ready(&mut self) -> Result<()> {
        loop {
            if let B::ReadyForQuery(r) = self.backend.read().await? {
                self.tx_status = match r.status {
                    TransactionStatus::Transaction => b'T',
                    TransactionStatus::Error => b'E',
                    TransactionStatus::Idle => b'I',
                };
                return Ok(());
            }
        }
    }

    pub(super) fn limits(&self) -> Limits {
        Limits {
            preview_rows: self.door.settings.preview_rows,
            preview_value_chars: self.door.settings.preview_value_chars,
        }
    }
}
