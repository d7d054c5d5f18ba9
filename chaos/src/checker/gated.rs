//! Approval-gated statements against ground truth: the backend's `gated` table
//! (one row per execution; it has no key, so a statement that ran twice shows as
//! two rows) and the approvals every node agrees on after healing.
//!
//! - `gated-ran-twice`: a statement ran more than once;
//! - `gated-ran-without-approval`: it ran, and its approval is not `approved`
//!   (denied, expired, still pending, or no approval at all);
//! - `gated-acknowledged-not-run` / `gated-acknowledged-without-approval`: the
//!   client was told it succeeded, but it did not run, or was never approved;
//! - `unaudited-write`: a row in `gated` without a committed audit statement event;
//! - `overdue-pending`: an approval still `pending` well past its deadline (nobody
//!   waits for it any more; it must end expired, not stay approvable).
//!
//! An approved statement whose client got an error may have run 0 times (the node
//! lost its lease while it waited, so it was not run) or once (the connection broke
//! after it ran): both are allowed; twice is not.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::op_id_in;
use crate::history::{Op, OpKind};

/// One approval as `approvals list --json` shows it, keyed by the op id in its SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub id: String,
    pub status: String,
}

/// Approvals of workload statements from an `approvals list --json` document.
pub fn approvals(list: &Value) -> BTreeMap<String, Approval> {
    let mut out = BTreeMap::new();
    for a in list.as_array().into_iter().flatten() {
        let action = a.get("action").and_then(Value::as_str).unwrap_or_default();
        let Some((op, _)) = op_id_in(action) else { continue };
        let field = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        out.insert(op.to_string(), Approval { id: field("id"), status: field("status") });
    }
    out
}

/// How long past its deadline an approval may still show `pending`: the leader sweeps
/// overdue approvals once a second, and healing may just have elected it.
pub const OVERDUE_GRACE_MS: u64 = 5_000;

/// Approvals in an `approvals list --json` document still pending `OVERDUE_GRACE_MS`
/// after their deadline, as of `now_ms`. A deadline that passed while the cluster had
/// no leader to sweep it counts from `serving_since_ms` (when the harness saw every
/// node serving again after healing): nothing can expire an approval without a quorum.
pub fn overdue(list: &Value, now_ms: u64, serving_since_ms: u64) -> Vec<Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|a| a.get("status").and_then(Value::as_str) == Some("pending"))
        .filter(|a| {
            a.get("expires_at_ms")
                .and_then(Value::as_u64)
                .is_some_and(|e| e.max(serving_since_ms).saturating_add(OVERDUE_GRACE_MS) < now_ms)
        })
        .map(|a| {
            json!({"check": "overdue-pending", "approval": a.get("id"), "expires_at_ms": a.get("expires_at_ms"),
                "checked_at_ms": now_ms, "detail": "an approval is still pending long after its deadline"})
        })
        .collect()
}

/// Outcome counts for the summary: statuses of the workload's approvals.
pub fn tally(approvals: &BTreeMap<String, Approval>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for a in approvals.values() {
        *out.entry(a.status.clone()).or_insert(0) += 1;
    }
    out
}

