//! One client connection: the russh [`Handler`]. Callbacks only record what the
//! client asked and reply at once (every `want_reply` gets an answer); anything that
//! waits (a hold, the host, the store) runs in the channel's own task ([`channel::run`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use russh::keys::Certificate;
use russh::server::{Auth, ChannelOpenHandle, Handler, Msg, PublicKeyOffer, Response, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet, Pty, Sig};
use tokio::sync::{OnceCell, mpsc};
use tokio_util::sync::CancellationToken;

use super::channel::{self, Ask, Asked, Control, Forwards, PtyAsk, X11Ask};
use super::door::SshDoor;
use super::forward;
use super::inbound::{self, Grant, Grants, Inbound};
use super::login::{self, Login};
use super::upstream::Upstream;
use super::{authority, certs};
use crate::error::{Error, Result};
use crate::gate::{GateSession, IdentitySlot, Opening};
use crate::identity::Identity;
use crate::policy::Protocol;
use crate::store::Store;

/// What a connection's channels share once the client has logged in.
pub struct Shared<S: Store> {
    pub door: Arc<SshDoor<S>>,
    pub login: Login,
    pub peer: SocketAddr,
    pub stop: CancellationToken,
    slot: std::sync::Mutex<Option<IdentitySlot>>,
    /// The session in the index, opened when the first channel asks for something (a
    /// store commit never runs in a callback). Its channels walk the phases each on
    /// their own: a held command holds nothing else of the connection.
    gate: OnceCell<Arc<GateSession<S>>>,
    upstream: OnceCell<Upstream>,
    /// Numbers the connection's recorded terminals.
    channels: std::sync::atomic::AtomicU32,
    /// What the host may open back toward the client (`inbound`).
    grants: std::sync::Mutex<Grants>,
    /// The client connection's handle, for channels opened toward the client.
    front: std::sync::OnceLock<russh::server::Handle>,
    /// The connection's tasks (see [`Connection::tasks`]).
    pub tasks: Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
}

impl<S: Store> Shared<S> {
    pub async fn gate(&self) -> Result<Arc<GateSession<S>>> {
        self.gate
            .get_or_try_init(|| async {
                // The slot taken at login; a new one if an earlier attempt to open the
                // session failed (its slot went back when that attempt ended).
                let kept = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
                let slot = match kept {
                    Some(slot) => slot,
                    None => self.door.gate.reserve(&self.login.identity.subject)?,
                };
                let opening = Opening {
                    identity: self.login.identity.clone(),
                    resource: self.login.resource.clone(),
                    protocol: Protocol::Ssh,
                    client_addr: self.peer.to_string(),
                    // A command may run for hours: its record must not wait for the next.
                    flushes_when_idle: false,
                };
                let session = self.door.gate.open(opening, slot).await.map_err(|e| {
                    Error::Refused(format!("the session could not be recorded, so it may not start: {e}"))
                })?;
                session.note_start(&self.login.host_user, &[]);
                Ok(Arc::new(session))
            })
            .await
            .cloned()
    }

    /// The next terminal's number within the session.
    pub fn next_channel(&self) -> u32 {
        self.channels.fetch_add(1, Ordering::SeqCst)
    }

    /// Let the host open `grant` back toward the client, and serve what it opens (from
    /// the first grant on). The host connection must be up.
    pub fn grant(self: &Arc<Self>, grant: Grant) {
        self.grants.lock().unwrap_or_else(|p| p.into_inner()).grant(grant);
        if let Some(opened) = self.upstream.get().and_then(Upstream::take_host_opened) {
            tokio::spawn(inbound::serve(Arc::downgrade(self), opened));
        }
    }

    pub fn granted(&self, what: &Inbound) -> bool {
        self.grants.lock().unwrap_or_else(|p| p.into_inner()).covers(what)
    }

    pub fn revoke_remote(&self, address: &str, port: u32) -> bool {
        self.grants.lock().unwrap_or_else(|p| p.into_inner()).revoke_remote(address, port)
    }

    pub fn front(&self) -> Option<&russh::server::Handle> {
        self.front.get()
    }

    pub async fn upstream(&self) -> Result<&Upstream> {
        self.upstream.get_or_try_init(|| Upstream::connect(&self.login, self.door.settings.upstream_timeout)).await
    }

