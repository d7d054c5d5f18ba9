//! The SSH workload: `ssh_clients` long-lived SSH connections per node through its
//! SSH door (login `demo-ssh`, the chaos engineer's token as password; the russh
//! client), each running one command after another on a new session channel:
//!
//! ```sh
//! echo chaos-ssh-n<node>-c<client>-<seq> $(date +%s%3N) >> chaos-ssh-<pid>.log
//! ```
//!
//! so the host's own file says which operation ran, through which node, and when by
//! the host's clock (the machine's: the same clock as the history's). The chaos
//! policy allows exactly these programs (`echo`, `date`) for the engineer; the
//! resource is strict, so the door commits each command's audit record before the
//! host runs it.
//!
//! Connections are opened before the nemesis starts and kept: a node that lost its
//! quorum cannot record a new session, so only connections it already holds show
//! whether it keeps relaying commands without its lease. A broken connection, or one
//! on which the door refuses another channel, is opened again (through the same
//! node). The door (at the time of writing) counts every channel a connection ever
//! opened against its limit (`ssh_max_channels`, 16), so in practice a connection
//! lasts 16 commands; see CHAOS.md, "Bugs found".

use std::sync::Arc;
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::{self, Handle};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::door_load::{self, DoorClient, ERROR_MAX, bounded};
use crate::history::{History, Op, OpKind, now_ms};
use crate::rng::Rng;

/// Longer than a node's write deadline (3 s) plus a pause: an operation the gateway
/// fails on its own is recorded as failed, not as timed out.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The door's login: the resource (the token is the password).
const LOGIN: &str = "demo-ssh";

pub struct Target {
    pub node: u64,
    /// The node's SSH door, `host:port`.
    pub addr: String,
}

pub struct SshWorkload {
    pub targets: Vec<Target>,
    pub clients: usize,
    pub token: String,
    /// The host's log file the commands append to (relative to the login's home).
    pub log: String,
    pub seed: u64,
}

/// Trusts the door's host key: the harness dials the addresses it was given on a
/// private bridge or loopback; the door's identity is not under test here.
struct TrustDoor;

impl client::Handler for TrustDoor {
    type Error = russh::Error;

    async fn check_server_key(&mut self, _key: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

type Conn = Handle<TrustDoor>;

impl SshWorkload {
    /// Open every connection (bounded; a failure is recorded and retried by the
    /// client), then start the clients; they stop after their command in flight when
    /// `stop` fires.
    pub async fn spawn(self, history: Arc<History>, stop: CancellationToken, set: &mut JoinSet<()>) {
        let token = Arc::new(self.token);
        let log = Arc::new(self.log);
        let mut clients = Vec::new();
        for t in &self.targets {
            for c in 0..self.clients {
                let client = Client {
                    node: t.node,
                    index: c,
                    addr: t.addr.clone(),
                    token: token.clone(),
                    log: log.clone(),
                    history: history.clone(),
                    rng: Rng::new(self.seed ^ 0x55_4800 ^ (t.node << 32) ^ u64::try_from(c).unwrap_or(0)),
                };
                clients.push(client);
            }
        }
        door_load::start_all(clients, stop, set).await;
    }
}

struct Client {
    node: u64,
    index: usize,
    addr: String,
    token: Arc<String>,
    log: Arc<String>,
    history: Arc<History>,
    rng: Rng,
}

/// How one command ended, as the client saw it.
struct Ran {
    exit: Option<u32>,
    stderr: String,
}

impl Client {
    /// Run `line` on a new session channel: its exit status (None if the channel
    /// closed without one) and what it wrote to stderr. Err: the channel could not
    /// be opened or started (the connection is unusable).
    async fn exec(conn: &Conn, line: &str) -> Result<Ran, String> {
        let mut channel = conn.channel_open_session().await.map_err(|e| format!("open a channel: {e}"))?;
        channel.exec(true, line).await.map_err(|e| format!("exec: {e}"))?;
        let mut ran = Ran { exit: None, stderr: String::new() };
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::ExitStatus { exit_status } => ran.exit = Some(exit_status),
                ChannelMsg::ExtendedData { data, .. } if ran.stderr.len() < ERROR_MAX => {
                    ran.stderr.push_str(&String::from_utf8_lossy(&data));
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        Ok(ran)
    }
}

impl DoorClient for Client {
    type Conn = Conn;
    const DOOR: &'static str = "ssh";

    async fn connect(&self) -> Result<Conn, String> {
        let config = Arc::new(client::Config {
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(5)),
            keepalive_max: 3,
            nodelay: true,
            ..client::Config::default()
        });
        let connecting = async {
            let mut conn =
                client::connect(config, self.addr.as_str(), TrustDoor).await.map_err(|e| format!("connect: {e}"))?;
            let auth = conn
                .authenticate_password(LOGIN, self.token.as_str())
                .await
                .map_err(|e| format!("authenticate: {e}"))?;
            if !auth.success() {
                return Err("the door refused the token".to_string());
            }
            Ok(conn)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .unwrap_or_else(|_| Err(format!("no login within {CONNECT_TIMEOUT:?}")))
    }

    fn is_open(conn: &Conn) -> bool {
        !conn.is_closed()
    }

    fn history(&self) -> &History {
        &self.history
    }

    fn node(&self) -> u64 {
        self.node
    }

    fn index(&self) -> usize {
        self.index
    }

    async fn run(mut self, mut conn: Option<Conn>, stop: CancellationToken) {
        let mut seq = 0u64;
        while !stop.is_cancelled() {
            let Some(c) = self.usable(conn.take(), &stop).await else { continue };
            seq += 1;
            let op = format!("chaos-ssh-n{}-c{}-{seq}", self.node, self.index);
            let line = format!("echo {op} $(date +%s%3N) >> {}", self.log);
            let invoked_ms = self.history.invoke(&op, self.node, self.index, OpKind::Ssh);
            let result = tokio::time::timeout(OP_TIMEOUT, Self::exec(&c, &line)).await;
            let (ok, indeterminate, error, keep) = match result {
                Ok(Ok(Ran { exit: Some(0), .. })) => (true, false, None, true),
                Ok(Ok(Ran { exit, stderr })) => {
                    let status = exit.map(|s| format!("exit {s}")).unwrap_or_else(|| "no exit status".into());
                    (false, false, Some(format!("{status}: {}", bounded(&stderr))), true)
                }
                Ok(Err(e)) => (false, false, Some(e), false),
                Err(_) => (false, true, Some(format!("no answer within {OP_TIMEOUT:?}")), false),
            };
            self.history.complete(Op {
                op,
                node: self.node,
                client: self.index,
                f: OpKind::Ssh,
                invoked_ms,
                completed_ms: now_ms(),
                ok,
                indeterminate,
                error,
            });
            if keep {
                conn = Some(c);
            }
            // Every command forks on the host; a few dozen a second per node is plenty.
            let pause = if ok { self.rng.millis(20, 80) } else { Duration::from_millis(50) };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
        if let Some(c) = conn {
            let _ = c.disconnect(russh::Disconnect::ByApplication, "chaos run over", "en").await;
        }
    }
}
