//! One request through the gate's phases: authenticate, classify, decide, hold, audit,
//! relay, mask, record.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use portcullis_raft::command::Op;
use portcullis_raft::model::{Protocol as ResourceProtocol, Resource, SessionStatus, now_millis};

use super::auth::{self, LastToken};
use super::body::{self, ChannelBody, Masking};
use super::credential::Credential;
use super::deferred;
use super::door::HttpDoor;
use super::headers;
use super::inspect;
use super::pool::Destination;
use super::reply::{self, ResponseBody, problem};
use super::route;
use super::upstream::Base;
use super::websocket::{self, Tunnels};
use crate::gate::{Door, Effect, GateSession, GaveUp, OutputRecord, Refusal, ResultRecord, Waiting, Work};
use crate::identity::Identity;
use crate::policy::{JsonBody, Protocol, Request as PolicyRequest};
use crate::store::Store;

/// A client connection's state: its sessions in the index, one per identity and
/// resource it used.
pub struct Connection<S: Store> {
    pub door: Arc<HttpDoor<S>>,
    pub peer: SocketAddr,
    sessions: tokio::sync::Mutex<Sessions<S>>,
    /// Responses still streaming (each records its result when its body ends).
    relays: Mutex<tokio::task::JoinSet<()>>,
    /// Open WebSockets (see [`websocket`]); the door waits for them before [`close`](Self::close).
    pub websockets: Tunnels,
    /// The last token verified on this connection (checked once, not per request).
    token: LastToken,
    /// Notified after each request is audited and each response recorded (see
    /// [`super::idle_flush`]).
    pub recorded: Arc<tokio::sync::Notify>,
}

/// By identity (subject) and resource; a connection has one or a few, found without
/// forming a key.
type Sessions<S> = Vec<((String, String), Arc<GateSession<S>>)>;

impl<S: Store> Connection<S> {
    pub fn new(door: Arc<HttpDoor<S>>, peer: SocketAddr) -> Self {
        Connection {
            door,
            peer,
            sessions: tokio::sync::Mutex::default(),
            relays: Mutex::default(),
            websockets: Tunnels::default(),
            token: LastToken::default(),
            recorded: Arc::default(),
        }
    }

    /// The sessions open on this connection now.
    pub async fn sessions_now(&self) -> Vec<Arc<GateSession<S>>> {
        self.sessions.lock().await.iter().map(|(_, s)| s.clone()).collect()
    }

    async fn session(&self, identity: &Identity, resource: &Resource) -> crate::error::Result<Arc<GateSession<S>>> {
        let mut sessions = self.sessions.lock().await;
        let found = sessions.iter().find(|((who, what), _)| *who == identity.subject && *what == resource.name);
        if let Some((_, s)) = found {
            return Ok(s.clone());
        }
        let key = (identity.subject.clone(), resource.name.clone());
        let slot = self.door.gate.reserve(&identity.subject)?;
        let opening = crate::gate::Opening {
            identity: identity.clone(),
            resource: resource.clone(),
            protocol: Protocol::Http,
            client_addr: self.peer.to_string(),
            // The connection's idle flush (`super::idle_flush`) is woken after each
            // request is audited and after each response is recorded.
            flushes_when_idle: true,
        };
        let session = Arc::new(self.door.gate.open(opening, slot).await?);
        sessions.push((key, session.clone()));
        Ok(session)
    }

    /// The connection ended: its responses finish streaming and record (bounded), then
    /// its sessions close in the index.
    pub async fn close(&self) {
        let mut relays = std::mem::take(&mut *self.relays.lock().unwrap_or_else(|p| p.into_inner()));
        let finished = tokio::time::timeout(RELAYS_FINISH, async { while relays.join_next().await.is_some() {} }).await;
        if finished.is_err() {
            tracing::warn!(peer = %self.peer, "http responses still streaming after the connection ended; stopping them");
            relays.shutdown().await;
        }
        let sessions: Vec<_> = self.sessions.lock().await.drain(..).map(|(_, s)| s).collect();
        for session in sessions {
            match Arc::into_inner(session) {
                Some(s) => s.close(SessionStatus::Closed).await,
                None => {
                    tracing::warn!(peer = %self.peer, "http session still in use at close; its end is not recorded")
                }
            }
        }
    }
}

/// How long a closed connection's responses get to finish (their result records).
const RELAYS_FINISH: std::time::Duration = std::time::Duration::from_secs(10);

