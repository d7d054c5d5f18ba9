//! The console's static files, all embedded in the binary: its own script
//! (`/assets/console.js`) and the third-party ones from the npm registry
//! (`/assets/vendor/<name>`: htmx, its SSE extension, asciinema-player), which
//! `node/build.rs` embeds as pinned in `node/assets/vendor.lock`. Nothing is loaded from
//! the internet at run time.
//!
//! Vendored names carry their version, so browsers may keep them for a year. A build
//! made without `scripts/install-deps.sh` has none of them: the pages still work
//! without JavaScript, and those files answer 404 saying how to get them.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One third-party file, as pinned in `vendor.lock`.
pub struct VendorAsset {
    /// What templates call it (`htmx`, `htmx-sse`, `player-js`, `player-css`).
    pub key: &'static str,
    pub package: &'static str,
    pub version: &'static str,
    /// Its file name under `/assets/vendor/` (with the version).
    pub name: &'static str,
    /// Its contents; `None` when the build did not find it.
    pub bytes: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/vendor.rs"));

/// Cache-Control of the versioned third-party files.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

const CONSOLE_JS: &str = include_str!("../../assets/console.js");

/// Whether the missing assets were logged already (once per process is enough).
static MISSING_LOGGED: AtomicBool = AtomicBool::new(false);

/// The URL of vendored file `key` (for templates).
pub fn url(key: &str) -> String {
    VENDOR.iter().find(|a| a.key == key).map(|a| format!("/assets/vendor/{}", a.name)).unwrap_or_default()
}

/// `Content-Type` by file name.
fn content_type(name: &str) -> &'static str {
    if name.ends_with(".js") {
        "text/javascript; charset=utf-8"
    } else if name.ends_with(".css") {
        "text/css; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// `GET /assets/vendor/{name}`.
pub async fn vendor(Path(name): Path<String>) -> Response {
    let Some(asset) = VENDOR.iter().find(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    match asset.bytes {
        Some(bytes) => ([(header::CONTENT_TYPE, content_type(asset.name)), (header::CACHE_CONTROL, IMMUTABLE)], bytes)
            .into_response(),
        None => {
            if !MISSING_LOGGED.swap(true, Ordering::Relaxed) {
                let missing: Vec<&str> = VENDOR.iter().filter(|a| a.bytes.is_none()).map(|a| a.name).collect();
                tracing::warn!(
                    missing = %missing.join(", "),
                    "console: this build has no third-party browser assets (live updates and replay are off); run scripts/install-deps.sh and rebuild"
                );
            }
            let message = format!(
                "{} ({}@{}) is not in this build of portcullis: run scripts/install-deps.sh, which fetches it from the npm registry, then rebuild. The console works without it, but without live updates or replay.\n",
                asset.name, asset.package, asset.version
            );
            (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message).into_response()
        }
    }
}

/// `GET /assets/console.js`.
pub async fn console_js() -> Response {
    ([(header::CONTENT_TYPE, content_type("console.js")), (header::CACHE_CONTROL, "public, max-age=3600")], CONSOLE_JS)
        .into_response()
}

#[cfg(test)]
mod tests;
