//! `portcullis login`: sign a person in with the OAuth 2.0 device authorization grant
//! (RFC 8628) and cache the resulting access token for the client commands.
//!
//! 1. Discovery: `GET {issuer}/.well-known/openid-configuration` gives the
//!    `device_authorization_endpoint` and the `token_endpoint`.
//! 2. Device authorization request: `client_id` (or HTTP basic auth with `--client-secret`),
//!    `scope`, optionally `resource` (RFC 8707).
//! 3. The person is told, on stderr, where to go and which code to enter.
//! 4. The token endpoint is polled with the device code, honouring `interval`,
//!    `authorization_pending` and `slow_down` (+5 s); `expired_token` and `access_denied`
//!    end the login with an error (exit 1).
//! 5. The access token (a JWT access token: the gateway verifies JWTs only) is written to
//!    the [token cache](cache_path) as JSON `{issuer, access_token, expires_at}` (Unix
//!    seconds, or null when unknown), mode 0600.
//!
//! The token is never printed or logged; [`cached_token`] hands it to the client commands
//! when neither `--token` nor `PORTCULLIS_TOKEN` is given.
//!
//! Plain `http://` is accepted only for loopback issuers (development providers); anything
//! else must use https. The global `--ca` (`PORTCULLIS_CA`) is trusted for the provider's
//! TLS in addition to the built-in roots.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CliError, Globals};

/// `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628 §3.4).
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Polling interval when the provider names none (RFC 8628 §3.2).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Added to the interval on every `slow_down` (RFC 8628 §3.5).
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// Upper bound of the back-off after transport errors.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long to wait when the provider gives no `expires_in` for the device code.
const DEFAULT_CODE_LIFETIME: Duration = Duration::from_secs(600);
/// A cached token this close to its expiry counts as expired.
const EXPIRY_SKEW_SECS: u64 = 10;

/// Flags of `portcullis login`.
#[derive(clap::Args, Debug, Clone)]
pub struct LoginArgs {
    /// OIDC issuer URL of the organisation's provider, e.g. https://login.example.com.
    #[arg(long)]
    pub issuer: String,
    /// OAuth client registered at the provider for the device flow.
    #[arg(long)]
    pub client_id: String,
    /// Secret of a confidential client (sent with HTTP basic auth); public clients have none.
    #[arg(long, env = "PORTCULLIS_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// Scopes to request.
    #[arg(long, default_value = "openid")]
    pub scope: String,
    /// Resource indicator (RFC 8707) naming the gateway at the provider, if it needs one.
    #[arg(long)]
    pub resource: Option<String>,
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// A malformed flag or environment (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The provider could not be reached.
    #[error("cannot reach {url}: {detail}")]
    Connect { url: String, detail: String },
    /// The provider refused the request or answered something unusable.
    #[error("{0}")]
    Provider(String),
    /// The person denied the request at the provider.
    #[error("sign-in was denied at the provider (access_denied{detail}); run portcullis login again to retry")]
    Denied { detail: String },
    /// The device code expired before the person finished.
    #[error("the sign-in code expired before sign-in was completed (expired_token); run portcullis login again")]
    Expired,
    /// The token cache could not be written.
    #[error("cannot write the token cache {path}: {detail}")]
    Cache { path: String, detail: String },
}

impl LoginError {
    /// Process exit code: 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            LoginError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// The token cache file, as written by `login` and read by the client commands.
#[derive(Serialize, Deserialize)]
struct CachedToken {
    issuer: String,
    access_token: String,
    /// Unix seconds; `None` when neither the token nor the provider said.
    expires_at: Option<u64>,
}

/// Where the token is cached: `$PORTCULLIS_CONFIG_DIR/token`, else
/// `$XDG_CONFIG_HOME/portcullis/token`, else `~/.config/portcullis/token`.
pub fn cache_path() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("PORTCULLIS_CONFIG_DIR") {
        return Some(dir.join("token"));
    }
    // The XDG spec says relative values are to be ignored.
    if let Some(dir) = var("XDG_CONFIG_HOME").filter(|d| d.is_absolute()) {
        return Some(dir.join("portcullis").join("token"));
    }
    var("HOME").map(|home| home.join(".config").join("portcullis").join("token"))
}

