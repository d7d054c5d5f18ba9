//! Channels the host opens back toward the client: connections to a remote forward
//! (`ssh -R`), X11 clients on the host, and the host asking for the client's agent.
//!
//! The host may open only what this connection was granted: each grant is a request of
//! kind `forward`, decided, held when policy says review, and on record before the host
//! is asked for it (`forward::clear`). A channel the host opens without a grant is
//! refused and logged (a host that does this is misbehaving). Each connection that goes
//! through is relayed as it is (bytes counted, not read) and recorded when it ends
//! (`connection` record: what, from where, bytes each way).

use std::sync::{Arc, Weak};
use std::time::Instant;

use russh::{ChannelOpenFailure, client};
use serde::Serialize;
use tokio::sync::mpsc;

use super::connection::Shared;
use crate::store::Store;

/// What the host opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A connection to a remote forward listening on `address:port` on the host.
    Forwarded { address: String, port: u32, from: String },
    /// An X11 client on the host.
    X11 { from: String },
    /// The host wants the client's SSH agent.
    Agent,
}

/// A channel the host opened, with the answer it waits for.
pub struct HostOpened {
    pub what: Inbound,
    pub channel: russh::Channel<client::Msg>,
    pub reply: client::ChannelOpenHandle,
}

/// What this connection granted: what the host may open back toward the client.
#[derive(Debug, Default)]
pub struct Grants {
    /// Remote forwards as the host listens on them (address as asked, port as bound).
    remote: Vec<(String, u32)>,
    x11: bool,
    agent: bool,
}

/// What may be granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Remote { address: String, port: u32 },
    X11,
    Agent,
}

impl Grants {
    pub fn grant(&mut self, grant: Grant) {
        match grant {
            Grant::Remote { address, port } => self.remote.push((address, port)),
            Grant::X11 => self.x11 = true,
            Grant::Agent => self.agent = true,
        }
    }

    /// The client canceled a remote forward.
    pub fn revoke_remote(&mut self, address: &str, port: u32) -> bool {
        let before = self.remote.len();
        self.remote.retain(|(a, p)| !(a == address && *p == port));
        self.remote.len() != before
    }

    pub fn covers(&self, what: &Inbound) -> bool {
        match what {
            // The host reports the address as it was asked for.
            Inbound::Forwarded { address, port, .. } => self.remote.iter().any(|(a, p)| a == address && p == port),
            Inbound::X11 { .. } => self.x11,
            Inbound::Agent => self.agent,
        }
    }
}

/// One relayed connection the host opened, as recorded when it ends.
#[derive(Debug, Serialize)]
struct ConnectionRecord<'a> {
    /// `remote forward`, `x11` or `agent`.
    kind: &'static str,
    /// Where it arrived on the host (a remote forward's `address:port`).
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    bytes_to_client: u64,
    bytes_to_host: u64,
    duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Serve the channels the host opens until its connection ends. Holds the connection's
/// state weakly: the state's end (the client gone) ends the host connection and so this.
pub async fn serve<S: Store>(shared: Weak<Shared<S>>, mut opened: mpsc::Receiver<HostOpened>) {
    while let Some(one) = opened.recv().await {
        let Some(shared) = shared.upgrade() else { break };
        let tasks = shared.tasks.clone();
        tasks.lock().unwrap_or_else(|p| p.into_inner()).spawn(relay_one(shared, one));
    }
}

async fn relay_one<S: Store>(shared: Arc<Shared<S>>, one: HostOpened) {
    let HostOpened { what, channel, reply } = one;
    if !shared.granted(&what) {
        tracing::warn!(peer = %shared.peer, what = ?what, "the host opened a channel this connection did not grant; refused");
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        return;
    }
    if !shared.door.gate.store().is_serving() {
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        return;
    }
    let Some(front) = shared.front() else {
        reply.reject(ChannelOpenFailure::ConnectFailed).await;
        return;
    };
    let (kind, to, from) = match &what {
        Inbound::Forwarded { address, port, from } => ("remote forward", Some(format!("{address}:{port}")), Some(from)),
        Inbound::X11 { from } => ("x11", None, Some(from)),
        Inbound::Agent => ("agent", None, None),
    };
    let opened = match &what {
        Inbound::Forwarded { address, port, from } => {
            let (from_host, from_port) = split_host_port(from);
            front.channel_open_forwarded_tcpip(address.clone(), *port, from_host, from_port).await
        }
        Inbound::X11 { from } => {
            let (from_host, from_port) = split_host_port(from);
            front.channel_open_x11(from_host, from_port).await
        }
        Inbound::Agent => front.channel_open_agent().await,
    };
    let started = Instant::now();
    let (bytes_to_host, bytes_to_client, error) = match opened {
        Ok(client) => {
            reply.accept().await;
            super::forward::relay(&shared, client, channel).await
        }
        Err(e) => {
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            (0, 0, Some(format!("the client refused the channel: {e}")))
        }
    };
    let record = ConnectionRecord {
        kind,
        to,
        from: from.map(String::as_str),
        bytes_to_client,
        bytes_to_host,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        error,
    };
    let Ok(gate) = shared.gate().await else { return };
    let commit = gate.recorder().append("connection", &record).await;
    if let Ok(Err(e)) = commit.await {
        tracing::warn!(error = %e, "a forwarded connection's record could not be committed");
    }
}

/// `host:port` as OpenSSH reports an originator (the port 0 when it is not one).
fn split_host_port(from: &str) -> (String, u32) {
    match from.rsplit_once(':') {
        Some((host, port)) => (host.to_string(), port.parse().unwrap_or(0)),
        None => (from.to_string(), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_was_granted_may_be_opened_back() {
        let mut grants = Grants::default();
        let forwarded = |port| Inbound::Forwarded { address: "localhost".into(), port, from: "127.0.0.1:5".into() };
        assert!(!grants.covers(&forwarded(8080)));
        assert!(!grants.covers(&Inbound::Agent));
        assert!(!grants.covers(&Inbound::X11 { from: "127.0.0.1:1".into() }));
        grants.grant(Grant::Remote { address: "localhost".into(), port: 8080 });
        assert!(grants.covers(&forwarded(8080)));
        assert!(!grants.covers(&forwarded(8081)));
        assert!(!grants.covers(&Inbound::Agent), "a port grant is not an agent grant");
        grants.grant(Grant::Agent);
        assert!(grants.covers(&Inbound::Agent));
        assert!(grants.revoke_remote("localhost", 8080));
        assert!(!grants.covers(&forwarded(8080)));
        assert!(!grants.revoke_remote("localhost", 8080));
    }

    #[test]
    fn originators_split_at_the_last_colon() {
        assert_eq!(split_host_port("127.0.0.1:4242"), ("127.0.0.1".to_string(), 4242));
        assert_eq!(split_host_port("::1:22"), ("::1".to_string(), 22));
        assert_eq!(split_host_port("unix"), ("unix".to_string(), 0));
    }
}
