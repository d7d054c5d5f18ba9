//! The Postgres client as the gate sees it while a statement is held: told with a
//! NoticeResponse, and giving up by a cancel request or by closing the connection.

use tokio::sync::Notify;

use super::super::conn::ClientConn;
use super::super::reply;
use crate::error::Result;
use crate::gate::{Door, GaveUp, Waiting};

pub(super) struct PgClient<'a> {
    pub client: &'a mut ClientConn,
    /// Notified by a cancel request for this session (`cancel::CancelTarget::hold`).
    pub cancel: &'a Notify,
}

impl Door for PgClient<'_> {
    async fn tell_waiting(&mut self, waiting: &Waiting<'_>) -> Result<()> {
        self.client.queue(reply::notice(&waiting.message(), Some(&waiting.hint())))?;
        self.client.flush().await
    }

    async fn gave_up(&mut self) -> GaveUp {
        tokio::select! {
            _ = self.cancel.notified() => GaveUp::Canceled,
            _ = self.client.gone() => GaveUp::Gone,
        }
    }
}
