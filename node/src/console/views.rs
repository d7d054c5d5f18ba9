//! What pages look like: the askama templates in `node/templates/` and the stylesheet.
//!
//! Every page extends `base.html`, which draws the [`Frame`]: the title, the nav, who is
//! signed in (with the sign-out button) and, when this node does not hold the quorum
//! lease, the banner saying so. Templates escape everything they print.

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::story::{Body, Item};

/// The banner of a node without the quorum lease (also the text of a 503 page).
pub const NO_QUORUM: &str = "This node does not hold the quorum lease: it cannot reach a majority of the cluster. \
What it shows may be stale, and it refuses decisions until the quorum is back; use another node's console meanwhile.";

/// What the layout shows around every page.
pub struct Frame {
    pub title: String,
    pub node_id: u64,
    /// Whether this node holds the quorum lease (no banner then).
    pub serving: bool,
    /// The signed-in user, if any (nav and sign-out are shown only then).
    pub user: Option<User>,
    /// Which nav entry is this page: `approvals`, `sessions`, `cluster`, `policies`.
    pub active: &'static str,
    /// Go on to this local path at once (after signing in).
    pub refresh: Option<String>,
}

impl Frame {
    /// The signed-in user's CSRF token, for the forms of the page.
    pub fn csrf(&self) -> &str {
        self.user.as_ref().map(|u| u.csrf.as_str()).unwrap_or_default()
    }
}

pub struct User {
    pub subject: String,
    pub csrf: String,
}

/// A link on a message page.
pub struct Link {
    pub href: String,
    pub text: String,
}

/// A page that says one thing: an error, a refusal, signed in, signed out, coming soon.
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub frame: Frame,
    pub heading: String,
    pub paragraphs: Vec<String>,
    pub link: Option<Link>,
}

/// One member on the cluster page.
pub struct NodeRow {
    pub id: u64,
    pub role: String,
    pub serving: bool,
    pub last_applied: u64,
    pub term: u64,
    pub raft_addr: String,
    pub admin_addr: String,
    pub is_leader: bool,
}

#[derive(Template)]
#[template(path = "cluster.html")]
pub struct ClusterPage {
    pub frame: Frame,
    pub leader: String,
    pub term: u64,
    pub nodes: Vec<NodeRow>,
}

/// One pending approval in the inbox.
pub struct ApprovalRow {
    pub id: String,
    pub requester: String,
    pub action: String,
    pub resource: String,
    pub node: u64,
    pub reason: String,
    pub approver_groups: String,
    pub votes: String,
    pub waited: String,
    /// The viewer is the requester: someone else must decide.
    pub own: bool,
}

#[derive(Template)]
#[template(path = "approvals.html")]
pub struct ApprovalsPage {
    pub frame: Frame,
    pub rows: Vec<ApprovalRow>,
    /// The outcome of the decision just made.
    pub notice: Option<String>,
}

/// The inbox's list alone: what `/approvals/events` sends on each change.
#[derive(Template)]
#[template(path = "approvals_list.html")]
pub struct ApprovalsList<'a> {
    pub rows: &'a [ApprovalRow],
    /// The viewer's CSRF token, for each row's decision form.
    pub csrf: &'a str,
}

/// One policy document in force.
pub struct PolicyRow {
    pub name: String,
    pub updated_by: String,
    /// When it was applied (UTC, RFC 3339).
    pub updated_at: String,
    pub source: String,
    /// Why the doors skip it, if it does not parse.
    pub invalid: Option<String>,
}

/// A resource the tester can try, with its door.
pub struct ResourceOption {
    pub name: String,
    pub door: &'static str,
}

/// The tester's form, as last sent (so a result shows what it answers).
#[derive(Default)]
pub struct TesterForm {
    pub subject: String,
    pub groups: String,
    pub resource: String,
    pub input: String,
}

/// What the tester found.
pub struct TesterResult {
    /// `allow`, `mask` (allowed, results masked), `review` or `deny`.
    pub decision: &'static str,
    /// One sentence for people.
    pub summary: String,
    /// The rules that decided, in order (`doc/rule`); empty for the default deny.
    pub rules: Vec<String>,
    /// The client-facing reason (deny, review).
    pub reason: Option<String>,
    /// Review only: approver groups, approvals needed, timeout.
    pub approvers: Option<String>,
    pub needed: u32,
    pub timeout: Option<String>,
    /// The mask plan: `columns: …`, `detectors: …`.
    pub masks: Vec<String>,
    /// What the door asks policy, one line per statement.
    pub requests: Vec<String>,
    /// The door refuses it itself.
    pub door_refusal: Option<String>,
    /// What the tester cannot know without a live session.
    pub caveats: Vec<String>,
}

#[derive(Template)]
#[template(path = "policies.html")]
pub struct PoliciesPage {
    pub frame: Frame,
    pub policies: Vec<PolicyRow>,
    pub resources: Vec<ResourceOption>,
    pub form: TesterForm,
    pub result: Option<TesterResult>,
    /// Why the tester could not answer (unknown resource, unreadable request line).
    pub problem: Option<String>,
}

/// One session in the search results, and the facts at the top of its page.
pub struct SessionRow {
    pub id: String,
    pub identity: String,
    pub resource: String,
    /// `postgres`, `ssh` or `http`.
    pub door: &'static str,
    pub node: u64,
    pub client: String,
    pub started: String,
    pub ended: String,
    /// `open`, `closed`, `failed` or `lost`.
    pub status: &'static str,
    pub events: u64,
}

/// An option of a select, with whether it is the one chosen.
pub struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "sessions.html")]
pub struct SessionsPage {
    pub frame: Frame,
    pub form: super::pages::sessions::SearchForm,
    pub doors: Vec<Choice>,
    pub statuses: Vec<Choice>,
    pub rows: Vec<SessionRow>,
    /// What was searched, and its bounds ("searched the newest N").
    pub note: String,
    /// Why the search could not run as asked (a time that does not parse).
    pub problem: Option<String>,
    /// The search was cut at its bound: "Started until" for the next, older page.
    pub older: Option<String>,
}

/// A recorded terminal of a session: replayed in the page, exported as asciicast.
pub struct Terminal {
    pub channel: u64,
    pub url: String,
}

#[derive(Template)]
#[template(path = "session.html")]
pub struct SessionPage {
    pub frame: Frame,
    pub session: SessionRow,
    pub backend_login: String,
    pub settings: Vec<String>,
    pub items: Vec<Item>,
    pub terminals: Vec<Terminal>,
}

/// `template` as an HTML response with `status`.
pub fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console: a page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page failed to render; see the node's log").into_response()
        }
    }
}

/// How long ago `then_ms` was, at `now_ms`, for people ("3 min 12 s").
pub fn waited(then_ms: u64, now_ms: u64) -> String {
    let secs = now_ms.saturating_sub(then_ms) / 1000;
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, (secs % 3600) / 60),
    }
}

/// Milliseconds since the epoch as UTC RFC 3339 to the second; `-` for 0 (unset).
pub fn utc(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

const STYLESHEET: &str = include_str!("../../assets/console.css");

/// `GET /assets/console.css`.
pub async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], STYLESHEET)
        .into_response()
}

#[cfg(test)]
mod tests;
