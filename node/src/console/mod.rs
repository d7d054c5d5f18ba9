//! The web console: pages for the people around the gateway (approvers, auditors,
//! admins), served by every node.
//!
//! It sits beside the admin gRPC API, not in front of it: each page calls the node's
//! own [`AdminService`] in-process with the signed-in user's token, so roles, refusals
//! and their wording are exactly the CLI's. A node without the quorum lease shows a
//! banner on every page and refuses decisions, as its doors fail closed.
//!
//! ```text
//! browser ──HTTPS (node cert)──▶ listener ──▶ router ──▶ headers (CSP, nosniff, no-store)
//!   /auth/sign-in ─▶ provider (code + PKCE) ─▶ /auth/callback ─▶ session cookie
//!   /approvals, /sessions, /cluster, /policies ─▶ Viewer (cookie → session) ─▶ Admin trait call (Bearer token)
//!   /approvals/events ─▶ SSE: on each applied approval change, the inbox list again
//! ```
//!
//! ## Layout
//! - [`listener`]: TLS accept with each handshake in its own bounded task (axum
//!   `serve::Listener`).
//! - [`headers`]: the security headers every response carries.
//! - [`session`]: browser sessions (server-side, bounded, expiring with the token),
//!   their cookie and CSRF token.
//! - [`pkce`]: sign-ins in flight: state, nonce and PKCE verifier kept server side.
//! - [`oidc`]: the provider: discovery, the code exchange, the ID token's nonce.
//! - [`signin`]: `/auth/sign-in`, `/auth/callback`, `/auth/sign-out`.
//! - [`viewer`]: the signed-in user of a request (an axum extractor).
//! - [`admin`]: calls into the admin service as the viewer; gRPC status → page.
//! - [`pages`]: one file per page.
//! - [`story`]: a session's events read as a story (units of work and their outcomes),
//!   for the session page.
//! - [`views`]: the askama templates (`node/templates/`) and the CSS.
//! - [`assets`]: the console's script and the embedded third-party ones (htmx,
//!   asciinema-player), from the npm registry through `scripts/install-deps.sh`.

pub mod admin;
pub mod assets;
pub mod headers;
pub mod listener;
pub mod oidc;
pub mod pages;
pub mod pkce;
pub mod session;
pub mod signin;
pub mod story;
pub mod viewer;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use portcullis_api::AdminService;
use portcullis_api::auth::Roles;
use portcullis_proxy::identity::Verifier;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The groups that policies in force name as approvers (read fresh for each request).
pub type ApproverGroups = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// What the console needs from its node.
pub struct ConsoleDeps {
    pub node_id: u64,
    /// The node's admin service, shared with its gRPC server.
    pub admin: Arc<AdminService>,
    /// The node's token verifier (the one the doors and the admin API use).
    pub verifier: Arc<Verifier>,
    /// Which groups hold the admin API's roles.
    pub roles: Roles,
    /// Who may open the approvals inbox besides admins and auditors.
    pub approver_groups: ApproverGroups,
    /// Whether this node holds the quorum lease.
    pub serving: watch::Receiver<bool>,
    /// Bumped whenever an approval is created or decided (applied on this node, from
    /// whichever node it came): what the live inbox watches.
    pub approvals: watch::Receiver<u64>,
    /// The node's shutdown: live streams end with it, so the console can stop.
    pub shutdown: CancellationToken,
    /// The provider's client for the console.
    pub oidc: oidc::OidcClient,
}

/// The shared state of every handler: a cheap handle.
#[derive(Clone)]
pub struct Console(Arc<Inner>);

pub struct Inner {
    pub deps: ConsoleDeps,
    pub sessions: session::Sessions,
    pub logins: pkce::PendingLogins,
}

impl Console {
    pub fn new(deps: ConsoleDeps) -> Self {
        Console(Arc::new(Inner {
            deps,
            sessions: session::Sessions::new(session::MAX_SESSIONS),
            logins: pkce::PendingLogins::new(pkce::MAX_PENDING, pkce::SIGN_IN_TTL),
        }))
    }

    pub fn deps(&self) -> &ConsoleDeps {
        &self.0.deps
    }

    pub fn sessions(&self) -> &session::Sessions {
        &self.0.sessions
    }

    pub fn logins(&self) -> &pkce::PendingLogins {
        &self.0.logins
    }

    /// Whether this node holds the quorum lease now.
    pub fn serving(&self) -> bool {
        *self.0.deps.serving.borrow()
    }
}

/// Every route of the console.
pub fn router(console: Console) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/approvals", get(pages::approvals::inbox))
        .route("/approvals/events", get(pages::approvals::events))
        .route("/approvals/{id}/decide", post(pages::approvals::decide))
        .route("/cluster", get(pages::cluster::show))
        .route("/sessions", get(pages::sessions::search))
        .route("/sessions/{id}", get(pages::session::show))
        .route("/sessions/{id}/export.jsonl", get(pages::session::export_jsonl))
        .route("/sessions/{id}/recording/{file}", get(pages::session::recording))
        .route("/policies", get(pages::policies::show))
        .route("/policies/test", post(pages::policies::test))
        .route("/auth/sign-in", get(signin::start))
        .route("/auth/callback", get(signin::callback))
        .route("/auth/sign-out", post(signin::sign_out))
        .route("/assets/console.css", get(views::stylesheet))
        .route("/assets/console.js", get(assets::console_js))
        .route("/assets/vendor/{name}", get(assets::vendor))
        .fallback(pages::not_found)
        .layer(axum::middleware::map_response(headers::secure))
        .with_state(console)
}

/// Serve the console on `listener` until `shutdown`, then let open requests finish.
pub async fn serve(listener: listener::TlsListener, console: Console, shutdown: CancellationToken) {
    let app = router(console);
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
        tracing::error!(error = %e, "console stopped");
    }
}
