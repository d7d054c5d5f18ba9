//! HTTP requests against ground truth: the demo API's own request log (one JSON line
//! per request that reached it, stamped on arrival, with its path and body digest) and
//! the `demo-api` audit export after healing.
//!
//! - `http-unaudited-request`: a request reached the backend without a committed audit
//!   `statement` event naming it (strict audit, and a POST writes: the record commits
//!   before the door relays it);
//! - `http-body-mismatch`: the body that reached the backend is not the one audited
//!   (its SHA-256 differs from every audited record of the request);
//! - `http-without-lease`: a request reached the backend through node N more than a
//!   lease (plus slack) after a fault left N without a quorum, and before healing
//!   began (the windows of [`super::cut_off_windows`], as for Postgres: both backends
//!   stamp a request on arrival);
//! - `http-received-twice`: one request reached the backend more than once;
//! - `http-acknowledged-not-received`: the client saw a 2xx, and the backend has no
//!   record of the request.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::{SLACK_MS, cut_off_windows};
use crate::history::{Fault, Op, OpKind};

/// The prefix of HTTP workload op ids (`chaos-http-n<node>-c<client>-<seq>`).
const PREFIX: &str = "chaos-http-n";

/// The HTTP op id in `text` and its node.
pub fn op_id_in(text: &str) -> Option<(&str, u64)> {
    let start = text.find(PREFIX)?;
    let rest = text.get(start..)?;
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).unwrap_or(rest.len());
    let id = rest.get(..end)?;
    let node = id.get(PREFIX.len()..)?.split('-').next()?.parse().ok()?;
    Some((id, node))
}

/// A request as the backend received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub op: String,
    pub node: u64,
    /// The backend's clock when the request had arrived (ms since the epoch).
    pub at_ms: u64,
    pub method: String,
    pub body_sha256: Option<String>,
}

/// Workload requests in the demo API's request log (by the op id in their path);
/// other lines are skipped. An empty body has no digest (the audit names none).
pub fn received(log: &str) -> Vec<Received> {
    log.lines()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            let (op, node) = op_id_in(v.get("path")?.as_str()?)?;
            let empty = v.get("body_bytes").and_then(Value::as_u64) == Some(0);
            Some(Received {
                op: op.to_string(),
                node,
                at_ms: v.get("time_ms")?.as_u64()?,
                method: v.get("method").and_then(Value::as_str).unwrap_or_default().to_string(),
                body_sha256: v.get("body_sha256").and_then(Value::as_str).filter(|_| !empty).map(String::from),
            })
        })
        .collect()
}

/// Committed audit "statement" events of HTTP requests in a `sessions export` dump: op
/// id → the body digests its records name (empty string for a record without a body).
pub fn audited_ops(export: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in export.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        for e in v.get("events").and_then(Value::as_array).into_iter().flatten() {
            if e.get("kind").and_then(Value::as_str) != Some("statement") {
                continue;
            }
            let detail = e.get("detail");
            let request = detail.and_then(|d| d.get("request")).and_then(Value::as_str).unwrap_or_default();
            // The path is the request line's second word; the op id must be there (a
            // body may quote anything).
            let path = request.split_whitespace().nth(1).unwrap_or_default();
            if let Some((op, _)) = op_id_in(path) {
                let digest = detail.and_then(|d| d.get("body_sha256")).and_then(Value::as_str).unwrap_or_default();
                out.entry(op.to_string()).or_default().insert(digest.to_string());
            }
        }
    }
    out
}

pub fn check(
    ops: &[Op],
    faults: &[Fault],
    received: &[Received],
    audited: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<Value> {
    let mut v = vec![];
    let mut times: BTreeMap<&str, u64> = BTreeMap::new();
    for r in received {
        *times.entry(&r.op).or_insert(0) += 1;
    }
    for (op, n) in &times {
        if *n > 1 {
            v.push(json!({"check": "http-received-twice", "op": op, "times": n,
                "detail": "one HTTP request reached the backend more than once"}));
        }
    }
    for r in received {
        match audited.get(&r.op) {
            None => v.push(json!({"check": "http-unaudited-request", "op": r.op, "node": r.node,
                "method": r.method, "backend_at_ms": r.at_ms,
                "detail": "a request reached the backend without a committed audit statement event"})),
            Some(digests) => {
                let got = r.body_sha256.clone().unwrap_or_default();
                if !digests.contains(&got) {
                    v.push(json!({"check": "http-body-mismatch", "op": r.op, "node": r.node,
                        "backend_body_sha256": r.body_sha256, "audited_body_sha256": digests,
                        "detail": "the body that reached the backend is not the one audited"}));
                }
            }
        }
    }
    let windows = cut_off_windows(faults);
    for r in received {
        for (from, to, i) in windows.get(&r.node).into_iter().flatten() {
            if r.at_ms >= *from && r.at_ms <= *to {
                let f = faults.get(*i);
                v.push(json!({"check": "http-without-lease", "op": r.op, "node": r.node, "backend_at_ms": r.at_ms,
                    "quorum_lost_at_ms": f.map(|f| f.start_ms), "fault_nodes": f.map(|f| f.nodes.clone()),
                    "fault": f.map(|f| f.kind),
                    "late_ms": r.at_ms.saturating_sub(from - SLACK_MS),
                    "detail": "a request reached the backend through a node past its lease without a quorum"}));
            }
        }
    }
    for op in ops.iter().filter(|o| o.f == OpKind::Http && o.ok) {
        if !times.contains_key(op.op.as_str()) {
            v.push(json!({"check": "http-acknowledged-not-received", "op": op.op, "node": op.node,
                "detail": "the client saw a 2xx, but the backend has no record of the request"}));
        }
    }
    v
}

/// The HTTP part of the summary.
pub fn summary(ops: &[Op], received: &[Received], audited: &BTreeMap<String, BTreeSet<String>>) -> Value {
    let http: Vec<&Op> = ops.iter().filter(|o| o.f == OpKind::Http).collect();
    json!({
        "ops": http.len(),
        "ok": http.iter().filter(|o| o.ok).count(),
        "indeterminate": http.iter().filter(|o| o.indeterminate).count(),
        // Refused by the door without its lease (or its quorum): 503.
        "unavailable": http.iter().filter(|o| o.error.as_deref().is_some_and(|e| e.starts_with("HTTP 503"))).count(),
        "backend_requests": received.len(),
        "audited": audited.len(),
    })
}

#[cfg(test)]
mod tests;
