//! The simple query protocol: one Query message, one or more statements, all cleared
//! and audited before any of it is sent.

use std::collections::VecDeque;
use std::time::Instant;

use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::simplequery::Query;

use super::super::catalog::copy_columns;
use super::super::relay::{CopyMasking, Expect, RowsContext, relay};
use super::{ClearedSql, Outbound, Session};
use crate::error::Result;
use crate::gate::{Effect, Work};
use crate::store::Store;

impl<S: Store> Session<'_, S> {
    pub(super) async fn simple_query(&mut self, sql: String) -> Result<()> {
        let started = Instant::now();
        if let Err(refusal) = self.gate.check_lease() {
            return self.refuse(&refusal, true).await;
        }
        let work = Work::query(&sql);
        let cleared = match self.clear_sql(&work).await? {
            Ok(c) => c,
            Err(refusal) => return self.refuse(&refusal, true).await,
        };
        let effect = if cleared.writes { Effect::Writes } else { Effect::Reads };
        let mut permit = match self.gate.audit(&[(&work, &cleared.cleared)], effect).await {
            Ok(p) => p,
            Err(refusal) => return self.refuse(&refusal, true).await,
        };
        // A COPY TO STDOUT under masks: its columns, from the catalog, before it runs.
        let copy = match &cleared.copy_out {
            Some(out) if !cleared.cleared.judgement.masks.is_empty() => {
                let catalog = self.masking_catalog();
                let masks = &cleared.cleared.judgement.masks;
                let columns = copy_columns(&mut self.backend, out, masks, &cleared.lineages, catalog.as_ref()).await;
                Some(Box::new(CopyMasking { out: out.clone(), columns, rows: 0 }))
            }
            _ => None,
        };
        // --- relay.
        let mut outbound = Outbound::default();
        outbound.push(F::Query(Query::new(sql)));
        outbound.send(&mut self.backend, &permit).await?;
        if let Err(refusal) = permit.results_may_leave().await {
            self.drain_until_ready().await?;
            return self.refuse(&refusal, true).await;
        }
        // --- mask (in the relay) and record.
        let ClearedSql { cleared, lineages, .. } = cleared;
        let mut ctx = RowsContext::new(cleared.judgement.masks, lineages, self.masking_catalog(), None, true);
        ctx.copy = copy;
        let expects = VecDeque::from([Expect::Rows(Box::new(ctx)), Expect::Ready { inject: false }]);
        let limits = self.limits();
        let outcome = relay(&mut self.backend, &mut self.client, expects, &limits).await?;
        self.record(outcome, started).await;
        Ok(())
    }
}