    /// The connection ended and its channel tasks with it: its session closes in the
    /// index (its last records first), its host connection ends.
    pub async fn close(self, status: portcullis_raft::model::SessionStatus) {
        if let Some(upstream) = self.upstream.get() {
            upstream.close().await;
        }
        let Some(gate) = self.gate.into_inner() else { return };
        match Arc::into_inner(gate) {
            Some(gate) => gate.close(status).await,
            None => tracing::warn!(peer = %self.peer, "ssh session still in use at close; its end is not recorded"),
        }
    }
}

/// A channel the client opened, until a request claims it.
struct Opened {
    channel: Option<Channel<Msg>>,
    pty: Option<PtyAsk>,
    forwards: Forwards,
    control: Option<mpsc::Sender<Control>>,
}

/// Longer than the host's own bound: the decision and the record come first.
const REMOTE_FORWARD_SLACK: std::time::Duration = std::time::Duration::from_secs(5);

/// The russh handler of one connection.
pub struct Connection<S: Store> {
    pub door: Arc<SshDoor<S>>,
    pub peer: SocketAddr,
    pub stop: CancellationToken,
    /// Set once the client has logged in (read by the login timer in `door`).
    pub logged_in: Arc<AtomicBool>,
    /// The connection's shared state once logged in (read by `door` at the end).
    pub shared: Arc<std::sync::Mutex<Option<Arc<Shared<S>>>>>,
    channels: HashMap<ChannelId, Opened>,
    /// Channel tasks; outlive this handler (russh drops it when the connection ends),
    /// so `door` can let them finish their records before the session closes.
    pub tasks: Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
}

impl<S: Store> Connection<S> {
    pub fn new(door: Arc<SshDoor<S>>, peer: SocketAddr, stop: CancellationToken) -> Self {
        Connection {
            door,
            peer,
            stop,
            logged_in: Arc::new(AtomicBool::new(false)),
            shared: Arc::default(),
            channels: HashMap::new(),
            tasks: Arc::default(),
        }
    }

    /// Phase "authenticate" with a token (password or keyboard-interactive).
    async fn log_in(&mut self, name: &str, token: &str) -> Auth {
        match self.door.verifier.verify(token.trim()).await {
            Ok(identity) => self.admit(name, identity, "token"),
            Err(e) => {
                tracing::info!(peer = %self.peer, user = %name, reason = %e, "ssh login refused");
                Auth::reject()
            }
        }
    }

    /// Phase "authenticate" with a user certificate of the cluster's SSH CA (`certs`).
    fn log_in_with_certificate(&mut self, name: &str, certificate: &Certificate) -> Auth {
        let Some(keys) = self.door.keys() else { return Auth::reject() };
        match certs::verify_user(certificate, &keys.ca, authority::unix_now()) {
            Ok(identity) => self.admit(name, identity, "certificate"),
            Err(e) => {
                tracing::info!(peer = %self.peer, user = %name, reason = %e, "ssh login refused");
                Auth::reject()
            }
        }
    }

    /// The rest of "authenticate", however the identity was proven: the resource and
    /// host login it may use, and a session slot.
    fn admit(&mut self, name: &str, identity: Identity, method: &'static str) -> Auth {
        let store = self.door.gate.store();
        let login = match login::resolve(store.as_ref(), name, identity) {
            Ok(login) => login,
            Err(e) => {
                tracing::info!(peer = %self.peer, user = %name, reason = %e, "ssh login refused");
                return Auth::reject();
            }
        };
        let slot = match self.door.gate.reserve(&login.identity.subject) {
            Ok(slot) => slot,
            Err(e) => {
                tracing::info!(peer = %self.peer, reason = %e, "ssh login refused");
                return Auth::reject();
            }
        };
        tracing::info!(peer = %self.peer, subject = %login.identity.subject, resource = %login.resource.name, method, "ssh login");
        let shared = Arc::new(Shared {
            door: self.door.clone(),
            login,
            peer: self.peer,
            stop: self.stop.clone(),
            slot: std::sync::Mutex::new(Some(slot)),
            gate: OnceCell::new(),
            upstream: OnceCell::new(),
            channels: std::sync::atomic::AtomicU32::new(0),
            grants: std::sync::Mutex::default(),
            front: std::sync::OnceLock::new(),
            tasks: self.tasks.clone(),
        });
        *self.shared.lock().unwrap_or_else(|p| p.into_inner()) = Some(shared);
        self.logged_in.store(true, Ordering::SeqCst);
        Auth::Accept
    }

