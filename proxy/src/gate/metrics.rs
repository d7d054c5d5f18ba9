//! The door metrics, recorded once here for every door (docs/operations.md lists them).
//!
//! Labels: `door` is the protocol (`postgres`, `ssh`, `http`); `resource` the resource
//! name; `action` the combined policy verdict; `reason` a [`Refusal`](super::Refusal)
//! label; `mode` the resource's audit mode; `outcome` how a hold ended.

use std::time::{Duration, Instant};

use portcullis_raft::model::AuditMode;

use crate::policy::Protocol;

/// Policy decided one unit of work.
pub(super) fn decided(door: Protocol, resource: &str, action: &'static str) {
    metrics::counter!("portcullis_gate_decisions_total", "door" => door.as_str(), "resource" => resource.to_string(), "action" => action)
        .increment(1);
}

/// A unit of work was refused.
pub(super) fn refused(door: Protocol, reason: &'static str) {
    metrics::counter!("portcullis_gate_refusals_total", "door" => door.as_str(), "reason" => reason).increment(1);
}

/// An audit commit ended (`ok` false: it failed or timed out).
pub(super) fn audit_committed(mode: AuditMode, took: Duration, ok: bool) {
    let mode = match mode {
        AuditMode::Strict => "strict",
        AuditMode::Fast => "fast",
    };
    metrics::histogram!("portcullis_gate_audit_commit_seconds", "mode" => mode, "ok" => if ok { "true" } else { "false" })
        .record(took.as_secs_f64());
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
