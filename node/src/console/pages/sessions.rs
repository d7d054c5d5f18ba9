//! `GET /sessions`: search the session index by identity, resource, door, status, time
//! range and text.
//!
//! The admin API filters by identity, resource and the start time range (and a limit);
//! door, status and text are filtered here, over a bounded result: the newest
//! [`SEARCHED`] sessions the API returns for the rest. When the bound cut the search, the
//! page links the next page: the same search, "Started until" just before the oldest
//! session it read. Text is looked for in the
//! sessions' events (statements, commands, requests, results, refusals, file names), and
//! only in the newest [`TEXT_SEARCHED`] candidates, each fetched with `ShowSession`: the
//! page says both bounds, so an auditor knows what was not searched.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use portcullis_api::proto::admin_server::Admin;
use portcullis_api::proto::{self, SessionFilter, ShowSessionRequest};
use serde::Deserialize;

use crate::console::Console;
use crate::console::admin::{refusal, request};
use crate::console::viewer::Viewer;
use crate::console::views::{Choice, SessionRow, SessionsPage, render, utc};

/// Sessions asked of the admin API per search (newest first).
pub const SEARCHED: u32 = 500;
/// Sessions whose events a text search reads.
pub const TEXT_SEARCHED: usize = 50;
/// What the page asks for in words, to say which role is missing.
pub const NEEDS: &str = "the admin or auditor role";

/// The search form, as sent (every field optional; empty means any).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SearchForm {
    pub identity: String,
    pub resource: String,
    pub door: String,
    pub status: String,
    /// Start of the range (UTC): `2024-05-01T12:00` as a datetime-local field sends it, or RFC 3339.
    pub from: String,
    pub to: String,
    pub text: String,
}

const DOORS: [(&str, &str); 4] = [("", "any door"), ("postgres", "Postgres"), ("ssh", "SSH"), ("http", "HTTP")];
const STATUSES: [(&str, &str); 5] =
    [("", "any status"), ("open", "open"), ("closed", "closed"), ("failed", "failed"), ("lost", "lost")];

pub async fn search(State(console): State<Console>, viewer: Viewer, Query(form): Query<SearchForm>) -> Response {
    let mut problem = None;
    let from = parse_time(&form.from, "From").unwrap_or_else(|p| {
        problem = Some(p);
        None
    });
    let to = parse_time(&form.to, "To").unwrap_or_else(|p| {
        problem = Some(p);
        None
    });
    let filter = SessionFilter {
        identity: non_empty(&form.identity),
        resource: non_empty(&form.resource),
        since_ms: from,
        until_ms: to,
        limit: Some(SEARCHED),
    };
    let sessions = match console.deps().admin.list_sessions(request(&viewer.session, filter)).await {
        Ok(reply) => reply.into_inner().sessions,
        Err(status) => return refusal(&console, &viewer, &status, "The sessions page", NEEDS),
    };
    let got = sessions.len();
    let older = (got >= SEARCHED as usize)
        .then(|| sessions.iter().map(|s| s.started_at_ms).min())
        .flatten()
        .and_then(|oldest| oldest.checked_sub(1))
        .map(form_time);
    let door = form.door.trim().to_ascii_lowercase();
    let status = form.status.trim().to_ascii_lowercase();
    let mut found: Vec<proto::Session> = sessions
        .into_iter()
        .filter(|s| door.is_empty() || s.protocol().word() == door)
        .filter(|s| status.is_empty() || s.status().word() == status)
        .collect();
    let mut note = format!("Searched the newest {SEARCHED} sessions matching identity, resource and start");
    if got < SEARCHED as usize {
        note = format!("Searched all {got} sessions matching identity, resource and start");
    }
    let text = form.text.trim().to_lowercase();
    if !text.is_empty() {
        let candidates = found.len();
        found.truncate(TEXT_SEARCHED);
        let mut matching = Vec::new();
        for s in found {
            let call = request(&viewer.session, ShowSessionRequest { id: s.id.clone() });
            match console.deps().admin.show_session(call).await {
                Ok(record) => {
                    if mentions(record.get_ref(), &text) {
                        matching.push(s);
                    }
                }
                // Gone since it was listed (restored backup, …): not a match.
                Err(status) if status.code() == tonic::Code::NotFound => {}
                Err(status) => return refusal(&console, &viewer, &status, "The sessions page", NEEDS),
            }
        }
        found = matching;
        note.push_str(&format!(
            "; the text was looked for in the events of the newest {} of the {candidates} that matched the other fields",
            candidates.min(TEXT_SEARCHED)
        ));
    }
    note.push('.');
    let page = SessionsPage {
        frame: viewer.frame(&console, "Sessions", "sessions"),
        doors: choices(&DOORS, &door),
        statuses: choices(&STATUSES, &status),
        rows: found.iter().map(row).collect(),
        form,
        note,
        problem,
        older,
    };
    render(if page.problem.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK }, &page)
}

/// A session as a row (and as the facts of its page).
pub fn row(s: &proto::Session) -> SessionRow {
    SessionRow {
        id: s.id.clone(),
        identity: s.identity.clone(),
        resource: s.resource.clone(),
        door: s.protocol().word(),
        node: s.node,
        client: s.client_addr.clone(),
        started: utc(s.started_at_ms),
        ended: s.ended_at_ms.map_or_else(|| "-".into(), utc),
        status: s.status().word(),
        events: s.events,
    }
}

/// Whether `text` (lowercase) is in one of the session's events or fields.
fn mentions(record: &proto::SessionRecord, text: &str) -> bool {
    record.events.iter().any(|e| e.kind != "recording" && e.detail_json.to_lowercase().contains(text))
        || record.session.as_ref().is_some_and(|s| {
            [&s.id, &s.identity, &s.resource, &s.client_addr].iter().any(|f| f.to_lowercase().contains(text))
        })
}

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn choices(options: &[(&'static str, &'static str)], chosen: &str) -> Vec<Choice> {
    options.iter().map(|&(value, label)| Choice { value, label, selected: value == chosen }).collect()
}

/// Milliseconds since the epoch as the form's time fields take them (UTC, no zone).
fn form_time(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string().trim_end_matches('Z').to_string()
}

/// A time of the form as milliseconds since the epoch (UTC); `None` when empty.
pub fn parse_time(text: &str, field: &str) -> Result<Option<u64>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    // A datetime-local field sends `2024-05-01T12:00` (no seconds, no zone).
    let with_seconds = if text.len() == 16 { format!("{text}:00") } else { text.to_string() };
    match humantime::parse_rfc3339_weak(&with_seconds) {
        Ok(at) => {
            Ok(at.duration_since(std::time::UNIX_EPOCH).ok().map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
        }
        Err(_) => Err(format!("{field}: {text:?} is not a time; give one like 2024-05-01T12:00 (UTC).")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{form_time, parse_time};

    #[test]
    fn the_next_pages_time_reads_back_to_the_millisecond() {
        let ms = 1_796_674_801_249;
        let text = form_time(ms);
        assert_eq!(text, "2026-12-07T20:20:01.249");
        assert_eq!(parse_time(&text, "To").unwrap(), Some(ms));
        assert_eq!(parse_time("2026-12-07T20:20", "To").unwrap(), Some(1_796_674_800_000));
    }
}
