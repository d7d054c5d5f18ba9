//! The demo API's request log: the backend's own record of what reached it.
//!
//! One JSON line per request, appended when the request (head and body) has arrived,
//! before it is answered, so a request refused with 401 is on record too:
//!
//! ```json
//! {"time_ms": 1767261600000, "method": "GET", "path": "/orders", "query": "a=1",
//!  "version": "HTTP/1.1", "headers": [["host", "127.0.0.1:20123"], ...],
//!  "credential": "bearer", "body_bytes": 0, "body_sha256": "e3b0c442..."}
//! ```
//!
//! The key never reaches the file: wherever it appears in a header value or the query
//! it is written as `[demo-api key]`, and `Authorization` values are summarized
//! (`Bearer [demo-api key]`, `Basic [alice:demo-api key]`, or `<scheme> [other
//! sha256:<16 hex>]` for a credential that is not the key: a client's token that
//! leaked through shows as its digest, never as itself). `credential` says where the
//! key was found (`bearer`, `basic:<user>`, `header:<name>`, `query:<name>`) or that
//! it was not (`other`: an Authorization header without it, `none`). `body_bytes` is
//! null when the body was over the limit.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use axum::body::Bytes;
use axum::http::header;
use axum::http::request::Parts;
use serde_json::json;

use super::Credential;
use crate::error::NodeError;

/// What stands for the key in the log.
pub const KEY_MARK: &str = "[demo-api key]";

pub struct RequestLog {
    /// The key, to keep it out of the file.
    key: String,
    /// std, not tokio: held only for one `write_all`, never across an await; one
    /// write per line keeps concurrent requests' lines whole.
    file: Mutex<std::fs::File>,
}

impl RequestLog {
    pub fn open(path: &Path, key: &str) -> Result<Self, NodeError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| NodeError::io(format!("open {}", path.display()), e))?;
        Ok(RequestLog { key: key.to_string(), file: Mutex::new(file) })
    }

    /// Append the line for one request. A failed write is reported on stderr and the
    /// request still served: the log is a test oracle, not an audit trail.
    pub fn record(&self, parts: &Parts, body: Option<&Bytes>, credential: &Credential) {
        let line = self.line(parts, body, credential);
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(line.as_bytes()) {
            tracing::warn!(error = %e, "demo API: cannot append to the request log");
        }
    }

    fn line(&self, parts: &Parts, body: Option<&Bytes>, credential: &Credential) -> String {
        let headers: Vec<serde_json::Value> = parts
            .headers
            .iter()
            .map(|(name, value)| {
                let text = String::from_utf8_lossy(value.as_bytes());
                let shown = if *name == header::AUTHORIZATION || *name == header::PROXY_AUTHORIZATION {
                    summarize_authorization(&text, &self.key)
                } else {
                    self.hide_key(&text)
                };
                json!([name.as_str(), shown])
            })
            .collect();
        let record = json!({
            "time_ms": now_ms(),
            "method": parts.method.as_str(),
            "path": self.hide_key(parts.uri.path()),
            "query": parts.uri.query().map(|q| self.hide_key(q)),
            "version": format!("{:?}", parts.version),
            "headers": headers,
            "credential": credential.word(),
            "body_bytes": body.map(Bytes::len),
            "body_sha256": body.map(|b| sha256_hex(b)),
        });
        format!("{record}\n")
    }

    fn hide_key(&self, text: &str) -> String {
        if self.key.is_empty() { text.to_string() } else { text.replace(&self.key, KEY_MARK) }
    }
}

/// An Authorization value as the log shows it: the scheme, and whether what follows
/// is the key (never the value itself).
fn summarize_authorization(value: &str, key: &str) -> String {
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && rest == key {
        return format!("{scheme} {KEY_MARK}");
    }
    if scheme.eq_ignore_ascii_case("basic")
        && let Some((user, password)) = super::credential::decode_basic(rest)
        && password == key
    {
        let user = if user.contains(key) { KEY_MARK.to_string() } else { user };
        return format!("{scheme} [{user}:{}]", KEY_MARK.trim_start_matches('[').trim_end_matches(']'));
    }
    let digest = sha256_hex(rest.as_bytes());
    format!("{scheme} [other sha256:{}]", digest.get(..16).unwrap_or(&digest))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
