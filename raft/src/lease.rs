//! The quorum lease: whether this node may serve (DESIGN §4).
//!
//! A node serves only while it holds a lease of length L, renewed every L/3:
//! - the leader renews with `ensure_linearizable` (a quorum acknowledged it);
//! - a follower asks the leader for a read index (the leader confirms with a quorum)
//!   and waits until it has applied that index locally.
//!
//! The lease runs from the moment the renewal *started*, so it never outlives the
//! quorum contact it is based on. It drops at once when the node stops being
//! leader or follower, loses its leader, is no voter, or (on the leader) when
//! `millis_since_quorum_ack` reaches L. With L below the election timeout, an old
//! leader's lease ends before a new leader can be elected.
//!
//! All of it lives in one type, `Lease`, which `NodeCore` holds: the serving flag
//! the tasks below keep, the clock that stamps how long the last renewal is good for,
//! and the check (`Lease::is_held`) that reads both. `Lease::spawn` starts the two
//! tasks: `renew` asks for quorum contact, `evaluate` turns Raft state and the
//! renewal's end into the serving flag.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::ServerState;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::node_core::NodeCore;

/// This node's quorum lease: whether it may serve, and until when.
pub(crate) struct Lease {
    /// Length L of a lease (`Timing::lease`).
    length: Duration,
    /// The serving flag, set by the `evaluate` task; every blocking wait of a door
    /// selects on its changes.
    serving: watch::Receiver<bool>,
    /// Reference point for `until_ms`.
    started: Instant,
    /// End of the current lease, in ms since `started` (0: none). Checked on every
    /// `is_held`, so a node resumed after a pause (SIGSTOP, a long GC-like stall)
    /// refuses at once, before its lease task has run again to lower the flag.
    until_ms: AtomicU64,
    /// TEST ONLY (chaos harness's planted fault): serve without holding the lease.
    unsafe_no_lease: bool,
}

// === impl Lease ===

impl Lease {
    /// A lease of `length`, not held yet, and the sender of its serving flag (hand it
    /// to `Lease::spawn`).
    pub(crate) fn new(length: Duration, unsafe_no_lease: bool) -> (Lease, watch::Sender<bool>) {
        let (serving_tx, serving) = watch::channel(false);
        let lease = Lease { length, serving, started: Instant::now(), until_ms: AtomicU64::new(0), unsafe_no_lease };
        (lease, serving_tx)
    }

    /// Whether this node holds the lease right now: the lease task says so and the
    /// lease has not run out on the clock (the task may not have run yet).
    pub(crate) fn is_held(&self) -> bool {
        if self.unsafe_no_lease {
            return *self.serving.borrow();
        }
        let until = self.until_ms.load(Ordering::Relaxed);
        *self.serving.borrow() && self.stamp(Instant::now()) < until
    }

    /// Changes of the serving flag.
    pub(crate) fn serving(&self) -> watch::Receiver<bool> {
        self.serving.clone()
    }

    /// Let the lease run until `until` (a renewal's start plus L).
    pub(crate) fn extend_to(&self, until: Instant) {
        self.until_ms.store(self.stamp(until).max(1), Ordering::Relaxed);
    }

    /// Milliseconds from `started` to `at`, for storing an instant in an atomic.
    fn stamp(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.started).as_millis()).unwrap_or(u64::MAX)
    }

    /// Start the tasks that keep `core.lease`: `renew` and `evaluate`, which drives
    /// the flag through `serving`.
    pub(crate) fn spawn(core: Arc<NodeCore>, serving: watch::Sender<bool>, shutdown: CancellationToken) {
        let (valid_until_tx, valid_until_rx) = watch::channel::<Option<Instant>>(None);
        tokio::spawn(renew(core.clone(), valid_until_tx, shutdown.clone()));
        tokio::spawn(evaluate(core, valid_until_rx, serving, shutdown));
    }
}

/// Renew every L/3 and publish until when the lease is valid.
async fn renew(core: Arc<NodeCore>, valid_until: watch::Sender<Option<Instant>>, shutdown: CancellationToken) {
    let lease = core.lease.length;
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut metrics = core.raft.metrics();
    let mut seen = role_and_leader(&metrics.borrow_and_update());
    loop {
        // Renew on the tick, and at once when the role or leader changes, so a new
        // leader's cluster serves again without waiting for the next tick.
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            changed = metrics.changed() => {
                if changed.is_err() { return; }
                let now = role_and_leader(&metrics.borrow_and_update());
                if now == seen { continue; }
                seen = now;
            }
        }
        let started = Instant::now();
        if renew_once(&core, lease / 2).await {
            let until = started + lease;
            core.lease.extend_to(until);
            valid_until.send_replace(Some(until));
        }
    }
}

fn role_and_leader(m: &crate::typ::Metrics) -> (ServerState, Option<u64>) {
    (m.state, m.current_leader)
}

/// One renewal attempt; true if a quorum confirmed the leader within `budget`.
async fn renew_once(core: &NodeCore, budget: Duration) -> bool {
    let m = core.raft.metrics().borrow().clone();
    match m.state {
        ServerState::Leader => {
            matches!(tokio::time::timeout(budget, core.raft.ensure_linearizable()).await, Ok(Ok(_)))
        }
        ServerState::Follower => {
            let Some(leader) = m.current_leader else { return false };
            let Some(member) = m.membership_config.membership().get_node(&leader).cloned() else {
                return false;
            };
            let deadline = Instant::now() + budget;
            let index = match core.peers.read_index(core.id, leader, &member.raft_addr, budget).await {
                Ok(i) => i,
                Err(e) => {
                    tracing::debug!(error = %e, "lease renewal: read index failed");
                    return false;
                }
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            core.raft.wait(Some(remaining)).applied_index_at_least(Some(index), "lease read index").await.is_ok()
        }
        _ => false,
    }
}

/// Recompute `serving` whenever Raft state or the lease changes, and when it expires.
async fn evaluate(
    core: Arc<NodeCore>,
    mut valid_until: watch::Receiver<Option<Instant>>,
    serving: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let lease = core.lease.length;
    let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    let mut metrics = core.raft.metrics();
    loop {
        let until = *valid_until.borrow_and_update();
        let now = Instant::now();
        let holds = {
            let m = metrics.borrow_and_update();
            let voter = m.membership_config.membership().voter_ids().any(|id| id == core.id);
            let role_ok = match m.state {
                ServerState::Leader => m.millis_since_quorum_ack.is_some_and(|ms| ms < lease_ms),
                ServerState::Follower => m.current_leader.is_some(),
                _ => false,
            };
            let honest = voter && role_ok && until.is_some_and(|u| u > now);
            // The planted fault: a node that ignores its lease (chaos tests prove the
            // checker notices). Never set outside those tests.
            honest || core.lease.unsafe_no_lease
        };
        if *serving.borrow() != holds {
            tracing::info!(node = core.id, serving = holds, "quorum lease {}", if holds { "acquired" } else { "lost" });
            metrics::gauge!("portcullis_lease_held").set(if holds { 1.0 } else { 0.0 });
            serving.send_replace(holds);
        }
        // Wake at expiry, or (for the leader's quorum-ack check) at least every L/4.
        let wake = match until {
            Some(u) if u > now => u.min(now + lease / 4),
            _ => now + lease / 4,
        };
        tokio::select! {
            _ = shutdown.cancelled() => {
                serving.send_replace(false);
                return;
            }
            _ = tokio::time::sleep_until(wake) => {}
            r = metrics.changed() => if r.is_err() { serving.send_replace(false); return; },
            r = valid_until.changed() => if r.is_err() { serving.send_replace(false); return; },
        }
    }
}
