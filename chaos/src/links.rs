//! Node-to-node raft links through delaying relays, for the `slow` nemesis.
//!
//! `tc netem` is missing from these machines' kernels, so latency is added in user
//! space: for every ordered pair of nodes (a, b) a [`Relay`] listens on the bridge,
//! and a DNAT rule in a's namespace sends a's new connections to b's raft port
//! through it; a's established connections to b are aborted once so that they
//! reconnect through the relay. Relays pass traffic at once until a delay is set.
//! They live in this process, so they end with it; the DNAT rules go with the
//! namespaces.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;

use crate::cluster::Playground;
use crate::relay::Relay;

pub struct Links {
    /// (from, to) → the relay a's connections to b's raft port go through.
    relays: BTreeMap<(u64, u64), Relay>,
}

impl Links {
    pub async fn start(pg: &Playground) -> anyhow::Result<Links> {
        let hosts = pg.hosts.as_ref().context("relayed links need network namespaces")?;
        let mut relays = BTreeMap::new();
        for a in &pg.nodes {
            let mut redirects = vec![];
            for b in pg.nodes.iter().filter(|b| b.id != a.id) {
                let target: SocketAddr = b.raft.parse().with_context(|| format!("raft address {}", b.raft))?;
                let relay = Relay::start(SocketAddr::new(hosts.bridge_ip.into(), 0), target).await?;
                redirects.push((target, relay.addr));
                relays.insert((a.id, b.id), relay);
            }
            hosts.redirect(a.id, &redirects)?;
        }
        Ok(Links { relays })
    }

    /// Delay every link that touches one of `nodes` by `d` each way.
    pub fn slow(&self, nodes: &[u64], d: Duration) {
        for ((a, b), relay) in &self.relays {
            if nodes.contains(a) || nodes.contains(b) {
                relay.set_delay(d);
            }
        }
    }

    pub fn clear(&self) {
        for relay in self.relays.values() {
            relay.set_delay(Duration::ZERO);
        }
    }
}
