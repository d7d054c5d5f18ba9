//! Nemeses: a schedule of faults computed from the seed alone (so a run can be
//! reproduced), and the runner (`apply`) that inflicts it on the playground.
//!
//! Faults run one at a time: wait until every node serves, hit the targets, hold,
//! heal. Process faults (kill, pause) alternate between one node and a majority
//! (starting with a seeded pick): a majority fault leaves the other nodes without a
//! quorum, which is what shows whether they fail closed. Network faults need the
//! nodes in network namespaces (root); without them they are left out of the
//! schedule and the caller says why.

mod apply;

pub use apply::run;

use std::time::Duration;

use crate::history::FaultKind;
use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Nemesis {
    /// kill -9 nodes, restart them a few seconds later.
    Kill,
    /// SIGSTOP nodes, SIGCONT them a few seconds later.
    Pause,
    /// Cut a random minority off from the rest (iptables DROP between namespaces).
    Partition,
    /// Cut the current leader off from every peer.
    LeaderIsolation,
    /// Random packet loss on node links (iptables `statistic`).
    Flaky,
    /// Added latency on node links (delaying relays in the harness).
    Slow,
    /// A random mix of every available nemesis.
    All,
}

impl Nemesis {
    pub fn word(self) -> &'static str {
        match self {
            Nemesis::Kill => "kill",
            Nemesis::Pause => "pause",
            Nemesis::Partition => "partition",
            Nemesis::LeaderIsolation => "leader-isolation",
            Nemesis::Flaky => "flaky",
            Nemesis::Slow => "slow",
            Nemesis::All => "all",
        }
    }

    /// The fault kinds this nemesis draws from, given whether nodes have namespaces.
    pub fn kinds(self, netns: bool) -> Vec<FaultKind> {
        let network = [FaultKind::Partition, FaultKind::LeaderIsolation, FaultKind::Flaky, FaultKind::Slow];
        match self {
            Nemesis::Kill => vec![FaultKind::Kill],
            Nemesis::Pause => vec![FaultKind::Pause],
            Nemesis::Partition => vec![FaultKind::Partition],
            Nemesis::LeaderIsolation => vec![FaultKind::LeaderIsolation],
            Nemesis::Flaky => vec![FaultKind::Flaky],
            Nemesis::Slow => vec![FaultKind::Slow],
            Nemesis::All if netns => [FaultKind::Kill, FaultKind::Pause].into_iter().chain(network).collect(),
            Nemesis::All => vec![FaultKind::Kill, FaultKind::Pause],
        }
        .into_iter()
        .filter(|k| netns || matches!(k, FaultKind::Kill | FaultKind::Pause))
        .collect()
    }

    /// Whether node links must go through the delaying relays.
    pub fn needs_relays(self) -> bool {
        matches!(self, Nemesis::Slow | Nemesis::All)
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
    /// How long the fault lasts.
    pub hold: Duration,
    /// Loss percentage (flaky) or one-way delay in ms (slow).
    pub intensity: u64,
}

/// The first `count` faults of the schedule for `seed`, drawn from `kinds`.
pub fn schedule(seed: u64, kinds: &[FaultKind], ids: &[u64], count: usize) -> Vec<Planned> {
    let mut rng = Rng::new(seed);
    let n = ids.len();
    // Enough nodes that the rest cannot form a quorum (n/2 + 1).
    let majority = n - n / 2;
    // The largest minority: the rest still has a quorum.
    let minority = (n - 1) / 2;
    let mut wide = rng.chance(50);
    if kinds.is_empty() {
        return vec![];
    }
    (0..count)
        .map(|_| {
            let len = u64::try_from(kinds.len()).unwrap_or(1);
            let kind = kinds.get(usize::try_from(rng.below(len)).unwrap_or(0)).copied().unwrap_or(FaultKind::Pause);
            let process_k = if wide && n > 1 { majority } else { 1 };
            wide = !wide;
            let gap = rng.millis(500, 2000);
            let (targets, at_leader, hold, intensity) = match kind {
                FaultKind::Kill | FaultKind::Pause => {
                    let targets = rng.pick(ids, process_k);
                    let at_leader = process_k == 1 && rng.chance(50);
                    let hold = match (kind, process_k > 1) {
                        (FaultKind::Pause, false) => rng.millis(1000, 4000),
                        (_, false) => rng.millis(2000, 5000),
                        // Longer than the lease plus a node's write deadline (3 s): a node
                        // left without a quorum that kept serving would relay again in
                        // that time (its sessions' statements each wait up to the
                        // deadline for audit).
                        (_, true) => rng.millis(4000, 8000),
                    };
                    (targets, at_leader, hold, 0)
                }
                FaultKind::Partition => {
                    let k = 1 + usize::try_from(rng.below(u64::try_from(minority.max(1)).unwrap_or(1))).unwrap_or(0);
                    let targets = rng.pick(ids, k.min(minority.max(1)));
                    let at_leader = targets.len() == 1 && rng.chance(50);
                    (targets, at_leader, rng.millis(4000, 8000), 0)
                }
                FaultKind::LeaderIsolation => (vec![], true, rng.millis(4000, 8000), 0),
                FaultKind::Flaky | FaultKind::Slow => {
                    // One node's links, or every link.
                    let targets = if rng.chance(50) { rng.pick(ids, 1) } else { ids.to_vec() };
                    let intensity = if kind == FaultKind::Flaky { 10 + rng.below(31) } else { 50 + rng.below(351) };
                    (targets, false, rng.millis(4000, 9000), intensity)
                }
            };
            Planned { gap, kind, targets, at_leader, hold, intensity }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_is_reproducible_from_its_seed() {
        let kinds = Nemesis::All.kinds(true);
        let a = schedule(7, &kinds, &[1, 2, 3], 40);
        assert_eq!(a, schedule(7, &kinds, &[1, 2, 3], 40));
        assert_ne!(a, schedule(8, &kinds, &[1, 2, 3], 40));
        for k in kinds {
            assert!(a.iter().any(|p| p.kind == k), "{k:?} never drawn in {a:?}");
        }
    }

    #[test]
    fn without_namespaces_only_process_faults_are_drawn() {
        assert_eq!(Nemesis::All.kinds(false), vec![FaultKind::Kill, FaultKind::Pause]);
        assert!(Nemesis::Partition.kinds(false).is_empty());
        assert!(schedule(1, &[], &[1, 2, 3], 5).is_empty());
    }

    #[test]
    fn scopes_alternate_so_every_two_faults_include_a_majority_one() {
        for seed in 0..20 {
            let s = schedule(seed, &[FaultKind::Pause], &[1, 2, 3], 6);
            for pair in s.chunks(2) {
                assert!(pair.iter().any(|p| p.targets.len() == 2), "seed {seed}: {s:?}");
            }
            assert!(s.iter().all(|p| p.kind == FaultKind::Pause));
        }
    }

    #[test]
    fn partitions_cut_off_a_minority_and_links_get_an_intensity() {
        for seed in 0..20 {
            for p in schedule(seed, &[FaultKind::Partition, FaultKind::Flaky, FaultKind::Slow], &[1, 2, 3, 4, 5], 10) {
                match p.kind {
                    FaultKind::Partition => assert!((1..=2).contains(&p.targets.len()), "{p:?}"),
                    FaultKind::Flaky => assert!((10..=40).contains(&p.intensity), "{p:?}"),
                    FaultKind::Slow => assert!((50..=400).contains(&p.intensity), "{p:?}"),
                    _ => unreachable!(),
                }
            }
        }
    }
}
