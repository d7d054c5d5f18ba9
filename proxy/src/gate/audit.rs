//! Phase "audit": records handed to the store, bounded, and the [`Permit`] that proves
//! it to the relay.
//!
//! In `strict` mode (DESIGN §1.2) nothing reaches the backend (writes) or the client
//! (a read's results) until the work's record is committed by a quorum. A write's
//! permit is therefore given only after the commit; a read's permit carries the commit
//! still under way, and the door must wait on [`Permit::results_may_leave`] before it
//! releases anything, which lets the backend run the read while the record commits.
//! In `fast` mode records commit in the background and the permit is free.

use std::sync::Arc;
use std::time::Instant;

use portcullis_raft::model::Event;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::metrics::CommitMeter;
use super::refusal::Refusal;
use crate::error::Result;
use crate::store::Store;

/// Whether the work can change anything, which decides how far ahead its record must be
/// committed in strict mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// It may change state: committed before it is relayed at all.
    Writes,
    /// It only reads: relayed at once, its results held until the record is committed.
    Reads,
}

/// A commit under way.
type Commit = JoinHandle<Result<()>>;

/// Proof that work was decided and its audit record handed to the store (committed,
/// for strict writes). Only [`GateSession::audit`](super::GateSession::audit) makes
/// one for work; the relay of every door requires it.
#[must_use = "a permit is what lets the relay run the work"]
#[derive(Debug)]
pub struct Permit {
    /// How many units of work (statements, executions, commands) it covers.
    covers: usize,
    /// Strict reads: the commit the results must wait for.
    commit: Option<Commit>,
}

// === impl Permit ===

impl Permit {
    pub(super) fn new(covers: usize, commit: Option<Commit>) -> Self {
        Permit { covers, commit }
    }

    /// A permit covering no work: for relaying messages that run nothing (a Postgres
    /// Parse, Bind or Describe before a refusal).
    pub fn nothing() -> Self {
        Permit { covers: 0, commit: None }
    }

    /// How many units of work the relay may run under it.
    pub fn covers(&self) -> usize {
        self.covers
    }

    /// Resolves once the work's records are committed: results may then leave. Ready at
    /// once in fast mode and for writes (committed before the permit was given).
    pub async fn results_may_leave(&mut self) -> Result<(), Refusal> {
        match self.commit.take() {
            None => Ok(()),
            Some(commit) => match commit.await {
                Ok(Ok(())) => Ok(()),
                _ => Err(Refusal::AuditNotCommitted { results_withheld: true }),
            },
        }
    }
}

/// Audit records in flight, across every session of the node. Each record holds a
/// permit until it is committed, so a node that outruns its cluster waits here instead
/// of queueing without bound.
pub(super) struct Backlog {
    permits: Arc<Semaphore>,
    size: usize,
}

impl Backlog {
    pub(super) fn new(size: usize) -> Self {
        Backlog { permits: Arc::new(Semaphore::new(size)), size }
    }

    /// Room for `n` records (waits while the backlog is full).
    pub(super) fn reserve(&self, n: usize) -> impl Future<Output = Option<OwnedSemaphorePermit>> + Send + 'static {
        let permits = self.permits.clone();
        let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        async move { permits.acquire_many_owned(n).await.ok() }
    }

    /// Resolves once every record handed over has been committed or has failed.
    pub(super) async fn drained(&self) {
        let all = u32::try_from(self.size).unwrap_or(u32::MAX);
        let _ = self.permits.acquire_many(all).await;
    }
}

/// Queue `events` with the store now (they commit together, in order, and after
/// everything the session queued before), then wait for the commit in the background;
/// the handle resolves with it. `room` is released when it is done.
pub(super) async fn commit<S: Store>(
    store: &S,
    events: Vec<Event>,
    meter: CommitMeter,
    room: Option<OwnedSemaphorePermit>,
) -> Commit {
    let started = Instant::now();
    let queued = store.enqueue(events).await;
    tokio::spawn(async move {
        let result = match queued {
            Ok(committed) => committed.await,
            Err(e) => Err(e),
        };
        meter.committed(started.elapsed(), result.is_ok());
        drop(room);
        result
    })
}
