//! When this node builds a snapshot: once `snapshot_after_entries` entries were applied
//! since the last one, but never again sooner than [`PACE`] times the last build took.
//!
//! A snapshot copies the whole state, the audit included, so each build takes longer
//! than the one before while requests keep coming. Counting entries alone (openraft's
//! `SnapshotPolicy::LogsSinceLast`) made builds back to back under load: the HTTP door
//! at 33 000 requests/s reached 5 000 entries every 6 s while a build of its 670 000
//! records already took 3 s and growing (BENCHMARKS.md, session 14), a core and the disk
//! busy copying. So openraft's policy is `Never` and this task triggers builds, paced:
//! a build of `d` is followed by at least `(PACE - 1) * d` without one, at most 1/PACE of
//! the time spent building. The log keeps what the pause leaves unsnapshotted; it is
//! purged after the next build as before.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::node_core::NodeCore;

/// A build of `d` lets the next one start `PACE * d` after the last one started.
const PACE: u32 = 5;

/// A build not seen to finish within this long (or `PACE` times the last one, if
/// longer) is taken as failed: the next may be triggered.
const BUILD_GIVEN_UP_AFTER: Duration = Duration::from_secs(120);

/// What the pacing knows between metric updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pacing {
    after_entries: u64,
    /// The build under way: when it was triggered, from which snapshot index.
    building: Option<(Instant, u64)>,
    /// How long the last build took.
    last_build: Duration,
    /// The last build's start: the next may start `PACE * last_build` after it.
    last_start: Option<Instant>,
}

impl Pacing {
    pub(crate) fn new(after_entries: u64) -> Self {
        Pacing { after_entries: after_entries.max(1), building: None, last_build: Duration::ZERO, last_start: None }
    }

    /// Given the applied index and the current snapshot's index at `now`: whether to
    /// trigger a build now (the caller then does).
    pub(crate) fn observe(&mut self, applied: u64, snapshot: u64, now: Instant) -> bool {
        if let Some((started, from)) = self.building {
            if snapshot > from {
                // Built (or a newer one installed from the leader).
                self.last_build = now.saturating_duration_since(started);
                self.building = None;
            } else if now.saturating_duration_since(started) < BUILD_GIVEN_UP_AFTER.max(self.last_build * PACE) {
                return false;
            } else {
                self.building = None;
            }
        }
        if applied.saturating_sub(snapshot) < self.after_entries {
            return false;
        }
        if let Some(last) = self.last_start
            && now.saturating_duration_since(last) < self.last_build * PACE
        {
            return false;
        }
        self.building = Some((now, snapshot));
        self.last_start = Some(now);
        true
    }

    /// When to look again without a metrics change: the end of the current pause.
    fn pause_ends(&self) -> Option<Instant> {
        match (self.building, self.last_start) {
            (None, Some(last)) => Some(last + self.last_build * PACE),
            _ => None,
        }
    }
}

/// Watch the applied and snapshot indexes and trigger builds as [`Pacing`] says.
pub(crate) fn spawn(core: Arc<NodeCore>, shutdown: CancellationToken) {
    let mut rx = core.raft.metrics();
    let mut pacing = Pacing::new(core.settings.snapshot_after_entries);
    tokio::spawn(async move {
        loop {
            let (applied, snapshot) = {
                let m = rx.borrow_and_update();
                (m.last_applied.map_or(0, |l| l.index), m.snapshot.map_or(0, |l| l.index))
            };
            if pacing.observe(applied, snapshot, Instant::now())
                && let Err(e) = core.raft.trigger().snapshot().await
            {
                tracing::warn!(error = %e, "could not trigger a snapshot");
            }
            let pause = pacing.pause_ends();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = rx.changed() => if changed.is_err() { return },
                _ = async { if let Some(at) = pause { tokio::time::sleep_until(at).await } else { std::future::pending().await } } => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_after_enough_entries_and_pauses_for_pace_times_the_last_build() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut p = Pacing::new(100);
        assert!(!p.observe(99, 0, at(0)), "not enough entries yet");
        assert!(p.observe(100, 0, at(1)), "enough: build");
        assert!(!p.observe(300, 0, at(500)), "one build at a time");
        // The build took 1 s: the next may start 5 s after it started, whatever the count.
        assert!(!p.observe(400, 100, at(1_001)));
        assert!(!p.observe(5_000, 100, at(5_000)));
        assert!(p.observe(5_000, 100, at(5_001)));
        // A build never seen to finish is given up after BUILD_GIVEN_UP_AFTER.
        assert!(!p.observe(9_000, 100, at(5_001 + 119_000)));
        assert!(p.observe(9_000, 100, at(5_001 + 121_000)));
    }

    #[test]
    fn small_states_build_as_often_as_the_entry_count_says() {
        let t0 = Instant::now();
        let mut p = Pacing::new(10);
        assert!(p.observe(10, 0, t0));
        // Built in 2 ms: paused for 10 ms only.
        assert!(!p.observe(20, 10, t0 + Duration::from_millis(2)));
        assert!(p.observe(20, 10, t0 + Duration::from_millis(11)));
    }
}
