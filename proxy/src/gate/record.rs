//! The audit records every door writes, typed: one builder instead of `json!` call
//! sites, so a field means the same thing (and has the same type) whichever door or
//! protocol path wrote it.
//!
//! A session's events are, in order: `start` (the client's settings), then for each
//! unit of work either a `statement`
//! record (it was allowed or approved, written ahead of relaying it) followed by a
//! `result` record, or a `refused` record.

use std::sync::Arc;

use portcullis_raft::model::{Detail, Event, now_millis};
use serde::Serialize;

/// What a unit of work was, in the door's own terms. Recorded ([`Recorded`]) under
/// field names that say what the text is (`sql` for Postgres).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// A Postgres query string; `extended` when it came through Parse/Bind/Execute,
    /// with the parameters of one execution (as shown to people; empty for a Parse).
    Sql { sql: Arc<str>, extended: bool, params: Vec<Option<String>> },
    /// An SSH channel's request: a command line (`exec`), an interactive `shell`, a
    /// subsystem (`sftp`), a port forward; `line` is what an approver reads.
    Ssh { line: Arc<str>, channel: &'static str, programs: Vec<String> },
    /// An HTTP request: `METHOD /path?query` under the resource, and its body as
    /// recorded (size, digest, a masked preview).
    /// `headers`: the client's request headers as recorded (credentials hidden, masked,
    /// bounded: `http::headers::for_record`).
    Http { line: Arc<str>, headers: Vec<(String, String)>, body_bytes: u64, body_sha256: String, body_preview: String },
}

impl Work {
    /// A query string of the simple protocol.
    pub fn query(sql: &str) -> Self {
        Work::Sql { sql: sql.into(), extended: false, params: Vec::new() }
    }

    /// A statement of the extended protocol (`params` empty for its Parse).
    pub fn prepared(sql: Arc<str>, params: Vec<Option<String>>) -> Self {
        Work::Sql { sql, extended: true, params }
    }

    /// The text, shared (cheap to clone for each execution of a prepared statement).
    pub fn shared_text(&self) -> Arc<str> {
        match self {
            Work::Sql { sql, .. } => sql.clone(),
            Work::Ssh { line, .. } | Work::Http { line, .. } => line.clone(),
        }
    }

    /// The text policy matched.
    pub fn text(&self) -> &str {
        match self {
            Work::Sql { sql, .. } => sql,
            Work::Ssh { line, .. } | Work::Http { line, .. } => line,
        }
    }

    /// What an approver reads: the text, and the parameters it runs with.
    pub fn describe(&self) -> String {
        match self {
            Work::Sql { sql, params, .. } if !params.is_empty() => {
                let shown: Vec<String> = params
                    .iter()
                    .enumerate()
                    .map(|(i, p)| match p {
                        Some(v) => format!("${} = '{}'", i + 1, v.replace('\'', "''")),
                        None => format!("${} = NULL", i + 1),
                    })
                    .collect();
                format!("{sql}\n-- with {}", shown.join(", "))
            }
            Work::Sql { sql, .. } => sql.to_string(),
            Work::Ssh { line, channel, .. } => format!("{channel}: {line}"),
            Work::Http { line, body_bytes: 0, .. } => line.to_string(),
            Work::Http { line, body_bytes, body_sha256, body_preview, .. } => {
                format!("{line}\n\n{body_preview}\n[body: {body_bytes} bytes, sha256 {body_sha256}]")
            }
        }
    }
}

/// Default for [`GateSettings::record_text_max`](super::GateSettings::record_text_max).
pub const DEFAULT_RECORD_TEXT_MAX: usize = 32 * 1024;

