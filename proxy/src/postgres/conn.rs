//! Framing of both sides of a Postgres session. Bytes stop here.
//!
//! [`ClientConn`] and [`BackendConn`] own a socket and its buffers and yield typed
//! pgwire messages. A clean close between messages is `Ok(None)`; a close in the
//! middle of a message, a malformed message, or one larger than the limit is an error
//! (`Protocol`), never a panic.

use bytes::{Buf, BytesMut};
use pgwire::messages::{DecodeContext, PgWireBackendMessage, PgWireFrontendMessage};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};

/// Any byte stream a session runs over (TCP, TLS over TCP).
pub trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncStream for T {}

pub type BoxStream = Box<dyn AsyncStream>;

/// Largest message a client may send (Query, Parse, Bind, CopyData).
pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// A client message in a running session.
#[derive(Debug)]
pub enum ClientMessage {
    Pg(PgWireFrontendMessage),
    /// A FunctionCall (fast-path function call), not decoded further.
    FunctionCall,
}

/// The client side: reads frontend messages, writes backend messages.
pub struct ClientConn {
    stream: BoxStream,
    read_buf: BytesMut,
    write_buf: BytesMut,
    pub ctx: DecodeContext,
    max_message: usize,
}

impl ClientConn {
    pub fn new(stream: BoxStream, max_message: usize) -> Self {
        ClientConn {
            stream,
            read_buf: BytesMut::with_capacity(8 * 1024),
            write_buf: BytesMut::with_capacity(8 * 1024),
            ctx: DecodeContext::default(),
            max_message,
        }
    }

    /// Take the raw stream out (for the TLS handshake), leaving a placeholder.
    pub fn take_stream(&mut self) -> BoxStream {
        let placeholder: BoxStream = Box::new(tokio::io::empty());
        std::mem::replace(&mut self.stream, placeholder)
    }

    pub fn put_stream(&mut self, stream: BoxStream) {
        self.stream = stream;
    }

    pub fn buffered(&self) -> usize {
        self.read_buf.len()
    }

    /// Read more bytes; `false` on a clean close between messages (a close in the middle
    /// of one is an error).
    async fn fill(&mut self) -> Result<bool> {
        let n = self.stream.read_buf(&mut self.read_buf).await.map_err(|e| Error::ClientIo(e.to_string()))?;
        if n > 0 {
            return Ok(true);
        }
        if self.read_buf.is_empty() {
            return Ok(false);
        }
        Err(Error::Protocol(format!(
            "client closed the connection in the middle of a message ({} bytes)",
            self.read_buf.len()
        )))
    }

