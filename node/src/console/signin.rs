//! Signing in and out.
//!
//! `GET /auth/sign-in?next=` starts a sign-in ([`pkce`](super::pkce)) and sends the
//! browser to the provider; `GET /auth/callback` checks state, binding and nonce, trades
//! the code, verifies the token with the node's verifier (the access token, else the ID
//! token) and starts a session; `POST /auth/sign-out` (with the CSRF field) ends it.
//!
//! The callback answers with a page that moves on by `<meta http-equiv=refresh>`
//! rather than a redirect: it is reached by a cross-site navigation from the provider,
//! and a SameSite=Strict cookie is sent only on a navigation that starts on this site.

use std::time::Instant;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::Console;
use super::oidc::Tokens;
use super::pkce::{BINDING_COOKIE, binding_cookie};
use super::session::{COOKIE_NAME, Token, clear_cookie, cookie, now_secs, session_cookie};
use super::viewer::{anonymous_frame, sign_in_path};
use super::views::{Frame, Link, MessagePage, User, render};
use crate::error::NodeError;

#[derive(Debug, Deserialize)]
pub struct SignInQuery {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// A page saying sign-in did not work, and how to try again.
fn failed(console: &Console, status: StatusCode, detail: String) -> Response {
    tracing::info!(reason = %detail, "console: sign-in failed");
    let page = MessagePage {
        frame: anonymous_frame(console, "Sign-in failed"),
        heading: "Sign-in failed".into(),
        paragraphs: vec![detail],
        link: Some(Link { href: sign_in_path("/approvals"), text: "Sign in again".into() }),
    };
    render(status, &page)
}

/// `GET /auth/sign-in`: off to the provider.
pub async fn start(State(console): State<Console>, Query(q): Query<SignInQuery>) -> Response {
    let next = q.next.unwrap_or_else(|| "/approvals".into());
    let started = match console.logins().start(&next, Instant::now()) {
        Ok(s) => s,
        Err(e) => return failed(&console, StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    match console.deps().oidc.authorize_url(&started).await {
        Ok(url) => with_cookie(Redirect::to(&url).into_response(), &binding_cookie(&started.binding)),
        Err(e) => failed(&console, StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

/// `GET /auth/callback`: back from the provider.
pub async fn callback(State(console): State<Console>, headers: HeaderMap, Query(q): Query<CallbackQuery>) -> Response {
    if let Some(error) = q.error {
        let detail = q.error_description.unwrap_or_default();
        return failed(&console, StatusCode::UNAUTHORIZED, format!("The identity provider said: {error} {detail}"));
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return failed(&console, StatusCode::BAD_REQUEST, "The provider sent no code or state back.".into());
    };
    let pending = match console.logins().finish(&state, cookie(&headers, BINDING_COOKIE), Instant::now()) {
        Ok(p) => p,
        Err(e) => return failed(&console, StatusCode::BAD_REQUEST, e.to_string()),
    };
    let tokens = match console.deps().oidc.exchange(&code, &pending.verifier, &pending.nonce).await {
        Ok(t) => t,
        Err(e) => return failed(&console, StatusCode::BAD_GATEWAY, e.to_string()),
    };
    let (token, identity) = match verify(&console, tokens).await {
        Ok(v) => v,
        Err(e) => return failed(&console, StatusCode::UNAUTHORIZED, e.to_string()),
    };
    let now = now_secs();
    let subject = identity.subject.clone();
    let created = console.sessions().create(token, identity.subject, identity.groups, identity.expires_at, now);
    let (id, session) = match created {
        Ok(c) => c,
        Err(e) => return failed(&console, StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    tracing::info!(subject = %subject, "console: signed in");
    let page = MessagePage {
        frame: Frame {
            refresh: Some(pending.next.clone()),
            user: Some(User { subject: session.subject.clone(), csrf: session.csrf.clone() }),
            ..anonymous_frame(&console, "Signed in")
        },
        heading: "Signed in".into(),
        paragraphs: vec![format!("You are signed in as {subject}.")],
        link: Some(Link { href: pending.next, text: "Continue".into() }),
    };
    let response = render(StatusCode::OK, &page);
    let response = with_cookie(response, &session_cookie(&id, session.expires_at.saturating_sub(now)));
    with_cookie(response, &clear_cookie(BINDING_COOKIE))
}

/// The token the console will present for this user, and who it names: the access
/// token if this node accepts it, else the ID token.
async fn verify(console: &Console, tokens: Tokens) -> Result<(Token, portcullis_proxy::identity::Identity), NodeError> {
    let verifier = &console.deps().verifier;
    let mut refused = Vec::new();
    for (what, token) in [("access token", tokens.access_token), ("ID token", tokens.id_token)] {
        let Some(token) = token else { continue };
        match verifier.verify(&token).await {
            Ok(identity) => return Ok((Token::new(token), identity)),
            Err(e) => refused.push(format!("its {what}: {e}")),
        }
    }
    Err(NodeError::SignIn(format!(
        "This node does not accept the tokens the provider issued ({}). The access token needs an audience in [identity] audiences; to use the ID token instead, add the console's client id there.",
        refused.join("; ")
    )))
}

/// `POST /auth/sign-out`: end the session (the CSRF field must match).
pub async fn sign_out(State(console): State<Console>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    let id = cookie(&headers, COOKIE_NAME);
    if let Some(id) = id
        && let Some(session) = console.sessions().get(id, now_secs())
    {
        if !session.csrf_matches(form.csrf.as_deref()) {
            let page = MessagePage {
                frame: anonymous_frame(&console, "Form refused"),
                heading: "Form refused".into(),
                paragraphs: vec![
                    "This sign-out was not sent by this console page (the CSRF check failed); you are still signed in."
                        .into(),
                ],
                link: Some(Link { href: "/approvals".into(), text: "Back to the approvals inbox".into() }),
            };
            return render(StatusCode::FORBIDDEN, &page);
        }
        console.sessions().remove(id);
        tracing::info!(subject = %session.subject, "console: signed out");
    }
    let page = MessagePage {
        frame: anonymous_frame(&console, "Signed out"),
        heading: "Signed out".into(),
        paragraphs: vec!["You are signed out of this node's console.".into()],
        link: Some(Link { href: sign_in_path("/approvals"), text: "Sign in".into() }),
    };
    with_cookie(render(StatusCode::OK, &page), &clear_cookie(COOKIE_NAME))
}
