//! Phases "relay" and "record" of an upgraded WebSocket: bytes both ways, unchanged,
//! while a copy of each direction is read as frames ([`frames`]) and every message is
//! recorded (a text message's first bytes masked by the judgement's detectors, a binary
//! one by its size), then the connection's totals.
//!
//! The tunnel ends when both sides have closed, or the gateway cuts it: a frame the
//! reader refuses (the chunk holding it is not forwarded: fail closed), the node losing
//! its lease, or the node shutting down. A cut sends the client a Close frame (1002,
//! 1009, 1001) when its stream is between frames, then closes both connections.

use std::time::Instant;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio_util::sync::CancellationToken;

use super::frames::{self, Event, Frames, From, Kind};
use crate::error::Error;
use crate::gate::{Recorder, Refusal};
use crate::mask::MaskPlan;
use crate::store::Store;

/// What the tunnel needs besides the two connections.
pub struct Tunnel<S: Store> {
    pub recorder: Recorder<S>,
    pub masks: MaskPlan,
    /// The resource's own credential, masked wherever it shows in a message.
    pub secrets: Vec<String>,
    pub max_frame: u64,
    pub max_message: u64,
    pub preview_max: usize,
    pub serving: tokio::sync::watch::Receiver<bool>,
    pub stop: CancellationToken,
}

/// One `websocket` record.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum Record<'a> {
    /// A data message, whole.
    Message {
        from: From,
        #[serde(rename = "type")]
        kind: Kind,
        bytes: u64,
        frames: u64,
        /// Text: the first bytes, masked (lossy UTF-8).
        #[serde(skip_serializing_if = "Option::is_none")]
        preview: Option<String>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
    },
    /// A Close frame (its reason masked).
    Close { from: From, code: Option<u16>, reason: String },
    /// The end: totals per direction, who closed first (`client`, `backend`) or that
    /// the gateway cut it, and why.
    Closed {
        from_client: &'a Totals,
        from_backend: &'a Totals,
        duration_ms: f64,
        ended_by: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// One direction's totals.
#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub bytes: u64,
    pub messages: u64,
    pub text: u64,
    pub binary: u64,
    pub pings: u64,
    pub pongs: u64,
}

type Io = TokioIo<Upgraded>;

/// Bytes of a text message read past the preview, for the detectors (see [`Tunnel::run`]).
const PREVIEW_SLACK: usize = 256;

/// Why a direction stopped.
enum Ended {
    /// Its source closed (EOF or a read error).
    Eof,
    /// Its frames broke the protocol or a bound.
    Refused(Error),
}

impl<S: Store> Tunnel<S> {
    /// Relay until the end; returns after the `closed` record is queued.
    pub async fn run(self, client: Upgraded, backend: Upgraded) {
        let started = Instant::now();
        let (mut client_r, mut client_w) = tokio::io::split(TokioIo::new(client));
        let (mut backend_r, mut backend_w) = tokio::io::split(TokioIo::new(backend));
        let mut up = Totals::default();
        let mut down = Totals::default();
        // A little past the preview is read, so that a value the cut would halve is
        // still whole for the detectors.
        let keep = self.preview_max.saturating_add(PREVIEW_SLACK);
        let mut to_client = Frames::new(From::Backend, self.max_frame, self.max_message, keep);
        let mut to_backend = Frames::new(From::Client, self.max_frame, self.max_message, keep);
        let (ended_by, error, close_code) = {
            let upload = self.direction(&mut client_r, &mut backend_w, &mut to_backend, &mut up);
            let download = self.direction(&mut backend_r, &mut client_w, &mut to_client, &mut down);
            tokio::pin!(upload, download);
            let (mut up_done, mut down_done) = (false, false);
            let mut serving = self.serving.clone();
            loop {
                tokio::select! {
                    ended = &mut upload, if !up_done => match ended {
                        Ended::Eof if down_done => break ("backend", None, None),
                        Ended::Eof => up_done = true,
                        Ended::Refused(e) => break ("gateway", Some(e.to_string()), Some(code_of(&e))),
                    },
                    ended = &mut download, if !down_done => match ended {
                        Ended::Eof if up_done => break ("client", None, None),
                        Ended::Eof => down_done = true,
                        Ended::Refused(e) => break ("gateway", Some(e.to_string()), Some(code_of(&e))),
                    },
                    _ = serving.wait_for(|s| !*s) => {
                        break ("gateway", Some(Refusal::LeaseLost.to_string()), Some(1001));
                    }
                    () = self.stop.cancelled() => {
                        break ("gateway", Some("this Portcullis node is shutting down".to_string()), Some(1001));
                    }
                }
            }
        };
        if let Some(code) = close_code
            && to_client.at_boundary()
        {
            let reason = if code == 1001 { "gateway going away" } else { "refused by the gateway" };
            let _ = client_w.write_all(&frames::close_frame(code, reason)).await;
        }
        let _ = client_w.shutdown().await;
        let _ = backend_w.shutdown().await;
        if let Some(e) = &error {
            tracing::info!(error = %e, "websocket cut by the gateway");
        }
        let record = Record::Closed {
            from_client: &up,
            from_backend: &down,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            ended_by,
            error,
        };
        self.append(&record).await;
    }

