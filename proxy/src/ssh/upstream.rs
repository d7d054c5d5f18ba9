//! The gateway's own SSH connection to the host: its key pinned in the resource (a
//! mismatch is refused, never trusted on first use), the login the gateway holds. The
//! client never sees either.

use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};

use super::login::Login;
use crate::error::{Error, Result};

const UPSTREAM_CIPHERS: &[russh::cipher::Name] =
    &[russh::cipher::AES_256_GCM, russh::cipher::AES_128_GCM, russh::cipher::CHACHA20_POLY1305];

/// One logged-in connection to a host; channels are opened on it per client channel.
pub struct Upstream {
    handle: Handle<PinnedHost>,
    addr: String,
}

/// Accepts exactly the host key the resource pins.
pub struct PinnedHost {
    pinned: PublicKey,
}

impl client::Handler for PinnedHost {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> std::result::Result<bool, Self::Error> {
        // The key material, not its comment; a host certificate is not a pinned key.
        Ok(match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.key_data() == self.pinned.key_data(),
            PublicKeyOrCertificate::Certificate(_) => false,
        })
    }
}

impl Upstream {
    /// Connect and log in as `login` within `timeout`.
    pub async fn connect(login: &Login, timeout: Duration) -> Result<Upstream> {
        let addr = login.resource.address.clone();
        let err = |detail: String| Error::Backend { addr: addr.clone(), detail };
        let pinned = login
            .resource
            .options
            .get("host_key")
            .ok_or_else(|| err("the resource pins no host key (option host_key); refusing to trust any".into()))?;
        let pinned = PublicKey::from_openssh(pinned.trim())
            .map_err(|e| err(format!("the resource's host_key is not an OpenSSH public key: {e}")))?;
        let config = Arc::new(client::Config {
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 4,
            nodelay: true,
            window_size: super::door::WINDOW,
            maximum_packet_size: super::door::MAX_PACKET,
            // AES-GCM first on the gateway's own leg: with AES instructions it costs a
            // fraction of ChaCha20 here, and the relay pays for two legs.
            preferred: russh::Preferred {
                cipher: std::borrow::Cow::Borrowed(UPSTREAM_CIPHERS),
                ..russh::Preferred::DEFAULT
            },
            ..client::Config::default()
        });
        let connecting = async {
            let tcp = tokio::net::TcpStream::connect(&addr).await.map_err(|e| err(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            let mut handle = client::connect_stream(config, tcp, PinnedHost { pinned }).await.map_err(|e| match e {
                russh::Error::UnknownKey => err("the host's key is not the one the resource pins".into()),
                other => err(format!("ssh handshake: {other}")),
            })?;
            let user = login.host_user.clone();
            let accepted = match login.secret.as_deref() {
                Some(secret) if secret.trim_start().starts_with("-----BEGIN") => {
                    let key = russh::keys::decode_secret_key(secret, None)
                        .map_err(|e| err(format!("the resource's private key cannot be read: {e}")))?;
                    let hash = handle.best_supported_rsa_hash().await.ok().flatten().flatten();
                    let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
                    handle.authenticate_publickey(user, key).await
                }
                Some(password) => handle.authenticate_password(user, password).await,
                None => handle.authenticate_none(user).await,
            }
            .map_err(|e| err(format!("login: {e}")))?;
            if !accepted.success() {
                return Err(Error::BackendAuth(format!(
                    "the host {addr} refused the gateway's login as {}",
                    login.host_user
                )));
            }
            Ok(handle)
        };
        let handle = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| err(format!("no login within {timeout:?}")))??;
        Ok(Upstream { handle, addr: addr.clone() })
    }

    /// A new session channel on the host.
    pub async fn open_session(&self) -> Result<russh::Channel<client::Msg>> {
        self.handle
            .channel_open_session()
            .await
            .map_err(|e| Error::Backend { addr: self.addr.clone(), detail: format!("open a channel: {e}") })
    }

    /// A `direct-tcpip` channel: the host connects to `target` for the client.
    pub async fn open_direct_tcpip(&self, target: &super::forward::Target) -> Result<russh::Channel<client::Msg>> {
        self.handle
            .channel_open_direct_tcpip(target.host.clone(), target.port, target.from_host.clone(), target.from_port)
            .await
            .map_err(|e| Error::Backend {
                addr: self.addr.clone(),
                detail: format!("the host refused the forward to {}:{}: {e}", target.host, target.port),
            })
    }

    pub async fn close(&self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "session ended", "en").await;
    }
}
