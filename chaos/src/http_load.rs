//! The HTTP workload: `http_clients` long-lived HTTPS connections per node through its
//! HTTP door (HTTP/1.1 with keep-alive, the playground CA trusted, the chaos engineer's
//! token as `Authorization: Bearer`), each sending one POST after another:
//!
//! ```text
//! POST /r/demo-api/echo/chaos-http-n<node>-c<client>-<seq>
//! {"op": "chaos-http-n<node>-c<client>-<seq>", "node": <node>, "client": <client>}
//! ```
//!
//! The demo API logs every request that reaches it, path and body digest included, on
//! arrival, so its log says which operation reached the backend, through which node
//! (the id names it) and when by the machine's clock (the history's). The chaos policy
//! allows exactly these POSTs; the resource is strict, and a POST writes, so the door
//! commits each request's audit record before relaying it.
//!
//! Connections are opened before the nemesis starts and kept: the door records a
//! session per connection (and identity) on its first request, and a node that lost
//! its quorum cannot record a new one, so only connections it already holds show
//! whether it keeps relaying without its lease. A connection that breaks or times out
//! is opened again (through the same node); a refused request (503 without the lease)
//! keeps it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_util::sync::CancellationToken;

use crate::door_load::{self, DoorClient, bounded};
use crate::history::{History, Op, OpKind, now_ms};
use crate::rng::Rng;

/// Longer than a node's write deadline (3 s) plus a pause: a request the gateway fails
/// on its own is recorded as failed, not as timed out.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The resource behind every node's door (`/r/<resource>/<path>`).
const RESOURCE: &str = "demo-api";
/// Bytes of a response body read (an echo or a problem document; both are small).
const BODY_MAX: usize = 64 * 1024;

pub struct Target {
    pub node: u64,
    /// The node's HTTP door, `host:port` (its certificate names `host`).
    pub addr: String,
}

pub struct HttpWorkload {
    pub targets: Vec<Target>,
    pub clients: usize,
    pub token: String,
    /// Trusts only the playground's CA.
    pub tls: Arc<ClientConfig>,
    pub seed: u64,
}

type Sender = SendRequest<Full<Bytes>>;

impl HttpWorkload {
    /// Open every connection (bounded; a failure is recorded and retried by the
    /// client), then start the clients; they stop after their request in flight when
    /// `stop` fires.
    pub async fn spawn(self, history: Arc<History>, stop: CancellationToken, set: &mut JoinSet<()>) {
        let token = Arc::new(self.token);
        let mut clients = Vec::new();
        for t in &self.targets {
            for c in 0..self.clients {
                let client = Client {
                    node: t.node,
                    index: c,
                    addr: t.addr.clone(),
                    token: token.clone(),
                    tls: self.tls.clone(),
                    history: history.clone(),
                    rng: Rng::new(self.seed ^ 0x4854_5450 ^ (t.node << 32) ^ u64::try_from(c).unwrap_or(0)),
                };
                clients.push(client);
            }
        }
        door_load::start_all(clients, stop, set).await;
    }
}

struct Client {
    node: u64,
    index: usize,
    addr: String,
    token: Arc<String>,
    tls: Arc<ClientConfig>,
    history: Arc<History>,
    rng: Rng,
}

/// How one request ended, as the client saw it.
enum Outcome {
    /// The door answered (any status) with this body.
    Answered { status: u16, body: String },
    /// The connection could not take the request: it was not sent.
    NotSent(String),
    /// The request may have been sent; no answer (the connection broke).
    Broken(String),
}

impl Client {
    /// POST operation `op` on `sender`.
    async fn post(&self, sender: &mut Sender, op: &str) -> Outcome {
        let body = json!({"op": op, "node": self.node, "client": self.index}).to_string();
        let request = http::Request::post(format!("/r/{RESOURCE}/echo/{op}"))
            .header(HOST, &self.addr)
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)));
        let request = match request {
            Ok(r) => r,
            Err(e) => return Outcome::NotSent(format!("cannot form the request: {e}")),
        };
        if let Err(e) = sender.ready().await {
            return Outcome::NotSent(format!("connection: {e}"));
        }
        let response = match sender.send_request(request).await {
            Ok(r) => r,
            Err(e) => return Outcome::Broken(format!("request: {e}")),
        };
        let status = response.status().as_u16();
        match Limited::new(response.into_body(), BODY_MAX).collect().await {
            Ok(b) => Outcome::Answered { status, body: String::from_utf8_lossy(&b.to_bytes()).into_owned() },
            Err(e) => Outcome::Broken(format!("HTTP {status}, then its body: {e}")),
        }
    }
}

impl DoorClient for Client {
    type Conn = Sender;
    const DOOR: &'static str = "http";

    async fn connect(&self) -> Result<Sender, String> {
        let host = self.addr.rsplit_once(':').map_or(self.addr.as_str(), |(h, _)| h);
        let name = ServerName::try_from(host.to_string()).map_err(|e| format!("server name {host:?}: {e}"))?;
        let connecting = async {
            let tcp = TcpStream::connect(&self.addr).await.map_err(|e| format!("connect: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let tls = TlsConnector::from(self.tls.clone()).connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
            let (sender, conn) = http1::handshake(TokioIo::new(tls)).await.map_err(|e| format!("HTTP/1.1: {e}"))?;
            // Drives the connection; ends when the sender is dropped or the peer closes.
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(sender)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .unwrap_or_else(|_| Err(format!("no connection within {CONNECT_TIMEOUT:?}")))
    }

    fn is_open(conn: &Sender) -> bool {
        !conn.is_closed()
    }

    fn history(&self) -> &History {
        &self.history
    }

    fn node(&self) -> u64 {
        self.node
    }

    fn index(&self) -> usize {
        self.index
    }

    async fn run(mut self, mut conn: Option<Sender>, stop: CancellationToken) {
        let mut seq = 0u64;
        while !stop.is_cancelled() {
            let Some(mut sender) = self.usable(conn.take(), &stop).await else { continue };
            seq += 1;
            let op = format!("chaos-http-n{}-c{}-{seq}", self.node, self.index);
            let invoked_ms = self.history.invoke(&op, self.node, self.index, OpKind::Http);
            let result = tokio::time::timeout(OP_TIMEOUT, self.post(&mut sender, &op)).await;
            let (ok, indeterminate, error, status, keep) = match result {
                Ok(Outcome::Answered { status, .. }) if (200..300).contains(&status) => {
                    (true, false, None, Some(status), true)
                }
                Ok(Outcome::Answered { status, body }) => {
                    (false, false, Some(format!("HTTP {status}: {}", bounded(&body))), Some(status), true)
                }
                Ok(Outcome::NotSent(e)) => (false, false, Some(e), None, false),
                Ok(Outcome::Broken(e)) => (false, true, Some(e), None, false),
                Err(_) => (false, true, Some(format!("no answer within {OP_TIMEOUT:?}")), None, false),
            };
            self.history.complete_with(
                Op {
                    op,
                    node: self.node,
                    client: self.index,
                    f: OpKind::Http,
                    invoked_ms,
                    completed_ms: now_ms(),
                    ok,
                    indeterminate,
                    error,
                },
                json!({"status": status}),
            );
            if keep {
                conn = Some(sender);
            }
            let pause = if ok { self.rng.millis(20, 80) } else { Duration::from_millis(50) };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}
