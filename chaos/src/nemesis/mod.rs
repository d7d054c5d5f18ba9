//! Nemeses: a schedule of faults computed from the seed alone (so a run can be
//! reproduced), and the runner that applies it to the playground's processes.
//!
//! Faults run one at a time: wait until every node serves, hit the targets, hold,
//! heal. Scopes alternate between one node and a majority (starting with a seeded
//! pick): a majority fault leaves the other nodes without a quorum, which is what
//! shows whether they fail closed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cluster::Playground;
use crate::history::{Fault, FaultKind, History, now_ms};
use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Nemesis {
    /// kill -9 nodes, restart them a few seconds later.
    Kill,
    /// SIGSTOP nodes, SIGCONT them a few seconds later.
    Pause,
    /// A random mix of the above.
    All,
}

impl Nemesis {
    pub fn word(self) -> &'static str {
        match self {
            Nemesis::Kill => "kill",
            Nemesis::Pause => "pause",
            Nemesis::All => "all",
        }
    }
}

/// One planned fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Healthy time before the fault (after every node serves again).
    pub gap: Duration,
    pub kind: FaultKind,
    pub targets: Vec<u64>,
    /// A one-node fault aimed at whoever leads when it starts (`targets` is then
    /// replaced by the leader): failover times come from these.
    pub at_leader: bool,
    /// How long the targets stay paused or dead.
    pub hold: Duration,
}

/// The first `count` faults of the schedule for `seed`.
pub fn schedule(seed: u64, nemesis: Nemesis, ids: &[u64], count: usize) -> Vec<Planned> {
    let mut rng = Rng::new(seed);
    let n = ids.len();
    // Enough nodes that the rest cannot form a quorum (n/2 + 1).
    let majority = n - n / 2;
    let mut wide = rng.chance(50);
    (0..count)
        .map(|_| {
            let kind = match nemesis {
                Nemesis::Kill => FaultKind::Kill,
                Nemesis::Pause => FaultKind::Pause,
                Nemesis::All => {
                    if rng.chance(50) {
                        FaultKind::Kill
                    } else {
                        FaultKind::Pause
                    }
                }
            };
            let k = if wide && n > 1 { majority } else { 1 };
            wide = !wide;
            let targets = rng.pick(ids, k);
            let at_leader = k == 1 && rng.chance(50);
            let hold = match (kind, k > 1) {
                (FaultKind::Pause, false) => rng.millis(1000, 4000),
                (FaultKind::Kill, false) => rng.millis(2000, 5000),
                // Longer than the lease plus a node's write deadline (3 s): a node left
                // without a quorum that kept serving would relay again in that time
                // (its sessions' statements each wait up to the deadline for audit).
                (_, true) => rng.millis(4000, 8000),
            };
            Planned { gap: rng.millis(500, 2000), kind, targets, at_leader, hold }
        })
        .collect()
}

/// Apply the schedule until `stop` fires; the fault in progress is healed first.
pub async fn run(
    pg: Arc<Playground>,
    history: Arc<History>,
    nemesis: Nemesis,
    seed: u64,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let plan = schedule(seed, nemesis, &pg.ids(), 10_000);
    for p in plan {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(p.gap) => {}
        }
        let leader = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            l = pg.wait_all_serving(Duration::from_secs(30)) => l?,
        };
        let targets = if p.at_leader { vec![leader] } else { p.targets };
        let action = match p.kind {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
        };
        for id in &targets {
            match p.kind {
                FaultKind::Kill => pg.kill9(*id).await,
                FaultKind::Pause => pg.pause(*id),
            }
        }
        let start_ms = now_ms();
        history
            .event(json!({"type": "nemesis", "action": action, "nodes": targets, "leader": leader, "at_ms": start_ms}));
        eprintln!("chaos: {action} {targets:?} (leader was {leader}) for {:?}", p.hold);
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(p.hold) => {}
        }
        let end_ms = now_ms();
        let heal = match p.kind {
            FaultKind::Kill => "restart",
            FaultKind::Pause => "resume",
        };
        for id in &targets {
            match p.kind {
                FaultKind::Kill => pg.restart(*id)?,
                FaultKind::Pause => pg.resume(*id),
            }
        }
        history.event(json!({"type": "nemesis", "action": heal, "nodes": targets, "at_ms": end_ms}));
        history.fault(Fault { kind: p.kind, nodes: targets, leader_before: Some(leader), start_ms, end_ms });
        if stop.is_cancelled() {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_is_reproducible_from_its_seed() {
        let a = schedule(7, Nemesis::All, &[1, 2, 3], 20);
        assert_eq!(a, schedule(7, Nemesis::All, &[1, 2, 3], 20));
        assert_ne!(a, schedule(8, Nemesis::All, &[1, 2, 3], 20));
        assert!(a.iter().any(|p| p.kind == FaultKind::Kill) && a.iter().any(|p| p.kind == FaultKind::Pause));
    }

    #[test]
    fn scopes_alternate_so_every_two_faults_include_a_majority_one() {
        for seed in 0..20 {
            let s = schedule(seed, Nemesis::Pause, &[1, 2, 3], 6);
            for pair in s.chunks(2) {
                assert!(pair.iter().any(|p| p.targets.len() == 2), "seed {seed}: {s:?}");
            }
            assert!(s.iter().all(|p| p.kind == FaultKind::Pause));
        }
    }
}
