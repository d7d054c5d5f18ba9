//! Phase "record" for a terminal: what a channel with a pty shows and is typed into,
//! kept as asciicast v2 events (`[seconds, "o" | "i" | "r", data]`), masked by the
//! detectors, and written to the session's record in chunks (`recording` events), so
//! `portcullis sessions replay ID` can play it or write an `.cast` file.
//!
//! Bounded per channel: past `max_bytes` a strict resource ends the channel (nothing may
//! be shown that is not on record), a fast one stops recording and marks it truncated.

use std::time::Instant;

use serde::Serialize;

use crate::mask::MaskPlan;

/// A chunk is written once it holds this much, or when [`Recording::due`] says so.
const CHUNK_BYTES: usize = 32 * 1024;

/// One `recording` audit event.
#[derive(Debug, Serialize)]
pub struct RecordingChunk {
    /// The channel's number within the session (several shells may share a connection).
    pub channel: u32,
    /// Order of this chunk within the channel, from 0.
    pub seq: u64,
    /// The first chunk carries the asciicast header fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<Header>,
    /// `[seconds since start, code, data]`.
    pub events: Vec<(f64, &'static str, String)>,
    /// Set on the last chunk when the bound cut the recording short.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// What the asciicast v2 header needs.
#[derive(Debug, Clone, Serialize)]
pub struct Header {
    pub width: u32,
    pub height: u32,
    /// Unix seconds at the start.
    pub timestamp: u64,
    pub term: String,
}

/// What happened when something was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Kept,
    /// The bound was reached just now: the caller ends the channel (strict) or goes on
    /// unrecorded (fast; the recording is marked truncated).
    BoundReached,
    /// Past the bound already (fast): not kept.
    Dropped,
}

pub struct Recording {
    channel: u32,
    masks: MaskPlan,
    started: Instant,
    header: Option<Header>,
    events: Vec<(f64, &'static str, String)>,
    buffered: usize,
    total: usize,
    max_bytes: usize,
    seq: u64,
    truncated: bool,
    last_chunk: Instant,
}

impl Recording {
    pub fn new(channel: u32, header: Header, masks: MaskPlan, max_bytes: usize) -> Self {
        let now = Instant::now();
        Recording {
            channel,
            masks,
            started: now,
            header: Some(header),
            events: Vec::new(),
            buffered: 0,
            total: 0,
            max_bytes,
            seq: 0,
            truncated: false,
            last_chunk: now,
        }
    }

    /// What the terminal showed (already masked for the client).
    pub fn output(&mut self, data: &[u8]) -> Recorded {
        self.push("o", String::from_utf8_lossy(data).into_owned())
    }

    /// What was typed. Masked here: a secret typed is kept as the detectors leave it.
    pub fn input(&mut self, data: &[u8]) -> Recorded {
        let text = String::from_utf8_lossy(data);
        let text = self.masks.detect(&text).unwrap_or_else(|| text.into_owned());
        self.push("i", text)
    }

    pub fn resize(&mut self, cols: u32, rows: u32) -> Recorded {
        self.push("r", format!("{cols}x{rows}"))
    }

    fn push(&mut self, code: &'static str, data: String) -> Recorded {
        if self.truncated {
            return Recorded::Dropped;
        }
        if self.total.saturating_add(data.len()) > self.max_bytes {
            self.truncated = true;
            return Recorded::BoundReached;
        }
        self.total += data.len();
        self.buffered += data.len();
        self.events.push((self.started.elapsed().as_secs_f64(), code, data));
        Recorded::Kept
    }

    /// Whether a chunk should be written now: it is large, or it has waited a while.
    pub fn due(&self) -> bool {
        self.buffered >= CHUNK_BYTES || (!self.events.is_empty() && self.last_chunk.elapsed().as_secs() >= 2)
    }

