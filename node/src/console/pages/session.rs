//! `GET /sessions/{id}`: one session as a story (who, where, then each unit of work with
//! its decision, rule, approval and masked result), its recorded terminals replayed in
//! the page, and its exports: `/sessions/{id}/export.jsonl` (the CLI's `sessions export`
//! line) and `/sessions/{id}/recording/{channel}.cast` (asciicast v2, what the player
//! plays).

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_api::proto::admin_server::Admin;
use portcullis_api::proto::{SessionRecord, ShowSessionRequest};

use super::sessions::{NEEDS, row};
use crate::asciicast::assemble;
use crate::console::Console;
use crate::console::admin::{refusal, request};
use crate::console::headers::SESSION_PAGE_CSP;
use crate::console::story;
use crate::console::viewer::{Viewer, percent_encode};
use crate::console::views::{Link, MessagePage, SessionPage, Terminal, render};
use crate::records::record_json;

/// The session `id` as the viewer may read it, or the page saying why not.
async fn fetch(console: &Console, viewer: &Viewer, id: &str) -> Result<SessionRecord, Response> {
    let call = request(&viewer.session, ShowSessionRequest { id: id.to_string() });
    match console.deps().admin.show_session(call).await {
        Ok(reply) => Ok(reply.into_inner()),
        Err(status) => Err(refusal(console, viewer, &status, "A session's page", NEEDS)),
    }
}

pub async fn show(State(console): State<Console>, viewer: Viewer, Path(id): Path<String>) -> Response {
    let record = match fetch(&console, &viewer, &id).await {
        Ok(r) => r,
        Err(page) => return page,
    };
    let Some(session) = record.session.as_ref().map(row) else {
        return missing(&console, &viewer, &id);
    };
    let story = story::read(&record.events);
    let base = format!("/sessions/{}", percent_encode(&id));
    let page = SessionPage {
        frame: viewer.frame(&console, format!("Session {id}"), "sessions"),
        backend_login: story.backend_login.unwrap_or_else(|| "-".into()),
        settings: story.settings,
        terminals: story
            .terminals
            .iter()
            .map(|&channel| Terminal { channel, url: format!("{base}/recording/{channel}.cast") })
            .collect(),
        items: story.items,
        session,
    };
    let mut response = render(StatusCode::OK, &page);
    // Only this page replays terminals, so only this page lets scripts compile
    // WebAssembly (see SESSION_PAGE_CSP); the security layer keeps a CSP set here.
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(SESSION_PAGE_CSP));
    response
}

/// `GET /sessions/{id}/export.jsonl`: the session and its events as one JSON line,
/// exactly as `portcullis sessions export` writes it.
pub async fn export_jsonl(State(console): State<Console>, viewer: Viewer, Path(id): Path<String>) -> Response {
    let record = match fetch(&console, &viewer, &id).await {
        Ok(r) => r,
        Err(page) => return page,
    };
    let mut line = record_json(&record).to_string();
    line.push('\n');
    let disposition = format!("attachment; filename=\"session-{}.jsonl\"", file_safe(&id));
    download("application/x-ndjson; charset=utf-8", &disposition, line)
}

/// `GET /sessions/{id}/recording/{channel}.cast`: a recorded terminal as asciicast v2.
pub async fn recording(
    State(console): State<Console>,
    viewer: Viewer,
    Path((id, file)): Path<(String, String)>,
) -> Response {
    let Some(channel) = file.strip_suffix(".cast").and_then(|n| n.parse::<u64>().ok()) else {
        return missing(&console, &viewer, &id);
    };
    let record = match fetch(&console, &viewer, &id).await {
        Ok(r) => r,
        Err(page) => return page,
    };
    let Some(cast) = assemble(&record.events, channel) else {
        return missing(&console, &viewer, &id);
    };
    let disposition = format!("inline; filename=\"session-{}-{channel}.cast\"", file_safe(&id));
    download("application/x-asciicast; charset=utf-8", &disposition, cast.to_text())
}

fn download(content_type: &'static str, disposition: &str, body: String) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Ok(v) = HeaderValue::from_str(disposition) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// `id` with only what is safe in a quoted file name.
fn file_safe(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(100).collect()
}

fn missing(console: &Console, viewer: &Viewer, id: &str) -> Response {
    let page = MessagePage {
        frame: viewer.frame(console, "Not found", "sessions"),
        heading: "Not found".into(),
        paragraphs: vec![format!("Session {id} has no such record or recorded terminal.")],
        link: Some(Link { href: "/sessions".into(), text: "Search sessions".into() }),
    };
    render(StatusCode::NOT_FOUND, &page)
}
