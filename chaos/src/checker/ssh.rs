//! SSH commands against ground truth: the host's own log of the SSH workload (one
//! line `<op id> <host ms>` per command that ran, written by the command itself) and
//! the `demo-ssh` audit export after healing.
//!
//! - `ssh-unaudited-command`: a command ran on the host without a committed audit
//!   `statement` event (the resource is strict: the record commits before it runs);
//! - `ssh-without-lease`: a command ran on the host through node N more than a lease
//!   (plus slack, plus [`HOST_START_MS`]) after a fault left N without a quorum, and
//!   before healing began (the windows of [`super::cut_off_windows`]);
//! - `ssh-ran-twice`: one command ran more than once;
//! - `ssh-acknowledged-not-run`: the client saw exit 0, and the host has no line.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::{SLACK_MS, cut_off_windows};
use crate::history::{Fault, Op, OpKind};

/// The prefix of SSH workload op ids (`chaos-ssh-n<node>-c<client>-<seq>`).
const PREFIX: &str = "chaos-ssh-n";

/// The host's timestamp is taken by `date` inside the command, after the door sent
/// the request: sshd forks a session, the login shell starts, then the command
/// substitution runs. On a loaded machine that can take a few hundred milliseconds
/// after the node last checked its lease, so the window starts this much later than
/// for Postgres (whose log stamps a statement on arrival).
pub const HOST_START_MS: u64 = 500;

/// The SSH op id in `text` and its node.
pub fn op_id_in(text: &str) -> Option<(&str, u64)> {
    let start = text.find(PREFIX)?;
    let rest = text.get(start..)?;
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).unwrap_or(rest.len());
    let id = rest.get(..end)?;
    let node = id.get(PREFIX.len()..)?.split('-').next()?.parse().ok()?;
    Some((id, node))
}

/// A command as the host ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRun {
    pub op: String,
    pub node: u64,
    /// The host's clock when the command ran (ms since the epoch).
    pub at_ms: u64,
}

/// Lines `<op id> <ms>` of the host's log; anything else is skipped.
pub fn host_runs(log: &str) -> Vec<HostRun> {
    log.lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let (op, node) = op_id_in(fields.next()?)?;
            let at_ms = fields.next()?.parse().ok()?;
            Some(HostRun { op: op.to_string(), node, at_ms })
        })
        .collect()
}

/// Op ids of committed audit "statement" events of SSH commands in a `sessions
/// export` dump.
pub fn audited_ops(export: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in export.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        for e in v.get("events").and_then(Value::as_array).into_iter().flatten() {
            if e.get("kind").and_then(Value::as_str) != Some("statement") {
                continue;
            }
            let command = e.get("detail").and_then(|d| d.get("command")).and_then(Value::as_str).unwrap_or_default();
            if let Some((op, _)) = op_id_in(command) {
                out.insert(op.to_string());
            }
        }
    }
    out
}

pub fn check(ops: &[Op], faults: &[Fault], runs: &[HostRun], audited: &BTreeSet<String>) -> Vec<Value> {
    let mut v = vec![];
    let mut times: BTreeMap<&str, u64> = BTreeMap::new();
    for r in runs {
        *times.entry(&r.op).or_insert(0) += 1;
    }
    for (op, n) in &times {
        if *n > 1 {
            v.push(json!({"check": "ssh-ran-twice", "op": op, "runs": n, "detail": "an SSH command ran on the host more than once"}));
        }
        if !audited.contains(*op) {
            v.push(json!({"check": "ssh-unaudited-command", "op": op,
                "detail": "a command ran on the host without a committed audit statement event"}));
        }
    }
    let windows = cut_off_windows(faults);
    for r in runs {
        for (from, to, i) in windows.get(&r.node).into_iter().flatten() {
            if r.at_ms >= from + HOST_START_MS && r.at_ms <= *to {
                let f = faults.get(*i);
                v.push(json!({"check": "ssh-without-lease", "op": r.op, "node": r.node, "host_at_ms": r.at_ms,
                    "quorum_lost_at_ms": f.map(|f| f.start_ms), "fault_nodes": f.map(|f| f.nodes.clone()),
                    "fault": f.map(|f| f.kind),
                    "late_ms": r.at_ms.saturating_sub(from - SLACK_MS),
                    "detail": "a command ran on the host through a node past its lease without a quorum"}));
            }
        }
    }
    for op in ops.iter().filter(|o| o.f == OpKind::Ssh && o.ok) {
        if !times.contains_key(op.op.as_str()) {
            v.push(json!({"check": "ssh-acknowledged-not-run", "op": op.op, "node": op.node,
                "detail": "the client saw exit 0, but the host has no line for the command"}));
        }
    }
    v
}

/// The SSH part of the summary.
pub fn summary(ops: &[Op], runs: &[HostRun], audited: &BTreeSet<String>) -> Value {
    let ssh: Vec<&Op> = ops.iter().filter(|o| o.f == OpKind::Ssh).collect();
    json!({
        "ops": ssh.len(),
        "ok": ssh.iter().filter(|o| o.ok).count(),
        "indeterminate": ssh.iter().filter(|o| o.indeterminate).count(),
        // The door refused to open a channel (its per-connection channel limit); the
        // client then logs in again.
        "channel_refused": ssh.iter().filter(|o| o.error.as_deref().is_some_and(|e| e.contains("ResourceShortage"))).count(),
        "host_runs": runs.len(),
        "audited": audited.len(),
    })
}

#[cfg(test)]
mod tests;
