//! Local port forwarding (`ssh -L`): a `direct-tcpip` channel is a request like any other,
//! of the kind `forward` with the text `forward to HOST:PORT`. Denied by default; when
//! policy allows it (or an approver does: the client's channel open waits), the host
//! opens the connection (so the target is reached from the host, as with OpenSSH) and
//! the bytes are relayed as they are, counted and digested but not masked (they are a
//! protocol the door does not read). Remote forwarding (`ssh -R`), X11 and agent
//! forwarding are refused and recorded (`connection.rs`).

use std::sync::Arc;
use std::time::Instant;

use russh::server::{ChannelOpenHandle, Msg};
use russh::{Channel, ChannelMsg, ChannelOpenFailure};

use super::connection::Shared;
use crate::gate::{Door, Effect, GaveUp, OutputRecord, Refusal, ResultRecord, Waiting, Work};
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
    let work = Work::Ssh { line: line.as_str().into(), channel: "forward", programs: Vec::new() };
    let request = Request {
        resource: shared.login.resource.name.clone(),
        protocol: Protocol::Ssh,
        kind: "forward".into(),
        tables: Vec::new(),
        functions: Vec::new(),
        commands: Vec::new(),
        path: None,
        text: line.clone(),
        missing_where: false,
        dynamic_sql: false,
        locks_rows: false,
        json: Default::default(),
        writes: true,
    };
    if let Err(refusal) = gate.check_lease() {
        gate.refused(&work, None, &refusal).await;
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        return;
    }
    let Ok(judgement) = gate.decide(std::slice::from_ref(&request)) else {
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        return;
    };
    let cleared = match gate.clear(&mut Opening, &work, judgement).await {
        Ok(Ok(c)) => c,
        _ => {
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
            return;
        }
    };
    if gate.audit(&[(&work, &cleared)], Effect::Writes).await.is_err() {
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
            sha256: String::new(),
            preview: String::new(),
        }),
        ..Default::default()
    };
    gate.record(result).await;
}

/// Bytes both ways until either side closes (or the node must stop serving): returns
/// (bytes to the host, bytes to the client, why the gateway cut it).
async fn relay<S: Store>(
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
