//! `portcullis dev demo-api`: the playground's HTTP backend, resource `demo-api`.
//!
//! A small, real HTTP/1.1 JSON API that `portcullis dev --http` starts as its own
//! process on loopback (see `http_api.rs`) and registers behind the HTTP door. It
//! stands where a company's internal API would: it wants a static key
//! (`Authorization: Bearer <key>`, the credential the gateway injects; 401 otherwise),
//! and it keeps its own record of every request that reached it, so tests can compare
//! what the gateway decided with what the backend saw (DESIGN §8: the backend is the
//! oracle).
//!
//! Routes:
//!
//! | route | what |
//! |-------|------|
//! | `GET /orders`, `GET /orders/{id}` | orders (`id`, `customer`, `email`, `amount`, `status`) |
//! | `POST /orders` | create; echoes the order with its new id (201) |
//! | `PUT`/`PATCH /orders/{id}` | replace / merge fields |
//! | `DELETE /orders/{id}` | delete |
//! | `POST /orders/{id}/refund` | `{"amount": N}` |
//! | `GET /profile` | an `email`, an `api_token`, a `session` JWT (masking tests) |
//! | any method `/echo/...` | method, path, query, headers and body as received |
//! | `GET /events?n=5&every_ms=100` | Server-Sent Events, each sent as it is produced |
//! | `GET /big?bytes=N[&chunked=1]` | N bytes, streamed |
//! | `GET /ws/echo` (WebSocket) | every message echoed back as it came, frame by frame |
//!
//! The request log (`--log FILE`, one JSON line per request, written when the request
//! has arrived and before it is answered) never holds the key: see [`log`].
//!
//! Layout: this file holds the process entry, the router and the gate every request
//! passes (read the body, log, check the key); `credential.rs` finds the key in a
//! request; `orders.rs` the orders and their handlers; `log.rs` the request log;
//! `stream.rs` the streaming routes; `websocket.rs` the WebSocket echo.

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine;
use serde_json::{Value, json};

use crate::error::NodeError;

mod credential;
mod log;
mod orders;
mod stream;
mod websocket;

pub use credential::{Credential, query_pairs};
pub use log::RequestLog;

/// Request bodies above this are refused with 413 (the demo has no use for more).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// `portcullis dev demo-api` (hidden): started by `portcullis dev --http`.
#[derive(clap::Args, Debug)]
pub struct DemoApiArgs {
    /// Address to listen on, `127.0.0.1:PORT`.
    #[arg(long)]
    pub listen: String,
    /// File holding the API key clients must present (a file, not an argument: a
    /// command line is visible to every user of the machine).
    #[arg(long)]
    pub key_file: PathBuf,
    /// The request log: one JSON line per request received, appended.
    #[arg(long)]
    pub log: PathBuf,
    /// Where the key is accepted: `bearer` (`Authorization: Bearer <key>`, the
    /// default), or `any` (also as a Basic password, any header's value or any query
    /// parameter's value: for trying the door's other credential kinds).
    #[arg(long, value_enum, default_value_t = Accept::Bearer)]
    pub accept: Accept,
}

/// Where a request may carry the key.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accept {
    Bearer,
    Any,
}

/// Run the demo API until SIGTERM or Ctrl-C.
pub async fn run(args: DemoApiArgs) -> Result<(), NodeError> {
    let key = std::fs::read_to_string(&args.key_file)
        .map_err(|e| NodeError::io(format!("read {}", args.key_file.display()), e))?
        .trim()
        .to_string();
    if key.is_empty() {
        return Err(NodeError::Dev(format!("{} is empty: the demo API needs a key", args.key_file.display())));
    }
    let log = RequestLog::open(&args.log, &key)?;
    let api = DemoApi::new(key, log, args.accept);
    let listener = tokio::net::TcpListener::bind(&args.listen).await.map_err(|source| NodeError::Bind {
        what: "demo API",
        addr: args.listen.clone(),
        source,
    })?;
    tracing::info!(listen = %args.listen, log = %args.log.display(), "demo API listening");
    serve(listener, api, terminated()).await
}

/// SIGTERM or Ctrl-C, whichever comes first.
async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            // Without a SIGTERM handler the default action (exit) still applies.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Serve `api` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: DemoApi,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    axum::serve(listener, router(api))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| NodeError::Server(format!("demo API: {e}")))
}

