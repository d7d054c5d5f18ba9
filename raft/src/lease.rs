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

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::ServerState;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::node::NodeCore;

pub(crate) fn spawn(core: Arc<NodeCore>, serving: watch::Sender<bool>, shutdown: CancellationToken) {
    let (valid_until_tx, valid_until_rx) = watch::channel::<Option<Instant>>(None);
    tokio::spawn(renew(core.clone(), valid_until_tx, shutdown.clone()));
    tokio::spawn(evaluate(core, valid_until_rx, serving, shutdown));
}

/// Renew every L/3 and publish until when the lease is valid.
async fn renew(core: Arc<NodeCore>, valid_until: watch::Sender<Option<Instant>>, shutdown: CancellationToken) {
    let lease = core.settings.timing.lease;
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
            core.lease_until_ms.store(crate::election::stamp_at(core.started, until).max(1), Ordering::Relaxed);
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
    let lease = core.settings.timing.lease;
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
            honest || core.settings.unsafe_no_lease
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
