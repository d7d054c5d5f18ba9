//! The client's side of an SSH channel while its request is held: the door half of
//! phase "hold". The client hears why it waits on stderr; what it types meanwhile is
//! kept (bounded) and handed to the command once it runs.

use russh::server::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};

use crate::error::{Error, Result};
use crate::gate::{Door, GaveUp, Waiting};

pub struct SshClient<'a> {
    pub to_client: &'a ChannelWriteHalf<Msg>,
    pub from_client: &'a mut ChannelReadHalf,
    /// Input that arrived before the command ran.
    pub held: Vec<u8>,
    pub held_max: usize,
    /// The client already sent EOF.
    pub eof: bool,
    /// The channel has a terminal: Ctrl-C arrives as a byte and means "cancel".
    pub pty: bool,
}

impl SshClient<'_> {
    /// Write a line to the client's stderr.
    pub async fn say(&self, line: &str) -> Result<()> {
        let text = format!("portcullis: {line}\r\n");
        self.to_client
            .extended_data_bytes(1, text.into_bytes())
            .await
            .map_err(|e| Error::ClientIo(format!("ssh client: {e:?}")))
    }
}

impl Door for SshClient<'_> {
    async fn tell_waiting(&mut self, waiting: &Waiting<'_>) -> Result<()> {
        self.say(&waiting.message()).await?;
        self.say(&waiting.hint()).await
    }

    async fn gave_up(&mut self) -> GaveUp {
        loop {
            if self.held.len() >= self.held_max {
                // Stop reading: SSH flow control holds the client back until the hold ends.
                return std::future::pending().await;
            }
            match self.from_client.wait().await {
                Some(ChannelMsg::Data { data }) if self.pty && data.contains(&0x03) => return GaveUp::Canceled,
                Some(ChannelMsg::Data { data }) => self.held.extend_from_slice(&data),
                Some(ChannelMsg::Eof) => self.eof = true,
                Some(ChannelMsg::Close) | None => return GaveUp::Gone,
                Some(_) => {}
            }
        }
    }
}
