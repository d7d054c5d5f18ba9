//! The console's pages, one file each; the small ones live here.

pub mod approvals;
pub mod cluster;
pub mod policies;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::Console;
use super::viewer::{Viewer, anonymous_frame};
use super::views::{Link, MessagePage, render};

/// `GET /`: the inbox is what people come for.
pub async fn home() -> Response {
    Redirect::to("/approvals").into_response()
}

/// `/sessions`: named in the nav, built next.
pub async fn coming(State(console): State<Console>, viewer: Viewer) -> Response {
    let (title, active) =
        if viewer.path.starts_with("/sessions") { ("Sessions", "sessions") } else { ("Policies", "policies") };
    let page = MessagePage {
        frame: viewer.frame(&console, title, active),
        heading: title.into(),
        paragraphs: vec![format!(
            "The {} page is coming. Meanwhile the CLI has it: portcullis {} list.",
            title.to_lowercase(),
            active
        )],
        link: None,
    };
    render(StatusCode::OK, &page)
}

pub async fn not_found(State(console): State<Console>) -> Response {
    let page = MessagePage {
        frame: anonymous_frame(&console, "Not found"),
        heading: "Not found".into(),
        paragraphs: vec!["There is no such page in the console.".into()],
        link: Some(Link { href: "/approvals".into(), text: "The approvals inbox".into() }),
    };
    render(StatusCode::NOT_FOUND, &page)
}
