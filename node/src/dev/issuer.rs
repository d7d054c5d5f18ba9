//! The playground's built-in OIDC issuer. INSECURE: for development only.
//!
//! Serves discovery and JWKS on loopback so nodes verify its tokens exactly as they
//! verify a real provider's; tokens are minted offline by `portcullis dev token` with
//! the ES256 key in the playground directory. Its URL ends with `/portcullis-dev`, and
//! a node trusts it only with `identity.insecure_dev_issuer = true`.

use std::path::Path;

use axum::Router;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use crate::error::NodeError;

pub mod authorize;

const KEY_FILE: &str = "issuer.key";
const INFO_FILE: &str = "issuer.json";

fn dev_err(detail: impl Into<String>) -> NodeError {
    NodeError::Dev(detail.into())
}

/// Where the issuer listens and its URL, kept in `DIR/issuer.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IssuerInfo {
    pub listen: String,
    pub issuer: String,
}

impl IssuerInfo {
    pub fn for_port(port: u16) -> Self {
        IssuerInfo {
            listen: format!("127.0.0.1:{port}"),
            issuer: format!("http://127.0.0.1:{port}{}", portcullis_proxy::identity::DEV_ISSUER_PATH),
        }
    }

    pub fn load(dir: &Path) -> Result<Self, NodeError> {
        let path = dir.join(INFO_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            dev_err(format!("{}: {e} (is {} a `portcullis dev` directory?)", path.display(), dir.display()))
        })?;
        serde_json::from_str(&text).map_err(|e| dev_err(format!("{}: {e}", path.display())))
    }

    pub fn save(&self, dir: &Path) -> Result<(), NodeError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| dev_err(e.to_string()))?;
        std::fs::write(dir.join(INFO_FILE), text).map_err(|e| NodeError::io("write issuer.json", e))
    }
}

/// Create the signing key unless it exists.
pub fn ensure_key(dir: &Path) -> Result<(), NodeError> {
    let path = dir.join(KEY_FILE);
    if path.exists() {
        return Ok(());
    }
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map_err(|_| dev_err("cannot generate the issuer key"))?;
    std::fs::write(&path, B64URL.encode(pkcs8.as_ref())).map_err(|e| NodeError::io("write issuer.key", e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| NodeError::io("chmod issuer.key", e))
}

fn load_key(dir: &Path) -> Result<EcdsaKeyPair, NodeError> {
    let path = dir.join(KEY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| dev_err(format!("{}: {e}", path.display())))?;
    let pkcs8 = B64URL.decode(text.trim()).map_err(|_| dev_err(format!("{}: not base64url", path.display())))?;
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &SystemRandom::new())
        .map_err(|_| dev_err(format!("{}: not an ES256 key", path.display())))
}

/// The public key as a JWK, and its key id.
fn public_jwk(key: &EcdsaKeyPair) -> Result<(Value, String), NodeError> {
    let public = key.public_key().as_ref();
    // Uncompressed point: 0x04 || X (32 bytes) || Y (32 bytes).
    let (x, y) = match (public.get(1..33), public.get(33..65)) {
        (Some(x), Some(y)) => (x, y),
        _ => return Err(dev_err("unexpected public key encoding")),
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, public);
    let kid: String = digest.as_ref().iter().take(8).map(|b| format!("{b:02x}")).collect();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": B64URL.encode(x), "y": B64URL.encode(y),
    });
    Ok((jwk, kid))
}

/// Mint a token for `sub` in `groups`, valid for `ttl`.
pub fn mint(
    dir: &Path,
    sub: &str,
    groups: &[String],
    ttl: std::time::Duration,
    audience: &str,
) -> Result<String, NodeError> {
    mint_at(dir, sub, groups, ttl, audience, std::time::Duration::ZERO)
}

/// As [`mint`], issued `backdate` ago.
pub fn mint_at(
    dir: &Path,
    sub: &str,
    groups: &[String],
    ttl: std::time::Duration,
    audience: &str,
    backdate: std::time::Duration,
) -> Result<String, NodeError> {
    sign(dir, sub, groups, ttl, audience, backdate, json!({}))
}

/// As [`mint`], with `extra` claims (an ID token's `nonce`).
pub fn mint_with(
    dir: &Path,
    sub: &str,
    groups: &[String],
    ttl: std::time::Duration,
    audience: &str,
    extra: Value,
) -> Result<String, NodeError> {
    sign(dir, sub, groups, ttl, audience, std::time::Duration::ZERO, extra)
}

fn sign(
    dir: &Path,
    sub: &str,
    groups: &[String],
    ttl: std::time::Duration,
    audience: &str,
    backdate: std::time::Duration,
    extra: Value,
) -> Result<String, NodeError> {
    let info = IssuerInfo::load(dir)?;
    let key = load_key(dir)?;
    let (_, kid) = public_jwk(&key)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| dev_err("clock before 1970"))?
        .saturating_sub(backdate.as_secs());
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": kid});
    let mut claims = json!({
        "iss": info.issuer, "sub": sub, "aud": audience, "groups": groups,
        "iat": now, "nbf": now, "exp": now + ttl.as_secs(),
    });
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        claims.extend(extra);
    }
    let signing_input = format!("{}.{}", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()));
    let signature = key.sign(&SystemRandom::new(), signing_input.as_bytes()).map_err(|_| dev_err("signing failed"))?;
    Ok(format!("{signing_input}.{}", B64URL.encode(signature.as_ref())))
}

/// Serve discovery, JWKS and the sign-in flow until the process is stopped.
pub async fn serve(dir: &Path) -> Result<(), NodeError> {
    let info = IssuerInfo::load(dir)?;
    let app = router(dir, &info)?;
    let listener = tokio::net::TcpListener::bind(&info.listen).await.map_err(|source| NodeError::Bind {
        what: "dev issuer",
        addr: info.listen.clone(),
        source,
    })?;
    tracing::warn!(issuer = %info.issuer, "development OIDC issuer running: INSECURE, for the playground only");
    axum::serve(listener, app).await.map_err(|e| NodeError::Server(format!("dev issuer: {e}")))
}

/// Discovery, JWKS, and the authorization code flow with PKCE ([`authorize`]).
fn router(dir: &Path, info: &IssuerInfo) -> Result<Router, NodeError> {
    let key = load_key(dir)?;
    let (jwk, _) = public_jwk(&key)?;
    let base = info.issuer.clone();
    let discovery = json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks.json"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "grant_types_supported": ["authorization_code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
    });
    let jwks = json!({"keys": [jwk]});
    let prefix = portcullis_proxy::identity::DEV_ISSUER_PATH;
    let flow = authorize::Flow::new(dir.to_path_buf());
    Ok(Router::new()
        .route(&format!("{prefix}/.well-known/openid-configuration"), get(move || async move { axum::Json(discovery) }))
        .route(&format!("{prefix}/jwks.json"), get(move || async move { axum::Json(jwks) }))
        .route(&format!("{prefix}/authorize"), get(authorize::form).post(authorize::sign_in))
        .route(&format!("{prefix}/token"), post(authorize::token))
        .with_state(flow))
}