/// Every route, behind [`gate`].
pub fn router(api: DemoApi) -> Router {
    Router::new()
        .route("/orders", get(orders::list).post(orders::create))
        .route("/orders/{id}", get(orders::show).put(orders::replace).patch(orders::update).delete(orders::remove))
        .route("/orders/{id}/refund", post(orders::refund))
        .route("/profile", get(profile))
        .route("/echo", any(echo))
        .route("/echo/{*rest}", any(echo))
        .route("/events", get(stream::events))
        .route("/big", get(stream::big))
        .route("/ws/echo", get(websocket::echo))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(api.clone(), gate))
        .with_state(api)
}

// === impl DemoApi ===

/// The API's shared state: a cheap handle.
#[derive(Clone)]
pub struct DemoApi {
    inner: Arc<Inner>,
}

struct Inner {
    /// The key clients must present; compared, never logged.
    key: String,
    accept: Accept,
    log: RequestLog,
    orders: orders::Orders,
}

impl DemoApi {
    pub fn new(key: String, log: RequestLog, accept: Accept) -> Self {
        DemoApi { inner: Arc::new(Inner { key, accept, log, orders: orders::Orders::seeded() }) }
    }

    fn orders(&self) -> &orders::Orders {
        &self.inner.orders
    }

    /// Where this request carries the key, if it does.
    fn credential(&self, headers: &HeaderMap, query: Option<&str>) -> Credential {
        credential::find(&self.inner.key, headers, query)
    }
}

/// The numeric query parameter `name`, or `default` when absent; an error response
/// when it is not a number or above `max`.
fn number_param(query: Option<&str>, name: &str, default: u64, max: u64) -> Result<u64, Problem> {
    let Some((_, text)) = query_pairs(query.unwrap_or("")).into_iter().find(|(n, _)| n == name) else {
        return Ok(default);
    };
    match text.parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("query parameter {name} must be a number from 0 to {max}"),
        )),
    }
}

// === the gate ===

/// Every request passes here: read the body (bounded), append the log line, then
/// refuse it with 401 unless it carries the key.
async fn gate(State(api): State<DemoApi>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let credential = api.credential(&parts.headers, parts.uri.query());
    let body = axum::body::to_bytes(body, MAX_BODY).await;
    api.inner.log.record(&parts, body.as_ref().ok(), &credential);
    let Ok(body) = body else {
        return problem(StatusCode::PAYLOAD_TOO_LARGE, &format!("request bodies are limited to {MAX_BODY} bytes"));
    };
    let accepted = matches!(
        (api.inner.accept, &credential),
        (_, Credential::Bearer)
            | (Accept::Any, Credential::Basic { .. } | Credential::Header(_) | Credential::Query(_))
    );
    if !accepted {
        let mut response = problem(StatusCode::UNAUTHORIZED, "this API wants Authorization: Bearer <its API key>");
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// A refusal, answered as `application/problem+json` (a small error value: handlers
/// return `Result<_, Problem>`).
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    detail: String,
}

impl Problem {
    fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem { status, detail: detail.into() }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        problem(self.status, &self.detail)
    }
}

/// An `application/problem+json` answer.
fn problem(status: StatusCode, detail: &str) -> Response {
    let body =
        json!({"title": status.canonical_reason().unwrap_or("error"), "status": status.as_u16(), "detail": detail});
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/problem+json"));
    response
}

async fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "no such route; see GET /orders, /profile, /echo, /events, /big, /ws/echo")
}

// === profile and echo ===

/// A user profile whose fields the demo policy's detectors mask: an email, an API
/// token (`sk_live_…`), and a session JWT. None of them is the API's real key.
async fn profile() -> axum::Json<Value> {
    axum::Json(json!({
        "id": 7,
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "api_token": "sk_live_51HdemoNotARealKey0000000",
        "session": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEiLCJkZW1vIjp0cnVlfQ.c2lnbmF0dXJlLW5vdC1yZWFs",
        "plan": "enterprise",
    }))
}

/// What arrived, as received: method, path, query, every header (in order,
/// duplicates kept) and the body (text if UTF-8, else base64).
async fn echo(request: Request) -> Result<axum::Json<Value>, Problem> {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "body too large"))?;
    let headers: Vec<Value> = parts
        .headers
        .iter()
        .map(|(name, value)| json!([name.as_str(), String::from_utf8_lossy(value.as_bytes())]))
        .collect();
    let (text, base64) = match std::str::from_utf8(&body) {
        Ok(text) => (Some(text.to_string()), None),
        Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(&body))),
    };
    Ok(axum::Json(json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body": text,
        "body_base64": base64,
        "body_bytes": body.len(),
    })))
}

/// Handlers' streams never fail.
type Chunk = Result<Bytes, Infallible>;

#[cfg(test)]
mod tests;
