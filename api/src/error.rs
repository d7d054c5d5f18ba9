//! Errors of `portcullis-api`.
//!
//! Two directions meet here:
//! - server side, [`status_from_raft`] is the one place a store error becomes a gRPC
//!   status; the status message is the error's operator-friendly Display text;
//! - client side, [`ApiError`] is what [`AdminClient`](crate::AdminClient) returns, with
//!   messages that name the cause ("cannot reach https://…: connection refused (is the
//!   node running?)"), never a `Status { code: … }` dump.

use tonic::{Code, Status};

/// Client-side errors of the admin API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The node could not be reached (refused, timed out, TLS handshake failed...).
    #[error("cannot reach {endpoint}: {detail}")]
    Connect { endpoint: String, detail: String },

    /// The node answered with an error; Display is its message.
    #[error("{}", status_text(*.code, .message))]
    Status { code: Code, message: String },

    /// TLS material given to the client is unusable.
    #[error("tls: {0}")]
    Tls(String),

    /// An argument was malformed before anything was sent (endpoint URL, token...).
    #[error("{0}")]
    InvalidInput(String),

    /// The node answered with a reply that breaks the protocol (e.g. a missing field).
    #[error("unexpected reply from the node: {0}")]
    Protocol(String),
}

impl ApiError {
    /// The gRPC code when the node answered with an error.
    pub fn code(&self) -> Option<Code> {
        match self {
            ApiError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The message of a server status, with a short prefix where the code adds meaning.
fn status_text(code: Code, message: &str) -> String {
    let message = if message.is_empty() { code.description() } else { message };
    let prefix = match code {
        Code::Unauthenticated => "not authenticated: ",
        Code::PermissionDenied => "permission denied: ",
        Code::DeadlineExceeded => "timed out: ",
        Code::Unimplemented => "not supported by this node: ",
        Code::Internal | Code::Unknown | Code::DataLoss => "node error: ",
        _ => "",
    };
    format!("{prefix}{message}")
}

/// The one mapping from a store error to a gRPC status.
///
/// Availability problems (no quorum, not serving, no leader, peer unreachable) are
/// `Unavailable`, so clients may retry elsewhere; an uninitialized cluster and refused
/// commands are `FailedPrecondition`, except refusals saying "no …" which are
/// `NotFound`; everything else is `Internal`.
pub fn status_from_raft(err: &portcullis_raft::Error) -> Status {
    use portcullis_raft::Error;
    let code = match err {
        Error::NoQuorum { .. } | Error::NotServing { .. } | Error::NoLeader | Error::Peer { .. } => Code::Unavailable,
        Error::NotInitialized => Code::FailedPrecondition,
        Error::Rejected(msg) if msg.starts_with("no ") => Code::NotFound,
        Error::Rejected(_) => Code::FailedPrecondition,
        _ => Code::Internal,
    };
    Status::new(code, err.to_string())
}

/// A status for a command the state machine refused (`Response::Rejected`).
pub(crate) fn rejected(reason: &str) -> Status {
    status_from_raft(&portcullis_raft::Error::Rejected(reason.to_string()))
}

/// Describe why a connection failed, from the innermost useful cause.
pub(crate) fn describe_connect_error(err: &(dyn std::error::Error + 'static)) -> String {
    let mut last = err.to_string();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return describe_io(io);
        }
        let text = e.to_string();
        if !text.is_empty() {
            last = text;
        }
        current = e.source();
    }
    last
}

fn describe_io(io: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let text = io.to_string();
    match io.kind() {
        ErrorKind::ConnectionRefused => "connection refused (is the node running?)".to_string(),
        ErrorKind::TimedOut => "connection timed out (is the address right and reachable?)".to_string(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::UnexpectedEof => {
            format!("connection closed by the node ({text}; http:// against a TLS port, or the wrong CA?)")
        }
        _ if text.contains("certificate") || text.contains("Certificate") => {
            format!("TLS handshake failed: {text} (is the CA file the cluster's CA?)")
        }
        _ => text,
    }
}
