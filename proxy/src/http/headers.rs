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

/// What the backend gets: the client's headers without hop-by-hop ones, its
/// `Authorization` and cookies for the gateway, with `Host` set to the backend and the
/// `X-Forwarded-*` headers saying who asked.
pub fn for_backend(client: &HeaderMap, backend_host: &str, client_addr: &str, client_host: Option<&str>) -> HeaderMap {
    let mut headers = client.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::AUTHORIZATION);
    // The gateway's own: which approval a repeated request uses.
    headers.remove(super::deferred::APPROVAL_HEADER);
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    // Whatever the client claims about itself is replaced, never appended to.
    for name in ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "x-real-ip"] {
        headers.remove(name);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use http::header::{HeaderMap, HeaderValue};

    use super::{ambiguous_framing, for_backend};

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
            ("host", "gateway"),
        ]);
        let h = for_backend(&client, "api.internal:8080", "10.0.0.9", Some("gateway"));
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
}
