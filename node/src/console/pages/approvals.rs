//! The approvals inbox: `GET /approvals` lists what waits for the viewer's decision;
//! `POST /approvals/{id}/decide` approves or denies one, with a reason.
//!
//! The list and the decision are the admin API's (`ListApprovals`, `Approve`, `Deny`):
//! an approver sees what their groups may decide, and the state machine refuses
//! self-approval and the wrong groups with its own message. Who may open the inbox at
//! all is the console's one check: admins, auditors, and members of a group that a
//! policy in force names as approvers.

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use portcullis_api::proto::admin_server::Admin;
use portcullis_api::proto::{ApprovalStatus, DecideRequest, ListApprovalsRequest};
use portcullis_raft::model::now_millis;
use serde::Deserialize;

use crate::console::Console;
use crate::console::admin::{csrf_refused, refusal, request};
use crate::console::session::BrowserSession;
use crate::console::viewer::{Viewer, percent_encode};
use crate::console::views::{ApprovalRow, ApprovalsPage, Link, MessagePage, NO_QUORUM, render, waited};

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
    let call = request(&viewer.session, ListApprovalsRequest { pending_only: true });
    let approvals = match console.deps().admin.list_approvals(call).await {
        Ok(reply) => reply.into_inner().approvals,
        Err(status) => return refusal(&console, &viewer, &status, "The approvals inbox", "the approver role"),
    };
    let now = now_millis();
    let rows = approvals
        .into_iter()
        .map(|a| ApprovalRow {
            own: a.requester == viewer.session.subject,
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
        .collect();
    let notice = match (q.decided, q.outcome.as_deref()) {
        (Some(id), Some("approved")) => Some(format!("Approved {id}; the request it held goes ahead.")),
        (Some(id), Some("denied")) => Some(format!("Denied {id}; the request it held is refused.")),
        (Some(id), Some("recorded")) => Some(format!("Your approval of {id} is recorded; it needs more approvers.")),
        _ => None,
    };
    render(StatusCode::OK, &ApprovalsPage { frame: viewer.frame(&console, "Approvals", "approvals"), rows, notice })
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
