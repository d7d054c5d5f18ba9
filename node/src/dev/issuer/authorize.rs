//! The dev issuer's sign-in: OAuth 2.0 authorization code with PKCE (RFC 7636, `S256`
//! only), so a browser app (the web console) signs in against the playground exactly as
//! against a real provider. INSECURE like the rest of the dev issuer: the sign-in form
//! asks for a subject and groups and believes them.
//!
//! `GET /authorize` shows the form; `POST /authorize` issues a one-time code (60 s) and
//! redirects to the client's `redirect_uri`, which must be on loopback; `POST /token`
//! trades the code and its PKCE verifier for an access token (audience `portcullis`,
//! what nodes accept) and an ID token (audience the client, with its `nonce`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use serde_json::json;

/// How long a code may wait to be traded.
const CODE_TTL: Duration = Duration::from_secs(60);
/// How long the tokens the flow issues live.
const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// The audience of access tokens: what the playground's nodes accept.
const ACCESS_AUDIENCE: &str = "portcullis";
/// Codes issued and not yet traded; more are refused (a form posted in a loop).
const MAX_CODES: usize = 1024;

/// What a code was issued for.
struct Grant {
    sub: String,
    groups: Vec<String>,
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    issued: Instant,
}

/// The flow's state: the playground dir (for the signing key) and the open codes.
#[derive(Clone)]
pub struct Flow {
    dir: PathBuf,
    codes: Arc<Mutex<HashMap<String, Grant>>>,
}

impl Flow {
    pub fn new(dir: PathBuf) -> Self {
        Flow { dir, codes: Arc::default() }
    }
}

/// The authorization request (RFC 6749 §4.1.1 with RFC 7636's fields).
#[derive(Debug, Deserialize)]
pub struct AuthorizeQuery {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    nonce: Option<String>,
}

/// The sign-in form as posted: the request's fields again, plus who signs in.
#[derive(Debug, Deserialize)]
pub struct SignIn {
    #[serde(flatten)]
    request: AuthorizeQuery,
    sub: String,
    #[serde(default)]
    groups: String,
}

#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    grant_type: String,
    code: String,
    redirect_uri: String,
    client_id: String,
    code_verifier: String,
}

/// The checked authorization request.
struct Checked {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    challenge: String,
    nonce: Option<String>,
}

fn check(q: &AuthorizeQuery) -> Result<Checked, String> {
    if q.response_type.as_deref() != Some("code") {
        return Err("response_type must be code".into());
    }
    let client_id = q.client_id.clone().filter(|c| !c.is_empty()).ok_or("client_id is required")?;
    let redirect_uri = q.redirect_uri.clone().ok_or("redirect_uri is required")?;
    if !on_loopback(&redirect_uri) {
        return Err("redirect_uri must be an http(s) URL on loopback (127.0.0.1, [::1] or localhost)".into());
    }
    if q.code_challenge_method.as_deref() != Some("S256") {
        return Err("PKCE is required: code_challenge_method must be S256".into());
    }
    let challenge = q
        .code_challenge
        .clone()
        .filter(|c| (43..=128).contains(&c.len()))
        .ok_or("code_challenge is missing or malformed")?;
    Ok(Checked { client_id, redirect_uri, state: q.state.clone(), challenge, nonce: q.nonce.clone() })
}

/// The playground's console runs on loopback; a code must never be sent elsewhere.
fn on_loopback(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("https://").or_else(|| uri.strip_prefix("http://")) else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    matches!(host, "127.0.0.1" | "::1" | "localhost")
}

