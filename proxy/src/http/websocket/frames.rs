//! RFC 6455 frames, read as they stream past: the tunnel forwards the bytes unchanged
//! and feeds a copy here, one [`Frames`] per direction.
//!
//! Only what the record needs is kept: each frame's header, and the first bytes of a
//! text message (unmasked). Payloads are never buffered whole, so a frame's size costs
//! nothing but its count; the bounds (`max_frame`, `max_message`) are there to refuse
//! what no sane peer sends. The one exception is a reader [`Frames::keeping_messages`]:
//! the backend's direction when its messages are masked on the wire
//! ([`reframe`](super::reframe)), which keeps each data message whole, up to its own
//! (smaller) bound, and control frames' payloads, so that they can be sent on anew. Anything RFC 6455 forbids (with no extension negotiated,
//! and the gateway offers none) is an error, and the tunnel closes (fail closed): a
//! reserved bit, an unknown opcode, a fragmented or oversized control frame, a
//! continuation with no message, a new message inside another, an unmasked frame from
//! the client or a masked one from the server, data after a Close frame.

use crate::error::{Error, Result};

/// Which way the frames go (client frames are masked, server frames are not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum From {
    Client,
    Backend,
}

/// A data message's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Text,
    Binary,
}

/// What the frames said, as far as the record cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole message (its last frame arrived): its size, frames, and for text its
    /// first `preview` bytes (unmasked, not yet masked by policy); `whole` is its
    /// entire payload when the reader keeps messages.
    Message {
        kind: Kind,
        bytes: u64,
        frames: u64,
        preview: Vec<u8>,
        whole: Option<Vec<u8>>,
    },
    /// Ping and Pong, with their payloads (at most 125 bytes).
    Ping {
        payload: Vec<u8>,
    },
    Pong {
        payload: Vec<u8>,
    },
    /// A Close frame: its status code and reason, when it has them.
    Close {
        code: Option<u16>,
        reason: String,
    },
}

/// The longest frame header: 2 bytes, 8 of extended length, 4 of masking key.
const MAX_HEADER: usize = 14;
/// Control frames carry at most this much (RFC 6455 §5.5).
const MAX_CONTROL: u64 = 125;

/// One direction's reader.
#[derive(Debug)]
pub struct Frames {
    from: From,
    max_frame: u64,
    max_message: u64,
    preview_max: usize,
    /// The current frame's header bytes, until it is whole.
    header: Vec<u8>,
    /// The frame whose payload is streaming, if any.
    frame: Option<Frame>,
    /// A data message begun and not finished (fragmented).
    message: Option<Message>,
    /// A Close frame went this way: nothing may follow.
    closed: bool,
    /// Keep each data message whole, up to this many bytes (`None`: never buffer).
    keep_whole: Option<u64>,
}

#[derive(Debug)]
struct Frame {
    opcode: u8,
    fin: bool,
    remaining: u64,
    mask: Option<[u8; 4]>,
    /// Payload bytes read so far (the masking key's index is this mod 4).
    read: u64,
    /// A control frame's payload (at most 125 bytes), kept whole.
    control: Vec<u8>,
}

#[derive(Debug)]
struct Message {
    kind: Kind,
    bytes: u64,
    frames: u64,
    preview: Vec<u8>,
    /// The whole payload so far, when the reader keeps messages.
    whole: Option<Vec<u8>>,
}

impl Frames {
    pub fn new(from: From, max_frame: u64, max_message: u64, preview_max: usize) -> Self {
        Frames {
            from,
            max_frame,
            max_message,
            preview_max,
            header: Vec::with_capacity(MAX_HEADER),
            frame: None,
            message: None,
            closed: false,
            keep_whole: None,
        }
    }

    /// This reader keeps every data message whole (for [`Event::Message`]'s `whole`),
    /// refusing one past `bound` bytes from the frame header that would cross it (1009).
    pub fn keeping_messages(mut self, bound: u64) -> Self {
        self.keep_whole = Some(bound);
        self
    }

    /// Which side's frames it reads.
    pub fn from(&self) -> From {
        self.from
    }

    /// Whether the stream is between frames (a frame could be inserted here).
    pub fn at_boundary(&self) -> bool {
        self.header.is_empty() && self.frame.is_none()
    }