    /// The next message, `None` on a clean close between messages.
    pub async fn read(&mut self) -> Result<Option<PgWireFrontendMessage>> {
        loop {
            if let Some(msg) = decode_frontend(&mut self.read_buf, &self.ctx, self.max_message)? {
                return Ok(Some(msg));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// As [`read`](Self::read) in a running session, where a client may also send a
    /// FunctionCall ('F', the fast-path interface pgwire does not decode): it is taken
    /// off whole and reported as [`ClientMessage::FunctionCall`].
    pub async fn read_session(&mut self) -> Result<Option<ClientMessage>> {
        loop {
            if self.read_buf.first() == Some(&b'F') {
                match peek_i32(&self.read_buf, 1) {
                    Some(len) if len < 4 || len as usize > self.max_message => {
                        return Err(Error::Protocol(format!("FunctionCall message length {len} is invalid")));
                    }
                    Some(len) if self.read_buf.len() > len as usize => {
                        self.read_buf.advance(1 + len as usize);
                        return Ok(Some(ClientMessage::FunctionCall));
                    }
                    _ => {}
                }
            } else if let Some(msg) = decode_frontend(&mut self.read_buf, &self.ctx, self.max_message)? {
                return Ok(Some(ClientMessage::Pg(msg)));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Resolves once the client has gone (end of stream, a read error, or a Terminate
    /// next in line) while we are not reading its messages (a statement held for
    /// approval). What arrives meanwhile stays buffered for [`read`](Self::read), up to
    /// one message's worth; cancel-safe like `read`.
    pub async fn gone(&mut self) {
        loop {
            if self.read_buf.first() == Some(&b'X') {
                return;
            }
            if self.read_buf.len() > self.max_message {
                // Enough is waiting; reading more would only grow the buffer.
                return std::future::pending().await;
            }
            match self.stream.read_buf(&mut self.read_buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    pub fn queue(&mut self, msg: PgWireBackendMessage) -> Result<()> {
        msg.encode(&mut self.write_buf).map_err(|e| Error::Protocol(format!("cannot encode a reply: {e}")))
    }

    /// Queue bytes already framed (relayed unchanged from the backend).
    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.write_buf.extend_from_slice(bytes);
    }

    pub async fn flush(&mut self) -> Result<()> {
        if !self.write_buf.is_empty() {
            self.stream.write_all(&self.write_buf).await.map_err(|e| Error::ClientIo(e.to_string()))?;
            self.write_buf.clear();
        }
        self.stream.flush().await.map_err(|e| Error::ClientIo(e.to_string()))
    }

    pub async fn send(&mut self, msg: PgWireBackendMessage) -> Result<()> {
        self.queue(msg)?;
        self.flush().await
    }

    /// End the stream cleanly: flush, and for TLS send close_notify (drivers report a
    /// bare TCP close as "unexpected eof", e.g. after a cancel request over TLS).
    pub async fn shutdown(&mut self) {
        let _ = self.flush().await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.stream.shutdown()).await;
    }

    /// Write raw bytes now (the one-byte SSL answer precedes any framing).
    pub async fn write_raw_now(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).await.map_err(|e| Error::ClientIo(e.to_string()))?;
        self.stream.flush().await.map_err(|e| Error::ClientIo(e.to_string()))
    }
}

/// Check, then parse: one frontend message from `buf` if a whole one is buffered
/// (`Ok(None)`: read more). Oversized and malformed messages are refused before
/// they are buffered whole. Pure, so it can be fuzzed.
pub fn decode_frontend(
    buf: &mut BytesMut,
    ctx: &DecodeContext,
    max_message: usize,
) -> Result<Option<PgWireFrontendMessage>> {
    let declared =
        if ctx.awaiting_frontend_ssl || ctx.awaiting_frontend_startup { peek_i32(buf, 0) } else { peek_i32(buf, 1) };
    let startup = ctx.awaiting_frontend_ssl || ctx.awaiting_frontend_startup;
    match declared {
        Some(len) if len < 4 => return Err(Error::Protocol(format!("message length {len} is invalid"))),
        Some(len) if len as usize > max_message => {
            return Err(Error::Protocol(format!(
                "message of {len} bytes exceeds the limit of {max_message} bytes (the node's [limits] max_message_bytes)"
            )));
        }
        Some(len) => {
            // Once the whole message is buffered, walk it before pgwire does.
            let len = len as usize;
            if startup {
                if let Some(packet) = buf.get(..len) {
                    super::wire_check::check_startup(packet)?;
                }
            } else if let (Some(&tag), Some(body)) = (buf.first(), buf.get(5..1 + len)) {
                super::wire_check::check_message(tag, body)?;
            }
        }
        None => {}
    }
    PgWireFrontendMessage::decode(buf, ctx).map_err(|e| Error::Protocol(format!("malformed message from client: {e}")))
}

fn peek_i32(buf: &BytesMut, at: usize) -> Option<i32> {
    let bytes = buf.get(at..at + 4)?;
    Some(i32::from_be_bytes(bytes.try_into().ok()?))
}

/// The backend side: writes frontend messages, reads backend messages.
pub struct BackendConn {
    stream: BoxStream,
    read_buf: BytesMut,
    write_buf: BytesMut,
    ctx: DecodeContext,
    pub addr: String,
}

impl BackendConn {
    pub fn new(stream: BoxStream, addr: String) -> Self {
        let mut ctx = DecodeContext::default();
        ctx.awaiting_frontend_ssl = false;
        ctx.awaiting_frontend_startup = false;
        BackendConn {
            stream,
            read_buf: BytesMut::with_capacity(16 * 1024),
            write_buf: BytesMut::with_capacity(8 * 1024),
            ctx,
            addr,
        }
    }

    fn err(&self, detail: impl Into<String>) -> Error {
        Error::Backend { addr: self.addr.clone(), detail: detail.into() }
    }

    /// The next backend message; a close is an error (the backend never closes first
    /// in a healthy session).
    pub async fn read(&mut self) -> Result<PgWireBackendMessage> {
        loop {
            match PgWireBackendMessage::decode(&mut self.read_buf, &self.ctx) {
                Ok(Some(msg)) => return Ok(msg),
                Ok(None) => {}
                Err(e) => return Err(self.err(format!("malformed message: {e}"))),
            }
            let n = self.stream.read_buf(&mut self.read_buf).await.map_err(|e| self.err(e.to_string()))?;
            if n == 0 {
                return Err(self.err("closed the connection"));
            }
        }
    }

    /// Whether more backend bytes are already buffered (batch writes to the client).
    pub fn has_buffered(&self) -> bool {
        self.read_buf.remaining() > 0
    }

    pub fn queue(&mut self, msg: &PgWireFrontendMessage) -> Result<()> {
        msg.encode(&mut self.write_buf).map_err(|e| self.err(format!("cannot encode: {e}")))
    }

    pub async fn flush(&mut self) -> Result<()> {
        if !self.write_buf.is_empty() {
            let buf = std::mem::take(&mut self.write_buf);
            self.stream.write_all(&buf).await.map_err(|e| self.err(e.to_string()))?;
            self.write_buf = buf;
            self.write_buf.clear();
        }
        self.stream.flush().await.map_err(|e| self.err(e.to_string()))
    }

    pub async fn send(&mut self, msg: &PgWireFrontendMessage) -> Result<()> {
        self.queue(msg)?;
        self.flush().await
    }
    /// Say goodbye (Terminate) so the backend ends the session cleanly; errors do not
    /// matter any more.
    pub async fn terminate(mut self) {
        let bye = PgWireFrontendMessage::Terminate(pgwire::messages::terminate::Terminate::new());
        let _ = self.send(&bye).await;
        let _ = self.stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests;
