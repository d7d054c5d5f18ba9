//! Forwarding: each forward is a request like any other, of kind `forward`, denied by
//! default and decided on its own text:
//! - local (`ssh -L`): a `direct-tcpip` channel, `forward to HOST:PORT`; when policy
//!   allows it (or an approver does: the client's channel open waits), the host opens
//!   the connection (so the target is reached from the host, as with OpenSSH);
//! - remote (`ssh -R`): `remote forward from ADDR:PORT` (`*` for any address); the host
//!   listens and its connections come back through `inbound`. Never held: the client's
//!   request must be answered before anything else on its connection moves, so a review
//!   is refused (a rule must allow it);
//! - agent (`ssh -A`) and X11 (`ssh -X`): `agent forwarding`, `X11 forwarding`, decided
//!   with the channel that asks for them, before its command (`channel`).
//!
//! The bytes are relayed as they are, counted but not masked (they are a protocol the
//! door does not read).

use std::sync::Arc;
use std::time::Instant;

use russh::server::{ChannelOpenHandle, Msg};
use russh::{Channel, ChannelMsg, ChannelOpenFailure};

use super::connection::Shared;
use super::inbound::Grant;
use crate::gate::{Combined, Door, Effect, GateSession, GaveUp, OutputRecord, Refusal, ResultRecord, Waiting, Work};
use crate::policy::{Protocol, Request};
use crate::store::Store;

/// Where the client wants to go, and where it says the connection comes from.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u32,
    pub from_host: String,
    pub from_port: u32,
}

/// A client waiting for a channel to open can be told nothing; it gives up only with
/// its connection (the hold's deadline bounds the wait).
struct Opening;

impl Door for Opening {
    async fn tell_waiting(&mut self, _waiting: &Waiting<'_>) -> crate::error::Result<()> {
        Ok(())
    }

    async fn gave_up(&mut self) -> GaveUp {
        std::future::pending().await
    }
}

/// A forward as policy sees it: kind `forward`, `line` its text.
fn request<S: Store>(shared: &Shared<S>, line: &str) -> Request {
    Request {
        resource: shared.login.resource.name.clone(),
        protocol: Protocol::Ssh,
        kind: "forward".into(),
        tables: Vec::new(),
        functions: Vec::new(),
        commands: Vec::new(),
        path: None,
        text: line.to_string(),
        missing_where: false,
        dynamic_sql: false,
        locks_rows: false,
        json: Default::default(),
        writes: true,
    }
}

/// Whether a review may be held for this forward, or must be refused at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// The client can wait (its channel open, its command).
    May,
    /// The answer is due before anything else on the connection moves (a global
    /// request is answered in order): a review is refused, an allow rule is needed.
    MustNot,
}

/// Phases decide, hold and audit for one forward (`line` is its text): `Ok` once it is
/// allowed (or approved) and its record committed (strict), else the refusal, already
/// recorded. The decision is the forward's own, whatever else the connection runs.
pub async fn clear<S: Store, D: Door>(
    shared: &Shared<S>,
    gate: &GateSession<S>,
    door: &mut D,
    line: &str,
    hold: Hold,
) -> Result<(), Refusal> {
    let work = Work::Ssh { line: line.into(), channel: "forward", programs: Vec::new() };
    if let Err(refusal) = gate.check_lease() {
        gate.refused(&work, None, &refusal).await;
        return Err(refusal);
    }
    let request = request(shared, line);
    let judgement = gate
        .decide(std::slice::from_ref(&request))
        .map_err(|e| Refusal::Undecided { detail: format!("no policy to decide {line}: {e}") })?;
    if hold == Hold::MustNot && matches!(judgement.verdict, Combined::Review(_)) {
        let refusal = Refusal::Unsupported {
            detail: format!(
                "{line} needs an approval, and it cannot wait for one (SSH answers it at once); a rule must allow it"
            ),
        };
        gate.refused(&work, Some(&judgement), &refusal).await;
        return Err(refusal);
    }
    let cleared = match gate.clear(door, &work, judgement).await {
        Ok(Ok(c)) => c,
        Ok(Err(refusal)) => return Err(refusal),
        Err(e) => return Err(Refusal::Undecided { detail: e.to_string() }),
    };
    gate.audit(&[(&work, &cleared)], Effect::Writes).await.map(|_| ())
}

