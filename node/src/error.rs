//! Errors of the node process (config, startup, playground).
//!
//! `anyhow` appears only in `main`; everything here is a structured variant whose
//! message names the cause and the fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("config {path}: {detail}")]
    Config { path: PathBuf, detail: String },

    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Raft(#[from] portcullis_raft::Error),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("playground: {0}")]
    Dev(String),

    #[error("metrics exporter: {0}")]
    Metrics(String),

    /// A browser's sign-in to the web console failed; the text says why and what to do.
    #[error("{0}")]
    SignIn(String),

    #[error("server: {0}")]
    Server(String),
}

impl NodeError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        NodeError::Io { context: context.into(), source }
    }

    /// Exit code per DESIGN §6: 2 for usage errors (a config that does not parse), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            NodeError::Config { .. } => 2,
            _ => 1,
        }
    }
}
