//! The console's listener: TCP accept, then each TLS handshake in its own task.
//!
//! axum's `serve` pulls connections from a [`Listener`] one at a time; a handshake done
//! inside `accept` would let one slow client (or a port scanner that connects and says
//! nothing) stop everyone else. So an accept loop hands each new connection to a task
//! that has [`HANDSHAKE_TIMEOUT`] to finish the handshake, and finished ones queue on a
//! channel that `accept` reads. At most [`MAX_HANDSHAKES`] run at once; past that new
//! connections are closed at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// How long a client has for its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once.
pub const MAX_HANDSHAKES: usize = 256;
/// Finished handshakes waiting for the server to take them.
const QUEUE: usize = 64;

/// A TLS listener for `axum::serve`.
pub struct TlsListener {
    /// Connections whose handshake finished, in order of finishing.
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

// === impl TlsListener ===

impl TlsListener {
    /// Start accepting on `tcp`; the accept loop ends with `shutdown` or when the
    /// listener is dropped.
    pub fn spawn(
        tcp: TcpListener,
        tls: TlsAcceptor,
        handshake_timeout: Duration,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(QUEUE);
        tokio::spawn(accept_loop(tcp, tls, handshake_timeout, tx, shutdown));
        Ok(TlsListener { ready, local })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop has stopped (shutdown): nothing will come any more, and
            // graceful shutdown ends the server.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    tcp: TcpListener,
    tls: TlsAcceptor,
    handshake_timeout: Duration,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    shutdown: CancellationToken,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ready.closed() => return,
            accepted = tcp.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "console: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "console: too many TLS handshakes in progress; connection closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (tls, ready) = (tls.clone(), ready.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(handshake_timeout, tls.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "console: TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "console: TLS handshake timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests;
