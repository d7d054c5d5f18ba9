//! Replicated writes: every change to the state machine is one [`Command`].
//!
//! A command carries a client request id. Apply remembers the response per id, so a
//! write retried after a timeout or a leader change takes effect once and answers the
//! same (DESIGN §4: "apply is idempotent").

use serde::{Deserialize, Serialize};

use crate::model::{Approval, Event, Millis, Policy, Resource, Session, SessionStatus, SshAuthority};

/// A replicated write with its idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Unique per logical write; retries reuse it.
    pub request_id: String,
    /// When it was submitted (the submitter's clock): its request id is remembered for
    /// [`REQUEST_MEMORY`] after that, longer than any retry of it can come.
    #[serde(default)]
    pub at: Millis,
    pub op: Op,
}

/// How long applied request ids are remembered. Retries of a write reuse its id only
/// within the write deadline (seconds); this leaves a wide margin for clock skew.
pub const REQUEST_MEMORY: std::time::Duration = std::time::Duration::from_secs(10 * 60);

impl Command {
    /// A command with a fresh random request id, stamped now.
    pub fn new(op: Op) -> Self {
        Command { request_id: crate::ids::random_id(), at: crate::model::now_millis(), op }
    }
}

/// The writes the state machine knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    PutResource {
        resource: Resource,
    },
    DeleteResource {
        name: String,
    },
    PutPolicy {
        policy: Policy,
    },
    DeletePolicy {
        name: String,
    },
    /// Register a held action; it starts `Pending`.
    RequestApproval {
        approval: Approval,
    },
    /// An approver's decision. First final decision wins; the requester may not decide.
    DecideApproval {
        id: String,
        approver: String,
        approver_groups: Vec<String>,
        approve: bool,
        reason: String,
        at: Millis,
    },
    /// Mark a pending approval expired once its deadline has passed.
    ExpireApproval {
        id: String,
        at: Millis,
    },
    /// The statement will not run (its client canceled or went away, or the node holding
    /// it is unreachable): a pending approval becomes final (expired, with the reason), so
    /// nobody can approve a statement that will not run.
    WithdrawApproval {
        id: String,
        at: Millis,
        /// Why; the client's cancel when absent.
        #[serde(default)]
        reason: Option<String>,
    },
    /// The repeated request of a deferred approval (`Approval::request_digest`) uses it:
    /// once, by its requester, for the same request, approved and not past
    /// [`Approval::usable_until`]. Refused otherwise, with the reason.
    UseApproval {
        id: String,
        requester: String,
        request_digest: String,
        at: Millis,
    },
    OpenSession {
        session: Session,
    },
    /// Append events (possibly of several sessions) in one entry: the audit batcher's unit.
    AppendEvents {
        events: Vec<Event>,
    },
    CloseSession {
        id: String,
        at: Millis,
        status: SessionStatus,
    },
    /// Retention: drop closed sessions (and their events) that ended before `before`.
    PruneSessions {
        before: Millis,
    },
    /// Forget the request ids of commands submitted before `before` (they can no longer
    /// be retried), so remembered answers do not pile up.
    ForgetRequests {
        before: Millis,
    },
    /// Set the cluster's SSH authority if it has none; otherwise nothing changes (first
    /// writer wins, so nodes racing to make one all end up using the same).
    SetSshAuthority {
        authority: SshAuthority,
    },
    /// One part of a backup being restored (`portcullis restore`): kept aside, invisible
    /// to readers, until [`Op::RestoreCommit`].
    RestoreStage {
        restore_id: String,
        part: u64,
        /// Records as `crate::backup` encodes them, base64.
        records: String,
    },
    /// Install the staged parts of `restore_id` into an empty state in one atomic apply,
    /// if all `parts` are there and their SHA-256 is `sha256`; otherwise nothing changes.
    RestoreCommit {
        restore_id: String,
        parts: u64,
        sha256: String,
    },
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Done,
    /// The approval after the command, so a decider learns whether its vote won.
    Approval {
        approval: Box<Approval>,
    },
    /// Sequence numbers assigned to appended events, in order.
    Appended {
        seqs: Vec<u64>,
    },
    Pruned {
        sessions: u64,
    },
    Restored {
        records: u64,
    },
    /// The state refused the command. Nothing the caller asked for happened; a
    /// decision arriving after an approval's deadline still records the expiry.
    Rejected {
        reason: String,
    },
}

impl Response {
    /// The refusal reason, if the command was refused.
    pub fn rejection(&self) -> Option<&str> {
        match self {
            Response::Rejected { reason } => Some(reason),
            _ => None,
        }
    }
}
