//! Cancel requests: the keys the door hands out, and where each leads.
//!
//! A client cancels by opening a new connection that carries the key the door gave it
//! at login (BackendKeyData). The door gives its own random key, never the backend's,
//! and keeps the mapping here; a request for a known key wakes the session's held
//! statement (if any) and is passed to the backend under the backend's key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::{BackendKeyData, SecretKey};
use tokio::sync::Notify;

use super::conn::BackendConn;

/// A key the door gave a client: (process id, secret).
pub(crate) type ClientKey = (i32, i32);

/// Where to send a client's cancel request: the backend and its own key.
#[derive(Clone)]
pub(crate) struct CancelTarget {
    pub addr: String,
    pub pid: i32,
    pub secret: SecretKey,
    /// Wakes the session's statement if it is held for approval (the backend runs
    /// nothing then, so the backend's cancel alone would not stop it).
    pub hold: Arc<Notify>,
}

/// The door's keys → the backends'. Shared by the door (answers cancel requests) and
/// its sessions (register at login, forget at the end).
#[derive(Default)]
pub(crate) struct CancelRegistry {
    /// std mutex: never held across an await.
    targets: Mutex<HashMap<ClientKey, CancelTarget>>,
}

// === impl CancelRegistry ===

impl CancelRegistry {
    pub(crate) fn register(&self, ours: ClientKey, target: CancelTarget) {
        self.targets.lock().unwrap_or_else(|p| p.into_inner()).insert(ours, target);
    }

    pub(crate) fn forget(&self, ours: ClientKey) {
        self.targets.lock().unwrap_or_else(|p| p.into_inner()).remove(&ours);
    }

    /// Answer a cancel request: wake a held statement and pass the cancel on to the
    /// backend. Unknown keys are ignored, as Postgres does.
    pub(crate) async fn cancel(&self, req: CancelRequest) {
        let Some(secret) = req.secret_key.as_i32() else { return };
        let target = self.targets.lock().unwrap_or_else(|p| p.into_inner()).get(&(req.pid, secret)).cloned();
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

/// A fresh random cancel key for a client.
pub(crate) fn new_key() -> ClientKey {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    let [a0, a1, a2, a3, b0, b1, b2, b3] = b;
    (i32::from_be_bytes([a0 & 0x7f, a1, a2, a3]), i32::from_be_bytes([b0, b1, b2, b3]))
}

pub(crate) fn backend_key_data(ours: ClientKey) -> BackendKeyData {
    BackendKeyData::new(ours.0, SecretKey::I32(ours.1))
}