/// Decide the forward, open it on the host, and relay until either side closes.
pub async fn run<S: Store>(shared: Arc<Shared<S>>, channel: Channel<Msg>, reply: ChannelOpenHandle, target: Target) {
    let line = format!("forward to {}:{}", target.host, target.port);
    if !shared.door.gate.store().is_serving() {
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        return;
    }
    let Ok(gate) = shared.gate().await else {
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        return;
    };
    if clear(&shared, &gate, &mut Opening, &line, Hold::May).await.is_err() {
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        return;
    }
    let started = Instant::now();
    let opened = match shared.upstream().await {
        Ok(upstream) => upstream.open_direct_tcpip(&target).await,
        Err(e) => Err(e),
    };
    let host = match opened {
        Ok(h) => h,
        Err(e) => {
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            let result = ResultRecord {
                tags: vec!["refused by the host".into()],
                error: Some(e.to_string()),
                ..Default::default()
            };
            gate.record(result).await;
            return;
        }
    };
    reply.accept().await;
    let (sent, received, cut) = relay(&shared, channel, host).await;
    let result = ResultRecord {
        tags: vec!["closed".into()],
        error: cut,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        output: Some(OutputRecord {
            exit_status: None,
            exit_signal: None,
            stdout_bytes: received,
            stderr_bytes: sent,
            blake3: String::new(),
            preview: String::new(),
        }),
        ..Default::default()
    };
    gate.record(result).await;
}

/// A remote forward (`ssh -R`): decided (never held: see [`Hold::MustNot`]), then the
/// host listens on `address:port` and opens a channel back for each connection
/// (`inbound`); the port it listens on, or `None` when refused.
pub async fn open_remote<S: Store>(shared: Arc<Shared<S>>, address: String, port: u32) -> Option<u32> {
    let shown = if address.is_empty() { "*" } else { address.as_str() };
    let line = format!("remote forward from {shown}:{port}");
    if !shared.door.gate.store().is_serving() {
        return None;
    }
    let gate = shared.gate().await.ok()?;
    clear(&shared, &gate, &mut Opening, &line, Hold::MustNot).await.ok()?;
    let listening = match shared.upstream().await {
        Ok(upstream) => upstream.tcpip_forward(&address, port).await,
        Err(e) => Err(e),
    };
    match listening {
        Ok(bound) => {
            shared.grant(Grant::Remote { address: address.clone(), port: bound });
            gate.record(ResultRecord { tags: vec![format!("host listens on {shown}:{bound}")], ..Default::default() })
                .await;
            Some(bound)
        }
        Err(e) => {
            let result = ResultRecord {
                tags: vec!["refused by the host".into()],
                error: Some(e.to_string()),
                ..Default::default()
            };
            gate.record(result).await;
            None
        }
    }
}

/// Bytes both ways until either side closes (or the node must stop serving): returns
/// (bytes to the host, bytes to the client, why the gateway cut it).
pub async fn relay<S: Store>(
    shared: &Shared<S>,
    client: Channel<Msg>,
    host: Channel<russh::client::Msg>,
) -> (u64, u64, Option<String>) {
    let (mut from_client, to_client) = client.split();
    let (mut from_host, to_host) = host.split();
    let (mut up, mut down) = (0u64, 0u64);
    let mut serving = shared.door.gate.store().serving();
    let upload = async {
        while let Some(msg) = from_client.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    up += data.len() as u64;
                    if to_host.data_bytes(data).await.is_err() {
                        break;
                    }
                }
                ChannelMsg::Eof => {
                    let _ = to_host.eof().await;
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
    };
    let download = async {
        while let Some(msg) = from_host.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    down += data.len() as u64;
                    if to_client.data_bytes(data).await.is_err() {
                        break;
                    }
                }
                ChannelMsg::Eof => {
                    let _ = to_client.eof().await;
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
    };
    let mut cut = None;
    tokio::select! {
        () = upload => {}
        () = download => {}
        _ = serving.wait_for(|s| !*s) => cut = Some(Refusal::LeaseLost.to_string()),
        _ = shared.stop.cancelled() => cut = Some("this Portcullis node is shutting down".to_string()),
    }
    let _ = to_host.close().await;
    let _ = to_client.eof().await;
    let _ = to_client.close().await;
    (up, down, cut)
}