    /// The events gathered since the last chunk (or `None` if there are none and
    /// nothing is left to say).
    pub fn take_chunk(&mut self) -> Option<RecordingChunk> {
        if self.events.is_empty() && self.header.is_none() && !self.truncated {
            return None;
        }
        self.last_chunk = Instant::now();
        self.buffered = 0;
        let chunk = RecordingChunk {
            channel: self.channel,
            seq: self.seq,
            header: self.header.take(),
            events: std::mem::take(&mut self.events),
            truncated: self.truncated,
        };
        self.seq += 1;
        Some(chunk)
    }
}

/// A channel's recording, written to its session as it grows.
pub struct Tape<S: crate::store::Store> {
    recording: std::sync::Mutex<Recording>,
    recorder: crate::gate::Recorder<S>,
    /// Strict audit: past the bound the channel ends.
    strict: bool,
}

impl<S: crate::store::Store> Tape<S> {
    pub fn new(recording: Recording, recorder: crate::gate::Recorder<S>, strict: bool) -> Self {
        Tape { recording: std::sync::Mutex::new(recording), recorder, strict }
    }

    /// Record with `f`; `false` when the channel must end (strict, bound reached).
    pub async fn keep(&self, f: impl FnOnce(&mut Recording) -> Recorded) -> bool {
        let (recorded, chunk) = {
            let mut r = self.recording.lock().unwrap_or_else(|p| p.into_inner());
            let recorded = f(&mut r);
            let chunk = if r.due() || recorded == Recorded::BoundReached { r.take_chunk() } else { None };
            (recorded, chunk)
        };
        if let Some(chunk) = chunk {
            self.write(chunk).await;
        }
        !(self.strict && recorded == Recorded::BoundReached)
    }

    /// Write what is left.
    pub async fn finish(&self) {
        let chunk = self.recording.lock().unwrap_or_else(|p| p.into_inner()).take_chunk();
        if let Some(chunk) = chunk {
            self.write(chunk).await;
        }
    }

    async fn write(&self, chunk: RecordingChunk) {
        let commit = self.recorder.append("recording", &chunk).await;
        tokio::spawn(async move {
            if let Ok(Err(e)) = commit.await {
                tracing::warn!(error = %e, "a recording chunk could not be committed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::{Header, Recorded, Recording};
    use crate::mask::{Detector, MaskPlan};

    fn header() -> Header {
        Header { width: 80, height: 24, timestamp: 0, term: "xterm".into() }
    }

    #[test]
    fn typed_secrets_are_masked_and_chunks_carry_the_header_once() {
        let masks = MaskPlan::new(vec![], vec![Detector::Ssn]);
        let mut r = Recording::new(0, header(), masks, 1024);
        assert_eq!(r.input(b"echo 123-45-6789\r"), Recorded::Kept);
        assert_eq!(r.output(b"$ "), Recorded::Kept);
        assert_eq!(r.resize(100, 30), Recorded::Kept);
        let first = r.take_chunk().unwrap();
        assert!(first.header.is_some());
        let codes: Vec<&str> = first.events.iter().map(|e| e.1).collect();
        assert_eq!(codes, ["i", "o", "r"]);
        assert_eq!(first.events[0].2, "echo ***-**-6789\r");
        assert_eq!(first.events[2].2, "100x30");
        r.output(b"more");
        let second = r.take_chunk().unwrap();
        assert!(second.header.is_none() && second.seq == 1);
        assert!(r.take_chunk().is_none());
    }

    #[test]
    fn past_its_bound_a_recording_says_so_once_then_drops_and_marks_itself_truncated() {
        let mut r = Recording::new(0, header(), MaskPlan::default(), 8);
        assert_eq!(r.output(b"12345"), Recorded::Kept);
        assert_eq!(r.output(b"67890"), Recorded::BoundReached);
        assert_eq!(r.output(b"x"), Recorded::Dropped);
        let chunk = r.take_chunk().unwrap();
        assert!(chunk.truncated);
        assert_eq!(chunk.events.len(), 1);
    }
}
