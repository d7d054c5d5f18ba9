//! The checker: the history against ground truth (the backend's ledger table, the
//! backend's own statement log, and the cluster's audit export after healing).
//!
//! Checks:
//! - `unaudited-write`: a ledger row whose operation has no committed audit
//!   "statement" event (strict audit: nothing reaches the backend unaudited);
//! - `lost-write`: an acknowledged INSERT missing from the ledger or the audit;
//! - `relay-without-lease`: a statement that reached the backend from a node more
//!   than a lease (plus slack) after that node was left without a quorum;
//! - `gated-*` ([`gated`]): an approved statement ran exactly once, a denied or
//!   expired one never;
//! - `ssh-*` ([`ssh`]): every command that ran on the SSH host has a committed
//!   audit record, none ran through a node past its lease without a quorum;
//! - `http-*` ([`http`]): every request that reached the demo API has a committed
//!   audit record (and the audited body), none reached it through a node past its
//!   lease without a quorum;
//! - `no-convergence` / `digest-mismatch` ([`converge`]): after healing, nodes
//!   disagree on the applied index or on policies, approvals or the session index.

pub mod converge;
pub mod gated;
pub mod http;
pub mod ssh;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::history::{Fault, FaultKind, Op, OpKind};

/// The nodes' lease (DESIGN §4) and the slack we allow for scheduling and logging.
pub const LEASE_MS: u64 = 1000;
pub const SLACK_MS: u64 = 250;

/// The operation id in `text` (`chaos-n<node>-c<client>-<seq>`) and its node.
pub fn op_id_in(text: &str) -> Option<(&str, u64)> {
    let start = text.find("chaos-n")?;
    let rest = text.get(start..)?;
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).unwrap_or(rest.len());
    let id = rest.get(..end)?;
    let node = id.get("chaos-n".len()..)?.split('-').next()?.parse().ok()?;
    Some((id, node))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds since the epoch of a Postgres log line stamped `%m` in UTC
/// (`2025-11-27 14:23:00.123 UTC ...`); None for other lines.
pub fn log_line_ms(line: &str) -> Option<u64> {
    let stamp = line.get(..27)?;
    if stamp.get(23..)? != " UTC" {
        return None;
    }
    let num = |a: usize, b: usize| -> Option<i64> { stamp.get(a..b)?.parse().ok() };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, s, ms) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s;
    u64::try_from(secs * 1000 + ms).ok()
}

/// A workload statement as the backend logged it on arrival.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    pub op: String,
    pub node: u64,
    pub at_ms: u64,
}

/// Workload statements in the backend's log (log_statement = all).
pub fn relays(log: &str) -> Vec<Relay> {
    log.lines()
        .filter(|l| l.contains("LOG:  statement: "))
        .filter_map(|l| {
            let (op, node) = op_id_in(l.split_once("LOG:  statement: ")?.1)?;
            Some(Relay { op: op.to_string(), node, at_ms: log_line_ms(l)? })
        })
        .collect()
}

/// Operation ids of committed audit "statement" events in a `sessions export` dump.
pub fn audited_ops(export: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in export.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        for e in v.get("events").and_then(Value::as_array).into_iter().flatten() {
            if e.get("kind").and_then(Value::as_str) != Some("statement") {
                continue;
            }
            let sql = e.get("detail").and_then(|d| d.get("sql")).and_then(Value::as_str).unwrap_or_default();
            if let Some((op, _)) = op_id_in(sql) {
                out.insert(op.to_string());
            }
        }
    }
    out
}

/// Windows (node → [from, to] in ms) in which a node must not relay anything: from
/// a lease (plus slack) after a fault left it without a quorum until healing began.
pub fn cut_off_windows(faults: &[Fault]) -> BTreeMap<u64, Vec<(u64, u64, usize)>> {
    let mut out: BTreeMap<u64, Vec<(u64, u64, usize)>> = BTreeMap::new();
    for (i, f) in faults.iter().enumerate() {
        let from = f.start_ms + LEASE_MS + SLACK_MS;
        if from >= f.end_ms {
            continue;
        }
        for id in &f.isolated {
            out.entry(*id).or_default().push((from, f.end_ms, i));
        }
    }
    out
}

pub struct Evidence<'a> {
    pub ops: &'a [Op],
    pub faults: &'a [Fault],
    pub ledger: &'a BTreeSet<String>,
    pub audited: &'a BTreeSet<String>,
    pub relays: &'a [Relay],
}

pub fn check(ev: &Evidence<'_>) -> Vec<Value> {
    let mut v = vec![];
    for op in ev.ledger {
        if !ev.audited.contains(op) {
            v.push(json!({"check": "unaudited-write", "op": op, "detail": "ledger row without a committed audit statement event"}));
        }
    }
    for op in ev.ops.iter().filter(|o| o.ok && o.f == OpKind::Insert) {
        let in_ledger = ev.ledger.contains(&op.op);
        let in_audit = ev.audited.contains(&op.op);
        if !in_ledger || !in_audit {
            v.push(json!({"check": "lost-write", "op": op.op, "node": op.node, "in_ledger": in_ledger, "in_audit": in_audit,
                "detail": "an acknowledged INSERT is missing"}));
        }
    }
    let windows = cut_off_windows(ev.faults);
    for r in ev.relays {
        for (from, to, i) in windows.get(&r.node).into_iter().flatten() {
            if r.at_ms >= *from && r.at_ms <= *to {
                let f = ev.faults.get(*i);
                v.push(json!({"check": "relay-without-lease", "op": r.op, "node": r.node, "backend_at_ms": r.at_ms,
                    "quorum_lost_at_ms": f.map(|f| f.start_ms), "fault_nodes": f.map(|f| f.nodes.clone()),
                    "fault": f.map(|f| f.kind),
                    "late_ms": r.at_ms.saturating_sub(from - SLACK_MS),
                    "detail": "a statement reached the backend from a node past its lease without a quorum"}));
            }
        }
    }
    v
}

