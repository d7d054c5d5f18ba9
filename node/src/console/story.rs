//! A session's events read as a story, for the session page: what the client started
//! with, then each unit of work in order (a statement, command or request, how it was
//! decided, by which rule, whose approval, and what came back, masked), with file
//! transfers, forwarded connections and WebSocket messages between them.
//!
//! The events are the doors' records (`proxy/src/gate/record.rs` for `start`,
//! `statement`, `result` and `refused`; the SSH door's `file`, `recording` and
//! `connection`; the HTTP door's `websocket`). They are read defensively: a field that
//! is missing or of another type is left out, and an event of a kind this page does not
//! know is shown as its JSON (templates escape it like everything else).

use portcullis_api::proto;
use serde_json::Value;

use super::views::utc as format_ms;

/// Rows of a result preview shown on the page (the record keeps a few more at most).
const PREVIEW_ROWS: usize = 20;

/// The story of one session.
#[derive(Debug, Default)]
pub struct Story {
    /// The backend login (from `start`).
    pub backend_login: Option<String>,
    /// The client's settings at start (`key = value`).
    pub settings: Vec<String>,
    pub items: Vec<Item>,
    /// The channels with a recorded terminal, in order of their first chunk.
    pub terminals: Vec<u64>,
}

/// One entry of the story, in the session's order.
#[derive(Debug)]
pub struct Item {
    pub seq: u64,
    /// When (UTC, RFC 3339).
    pub at: String,
    pub body: Body,
}

#[derive(Debug)]
pub enum Body {
    Work(Box<Work>),
    /// A file transfer, a forwarded connection, a WebSocket message: one line.
    Line {
        label: &'static str,
        text: String,
    },
    /// An event this page does not know, as pretty JSON.
    Raw {
        kind: String,
        json: String,
    },
}

/// A statement, command or request, and what became of it.
#[derive(Debug, Default)]
pub struct Work {
    /// `Statement`, `Command` or `Request`.
    pub what: &'static str,
    pub text: String,
    /// Prepared statements' parameters (`$1 = '…'`).
    pub params: Vec<String>,
    /// An HTTP request's headers as recorded (credentials hidden, masked), one
    /// `name: value` per line.
    pub headers: String,
    /// An HTTP request's body: its size and its masked preview.
    pub body: Option<(u64, String)>,
    pub kinds: Vec<String>,
    /// `allow`, `approved` or `refused`.
    pub decision: String,
    pub reason: Option<String>,
    pub rules: Vec<String>,
    pub approval: Option<String>,
    pub masked: bool,
    pub outcome: Option<Outcome>,
}

/// What came back (the `result` record after a statement).
#[derive(Debug, Default)]
pub struct Outcome {
    /// Completions (`SELECT 3`), HTTP statuses, or what a command's channel did.
    pub tags: Vec<String>,
    pub rows: u64,
    pub error: Option<String>,
    pub duration: String,
    /// First rows, masked (`NULL` for nulls).
    pub preview: Vec<Vec<String>>,
    /// What a command printed or an HTTP response carried: masked preview and sizes.
    pub output: Option<Output>,
    /// An HTTP response's headers as the client got them (masked), one per line.
    pub headers: String,
}

#[derive(Debug, Default)]
pub struct Output {
    pub preview: String,
    /// `12 bytes`, `stdout 12 bytes, stderr 0 bytes`, `exit 0`.
    pub summary: String,
}