/// The cached token for client commands run without `--token`/`PORTCULLIS_TOKEN`:
/// `None` when nothing is cached, an error when the cache is unreadable or expired.
pub fn cached_token() -> Result<Option<String>, CliError> {
    let Some(path) = cache_path() else { return Ok(None) };
    cached_token_at(&path, unix_now())
}

fn cached_token_at(path: &Path, now: u64) -> Result<Option<String>, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CliError::File { path: path.display().to_string(), detail: e.to_string() }),
    };
    let cached: CachedToken = serde_json::from_str(&text).map_err(|e| CliError::File {
        path: path.display().to_string(),
        detail: format!("not a portcullis token cache ({e}); run portcullis login again"),
    })?;
    if cached.expires_at.is_some_and(|exp| now.saturating_add(EXPIRY_SKEW_SECS) >= exp) {
        return Err(CliError::Usage("cached token expired; run portcullis login again".into()));
    }
    Ok(Some(cached.access_token))
}

/// Run the device flow and cache the token.
pub async fn login(args: LoginArgs, g: &Globals) -> Result<(), LoginError> {
    let issuer = args.issuer.trim().trim_end_matches('/').to_string();
    check_url("--issuer", &issuer)?;
    if args.client_id.trim().is_empty() {
        return Err(LoginError::Usage("--client-id must not be empty".into()));
    }
    let path = cache_path().ok_or_else(|| {
        LoginError::Usage("no place for the token cache: set PORTCULLIS_CONFIG_DIR, XDG_CONFIG_HOME or HOME".into())
    })?;
    let http = http_client(g)?;
    let client = Client { id: args.client_id.trim().to_string(), secret: args.client_secret.clone() };

    let endpoints = discover(&http, &issuer).await?;
    let auth = device_authorization(&http, &endpoints.device_authorization, &client, &args).await?;

    let url = auth.verification_uri_complete.as_deref().unwrap_or(&auth.verification_uri);
    eprintln!("To sign in, open {} and enter code {}", printable(url), printable(&auth.user_code));
    let lifetime = auth.expires_in.map(Duration::from_secs).unwrap_or(DEFAULT_CODE_LIFETIME);
    eprintln!("Waiting for sign-in (the code expires in {})...", humantime::format_duration(lifetime));

    let tokens = poll(&http, &endpoints.token, &client, &auth, lifetime).await?;
    let claims = jwt_claims(&tokens.access_token).ok_or_else(|| {
        LoginError::Provider(format!(
            "{issuer} issued an opaque access token, but the gateway accepts JWT access tokens only: \
             configure the provider to issue JWT access tokens for the gateway (often by naming it with --resource)"
        ))
    })?;
    let expires_at = claims
        .get("exp")
        .and_then(Value::as_u64)
        .or_else(|| tokens.expires_in.map(|secs| unix_now().saturating_add(secs)));
    let cached = CachedToken { issuer: issuer.clone(), access_token: tokens.access_token, expires_at };
    write_cache(&path, &cached)?;

    let who = claims.get("sub").and_then(Value::as_str).map(|s| format!(" as {}", printable(s))).unwrap_or_default();
    let until = match expires_at {
        Some(exp) => {
            format!(", valid for {}", humantime::format_duration(Duration::from_secs(exp.saturating_sub(unix_now()))))
        }
        None => String::new(),
    };
    eprintln!("Signed in to {issuer}{who}; token cached in {}{until}", path.display());
    Ok(())
}

/// The OAuth client making the requests.
struct Client {
    id: String,
    secret: Option<String>,
}

