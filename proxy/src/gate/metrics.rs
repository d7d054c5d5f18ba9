//! The door metrics, recorded once here for every door (docs/operations.md lists them).
//!
//! Labels: `door` is the protocol (`postgres`, `ssh`, `http`); `resource` the resource
//! name; `action` the combined policy verdict; `reason` a [`Refusal`](super::Refusal)
//! label; `mode` the resource's audit mode; `outcome` how a hold ended.
//!
//! What is recorded per unit of work goes through handles a session registers once
//! ([`SessionMeters`]), so the hot path is an atomic add, not a registry lookup.

use std::time::{Duration, Instant};

use metrics::{Counter, Histogram};
use portcullis_raft::model::AuditMode;

use crate::policy::Protocol;

/// A session's handles for what it records per unit of work.
pub(super) struct SessionMeters {
    allow: Counter,
    deny: Counter,
    review: Counter,
    pub(super) commits: CommitMeter,
}

impl SessionMeters {
    pub(super) fn register(door: Protocol, resource: &str, mode: AuditMode) -> Self {
        let decisions = |action: &'static str| metrics::counter!("portcullis_gate_decisions_total", "door" => door.as_str(), "resource" => resource.to_string(), "action" => action);
        SessionMeters {
            allow: decisions("allow"),
            deny: decisions("deny"),
            review: decisions("review"),
            commits: CommitMeter::register(mode),
        }
    }

    /// Policy decided one unit of work (`action` as [`Judgement::action`](super::Judgement::action)).
    pub(super) fn decided(&self, action: &'static str) {
        match action {
            "allow" => self.allow.increment(1),
            "deny" => self.deny.increment(1),
            _ => self.review.increment(1),
        }
    }
}

/// Audit commit latency of one audit mode, split by success.
#[derive(Clone)]
pub(super) struct CommitMeter {
    ok: Histogram,
    failed: Histogram,
}

impl CommitMeter {
    fn register(mode: AuditMode) -> Self {
        let mode = match mode {
            AuditMode::Strict => "strict",
            AuditMode::Fast => "fast",
        };
        CommitMeter {
            ok: metrics::histogram!("portcullis_gate_audit_commit_seconds", "mode" => mode, "ok" => "true"),
            failed: metrics::histogram!("portcullis_gate_audit_commit_seconds", "mode" => mode, "ok" => "false"),
        }
    }

    /// An audit commit ended (`ok` false: it failed or timed out).
    pub(super) fn committed(&self, took: Duration, ok: bool) {
        let h = if ok { &self.ok } else { &self.failed };
        h.record(took.as_secs_f64());
    }
}

/// A unit of work was refused.
pub(super) fn refused(door: Protocol, reason: &'static str) {
    metrics::counter!("portcullis_gate_refusals_total", "door" => door.as_str(), "reason" => reason).increment(1);
}

/// Counts a hold as pending while it lives; records its duration and outcome when it
/// ends (`finish`), or as `abandoned` if dropped first (the session ended mid-hold).
pub(super) struct HoldTimer {
    door: Protocol,
    started: Instant,
    outcome: &'static str,
}

impl HoldTimer {
    pub(super) fn start(door: Protocol) -> Self {
        metrics::gauge!("portcullis_gate_holds_pending", "door" => door.as_str()).increment(1.0);
        HoldTimer { door, started: Instant::now(), outcome: "abandoned" }
    }

    pub(super) fn finish(mut self, outcome: &'static str) {
        self.outcome = outcome;
    }
}

impl Drop for HoldTimer {
    fn drop(&mut self) {
        let door = self.door.as_str();
        metrics::gauge!("portcullis_gate_holds_pending", "door" => door).decrement(1.0);
        metrics::histogram!("portcullis_gate_hold_seconds", "door" => door, "outcome" => self.outcome)
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// Counts a session as open while it lives.
pub(super) struct OpenSession {
    door: Protocol,
}

impl OpenSession {
    pub(super) fn start(door: Protocol) -> Self {
        metrics::gauge!("portcullis_gate_sessions_open", "door" => door.as_str()).increment(1.0);
        metrics::counter!("portcullis_gate_sessions_total", "door" => door.as_str()).increment(1);
        OpenSession { door }
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        metrics::gauge!("portcullis_gate_sessions_open", "door" => self.door.as_str()).decrement(1.0);
    }
}
