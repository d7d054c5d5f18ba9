//! What the SSH and HTTP workloads share: long-lived clients, some per node, whose
//! connections are all opened before the nemesis starts (a node that lost its quorum
//! cannot record a new session, so only connections it already holds show whether it
//! keeps relaying without its lease), and that connect again, through the same node,
//! when theirs breaks.

use std::future::Future;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::history::History;

/// How long a client waits after a failed connection attempt.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Bytes of an error or a refusal's text kept in the history.
pub const ERROR_MAX: usize = 300;

/// One long-lived client of a door.
pub trait DoorClient: Send + Sync + Sized + 'static {
    type Conn: Send + 'static;
    /// The door's name in the history (`ssh`, `http`).
    const DOOR: &'static str;

    fn connect(&self) -> impl Future<Output = Result<Self::Conn, String>> + Send;
    fn is_open(conn: &Self::Conn) -> bool;
    fn history(&self) -> &History;
    /// Which node it talks to, and its number among that node's clients.
    fn node(&self) -> u64;
    fn index(&self) -> usize;
    /// Operations one after another until `stop` (after the one in flight).
    fn run(self, conn: Option<Self::Conn>, stop: CancellationToken) -> impl Future<Output = ()> + Send;

    fn connect_error(&self, e: &str) {
        let event = json!({"type": "connect-error", "door": Self::DOOR, "node": self.node(), "client": self.index(), "error": e});
        self.history().event(event);
    }

    /// The connection for the next operation: `conn` while it is open, else a new one;
    /// `None` after a failed attempt (recorded, then a short pause unless stopped).
    fn usable(
        &self,
        conn: Option<Self::Conn>,
        stop: &CancellationToken,
    ) -> impl Future<Output = Option<Self::Conn>> + Send {
        async move {
            if let Some(c) = conn.filter(Self::is_open) {
                return Some(c);
            }
            match self.connect().await {
                Ok(c) => Some(c),
                Err(e) => {
                    self.connect_error(&e);
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(RETRY_PAUSE) => {}
                    }
                    None
                }
            }
        }
    }
}

/// Open every client's connection at once (a failure is recorded; the client retries),
/// then start each client on `set`.
pub async fn start_all<C: DoorClient>(clients: Vec<C>, stop: CancellationToken, set: &mut JoinSet<()>) {
    let mut connecting = JoinSet::new();
    for client in clients {
        connecting.spawn(async move {
            let conn = client.connect().await;
            (client, conn)
        });
    }
    while let Some(done) = connecting.join_next().await {
        let Ok((client, conn)) = done else { continue };
        let conn = match conn {
            Ok(c) => Some(c),
            Err(e) => {
                client.connect_error(&e);
                None
            }
        };
        set.spawn(client.run(conn, stop.clone()));
    }
}

/// `text` trimmed and cut to [`ERROR_MAX`] bytes (at a character boundary).
pub fn bounded(text: &str) -> String {
    let t = text.trim();
    let mut end = t.len().min(ERROR_MAX);
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    t.get(..end).unwrap_or_default().to_string()
}
