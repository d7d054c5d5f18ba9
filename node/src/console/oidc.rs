//! The console as an OIDC client of the node's provider (`[identity] issuer`): a
//! public client using the authorization code flow with PKCE.
//!
//! Discovery (`<issuer>/.well-known/openid-configuration`) is fetched on the first
//! sign-in and kept once it answers; its `issuer` must be the configured one. The code
//! is traded at the token endpoint with the verifier; the ID token's `nonce` must be the
//! one this sign-in sent. Tokens are verified afterwards by the node's verifier, as
//! every door verifies them.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use portcullis_proxy::identity::IdentityConfig;
use serde::Deserialize;
use tokio::sync::RwLock;

use super::pkce::StartedLogin;
use super::session::constant_time_eq;
use crate::error::NodeError;

/// The provider's endpoints the console uses.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
}

/// What the token endpoint answers (tokens are never printed).
#[derive(Deserialize)]
pub struct Tokens {
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

pub struct OidcClient {
    issuer: String,
    client_id: String,
    redirect_uri: String,
    /// Space-separated, `openid` among them.
    scopes: String,
    /// RFC 8707 resource indicator, if the provider needs one to issue a JWT access
    /// token for the gateway.
    resource: Option<String>,
    http: reqwest::Client,
    /// Discovery, once the provider answered.
    discovery: RwLock<Option<Discovery>>,
}

fn err(detail: impl Into<String>) -> NodeError {
    NodeError::SignIn(detail.into())
}

// === impl OidcClient ===

impl OidcClient {
    /// A client of `identity`'s issuer, registered as `client_id`, for the console at
    /// `public_url`, asking for `scopes`.
    pub fn new(identity: &IdentityConfig, client_id: &str, public_url: &str, scopes: &str) -> Result<Self, NodeError> {
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5));
        if let Some(ca) = &identity.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| NodeError::io(format!("read identity.ca_file {}", ca.display()), e))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| NodeError::Server(format!("identity.ca_file {}: {e}", ca.display())))?;
            http = http.add_root_certificate(cert);
        }
        let http = http.build().map_err(|e| NodeError::Server(format!("console: HTTP client: {e}")))?;
        Ok(OidcClient {
            issuer: identity.issuer.trim_end_matches('/').to_string(),
            client_id: client_id.to_string(),
            redirect_uri: format!("{}/auth/callback", public_url.trim_end_matches('/')),
            scopes: scopes.split_whitespace().collect::<Vec<_>>().join(" "),
            resource: None,
            http,
            discovery: RwLock::new(None),
        })
    }

    /// Ask for `resource` (RFC 8707) at sign-in and at the code exchange; empty: none.
    pub fn with_resource(mut self, resource: &str) -> Self {
        self.resource = Some(resource.trim().to_string()).filter(|r| !r.is_empty());
        self
    }

    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    async fn discovery(&self) -> Result<Discovery, NodeError> {
        if let Some(d) = self.discovery.read().await.as_ref() {
            return Ok(d.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let unreachable = |e: String| err(format!("cannot reach the identity provider at {url}: {e}"));
        let response = self.http.get(&url).send().await.map_err(|e| unreachable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unreachable(format!("it answered {}", response.status())));
        }
        let body = response.bytes().await.map_err(|e| unreachable(e.to_string()))?;
        let found: Discovery = serde_json::from_slice(&body)
            .map_err(|e| err(format!("the identity provider's discovery document at {url} is not usable: {e}")))?;
        if found.issuer.trim_end_matches('/') != self.issuer {
            return Err(err(format!(
                "the identity provider at {url} calls itself {}, not {} (check [identity] issuer)",
                found.issuer, self.issuer
            )));
        }
        *self.discovery.write().await = Some(found.clone());
        Ok(found)
    }

    /// Where to send the browser for `login`.
    pub async fn authorize_url(&self, login: &StartedLogin) -> Result<String, NodeError> {
        let endpoint = self.discovery().await?.authorization_endpoint;
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("scope", self.scopes.as_str()),
            ("state", login.state.as_str()),
            ("nonce", login.nonce.as_str()),
            ("code_challenge", login.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        if let Some(resource) = &self.resource {
            params.push(("resource", resource.as_str()));
        }
        let url = reqwest::Url::parse_with_params(&endpoint, &params)
            .map_err(|e| err(format!("the provider's authorization endpoint {endpoint:?} is not a URL: {e}")))?;
        Ok(url.into())
    }

    /// Trade `code` and its PKCE `verifier` for tokens; the ID token must carry `nonce`.
    pub async fn exchange(&self, code: &str, verifier: &str, nonce: &str) -> Result<Tokens, NodeError> {
        let endpoint = self.discovery().await?.token_endpoint;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("client_id", self.client_id.as_str()),
            ("code_verifier", verifier),
        ];
        if let Some(resource) = &self.resource {
            form.push(("resource", resource.as_str()));
        }
        let response = self
            .http
            .post(&endpoint)
            .form(&form)
            .send()
            .await
            .map_err(|e| err(format!("cannot reach the provider's token endpoint {endpoint}: {e}")))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| err(format!("token endpoint {endpoint}: {e}")))?;
        if !status.is_success() {
            let reason = serde_json::from_slice::<TokenError>(&body)
                .map(|e| format!("{}: {}", e.error, e.error_description))
                .unwrap_or_else(|_| status.to_string());
            return Err(err(format!("the provider refused the sign-in code ({reason}); sign in again")));
        }
        let tokens: Tokens = serde_json::from_slice(&body)
            .map_err(|e| err(format!("the token endpoint's answer is not usable: {e}")))?;
        let Some(id_token) = tokens.id_token.as_deref() else {
            return Err(err("the provider returned no ID token (is the `openid` scope allowed for the console?)"));
        };
        check_nonce(id_token, nonce)?;
        Ok(tokens)
    }
}

/// The ID token must carry this sign-in's nonce: a token made for another sign-in (a
/// replay) is refused. Only the claim is read here; the verifier checks the signature
/// when the ID token is what the console uses.
pub fn check_nonce(id_token: &str, nonce: &str) -> Result<(), NodeError> {
    let refused = |why: &str| err(format!("the ID token {why}; sign in again"));
    let claims = id_token.split('.').nth(1).ok_or_else(|| refused("is not a JWT"))?;
    let claims = B64URL.decode(claims.trim_end_matches('=')).map_err(|_| refused("is not a JWT"))?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).map_err(|_| refused("is not a JWT"))?;
    match claims.get("nonce").and_then(|n| n.as_str()) {
        Some(n) if constant_time_eq(n.as_bytes(), nonce.as_bytes()) => Ok(()),
        Some(_) => Err(refused("was issued for another sign-in (nonce mismatch)")),
        None => Err(refused("has no nonce")),
    }
}

#[cfg(test)]
mod tests;
