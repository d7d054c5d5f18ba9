//! The gateway's own SSH connection to the host: its key pinned in the resource (a
//! mismatch is refused, never trusted on first use), the login the gateway holds. The
//! client never sees either.

use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use tokio::sync::mpsc;

use super::inbound::{HostOpened, Inbound};
use super::login::Login;
use crate::error::{Error, Result};

const UPSTREAM_CIPHERS: &[russh::cipher::Name] =
    &[russh::cipher::AES_256_GCM, russh::cipher::AES_128_GCM, russh::cipher::CHACHA20_POLY1305];

/// Channels the host may have opened and not yet had served; more are refused.
const HOST_OPENED_QUEUE: usize = 64;

/// One logged-in connection to a host; channels are opened on it per client channel.
pub struct Upstream {
    handle: Handle<PinnedHost>,
    addr: String,
    /// The channels the host opens back (remote forwards, X11, the agent), until the
    /// connection's first grant takes them to serve them ([`inbound::serve`]).
    host_opened: std::sync::Mutex<Option<mpsc::Receiver<HostOpened>>>,
}

/// Accepts exactly the host key the resource pins, and passes on the channels the host
/// opens (never decided here: a callback must not wait).
pub struct PinnedHost {
    pinned: PublicKey,
    host_opened: mpsc::Sender<HostOpened>,
}

impl PinnedHost {
    /// Queue a channel the host opened; refused (dropped) when the queue is full.
    fn pass_on(&self, what: Inbound, channel: russh::Channel<client::Msg>, reply: client::ChannelOpenHandle) {
        if let Err(e) = self.host_opened.try_send(HostOpened { what, channel, reply }) {
            tracing::info!(reason = %e, "a channel the host opened is refused: none is being served");
        }
    }
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

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: russh::Channel<client::Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> std::result::Result<(), Self::Error> {
        let what = Inbound::Forwarded {
            address: connected_address.chars().take(255).collect(),
            port: connected_port,
            from: format!("{}:{originator_port}", originator_address.chars().take(255).collect::<String>()),
        };
        self.pass_on(what, channel, reply);
        Ok(())
    }

    async fn server_channel_open_x11(
        &mut self,
        channel: russh::Channel<client::Msg>,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> std::result::Result<(), Self::Error> {
        let what = Inbound::X11 {
            from: format!("{}:{originator_port}", originator_address.chars().take(255).collect::<String>()),
        };
        self.pass_on(what, channel, reply);
        Ok(())
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        channel: russh::Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> std::result::Result<(), Self::Error> {
        self.pass_on(Inbound::Agent, channel, reply);
        Ok(())
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
        let (host_opened, opened_by_host) = mpsc::channel(HOST_OPENED_QUEUE);
        let connecting = async {
            let tcp = tokio::net::TcpStream::connect(&addr).await.map_err(|e| err(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            let mut handle =
                client::connect_stream(config, tcp, PinnedHost { pinned, host_opened }).await.map_err(|e| match e {
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
        Ok(Upstream { handle, addr: addr.clone(), host_opened: std::sync::Mutex::new(Some(opened_by_host)) })
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

    /// Ask the host to listen on `address:port` (0: a port of its choosing) and open a
    /// channel back for each connection; the port it listens on.
    pub async fn tcpip_forward(&self, address: &str, port: u32) -> Result<u32> {
        let bound = self.handle.tcpip_forward(address, port).await.map_err(|e| Error::Backend {
            addr: self.addr.clone(),
            detail: format!("the host refused to listen on {address}:{port}: {e}"),
        })?;
        // The host names the port only when it chose one.
        Ok(if port == 0 { bound } else { port })
    }

    pub async fn cancel_tcpip_forward(&self, address: &str, port: u32) -> Result<()> {
        self.handle.cancel_tcpip_forward(address, port).await.map_err(|e| Error::Backend {
            addr: self.addr.clone(),
            detail: format!("the host did not stop listening on {address}:{port}: {e}"),
        })
    }

    /// The channels the host opens back, once (the first grant serves them).
    pub fn take_host_opened(&self) -> Option<mpsc::Receiver<HostOpened>> {
        self.host_opened.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    pub async fn close(&self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "session ended", "en").await;
    }
}
