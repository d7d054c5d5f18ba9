//! The security headers of every console response.
//!
//! The CSP allows nothing but the console's own files: no inline script or style, no
//! framing, forms only to the console itself. Pages are never cached (they show who is
//! signed in and what waits); the stylesheet sets its own `Cache-Control`. The session
//! page sets its own CSP (it replays terminals with WebAssembly), which is kept.

use axum::http::{HeaderValue, header};
use axum::response::Response;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// The session page's CSP: the same, but scripts may compile WebAssembly. The
/// asciinema-player (3.18) that replays recorded terminals there parses the terminal
/// stream with a WebAssembly module it instantiates at run time, which `script-src 'self'`
/// forbids (Chromium blocks `WebAssembly.instantiate` without `'wasm-unsafe-eval'`).
/// `'wasm-unsafe-eval'` allows compiling WebAssembly only, not JavaScript `eval`, and
/// only on the one page that replays, so every other page keeps the strict policy.
pub const SESSION_PAGE_CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// Add the security headers to `response` (an axum `map_response` layer).
pub async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    // A handler may set a CSP of its own (the session page's, above); every other
    // response gets the strict one.
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
