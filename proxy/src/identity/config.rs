//! Identity settings of a node (`[identity]` in its TOML).

use serde::{Deserialize, Serialize};

/// Path suffix of the built-in development issuer's URL. A node refuses to trust an
/// issuer whose URL ends with it unless `insecure_dev_issuer` is set.
pub const DEV_ISSUER_PATH: &str = "/portcullis-dev";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// The provider's issuer URL, exactly as in its tokens' `iss`.
    pub issuer: String,
    /// Accepted audiences: a token's `aud` must contain one of them.
    pub audiences: Vec<String>,
    /// Claim holding the caller's groups; dots walk nested objects (`realm_access.roles`).
    pub groups_claim: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub skew_secs: u64,
    /// Refetch keys when the cached set is older than this.
    pub jwks_max_age_secs: u64,
    /// At most one refetch per this interval (unknown `kid`s cannot force a storm).
    pub refresh_min_interval_secs: u64,
    /// Tokens longer than this are refused unparsed.
    pub max_token_bytes: usize,
    /// Signing algorithms to accept; empty means "what the provider advertises".
    pub allowed_algs: Vec<String>,
    /// PEM file of a CA to trust for an https issuer with a private CA.
    pub ca_file: Option<std::path::PathBuf>,
    /// Must be true to trust `portcullis dev`'s built-in issuer.
    pub insecure_dev_issuer: bool,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            issuer: String::new(),
            audiences: vec!["portcullis".into()],
            groups_claim: "groups".into(),
            skew_secs: 30,
            jwks_max_age_secs: 300,
            refresh_min_interval_secs: 5,
            max_token_bytes: 16 * 1024,
            allowed_algs: vec![],
            ca_file: None,
            insecure_dev_issuer: false,
        }
    }
}

impl IdentityConfig {
    /// Whether the issuer is `portcullis dev`'s built-in one.
    pub fn is_dev_issuer(&self) -> bool {
        self.issuer.trim_end_matches('/').ends_with(DEV_ISSUER_PATH)
    }

    /// Problems an operator must fix before the node may start.
    pub fn check(&self) -> Result<(), String> {
        if self.issuer.is_empty() {
            return Err("identity.issuer is empty: set the OIDC issuer URL".into());
        }
        if !(self.issuer.starts_with("https://") || self.issuer.starts_with("http://")) {
            return Err(format!("identity.issuer {:?} is not an http(s) URL", self.issuer));
        }
        if self.audiences.is_empty() {
            return Err("identity.audiences is empty: tokens for any service would be accepted".into());
        }
        if self.is_dev_issuer() && !self.insecure_dev_issuer {
            return Err(format!(
                "identity.issuer {} is the built-in development issuer; set identity.insecure_dev_issuer = true to trust it (never in production)",
                self.issuer
            ));
        }
        for alg in &self.allowed_algs {
            let a = alg.to_ascii_uppercase();
            if a == "NONE" || a.starts_with("HS") {
                return Err(format!("identity.allowed_algs: {alg} is never accepted"));
            }
        }
        Ok(())
    }
}