/// Methods that only read (their results wait for the record in strict mode; others are
/// recorded before they are relayed).
fn reads(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The client side of a hold: an HTTP client cannot be told anything before the
/// response, and hyper drops the request's future when the client goes away; the guard
/// below then withdraws the approval.
struct HttpClient {
    approval: Arc<Mutex<Option<String>>>,
}

impl Door for HttpClient {
    async fn tell_waiting(&mut self, waiting: &Waiting<'_>) -> crate::error::Result<()> {
        *self.approval.lock().unwrap_or_else(|p| p.into_inner()) = Some(waiting.approval.to_string());
        Ok(())
    }

    async fn gave_up(&mut self) -> GaveUp {
        std::future::pending().await
    }
}

/// Withdraws a pending approval if the request's future is dropped while it is held,
/// and records the refusal (the gate cannot: its future was dropped with the request's).
struct WithdrawOnDrop<S: Store> {
    session: Arc<GateSession<S>>,
    work: Work,
    approval: Arc<Mutex<Option<String>>>,
    armed: bool,
}

impl<S: Store> Drop for WithdrawOnDrop<S> {
    fn drop(&mut self) {
        let held = self.approval.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let (true, Some(id)) = (self.armed, held) {
            let (session, work) = (self.session.clone(), self.work.clone());
            tokio::spawn(async move {
                let withdraw = Op::WithdrawApproval {
                    id: id.clone(),
                    at: now_millis(),
                    reason: Some("the client went away".into()),
                };
                if let Err(e) = session.store().submit(withdraw).await {
                    tracing::warn!(approval = %id, error = %e, "could not withdraw an abandoned approval");
                }
                session.refused(&work, None, &Refusal::ClientGoneWhileHeld { approval: id }).await;
            });
        }
    }
}

/// Phases decide and hold for a client that waits: a review holds the request (an HTTP
/// client can be told nothing until the response); if the request's future is dropped
/// meanwhile (the client went away), the guard withdraws the approval and records it.
pub(super) async fn clear_waiting<S: Store>(
    session: &Arc<GateSession<S>>,
    work: &Work,
    judgement: crate::gate::Judgement,
) -> Result<crate::gate::Cleared, Response<ResponseBody>> {
    let approval = Arc::new(Mutex::new(None));
    let mut guard =
        WithdrawOnDrop { session: session.clone(), work: work.clone(), approval: approval.clone(), armed: true };
    let mut client = HttpClient { approval };
    let cleared = session.clear(&mut client, work, judgement).await;
    guard.armed = false;
    match cleared {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(refusal)) => Err(reply::refusal(&refusal)),
        Err(e) => Err(problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), None)),
    }
}

/// The host the client addressed: the request target's authority (HTTP/2
/// `:authority`, an HTTP/1.1 absolute URI) or its `Host` header. Two that disagree, or
/// several `Host` headers, are refused: the route must not depend on which one is read.
fn authority_of<B>(req: &Request<B>) -> Result<Option<String>, &'static str> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err("more than one Host header"),
        (Some(v), None) => Some(v.to_str().map_err(|_| "a Host header that is not text")?),
        (None, _) => None,
    };
    match (req.uri().authority().map(|a| a.as_str()), host) {
        (Some(a), Some(h)) if !a.eq_ignore_ascii_case(h) => Err("the Host header and the request target disagree"),
        (Some(a), _) => Ok(Some(a.to_string())),
        (None, h) => Ok(h.map(str::to_string)),
    }
}

/// How much of a body policy's `match.text` sees (and the approval preview is cut from).
const BODY_TEXT_BYTES: usize = 64 * 1024;

/// The body as policy's `match.json` reads it: absent, parsed (only when a rule reads
/// JSON, up to `max` bytes), or unreadable (which counts against `allow` rules).
pub fn json_for_policy(body: &[u8], reads_json: bool, max: usize) -> JsonBody {
    if body.is_empty() {
        JsonBody::Absent
    } else if reads_json {
        inspect::json_body(body, max)
    } else {
        // No rule reads it (were one applied meanwhile, it would find the body in doubt).
        JsonBody::Unreadable
    }
}

