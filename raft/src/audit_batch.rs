//! Group commit of audit events.
//!
//! Every statement through a door produces audit events. Committing each as its own
//! Raft entry would cost one quorum round trip per event; instead, events submitted
//! while a batch is committing wait and go together in the next `AppendEvents` entry.
//! One batch is in flight at a time, so events keep their submission order. On
//! shutdown the queue is closed and what it holds is still committed (each batch under
//! the write deadline), so a graceful stop loses no queued record.

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::command::{Op, Response};
use crate::error::{Error, Result};
use crate::model::Event;
use crate::node::ClusterNode;

/// Events submitted together: they commit in the same entry, in order, or not at all.
struct Pending {
    events: Vec<Event>,
    /// Receives the events' sequence numbers in their sessions once committed.
    done: oneshot::Sender<Result<Vec<u64>>>,
}

/// Handle to the batching task. Cheap to clone.
#[derive(Clone)]
pub struct EventBatcher {
    queue: mpsc::Sender<Pending>,
}

impl EventBatcher {
    /// Start the batching task; batches hold at most `max_batch` events.
    pub fn spawn(node: ClusterNode, max_batch: usize, shutdown: CancellationToken) -> Self {
        let (queue, rx) = mpsc::channel(max_batch.max(1) * 4);
        tokio::spawn(run(node, rx, max_batch.max(1), shutdown));
        EventBatcher { queue }
    }

    /// Append `event` and wait until a quorum committed it (strict audit).
    pub async fn append(&self, event: Event) -> Result<u64> {
        let seqs = self.append_all(vec![event]).await?;
        seqs.first().copied().ok_or_else(|| Error::Rejected("audit batch answered without a sequence number".into()))
    }

    /// Append `events` in one entry, in order, and wait until a quorum committed them.
    pub async fn append_all(&self, events: Vec<Event>) -> Result<Vec<u64>> {
        if events.is_empty() {
            return Ok(vec![]);
        }
        let (done, wait) = oneshot::channel();
        self.queue
            .send(Pending { events, done })
            .await
            .map_err(|_| Error::NotServing { reason: "audit batcher stopped".into() })?;
        wait.await.map_err(|_| Error::NotServing { reason: "audit batcher stopped".into() })?
    }
}

async fn run(node: ClusterNode, mut rx: mpsc::Receiver<Pending>, max_batch: usize, shutdown: CancellationToken) {
    let mut batch: Vec<Pending> = Vec::with_capacity(max_batch);
    let mut stopping = false;
    loop {
        let first = if stopping {
            rx.recv().await
        } else {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    // Shutdown flushes: refuse new events, commit those already queued.
                    stopping = true;
                    rx.close();
                    continue;
                }
                p = rx.recv() => p,
            }
        };
        let Some(first) = first else { break };
        let mut count = first.events.len();
        batch.push(first);
        while count < max_batch {
            match rx.try_recv() {
                Ok(p) => {
                    count += p.events.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        metrics::histogram!("portcullis_audit_batch_events").record(count as f64);
        let events: Vec<Event> = batch.iter().flat_map(|p| p.events.iter().cloned()).collect();
        let result = node.write(Op::AppendEvents { events }).await;
        match result {
            Ok(Response::Appended { seqs }) if seqs.len() == count => {
                let mut seqs = seqs.into_iter();
                for p in batch.drain(..) {
                    let mine: Vec<u64> = seqs.by_ref().take(p.events.len()).collect();
                    let _ = p.done.send(Ok(mine));
                }
            }
            Ok(other) => {
                let why = format!("unexpected apply result for an audit batch: {other:?}");
                for p in batch.drain(..) {
                    let _ = p.done.send(Err(Error::Rejected(why.clone())));
                }
            }
            Err(e) => {
                for p in batch.drain(..) {
                    let _ = p.done.send(Err(e.duplicate()));
                }
            }
        }
    }
}