/// Read `events` (in order) as a story.
pub fn read(events: &[proto::Event]) -> Story {
    let mut story = Story::default();
    for event in events {
        let detail: Value = serde_json::from_str(&event.detail_json).unwrap_or(Value::Null);
        let at = format_ms(event.at_ms);
        let body = match event.kind.as_str() {
            "start" if detail.is_object() => {
                story.backend_login = text(&detail, "backend_user");
                if let Some(settings) = detail.get("settings").and_then(Value::as_object) {
                    story.settings = settings.iter().map(|(k, v)| format!("{k} = {}", scalar(v))).collect();
                }
                continue;
            }
            "statement" if detail.is_object() => Body::Work(Box::new(work(&detail, None))),
            "refused" if detail.is_object() => Body::Work(Box::new(work(&detail, Some(&detail)))),
            "result" if detail.is_object() => {
                let open = story.items.iter_mut().rev().find_map(|i| match &mut i.body {
                    Body::Work(w) if w.outcome.is_none() && w.decision != "refused" => Some(w),
                    _ => None,
                });
                match open {
                    Some(w) => {
                        w.outcome = Some(outcome(&detail));
                        continue;
                    }
                    None => raw(event, &detail),
                }
            }
            "recording" if detail.is_object() => {
                if let Some(channel) = detail.get("channel").and_then(Value::as_u64)
                    && !story.terminals.contains(&channel)
                {
                    story.terminals.push(channel);
                }
                continue;
            }
            "file" if detail.is_object() => Body::Line { label: "File", text: file_line(&detail) },
            "connection" if detail.is_object() => Body::Line { label: "Connection", text: connection_line(&detail) },
            "websocket" if detail.is_object() => Body::Line { label: "WebSocket", text: websocket_line(&detail) },
            _ => raw(event, &detail),
        };
        story.items.push(Item { seq: event.seq, at, body });
    }
    story
}

/// An unknown (or malformed) event as pretty JSON, or its text when it is not JSON.
fn raw(event: &proto::Event, detail: &Value) -> Body {
    let json = if detail.is_null() {
        event.detail_json.clone()
    } else {
        serde_json::to_string_pretty(detail).unwrap_or_else(|_| event.detail_json.clone())
    };
    Body::Raw { kind: event.kind.clone(), json }
}

/// A `statement` (allowed, approved) or, with `refused`, a `refused` record.
fn work(d: &Value, refused: Option<&Value>) -> Work {
    let (what, field) = if d.get("sql").is_some() {
        ("Statement", "sql")
    } else if d.get("command").is_some() {
        ("Command", "command")
    } else {
        ("Request", "request")
    };
    let mut line = text_of(d, field);
    if let Some(bytes) = d[format!("{field}_bytes")].as_u64() {
        line.push_str(&format!("\n[cut: {bytes} bytes in all]"));
    }
    if let Some(channel) = d["channel"].as_str()
        && channel != "exec"
    {
        line = format!("{channel}: {line}");
    }
    let params = d["params"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .enumerate()
                .map(|(i, p)| match p.as_str() {
                    Some(v) => format!("${} = '{}'", i + 1, v.replace('\'', "''")),
                    None => format!("${} = NULL", i + 1),
                })
                .collect()
        })
        .unwrap_or_default();
    let body = d["body_bytes"].as_u64().filter(|b| *b > 0).map(|b| (b, text_of(d, "body_preview")));
    Work {
        what,
        text: line,
        params,
        headers: header_lines(&d["headers"]),
        body,
        kinds: strings(&d["kinds"]),
        decision: match refused {
            Some(_) => "refused".into(),
            None => text(d, "decision").unwrap_or_else(|| "allow".into()),
        },
        reason: refused.and_then(|r| text(r, "reason")),
        rules: strings(&d["rules"]),
        approval: text(d, "approval"),
        masked: d["masked"].as_bool().unwrap_or(false),
        outcome: None,
    }
}