    fn logged_in_shared(&self) -> Option<Arc<Shared<S>>> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Hand channel `id`'s request to its own task; `false` if there is no such channel.
    fn start(&mut self, id: ChannelId, ask: Ask) -> bool {
        let Some(shared) = self.logged_in_shared() else { return false };
        let Some(opened) = self.channels.get_mut(&id) else { return false };
        let Some(channel) = opened.channel.take() else { return false };
        let (tx, rx) = mpsc::channel(16);
        opened.control = Some(tx);
        let asked = Asked { ask, pty: opened.pty.clone(), forwards: std::mem::take(&mut opened.forwards) };
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).spawn(channel::run(shared, channel, asked, rx));
        true
    }
}

impl<S: Store> Handler for Connection<S> {
    type Error = Error;

    async fn authentication_banner(&mut self) -> std::result::Result<Option<String>, Self::Error> {
        // Said before any login, so a client of a node without the lease learns why it fails.
        Ok((!self.door.gate.store().is_serving()).then(|| {
            "portcullis: this node does not hold the quorum lease and refuses new sessions; retry another node\r\n"
                .to_string()
        }))
    }

    async fn auth_none(&mut self, _user: &str) -> std::result::Result<Auth, Self::Error> {
        let mut methods = MethodSet::empty();
        methods.push(MethodKind::PublicKey);
        methods.push(MethodKind::KeyboardInteractive);
        methods.push(MethodKind::Password);
        Ok(Auth::Reject { proceed_with_methods: Some(methods), partial_success: false })
    }

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        _offer: PublicKeyOffer<'_>,
    ) -> std::result::Result<Auth, Self::Error> {
        // russh offers a certificate here as its bare key, so plain keys cannot be told
        // apart yet: both go on to prove ownership, and a plain key is refused then.
        Ok(Auth::Accept)
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> std::result::Result<Auth, Self::Error> {
        let fingerprint = certs::fingerprint(key.public_key);
        tracing::info!(peer = %self.peer, %user, %fingerprint, reason = "a plain key names no identity; use a certificate from `portcullis ssh login`", "ssh login refused");
        Ok(Auth::reject())
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &Certificate,
    ) -> std::result::Result<Auth, Self::Error> {
        Ok(self.log_in_with_certificate(user, certificate))
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> std::result::Result<Auth, Self::Error> {
        Ok(self.log_in(user, password).await)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> std::result::Result<Auth, Self::Error> {
        let Some(mut response) = response else {
            return Ok(Auth::Partial {
                name: "Portcullis".into(),
                instructions: "".into(),
                // "password" in the prompt: tools that type passwords (sshpass) find it.
                prompts: vec![("Password (your access token): ".into(), false)].into(),
            });
        };
        let token = response.next().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        Ok(self.log_in(user, &token).await)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> std::result::Result<(), Self::Error> {
        if let Some(shared) = self.logged_in_shared() {
            let _ = shared.front.set(session.handle());
        }
        // A channel whose task has ended is gone, whoever closed it first (russh tells
        // the handler only when the client does).
        self.channels
            .retain(|_, opened| opened.channel.is_some() || opened.control.as_ref().is_some_and(|c| !c.is_closed()));
        if self.channels.len() >= self.door.settings.max_channels {
            tracing::info!(peer = %self.peer, "ssh: too many channels; refusing another");
            reply.reject(russh::ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        self.channels.insert(
            channel.id(),
            Opened { channel: Some(channel), pty: None, forwards: Forwards::default(), control: None },
        );
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> std::result::Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        pix_width: u32,
        pix_height: u32,
        modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> std::result::Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(opened) if opened.channel.is_some() => {
                let term = term.chars().take(64).collect();
                opened.pty = Some(PtyAsk { term, cols, rows, pix_width, pix_height, modes: modes.to_vec() });
                session.channel_success(channel)?;
            }
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> std::result::Result<(), Self::Error> {
        // The host's environment is the gateway's login's; a client's variables could
        // change what a decided command does (LD_PRELOAD, PATH...).
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> std::result::Result<(), Self::Error> {
        let line = String::from_utf8_lossy(data).into_owned();
        if self.start(channel, Ask::Exec(line)) {
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> std::result::Result<(), Self::Error> {
        if self.start(channel, Ask::Shell) {
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> std::result::Result<(), Self::Error> {
        if self.start(channel, Ask::Subsystem(name.to_string())) {
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        cols: u32,
        rows: u32,
        pix_width: u32,
        pix_height: u32,
        _session: &mut Session,
    ) -> std::result::Result<(), Self::Error> {
        if let Some(opened) = self.channels.get_mut(&channel) {
            match (&opened.control, &mut opened.pty) {
                (Some(control), _) => {
                    let _ = control.try_send(Control::WindowChange { cols, rows, pix_width, pix_height });
                }
                (None, Some(pty)) => (pty.cols, pty.rows) = (cols, rows),
                (None, None) => {}
            }
        }
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut Session,
    ) -> std::result::Result<(), Self::Error> {
        if let Some(control) = self.channels.get(&channel).and_then(|o| o.control.as_ref()) {
            let _ = control.try_send(Control::Signal(signal));
        }
        Ok(())
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> std::result::Result<bool, Self::Error> {
        // Decided with the channel's command (its own request of kind `forward`); the
        // answer here only says the channel can still take it. russh answers from the
        // returned value.
        Ok(match self.channels.get_mut(&channel) {
            Some(opened) if opened.channel.is_some() => {
                opened.forwards.agent = true;
                true
            }
            _ => false,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn x11_request(
        &mut self,
        channel: ChannelId,
        single_connection: bool,
        x11_auth_protocol: &str,
        x11_auth_cookie: &str,
        x11_screen_number: u32,
        session: &mut Session,
    ) -> std::result::Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(opened) if opened.channel.is_some() => {
                // The client's (fake) cookie goes to the host as it is, so the client
                // can check the X11 connections that come back, as with OpenSSH.
                opened.forwards.x11 = Some(X11Ask {
                    single_connection,
                    protocol: x11_auth_protocol.chars().take(64).collect(),
                    cookie: x11_auth_cookie.chars().take(256).collect(),
                    screen: x11_screen_number,
                });
                session.channel_success(channel)?;
            }
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> std::result::Result<bool, Self::Error> {
        let Some(shared) = self.logged_in_shared() else { return Ok(false) };
        let _ = shared.front.set(session.handle());
        // russh writes a global request's answer when this returns (they are answered
        // in order), so a remote forward is decided here, within a bound, and is never
        // held for an approval. It runs in a task of its own: the bound cutting it
        // short leaves no commit half done.
        let address: String = address.chars().take(255).collect();
        let deciding = tokio::spawn(forward::open_remote(shared, address, *port));
        let bound = self.door.settings.upstream_timeout + REMOTE_FORWARD_SLACK;
        Ok(match tokio::time::timeout(bound, deciding).await {
            Ok(Ok(Some(listening))) => {
                *port = listening;
                true
            }
            _ => false,
        })
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> std::result::Result<bool, Self::Error> {
        let Some(shared) = self.logged_in_shared() else { return Ok(false) };
        if !shared.revoke_remote(address, port) {
            return Ok(false);
        }
        let address = address.to_string();
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).spawn(async move {
            if let Ok(upstream) = shared.upstream().await
                && let Err(e) = upstream.cancel_tcpip_forward(&address, port).await
            {
                tracing::info!(error = %e, "remote forward not canceled on the host");
            }
        });
        Ok(true)
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> std::result::Result<(), Self::Error> {
        // Decided (and possibly held) in its own task; the open is answered from there.
        let Some(shared) = self.logged_in_shared() else {
            reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        };
        let target = super::forward::Target {
            host: host_to_connect.chars().take(255).collect(),
            port: port_to_connect,
            from_host: originator_address.chars().take(255).collect(),
            from_port: originator_port,
        };
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).spawn(super::forward::run(shared, channel, reply, target));
        Ok(())
    }
}
