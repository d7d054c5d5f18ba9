//! The door itself: accept connections, run each session, answer cancel requests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::{BackendKeyData, SecretKey};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::conn::{BackendConn, ClientConn};
use super::reply;
use super::startup::{Admission, admit};
use crate::error::Error;
use crate::identity::Verifier;
use crate::policy::{PolicySet, parse};
use crate::store::Store;

/// Tunables of the Postgres door.
#[derive(Debug, Clone)]
pub struct PgSettings {
    pub max_message: usize,
    pub max_connections: usize,
    pub backend_timeout: Duration,
    /// A client must finish TLS, startup and login within this, or its slot is freed.
    pub handshake_timeout: Duration,
    pub preview_rows: usize,
    pub preview_value_chars: usize,
    /// Audit records that may be waiting for commit at once, across sessions.
    pub audit_backlog: usize,
}

impl Default for PgSettings {
    fn default() -> Self {
        PgSettings {
            max_message: super::conn::DEFAULT_MAX_MESSAGE,
            max_connections: 1024,
            backend_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(30),
            preview_rows: 5,
            preview_value_chars: 200,
            audit_backlog: 4096,
        }
    }
}

/// Where to send a client's cancel request: the backend and its own key.
#[derive(Clone)]
pub(crate) struct CancelTarget {
    pub addr: String,
    pub pid: i32,
    pub secret: SecretKey,
    /// Wakes the session's statement if it is held for approval (the backend runs
    /// nothing then, so the backend's cancel alone would not stop it).
    pub hold: Arc<tokio::sync::Notify>,
}

/// Parsed policies and the (name, updated_at) stamp they were built from.
type CachedPolicies = (Vec<(String, u64)>, Arc<PolicySet>);

/// Everything the Postgres door needs; shared by its sessions.
pub struct PgDoor<S: Store> {
    pub store: Arc<S>,
    pub verifier: Arc<Verifier>,
    pub tls: TlsAcceptor,
    pub settings: PgSettings,
    /// Our cancel keys (pid, secret) → the backend's. std mutex: never held across awaits.
    pub(crate) cancels: Mutex<HashMap<(i32, i32), CancelTarget>>,
    /// Audit records in flight (bounded back-pressure; see `Session::audit`).
    pub(crate) audit_backlog: Arc<Semaphore>,
    /// Parsed policies, rebuilt when the stored ones change.
    policies: Mutex<Option<CachedPolicies>>,
}

impl<S: Store> PgDoor<S> {
    /// Wait until every audit record this door handed to the store has been committed
    /// (or has failed and been logged): all permits of the backlog are back.
    pub async fn audit_flushed(&self) {
        let all = u32::try_from(self.settings.audit_backlog).unwrap_or(u32::MAX);
        let _ = self.audit_backlog.acquire_many(all).await;
    }

    pub fn new(store: Arc<S>, verifier: Arc<Verifier>, tls: TlsAcceptor, settings: PgSettings) -> Self {
        let audit_backlog = Arc::new(Semaphore::new(settings.audit_backlog));
        PgDoor {
            store,
            verifier,
            tls,
            settings,
            cancels: Mutex::new(HashMap::new()),
            audit_backlog,
            policies: Mutex::new(None),
        }
    }

    /// The current policy set. Stored policies were validated when applied; one that
    /// no longer parses is skipped with a warning (it can only deny less, never allow).
    pub fn policy_set(&self) -> Result<Arc<PolicySet>, Error> {
        let stored = self.store.policies()?;
        let stamp: Vec<(String, u64)> = stored.iter().map(|p| (p.name.clone(), p.updated_at)).collect();
        let mut cache = self.policies.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, set)) = cache.as_ref()
            && *s == stamp
        {
            return Ok(set.clone());
        }
        let mut docs = Vec::new();
        for p in &stored {
            match parse(&p.source) {
                Ok(doc) => docs.push(doc),
                Err(e) => tracing::warn!(policy = %p.name, error = %e, "stored policy does not parse; skipped"),
            }
        }
        let set = Arc::new(PolicySet::new(docs));
        *cache = Some((stamp, set.clone()));
        Ok(set)
    }

    pub(crate) fn register_cancel(&self, ours: (i32, i32), target: CancelTarget) {
        self.cancels.lock().unwrap_or_else(|p| p.into_inner()).insert(ours, target);
    }

    pub(crate) fn forget_cancel(&self, ours: (i32, i32)) {
        self.cancels.lock().unwrap_or_else(|p| p.into_inner()).remove(&ours);
    }

    async fn cancel(&self, req: CancelRequest) {
        let Some(secret) = req.secret_key.as_i32() else { return };
        let target = self.cancels.lock().unwrap_or_else(|p| p.into_inner()).get(&(req.pid, secret)).cloned();
        let Some(target) = target else {
            tracing::debug!(pid = req.pid, "cancel request for an unknown session ignored");
            return;
        };
        target.hold.notify_waiters();
        let Ok(Ok(tcp)) =
            tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(&target.addr)).await
        else {
            return;
        };
        let mut conn = BackendConn::new(Box::new(tcp), target.addr.clone());
        let msg = F::CancelRequest(CancelRequest::new(target.pid, target.secret.clone()));
        let _ = conn.send(&msg).await;
    }
}

/// Serve the Postgres door on `listener` until `shutdown`.
pub async fn serve<S: Store>(listener: TcpListener, door: Arc<PgDoor<S>>, shutdown: CancellationToken) {
    let limit = Arc::new(Semaphore::new(door.settings.max_connections));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "postgres door: accept failed");
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "postgres door: connection limit reached; refusing");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let door = door.clone();
        let stop = shutdown.child_token();
        tokio::spawn(async move {
            handle(door, tcp, peer, stop).await;
            drop(permit);
        });
    }
    // Draining: no new connections; every session closes at its next statement
    // boundary (57P01). Return once all have ended and their audit is committed; the
    // caller bounds this with its grace period.
    drop(listener);
    let all = u32::try_from(door.settings.max_connections).unwrap_or(u32::MAX);
    let _ = limit.acquire_many(all).await;
    door.audit_flushed().await;
}

async fn handle<S: Store>(door: Arc<PgDoor<S>>, tcp: tokio::net::TcpStream, peer: SocketAddr, stop: CancellationToken) {
    let mut client = ClientConn::new(Box::new(tcp), door.settings.max_message);
    let admission = match tokio::time::timeout(
        door.settings.handshake_timeout,
        admit(&mut client, &door.tls, &door.verifier, door.store.as_ref(), peer),
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
        Ok(Admission::Session(admitted)) => super::session::run(&door, client, *admitted, peer, stop).await,
        Ok(Admission::Cancel(req)) => {
            door.cancel(req).await;
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

/// A fresh random cancel key for a client.
pub(crate) fn new_cancel_key() -> (i32, i32) {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    let [a0, a1, a2, a3, b0, b1, b2, b3] = b;
    (i32::from_be_bytes([a0 & 0x7f, a1, a2, a3]), i32::from_be_bytes([b0, b1, b2, b3]))
}

pub(crate) fn backend_key_data(ours: (i32, i32)) -> BackendKeyData {
    BackendKeyData::new(ours.0, SecretKey::I32(ours.1))
}
