//! The approvals inbox: `GET /approvals` lists what waits for the viewer's decision;
//! `POST /approvals/{id}/decide` approves or denies one, with a reason.
//!
//! The list and the decision are the admin API's (`ListApprovals`, `Approve`, `Deny`):
//! an approver sees what their groups may decide, and the state machine refuses
//! self-approval and the wrong groups with its own message. Who may open the inbox at
//! all is the console's one check: admins, auditors, and members of a group that a
//! policy in force names as approvers.
//!
//! `GET /approvals/events` keeps the inbox live (Server-Sent Events): it watches this
//! node's approval notifications, which fire when an approval is created or decided
//! and applied here, whichever node it came through, and then lists the pending
//! approvals again as the viewer and sends the list (event `inbox`) for htmx's SSE
//! extension to swap in. A stream ends with its browser session (sign-out, expiry, a
//! refused token) and with the node; a session holds at most
//! [`MAX_STREAMS_PER_SESSION`] of them; a comment every 15 s keeps proxies from
//! closing an idle one.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use portcullis_api::proto::admin_server::Admin;
use portcullis_api::proto::{ApprovalStatus, DecideRequest, ListApprovalsRequest};
use portcullis_raft::model::now_millis;
use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use crate::console::Console;
use crate::console::admin::{csrf_refused, refusal, request};
use crate::console::session::{BrowserSession, MAX_STREAMS_PER_SESSION, StreamPermit, now_secs};
use crate::console::viewer::{Viewer, percent_encode};
use crate::console::views::{ApprovalRow, ApprovalsList, ApprovalsPage, Link, MessagePage, NO_QUORUM, render, waited};

/// How often an idle stream sends a comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Deserialize)]
pub struct InboxQuery {
    decided: Option<String>,
    outcome: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct DecideForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    reason: String,
}

/// Whether `session`'s user may open the inbox; else what they lack.
fn may_open(console: &Console, session: &BrowserSession) -> Result<(), String> {
    let roles = &console.deps().roles;
    let holds = |groups: &[String]| session.groups.iter().any(|g| groups.contains(g));
    if holds(&roles.admin_groups) || holds(&roles.auditor_groups) {
        return Ok(());
    }
    let mut approvers = (console.deps().approver_groups)();
    approvers.sort();
    approvers.dedup();
    if holds(&approvers) {
        return Ok(());
    }
    let named = if approvers.is_empty() { "none yet".to_string() } else { approvers.join(", ") };
    Err(format!(
        "The approvals inbox needs the approver role: a group that a policy names as approvers ({named}), or an admin or auditor group ({}). {} is in [{}].",
        roles.admin_groups.iter().chain(&roles.auditor_groups).cloned().collect::<Vec<_>>().join(", "),
        session.subject,
        session.groups.join(", ")
    ))
}

/// `GET /approvals`.
pub async fn inbox(State(console): State<Console>, viewer: Viewer, Query(q): Query<InboxQuery>) -> Response {
    if let Err(missing) = may_open(&console, &viewer.session) {
        let page = MessagePage {
            frame: viewer.frame(&console, "Permission denied", "approvals"),
            heading: "Permission denied".into(),
            paragraphs: vec![missing],
            link: None,
        };
        return render(StatusCode::FORBIDDEN, &page);
    }
    let rows = match pending(&console, &viewer.session).await {
        Ok(rows) => rows,
        Err(status) => return refusal(&console, &viewer, &status, "The approvals inbox", "the approver role"),
    };
    let notice = match (q.decided, q.outcome.as_deref()) {
        (Some(id), Some("approved")) => Some(format!("Approved {id}; the request it held goes ahead.")),
        (Some(id), Some("denied")) => Some(format!("Denied {id}; the request it held is refused.")),
        (Some(id), Some("recorded")) => Some(format!("Your approval of {id} is recorded; it needs more approvers.")),
        _ => None,
    };
    render(StatusCode::OK, &ApprovalsPage { frame: viewer.frame(&console, "Approvals", "approvals"), rows, notice })
}

/// The pending approvals `session`'s user may see, as the inbox shows them.
async fn pending(console: &Console, session: &BrowserSession) -> Result<Vec<ApprovalRow>, Status> {
    let call = request(session, ListApprovalsRequest { pending_only: true });
    let approvals = console.deps().admin.list_approvals(call).await?.into_inner().approvals;
    let now = now_millis();
    Ok(approvals
        .into_iter()
        .map(|a| ApprovalRow {
            own: a.requester == session.subject,
            votes: format!("{} of {} approvals", a.votes.iter().filter(|v| v.approve).count(), a.approvals_needed),
            waited: waited(a.created_at_ms, now),
            approver_groups: a.approver_groups.join(", "),
            id: a.id,
            requester: a.requester,
            action: a.action,
            resource: a.resource,
            node: a.node,
            reason: a.reason,
        })
        .collect())
}

