//! Sessions and their events as JSON, one shape wherever a record leaves the cluster:
//! `portcullis sessions list --json`, `show --json` and `export` (one line per session),
//! and the console's `/sessions/{id}/export.jsonl`.

use portcullis_api::proto;
use serde_json::json;

/// A session's index entry.
pub fn session_json(s: &proto::Session) -> serde_json::Value {
    json!({
        "id": s.id,
        "identity": s.identity,
        "resource": s.resource,
        "protocol": s.protocol().word(),
        "node": s.node,
        "client_addr": s.client_addr,
        "started_at_ms": s.started_at_ms,
        "ended_at_ms": s.ended_at_ms,
        "status": s.status().word(),
        "events": s.events,
    })
}

/// An event; its detail is embedded as JSON (as text if it does not parse).
pub fn event_json(e: &proto::Event) -> serde_json::Value {
    let detail = serde_json::from_str::<serde_json::Value>(&e.detail_json)
        .unwrap_or_else(|_| serde_json::Value::String(e.detail_json.clone()));
    json!({ "session_id": e.session_id, "seq": e.seq, "at_ms": e.at_ms, "kind": e.kind, "detail": detail })
}

/// One session with its events: the `show --json` document and one `export` line.
pub fn record_json(r: &proto::SessionRecord) -> serde_json::Value {
    json!({
        "session": r.session.as_ref().map(session_json),
        "events": r.events.iter().map(event_json).collect::<Vec<_>>(),
    })
}
