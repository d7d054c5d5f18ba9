//! Phase "mask" of a WebSocket, on the wire: the backend's messages reach the client
//! masked exactly as the record shows them (DESIGN §8, everything that leaves is
//! masked).
//!
//! When [`Masker::is_active`] (the judgement's plan has detectors, or the resource has a
//! credential that could come back), the backend's direction is read by a
//! [`Frames`](super::frames::Frames) that keeps each data message whole, bounded by
//! `http_max_masked_websocket_message_bytes`, and the tunnel sends each event on anew
//! instead of the backend's bytes ([`Masker::reframe`]):
//!
//! - a text message: its fragments joined, masked (detectors, then the credential),
//!   sent as one unfragmented, unmasked text frame; text that is not UTF-8 is refused
//!   (Close 1007);
//! - a binary message cannot be masked: while detectors apply it is refused (Close 1008,
//!   policy violation); with only the credential to hide it is sent unchanged (one
//!   frame) unless its bytes hold the credential (refused, 1008);
//! - Ping, Pong and Close go on as they came, in order: those between a message's
//!   fragments reach the client before the message, which is only whole later.
//!
//! Column rules (`mask.columns`) name fields of results and JSON bodies; they do not
//! apply to WebSocket messages. With nothing to mask, the tunnel relays the backend's
//! bytes unchanged (no copy, no bound beyond the frame and message limits).

use super::frames::{Event, Kind, server_frame};
use crate::error::Error;
use crate::mask::{COLUMN_MASK, MaskPlan};

/// Shorter secrets are not searched for: they would mask ordinary text.
const MIN_SECRET: usize = 4;

/// How the backend's messages are masked, for the wire and the record alike.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    masks: MaskPlan,
    /// The resource's own credential, masked wherever it shows.
    secrets: Vec<String>,
}

/// A backend event as it goes to the client.
#[derive(Debug, PartialEq, Eq)]
pub struct Reframed {
    /// One whole server frame.
    pub frame: Vec<u8>,
    /// Its payload's length.
    pub bytes: u64,
    /// A text message's masked text (what the record previews).
    pub text: Option<String>,
}

// === impl Masker ===

impl Masker {
    pub fn new(masks: MaskPlan, secrets: Vec<String>) -> Self {
        let secrets = secrets.into_iter().filter(|s| s.len() >= MIN_SECRET).collect();
        Masker { masks, secrets }
    }

    /// Whether anything could change a message: then the backend's messages are
    /// reassembled and masked on the wire, else its bytes pass unchanged.
    pub fn is_active(&self) -> bool {
        !self.masks.detectors.is_empty() || !self.secrets.is_empty()
    }

    /// `text` masked: the detectors, then the credential.
    pub fn text(&self, text: &str) -> String {
        let mut masked = self.masks.detect(text).unwrap_or_else(|| text.to_string());
        for secret in &self.secrets {
            if masked.contains(secret.as_str()) {
                masked = masked.replace(secret.as_str(), COLUMN_MASK);
            }
        }
        masked
    }

    /// The frame that carries `event` to the client, or why it must not go (an
    /// [`Error::Unmaskable`] with its Close code). `event` comes from a reader that keeps
    /// messages whole.
    pub fn reframe(&self, event: &Event) -> Result<Reframed, Error> {
        let control = |opcode: u8, payload: &[u8]| Ok(Reframed::new(opcode, payload, None));
        match event {
            Event::Message { kind, whole: Some(payload), .. } => self.message(*kind, payload),
            Event::Message { .. } => Err(Error::Unmaskable {
                close_code: 1011,
                detail: "websocket: internal: a backend message was not kept whole for masking; it was not sent".into(),
            }),
            Event::Ping { payload } => control(0x9, payload),
            Event::Pong { payload } => control(0xa, payload),
            Event::Close { code: None, .. } => control(0x8, &[]),
            Event::Close { code: Some(code), reason } => {
                let mut payload = code.to_be_bytes().to_vec();
                payload.extend_from_slice(reason.as_bytes());
                control(0x8, &payload)
            }
        }
    }

    fn message(&self, kind: Kind, payload: &[u8]) -> Result<Reframed, Error> {
        match kind {
            Kind::Text => {
                let text = std::str::from_utf8(payload).map_err(|e| Error::Unmaskable {
                    close_code: 1007,
                    detail: format!(
                        "websocket: a text message from the backend that is not UTF-8 ({e}); \
                         it cannot be masked and was not sent"
                    ),
                })?;
                let masked = self.text(text);
                Ok(Reframed::new(0x1, masked.as_bytes(), Some(masked.clone())))
            }
            Kind::Binary if !self.masks.detectors.is_empty() => Err(Error::Unmaskable {
                close_code: 1008,
                detail: format!(
                    "websocket: a binary message from the backend ({} bytes) while the resource's mask \
                     detectors apply; binary cannot be masked, so it was not sent",
                    payload.len()
                ),
            }),
            Kind::Binary if self.secrets.iter().any(|s| contains(payload, s.as_bytes())) => Err(Error::Unmaskable {
                close_code: 1008,
                detail: "websocket: a binary message from the backend holds the resource's credential; \
                             it was not sent"
                    .into(),
            }),
            Kind::Binary => Ok(Reframed::new(0x2, payload, None)),
        }
    }
}

// === impl Reframed ===

impl Reframed {
    fn new(opcode: u8, payload: &[u8], text: Option<String>) -> Self {
        Reframed { frame: server_frame(opcode, payload), bytes: payload.len() as u64, text }
    }
}

/// Whether `needle` (not empty) occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests;
