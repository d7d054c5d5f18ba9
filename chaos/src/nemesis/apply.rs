//! The runner: applies the schedule to the playground's processes and network,
//! records every action and fault in the history, and always heals the fault in
//! progress before it returns.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Planned;
use crate::cluster::Playground;
use crate::history::{Fault, FaultKind, History, now_ms};
use crate::links::Links;
use crate::netns::Link;

/// Apply `plan` until `stop` fires.
pub async fn run(
    pg: Arc<Playground>,
    links: Option<Arc<Links>>,
    history: Arc<History>,
    plan: Vec<Planned>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    for p in plan {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(p.gap) => {}
        }
        let leader = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            l = pg.wait_all_serving(Duration::from_secs(30)) => l?,
        };
        let targets = if p.at_leader { vec![leader] } else { p.targets.clone() };
        let (action, heal) = p.kind.words();
        let hit = inflict(&pg, links.as_deref(), &p, &targets).await;
        let start_ms = now_ms();
        history.event(json!({"type": "nemesis", "action": action, "nodes": targets, "leader": leader,
            "intensity": p.intensity, "at_ms": start_ms}));
        eprintln!("chaos: {action} {targets:?} (leader was {leader}, intensity {}) for {:?}", p.intensity, p.hold);
        if hit.is_ok() {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(p.hold) => {}
            }
        }
        let end_ms = now_ms();
        // Heal even when inflicting failed half-way.
        let healed = cure(&pg, links.as_deref(), p.kind, &targets).await;
        history.event(json!({"type": "nemesis", "action": heal, "nodes": targets, "at_ms": end_ms}));
        hit.with_context(|| format!("{action} {targets:?}"))?;
        healed.with_context(|| format!("{heal} {targets:?}"))?;
        let isolated = isolated(&pg.ids(), p.kind, &targets);
        history.fault(Fault {
            kind: p.kind,
            nodes: targets,
            isolated,
            intensity: p.intensity,
            leader_before: Some(leader),
            start_ms,
            end_ms,
        });
        if stop.is_cancelled() {
            return Ok(());
        }
    }
    Ok(())
}

/// Nodes the fault leaves without a quorum.
pub fn isolated(ids: &[u64], kind: FaultKind, targets: &[u64]) -> Vec<u64> {
    let quorum = ids.len() / 2 + 1;
    let rest: Vec<u64> = ids.iter().copied().filter(|id| !targets.contains(id)).collect();
    match kind {
        FaultKind::Kill | FaultKind::Pause if rest.len() < quorum => rest,
        FaultKind::Partition | FaultKind::LeaderIsolation if targets.len() < quorum => targets.to_vec(),
        _ => vec![],
    }
}

/// Every link between `targets` and the other nodes, both ways.
fn cut(ids: &[u64], targets: &[u64], link: Link) -> BTreeMap<u64, Vec<(u64, Link)>> {
    let mut out: BTreeMap<u64, Vec<(u64, Link)>> = BTreeMap::new();
    for a in targets {
        for b in ids.iter().filter(|b| !targets.contains(b)) {
            out.entry(*a).or_default().push((*b, link));
            out.entry(*b).or_default().push((*a, link));
        }
    }
    out
}

/// Loss of about `pct` % on every link that touches `targets`. The rule sits on both
/// ends with half the rate: a direct packet is rolled at both ends (1 − (1 − p/2)²,
/// 36 % for 40 %), and a connection that goes through a relay can only be matched
/// in the namespace that opened it (the other end sees the bridge's address), so
/// one end alone would leave half the relayed connections without loss.
fn lossy(ids: &[u64], targets: &[u64], pct: u64) -> BTreeMap<u64, Vec<(u64, Link)>> {
    let half = pct.div_ceil(2);
    let mut out: BTreeMap<u64, Vec<(u64, Link)>> = BTreeMap::new();
    for a in ids {
        for b in ids.iter().filter(|b| *b != a) {
            if targets.contains(a) || targets.contains(b) {
                out.entry(*a).or_default().push((*b, Link::Loss(half)));
            }
        }
    }
    out
}

async fn inflict(pg: &Playground, links: Option<&Links>, p: &Planned, targets: &[u64]) -> anyhow::Result<()> {
    let ids = pg.ids();
    match p.kind {
        FaultKind::Kill => {
            for id in targets {
                pg.kill9(*id).await;
            }
        }
        FaultKind::Pause => {
            for id in targets {
                pg.pause(*id);
            }
        }
        FaultKind::Partition | FaultKind::LeaderIsolation => {
            pg.hosts.as_ref().context("no namespaces")?.set_links(&cut(&ids, targets, Link::Drop)).await?;
        }
        FaultKind::Flaky => {
            pg.hosts.as_ref().context("no namespaces")?.set_links(&lossy(&ids, targets, p.intensity)).await?;
        }
        FaultKind::Slow => links.context("no relayed links")?.slow(targets, Duration::from_millis(p.intensity)),
    }
    Ok(())
}

async fn cure(pg: &Playground, links: Option<&Links>, kind: FaultKind, targets: &[u64]) -> anyhow::Result<()> {
    match kind {
        FaultKind::Kill => {
            for id in targets {
                pg.restart(*id)?;
            }
        }
        FaultKind::Pause => {
            for id in targets {
                pg.resume(*id);
            }
        }
        FaultKind::Partition | FaultKind::LeaderIsolation | FaultKind::Flaky => {
            pg.hosts.as_ref().context("no namespaces")?.heal().await?;
        }
        FaultKind::Slow => links.context("no relayed links")?.clear(),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_is_left_without_a_quorum() {
        let ids = [1, 2, 3];
        assert_eq!(isolated(&ids, FaultKind::Pause, &[1, 2]), vec![3]);
        assert!(isolated(&ids, FaultKind::Kill, &[2]).is_empty());
        assert_eq!(isolated(&ids, FaultKind::Partition, &[2]), vec![2]);
        assert_eq!(isolated(&ids, FaultKind::LeaderIsolation, &[1]), vec![1]);
        assert!(isolated(&ids, FaultKind::Flaky, &[1, 2, 3]).is_empty());
        assert!(isolated(&ids, FaultKind::Slow, &[1]).is_empty());
    }

    #[test]
    fn a_cut_drops_both_ends_and_loss_is_split_between_both_ends() {
        let c = cut(&[1, 2, 3], &[2], Link::Drop);
        assert_eq!(c.get(&2), Some(&vec![(1, Link::Drop), (3, Link::Drop)]));
        assert_eq!(c.get(&1), Some(&vec![(2, Link::Drop)]));
        let l = lossy(&[1, 2, 3], &[3], 25);
        assert_eq!(l.get(&1), Some(&vec![(3, Link::Loss(13))]));
        assert_eq!(l.get(&2), Some(&vec![(3, Link::Loss(13))]));
        assert_eq!(l.get(&3), Some(&vec![(1, Link::Loss(13)), (2, Link::Loss(13))]));
    }
}
