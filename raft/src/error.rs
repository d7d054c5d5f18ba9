//! The one error type of `portcullis-raft`.
//!
//! Messages are written for an operator: they name the cause and, where there is one,
//! the fix ("no quorum: ...", not "Status { code: Unavailable ... }").

use std::time::Duration;

/// Errors of the replicated store, its transport and its lease.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A write did not commit before its deadline: the node cannot reach a quorum.
    #[error("no quorum: the write did not commit within {deadline:?} ({detail})")]
    NoQuorum { deadline: Duration, detail: String },

    /// The node does not hold the quorum lease, so it refuses to serve.
    #[error("not serving: this node does not hold the quorum lease ({reason})")]
    NotServing { reason: String },

    /// No leader is known to forward a write to.
    #[error("no leader known: the cluster is electing or this node is cut off")]
    NoLeader,

    /// The cluster has not been initialized yet.
    #[error("cluster not initialized: run `portcullis cluster init` first")]
    NotInitialized,

    /// The state machine refused the command (e.g. self-approval); nothing changed.
    #[error("{0}")]
    Rejected(String),

    /// A peer could not be reached or answered with an error.
    #[error("peer {peer} at {addr}: {detail}")]
    Peer { peer: u64, addr: String, detail: String },

    /// TLS material is missing or invalid.
    #[error("tls: {0}")]
    Tls(String),

    /// The cluster data key file is missing or malformed.
    #[error("data key {path}: {detail}")]
    DataKey { path: String, detail: String },

    /// A sealed secret could not be opened (wrong cluster key or tampered data).
    #[error("secret could not be decrypted: wrong cluster data key or corrupted value")]
    SecretOpen,

    /// The local database failed.
    #[error("storage at {path}: {detail}")]
    Storage { path: String, detail: String },

    /// Data read from disk or the wire did not decode.
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },

    /// A membership change was refused by openraft.
    #[error("membership change refused: {0}")]
    Membership(String),

    /// openraft stopped (fatal error or shutdown).
    #[error("raft stopped: {0}")]
    Fatal(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    /// A copy for each waiter of a shared failure (e.g. one audit batch): the
    /// operator-facing kinds keep their variant, the rest keep their message.
    pub fn duplicate(&self) -> Self {
        match self {
            Error::NoQuorum { deadline, detail } => Error::NoQuorum { deadline: *deadline, detail: detail.clone() },
            Error::NotServing { reason } => Error::NotServing { reason: reason.clone() },
            Error::NoLeader => Error::NoLeader,
            Error::NotInitialized => Error::NotInitialized,
            Error::Rejected(r) => Error::Rejected(r.clone()),
            other => Error::Rejected(other.to_string()),
        }
    }

    pub fn corrupt(what: &'static str, detail: impl ToString) -> Self {
        Error::Corrupt { what, detail: detail.to_string() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
