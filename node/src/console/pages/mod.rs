//! The console's pages, one file each; the small ones live here.

pub mod approvals;
pub mod cluster;
pub mod policies;
pub mod session;
pub mod sessions;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::Console;
use super::viewer::anonymous_frame;
use super::views::{Link, MessagePage, render};

/// `GET /`: the inbox is what people come for.
pub async fn home() -> Response {
    Redirect::to("/approvals").into_response()
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