/// Phase "classify": the policy request for `method` on `under` (the path under the
/// resource) with `query` and `body`; the console's tester builds it the same way.
pub fn policy_request(
    resource: &str,
    method: &Method,
    under: &str,
    query: &str,
    body: &[u8],
    json: JsonBody,
) -> PolicyRequest {
    let line = if query.is_empty() { format!("{method} {under}") } else { format!("{method} {under}?{query}") };
    let body_text = String::from_utf8_lossy(body.get(..body.len().min(BODY_TEXT_BYTES)).unwrap_or_default());
    PolicyRequest {
        resource: resource.to_string(),
        protocol: Protocol::Http,
        kind: method.as_str().to_ascii_lowercase(),
        tables: Vec::new(),
        functions: Vec::new(),
        commands: Vec::new(),
        path: Some(under.to_string()),
        text: if body.is_empty() { line } else { format!("{line}\n{body_text}") },
        missing_where: false,
        dynamic_sql: false,
        locks_rows: false,
        json,
        writes: !reads(method),
    }
}

/// Handle one request.
pub async fn handle<S: Store>(conn: Arc<Connection<S>>, req: Request<Incoming>) -> Response<ResponseBody> {
    let door = &conn.door;
    let settings = &door.settings;
    let store = door.gate.store();
    // --- authenticate (and the checks that need no identity)
    if !store.is_serving() {
        return reply::refusal(&Refusal::LeaseLost);
    }
    if let Some(why) = headers::ambiguous_framing(req.headers()) {
        return problem(StatusCode::BAD_REQUEST, &format!("refused: {why} (ambiguous message framing)"), None);
    }
    let header_bytes: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if req.headers().len() > settings.max_headers || header_bytes > settings.max_header_bytes {
        return problem(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!("at most {} headers and {} bytes of them", settings.max_headers, settings.max_header_bytes),
            None,
        );
    }
    if let Some(id) = req.uri().path().strip_prefix("/approvals/")
        && req.method() == Method::GET
    {
        let query = req.uri().query().unwrap_or_default();
        return deferred::status(store.as_ref(), &door.verifier, req.headers(), id, query).await;
    }
    let authority = match authority_of(&req) {
        Ok(a) => a,
        Err(why) => return problem(StatusCode::BAD_REQUEST, &format!("refused: {why}"), None),
    };
    let Some(route::Route { resource: resource_name, path: under }) =
        route::route(authority.as_deref(), req.uri().path(), settings.base_domain.as_deref())
    else {
        let hint = match &settings.base_domain {
            Some(base) => format!("requests go to https://<resource>.{base}/<path> or /r/<resource>/<path>"),
            None => "requests go to /r/<resource>/<path>".to_string(),
        };
        return problem(StatusCode::NOT_FOUND, &hint, None);
    };
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    let identity = match conn.token.identity(&token, auth::now_secs(), door.verifier.verify(&token)).await {
        Ok(identity) => identity,
        Err(e) => {
            let mut r = problem(StatusCode::UNAUTHORIZED, &e.to_string(), None);
            r.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer realm=\"portcullis\""));
            return r;
        }
    };
    let resource = match store.resource(&resource_name) {
        Ok(Some(r)) if r.protocol == ResourceProtocol::Http => r,
        _ => return problem(StatusCode::NOT_FOUND, &format!("no HTTP resource named {resource_name}"), None),
    };
    let session = match conn.session(&identity, &resource).await {
        Ok(s) => s,
        Err(e) => {
            return problem(StatusCode::SERVICE_UNAVAILABLE, &format!("the session could not be recorded: {e}"), None);
        }
    };
    // --- a WebSocket upgrade: decided at the upgrade, then a tunnel (websocket.rs)
    if websocket::is_upgrade(&req) {
        return websocket::handle(&conn, session, Arc::unwrap_or_clone(resource), under, req).await;
    }
    // --- the body, bounded
    let (parts, body) = req.into_parts();
    let max = resource
        .options
        .get("max_body_bytes")
        .and_then(|m| m.parse::<usize>().ok())
        .map_or(settings.max_body_bytes, |m| m.min(settings.max_body_bytes));
    let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request bodies are limited to {max} bytes here"),
            None,
        );
    }
    let collected = tokio::time::timeout(settings.body_timeout, Limited::new(body, max).collect()).await;
    let Ok(collected) = collected else {
        let secs = settings.body_timeout.as_secs();
        return problem(StatusCode::REQUEST_TIMEOUT, &format!("the request body did not arrive within {secs} s"), None);
    };
    let body = match collected {
        Ok(b) => b.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request bodies are limited to {max} bytes here"),
                None,
            );
        }
        Err(e) => return problem(StatusCode::BAD_REQUEST, &format!("the request body could not be read: {e}"), None),
    };
    // --- classify
    let method = parts.method.clone();
    let query = parts.uri.query().unwrap_or_default().to_string();
    // The body as policy's `match.json` reads it: these same bytes are relayed below.
    let reads_json = door.gate.policies().is_ok_and(|p| p.reads_json());
    let json = json_for_policy(&body, reads_json, settings.max_json_inspect_bytes);
    let request = policy_request(&resource.name, &method, &under, &query, &body, json);
    let line = if query.is_empty() { format!("{method} {under}") } else { format!("{method} {under}?{query}") };
    let body_text =
        String::from_utf8_lossy(body.get(..body.len().min(BODY_TEXT_BYTES)).unwrap_or_default()).into_owned();
    // --- decide, hold, audit
    if let Err(refusal) = session.check_lease() {
        return reply::refusal(&refusal);
    }
    // A client that will not wait, or that repeats a request it was told to wait for.
    let presented = match deferred::presented_approval(&parts.headers) {
        Ok(p) => p,
        Err(why) => return problem(StatusCode::BAD_REQUEST, &format!("refused: {why}"), None),
    };
    let not_waiting = deferred::prefers_async(&parts.headers);
    let digest = (presented.is_some() || not_waiting)
        .then(|| deferred::request_digest(&resource.name, &method, &under, &query, &body));
    let judgement = match session.decide(std::slice::from_ref(&request)) {
        Ok(j) => j,
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), None),
    };
    let work = Work::Http {
        line: line.as_str().into(),
        headers: headers::for_record(&parts.headers, &judgement.masks, &[]),
        body_bytes: body.len() as u64,
        body_sha256: if body.is_empty() { String::new() } else { crate::gate::record::sha256_hex_bytes(&body) },
        body_preview: body::masked_preview(&judgement.masks, &body_text, settings.preview_bytes),
    };
    let cleared = match (presented, digest) {
        (Some(id), Some(digest)) => match session.use_approval(&work, judgement, &id, &digest).await {
            Ok(c) => c,
            Err(refusal) => return reply::refusal(&refusal),
        },
        (None, Some(digest)) => match session.defer(&work, judgement, digest).await {
            Ok(c) => c,
            Err(refusal) => return reply::refusal(&refusal),
        },
        _ => match clear_waiting(&session, &work, judgement).await {
            Ok(c) => c,
            Err(response) => return response,
        },
    };
    let effect = if reads(&method) { Effect::Reads } else { Effect::Writes };
    let mut permit = match session.audit(&[(&work, &cleared)], effect).await {
        Ok(p) => p,
        Err(refusal) => return reply::refusal(&refusal),
    };
    conn.recorded.notify_one();
    // --- relay (with the permit)
    let started = Instant::now();
    let secret = match resource.secret.as_ref().map(|s| store.open_secret(s)).transpose() {
        Ok(s) => s,
        Err(e) => return problem(StatusCode::BAD_GATEWAY, &format!("the resource's credential: {e}"), None),
    };
    let relayed = async {
        let credential = Credential::of(&resource, secret)?;
        let base = Base::parse(&resource.address)?;
        // The host the client addressed (HTTP/2 sends no Host header, only `:authority`).
        let mut backend_headers =
            headers::for_backend(&parts.headers, &base.authority(), &conn.peer.ip().to_string(), authority.as_deref());
        let mut backend_query = query.clone();
        credential.apply(&mut backend_headers, &mut backend_query)?;
        let target = if backend_query.is_empty() {
            format!("{}{under}", base.prefix)
        } else {
            format!("{}{under}?{backend_query}", base.prefix)
        };
        let mut upstream_req = http::Request::new(Full::new(body.clone()));
        *upstream_req.method_mut() = method.clone();
        *upstream_req.uri_mut() = target
            .parse()
            .map_err(|_| crate::error::Error::Protocol(format!("cannot form the backend URI {target:?}")))?;
        *upstream_req.headers_mut() = backend_headers;
        let to = Destination {
            resource: &resource.name,
            address: &resource.address,
            base: &base,
            ca_pem: resource.options.get("ca_pem").map(String::as_str),
        };
        let (response, lease) = door.pool.send_leased(&to, upstream_req, settings.upstream_timeout).await?;
        Ok::<_, crate::error::Error>((response, lease, credential))
    }
    .await;
    let (response, lease, credential) = match relayed {
        Ok(r) => r,
        Err(e) => {
            session
                .record(ResultRecord {
                    tags: vec!["502".into()],
                    error: Some(e.to_string()),
                    duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                    ..ResultRecord::default()
                })
                .await;
            conn.recorded.notify_one();
            return problem(StatusCode::BAD_GATEWAY, &format!("the backend could not be reached: {e}"), None);
        }
    };
    if let Err(refusal) = permit.results_may_leave().await {
        return reply::refusal(&refusal);
    }
    // --- mask and record: a small body of declared length whole (sent with its
    // length, in one write), any other as it streams
    let (mut head, backend_body) = response.into_parts();
    headers::strip_hop_by_hop(&mut head.headers);
    let secrets = credential.secrets();
    headers::scrub_secrets(&mut head.headers, &secrets);
    let json = head
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("application/json") || t.contains("+json"));
    let masking = Masking {
        masks: cleared.judgement.masks.clone(),
        secrets: secrets.clone(),
        json,
        max_json: settings.max_masked_json_bytes,
    };
    if let Some(Ok(v)) = cleared.approval.as_deref().map(HeaderValue::from_str) {
        head.headers.insert("portcullis-approval", v);
    }
    let status = head.status;
    let recorded_headers = headers::for_record(&head.headers, &cleared.judgement.masks, &secrets);
    let outcome = Outcome { session, conn: conn.clone(), started, status, headers: recorded_headers };
    if sent_whole(&method, &head) {
        let read = tokio::time::timeout(settings.upstream_timeout, backend_body.collect()).await;
        let raw = match read {
            Ok(Ok(collected)) => {
                lease.release();
                collected.to_bytes()
            }
            Ok(Err(e)) => {
                let why = format!("the backend's response broke off: {e}");
                outcome.record(body::Sent { error: Some(why.clone()), ..body::Sent::default() }).await;
                return problem(StatusCode::BAD_GATEWAY, &why, None);
            }
            Err(_) => {
                let why = format!("the backend's response body did not arrive within {:?}", settings.upstream_timeout);
                outcome.record(body::Sent { error: Some(why.clone()), ..body::Sent::default() }).await;
                return problem(StatusCode::GATEWAY_TIMEOUT, &why, None);
            }
        };
        let sent = body::mask_whole(raw, &masking);
        head.headers.insert(CONTENT_LENGTH, HeaderValue::from(sent.len()));
        outcome.record(body::sent_whole(&sent, settings.preview_bytes)).await;
        return Response::from_parts(head, Full::new(sent).map_err(|never| match never {}).boxed());
    }
    lease.release_when_ready();
    if masking.is_active() {
        head.headers.remove(CONTENT_LENGTH);
    }
    let (tx, client_body) = ChannelBody::new();
    let preview_max = settings.preview_bytes;
    conn.relays.lock().unwrap_or_else(|p| p.into_inner()).spawn(async move {
        let sent = body::pump(backend_body, masking, tx, preview_max).await;
        outcome.record(sent).await;
    });
    Response::from_parts(head, client_body.boxed())
}

