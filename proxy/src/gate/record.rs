//! The audit records every door writes, typed: one builder instead of `json!` call
//! sites, so a field means the same thing (and has the same type) whichever door or
//! protocol path wrote it.
//!
//! A session's events are, in order: for each unit of work either a `statement`
//! record (it was allowed or approved, written ahead of relaying it) followed by a
//! `result` record, or a `refused` record.

use portcullis_raft::model::{Detail, Event, now_millis};
use serde::Serialize;

/// What a unit of work was, in the door's own terms. Flattened into every record, so
/// its field names say what the text is (`sql` for Postgres).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Work {
    /// A Postgres query string; `extended` when it came through Parse/Bind/Execute.
    Sql {
        sql: String,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        extended: bool,
    },
}

impl Work {
    /// The text policy matched and an approver reads.
    pub fn text(&self) -> &str {
        match self {
            Work::Sql { sql, .. } => sql,
        }
    }
}

/// `statement`: allowed (or approved) work, written ahead of relaying it.
#[derive(Debug, Serialize)]
pub struct StatementRecord<'a> {
    #[serde(flatten)]
    pub work: &'a Work,
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
    pub work: &'a Work,
    pub kinds: &'a [String],
    pub rules: &'a [String],
    pub approval: Option<&'a str>,
    pub reason: String,
}

/// `result`: what came back, as the client saw it (masked).
#[derive(Debug, Default, Serialize)]
pub struct ResultRecord {
    /// Per execution: the completion (`SELECT 3`) or the error text.
    pub tags: Vec<String>,
    pub rows: u64,
    pub error: Option<String>,
    pub duration_ms: f64,
    /// First rows, masked.
    pub preview: Vec<Vec<Option<String>>>,
}

/// An event of `session` with `detail`, stamped now.
pub(super) fn event(session: &str, kind: &'static str, detail: &impl Serialize) -> Event {
    Event { session_id: session.to_string(), seq: 0, at: now_millis(), kind: kind.into(), detail: Detail::of(detail) }
}
