//! Why a unit of work did not run: the gate's one refusal type.
//!
//! Every phase that can stop a statement, command or request says why with a
//! [`Refusal`]. The gate records it ([`GateSession::refused`](super::GateSession::refused));
//! each door turns it into its protocol's own words in one exhaustive function
//! (Postgres: `postgres::reply::refusal`, a SQLSTATE and a message), so a new refusal
//! cannot be added without every door deciding how to say it.

use std::fmt;
use std::time::Duration;

/// Why the input could not be classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unclassified {
    /// Not valid in the protocol's language (a SQL syntax error, an unparseable command line).
    Syntax,
    /// Larger than the configured limit.
    TooLarge,
    /// Nested too deeply to classify safely.
    TooComplex,
}

/// Why the gate refused one unit of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// This node does not hold the quorum lease: nothing is decided or relayed.
    LeaseLost,
    /// The door could not classify the input, so policy cannot judge it (fail closed).
    /// `position`: where in the input the problem is, if known: a 1-based character
    /// position once [`located_in`](Refusal::located_in) the input (a byte offset before).
    Unclassifiable { cause: Unclassified, detail: String, position: Option<usize> },
    /// Policy denied it; `reason` names the rule.
    Denied { reason: String },
    /// Policy sent it to review, but the approval request could not be recorded.
    HoldNotRecorded { detail: String },
    /// An approver denied it.
    ApprovalDenied { approval: String, by: String, reason: String },
    /// Nobody decided within the rule's timeout.
    ApprovalExpired { approval: String, after: Duration },
    /// The client asked to cancel it while it was held.
    CanceledWhileHeld { approval: String },
    /// The client went away while it was held.
    ClientGoneWhileHeld { approval: String },
    /// This node lost its quorum lease while it was held.
    LeaseLostWhileHeld { approval: String },
    /// Strict audit: its record could not be committed, so it was not relayed
    /// (`results_withheld`: it ran, as a read, but its results were not released).
    AuditNotCommitted { results_withheld: bool },
    /// The door cannot carry it at all (a protocol feature it does not support).
    Unsupported { detail: String },
    /// The client would not wait (HTTP `Prefer: respond-async`): an approval request was
    /// recorded for exactly this work, to be decided by `decide_by` (Unix ms); the client
    /// repeats the work with the approval once it is approved.
    Deferred { approval: String, decide_by: portcullis_raft::model::Millis },
    /// A repeated request's approval cannot be used (not approved, used already, for
    /// another request or identity, too late); `why` says which.
    ApprovalUnusable { approval: String, why: String },
    /// The door has no decision covering it (e.g. a Postgres statement name the gateway
    /// never saw prepared).
    Undecided { detail: String },
}

// === impl Refusal ===

impl Refusal {
    /// The approval the refused work waited for, if it was held.
    pub fn approval(&self) -> Option<&str> {
        match self {
            Refusal::ApprovalDenied { approval, .. }
            | Refusal::ApprovalExpired { approval, .. }
            | Refusal::CanceledWhileHeld { approval }
            | Refusal::ClientGoneWhileHeld { approval }
            | Refusal::LeaseLostWhileHeld { approval }
            | Refusal::Deferred { approval, .. }
            | Refusal::ApprovalUnusable { approval, .. } => Some(approval),
            _ => None,
        }
    }

    /// The refusal with its position counted in characters of `text` from 1, as
    /// Postgres reports positions.
    pub fn located_in(self, text: &str) -> Self {
        match self {
            Refusal::Unclassifiable { cause, detail, position: Some(at) } => {
                let chars = text.get(..at).map_or(0, |head| head.chars().count());
                Refusal::Unclassifiable { cause, detail, position: Some(chars + 1) }
            }
            other => other,
        }
    }

    /// A short stable label for metrics (`portcullis_gate_refusals_total{reason}`).
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::LeaseLost => "lease_lost",
            Refusal::Unclassifiable { .. } => "unclassifiable",
            Refusal::Denied { .. } => "denied",
            Refusal::HoldNotRecorded { .. } => "hold_not_recorded",
            Refusal::ApprovalDenied { .. } => "approval_denied",
            Refusal::ApprovalExpired { .. } => "approval_expired",
            Refusal::CanceledWhileHeld { .. } => "canceled_while_held",
            Refusal::ClientGoneWhileHeld { .. } => "client_gone_while_held",
            Refusal::LeaseLostWhileHeld { .. } => "lease_lost_while_held",
            Refusal::AuditNotCommitted { .. } => "audit_not_committed",
            Refusal::Undecided { .. } => "undecided",
            Refusal::Unsupported { .. } => "unsupported",
            Refusal::Deferred { .. } => "deferred",
            Refusal::ApprovalUnusable { .. } => "approval_unusable",
        }
    }
}

/// The message a client reads; the same text goes into the audit record.
impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::LeaseLost => f.write_str("this Portcullis node lost its quorum lease; nothing was run"),
            Refusal::Unclassifiable { detail, .. } => f.write_str(detail),
            Refusal::Denied { reason } => f.write_str(reason),
            Refusal::HoldNotRecorded { detail } => {
                write!(f, "the approval request could not be recorded, so the statement was not run: {detail}")
            }
            Refusal::ApprovalDenied { approval, by, reason } => {
                write!(f, "approval {approval} denied by {by}: {reason}")
            }
            Refusal::ApprovalExpired { approval, after } => {
                write!(f, "approval {approval} expired after {after:?} without a decision; not run")
            }
            Refusal::CanceledWhileHeld { approval } => {
                write!(f, "canceling statement due to user request while it waited for approval {approval}; not run")
            }
            Refusal::ClientGoneWhileHeld { approval } => {
                write!(f, "the client went away while its statement waited for approval {approval}; not run")
            }
            Refusal::LeaseLostWhileHeld { approval } => {
                write!(f, "this node lost its quorum lease while statement waited for approval {approval}; not run")
            }
            Refusal::AuditNotCommitted { results_withheld: false } => {
                f.write_str("the audit record could not be committed (no quorum); not run")
            }
            Refusal::AuditNotCommitted { results_withheld: true } => {
                f.write_str("the audit record could not be committed (no quorum); results withheld")
            }
            Refusal::Undecided { detail } | Refusal::Unsupported { detail } => f.write_str(detail),
            Refusal::Deferred { approval, .. } => write!(
                f,
                "waiting for approval {approval}; not run. Repeat the same request with the header \
                 `Portcullis-Approval: {approval}` once it is approved"
            ),
            Refusal::ApprovalUnusable { why, .. } => write!(f, "{why}; not run"),
        }
    }
}

impl From<crate::error::Error> for Refusal {
    /// A classification error (the only errors a door's classify returns) as a refusal.
    fn from(e: crate::error::Error) -> Self {
        use crate::error::Error;
        let (cause, position) = match &e {
            Error::SqlTooLarge { .. } => (Unclassified::TooLarge, None),
            Error::SqlTooComplex { .. } => (Unclassified::TooComplex, None),
            Error::SqlUnparseable { position, .. } => (Unclassified::Syntax, *position),
            _ => (Unclassified::Syntax, None),
        };
        Refusal::Unclassifiable { cause, detail: e.to_string(), position }
    }
}
