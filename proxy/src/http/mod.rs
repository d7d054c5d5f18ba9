//! The HTTP door: APIs through the gateway, a decision per request.
//!
//! A client calls `https://<node>/r/<resource>/<path>` (or, with a base domain
//! configured, `https://<resource>.<base domain>/<path>`) with `Authorization: Bearer
//! <token>`. The door walks the gate's phases for each request ([`exchange`]):
//! authenticate (the token; the header never reaches the backend), classify (method,
//! path, query, body), decide, hold (a review waits for an approver), audit (strict: the
//! request's record is committed before a write is relayed, before a read's response is
//! released), relay to the resource's base URL with the resource's own credential
//! injected ([`credential`], [`upstream`]), mask what comes back ([`body`]), record.
//!
//! - [`auth`]: the caller's token, verified once per connection.
//! - [`door`]: TLS (ALPN `h2`, `http/1.1`) and hyper's server, per connection.
//! - [`route`]: which resource a request is for, and the path under it.
//! - [`headers`]: hop-by-hop headers removed, `X-Forwarded-*` set, framing checked.
//! - [`inspect`]: the request body read as JSON for policy (`match.json`), strictly.
//! - [`reply`]: refusals as `application/problem+json`.
//! - [`deferred`]: `Prefer: respond-async` (202, then the request repeated with its
//!   approval) and `GET /approvals/<id>`.
//! - [`websocket`]: WebSocket upgrades, decided at the upgrade; their messages recorded.
//! - [`pool`]: keep-alive connections to the backends, per resource.
//! - [`idle_flush`]: result records handed over once a connection goes quiet.

pub mod auth;
pub mod body;
pub mod credential;
pub mod deferred;
pub mod door;
pub mod exchange;
pub mod headers;
pub mod idle_flush;
pub mod inspect;
pub mod pool;
pub mod reply;
pub mod route;
pub mod settings;
pub mod upstream;
pub mod websocket;

pub use door::{HttpDoor, serve};
pub use settings::HttpSettings;