impl Client {
    /// A form POST authenticated as this client: HTTP basic auth (RFC 6749 §2.3.1, both
    /// parts form-urlencoded) for confidential clients, `client_id` in the body otherwise.
    fn post(
        &self,
        http: &reqwest::Client,
        url: &str,
        mut form: Vec<(&'static str, String)>,
    ) -> reqwest::RequestBuilder {
        let req = http.post(url).header(reqwest::header::ACCEPT, "application/json");
        match &self.secret {
            Some(secret) => {
                let pair = format!("{}:{}", form_urlencode(&self.id), form_urlencode(secret));
                let basic = base64::engine::general_purpose::STANDARD.encode(pair);
                req.header(reqwest::header::AUTHORIZATION, format!("Basic {basic}")).form(&form)
            }
            None => {
                form.push(("client_id", self.id.clone()));
                req.form(&form)
            }
        }
    }
}

struct Endpoints {
    device_authorization: String,
    token: String,
}

/// Device authorization response (RFC 8628 §3.2).
#[derive(Deserialize)]
struct DeviceAuthorization {
    device_code: String,
    user_code: String,
    /// Some providers (Google) spell it `verification_url`.
    #[serde(alias = "verification_url")]
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: Option<u64>,
    interval: Option<u64>,
}

/// The parts of a successful token response used here.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: Option<String>,
    expires_in: Option<u64>,
}

/// An OAuth error response (RFC 6749 §5.2).
#[derive(Deserialize, Default)]
struct OAuthError {
    error: String,
    error_description: Option<String>,
}

impl OAuthError {
    /// `error: description`, or just `error`.
    fn text(&self) -> String {
        match self.error_description.as_deref().filter(|d| !d.is_empty()) {
            Some(d) => format!("{}: {}", printable(&self.error), printable(d)),
            None => printable(&self.error),
        }
    }
}

fn http_client(g: &Globals) -> Result<reqwest::Client, LoginError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        // Endpoints are used exactly as discovered; a redirect would resend the client's
        // credentials and codes somewhere else.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = &g.ca {
        let pem = std::fs::read(path).map_err(|e| {
            LoginError::Usage(format!("cannot read CA file {}: {e} (pass --ca with a PEM file)", path.display()))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| LoginError::Usage(format!("CA file {}: {e} (is it a PEM certificate?)", path.display())))?;
        if certs.is_empty() {
            return Err(LoginError::Usage(format!("CA file {} holds no PEM certificate", path.display())));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| LoginError::Usage(format!("cannot set up the HTTP client: {e}")))
}

/// https, or http to a loopback host (a development provider).
fn check_url(what: &str, url: &str) -> Result<(), LoginError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| LoginError::Usage(format!("{what} {url:?}: not a URL ({e})")))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&parsed) => Ok(()),
        "http" => Err(LoginError::Usage(format!(
            "{what} {url}: plain http is allowed only for loopback providers; use https"
        ))),
        other => Err(LoginError::Usage(format!("{what} {url}: unsupported scheme {other:?}; use https"))),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Endpoints, LoginError> {
    let url = format!("{issuer}/.well-known/openid-configuration");
    let resp = http.get(&url).send().await.map_err(|e| connect_error(&url, &e))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| connect_error(&url, &e))?;
    if !status.is_success() {
        return Err(LoginError::Provider(format!(
            "OIDC discovery at {url} answered HTTP {status}: is --issuer the provider's issuer URL?"
        )));
    }
    let doc: Value = serde_json::from_slice(&body).map_err(|e| {
        LoginError::Provider(format!("OIDC discovery at {url} is not a JSON document ({e}): is --issuer right?"))
    })?;
    parse_discovery(issuer, &doc)
}

