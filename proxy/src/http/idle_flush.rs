//! Result records of a connection's sessions handed over once it goes quiet.
//!
//! A response's `result` record waits in its session to ride along with the next
//! request's `statement` record (one commit instead of two, the way the Postgres door
//! does it), and in fast mode statement records wait too, to go in batches
//! ([`Opening::flushes_when_idle`](crate::gate::Opening)). A client that stops asking
//! would leave them waiting: this task, one per client connection, hands over whatever
//! is still pending [`RESULT_FLUSH_AFTER`] after a request was audited or a response
//! recorded. It stops only between hand-overs, so none is cut in half.

use std::sync::{Arc, Weak};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::exchange::Connection;
use crate::gate::RESULT_FLUSH_AFTER;
use crate::store::Store;

/// The running flusher of one connection.
pub struct IdleFlush {
    task: JoinHandle<()>,
    stop: CancellationToken,
}

impl IdleFlush {
    /// Start flushing `conn`'s sessions (woken by its [`Connection::recorded`]).
    pub fn start<S: Store>(conn: &Arc<Connection<S>>) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(Arc::downgrade(conn), conn.recorded.clone(), stop.clone()));
        IdleFlush { task, stop }
    }

    /// Stop, after the hand-over under way if any (the connection's close then hands
    /// over the rest).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn run<S: Store>(conn: Weak<Connection<S>>, recorded: Arc<Notify>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = recorded.notified() => {}
            _ = stop.cancelled() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(RESULT_FLUSH_AFTER) => {}
            _ = stop.cancelled() => return,
        }
        let Some(open) = conn.upgrade() else { return };
        let sessions = open.sessions_now().await;
        drop(open);
        for session in sessions {
            if session.has_pending() {
                drop(session.flush_pending().await);
            }
        }
    }
}
