//! Calls into the node's admin service as the signed-in user, and the one mapping from
//! its refusals to pages.
//!
//! The console holds no roles of its own for what the admin API decides: the request
//! carries the user's token in `authorization` metadata, exactly as the CLI sends it,
//! so the service authenticates and authorizes it the same way and its messages are
//! shown as they are.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use super::Console;
use super::session::clear_cookie;
use super::session::{BrowserSession, COOKIE_NAME};
use super::viewer::{Viewer, sign_in_path};
use super::views::{Link, MessagePage, NO_QUORUM, render};

/// `message` as a request from `session`'s user.
pub fn request<T>(session: &BrowserSession, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    // A token that is not valid metadata cannot be valid either: sent without it, the
    // call is refused as unauthenticated, and the user signs in again.
    if let Ok(value) = MetadataValue::try_from(format!("Bearer {}", session.token.expose())) {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// The page for a refused admin call. `needs` names the role the page needs, for the
/// 403 page ("the admin or auditor role").
pub fn refusal(console: &Console, viewer: &Viewer, status: &Status, title: &str, needs: &str) -> Response {
    let message = status.message().to_string();
    let (code, heading, paragraphs, link) = match status.code() {
        Code::Unauthenticated => {
            // The node no longer accepts the token (expired, keys rotated): end the session.
            console.sessions().remove(&viewer.cookie_id);
            let page = MessagePage {
                frame: super::viewer::anonymous_frame(console, "Sign in again"),
                heading: "Sign in again".into(),
                paragraphs: vec![format!("This node no longer accepts your sign-in: {message}.")],
                link: Some(Link { href: sign_in_path(&viewer.path), text: "Sign in again".into() }),
            };
            let mut response = render(StatusCode::UNAUTHORIZED, &page);
            if let Ok(v) = HeaderValue::from_str(&clear_cookie(COOKIE_NAME)) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            return response;
        }
        Code::PermissionDenied => (
            StatusCode::FORBIDDEN,
            "Permission denied".to_string(),
            vec![format!("{title} needs {needs}."), format!("The node says: {message}.")],
            None,
        ),
        Code::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "No quorum".to_string(),
            vec![NO_QUORUM.to_string(), format!("The node says: {message}.")],
            None,
        ),
        Code::FailedPrecondition => (StatusCode::CONFLICT, "Refused".to_string(), vec![message], None),
        Code::NotFound => (StatusCode::NOT_FOUND, "Not found".to_string(), vec![message], None),
        Code::InvalidArgument => (StatusCode::BAD_REQUEST, "Not accepted".to_string(), vec![message], None),
        Code::DeadlineExceeded => (
            StatusCode::GATEWAY_TIMEOUT,
            "Timed out".to_string(),
            vec![format!("The cluster did not answer in time: {message}. Try again.")],
            None,
        ),
        _ => (StatusCode::BAD_GATEWAY, "The node failed".to_string(), vec![message], None),
    };
    let page = MessagePage { frame: viewer.frame(console, heading.clone(), ""), heading, paragraphs, link };
    render(code, &page)
}

/// The page for a form whose CSRF field is missing or wrong.
pub fn csrf_refused(console: &Console, viewer: &Viewer) -> Response {
    let page = MessagePage {
        frame: viewer.frame(console, "Form refused", ""),
        heading: "Form refused".into(),
        paragraphs: vec![
            "This form was not sent by this console page, or it is stale (the CSRF check failed). Nothing was changed."
                .into(),
        ],
        link: Some(Link { href: "/approvals".into(), text: "Back to the approvals inbox".into() }),
    };
    render(StatusCode::FORBIDDEN, &page)
}
