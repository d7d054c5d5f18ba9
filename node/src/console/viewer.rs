//! The signed-in user of a request: an axum extractor over the session cookie.
//!
//! A request without a live session is sent to sign in, and comes back to where it was
//! going once signed in.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};

use super::Console;
use super::session::{BrowserSession, COOKIE_NAME, cookie, now_secs};
use super::views::{Frame, User};

pub struct Viewer {
    /// The cookie's session id (to end the session).
    pub cookie_id: String,
    pub session: Arc<BrowserSession>,
    /// The path (and query) asked for, to come back to after signing in again.
    pub path: String,
}

impl FromRequestParts<Console> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Self::Rejection> {
        let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
        if let Some(id) = cookie(&parts.headers, COOKIE_NAME)
            && let Some(session) = console.sessions().get(id, now_secs())
        {
            return Ok(Viewer { cookie_id: id.to_string(), session, path });
        }
        Err(Redirect::to(&sign_in_path(&path)).into_response())
    }
}

impl Viewer {
    /// The layout of a page titled `title`, under nav entry `active`.
    pub fn frame(&self, console: &Console, title: impl Into<String>, active: &'static str) -> Frame {
        Frame {
            title: title.into(),
            node_id: console.deps().node_id,
            serving: console.serving(),
            user: Some(User { subject: self.session.subject.clone(), csrf: self.session.csrf.clone() }),
            active,
            refresh: None,
        }
    }
}

/// The layout of a page for nobody signed in.
pub fn anonymous_frame(console: &Console, title: impl Into<String>) -> Frame {
    Frame {
        title: title.into(),
        node_id: console.deps().node_id,
        serving: console.serving(),
        user: None,
        active: "",
        refresh: None,
    }
}

/// `/auth/sign-in?next=<path>`.
pub fn sign_in_path(next: &str) -> String {
    format!("/auth/sign-in?next={}", percent_encode(next))
}

/// Percent-encode everything but RFC 3986's unreserved characters.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