/// Responses up to this size with a declared length are read whole before they are
/// sent: masked at once, sent with their length in one write, recorded without a task
/// of their own. Larger or unframed ones (chunked, Server-Sent Events) stream.
const WHOLE_BODY_MAX: u64 = 64 * 1024;

/// Whether the response's body is read whole (see [`WHOLE_BODY_MAX`]). A response to
/// HEAD, and a 1xx, 204 or 304, has no body whatever its `Content-Length` says.
fn sent_whole(method: &Method, head: &http::response::Parts) -> bool {
    let declared = head.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    *method != Method::HEAD
        && !head.status.is_informational()
        && !matches!(head.status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
        && declared.is_some_and(|n| n <= WHOLE_BODY_MAX)
}

/// What the phase "record" needs of a relayed response once its body is sent.
struct Outcome<S: Store> {
    session: Arc<GateSession<S>>,
    conn: Arc<Connection<S>>,
    started: Instant,
    status: StatusCode,
    headers: Vec<(String, String)>,
}

impl<S: Store> Outcome<S> {
    /// Record the response; the record rides along with the session's next statement,
    /// or goes on its own once the connection is quiet ([`super::idle_flush`]).
    async fn record(self, sent: body::Sent) {
        let result = ResultRecord {
            tags: vec![self.status.as_u16().to_string()],
            error: sent.error,
            duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            output: Some(OutputRecord {
                exit_status: None,
                exit_signal: None,
                stdout_bytes: sent.bytes,
                stderr_bytes: 0,
                blake3: sent.blake3,
                preview: sent.preview,
            }),
            headers: self.headers,
            ..ResultRecord::default()
        };
        self.session.record(result).await;
        self.conn.recorded.notify_one();
    }
}