    /// Copy `from` to `to`, reading the frames on the way; each chunk is read before it
    /// is forwarded, so a refused frame's bytes never leave.
    async fn direction(
        &self,
        from: &mut ReadHalf<Io>,
        to: &mut WriteHalf<Io>,
        frames: &mut Frames,
        totals: &mut Totals,
    ) -> Ended {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return Ended::Eof;
                }
                Ok(n) => n,
            };
            let chunk = buf.get(..n).unwrap_or_default();
            let events = match frames.feed(chunk) {
                Ok(events) => events,
                Err(e) => return Ended::Refused(e),
            };
            if to.write_all(chunk).await.is_err() {
                return Ended::Eof;
            }
            totals.bytes += n as u64;
            let way = frames.from();
            for event in events {
                self.event(way, event, totals).await;
            }
        }
    }

    async fn event(&self, from: From, event: Event, totals: &mut Totals) {
        let record = match event {
            Event::Message { kind, bytes, frames, preview } => {
                totals.messages += 1;
                match kind {
                    Kind::Text => totals.text += 1,
                    Kind::Binary => totals.binary += 1,
                }
                let (preview, truncated) = match kind {
                    Kind::Text => {
                        let masked = self.mask(&String::from_utf8_lossy(&preview));
                        let mut cut = masked.len().min(self.preview_max);
                        while !masked.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        let truncated = bytes > preview.len() as u64 || cut < masked.len();
                        (Some(masked.get(..cut).unwrap_or_default().to_string()), truncated)
                    }
                    Kind::Binary => (None, false),
                };
                Record::Message { from, kind, bytes, frames, preview, truncated }
            }
            Event::Ping { .. } => {
                totals.pings += 1;
                return;
            }
            Event::Pong { .. } => {
                totals.pongs += 1;
                return;
            }
            Event::Close { code, reason } => Record::Close { from, code, reason: self.mask(&reason) },
        };
        self.append(&record).await;
    }

    fn mask(&self, text: &str) -> String {
        let mut masked = self.masks.detect(text).unwrap_or_else(|| text.to_string());
        for secret in self.secrets.iter().filter(|s| s.len() >= 4) {
            if masked.contains(secret.as_str()) {
                masked = masked.replace(secret.as_str(), crate::mask::COLUMN_MASK);
            }
        }
        masked
    }

    /// Queue a `websocket` record; its commit is awaited in the background.
    async fn append(&self, record: &Record<'_>) {
        let commit = self.recorder.append("websocket", record).await;
        tokio::spawn(async move {
            if let Ok(Err(e)) = commit.await {
                tracing::warn!(error = %e, "a websocket record could not be committed");
            }
        });
    }
}

/// The Close code for a refusal: 1009 (too big) for a bound, else 1002 (protocol error).
fn code_of(e: &Error) -> u16 {
    match e {
        Error::Limit { .. } => 1009,
        _ => 1002,
    }
}