    /// Read `data`, the next bytes of the stream; the events it completes. An error
    /// names what is wrong; the reader must not be fed again after one.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        while !data.is_empty() {
            match &mut self.frame {
                None => {
                    let (byte, rest) = data.split_first().map_or((0, data), |(b, r)| (*b, r));
                    data = rest;
                    self.header.push(byte);
                    if let Some(frame) = self.header_done()? {
                        self.header.clear();
                        self.frame = Some(frame);
                        // An empty payload ends the frame at once.
                        if let Some(event) = self.payload(&[])? {
                            events.push(event);
                        }
                    }
                }
                Some(frame) => {
                    let n = usize::try_from(frame.remaining).unwrap_or(usize::MAX).min(data.len());
                    let (chunk, rest) = data.split_at(n);
                    data = rest;
                    if let Some(event) = self.payload(chunk)? {
                        events.push(event);
                    }
                }
            }
        }
        Ok(events)
    }

    /// The header, once its bytes are all here (`None`: read more).
    fn header_done(&mut self) -> Result<Option<Frame>> {
        let h = &self.header;
        let (Some(&b0), Some(&b1)) = (h.first(), h.get(1)) else { return Ok(None) };
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7f;
        let extended = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let need = 2 + extended + if masked { 4 } else { 0 };
        if h.len() < need {
            return Ok(None);
        }
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        if b0 & 0x70 != 0 {
            return Err(bad("a reserved bit is set (no extension was negotiated)"));
        }
        let length = match extended {
            0 => u64::from(len7),
            n => h.get(2..2 + n).unwrap_or_default().iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        };
        if length >> 63 != 0 {
            return Err(bad("a frame length with its most significant bit set"));
        }
        let mask = if masked {
            let key = h.get(2 + extended..need).unwrap_or_default();
            let mut k = [0u8; 4];
            k.copy_from_slice(key);
            Some(k)
        } else {
            None
        };
        match (self.from, masked) {
            (From::Client, false) => return Err(bad("an unmasked frame from the client")),
            (From::Backend, true) => return Err(bad("a masked frame from the server")),
            _ => {}
        }
        if self.closed {
            return Err(bad("a frame after the Close frame"));
        }
        match opcode {
            0x8..=0xa => {
                if !fin {
                    return Err(bad("a fragmented control frame"));
                }
                if length > MAX_CONTROL {
                    return Err(bad(&format!("a control frame of {length} bytes (at most {MAX_CONTROL})")));
                }
            }
            0x0 => {
                if self.message.is_none() {
                    return Err(bad("a continuation frame with no message to continue"));
                }
            }
            0x1 | 0x2 => {
                if self.message.is_some() {
                    return Err(bad("a new message before the last one's final frame"));
                }
                let kind = if opcode == 1 { Kind::Text } else { Kind::Binary };
                let whole = self.keep_whole.map(|_| Vec::new());
                self.message = Some(Message { kind, bytes: 0, frames: 0, preview: Vec::new(), whole });
            }
            other => return Err(bad(&format!("the unknown opcode {other:#x}"))),
        }
        if length > self.max_frame {
            return Err(Error::Limit {
                code: "1009",
                detail: format!("websocket: a frame of {length} bytes (the limit is {})", self.max_frame),
            });
        }
        if opcode <= 2
            && let Some(m) = &mut self.message
        {
            m.frames += 1;
            m.bytes = m.bytes.saturating_add(length);
            if m.bytes > self.max_message {
                return Err(Error::Limit {
                    code: "1009",
                    detail: format!("websocket: a message of over {} bytes (the limit)", self.max_message),
                });
            }
            if let Some(bound) = self.keep_whole
                && m.bytes > bound
            {
                return Err(Error::Limit {
                    code: "1009",
                    detail: format!(
                        "websocket: a message of over {bound} bytes to mask \
                         (the limit http_max_masked_websocket_message_bytes); it was not sent"
                    ),
                });
            }
        }
        Ok(Some(Frame { opcode, fin, remaining: length, mask, read: 0, control: Vec::new() }))
    }

    /// Payload bytes of the current frame; the event when this ends a message or a
    /// control frame.
    fn payload(&mut self, chunk: &[u8]) -> Result<Option<Event>> {
        let Some(frame) = &mut self.frame else { return Ok(None) };
        let keep = if frame.opcode >= 0x8 {
            Some(&mut frame.control)
        } else {
            match &mut self.message {
                Some(m) if m.kind == Kind::Text => {
                    let room = self.preview_max.saturating_sub(m.preview.len());
                    (room > 0).then_some(&mut m.preview)
                }
                _ => None,
            }
        };
        let unmask = |i: usize, b: &u8| {
            let at = (frame.read + i as u64) % 4;
            b ^ frame.mask.and_then(|k| k.get(at as usize).copied()).unwrap_or(0)
        };
        if let Some(keep) = keep {
            let room = if frame.opcode >= 0x8 { chunk.len() } else { self.preview_max.saturating_sub(keep.len()) };
            keep.extend(chunk.iter().take(room).enumerate().map(|(i, b)| unmask(i, b)));
        }
        if frame.opcode < 0x8
            && let Some(whole) = self.message.as_mut().and_then(|m| m.whole.as_mut())
        {
            // Bounded: the header that announced these bytes was checked against the bound.
            whole.extend(chunk.iter().enumerate().map(|(i, b)| unmask(i, b)));
        }
        frame.read += chunk.len() as u64;
        frame.remaining -= chunk.len() as u64;
        if frame.remaining > 0 {
            return Ok(None);
        }
        let Some(frame) = self.frame.take() else { return Ok(None) };
        Ok(match frame.opcode {
            0x8 => {
                self.closed = true;
                Some(close(&frame.control)?)
            }
            0x9 => Some(Event::Ping { payload: frame.control }),
            0xa => Some(Event::Pong { payload: frame.control }),
            _ if frame.fin => self.message.take().map(|m| Event::Message {
                kind: m.kind,
                bytes: m.bytes,
                frames: m.frames,
                preview: m.preview,
                whole: m.whole,
            }),
            _ => None,
        })
    }
}

/// A Close frame's payload: empty, or a status code and a UTF-8 reason.
fn close(payload: &[u8]) -> Result<Event> {
    match payload {
        [] => Ok(Event::Close { code: None, reason: String::new() }),
        [_] => Err(bad("a Close frame with a one-byte payload")),
        [hi, lo, reason @ ..] => {
            let reason = std::str::from_utf8(reason).map_err(|_| bad("a Close reason that is not UTF-8"))?;
            Ok(Event::Close { code: Some(u16::from_be_bytes([*hi, *lo])), reason: reason.to_string() })
        }
    }
}

fn bad(why: &str) -> Error {
    Error::Protocol(format!("websocket: {why}"))
}

/// A Close frame from the server side (unmasked): `code` and a short reason (cut to at
/// most 100 bytes, on a character boundary).
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(100);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let reason = reason.get(..cut).unwrap_or_default();
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    server_frame(0x8, &payload)
}

/// One whole (FIN) frame as a server sends it: unmasked, the payload's length in the
/// shortest encoding RFC 6455 §5.2 allows (7 bits up to 125, then 16, then 64).
pub fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | (opcode & 0x0f));
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests;
