//! Browser sessions: who is signed in, kept on the server.
//!
//! The cookie `__Host-portcullis` holds only a random id (HttpOnly, Secure,
//! SameSite=Strict, Path=/); the token, the identity and the CSRF token stay in a
//! bounded map on this node, and a session ends when its token expires. Sessions are
//! per node: a browser signs in to each node's console it uses.
//!
//! CSRF: every state-changing form carries the session's CSRF token in a hidden field,
//! compared in constant time ([`BrowserSession::csrf_matches`]); with SameSite=Strict
//! this is the second lock on the door.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use tokio_util::sync::CancellationToken;

use crate::error::NodeError;

/// Name of the session cookie (`__Host-`: the browser only accepts it Secure, with
/// Path=/ and without Domain, so no other host can set or read it).
pub const COOKIE_NAME: &str = "__Host-portcullis";
/// Signed-in browsers one node keeps at once.
pub const MAX_SESSIONS: usize = 4096;

/// A bearer token; never printed.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(token: String) -> Self {
        Token(token)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// One signed-in browser.
#[derive(Debug)]
pub struct BrowserSession {
    /// What the console presents to the admin service for this user.
    pub token: Token,
    pub subject: String,
    pub groups: Vec<String>,
    /// The hidden form field every state change must carry.
    pub csrf: String,
    /// When the token expires (seconds since the epoch); the session ends with it.
    pub expires_at: u64,
    /// Cancelled when the session ends early (sign-out, a refused token), so its live
    /// streams close at once rather than at their next event.
    pub ended: CancellationToken,
    /// How many live streams (`/approvals/events`) this session has open.
    streams: AtomicUsize,
}

impl BrowserSession {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| constant_time_eq(p.as_bytes(), self.csrf.as_bytes()))
    }
}

/// How many live streams one browser session may hold open (a few tabs).
pub const MAX_STREAMS_PER_SESSION: usize = 4;

/// One of a session's live streams; dropping it (the browser went away, the stream
/// ended) frees its place.
pub struct StreamPermit(Arc<BrowserSession>);

// === impl StreamPermit ===

impl StreamPermit {
    /// A place for one more stream of `session`, if it has fewer than `max` open.
    pub fn take(session: &Arc<BrowserSession>, max: usize) -> Option<StreamPermit> {
        session
            .streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| StreamPermit(session.clone()))
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The server-side sessions of one node, keyed by a digest of the cookie's id (so a
/// lookup's timing says nothing about stored ids).
pub struct Sessions {
    /// std mutex: held for a map operation only, never across an await.
    map: Mutex<HashMap<[u8; 32], Arc<BrowserSession>>>,
    max: usize,
}

// === impl Sessions ===

impl Sessions {
    pub fn new(max: usize) -> Self {
        Sessions { map: Mutex::new(HashMap::new()), max }
    }

    /// Start a session; returns the cookie's id. Expired sessions are dropped first;
    /// past the bound a new one is refused.
    pub fn create(
        &self,
        token: Token,
        subject: String,
        groups: Vec<String>,
        expires_at: u64,
        now: u64,
    ) -> Result<(String, Arc<BrowserSession>), NodeError> {
        let id = random_token()?;
        let session = Arc::new(BrowserSession {
            token,
            subject,
            groups,
            csrf: random_token()?,
            expires_at,
            ended: CancellationToken::new(),
            streams: AtomicUsize::new(0),
        });
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max {
            map.retain(|_, s| {
                let live = s.expires_at > now;
                if !live {
                    s.ended.cancel();
                }
                live
            });
        }
        if map.len() >= self.max {
            return Err(NodeError::SignIn(format!(
                "this node's console has {} signed-in browsers, its limit; try again later or use another node",
                self.max
            )));
        }
        map.insert(digest(&id), session.clone());
        Ok((id, session))
    }

    /// The live session with cookie id `id`; an expired one is removed.
    pub fn get(&self, id: &str, now: u64) -> Option<Arc<BrowserSession>> {
        let key = digest(id);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let session = map.get(&key)?.clone();
        if session.expires_at <= now {
            map.remove(&key);
            session.ended.cancel();
            return None;
        }
        Some(session)
    }

    /// End the session with cookie id `id` (sign-out, or a token the node refused).
    pub fn remove(&self, id: &str) {
        let removed = self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(&digest(id));
        if let Some(session) = removed {
            session.ended.cancel();
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn digest(id: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// 32 random bytes, base64url: session ids, CSRF tokens, state, nonce, PKCE verifiers.
pub fn random_token() -> Result<String, NodeError> {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| NodeError::SignIn("the system has no randomness to offer".into()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Equality whose time depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// `Set-Cookie` for the session cookie, living as long as the token (`max_age` s).
pub fn session_cookie(id: &str, max_age: u64) -> String {
    format!("{COOKIE_NAME}={id}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}")
}

/// `Set-Cookie` that removes cookie `name`.
pub fn clear_cookie(name: &str) -> String {
    format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests;
