//! A small HTTP/1.1 load generator (what `wrk` would do, built from the hyper client
//! already in the tree): N keep-alive connections, each sending one GET after the other
//! (a closed loop) for a fixed time, every request's latency kept.
//!
//! Connections are opened before the clock starts and kept across runs ([`Clients`]),
//! so a measurement never includes TCP or TLS handshakes, and a gateway's per-connection
//! session is opened once (during the warm-up).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use tokio_rustls::TlsConnector;

/// Where the GETs go and what they carry.
pub struct Target {
    pub name: &'static str,
    pub addr: SocketAddr,
    /// TLS (server name, connector trusting the playground's CA), or plain TCP.
    pub tls: Option<(ServerName<'static>, TlsConnector)>,
    /// Path and query of every request.
    pub path: String,
    /// The `Authorization` header value.
    pub authorization: String,
}

/// A TLS connector that trusts `ca_pem` only and offers HTTP/1.1 (ALPN).
pub fn tls_connector(ca_pem: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// Open connections to a target, kept alive between runs.
pub struct Clients {
    target: Arc<Target>,
    senders: Vec<SendRequest<Empty<Bytes>>>,
}

/// One run's outcome.
pub struct Run {
    pub ok: u64,
    pub errors: u64,
    /// The first failure seen, if any (status and body, or the error).
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Latencies of the successful requests, sorted.
    pub latencies: Vec<Duration>,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

impl Clients {
    /// `n` connections to `target`.
    pub async fn open(target: Arc<Target>, n: usize) -> Clients {
        let mut senders = Vec::with_capacity(n);
        for _ in 0..n {
            senders.push(connect(&target).await);
        }
        Clients { target, senders }
    }

    /// Every connection sends GETs back to back for `duration`.
    pub async fn run_for(&mut self, duration: Duration) -> Run {
        let started = Instant::now();
        let deadline = started + duration;
        let mut tasks = tokio::task::JoinSet::new();
        for sender in self.senders.drain(..) {
            tasks.spawn(client(self.target.clone(), sender, deadline));
        }
        let mut run = Run { ok: 0, errors: 0, first_error: None, elapsed: Duration::ZERO, latencies: Vec::new() };
        while let Some(done) = tasks.join_next().await {
            let (sender, latencies, errors, first_error) = done.unwrap();
            self.senders.push(sender);
            run.ok += latencies.len() as u64;
            run.latencies.extend(latencies);
            run.errors += errors;
            run.first_error = run.first_error.or(first_error);
        }
        run.elapsed = started.elapsed();
        run.latencies.sort();
        run
    }
}

type ClientResult = (SendRequest<Empty<Bytes>>, Vec<Duration>, u64, Option<String>);

async fn client(target: Arc<Target>, mut sender: SendRequest<Empty<Bytes>>, deadline: Instant) -> ClientResult {
    let mut latencies = Vec::with_capacity(1 << 14);
    let mut errors = 0u64;
    let mut first_error = None;
    while Instant::now() < deadline {
        let request = http::Request::get(target.path.as_str())
            .header(HOST, target.addr.to_string())
            .header(AUTHORIZATION, target.authorization.as_str())
            .body(Empty::<Bytes>::new())
            .unwrap();
        let started = Instant::now();
        let failure = match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status();
                match response.into_body().collect().await {
                    Ok(_) if status == http::StatusCode::OK => {
                        latencies.push(started.elapsed());
                        None
                    }
                    Ok(body) => Some(format!("{status}: {}", String::from_utf8_lossy(&body.to_bytes()))),
                    Err(e) => Some(format!("{status}, body: {e}")),
                }
            }
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = failure {
            errors += 1;
            first_error.get_or_insert(why);
            if errors > 1000 {
                break;
            }
            // The connection may be gone: a fresh one (its handshake is not timed).
            if sender.ready().await.is_err() {
                sender = connect(&target).await;
            }
        }
    }
    (sender, latencies, errors, first_error)
}

async fn connect(target: &Target) -> SendRequest<Empty<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(target.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    match &target.tls {
        Some((name, tls)) => {
            let stream = tls.connect(name.clone(), tcp).await.unwrap();
            handshake(TokioIo::new(stream)).await
        }
        None => handshake(TokioIo::new(tcp)).await,
    }
}

async fn handshake<T>(io: T) -> SendRequest<Empty<Bytes>>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
}
