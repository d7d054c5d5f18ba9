//! Recorded terminals as asciicast v2: the SSH door records a terminal as `recording`
//! events (chunks of `[seconds, "o", text]` with the header in the first); this puts a
//! session's chunks back together. Used by `portcullis sessions replay` and by the
//! console's `/sessions/{id}/recording/{n}.cast`.

use portcullis_api::proto;
use serde_json::{Value, json};

/// One terminal's recording, put together from its chunks.
#[derive(Debug, Default, PartialEq)]
pub struct Cast {
    pub header: Value,
    pub events: Vec<(f64, String, String)>,
    pub truncated: bool,
}

/// Terminal `terminal`'s recording from a session's events, in order.
pub fn assemble(events: &[proto::Event], terminal: u64) -> Option<Cast> {
    let mut chunks: Vec<Value> = events
        .iter()
        .filter(|e| e.kind == "recording")
        .filter_map(|e| serde_json::from_str::<Value>(&e.detail_json).ok())
        .filter(|d| d["channel"].as_u64() == Some(terminal))
        .collect();
    if chunks.is_empty() {
        return None;
    }
    chunks.sort_by_key(|c| c["seq"].as_u64().unwrap_or(0));
    let mut cast = Cast::default();
    for chunk in &chunks {
        if let Some(h) = chunk.get("header").filter(|h| !h.is_null()) {
            cast.header = json!({
                "version": 2,
                "width": h["width"],
                "height": h["height"],
                "timestamp": h["timestamp"],
                "env": { "TERM": h["term"] },
            });
        }
        cast.truncated |= chunk["truncated"].as_bool().unwrap_or(false);
        for event in chunk["events"].as_array().into_iter().flatten() {
            let (Some(t), Some(code), Some(data)) = (event[0].as_f64(), event[1].as_str(), event[2].as_str()) else {
                continue;
            };
            cast.events.push((t, code.to_string(), data.to_string()));
        }
    }
    if cast.header.is_null() {
        cast.header = json!({ "version": 2, "width": 80, "height": 24 });
    }
    Some(cast)
}

impl Cast {
    /// The asciicast v2 file: the header line, then one JSON array per event.
    pub fn to_text(&self) -> String {
        let mut text = self.header.to_string();
        text.push('\n');
        for (t, code, data) in &self.events {
            text.push_str(&json!([t, code, data]).to_string());
            text.push('\n');
        }
        text
    }
}
