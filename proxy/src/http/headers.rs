//! Headers between client and backend: hop-by-hop ones never cross, the client's
//! credentials never reach the backend, and the request's framing must be unambiguous.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Connection-level headers (RFC 9110 §7.6.1), plus the ones the gateway owns.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Remove hop-by-hop headers, and every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names before any removal.
    if !headers.keys().any(|name| is_hop_by_hop(name.as_str())) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
}

/// What the backend gets: the client's headers without hop-by-hop ones and without its
/// `Authorization` (the gateway's), with `Host` set to the backend and the
/// `X-Forwarded-*` headers saying who asked.
pub fn for_backend(client: &HeaderMap, backend_host: &str, client_addr: &str, client_host: Option<&str>) -> HeaderMap {
    // Headers the `Connection` header names are hop-by-hop too.
    let named: Vec<&str> = client
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut headers = HeaderMap::with_capacity(client.len() + 4);
    for (name, value) in client {
        let n = name.as_str();
        let dropped =
            is_hop_by_hop(n) || NOT_FOR_BACKEND.contains(&n) || named.iter().any(|c| c.eq_ignore_ascii_case(n));
        if !dropped {
            headers.append(name.clone(), value.clone());
        }
    }
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    set("host", backend_host);
    set("x-forwarded-for", client_addr);
    set("x-forwarded-proto", "https");
    if let Some(host) = client_host {
        set("x-forwarded-host", host);
    }
    headers
}

/// Client headers the backend never gets (besides hop-by-hop ones): the client's
/// credential (the gateway's), which approval a repeated request uses (the gateway's
/// own), `Host` and `Content-Length` (set for the backend), and whatever the client
/// claims about itself (replaced, never appended to).
const NOT_FOR_BACKEND: &[&str] = &[
    "authorization",
    super::deferred::APPROVAL_HEADER,
    "host",
    "content-length",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-real-ip",
];

/// Why a request's framing is ambiguous (a smuggling attempt or a broken client), if it
/// is: both `Content-Length` and `Transfer-Encoding`, several `Content-Length` values,
/// or a `Transfer-Encoding` other than a lone `chunked`.
pub fn ambiguous_framing(headers: &HeaderMap) -> Option<&'static str> {
    let lengths: Vec<&HeaderValue> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    let encodings: Vec<&HeaderValue> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    if !lengths.is_empty() && !encodings.is_empty() {
        return Some("both Content-Length and Transfer-Encoding");
    }
    if lengths.len() > 1 {
        return Some("more than one Content-Length");
    }
    if let Some(v) = lengths.first()
        && (v.to_str().map_or(true, |s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit())))
    {
        return Some("a Content-Length that is not a number");
    }
    match encodings.as_slice() {
        [] => None,
        [one] if one.to_str().is_ok_and(|s| s.trim().eq_ignore_ascii_case("chunked")) => None,
        _ => Some("a Transfer-Encoding other than chunked"),
    }
}

/// Headers whose values are credentials: recorded as `***`, never as they are.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie", "set-cookie"];

/// How many bytes of headers (names and values) one record keeps; the rest is cut, and
/// the record says how many were left out.
pub const RECORD_MAX_BYTES: usize = 8 * 1024;

