//! What the gateway itself says to a Postgres client: errors and notices with
//! SQLSTATE codes a driver understands. The one place that maps the proxy's
//! errors to Postgres errors.

use pgwire::messages::PgWireBackendMessage as B;
use pgwire::messages::response::{ErrorResponse, NoticeResponse};

use crate::error::Error;
use crate::gate::{Refusal, Unclassified};

pub const INVALID_AUTHORIZATION: &str = "28000";
pub const INVALID_PASSWORD: &str = "28P01";
pub const UNKNOWN_DATABASE: &str = "3D000";
pub const CANNOT_CONNECT_NOW: &str = "57P03";
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
pub const SYNTAX_ERROR: &str = "42601";
pub const QUERY_CANCELED: &str = "57014";
pub const PROTOCOL_VIOLATION: &str = "08P01";
pub const CONNECTION_FAILURE: &str = "08006";
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "25P03";
pub const TOO_MANY_CONNECTIONS: &str = "53300";
pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
pub const STATEMENT_TOO_COMPLEX: &str = "54001";

fn fields(severity: &str, code: &str, message: &str, hint: Option<&str>) -> Vec<(u8, String)> {
    let mut f = vec![
        (b'S', severity.to_string()),
        (b'V', severity.to_string()),
        (b'C', code.to_string()),
        (b'M', message.to_string()),
    ];
    if let Some(h) = hint {
        f.push((b'H', h.to_string()));
    }
    f
}

/// An error that ends the statement; the session goes on.
pub fn error(code: &str, message: &str) -> B {
    B::ErrorResponse(ErrorResponse::new(fields("ERROR", code, message, None)))
}

pub fn error_hint(code: &str, message: &str, hint: &str) -> B {
    B::ErrorResponse(ErrorResponse::new(fields("ERROR", code, message, Some(hint))))
}

/// An error that ends the connection.
pub fn fatal(code: &str, message: &str) -> B {
    B::ErrorResponse(ErrorResponse::new(fields("FATAL", code, message, None)))
}

pub fn notice(message: &str, hint: Option<&str>) -> B {
    B::NoticeResponse(NoticeResponse::new(fields("NOTICE", "00000", message, hint)))
}

/// The SQLSTATE for a proxy error reaching a client.
pub fn code_for(e: &Error) -> &'static str {
    match e {
        Error::TokenRejected { .. } | Error::TokenMissing { .. } => INVALID_PASSWORD,
        Error::IdentityUnavailable { .. } | Error::NoQuorum(_) => CANNOT_CONNECT_NOW,
        Error::Refused(_) => INSUFFICIENT_PRIVILEGE,
        Error::Protocol(_) => PROTOCOL_VIOLATION,
        Error::Backend { .. } | Error::BackendAuth(_) => CONNECTION_FAILURE,
        Error::Limit { code, .. } => code,
        Error::TooManySessions { .. } => TOO_MANY_CONNECTIONS,
        Error::PinnedSettingChanged { .. } => OBJECT_NOT_IN_PREREQUISITE_STATE,
        _ => CANNOT_CONNECT_NOW,
    }
}

/// The SQLSTATE for each way the gate refuses a statement: the one place a
/// [`Refusal`] becomes Postgres's words (exhaustive, so a new refusal must be placed).
pub fn refusal_code(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::LeaseLost
        | Refusal::HoldNotRecorded { .. }
        | Refusal::LeaseLostWhileHeld { .. }
        | Refusal::AuditNotCommitted { .. } => CANNOT_CONNECT_NOW,
        Refusal::Unclassifiable { cause: Unclassified::Syntax, .. } => SYNTAX_ERROR,
        Refusal::Unclassifiable { cause: Unclassified::TooLarge, .. } => PROGRAM_LIMIT_EXCEEDED,
        Refusal::Unclassifiable { cause: Unclassified::TooComplex, .. } => STATEMENT_TOO_COMPLEX,
        Refusal::Denied { .. }
        | Refusal::ApprovalDenied { .. }
        | Refusal::ApprovalUnusable { .. }
        | Refusal::Undecided { .. } => INSUFFICIENT_PRIVILEGE,
        // A Postgres client always waits; nothing defers its statements.
        Refusal::Deferred { .. } => FEATURE_NOT_SUPPORTED,
        Refusal::ApprovalExpired { .. } | Refusal::CanceledWhileHeld { .. } | Refusal::ClientGoneWhileHeld { .. } => {
            QUERY_CANCELED
        }
        Refusal::Unsupported { .. } => FEATURE_NOT_SUPPORTED,
    }
}

/// A refused statement's ErrorResponse; the session goes on. A syntax error carries
/// its position, as Postgres's own does.
pub fn refusal(refusal: &Refusal) -> B {
    let mut f = fields("ERROR", refusal_code(refusal), &refusal.to_string(), None);
    if let Refusal::Unclassifiable { position: Some(at), .. } = refusal {
        f.push((b'P', at.to_string()));
    }
    B::ErrorResponse(ErrorResponse::new(f))
}