/// `GET /approvals/events`: the inbox list, again on every approval change.
///
/// Refusals are plain statuses, not pages or redirects: the browser's `EventSource`
/// gives up on a non-200 answer instead of reconnecting in a loop.
pub async fn events(State(console): State<Console>, viewer: Result<Viewer, Response>) -> Response {
    let Ok(viewer) = viewer else {
        return (StatusCode::UNAUTHORIZED, "not signed in to this console\n").into_response();
    };
    if let Err(missing) = may_open(&console, &viewer.session) {
        return (StatusCode::FORBIDDEN, format!("{missing}\n")).into_response();
    }
    let Some(permit) = StreamPermit::take(&viewer.session, MAX_STREAMS_PER_SESSION) else {
        let message = format!(
            "this sign-in already has {MAX_STREAMS_PER_SESSION} live inboxes open; close a tab, or reload to look again\n"
        );
        return (StatusCode::TOO_MANY_REQUESTS, message).into_response();
    };
    tracing::debug!(subject = %viewer.session.subject, "console: live inbox opened");
    let mut changes = console.deps().approvals.clone();
    // The first list goes out at once: whatever changed since the page was rendered.
    changes.mark_changed();
    let live = LiveInbox {
        shutdown: console.deps().shutdown.clone(),
        console,
        session: viewer.session,
        changes,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(live, |mut live| async move {
        let event = live.next().await?;
        Some((Ok::<Event, Infallible>(event), live))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response()
}

/// One browser's live inbox (one SSE stream).
struct LiveInbox {
    console: Console,
    session: Arc<BrowserSession>,
    /// This node's approval notifications.
    changes: watch::Receiver<u64>,
    shutdown: CancellationToken,
    /// Its place among the session's streams, freed when the stream is dropped.
    _permit: StreamPermit,
}

// === impl LiveInbox ===

impl LiveInbox {
    /// The next list to send, after the next change; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            let expires_in = Duration::from_secs(self.session.expires_at.saturating_sub(now_secs()));
            tokio::select! {
                changed = self.changes.changed() => changed.ok()?,
                _ = self.session.ended.cancelled() => return None,
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(expires_in) => return None,
            }
            match pending(&self.console, &self.session).await {
                Ok(rows) => {
                    let list = ApprovalsList { rows: &rows, csrf: &self.session.csrf };
                    match list.render() {
                        Ok(html) => return Some(Event::default().event("inbox").data(html)),
                        Err(e) => tracing::error!(error = %e, "console: the inbox list failed to render"),
                    }
                }
                // Signed out in effect (token refused) or no longer allowed: the stream ends.
                Err(status) if matches!(status.code(), Code::Unauthenticated | Code::PermissionDenied) => {
                    tracing::info!(subject = %self.session.subject, code = ?status.code(), "console: live inbox closed: refused");
                    return None;
                }
                // No quorum, a slow leader: keep the stream, try again at the next change.
                Err(status) => {
                    tracing::debug!(code = ?status.code(), message = status.message(), "console: live inbox not refreshed");
                }
            }
        }
    }
}

/// `POST /approvals/{id}/decide`.
pub async fn decide(
    State(console): State<Console>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<DecideForm>,
) -> Response {
    if !viewer.session.csrf_matches(form.csrf.as_deref()) {
        tracing::info!(subject = %viewer.session.subject, approval = %id, "console: decision refused: CSRF check failed");
        return csrf_refused(&console, &viewer);
    }
    if !console.serving() {
        let page = MessagePage {
            frame: viewer.frame(&console, "Not decided", "approvals"),
            heading: "Not decided".into(),
            paragraphs: vec![NO_QUORUM.into()],
            link: Some(Link { href: "/approvals".into(), text: "Back to the approvals inbox".into() }),
        };
        return render(StatusCode::SERVICE_UNAVAILABLE, &page);
    }
    let call = request(&viewer.session, DecideRequest { id: id.clone(), reason: form.reason.trim().to_string() });
    let admin = &console.deps().admin;
    let result = match form.decision.as_str() {
        "approve" => admin.approve(call).await,
        "deny" => admin.deny(call).await,
        _ => {
            let page = MessagePage {
                frame: viewer.frame(&console, "Not decided", "approvals"),
                heading: "Not decided".into(),
                paragraphs: vec!["Choose approve or deny.".into()],
                link: Some(Link { href: "/approvals".into(), text: "Back to the approvals inbox".into() }),
            };
            return render(StatusCode::BAD_REQUEST, &page);
        }
    };
    match result {
        Ok(reply) => {
            let status = reply.into_inner().approval.map(|a| a.status()).unwrap_or(ApprovalStatus::Unspecified);
            let outcome = match status {
                ApprovalStatus::Approved => "approved",
                ApprovalStatus::Denied => "denied",
                _ => "recorded",
            };
            tracing::info!(subject = %viewer.session.subject, approval = %id, outcome, "console: decision");
            Redirect::to(&format!("/approvals?decided={}&outcome={outcome}", percent_encode(&id))).into_response()
        }
        Err(status) => refusal(&console, &viewer, &status, "Deciding approvals", "an approver group of this request"),
    }
}
