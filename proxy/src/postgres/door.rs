//! The door itself: accept connections, admit each client, run its session, answer
//! cancel requests.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::cancel::CancelRegistry;
use super::catalog::CatalogCache;
use super::conn::ClientConn;
use super::reply;
use super::session::{self, SessionDeps};
use super::settings::PgSettings;
use super::startup::{Admission, admit};
use crate::error::Error;
use crate::gate::Gate;
use crate::identity::Verifier;
use crate::store::Store;

/// Everything the Postgres door needs; shared by its sessions.
pub struct PgDoor<S: Store> {
    /// What every door shares: the store, policies, audit backlog.
    pub gate: Arc<Gate<S>>,
    pub verifier: Arc<Verifier>,
    pub tls: TlsAcceptor,
    pub settings: PgSettings,
    pub(crate) cancels: CancelRegistry,
    pub(crate) catalogs: CatalogCache,
}

impl<S: Store> PgDoor<S> {
    pub fn new(gate: Arc<Gate<S>>, verifier: Arc<Verifier>, tls: TlsAcceptor, settings: PgSettings) -> Self {
        PgDoor { gate, verifier, tls, settings, cancels: CancelRegistry::default(), catalogs: CatalogCache::default() }
    }

    fn session_deps(&self) -> SessionDeps<'_, S> {
        SessionDeps { gate: &self.gate, cancels: &self.cancels, catalogs: &self.catalogs, settings: &self.settings }
    }
}

/// Serve the Postgres door on `listener` until `shutdown`. Draining: every session
/// closes at its next statement boundary (57P01); this returns once all have ended and
/// their audit is committed (the caller bounds it with its grace period).
pub async fn serve<S: Store>(listener: TcpListener, door: Arc<PgDoor<S>>, shutdown: CancellationToken) {
    let max = door.settings.max_connections;
    crate::listen::accept_until("postgres", listener, max, shutdown, |tcp, peer, stop| {
        handle(door.clone(), tcp, peer, stop)
    })
    .await;
    door.gate.audit_flushed().await;
}

async fn handle<S: Store>(door: Arc<PgDoor<S>>, tcp: tokio::net::TcpStream, peer: SocketAddr, stop: CancellationToken) {
    let mut client = ClientConn::new(Box::new(tcp), door.settings.max_message);
    let admission = match tokio::time::timeout(
        door.settings.handshake_timeout,
        admit(&mut client, &door.tls, &door.verifier, door.gate.store().as_ref(), peer),
    )
    .await
    {
        Ok(a) => a,
        Err(_) => Err(Error::Protocol(format!(
            "no complete login within {:?}; connection closed",
            door.settings.handshake_timeout
        ))),
    };
    let result = match admission {
        Ok(Admission::Session(admitted)) => session::run(door.session_deps(), client, *admitted, peer, stop).await,
        Ok(Admission::Cancel(req)) => {
            door.cancels.cancel(req).await;
            client.shutdown().await;
            Ok(())
        }
        Ok(Admission::Closed) => Ok(()),
        Err(e) => {
            // Protocol errors get a FATAL if the connection still carries one.
            let _ = client.send(reply::fatal(reply::code_for(&e), &e.to_string())).await;
            Err(e)
        }
    };
    match result {
        Ok(()) => {}
        Err(Error::ClientIo(e)) => tracing::debug!(%peer, error = %e, "postgres client went away"),
        Err(e) => tracing::info!(%peer, error = %e, "postgres session ended with an error"),
    }
}