fn parse_discovery(issuer: &str, doc: &Value) -> Result<Endpoints, LoginError> {
    let named = doc.get("issuer").and_then(Value::as_str).unwrap_or_default();
    if named.trim_end_matches('/') != issuer {
        return Err(LoginError::Provider(format!(
            "the discovery document of {issuer} names the issuer {:?}: pass --issuer exactly as the provider names itself",
            printable(named)
        )));
    }
    let no_device_flow = || {
        LoginError::Provider(format!(
            "{issuer} does not offer the device authorization grant (no device_authorization_endpoint in its \
             discovery document): enable the device flow at the provider for this client"
        ))
    };
    if let Some(grants) = doc.get("grant_types_supported").and_then(Value::as_array)
        && !grants.iter().any(|g| g.as_str() == Some(DEVICE_CODE_GRANT))
    {
        return Err(no_device_flow());
    }
    let device = doc.get("device_authorization_endpoint").and_then(Value::as_str).ok_or_else(no_device_flow)?;
    let token = doc
        .get("token_endpoint")
        .and_then(Value::as_str)
        .ok_or_else(|| LoginError::Provider(format!("the discovery document of {issuer} names no token_endpoint")))?;
    let endpoint = |what: &str, url: &str| -> Result<String, LoginError> {
        check_url(what, url).map_err(|e| LoginError::Provider(format!("the provider's {e}")))?;
        Ok(url.to_string())
    };
    Ok(Endpoints {
        device_authorization: endpoint("device_authorization_endpoint", device)?,
        token: endpoint("token_endpoint", token)?,
    })
}

async fn device_authorization(
    http: &reqwest::Client,
    url: &str,
    client: &Client,
    args: &LoginArgs,
) -> Result<DeviceAuthorization, LoginError> {
    let mut form = vec![("scope", args.scope.clone())];
    if let Some(resource) = &args.resource {
        form.push(("resource", resource.clone()));
    }
    let resp = client.post(http, url, form).send().await.map_err(|e| connect_error(url, &e))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| connect_error(url, &e))?;
    if status.is_success() {
        // No detail from serde: its messages can quote the input, i.e. the device code.
        return serde_json::from_slice(&body).map_err(|_| {
            LoginError::Provider(format!(
                "the device authorization response of {url} is malformed (it needs device_code, user_code and \
                 verification_uri)"
            ))
        });
    }
    let err: OAuthError = serde_json::from_slice(&body).unwrap_or_default();
    let client_id = printable(&client.id);
    Err(LoginError::Provider(match err.error.as_str() {
        "invalid_client" => format!(
            "the provider does not accept client {client_id:?} ({}): check --client-id, and --client-secret for \
             confidential clients",
            err.text()
        ),
        "unauthorized_client" => format!(
            "client {client_id:?} may not use the device flow ({}): allow the grant type {DEVICE_CODE_GRANT} for it \
             at the provider",
            err.text()
        ),
        "invalid_scope" => format!("the provider refused the scope {:?} ({}): check --scope", args.scope, err.text()),
        "invalid_target" => format!("the provider refused the resource ({}): check --resource", err.text()),
        "" => format!("device authorization at {url} failed with HTTP {status}"),
        _ => format!("device authorization at {url} failed: {}", err.text()),
    }))
}

/// What one poll of the token endpoint means for the loop.
#[derive(Debug, PartialEq)]
enum PollOutcome {
    /// Tokens: the JSON body.
    Done(Vec<u8>),
    /// `authorization_pending`: ask again after the interval.
    Pending,
    /// `slow_down`: ask again after the interval plus 5 s, from now on.
    SlowDown,
    /// HTTP 429 or a server error: back off and ask again.
    Retry(String),
    Denied(String),
    Expired,
    /// Any other error ends the login.
    Failed(String),
}

fn classify(status: u16, body: &[u8]) -> PollOutcome {
    if (200..300).contains(&status) {
        return PollOutcome::Done(body.to_vec());
    }
    let err: OAuthError = serde_json::from_slice(body).unwrap_or_default();
    match err.error.as_str() {
        "authorization_pending" => PollOutcome::Pending,
        "slow_down" => PollOutcome::SlowDown,
        "access_denied" => {
            PollOutcome::Denied(err.error_description.map(|d| format!(": {}", printable(&d))).unwrap_or_default())
        }
        "expired_token" => PollOutcome::Expired,
        "" if status == 429 || status >= 500 => PollOutcome::Retry(format!("HTTP {status}")),
        "" => PollOutcome::Failed(format!("HTTP {status}")),
        _ => PollOutcome::Failed(err.text()),
    }
}

