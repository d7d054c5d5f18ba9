//! Group commit of audit events.
//!
//! Every statement through a door produces audit events. Committing each as its own
//! Raft entry would cost one quorum round trip per event; instead, events submitted
//! while a batch is committing wait and go together in the next `AppendEvents` entry.
//! Up to [`MAX_IN_FLIGHT`] batches commit at once (one, as measured best), never two
//! holding events of the same session, so each session's events keep their submission
//! order. On shutdown the queue is closed and what it holds is still committed (each
//! batch under the write deadline), so a graceful stop loses no queued record.

use std::collections::{HashMap, HashSet, VecDeque};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::command::{Op, Response};
use crate::error::{Error, Result};
use crate::model::Event;
use crate::node::ClusterNode;

/// Events submitted together: they commit in the same entry, in order, or not at all.
/// Batches committing at once. More than one overlaps the quorum round trips of
/// independent sessions, but on a CPU-bound cluster it also makes batches smaller and
/// entries more numerous: pg_door with 16 strict clients measured about 2 000 tps with
/// one in flight, 1 600–1 900 with two and 1 400–1 900 with four (BENCHMARKS.md). The
/// scheduling below keeps each session's events in order for any value.
const MAX_IN_FLIGHT: usize = 1;

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
        self.submit(events).await?.await
    }

    /// Queue `events` (one entry, in order) and return once they are queued: events of
    /// one session queued one after another commit in that order, whatever happens to
    /// the futures afterwards. The returned future resolves once a quorum committed them.
    pub async fn submit(&self, events: Vec<Event>) -> Result<impl Future<Output = Result<Vec<u64>>> + Send + 'static> {
        let (done, wait) = oneshot::channel();
        if !events.is_empty() {
            self.queue
                .send(Pending { events, done })
                .await
                .map_err(|_| Error::NotServing { reason: "audit batcher stopped".into() })?;
        } else {
            let _ = done.send(Ok(vec![]));
        }
        Ok(async move { wait.await.map_err(|_| Error::NotServing { reason: "audit batcher stopped".into() })? })
    }
}

async fn run(node: ClusterNode, mut rx: mpsc::Receiver<Pending>, max_batch: usize, shutdown: CancellationToken) {
    let mut waiting: VecDeque<Pending> = VecDeque::new();
    // Sessions with events in a batch in flight, and how many batches hold them.
    let mut busy: HashMap<String, usize> = HashMap::new();
    let mut in_flight: JoinSet<Vec<String>> = JoinSet::new();
    let mut stopping = false;
    let mut drained = false;
    loop {
        while let Ok(p) = rx.try_recv() {
            waiting.push_back(p);
        }
        while in_flight.len() < MAX_IN_FLIGHT {
            let batch = take_ready(&mut waiting, &busy, max_batch);
            if batch.is_empty() {
                break;
            }
            let sessions: Vec<String> = batch.iter().flat_map(sessions_of).collect();
            for s in &sessions {
                *busy.entry(s.clone()).or_default() += 1;
            }
            let node = node.clone();
            in_flight.spawn(async move {
                commit(&node, batch).await;
                sessions
            });
        }
        if drained && waiting.is_empty() && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                for s in done.unwrap_or_default() {
                    if let Some(n) = busy.get_mut(&s) {
                        *n -= 1;
                        if *n == 0 {
                            busy.remove(&s);
                        }
                    }
                }
            }
            p = rx.recv(), if !drained => match p {
                Some(p) => waiting.push_back(p),
                None => drained = true,
            },
            _ = shutdown.cancelled(), if !stopping => {
                // Shutdown flushes: refuse new events, commit those already queued.
                stopping = true;
                rx.close();
            }
        }
    }
}

fn sessions_of(p: &Pending) -> impl Iterator<Item = String> + '_ {
    p.events.iter().map(|e| e.session_id.clone())
}

/// The next batch: groups in arrival order, skipping (and keeping back, in order) every
/// group of a session that has events in flight or in an earlier kept-back group. The
/// state machine numbers a session's events as it applies them, so two batches of one
/// session must never race.
fn take_ready(waiting: &mut VecDeque<Pending>, busy: &HashMap<String, usize>, max_batch: usize) -> Vec<Pending> {
    let mut batch = Vec::new();
    let mut count = 0;
    let mut blocked: HashSet<String> = busy.keys().cloned().collect();
    let mut kept = VecDeque::new();
    while let Some(p) = waiting.pop_front() {
        if count >= max_batch || p.events.iter().any(|e| blocked.contains(&e.session_id)) {
            blocked.extend(sessions_of(&p));
            kept.push_back(p);
            continue;
        }
        count += p.events.len();
        batch.push(p);
    }
    *waiting = kept;
    batch
}

/// Commit one batch in one entry and answer each group.
async fn commit(node: &ClusterNode, batch: Vec<Pending>) {
    let count: usize = batch.iter().map(|p| p.events.len()).sum();
    metrics::histogram!("portcullis_audit_batch_events").record(count as f64);
    let mut groups = Vec::with_capacity(batch.len());
    let mut events = Vec::with_capacity(count);
    for p in batch {
        groups.push((p.events.len(), p.done));
        events.extend(p.events);
    }
    match node.write(Op::AppendEvents { events }).await {
        Ok(Response::Appended { seqs }) if seqs.len() == count => {
            let mut seqs = seqs.into_iter();
            for (n, done) in groups {
                let _ = done.send(Ok(seqs.by_ref().take(n).collect()));
            }
        }
        Ok(other) => {
            let why = format!("unexpected apply result for an audit batch: {other:?}");
            for (_, done) in groups {
                let _ = done.send(Err(Error::Rejected(why.clone())));
            }
        }
        Err(e) => {
            for (_, done) in groups {
                let _ = done.send(Err(e.duplicate()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn group(session: &str, kind: &str) -> Pending {
        let (done, _) = oneshot::channel();
        let event = Event { session_id: session.into(), seq: 0, at: 0, kind: kind.into(), detail: Default::default() };
        Pending { events: vec![event], done }
    }

    fn kinds(ps: &[Pending]) -> Vec<String> {
        ps.iter().map(|p| p.events[0].kind.clone()).collect()
    }

    #[test]
    fn a_session_in_flight_waits_and_keeps_its_order_while_others_go_ahead() {
        let mut waiting: VecDeque<Pending> =
            [group("a", "a1"), group("b", "b1"), group("a", "a2"), group("c", "c1")].into_iter().collect();
        let busy: HashMap<String, usize> = [("a".to_string(), 1)].into_iter().collect();
        let batch = take_ready(&mut waiting, &busy, 100);
        assert_eq!(kinds(&batch), ["b1", "c1"]);
        let left: Vec<Pending> = waiting.drain(..).collect();
        assert_eq!(kinds(&left), ["a1", "a2"]);
    }

    #[test]
    fn one_sessions_groups_share_a_batch_in_order_and_the_batch_size_is_bounded() {
        let mut waiting: VecDeque<Pending> =
            [group("a", "a1"), group("a", "a2"), group("b", "b1"), group("a", "a3")].into_iter().collect();
        let batch = take_ready(&mut waiting, &HashMap::new(), 2);
        assert_eq!(kinds(&batch), ["a1", "a2"]);
        // The batch is full: everything else waits, in arrival order.
        let left: Vec<Pending> = waiting.drain(..).collect();
        assert_eq!(kinds(&left), ["b1", "a3"]);
    }
}
