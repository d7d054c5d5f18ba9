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

    /// The node cannot reach a quorum: nothing may be relayed (fail closed).
    #[error("no quorum: {0}")]
    NoQuorum(String),

    /// The replicated state refused a command (e.g. self-approval).
    #[error("{0}")]
    Refused(String),

    /// The replicated store failed otherwise.
    #[error("store: {0}")]
    Store(String),

    /// The gateway could not log in to the backend with the resource's credentials.
    #[error("backend login failed: {0}")]
    BackendAuth(String),

    /// The backend could not be reached or broke the protocol.
    #[error("backend {addr}: {detail}")]
    Backend { addr: String, detail: String },

    /// An SSH certificate (or a key sent to be certified) is not acceptable; the reason
    /// names what to fix.
    #[error("ssh certificate refused: {0}")]
    CertificateRefused(String),

    /// The SSH protocol layer failed (a client's or host's connection).
    #[error("ssh: {0}")]
    Ssh(String),

    /// A client sent bytes that are not the Postgres protocol (or too large a message).
    #[error("protocol error: {0}")]
    Protocol(String),

    /// I/O with the client failed (disconnects are normal and not logged as errors).
    #[error("client connection: {0}")]
    ClientIo(String),

    /// The identity configuration is unusable.
    #[error("identity config: {0}")]
    IdentityConfig(String),

    /// A policy document is unusable; `line`/`column` (1-based) point at the cause.
    #[error("policy line {line}, column {column}: {reason}")]
    PolicyInvalid { line: usize, column: usize, reason: String },

    /// The SQL cannot be parsed; `message` is Postgres's own (e.g. `syntax error at or near
    /// "SELEC"`), `position` a 0-based byte offset into the query where it is known.
    #[error("cannot parse SQL: {message}")]
    SqlUnparseable { message: String, position: Option<usize> },

    /// The query string is longer than the configured limit.
    #[error("SQL too large: {len} bytes exceeds the limit of {max} bytes")]
    SqlTooLarge { len: usize, max: usize },

    /// A client went past one of the door's documented limits; `code` is the
    /// protocol's own code for it (a SQLSTATE for Postgres), `detail` names the limit.
    #[error("{detail}")]
    Limit { code: &'static str, detail: String },

    /// The backend reports a setting the gateway pins (it changes how statement text is
    /// read) at another value: the session ends before anything else is parsed.
    #[error(
        "the backend now reads statements with {name} = {value}, not as the gateway parses them; session ended (fail closed)"
    )]
    PinnedSettingChanged { name: String, value: String },

    /// An identity already has as many sessions open on this node as allowed.
    #[error("{subject} already has {max} sessions open on this node (the gateway's limit per identity)")]
    TooManySessions { subject: String, max: usize },

    /// A door tried to relay work no permit covers: a bug in the door, caught before
    /// anything reached the backend (the session ends; fail closed).
    #[error("internal: {runs} statement(s) to relay but the gate's permit covers {covered}; nothing sent")]
    Unpermitted { runs: usize, covered: usize },

    /// What the backend sent cannot leave masked (a WebSocket text message that is not
    /// UTF-8, a binary one while detectors apply): it is not sent, and the connection
    /// ends with `close_code` (fail closed). `detail` names what and why.
    #[error("{detail}")]
    Unmaskable { close_code: u16, detail: String },

    /// The SQL nests too deeply to be classified safely (fail closed).
    #[error("SQL too deeply nested to classify: {detail}")]
    SqlTooComplex { detail: String },

    /// The policy tester (`crate::explain`) was given something no door would read as
    /// asked (an HTTP request line without a method or a path); `detail` says what to write.
    #[error("cannot test this: {detail}")]
    Untestable { detail: String },
}

impl Error {
    pub fn rejected(reason: impl Into<String>) -> Self {
        Error::TokenRejected { reason: reason.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<russh::Error> for Error {
    fn from(e: russh::Error) -> Self {
        Error::Ssh(e.to_string())
    }
}