async fn poll(
    http: &reqwest::Client,
    url: &str,
    client: &Client,
    auth: &DeviceAuthorization,
    lifetime: Duration,
) -> Result<TokenResponse, LoginError> {
    let deadline = Instant::now() + lifetime;
    let mut interval = auth.interval.map(Duration::from_secs).unwrap_or(DEFAULT_INTERVAL).max(Duration::from_secs(1));
    let mut wait = interval;
    loop {
        tokio::time::sleep(wait).await;
        if Instant::now() >= deadline {
            return Err(LoginError::Expired);
        }
        let form = vec![("grant_type", DEVICE_CODE_GRANT.to_string()), ("device_code", auth.device_code.clone())];
        let outcome = match client.post(http, url, form).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.bytes().await {
                    Ok(body) => classify(status, &body),
                    Err(e) => PollOutcome::Retry(e.to_string()),
                }
            }
            // RFC 8628 §3.5: back off on connection problems rather than give up.
            Err(e) => PollOutcome::Retry(e.to_string()),
        };
        match outcome {
            PollOutcome::Done(body) => return parse_tokens(url, &body),
            PollOutcome::Pending => wait = interval,
            PollOutcome::SlowDown => {
                interval += SLOW_DOWN_STEP;
                wait = interval;
            }
            PollOutcome::Retry(detail) => {
                tracing::debug!(%detail, "token endpoint unavailable; backing off");
                wait = (wait * 2).min(MAX_BACKOFF.max(interval));
            }
            PollOutcome::Denied(detail) => return Err(LoginError::Denied { detail }),
            PollOutcome::Expired => return Err(LoginError::Expired),
            PollOutcome::Failed(detail) => {
                return Err(LoginError::Provider(format!(
                    "the token endpoint {url} refused the device code: {detail}"
                )));
            }
        }
    }
}

fn parse_tokens(url: &str, body: &[u8]) -> Result<TokenResponse, LoginError> {
    // No detail from serde here: its messages can quote the input, i.e. the token.
    let tokens: TokenResponse = serde_json::from_slice(body)
        .map_err(|_| LoginError::Provider(format!("the token response of {url} is malformed (no access_token)")))?;
    if let Some(kind) = &tokens.token_type
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(LoginError::Provider(format!(
            "{url} issued a {:?} token; the gateway accepts bearer tokens only",
            printable(kind)
        )));
    }
    if tokens.access_token.is_empty() {
        return Err(LoginError::Provider(format!("the token response of {url} has an empty access_token")));
    }
    Ok(tokens)
}

/// The payload of a compact JWS, unverified (the gateway verifies; this only reads `exp`
/// and `sub`). `None` when the token is not a JWT.
fn jwt_claims(token: &str) -> Option<serde_json::Map<String, Value>> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Write the cache atomically (temp file + rename), readable by the owner only.
fn write_cache(path: &Path, cached: &CachedToken) -> Result<(), LoginError> {
    let fail = |detail: String| LoginError::Cache { path: path.display().to_string(), detail };
    let json = serde_json::to_vec_pretty(cached).map_err(|e| fail(e.to_string()))?;
    if let Some(dir) = path.parent() {
        create_private_dir(dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = write_private(&tmp, &json).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e.to_string()));
    }
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    // The mode above is subject to the umask, which can only take bits away; be explicit.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, data)
}

/// x-www-form-urlencoded (for the parts of HTTP basic client authentication).
fn form_urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Provider-supplied text with control characters removed (no terminal escapes).
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

