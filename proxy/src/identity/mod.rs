//! Identity: who is asking, from an OIDC token (DESIGN §5).
//!
//! [`Verifier`] holds the provider's signing keys (discovered with `openidconnect`,
//! cached, refreshed on an unknown `kid` at most once per `refresh_min_interval`, and
//! when older than `jwks_max_age`) and checks tokens with [`token::check`], a pure
//! function. If the provider is unreachable the cached keys keep working; with no keys
//! at all every token is refused (fail closed).

mod config;
mod keys;
mod signature;
pub mod token;

pub use config::{DEV_ISSUER_PATH, IdentityConfig};
pub use keys::{KeySet, Verifier};

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    /// The token's `sub`.
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// From the configured groups claim.
    pub groups: Vec<String>,
    pub issuer: String,
    /// `exp`, seconds since the epoch.
    pub expires_at: u64,
}

impl Identity {
    pub fn in_any(&self, groups: &[String]) -> bool {
        self.groups.iter().any(|g| groups.contains(g))
    }
}

#[cfg(test)]
mod tests;