fn outcome(d: &Value) -> Outcome {
    let preview = d["preview"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .take(PREVIEW_ROWS)
                .map(|row| {
                    row.as_array()
                        .map(|cells| {
                            cells.iter().map(|c| if c.is_null() { "NULL".into() } else { scalar(c) }).collect()
                        })
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    let output = d.get("output").filter(|o| o.is_object()).map(|o| {
        let mut summary = Vec::new();
        if let Some(code) = o["exit_status"].as_u64() {
            summary.push(format!("exit {code}"));
        }
        if let Some(signal) = o["exit_signal"].as_str() {
            summary.push(format!("killed by {signal}"));
        }
        let (out, err) = (o["stdout_bytes"].as_u64().unwrap_or(0), o["stderr_bytes"].as_u64().unwrap_or(0));
        summary.push(if err > 0 { format!("{out} bytes out, {err} bytes to stderr") } else { format!("{out} bytes") });
        Output { preview: text_of(o, "preview"), summary: summary.join(", ") }
    });
    Outcome {
        tags: strings(&d["tags"]),
        rows: d["rows"].as_u64().unwrap_or(0),
        error: text(d, "error"),
        duration: d["duration_ms"].as_f64().map(|ms| format!("{ms:.1} ms")).unwrap_or_default(),
        preview,
        output,
        headers: header_lines(&d["headers"]),
    }
}

/// Recorded headers (`[[name, value], ...]`) as `name: value` lines.
fn header_lines(headers: &Value) -> String {
    let Some(pairs) = headers.as_array() else { return String::new() };
    pairs
        .iter()
        .filter_map(|pair| Some(format!("{}: {}", pair.get(0)?.as_str()?, pair.get(1)?.as_str()?)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn file_line(d: &Value) -> String {
    let mut line = format!("{} {}", text_of(d, "op"), text_of(d, "path"));
    if let Some(to) = text(d, "to") {
        line.push_str(&format!(" → {to}"));
    }
    if let Some(bytes) = d["bytes"].as_u64().filter(|b| *b > 0) {
        line.push_str(&format!(" ({bytes} bytes)"));
    }
    line
}

fn connection_line(d: &Value) -> String {
    let mut line = text_of(d, "kind");
    if let Some(from) = text(d, "from") {
        line.push_str(&format!(" from {from}"));
    }
    if let Some(to) = text(d, "to") {
        line.push_str(&format!(" to {to}"));
    }
    line.push_str(&format!(
        ": {} bytes to the client, {} to the host, {:.0} ms",
        d["bytes_to_client"].as_u64().unwrap_or(0),
        d["bytes_to_host"].as_u64().unwrap_or(0),
        d["duration_ms"].as_f64().unwrap_or(0.0)
    ));
    if let Some(error) = text(d, "error") {
        line.push_str(&format!(" (failed: {error})"));
    }
    line
}

fn websocket_line(d: &Value) -> String {
    match d["event"].as_str() {
        Some("message") => {
            let mut line = format!(
                "{} message from {}, {} bytes",
                text_of(d, "type"),
                text_of(d, "from"),
                d["bytes"].as_u64().unwrap_or(0)
            );
            if let Some(preview) = text(d, "preview") {
                line.push_str(&format!(": {preview}"));
            }
            if d["truncated"].as_bool() == Some(true) {
                line.push('…');
            }
            line
        }
        Some("close") => format!(
            "close from {} (code {}) {}",
            text_of(d, "from"),
            d["code"].as_u64().map_or_else(|| "none".into(), |c| c.to_string()),
            text_of(d, "reason")
        ),
        Some("closed") => {
            let mut line = format!(
                "closed by {} after {:.0} ms",
                text_of(d, "ended_by"),
                d["duration_ms"].as_f64().unwrap_or(0.0)
            );
            if let Some(error) = text(d, "error") {
                line.push_str(&format!(": {error}"));
            }
            line
        }
        _ => d.to_string(),
    }
}

/// Field `key` as text, if it is a string.
fn text(d: &Value, key: &str) -> Option<String> {
    d.get(key).and_then(Value::as_str).map(str::to_string)
}

/// Field `key` as text, empty if missing.
fn text_of(d: &Value, key: &str) -> String {
    text(d, key).unwrap_or_default()
}

/// A JSON value as people read it: strings without quotes.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().map(scalar).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests;
