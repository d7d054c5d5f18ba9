//! Sign-ins in flight: what the console remembers between sending a browser to the
//! provider and the provider sending it back.
//!
//! Each sign-in gets a random `state` (the key), a `nonce` (checked in the ID token) and
//! a PKCE verifier (RFC 7636, S256), all kept here, never in the browser; the browser
//! gets a short-lived cookie with a random binding, so a callback carrying someone
//! else's `state` (a login-CSRF link) is refused. A state is good for one callback,
//! within [`SIGN_IN_TTL`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

use super::session::{constant_time_eq, random_token};
use crate::error::NodeError;

/// Cookie binding a sign-in to the browser that started it. SameSite=Lax: it must come
/// back on the provider's redirect, a cross-site navigation.
pub const BINDING_COOKIE: &str = "__Host-portcullis-signin";
/// How long a browser has to come back from the provider.
pub const SIGN_IN_TTL: Duration = Duration::from_secs(600);
/// Sign-ins in flight on one node at once.
pub const MAX_PENDING: usize = 1024;

/// What the callback needs of a sign-in.
#[derive(Debug)]
pub struct PendingLogin {
    binding: String,
    pub nonce: String,
    pub verifier: String,
    /// Where to go once signed in (a local path).
    pub next: String,
    started: Instant,
}

/// What starting a sign-in gives the browser and the provider.
#[derive(Debug)]
pub struct StartedLogin {
    pub state: String,
    pub nonce: String,
    /// `BASE64URL(SHA256(verifier))`.
    pub challenge: String,
    /// The binding cookie's value.
    pub binding: String,
}

pub struct PendingLogins {
    /// By state; std mutex, never held across an await.
    map: Mutex<HashMap<String, PendingLogin>>,
    max: usize,
    ttl: Duration,
}

// === impl PendingLogins ===

impl PendingLogins {
    pub fn new(max: usize, ttl: Duration) -> Self {
        PendingLogins { map: Mutex::new(HashMap::new()), max, ttl }
    }

    /// Begin a sign-in that returns to `next`.
    pub fn start(&self, next: &str, now: Instant) -> Result<StartedLogin, NodeError> {
        let (state, nonce, verifier, binding) = (random_token()?, random_token()?, random_token()?, random_token()?);
        let challenge = challenge(&verifier);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let ttl = self.ttl;
        map.retain(|_, p| now.saturating_duration_since(p.started) < ttl);
        // Full: the oldest sign-in gives way. Refusing new ones instead would let anyone
        // who starts sign-ins in a loop lock everyone out for the whole TTL; this way a
        // flood must outrun a person's round trip to the provider (seconds), and memory
        // stays bounded either way.
        while map.len() >= self.max.max(1) {
            let oldest = map.iter().min_by_key(|(_, p)| p.started).map(|(state, _)| state.clone());
            match oldest {
                Some(state) => map.remove(&state),
                None => break,
            };
        }
        let pending = PendingLogin {
            binding: binding.clone(),
            nonce: nonce.clone(),
            verifier,
            next: safe_next(next),
            started: now,
        };
        map.insert(state.clone(), pending);
        Ok(StartedLogin { state, nonce, challenge, binding })
    }

    /// Take the sign-in with `state`, if it was started by the browser holding
    /// `binding` and is still fresh. A state is taken out whatever the outcome.
    pub fn finish(&self, state: &str, binding: Option<&str>, now: Instant) -> Result<PendingLogin, NodeError> {
        let pending = self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(state);
        let Some(pending) = pending else {
            return Err(NodeError::SignIn(
                "this sign-in is unknown or already used (the page was reloaded, or the node restarted); sign in again"
                    .into(),
            ));
        };
        if now.saturating_duration_since(pending.started) >= self.ttl {
            return Err(NodeError::SignIn("the sign-in took too long; sign in again".into()));
        }
        match binding {
            Some(b) if constant_time_eq(b.as_bytes(), pending.binding.as_bytes()) => Ok(pending),
            _ => Err(NodeError::SignIn(
                "this sign-in was started in another browser (or its cookie was blocked); sign in again here".into(),
            )),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The S256 code challenge of `verifier`.
pub fn challenge(verifier: &str) -> String {
    B64URL.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref())
}

/// `next` if it is a path on this console, else `/approvals`: a sign-in never ends on
/// another site (`//evil.example`, `https://…`, `/\evil`).
pub fn safe_next(next: &str) -> String {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control() || c == '\\');
    if local { next.to_string() } else { "/approvals".to_string() }
}

/// `Set-Cookie` for the binding cookie.
pub fn binding_cookie(binding: &str) -> String {
    format!("{BINDING_COOKIE}={binding}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}", SIGN_IN_TTL.as_secs())
}

#[cfg(test)]
mod tests;
