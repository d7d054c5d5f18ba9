//! Where a request carries the demo API's key: the gate accepts or refuses on it, and
//! the request log records it (`credential`), so a test can tell the injected
//! credential arrived, and in which form.

use axum::http::{HeaderMap, header};
use base64::Engine;

/// Where a request presented the key (the log's `credential` field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// `Authorization: Basic` with the key as password.
    Basic { username: String },
    /// Some other header's whole value.
    Header(String),
    /// A query parameter's whole value.
    Query(String),
    /// An `Authorization` header without the key.
    Other,
    /// No key and no `Authorization` header.
    None,
}

impl Credential {
    /// The log's text for it: `bearer`, `basic:<user>`, `header:<name>`,
    /// `query:<name>`, `other` or `none`.
    pub fn word(&self) -> String {
        match self {
            Credential::Bearer => "bearer".into(),
            Credential::Basic { username } => format!("basic:{username}"),
            Credential::Header(name) => format!("header:{name}"),
            Credential::Query(name) => format!("query:{name}"),
            Credential::Other => "other".into(),
            Credential::None => "none".into(),
        }
    }
}

/// Find `key` in a request: the Authorization header first, then any other header's
/// whole value, then any query parameter's whole value.
pub fn find(key: &str, headers: &HeaderMap, query: Option<&str>) -> Credential {
    let mut saw_authorization = false;
    for value in headers.get_all(header::AUTHORIZATION) {
        saw_authorization = true;
        let Ok(text) = value.to_str() else { continue };
        let (scheme, rest) = text.trim().split_once(' ').unwrap_or((text, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") && rest == key {
            return Credential::Bearer;
        }
        if scheme.eq_ignore_ascii_case("basic")
            && let Some((username, password)) = decode_basic(rest)
            && password == key
        {
            return Credential::Basic { username };
        }
    }
    for (name, value) in headers {
        if name != header::AUTHORIZATION && value.as_bytes() == key.as_bytes() {
            return Credential::Header(name.as_str().to_string());
        }
    }
    for (name, value) in query_pairs(query.unwrap_or("")) {
        if value == key {
            return Credential::Query(name);
        }
    }
    if saw_authorization { Credential::Other } else { Credential::None }
}

/// `base64(user:password)` → (user, password).
pub fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// `a=1&b=x%20y` → [(a, 1), (b, x y)]; `+` is a space, bad escapes stay as written.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|c| (*c as char).to_digit(16));
        match b {
            b'+' => out.push(b' '),
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
