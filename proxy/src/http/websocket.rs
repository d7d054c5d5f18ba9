//! WebSocket upgrades (RFC 6455): decided at the upgrade, then a tunnel whose messages
//! are recorded.
//!
//! An HTTP/1.1 `GET` with `Connection: upgrade` and `Upgrade: websocket` is a request of
//! kind `websocket`, text `GET /path?query (websocket)`. It walks the same phases as any
//! request ([`exchange`](super::exchange) hands it over once the client is
//! authenticated and the resource known): decide, hold (the upgrade waits for an
//! approver), audit (strict: committed before the upgrade reaches the backend, as for a
//! write). Then the upgrade goes to the backend on a connection of its own, with the
//! resource's credential injected and the client's token removed; only a `101` whose
//! `Sec-WebSocket-Accept` answers the client's key upgrades the client. From there the
//! [`tunnel`] relays the client's bytes unchanged, the backend's unchanged when there is
//! nothing to mask and else each message masked ([`reframe`]), and records each message.
//!
//! The gateway offers the backend no extension (`Sec-WebSocket-Extensions` is removed:
//! a compressed message could not be read for the record) and refuses a `101` that
//! picks one anyway. A backend answering anything but `101` is answered with its
//! status as a problem, without its body. WebSockets over HTTP/2 (extended CONNECT, RFC
//! 8441) are refused with 501.

pub mod frames;
pub mod reframe;
pub mod tunnel;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use portcullis_raft::model::Resource;
use rustls::pki_types::ServerName;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::credential::Credential;
use super::exchange::Connection;
use super::headers;
use super::reply::{self, ResponseBody, problem};
use super::upstream::{self, Base};
use crate::error::{Error, Result};
use crate::gate::{Effect, GateSession, ResultRecord, Work};
use crate::policy::{JsonBody, Protocol, Request as PolicyRequest};
use crate::store::Store;

/// RFC 6455 §1.3: appended to the client's key before hashing.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// How long a cut tunnel gets to record its end when the node stops.
const TUNNELS_FINISH: Duration = Duration::from_secs(10);

/// Whether `req` asks for a WebSocket: an HTTP/1.1 `GET` with the `upgrade` token in
/// `Connection` and `websocket` in `Upgrade`, or an HTTP/2 extended CONNECT (refused).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    if req.method() == Method::CONNECT && req.extensions().get::<hyper::ext::Protocol>().is_some() {
        return true;
    }
    req.method() == Method::GET
        && has_token(req.headers(), CONNECTION, "upgrade")
        && has_token(req.headers(), UPGRADE, "websocket")
}

