//! Phases "relay", "mask" and "record" of an upgraded WebSocket: bytes both ways, read
//! as frames ([`frames`]) on the way, and every message recorded (a text message's
//! first bytes masked by the judgement's detectors, a binary one by its size), then the
//! connection's totals. The client's bytes go to the backend unchanged. The backend's
//! go to the client unchanged too when there is nothing to mask; else each of its
//! messages is reassembled, masked and sent anew ([`reframe`](super::reframe)), so
//! the client gets what the record shows.
//!
//! The tunnel ends when both sides have closed, or the gateway cuts it: a frame the
//! reader refuses (the chunk holding it is not forwarded: fail closed), the node losing
//! its lease, no bytes either way for the idle limit, or the node shutting down. A cut sends the client a Close frame (1002,
//! 1009, 1001) when its stream is between frames, then closes both connections.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio_util::sync::CancellationToken;

use super::frames::{self, Event, Frames, From, Kind};
use super::reframe::{Masker, Reframed};
use crate::error::Error;
use crate::gate::{Recorder, Refusal};
use crate::store::Store;

/// What the tunnel needs besides the two connections.
pub struct Tunnel<S: Store> {
    pub recorder: Recorder<S>,
    /// The judgement's detectors and the resource's own credential: for the records,
    /// and for the backend's messages on the wire when it [`Masker::is_active`].
    pub masker: Masker,
    pub max_frame: u64,
    pub max_message: u64,
    /// A backend message masked on the wire is kept whole up to this (Close 1009 past it).
    pub max_masked_message: u64,
    /// No bytes either way for this long: the gateway closes it (zero: never).
    pub idle: Duration,
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
        /// Text: the first bytes, masked (lossy UTF-8); as the client got them when
        /// the message was masked on the wire.
        #[serde(skip_serializing_if = "Option::is_none")]
        preview: Option<String>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
        /// A backend message masked on the wire: the bytes the client got.
        #[serde(skip_serializing_if = "Option::is_none")]
        sent_bytes: Option<u64>,
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

/// When bytes last came from either side.
struct Activity {
    started: Instant,
    /// Milliseconds after `started`.
    last: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last.store(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        self.started.elapsed().saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

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
        let reframe = self.masker.is_active();
        let mut to_client = Frames::new(From::Backend, self.max_frame, self.max_message, keep);
        if reframe {
            to_client = to_client.keeping_messages(self.max_masked_message);
        }
        let mut to_backend = Frames::new(From::Client, self.max_frame, self.max_message, keep);
        // Set while bytes are being written to a side: a direction cut then (its future
        // dropped) may have left a frame half written, and no Close may follow it.
        let (to_backend_writing, to_client_writing) = (AtomicBool::new(false), AtomicBool::new(false));
        let activity = Activity { started, last: AtomicU64::new(0) };
        let (ended_by, error, close_code) = {
            let upload = self.direction(
                &mut client_r,
                &mut backend_w,
                &mut to_backend,
                &mut up,
                false,
                (&to_backend_writing, &activity),
            );
            let download = self.direction(
                &mut backend_r,
                &mut client_w,
                &mut to_client,
                &mut down,
                reframe,
                (&to_client_writing, &activity),
            );
            tokio::pin!(upload, download);
            let (mut up_done, mut down_done) = (false, false);
            let mut serving = self.serving.clone();
            // Looked at a few times per idle limit (a zero limit never fires).
            let check = if self.idle.is_zero() { Duration::from_secs(3600) } else { self.idle / 4 };
            let mut idle_check = tokio::time::interval(check.max(Duration::from_millis(100)));
            loop {
                tokio::select! {
                    _ = idle_check.tick(), if !self.idle.is_zero() => {
                        if activity.idle_for() >= self.idle {
                            let why = format!("no bytes either way for {} s (the gateway's idle limit)", self.idle.as_secs());
                            break ("gateway", Some(why), Some(1001));
                        }
                    }
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
        // Re-framed, the client's stream is between frames unless a write was cut: only
        // whole ones are written to it.
        if let Some(code) = close_code
            && !to_client_writing.load(Ordering::Relaxed)
            && (reframe || to_client.at_boundary())
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
    /// is forwarded, so a refused frame's bytes never leave. With `reframe`, the chunks
    /// are not forwarded: each event goes on as [`Masker::reframe`] makes it, once whole.
    async fn direction(
        &self,
        from: &mut ReadHalf<Io>,
        to: &mut WriteHalf<Io>,
        frames: &mut Frames,
        totals: &mut Totals,
        reframe: bool,
        (writing, activity): (&AtomicBool, &Activity),
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
            activity.touch();
            let chunk = buf.get(..n).unwrap_or_default();
            let events = match frames.feed(chunk) {
                Ok(events) => events,
                Err(e) => return Ended::Refused(e),
            };
            if !reframe && !write(to, chunk, writing).await {
                return Ended::Eof;
            }
            totals.bytes += n as u64;
            let way = frames.from();
            for event in events {
                if !reframe {
                    self.event(way, event, None, totals).await;
                    continue;
                }
                match self.masker.reframe(&event) {
                    Ok(sent) => {
                        if !write(to, &sent.frame, writing).await {
                            return Ended::Eof;
                        }
                        self.event(way, event, Some(sent), totals).await;
                    }
                    Err(e) => {
                        // Recorded (by size, its preview masked), but not sent.
                        self.event(way, event, None, totals).await;
                        return Ended::Refused(e);
                    }
                }
            }
        }
    }

    /// Record `event`; `sent` is how it went to the client when it was re-framed.
    async fn event(&self, from: From, event: Event, sent: Option<Reframed>, totals: &mut Totals) {
        let record = match event {
            Event::Message { kind, bytes, frames, preview, .. } => {
                totals.messages += 1;
                match kind {
                    Kind::Text => totals.text += 1,
                    Kind::Binary => totals.binary += 1,
                }
                let sent_bytes = sent.as_ref().map(|s| s.bytes);
                let (preview, truncated) = match (kind, sent.and_then(|s| s.text)) {
                    // Masked on the wire: the record shows what the client got.
                    (Kind::Text, Some(masked)) => {
                        let cut = char_floor(&masked, self.preview_max);
                        (Some(masked.get(..cut).unwrap_or_default().to_string()), cut < masked.len())
                    }
                    (Kind::Text, None) => {
                        let masked = self.masker.text(&String::from_utf8_lossy(&preview));
                        let cut = char_floor(&masked, self.preview_max);
                        let truncated = bytes > preview.len() as u64 || cut < masked.len();
                        (Some(masked.get(..cut).unwrap_or_default().to_string()), truncated)
                    }
                    (Kind::Binary, _) => (None, false),
                };
                Record::Message { from, kind, bytes, frames, preview, truncated, sent_bytes }
            }
            Event::Ping { .. } => {
                totals.pings += 1;
                return;
            }
            Event::Pong { .. } => {
                totals.pongs += 1;
                return;
            }
            Event::Close { code, reason } => Record::Close { from, code, reason: self.masker.text(&reason) },
        };
        self.append(&record).await;
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

/// The Close code for a refusal: 1009 (too big) for a bound, the refusal's own for what
/// cannot leave masked (1007, 1008), else 1002 (protocol error).
fn code_of(e: &Error) -> u16 {
    match e {
        Error::Limit { .. } => 1009,
        Error::Unmaskable { close_code, .. } => *close_code,
        _ => 1002,
    }
}

/// Write all of `bytes`, `writing` set meanwhile; `false` when `to` is gone.
async fn write(to: &mut WriteHalf<Io>, bytes: &[u8], writing: &AtomicBool) -> bool {
    writing.store(true, Ordering::Relaxed);
    let done = to.write_all(bytes).await.is_ok();
    writing.store(false, Ordering::Relaxed);
    done
}

/// The largest char boundary of `text` at or below `max`.
fn char_floor(text: &str, max: usize) -> usize {
    let mut cut = text.len().min(max);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}
