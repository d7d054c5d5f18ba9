//! The HTTP door itself: TLS (ALPN `h2` and `http/1.1`), hyper's server per
//! connection, each request handed to [`exchange::handle`].

use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::exchange::{self, Connection};
use super::idle_flush::IdleFlush;
use super::pool::Pool;
use super::settings::HttpSettings;
use crate::gate::Gate;
use crate::identity::Verifier;
use crate::store::Store;

/// Everything the HTTP door needs; shared by its connections.
pub struct HttpDoor<S: Store> {
    pub gate: Arc<Gate<S>>,
    pub verifier: Arc<Verifier>,
    /// Its TLS configuration offers `h2` and `http/1.1` (ALPN).
    pub tls: TlsAcceptor,
    pub settings: HttpSettings,
    /// Keep-alive connections to the resources' backends.
    pub pool: Arc<Pool>,
}

impl<S: Store> HttpDoor<S> {
    pub fn new(gate: Arc<Gate<S>>, verifier: Arc<Verifier>, tls: TlsAcceptor, settings: HttpSettings) -> Self {
        let pool = Pool::new(settings.upstream_max_idle, settings.upstream_idle_timeout);
        HttpDoor { gate, verifier, tls, settings, pool }
    }
}

/// Serve the HTTP door on `listener` until `shutdown`.
pub async fn serve<S: Store>(listener: TcpListener, door: Arc<HttpDoor<S>>, shutdown: CancellationToken) {
    let max = door.settings.max_connections;
    crate::listen::accept_until("http", listener, max, shutdown, |tcp, peer, stop| {
        handle(door.clone(), tcp, peer, stop)
    })
    .await;
    door.gate.audit_flushed().await;
}

/// One client connection: TLS, then hyper's server until it ends or the node stops.
async fn handle<S: Store>(door: Arc<HttpDoor<S>>, tcp: TcpStream, peer: SocketAddr, stop: CancellationToken) {
    let timeout = door.settings.header_timeout;
    let tls = match tokio::time::timeout(timeout, door.tls.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "http door: TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let conn = Arc::new(Connection::new(door.clone(), peer));
    let idle_flush = IdleFlush::start(&conn);
    let service = {
        let conn = conn.clone();
        service_fn(move |req| {
            let conn = conn.clone();
            async move { Ok::<_, std::convert::Infallible>(exchange::handle(conn, req).await) }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(door.settings.max_header_bytes.max(8192) + 8192);
    builder.http2().max_header_list_size(u32::try_from(door.settings.max_header_bytes).unwrap_or(u32::MAX));
    // Lets an HTTP/2 WebSocket (extended CONNECT) arrive, to be refused with a 501.
    builder.http2().enable_connect_protocol();
    // With upgrades: an HTTP/1.1 WebSocket's connection is handed over after its 101.
    let serving = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::pin!(serving);
    tokio::select! {
        result = serving.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "http connection ended with an error");
            }
        }
        _ = stop.cancelled() => {
            serving.as_mut().graceful_shutdown();
            let _ = serving.await;
        }
    }
    idle_flush.stop().await;
    // An upgraded connection lives on as a WebSocket: its sessions close after it.
    conn.websockets.finish(&stop).await;
    conn.close().await;
}