/// Failover times: from a fault that took the leader (alone) away — killed, paused,
/// partitioned or isolated; slow and lossy links do not take it away — to the first
/// INSERT invoked afterwards through a surviving node that succeeded.
pub fn failovers(ops: &[Op], faults: &[Fault]) -> Vec<u64> {
    faults
        .iter()
        .filter(|f| !matches!(f.kind, FaultKind::Flaky | FaultKind::Slow))
        .filter(|f| f.nodes.len() == 1 && f.leader_before.is_some_and(|l| f.nodes.contains(&l)))
        .filter_map(|f| {
            ops.iter()
                .filter(|o| o.ok && o.f == OpKind::Insert && !f.nodes.contains(&o.node) && o.invoked_ms >= f.start_ms)
                .map(|o| o.completed_ms.saturating_sub(f.start_ms))
                .min()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: &str, node: u64, f: OpKind, ok: bool, invoked: u64, completed: u64) -> Op {
        Op {
            op: id.into(),
            node,
            client: 0,
            f,
            invoked_ms: invoked,
            completed_ms: completed,
            ok,
            indeterminate: false,
            error: None,
        }
    }

    #[test]
    fn op_ids_and_log_stamps_parse() {
        assert_eq!(op_id_in("INSERT INTO ledger VALUES ('chaos-n2-c1-17', 2)"), Some(("chaos-n2-c1-17", 2)));
        assert_eq!(op_id_in("SELECT 1 /* chaos-n13-c0-1 */"), Some(("chaos-n13-c0-1", 13)));
        assert_eq!(op_id_in("SELECT 1"), None);
        assert_eq!(log_line_ms("1970-01-01 00:00:01.250 UTC [1] LOG:  x"), Some(1250));
        assert_eq!(log_line_ms("2024-03-01 12:00:00.000 UTC [1] x"), Some(1_709_294_400_000));
        assert_eq!(log_line_ms("2024-03-01 12:00:00.000 CET [1] x"), None);
        assert_eq!(log_line_ms("short"), None);
        let log = "2024-03-01 12:00:00.000 UTC [9] portcullis LOG:  statement: SELECT count(*) FROM ledger /* chaos-n3-c0-5 */\n\
                   2024-03-01 12:00:00.001 UTC [9] psql LOG:  statement: SELECT op_id FROM ledger\n";
        assert_eq!(relays(log), vec![Relay { op: "chaos-n3-c0-5".into(), node: 3, at_ms: 1_709_294_400_000 }]);
    }

    #[test]
    fn the_checker_fails_on_each_kind_of_violation_and_passes_a_clean_history() {
        let faults = vec![Fault {
            kind: FaultKind::Pause,
            nodes: vec![1, 2],
            isolated: vec![3],
            intensity: 0,
            leader_before: Some(1),
            start_ms: 10_000,
            end_ms: 15_000,
        }];
        let ops = vec![
            op("chaos-n3-c0-1", 3, OpKind::Insert, true, 1000, 1010),
            op("chaos-n3-c0-2", 3, OpKind::Insert, true, 2000, 2010),
        ];
        let ledger: BTreeSet<String> = ["chaos-n3-c0-1", "chaos-n1-c0-9"].iter().map(|s| s.to_string()).collect();
        let audited: BTreeSet<String> = ["chaos-n3-c0-1", "chaos-n3-c0-2"].iter().map(|s| s.to_string()).collect();
        let relays = vec![
            Relay { op: "chaos-n3-c0-3".into(), node: 3, at_ms: 11_000 }, // within the lease
            Relay { op: "chaos-n3-c0-4".into(), node: 3, at_ms: 12_000 }, // past it
            Relay { op: "chaos-n1-c0-5".into(), node: 1, at_ms: 12_000 }, // a paused node itself
        ];
        let v = check(&Evidence { ops: &ops, faults: &faults, ledger: &ledger, audited: &audited, relays: &relays });
        let kinds: Vec<&str> = v.iter().filter_map(|x| x.get("check").and_then(Value::as_str)).collect();
        assert_eq!(kinds, vec!["unaudited-write", "lost-write", "relay-without-lease"], "{v:?}");

        let ledger: BTreeSet<String> = audited.clone();
        let clean = check(&Evidence {
            ops: &ops,
            faults: &faults,
            ledger: &ledger,
            audited: &audited,
            relays: &relays.iter().take(1).cloned().collect::<Vec<_>>(),
        });
        assert!(clean.is_empty(), "{clean:?}");
    }

    #[test]
    fn a_single_node_fault_cuts_nobody_off_and_failover_is_measured_from_leader_faults() {
        let faults = vec![Fault {
            kind: FaultKind::Kill,
            nodes: vec![2],
            isolated: vec![],
            intensity: 0,
            leader_before: Some(2),
            start_ms: 100,
            end_ms: 5000,
        }];
        assert!(cut_off_windows(&faults).is_empty());
        let ops = vec![
            op("a", 1, OpKind::Insert, true, 50, 120),   // invoked before the fault
            op("b", 2, OpKind::Insert, true, 200, 300),  // through the dead node
            op("c", 3, OpKind::Insert, false, 200, 900), // failed
            op("d", 3, OpKind::Insert, true, 1000, 2600),
            op("e", 1, OpKind::Insert, true, 1100, 2400),
        ];
        assert_eq!(failovers(&ops, &faults), vec![2300]);
    }
}
