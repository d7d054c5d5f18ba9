//! Tunables of the Postgres door.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct PgSettings {
    /// Largest client message accepted.
    pub max_message: usize,
    pub max_connections: usize,
    pub backend_timeout: Duration,
    /// A client must finish TLS, startup and login within this, or its slot is freed.
    pub handshake_timeout: Duration,
    /// Rows of each result kept (masked) in its audit record.
    pub preview_rows: usize,
    pub preview_value_chars: usize,
    /// Extended-protocol messages buffered before a Sync (or Flush), in bytes and in
    /// number: a client that pipelines more gets a FATAL 54000 naming the limit.
    pub max_batch_bytes: usize,
    pub max_batch_messages: usize,
    /// A session idle inside a transaction block this long is ended (FATAL 25P03), so
    /// a client cannot hold locks (`SELECT ... FOR UPDATE`) and walk away. Zero: never.
    pub idle_in_transaction: Duration,
}

impl Default for PgSettings {
    fn default() -> Self {
        PgSettings {
            max_message: super::conn::DEFAULT_MAX_MESSAGE,
            max_connections: 1024,
            backend_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(30),
            preview_rows: 5,
            preview_value_chars: 200,
            max_batch_bytes: 64 * 1024 * 1024,
            max_batch_messages: 100_000,
            idle_in_transaction: Duration::from_secs(10 * 60),
        }
    }
}