/// What the client must never see of the resource's credential: each occurrence in a
/// response header's value (an echoing API) becomes `***`. A value that is not text and
/// holds a secret is dropped.
pub fn scrub_secrets(headers: &mut HeaderMap, secrets: &[String]) {
    let secrets: Vec<&String> = secrets.iter().filter(|s| s.len() >= 4).collect();
    if secrets.is_empty() {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().cloned().collect();
    for name in names {
        let values: Vec<HeaderValue> = headers.get_all(&name).iter().cloned().collect();
        if !values.iter().any(|v| secrets.iter().any(|s| contains(v.as_bytes(), s.as_bytes()))) {
            continue;
        }
        headers.remove(&name);
        for value in values {
            let Ok(text) = value.to_str() else { continue };
            let mut text = text.to_string();
            for secret in &secrets {
                text = text.replace(secret.as_str(), "***");
            }
            if let Ok(v) = HeaderValue::from_str(&text) {
                headers.append(name.clone(), v);
            }
        }
    }
}

/// Whether `needle` occurs in `haystack` (never for an empty needle).
pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Headers for an audit record: credential headers' values hidden, every value masked by
/// the judgement's detectors and the resource's secrets, at most [`RECORD_MAX_BYTES`].
pub fn for_record(headers: &HeaderMap, masks: &crate::mask::MaskPlan, secrets: &[String]) -> Vec<(String, String)> {
    let mut kept = Vec::new();
    let mut bytes = 0usize;
    let mut left_out = 0usize;
    for (name, value) in headers {
        let value = if CREDENTIAL_HEADERS.contains(&name.as_str()) {
            "***".to_string()
        } else {
            let mut text = String::from_utf8_lossy(value.as_bytes()).into_owned();
            for secret in secrets.iter().filter(|s| s.len() >= 4) {
                if text.contains(secret.as_str()) {
                    text = text.replace(secret.as_str(), "***");
                }
            }
            masks.detect(&text).unwrap_or(text)
        };
        let size = name.as_str().len() + value.len();
        if bytes + size > RECORD_MAX_BYTES {
            left_out += 1;
            continue;
        }
        bytes += size;
        kept.push((name.as_str().to_string(), value));
    }
    if left_out > 0 {
        kept.push(("portcullis-left-out".to_string(), format!("{left_out} headers past {RECORD_MAX_BYTES} bytes")));
    }
    kept
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use http::header::{HeaderMap, HeaderValue};

    use super::{ambiguous_framing, for_backend, for_record, scrub_secrets};
    use crate::mask::{Detector, MaskPlan};

    fn map(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_backend_never_gets_the_clients_credentials_or_hop_by_hop_headers() {
        let client = map(&[
            ("authorization", "Bearer client-token"),
            ("connection", "close, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("x-forwarded-for", "6.6.6.6"),
            ("accept", "application/json"),
            ("accept", "text/plain"),
            ("portcullis-approval", "a1"),
            ("host", "gateway"),
        ]);
        let h = for_backend(&client, "api.internal:8080", "10.0.0.9", Some("gateway"));
        assert_eq!(h.get_all("accept").iter().count(), 2, "repeated headers all pass");
        assert!(h.get("portcullis-approval").is_none());
        assert!(h.get("authorization").is_none() && h.get("x-secret-hop").is_none() && h.get("connection").is_none());
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.9");
        assert_eq!(h.get("host").unwrap(), "api.internal:8080");
        assert_eq!(h.get("accept").unwrap(), "application/json");
    }

    #[test]
    fn ambiguous_framing_is_named() {
        assert!(ambiguous_framing(&map(&[("content-length", "5"), ("transfer-encoding", "chunked")])).is_some());
        assert!(ambiguous_framing(&map(&[("content-length", "5"), ("content-length", "6")])).is_some());
        assert!(ambiguous_framing(&map(&[("content-length", "+5")])).is_some());
        assert!(ambiguous_framing(&map(&[("transfer-encoding", "gzip, chunked")])).is_some());
        assert!(ambiguous_framing(&map(&[("transfer-encoding", "chunked")])).is_none());
        assert!(ambiguous_framing(&map(&[("content-length", "12")])).is_none());
    }

    #[test]
    fn recorded_headers_hide_credentials_and_mask_values_and_are_bounded() {
        let h = map(&[
            ("authorization", "Bearer client-token"),
            ("cookie", "sid=abc"),
            ("x-contact", "ada@example.com"),
            ("x-echo", "key backend-key-123 seen"),
        ]);
        let kept = for_record(&h, &MaskPlan::new(vec![], vec![Detector::Email]), &["backend-key-123".into()]);
        let text = format!("{kept:?}");
        assert!(!text.contains("client-token") && !text.contains("sid=abc"), "{text}");
        assert!(kept.contains(&("authorization".into(), "***".into())), "{text}");
        assert!(kept.contains(&("x-contact".into(), "a***@example.com".into())), "{text}");
        assert!(kept.contains(&("x-echo".into(), "key *** seen".into())), "{text}");
        let many: Vec<(&'static str, String)> = (0..200).map(|_| ("x-filler", "y".repeat(100))).collect();
        let mut big = HeaderMap::new();
        for (k, v) in &many {
            big.append(*k, HeaderValue::from_str(v).unwrap());
        }
        let kept = for_record(&big, &MaskPlan::default(), &[]);
        let bytes: usize = kept.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(bytes <= super::RECORD_MAX_BYTES + 100, "{bytes}");
        assert_eq!(kept.last().unwrap().0, "portcullis-left-out");
    }

    #[test]
    fn the_resource_credential_never_reaches_the_client_in_a_response_header() {
        let mut h = map(&[("x-echo-auth", "Bearer backend-key-123"), ("content-type", "application/json")]);
        scrub_secrets(&mut h, &["backend-key-123".into()]);
        assert_eq!(h["x-echo-auth"], "Bearer ***");
        assert_eq!(h["content-type"], "application/json");
    }
}
