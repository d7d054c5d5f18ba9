//! The provider's signing keys: discovered, cached, refreshed; and the [`Verifier`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreJsonWebKey, CoreJsonWebKeySet, CoreJsonWebKeyType, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{IssuerUrl, JsonWebKey, JsonWebKeyAlgorithm};
use tokio::sync::RwLock;

use super::token::{Checked, check};
use super::{Identity, IdentityConfig};
use crate::error::{Error, Result};

/// A snapshot of the provider's keys and what it allows.
#[derive(Debug, Clone)]
pub struct KeySet {
    pub issuer: String,
    pub keys: Vec<CoreJsonWebKey>,
    /// `keys` decoded for ring, same order (None: ring lacks the type).
    pub prepared: Vec<Option<super::signature::RingKey>>,
    /// Asymmetric algorithms the provider offers (never `none`, never HMAC).
    pub allowed_algs: Vec<CoreJwsSigningAlgorithm>,
    pub fetched_at: Instant,
}

fn is_asymmetric(alg: &CoreJwsSigningAlgorithm) -> bool {
    !matches!(
        alg,
        CoreJwsSigningAlgorithm::HmacSha256
            | CoreJwsSigningAlgorithm::HmacSha384
            | CoreJwsSigningAlgorithm::HmacSha512
            | CoreJwsSigningAlgorithm::None
    )
}

fn alg_name(alg: &CoreJwsSigningAlgorithm) -> String {
    serde_json::to_value(alg).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| format!("{alg:?}"))
}

impl KeySet {
    /// Build from a provider's JWKS and advertised algorithms, narrowed by config.
    pub fn new(
        issuer: String,
        jwks: CoreJsonWebKeySet,
        advertised: &[CoreJwsSigningAlgorithm],
        config: &IdentityConfig,
    ) -> Self {
        let keys: Vec<CoreJsonWebKey> =
            jwks.keys().iter().filter(|k| !matches!(k.key_type(), CoreJsonWebKeyType::Symmetric)).cloned().collect();
        // What the provider offers: its advertised ID-token algorithms plus the
        // algorithms its keys declare (JWT access tokens may use another one).
        let mut allowed: Vec<CoreJwsSigningAlgorithm> = advertised.to_vec();
        for k in &keys {
            if let JsonWebKeyAlgorithm::Algorithm(a) = k.signing_alg()
                && !allowed.contains(a)
            {
                allowed.push(a.clone());
            }
        }
        allowed.retain(is_asymmetric);
        if !config.allowed_algs.is_empty() {
            allowed.retain(|a| config.allowed_algs.iter().any(|c| c.eq_ignore_ascii_case(&alg_name(a))));
        }
        let prepared = keys.iter().map(super::signature::prepare).collect();
        KeySet { issuer, keys, prepared, allowed_algs: allowed, fetched_at: Instant::now() }
    }

    pub fn allowed_alg_names(&self) -> Vec<String> {
        self.allowed_algs.iter().map(alg_name).collect()
    }
}

/// Verifies tokens of one provider. Share it (`Arc`) between the doors and the admin API.
pub struct Verifier {
    config: IdentityConfig,
    http: reqwest::Client,
    keys: RwLock<Option<KeySet>>,
    /// When we last tried to fetch keys; std mutex, never held across an await.
    last_attempt: Mutex<Option<Instant>>,
}

impl Verifier {
    /// A verifier that fetches keys lazily (and in [`refresh`](Self::refresh)).
    pub fn new(config: IdentityConfig) -> Result<Self> {
        config.check().map_err(Error::IdentityConfig)?;
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3));
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca).map_err(|e| Error::IdentityConfig(format!("ca_file {}: {e}", ca.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| Error::IdentityConfig(format!("ca_file {}: {e}", ca.display())))?;
            http = http.add_root_certificate(cert);
        }
        let http = http.build().map_err(|e| Error::IdentityConfig(format!("http client: {e}")))?;
        Ok(Verifier { config, http, keys: RwLock::new(None), last_attempt: Mutex::new(None) })
    }

    /// A verifier with fixed keys (tests, benchmarks): never fetches.
    pub fn with_keys(config: IdentityConfig, keys: KeySet) -> Self {
        let http = reqwest::Client::new();
        Verifier { config, http, keys: RwLock::new(Some(keys)), last_attempt: Mutex::new(Some(Instant::now())) }
    }

    pub fn config(&self) -> &IdentityConfig {
        &self.config
    }

    /// Fetch discovery and keys now. On failure the cached keys stay in use.
    pub async fn refresh(&self) -> Result<()> {
        if let Ok(mut last) = self.last_attempt.lock() {
            *last = Some(Instant::now());
        }
        let issuer_url = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| Error::IdentityConfig(format!("issuer {}: {e}", self.config.issuer)))?;
        let unavailable = |detail: String| Error::IdentityUnavailable { issuer: self.config.issuer.clone(), detail };
        let metadata = CoreProviderMetadata::discover_async(issuer_url, &self.http)
            .await
            .map_err(|e| unavailable(error_chain(&e)))?;
        let set = KeySet::new(
            self.config.issuer.clone(),
            metadata.jwks().clone(),
            metadata.id_token_signing_alg_values_supported(),
            &self.config,
        );
        if set.keys.is_empty() {
            return Err(unavailable("the provider publishes no public signing keys".into()));
        }
        tracing::info!(issuer = %self.config.issuer, keys = set.keys.len(), algs = ?set.allowed_alg_names(), "identity provider keys loaded");
        *self.keys.write().await = Some(set);
        Ok(())
    }

    /// Whether a refetch is allowed now (rate limit).
    fn may_refresh(&self) -> bool {
        let min = Duration::from_secs(self.config.refresh_min_interval_secs);
        match self.last_attempt.lock() {
            Ok(last) => last.is_none_or(|t| t.elapsed() >= min),
            Err(_) => false,
        }
    }

    /// Verify `token` and return who it names.
    pub async fn verify(&self, token: &str) -> Result<Identity> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let stale = {
            let keys = self.keys.read().await;
            match keys.as_ref() {
                None => true,
                Some(k) => k.fetched_at.elapsed() >= Duration::from_secs(self.config.jwks_max_age_secs),
            }
        };
        if stale
            && self.may_refresh()
            && let Err(e) = self.refresh().await
        {
            tracing::warn!(error = %e, "identity provider refresh failed; using cached keys if any");
        }
        let first = self.check_cached(token, now).await?;
        let kid = match first {
            Checked::Valid(identity) => return Ok(identity),
            Checked::UnknownKey { kid } => kid,
        };
        // Maybe the provider rotated its keys: refetch once (rate-limited), then retry.
        if self.may_refresh() {
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "identity provider refresh for unknown key failed");
            }
            if let Checked::Valid(identity) = self.check_cached(token, now).await? {
                return Ok(identity);
            }
        }
        Err(Error::rejected(match kid {
            Some(kid) => format!("signed by unknown key {kid} (not among the provider's current keys)"),
            None => "token has no kid and no single one of the provider's keys fits it".into(),
        }))
    }

    async fn check_cached(&self, token: &str, now: u64) -> Result<Checked> {
        let keys = self.keys.read().await;
        let Some(keys) = keys.as_ref() else {
            return Err(Error::IdentityUnavailable {
                issuer: self.config.issuer.clone(),
                detail: "no signing keys fetched yet; every token is refused until the provider answers".into(),
            });
        };
        check(keys, &self.config, token, now)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
