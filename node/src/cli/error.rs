//! The one error type of the CLI, with the exit code it maps to.
//!
//! Messages name the cause and the fix; `main` prints them after `error: `.

use portcullis_api::ApiError;
use tonic::Code;

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("no endpoint: pass --endpoint or set PORTCULLIS_ENDPOINT")]
    NoEndpoint,

    #[error("{endpoint} uses TLS: pass --ca with the cluster CA certificate or set PORTCULLIS_CA")]
    NoCa { endpoint: String },

    #[error("cannot read CA file {path}: {detail} (pass --ca with the cluster CA PEM file)")]
    Ca { path: String, detail: String },

    /// A resource or policy file that cannot be read or is malformed.
    #[error("{path}: {detail}")]
    File { path: String, detail: String },

    /// A malformed flag value.
    #[error("{0}")]
    Usage(String),

    /// The node refused or failed the operation, or could not be reached.
    #[error("{source}{hint}", hint = api_hint(.source))]
    Api {
        #[from]
        source: ApiError,
    },

    /// Like `Api`, naming which of several operations failed.
    #[error("{what}: {source}{hint}", hint = api_hint(.source))]
    Op { what: String, source: ApiError },

    #[error("cannot write output: {0}")]
    Output(std::io::Error),

    /// Work on this machine failed (making a key pair).
    #[error("{0}")]
    Local(String),
}

impl CliError {
    /// Process exit code: 2 for usage errors, 1 for refused or failed operations.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::NoEndpoint
            | CliError::NoCa { .. }
            | CliError::Ca { .. }
            | CliError::File { .. }
            | CliError::Usage(_) => 2,
            CliError::Api { source } | CliError::Op { source, .. } => match source {
                ApiError::InvalidInput(_) | ApiError::Tls(_) => 2,
                _ => 1,
            },
            CliError::Output(_) | CliError::Local(_) => 1,
        }
    }
}

/// The fix for errors whose cause is on the operator's side.
fn api_hint(err: &ApiError) -> &'static str {
    match err.code() {
        Some(Code::Unauthenticated) => " (pass --token or set PORTCULLIS_TOKEN)",
        _ => match err {
            ApiError::Tls(_) => " (is --ca a PEM certificate?)",
            _ => "",
        },
    }
}
