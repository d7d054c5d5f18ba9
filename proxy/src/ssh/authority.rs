//! The cluster's SSH authority on one node: the CA key that certifies users and the
//! gateway's host key, and the host key every node's SSH door presents.
//!
//! Both keys live in the replicated store, sealed with the cluster data key like
//! resource secrets ([`SshAuthority`]). They are made once: [`ensure`] runs on every
//! node, and the first node that serves and finds none generates a pair and submits
//! `Op::SetSshAuthority`, which the state machine applies only while none is set. Nodes
//! racing to make one therefore all end up with the winner's keys; the losers' keys
//! were never used.
//!
//! The host certificate is not stored: each node signs its own from the replicated keys
//! ([`DoorKeys`]), valid a year, and signs a new one a month before that runs out. Any
//! of them is as good as another, since clients trust the CA, not one certificate.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use portcullis_raft::command::Op;
use portcullis_raft::model::{SshAuthority, now_millis};
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Certificate, PrivateKey, PublicKey};
use tokio_util::sync::CancellationToken;

use super::certs;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::store::Store;

/// Seconds since the Unix epoch, as certificates count time.
pub fn unix_now() -> u64 {
    now_millis() / 1000
}

/// The opened authority. Deliberately not `Debug`: it holds private keys.
pub struct Authority {
    ca: PrivateKey,
    host: PrivateKey,
}

/// A user certificate just issued, with what the caller and the audit log need.
pub struct Issued {
    /// The certificate as an OpenSSH line (what `FILE-cert.pub` holds).
    pub certificate: String,
    /// The CA's public key as an OpenSSH line.
    pub ca_public_key: String,
    /// Fingerprint of the certified key (`SHA256:...`).
    pub key_fingerprint: String,
    /// End of validity, seconds since the epoch.
    pub valid_before: u64,
}

// === impl Authority ===

impl Authority {
    /// The authority in `store`, opened; `None` until a node has made it.
    pub fn open<S: Store>(store: &S) -> Result<Option<Self>> {
        let Some(sealed) = store.ssh_authority()? else { return Ok(None) };
        let open = |what: &str, s| {
            let pem = store.open_secret(s)?;
            PrivateKey::from_openssh(pem.as_bytes()).map_err(|e| Error::Ssh(format!("the cluster's SSH {what}: {e}")))
        };
        Ok(Some(Authority { ca: open("CA key", &sealed.ca_key)?, host: open("host key", &sealed.host_key)? }))
    }

    pub fn ca_public(&self) -> &PublicKey {
        self.ca.public_key()
    }

    /// `ssh-ed25519 AAAA...`, the CA as a known_hosts `@cert-authority` line ends.
    pub fn ca_line(&self) -> Result<String> {
        public_line(self.ca.public_key())
    }

    /// A user certificate for the key `public_key` (an OpenSSH line) naming `identity`.
    pub fn issue(&self, public_key: &str, identity: &Identity, now: u64) -> Result<Issued> {
        let key = certs::parse_user_key(public_key)?;
        let cert = certs::sign_user(&self.ca, &key, identity, now)?;
        Ok(Issued {
            certificate: cert.to_openssh().map_err(|e| Error::Ssh(format!("encode certificate: {e}")))?,
            ca_public_key: self.ca_line()?,
            key_fingerprint: certs::fingerprint(&key),
            valid_before: cert.valid_before(),
        })
    }
}

fn public_line(key: &PublicKey) -> Result<String> {
    let mut key = key.clone();
    key.set_comment("");
    key.to_openssh().map(|l| l.trim().to_string()).map_err(|e| Error::Ssh(format!("encode public key: {e}")))
}

/// A new authority, its private keys sealed by `store`.
fn make<S: Store>(store: &S) -> Result<SshAuthority> {
    let ca = certs::generate_ed25519("portcullis ssh ca")?;
    let host = certs::generate_ed25519("portcullis host key")?;
    let seal = |key: &PrivateKey| {
        let pem = key.to_openssh(LineEnding::LF).map_err(|e| Error::Ssh(format!("encode key: {e}")))?;
        store.seal_secret(&pem)
    };
    Ok(SshAuthority {
        ca_key: seal(&ca)?,
        ca_public_key: public_line(ca.public_key())?,
        host_key: seal(&host)?,
        host_public_key: public_line(host.public_key())?,
        created_at: now_millis(),
        created_by: store.node_id(),
    })
}

/// How long to wait before trying again after a failed attempt.
const RETRY: Duration = Duration::from_secs(2);

/// Make sure the cluster has an SSH authority: wait until this node serves, then, if
/// none is set yet, make one and submit it (first writer wins). Returns once this
/// node's state has one, or at `stop`.
pub async fn ensure<S: Store>(store: Arc<S>, stop: CancellationToken) {
    let mut serving = store.serving();
    loop {
        match store.ssh_authority() {
            Ok(Some(_)) => return,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the cluster's SSH authority; will retry"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            waited = serving.wait_for(|s| *s) => if waited.is_err() { return },
        }
        if matches!(store.ssh_authority(), Ok(None)) {
            let submitted = match make(store.as_ref()) {
                Ok(authority) => store.submit(Op::SetSshAuthority { authority }).await.map(|_| ()),
                Err(e) => Err(e),
            };
            match submitted {
                Ok(()) => tracing::info!("submitted a new cluster SSH authority (the first one committed is kept)"),
                Err(e) => tracing::warn!(error = %e, "could not set the cluster's SSH authority; will retry"),
            }
        }
        // The committed authority reaches this node's state a moment later.
        let deadline = tokio::time::Instant::now() + RETRY;
        while tokio::time::Instant::now() < deadline && matches!(store.ssh_authority(), Ok(None)) {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }
}

/// What a node's SSH door presents and trusts, built once from the authority.
pub struct DoorLoaded {
    /// The russh server configuration with the host key and its certificate.
    pub config: Arc<russh::server::Config>,
    /// The CA user certificates must be signed by.
    pub ca: PublicKey,
    /// When to sign a new host certificate (a month before this one ends).
    renew_at: u64,
}

/// The door's keys: read from the store on first use (and until the authority exists),
/// then cached until the host certificate is due for renewal.
#[derive(Default)]
pub struct DoorKeys {
    /// std lock: held only to clone or replace the `Arc`, never across an await.
    loaded: RwLock<Option<Arc<DoorLoaded>>>,
}

// === impl DoorKeys ===

impl DoorKeys {
    /// The current keys, or `None` while the cluster has no SSH authority yet (a new
    /// cluster before its first quorum). `build` makes the russh configuration from the
    /// host key and its certificate.
    pub fn current<S: Store>(
        &self,
        store: &S,
        build: impl FnOnce(PrivateKey, Certificate) -> russh::server::Config,
    ) -> Result<Option<Arc<DoorLoaded>>> {
        let now = unix_now();
        if let Some(loaded) = self.loaded.read().unwrap_or_else(|p| p.into_inner()).as_ref()
            && now < loaded.renew_at
        {
            return Ok(Some(loaded.clone()));
        }
        let Some(authority) = Authority::open(store)? else { return Ok(None) };
        let certificate = certs::sign_host(&authority.ca, authority.host.public_key(), now)?;
        let renew_at = certificate.valid_before().saturating_sub(30 * 86_400);
        let loaded = Arc::new(DoorLoaded {
            config: Arc::new(build(authority.host.clone(), certificate)),
            ca: authority.ca_public().clone(),
            renew_at,
        });
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = Some(loaded.clone());
        Ok(Some(loaded))
    }
}

#[cfg(test)]
mod tests;