/// `text` cut to at most `max` bytes (at a character boundary), or whole.
pub fn bounded(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// Lowercase hex SHA-256 of `text`: names a text the record holds only in part.
pub fn sha256_hex(text: &str) -> String {
    sha256_hex_bytes(text.as_bytes())
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex_bytes(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut hex = String::with_capacity(64);
    for b in digest.as_ref() {
        for nibble in [b >> 4, b & 0x0f] {
            hex.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
    hex
}

/// [`Work`] as recorded: its text bounded, so one client's huge input cannot make a
/// huge replicated record (every node would commit, apply and snapshot it). A cut text
/// keeps its whole length and digest beside it (`sql_bytes`, `sql_sha256`).
#[derive(Debug)]
pub struct Recorded<'a> {
    pub work: &'a Work,
    pub max: usize,
}

impl Serialize for Recorded<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        let (field, text) = match self.work {
            Work::Sql { sql, .. } => ("sql", sql),
            Work::Ssh { line, .. } => ("command", line),
            Work::Http { line, .. } => ("request", line),
        };
        let cut = bounded(text, self.max);
        map.serialize_entry(field, cut)?;
        if cut.len() < text.len() {
            map.serialize_entry(&format!("{field}_bytes"), &text.len())?;
            map.serialize_entry(&format!("{field}_sha256"), &sha256_hex(text))?;
        }
        match self.work {
            Work::Sql { extended, params, .. } => {
                if *extended {
                    map.serialize_entry("extended", &true)?;
                }
                if !params.is_empty() {
                    map.serialize_entry("params", params)?;
                }
            }
            Work::Ssh { channel, programs, .. } => {
                map.serialize_entry("channel", channel)?;
                map.serialize_entry("programs", programs)?;
            }
            Work::Http { headers, body_bytes, body_sha256, body_preview, .. } => {
                if !headers.is_empty() {
                    map.serialize_entry("headers", headers)?;
                }
                if *body_bytes > 0 {
                    map.serialize_entry("body_bytes", body_bytes)?;
                    map.serialize_entry("body_sha256", body_sha256)?;
                    map.serialize_entry("body_preview", bounded(body_preview, self.max))?;
                }
            }
        }
        map.end()
    }
}

/// `statement`: allowed (or approved) work, written ahead of relaying it.
#[derive(Debug, Serialize)]
pub struct StatementRecord<'a> {
    #[serde(flatten)]
    pub work: Recorded<'a>,
    pub kinds: &'a [String],
    /// `allow`, or `approved` when a human released it.
    pub decision: &'static str,
    pub rules: &'a [String],
    pub approval: Option<&'a str>,
    pub masked: bool,
}

/// `refused`: work that did not run, and why.
#[derive(Debug, Serialize)]
pub struct RefusalRecord<'a> {
    #[serde(flatten)]
    pub work: Recorded<'a>,
    pub kinds: &'a [String],
    pub rules: &'a [String],
    pub approval: Option<&'a str>,
    pub reason: String,
}

/// `start`: how the client started its session (its settings, e.g. `application_name`).
#[derive(Debug, Serialize)]
pub struct StartRecord<'a> {
    /// The backend login the session runs as.
    pub backend_user: &'a str,
    pub settings: std::collections::BTreeMap<&'a str, &'a str>,
}

/// `result`: what came back, as the client saw it (masked).
#[derive(Debug, Default, Serialize)]
pub struct ResultRecord {
    /// Per execution: the completion (`SELECT 3`) or the error text.
    pub tags: Vec<String>,
    pub rows: u64,
    /// The backend's error message (it may quote an input value: bounded like texts).
    pub error: Option<String>,
    pub duration_ms: f64,
    /// First rows, masked.
    pub preview: Vec<Vec<Option<String>>>,
    /// What a command printed (SSH), masked and bounded, with its whole size and digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputRecord>,
    /// An HTTP response's headers as the client got them (credentials hidden, masked,
    /// bounded).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

/// A command's output as recorded: the first bytes (masked), and what identifies the rest.
#[derive(Debug, Default, Serialize)]
pub struct OutputRecord {
    pub exit_status: Option<u32>,
    /// `SIGTERM`... when the command was killed by a signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<String>,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// Lowercase hex BLAKE3 of everything sent to the client (stdout and stderr
    /// interleaved as sent; `b3sum` computes the same), empty when not kept. BLAKE3, not
    /// SHA-256 as for statement texts: output may be gigabytes, and SHA-256 took most of
    /// the SSH relay's CPU (BENCHMARKS.md).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub blake3: String,
    /// The first bytes of stdout and stderr as sent, masked, lossy UTF-8.
    pub preview: String,
}

/// An event of `session` with `detail`, stamped now.
pub(super) fn event(session: &str, kind: &'static str, detail: &impl Serialize) -> Event {
    Event { session_id: session.to_string(), seq: 0, at: now_millis(), kind: kind.into(), detail: Detail::of(detail) }
}
