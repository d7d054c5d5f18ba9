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

struct Pending {
    event: Event,
    /// Receives the event's sequence number in its session once committed.
    done: oneshot::Sender<Result<u64>>,
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
        let (done, wait) = oneshot::channel();
        self.queue
            .send(Pending { event, done })
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
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        metrics::histogram!("portcullis_audit_batch_events").record(batch.len() as f64);
        let events = batch.iter().map(|p| p.event.clone()).collect();
        let result = node.write(Op::AppendEvents { events }).await;
        match result {
            Ok(Response::Appended { seqs }) if seqs.len() == batch.len() => {
                for (p, seq) in batch.drain(..).zip(seqs) {
                    let _ = p.done.send(Ok(seq));
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
