//! The SSH door itself: accept connections, run each through russh with a
//! [`Connection`] handler, and close its session in the index when it ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use russh::keys::{Certificate, PrivateKey};
use russh::server::Config;
use tokio::net::TcpListener;

use tokio_util::sync::CancellationToken;

use super::authority::{DoorKeys, DoorLoaded};
use super::connection::Connection;
use super::settings::SshSettings;
use crate::gate::Gate;
use crate::identity::Verifier;
use crate::store::Store;

/// A client's socket that fails its reads once the login deadline passes, unless the
/// client has logged in by then.
struct LoginDeadline {
    inner: tokio::net::TcpStream,
    logged_in: Arc<std::sync::atomic::AtomicBool>,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl tokio::io::AsyncRead for LoginDeadline {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.logged_in.load(Ordering::SeqCst) && self.deadline.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no login before the deadline",
            )));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for LoginDeadline {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How long a closed connection's channels get to finish (their result records).
const CHANNELS_FINISH: std::time::Duration = std::time::Duration::from_secs(10);

/// Everything the SSH door needs; shared by its connections.
pub struct SshDoor<S: Store> {
    pub gate: Arc<Gate<S>>,
    pub verifier: Arc<Verifier>,
    pub settings: SshSettings,
    /// The cluster's host key and certificate, and the CA user certificates must carry
    /// (see `authority`): one for every node.
    keys: DoorKeys,
}

impl<S: Store> SshDoor<S> {
    pub fn new(gate: Arc<Gate<S>>, verifier: Arc<Verifier>, settings: SshSettings) -> Self {
        SshDoor { gate, verifier, settings, keys: DoorKeys::default() }
    }

    /// The cluster's keys as this door uses them; `None` (and logged) while the cluster
    /// has no SSH authority yet or it cannot be opened: the door then cannot prove
    /// itself, and refuses connections.
    pub fn keys(&self) -> Option<Arc<DoorLoaded>> {
        let store = self.gate.store();
        match self.keys.current(store.as_ref(), |host, cert| config(&self.settings, host, cert)) {
            Ok(Some(keys)) => Some(keys),
            Ok(None) => {
                tracing::info!("ssh door: the cluster has no SSH host key yet (no quorum since it started); refusing");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "ssh door: cannot open the cluster's SSH keys; refusing");
                None
            }
        }
    }
}

/// The russh configuration: the cluster's host key and its certificate, and the door's bounds.
fn config(settings: &SshSettings, host_key: PrivateKey, host_certificate: Certificate) -> Config {
    Config {
        keys: vec![host_key],
        certificates: vec![host_certificate],
        // Keepalives find dead clients; the inactivity timeout bounds silent ones.
        keepalive_interval: Some(settings.keepalive),
        keepalive_max: 3,
        inactivity_timeout: Some(settings.inactivity_timeout),
        auth_rejection_time: std::time::Duration::from_millis(500),
        auth_rejection_time_initial: Some(std::time::Duration::ZERO),
        max_auth_attempts: 6,
        nodelay: true,
        // Bulk transfers: a larger window and packets keep the relay's pipe full.
        window_size: WINDOW,
        maximum_packet_size: MAX_PACKET,
        preferred: russh::Preferred { cipher: std::borrow::Cow::Borrowed(CIPHERS), ..russh::Preferred::DEFAULT },
        ..Config::default()
    }
}

/// Flow-control window and largest packet of both legs of the relay (russh's defaults
/// are 2 MiB and 32 KiB).
pub const WINDOW: u32 = 16 << 20;
pub const MAX_PACKET: u32 = 65535;

/// Ciphers the door offers clients. The client's own order decides, and OpenSSH puts
/// ChaCha20 first, which costs several times AES-GCM with AES instructions (the relay
/// pays for both legs); AES-GCM is in every OpenSSH since 6.2.
const CIPHERS: &[russh::cipher::Name] = &[russh::cipher::AES_256_GCM, russh::cipher::AES_128_GCM];

/// Serve the SSH door on `listener` until `shutdown`.
pub async fn serve<S: Store>(listener: TcpListener, door: Arc<SshDoor<S>>, shutdown: CancellationToken) {
    let max = door.settings.max_connections;
    crate::listen::accept_until("ssh", listener, max, shutdown, |tcp, peer, stop| {
        handle(door.clone(), tcp, peer, stop)
    })
    .await;
    door.gate.audit_flushed().await;
}

async fn handle<S: Store>(
    door: Arc<SshDoor<S>>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) {
    let Some(keys) = door.keys() else { return };
    let connection = Connection::new(door.clone(), peer, stop.clone());
    let logged_in = connection.logged_in.clone();
    let shared = connection.shared.clone();
    let tasks = connection.tasks.clone();
    // A client that does not finish logging in is cut off at the socket (a silent one
    // would otherwise hold its task and a connection permit for good).
    let stream =
        LoginDeadline { inner: tcp, logged_in, deadline: Box::pin(tokio::time::sleep(door.settings.login_timeout)) };
    let running = match russh::server::run_stream(keys.config.clone(), stream, connection).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "ssh handshake failed");
            return;
        }
    };
    let ended = running.await;
    let status = match &ended {
        Ok(()) => portcullis_raft::model::SessionStatus::Closed,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "ssh connection ended with an error");
            portcullis_raft::model::SessionStatus::Closed
        }
    };
    // Its channels' tasks end as their channels close; let them write their records.
    let mut tasks = std::mem::take(&mut *tasks.lock().unwrap_or_else(|p| p.into_inner()));
    let finished = tokio::time::timeout(CHANNELS_FINISH, async { while tasks.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        tracing::warn!(%peer, "ssh channel tasks still running after the connection ended; stopping them");
        tasks.shutdown().await;
    }
    let shared = shared.lock().unwrap_or_else(|p| p.into_inner()).take();
    match shared.map(Arc::into_inner) {
        Some(Some(shared)) => shared.close(status).await,
        Some(None) => tracing::warn!(%peer, "ssh connection state still in use at close; its end is not recorded"),
        None => {}
    }
}