/// Whether a comma-separated header lists `token` (ASCII case ignored).
fn has_token(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_for(key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, format!("{key}{GUID}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// Handle a request [`is_upgrade`] said yes to, from phase "classify" on.
pub async fn handle<S: Store>(
    conn: &Connection<S>,
    session: Arc<GateSession<S>>,
    resource: Resource,
    under: String,
    mut req: Request<Incoming>,
) -> Response<ResponseBody> {
    let door = &conn.door;
    let settings = &door.settings;
    if req.version() != Version::HTTP_11 {
        return problem(
            StatusCode::NOT_IMPLEMENTED,
            "WebSockets over HTTP/2 (extended CONNECT) are not supported here; connect over HTTP/1.1",
            None,
        );
    }
    let key = match req.headers().get("sec-websocket-key").and_then(|v| v.to_str().ok()) {
        Some(k) if base64::engine::general_purpose::STANDARD.decode(k.trim()).is_ok_and(|k| k.len() == 16) => {
            k.trim().to_string()
        }
        _ => return problem(StatusCode::BAD_REQUEST, "a WebSocket upgrade needs a Sec-WebSocket-Key", None),
    };
    if req.headers().get("sec-websocket-version").is_none_or(|v| v.as_bytes() != b"13") {
        let mut r = problem(StatusCode::UPGRADE_REQUIRED, "only WebSocket version 13 (RFC 6455) is supported", None);
        r.headers_mut().insert("sec-websocket-version", HeaderValue::from_static("13"));
        return r;
    }
    let has_body = req.headers().contains_key(TRANSFER_ENCODING)
        || req.headers().get(CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0");
    if has_body {
        return problem(StatusCode::BAD_REQUEST, "a WebSocket upgrade has no body", None);
    }
    let on_client = hyper::upgrade::on(&mut req);
    let (parts, _) = req.into_parts();
    // --- classify
    let query = parts.uri.query().unwrap_or_default().to_string();
    let target = if query.is_empty() { under.clone() } else { format!("{under}?{query}") };
    let line = format!("GET {target} (websocket)");
    let request = PolicyRequest {
        resource: resource.name.clone(),
        protocol: Protocol::Http,
        kind: "websocket".into(),
        tables: Vec::new(),
        functions: Vec::new(),
        commands: Vec::new(),
        path: Some(under.clone()),
        text: line.clone(),
        missing_where: false,
        dynamic_sql: false,
        locks_rows: false,
        json: JsonBody::Absent,
        // Messages go both ways once it is open.
        writes: true,
    };
    // --- decide, hold, audit (as a write: committed before the backend sees it)
    if let Err(refusal) = session.check_lease() {
        return reply::refusal(&refusal);
    }
    let judgement = match session.decide(std::slice::from_ref(&request)) {
        Ok(j) => j,
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), None),
    };
    let work = Work::Http {
        line: line.as_str().into(),
        headers: headers::for_record(&parts.headers, &judgement.masks, &[]),
        body_bytes: 0,
        body_sha256: crate::gate::record::sha256_hex(""),
        body_preview: String::new(),
    };
    let store = door.gate.store();
    let cleared = match super::exchange::clear_waiting(&session, &work, judgement).await {
        Ok(c) => c,
        Err(response) => return response,
    };
    let mut permit = match session.audit(&[(&work, &cleared)], Effect::Writes).await {
        Ok(p) => p,
        Err(refusal) => return reply::refusal(&refusal),
    };
    // --- relay the upgrade (with the permit)
    let started = Instant::now();
    let secret = match resource.secret.as_ref().map(|s| store.open_secret(s)).transpose() {
        Ok(s) => s,
        Err(e) => return problem(StatusCode::BAD_GATEWAY, &format!("the resource's credential: {e}"), None),
    };
    let upgraded = async {
        let credential = Credential::of(&resource, secret)?;
        let base = Base::parse(&resource.address)?;
        let client_host = parts.headers.get(HOST).and_then(|v| v.to_str().ok());
        let mut backend_headers =
            headers::for_backend(&parts.headers, &base.authority(), &conn.peer.ip().to_string(), client_host);
        // No extension: every message must be readable for the record.
        backend_headers.remove("sec-websocket-extensions");
        backend_headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        backend_headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        let mut backend_query = query.clone();
        credential.apply(&mut backend_headers, &mut backend_query)?;
        let uri = if backend_query.is_empty() {
            format!("{}{under}", base.prefix)
        } else {
            format!("{}{under}?{backend_query}", base.prefix)
        };
        let mut upstream_req = Request::new(Empty::<Bytes>::new());
        *upstream_req.uri_mut() =
            uri.parse().map_err(|_| Error::Protocol(format!("cannot form the backend URI {uri:?}")))?;
        *upstream_req.headers_mut() = backend_headers;
        let ca_pem = resource.options.get("ca_pem").map(String::as_str);
        let response = send(&base, ca_pem, upstream_req, settings.upstream_timeout).await?;
        Ok::<_, Error>((response, credential))
    }
    .await;
    let fail = |detail: String, status: StatusCode| {
        let session = session.clone();
        async move {
            session
                .record(ResultRecord {
                    tags: vec![status.as_u16().to_string()],
                    error: Some(detail.clone()),
                    duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                    ..ResultRecord::default()
                })
                .await;
            problem(status, &detail, None)
        }
    };
    let (mut response, credential) = match upgraded {
        Ok(r) => r,
        Err(e) => return fail(format!("the backend could not be reached: {e}"), StatusCode::BAD_GATEWAY).await,
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let detail = format!("the backend answered the WebSocket upgrade with {status}");
        return fail(detail, if status.is_informational() { StatusCode::BAD_GATEWAY } else { status }).await;
    }
    if let Err(why) = check_accept(response.headers(), &key) {
        return fail(format!("the backend's upgrade is refused: {why}"), StatusCode::BAD_GATEWAY).await;
    }
    if let Err(refusal) = permit.results_may_leave().await {
        return reply::refusal(&refusal);
    }
    let on_backend = hyper::upgrade::on(&mut response);
    let (mut head, _) = response.into_parts();
    headers::strip_hop_by_hop(&mut head.headers);
    head.headers.remove(CONTENT_LENGTH);
    head.headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    head.headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Some(Ok(v)) = cleared.approval.as_deref().map(HeaderValue::from_str) {
        head.headers.insert("portcullis-approval", v);
    }
    // --- record the upgrade, then the tunnel records its messages
    session
        .record(ResultRecord {
            tags: vec!["101".into()],
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            ..ResultRecord::default()
        })
        .await;
    if let Some(handle) = session.flush_pending().await {
        let _ = handle.await;
    }
    let tunnel = tunnel::Tunnel {
        recorder: session.recorder(),
        masker: reframe::Masker::new(cleared.judgement.masks.clone(), credential.secrets()),
        max_frame: settings.max_websocket_frame_bytes,
        max_message: settings.max_websocket_message_bytes,
        max_masked_message: settings.max_masked_websocket_message_bytes,
        idle: settings.websocket_idle_timeout,
        preview_max: settings.preview_bytes,
        serving: store.serving(),
        stop: conn.websockets.stop.clone(),
    };
    let peer = conn.peer;
    conn.websockets.spawn(async move {
        match (on_client.await, on_backend.await) {
            (Ok(client), Ok(backend)) => tunnel.run(client, backend).await,
            (Err(e), _) | (_, Err(e)) => tracing::debug!(%peer, error = %e, "websocket upgrade did not complete"),
        }
    });
    Response::from_parts(head, Empty::new().map_err(|never| match never {}).boxed())
}

/// The backend's `101` must accept the client's key and pick no extension.
fn check_accept(headers: &HeaderMap, key: &str) -> std::result::Result<(), &'static str> {
    if !has_token(headers, UPGRADE, "websocket") {
        return Err("it does not upgrade to websocket");
    }
    if headers.get("sec-websocket-accept").is_none_or(|v| v.as_bytes() != accept_for(key).as_bytes()) {
        return Err("its Sec-WebSocket-Accept does not answer the key");
    }
    if headers.contains_key("sec-websocket-extensions") {
        return Err("it picked an extension the gateway did not offer");
    }
    Ok(())
}

/// Send the upgrade on a connection of its own (never a pooled one: it becomes the
/// tunnel), which hyper hands over after a `101`.
async fn send(
    base: &Base,
    ca_pem: Option<&str>,
    request: Request<Empty<Bytes>>,
    timeout: Duration,
) -> Result<Response<Incoming>> {
    let addr = base.addr();
    let err = |detail: String| Error::Backend { addr: addr.clone(), detail };
    let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| err(format!("no connection within {timeout:?}")))?
        .map_err(|e| err(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let exchange = async {
        if base.https {
            let tls = upstream::tls_connector(ca_pem).map_err(err)?;
            let name = ServerName::try_from(base.host.clone()).map_err(|e| err(format!("server name: {e}")))?;
            let stream = tls.connect(name, tcp).await.map_err(|e| err(format!("TLS: {e}")))?;
            upgrade_exchange(TokioIo::new(stream), request).await.map_err(err)
        } else {
            upgrade_exchange(TokioIo::new(tcp), request).await.map_err(err)
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| err(format!("no answer to the upgrade within {timeout:?}")))?
}

async fn upgrade_exchange<T>(io: T, request: Request<Empty<Bytes>>) -> std::result::Result<Response<Incoming>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "websocket backend connection ended");
        }
    });
    sender.send_request(request).await.map_err(|e| e.to_string())
}

