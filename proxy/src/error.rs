//! The one error type of `portcullis-proxy`.

/// Errors of the doors and their shared phases. Each message names the cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The presented token is not acceptable; `reason` says exactly why.
    #[error("token rejected: {reason}")]
    TokenRejected { reason: String },

    /// No token was presented where one is required.
    #[error("no token: {hint}")]
    TokenMissing { hint: String },

    /// The identity provider cannot be reached and no keys are cached: fail closed.
    #[error("identity provider {issuer} unavailable and no signing keys cached: {detail}")]
    IdentityUnavailable { issuer: String, detail: String },

    /// The identity configuration is unusable.
    #[error("identity config: {0}")]
    IdentityConfig(String),
}

impl Error {
    pub fn rejected(reason: impl Into<String>) -> Self {
        Error::TokenRejected { reason: reason.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