fn refuse(status: StatusCode, error: &str, detail: &str) -> Response {
    (status, axum::Json(json!({ "error": error, "error_description": detail }))).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// `GET /authorize`: the sign-in form, carrying the request along.
pub async fn form(Query(q): Query<AuthorizeQuery>) -> Response {
    if let Err(e) = check(&q) {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", &e);
    }
    let hidden = [
        ("response_type", &q.response_type),
        ("client_id", &q.client_id),
        ("redirect_uri", &q.redirect_uri),
        ("state", &q.state),
        ("code_challenge", &q.code_challenge),
        ("code_challenge_method", &q.code_challenge_method),
        ("nonce", &q.nonce),
    ]
    .iter()
    .filter_map(|(name, value)| {
        value.as_ref().map(|v| format!(r#"<input type="hidden" name="{name}" value="{}">"#, escape(v)))
    })
    .collect::<String>();
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in: Portcullis dev issuer</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main>
<h1>Sign in to the playground</h1>
<p>Development issuer: it believes whoever you say you are. Never use it for anything real.</p>
<form method="post" action="authorize">{hidden}
<p><label for="sub">Subject (user name)</label><br><input id="sub" name="sub" required autofocus></p>
<p><label for="groups">Groups (comma-separated)</label><br><input id="groups" name="groups" placeholder="approvers, engineers"></p>
<p><button type="submit">Sign in</button></p>
</form></main></body></html>"#
    );
    // `form-action` also governs where the form's answer redirects to (browsers enforce it
    // on the redirect): the client's redirect URI, on another origin, must be allowed too.
    let csp = match q.redirect_uri.as_deref().and_then(origin_of) {
        Some(origin) => format!("default-src 'none'; form-action 'self' {origin}"),
        None => "default-src 'none'; form-action 'self'".to_string(),
    };
    match HeaderValue::from_str(&csp) {
        Ok(csp) => ([(header::CONTENT_SECURITY_POLICY, csp)], Html(page)).into_response(),
        Err(_) => refuse(StatusCode::BAD_REQUEST, "invalid_request", "redirect_uri is not a plain URL"),
    }
}

/// `scheme://host[:port]` of `uri`, if it is made only of characters a CSP source may hold.
fn origin_of(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']' | '-');
    (matches!(scheme, "http" | "https") && !authority.is_empty() && authority.chars().all(plain))
        .then(|| format!("{scheme}://{authority}"))
}

/// `POST /authorize`: a one-time code, sent back to the client's redirect URI.
pub async fn sign_in(State(flow): State<Flow>, Form(form): Form<SignIn>) -> Response {
    let checked = match check(&form.request) {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, "invalid_request", &e),
    };
    let sub = form.sub.trim().to_string();
    if sub.is_empty() || sub.len() > 128 {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", "a subject of 1 to 128 characters is required");
    }
    let groups: Vec<String> =
        form.groups.split(',').map(str::trim).filter(|g| !g.is_empty()).map(str::to_string).take(32).collect();
    let mut bytes = [0u8; 32];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "no randomness for a code");
    }
    let code = B64URL.encode(bytes);
    {
        let mut codes = flow.codes.lock().unwrap_or_else(|p| p.into_inner());
        codes.retain(|_, g| g.issued.elapsed() < CODE_TTL);
        if codes.len() >= MAX_CODES {
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "too many open sign-ins");
        }
        let grant = Grant {
            sub,
            groups,
            client_id: checked.client_id,
            redirect_uri: checked.redirect_uri.clone(),
            challenge: checked.challenge,
            nonce: checked.nonce,
            issued: Instant::now(),
        };
        codes.insert(code.clone(), grant);
    }
    let separator = if checked.redirect_uri.contains('?') { '&' } else { '?' };
    let mut to = format!("{}{separator}code={code}", checked.redirect_uri);
    if let Some(state) = &checked.state {
        to.push_str("&state=");
        to.push_str(&percent_encode(state));
    }
    Redirect::to(&to).into_response()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `POST /token`: the code (once, within its time, by the client it was issued to, with
/// the verifier whose S256 is the challenge) for the tokens.
pub async fn token(State(flow): State<Flow>, Form(req): Form<TokenRequest>) -> Response {
    if req.grant_type != "authorization_code" {
        return refuse(StatusCode::BAD_REQUEST, "unsupported_grant_type", "only authorization_code");
    }
    // Taken out whatever happens next: a code is good for one try.
    let grant = flow.codes.lock().unwrap_or_else(|p| p.into_inner()).remove(&req.code);
    let Some(grant) = grant else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_grant", "unknown or already used code");
    };
    if grant.issued.elapsed() >= CODE_TTL {
        return refuse(StatusCode::BAD_REQUEST, "invalid_grant", "the code expired");
    }
    if grant.client_id != req.client_id || grant.redirect_uri != req.redirect_uri {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the code was issued to another client or redirect_uri",
        );
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, req.code_verifier.as_bytes());
    if B64URL.encode(digest.as_ref()) != grant.challenge {
        return refuse(StatusCode::BAD_REQUEST, "invalid_grant", "the code_verifier does not match the code_challenge");
    }
    let access = super::mint(&flow.dir, &grant.sub, &grant.groups, TOKEN_TTL, ACCESS_AUDIENCE);
    let id_claims = match &grant.nonce {
        Some(nonce) => json!({ "nonce": nonce }),
        None => json!({}),
    };
    let id = super::mint_with(&flow.dir, &grant.sub, &grant.groups, TOKEN_TTL, &grant.client_id, id_claims);
    match (access, id) {
        (Ok(access), Ok(id)) => axum::Json(json!({
            "access_token": access,
            "id_token": id,
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL.as_secs(),
        }))
        .into_response(),
        (Err(e), _) | (_, Err(e)) => refuse(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e.to_string()),
    }
}

#[cfg(test)]
mod tests;