// === impl Tunnels ===

/// A client connection's open WebSockets. They outlive the HTTP exchange that opened
/// them, so the door waits for them ([`Tunnels::finish`]) before it closes the
/// connection's sessions.
#[derive(Default)]
pub struct Tunnels {
    /// std mutex: held only to spawn or take the set, never across an await.
    tasks: std::sync::Mutex<JoinSet<()>>,
    /// Cuts every tunnel (the node stops).
    stop: CancellationToken,
}

impl Tunnels {
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).spawn(task);
    }

    /// The connection's HTTP side has ended: wait for its tunnels to end, or, when
    /// `stop` fires, cut them and give them a moment to record their end.
    pub async fn finish(&self, stop: &CancellationToken) {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        if tasks.is_empty() {
            return;
        }
        let stopped = tokio::select! {
            () = async { while tasks.join_next().await.is_some() {} } => false,
            () = stop.cancelled() => true,
        };
        if stopped {
            self.stop.cancel();
            let drained = tokio::time::timeout(TUNNELS_FINISH, async { while tasks.join_next().await.is_some() {} });
            if drained.await.is_err() {
                tasks.shutdown().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use http::Request;

    use super::{accept_for, is_upgrade};

    #[test]
    fn the_accept_answers_the_rfc_example_key() {
        assert_eq!(accept_for("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn only_a_get_asking_for_websocket_is_an_upgrade() {
        let req = |method: &str, connection: &str, upgrade: &str| {
            Request::builder()
                .method(method)
                .uri("/ws")
                .header("connection", connection)
                .header("upgrade", upgrade)
                .body(())
                .unwrap()
        };
        assert!(is_upgrade(&req("GET", "keep-alive, Upgrade", "WebSocket")));
        assert!(!is_upgrade(&req("POST", "upgrade", "websocket")));
        assert!(!is_upgrade(&req("GET", "keep-alive", "websocket")));
        assert!(!is_upgrade(&req("GET", "upgrade", "h2c")));
    }
}