pub fn check(
    ops: &[Op],
    runs: &BTreeMap<String, u64>,
    approvals: &BTreeMap<String, Approval>,
    audited: &BTreeSet<String>,
) -> Vec<Value> {
    let mut v = vec![];
    let status = |op: &str| approvals.get(op).map(|a| a.status.as_str()).unwrap_or("none");
    for (op, n) in runs {
        if *n > 1 {
            v.push(
                json!({"check": "gated-ran-twice", "op": op, "runs": n, "approval": approvals.get(op).map(|a| &a.id),
                "detail": "an approval-gated statement ran more than once"}),
            );
        }
        if *n >= 1 && status(op) != "approved" {
            v.push(json!({"check": "gated-ran-without-approval", "op": op, "runs": n, "status": status(op),
                "approval": approvals.get(op).map(|a| &a.id), "detail": "a gated statement ran without an approval"}));
        }
        if !audited.contains(op) {
            v.push(json!({"check": "unaudited-write", "op": op, "detail": "gated row without a committed audit statement event"}));
        }
    }
    for op in ops.iter().filter(|o| o.f == OpKind::Gated && o.ok) {
        let n = runs.get(&op.op).copied().unwrap_or(0);
        if n == 0 {
            v.push(
                json!({"check": "gated-acknowledged-not-run", "op": op.op, "node": op.node, "status": status(&op.op),
                "detail": "the client was told the gated statement ran, but it is not in the backend"}),
            );
        }
        if status(&op.op) != "approved" {
            v.push(json!({"check": "gated-acknowledged-without-approval", "op": op.op, "node": op.node,
                "status": status(&op.op), "detail": "the client was told a gated statement ran that was not approved"}));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gated(id: &str, ok: bool) -> Op {
        Op {
            op: id.into(),
            node: 1,
            client: 0,
            f: OpKind::Gated,
            invoked_ms: 0,
            completed_ms: 1,
            ok,
            indeterminate: false,
            error: None,
        }
    }

    #[test]
    fn approved_once_is_clean_and_every_other_outcome_is_a_violation() {
        let list = json!([
            {"id": "a1", "status": "approved", "action": "INSERT INTO gated VALUES ('chaos-n1-c0-1', 1)"},
            {"id": "a2", "status": "denied", "action": "INSERT INTO gated VALUES ('chaos-n1-c0-2', 1)"},
            {"id": "a3", "status": "expired", "action": "INSERT INTO gated VALUES ('chaos-n1-c0-3', 1)"},
            {"id": "a4", "status": "approved", "action": "INSERT INTO gated VALUES ('chaos-n1-c0-4', 1)"},
            {"id": "x", "status": "approved", "action": "DELETE FROM customers"},
        ]);
        let approvals = approvals(&list);
        assert_eq!(approvals.len(), 4);
        assert_eq!(tally(&approvals).get("approved"), Some(&2));
        let audited: BTreeSet<String> = ["chaos-n1-c0-1", "chaos-n1-c0-4"].iter().map(|s| s.to_string()).collect();
        let clean_runs: BTreeMap<String, u64> = [("chaos-n1-c0-1".to_string(), 1)].into();
        let ops = vec![gated("chaos-n1-c0-1", true), gated("chaos-n1-c0-2", false), gated("chaos-n1-c0-4", false)];
        assert!(check(&ops, &clean_runs, &approvals, &audited).is_empty());

        let runs: BTreeMap<String, u64> = [("chaos-n1-c0-1".to_string(), 2), ("chaos-n1-c0-2".to_string(), 1)].into();
        let ops = vec![gated("chaos-n1-c0-1", true), gated("chaos-n1-c0-3", true)];
        let v = check(&ops, &runs, &approvals, &audited);
        let kinds: Vec<&str> = v.iter().filter_map(|x| x.get("check").and_then(Value::as_str)).collect();
        assert_eq!(
            kinds,
            vec![
                "gated-ran-twice",
                "gated-ran-without-approval",
                "unaudited-write",
                "gated-acknowledged-not-run",
                "gated-acknowledged-without-approval"
            ],
            "{v:?}"
        );
    }
}

#[cfg(test)]
mod overdue_tests {
    use super::*;

    #[test]
    fn only_pending_approvals_well_past_their_deadline_are_overdue() {
        let list = json!([
            {"id": "late", "status": "pending", "expires_at_ms": 1_000},
            {"id": "just-due", "status": "pending", "expires_at_ms": 9_000},
            {"id": "decided", "status": "expired", "expires_at_ms": 1_000},
            {"id": "future", "status": "pending", "expires_at_ms": 20_000},
        ]);
        let v = overdue(&list, 10_000, 0);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v.first().and_then(|x| x.get("approval")), Some(&json!("late")));
        // The cluster served again only at 6 s: the sweep has had 4 s, not enough yet.
        assert!(overdue(&list, 10_000, 6_000).is_empty());
        assert_eq!(overdue(&list, 11_001, 6_000).len(), 1);
    }
}