fn connect_error(url: &str, e: &reqwest::Error) -> LoginError {
    // reqwest's Display is terse ("error sending request for url"); the sources name the cause.
    let mut causes = vec![];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    let detail = if causes.is_empty() { e.to_string() } else { causes.join(": ") };
    LoginError::Connect { url: url.to_string(), detail }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn poll_responses_map_to_the_rfc_8628_actions() {
        assert_eq!(classify(400, br#"{"error":"authorization_pending"}"#), PollOutcome::Pending);
        assert_eq!(classify(400, br#"{"error":"slow_down"}"#), PollOutcome::SlowDown);
        assert_eq!(classify(400, br#"{"error":"expired_token"}"#), PollOutcome::Expired);
        assert_eq!(
            classify(400, br#"{"error":"access_denied","error_description":"End-User aborted"}"#),
            PollOutcome::Denied(": End-User aborted".into())
        );
        assert_eq!(classify(503, b"busy"), PollOutcome::Retry("HTTP 503".into()));
        assert_eq!(classify(429, b""), PollOutcome::Retry("HTTP 429".into()));
        assert_eq!(classify(400, br#"{"error":"invalid_grant"}"#), PollOutcome::Failed("invalid_grant".into()));
        assert_eq!(classify(200, b"{}"), PollOutcome::Done(b"{}".to_vec()));
    }

    #[test]
    fn discovery_without_device_endpoint_is_a_clear_error() {
        let doc = serde_json::json!({"issuer": "https://idp.test", "token_endpoint": "https://idp.test/token"});
        let err = parse_discovery("https://idp.test", &doc).err().unwrap().to_string();
        assert!(err.contains("does not offer the device authorization grant"), "{err}");

        let doc = serde_json::json!({
            "issuer": "https://idp.test/",
            "token_endpoint": "https://idp.test/token",
            "device_authorization_endpoint": "https://idp.test/device/auth",
        });
        let e = parse_discovery("https://idp.test", &doc).unwrap();
        assert_eq!(e.device_authorization, "https://idp.test/device/auth");

        let err = parse_discovery("https://other.test", &doc).err().unwrap().to_string();
        assert!(err.contains("names the issuer"), "{err}");
    }

    #[test]
    fn plain_http_is_for_loopback_providers_only() {
        assert!(check_url("--issuer", "http://127.0.0.1:8080").is_ok());
        assert!(check_url("--issuer", "http://localhost:8080").is_ok());
        assert!(check_url("--issuer", "http://[::1]:8080").is_ok());
        assert!(check_url("--issuer", "https://idp.example.com").is_ok());
        assert!(check_url("--issuer", "http://idp.example.com").is_err());
        assert!(check_url("--issuer", "ftp://idp.example.com").is_err());
        assert!(check_url("--issuer", "not a url").is_err());
    }

    #[test]
    fn cached_token_is_used_until_it_expires() {
        let dir = std::env::temp_dir().join(format!("portcullis-login-test-{}", std::process::id()));
        let path = dir.join("sub").join("token");
        assert!(cached_token_at(&path, 1000).unwrap().is_none());
        let cached =
            CachedToken { issuer: "https://idp.test".into(), access_token: "a.b.c".into(), expires_at: Some(2000) };
        write_cache(&path, &cached).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(cached_token_at(&path, 1000).unwrap().as_deref(), Some("a.b.c"));
        let err = cached_token_at(&path, 1995).unwrap_err();
        assert_eq!(err.to_string(), "cached token expired; run portcullis login again");
        std::fs::write(&path, "garbage").unwrap();
        assert!(cached_token_at(&path, 1000).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn jwt_claims_read_the_payload_and_reject_opaque_tokens() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"alice","exp":5}"#);
        let claims = jwt_claims(&format!("e30.{payload}.sig")).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert!(jwt_claims("opaque-token").is_none());
        assert!(jwt_claims("a.b.c.d").is_none());
    }

    #[test]
    fn basic_auth_parts_are_form_urlencoded() {
        assert_eq!(form_urlencode("cli2-secret"), "cli2-secret");
        assert_eq!(form_urlencode("a b:c%"), "a+b%3Ac%25");
    }
}
