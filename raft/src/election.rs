//! Prompt elections after a leader disappears.
//!
//! openraft 0.9 lets a follower campaign only after `leader_lease` (its
//! `election_timeout_max`) *plus* a random election timeout without hearing from the
//! leader: up to twice the maximum election timeout. Voters refuse votes only until
//! `election_timeout_max` after their last leader contact, so a follower that has heard
//! nothing for that long may campaign at once. Raft's own vote checks still decide who
//! wins; this only starts the campaign earlier, which roughly halves failover time.
//! A random per-node delay keeps two survivors from splitting the vote.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::ServerState;
use ring::rand::SecureRandom;
use tokio_util::sync::CancellationToken;

use crate::node_core::NodeCore;

pub(crate) fn spawn(core: Arc<NodeCore>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let timing = core.settings.timing.clone();
        let mut tick = tokio::time::interval(timing.heartbeat.max(Duration::from_millis(20)) / 2);
        let mut last_campaign = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let (is_voting_follower, knows_leader) = {
                let m = core.raft.metrics().borrow().clone();
                let voter = m.membership_config.membership().voter_ids().any(|id| id == core.id);
                (voter && m.state == ServerState::Follower, m.current_leader.is_some())
            };
            let Some(silent_for) = core.since_leader_contact() else { continue };
            let patience = timing.election_max + Duration::from_millis(50) + jitter(timing.election_min / 4);
            if is_voting_follower
                && knows_leader
                && silent_for > patience
                && last_campaign.elapsed() > timing.election_min
            {
                tracing::info!(node = core.id, silent_ms = silent_for.as_millis() as u64, "leader silent; campaigning");
                last_campaign = tokio::time::Instant::now();
                let _ = core.raft.trigger().elect().await;
            }
        }
    });
}

fn jitter(max: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    let max_ms = u64::try_from(max.as_millis()).unwrap_or(0).max(1);
    Duration::from_millis(u64::from(u16::from_be_bytes(b)) % max_ms)
}

/// Milliseconds since `base`, for storing an instant in an atomic.
fn stamp(base: tokio::time::Instant) -> u64 {
    u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl NodeCore {
    /// Note that the current leader's append-entries was accepted just now.
    pub(crate) fn leader_contact(&self) {
        self.last_leader_contact_ms.store(stamp(self.started).max(1), Ordering::Relaxed);
    }

    /// Time since the last accepted leader contact (None before the first).
    pub(crate) fn since_leader_contact(&self) -> Option<Duration> {
        match self.last_leader_contact_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_millis(stamp(self.started).saturating_sub(at))),
        }
    }
}
