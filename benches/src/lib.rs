//! Shared pieces of the benchmarks: an in-process cluster of real nodes (real mTLS
//! transport on loopback, real sled stores with fdatasync) and small statistics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

pub mod cpu;
pub mod http_load;

use portcullis_raft::Member;
use portcullis_raft::crypto::DataKey;
use portcullis_raft::network::dev_ca;
use portcullis_raft::network::tls::{TlsMaterial, TlsPaths};
use portcullis_raft::node::{ClusterNode, NodeSettings, Timing};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub struct BenchNode {
    pub node: ClusterNode,
    pub stop: CancellationToken,
}

/// Start `n` nodes in this process under `dir`, initialize, wait until all serve.
pub async fn start_cluster(dir: &Path, n: u64) -> BTreeMap<u64, BenchNode> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    dev_ca::ensure_ca(dir).unwrap();
    let mut listeners = BTreeMap::new();
    let mut members = BTreeMap::new();
    for id in 1..=n {
        dev_ca::issue_node_cert(dir, id).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        members.insert(id, Member { raft_addr: addr, admin_addr: String::new() });
        listeners.insert(id, l);
    }
    let mut nodes = BTreeMap::new();
    for (id, listener) in listeners {
        let tls = TlsMaterial::load(&TlsPaths {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("node{id}.pem")),
            key: dir.join(format!("node{id}.key")),
        })
        .unwrap();
        let settings = NodeSettings {
            id,
            data_dir: dir.join(format!("node{id}")),
            member: members[&id].clone(),
            peers: members.clone(),
            tls,
            data_key: DataKey::from_bytes(&[9u8; 32]).unwrap(),
            timing: Timing::default(),
            snapshot_after_entries: 20_000,
            retention: None,
            unsafe_no_lease: false,
        };
        let stop = CancellationToken::new();
        let node = ClusterNode::start(settings, listener, stop.clone()).await.unwrap();
        nodes.insert(id, BenchNode { node, stop });
    }
    nodes[&1].node.initialize(BTreeMap::new()).await.unwrap();
    wait_serving(&nodes, None).await;
    nodes
}

/// Wait until every node in `nodes` serves under a leader other than `not_leader`.
pub async fn wait_serving(nodes: &BTreeMap<u64, BenchNode>, not_leader: Option<u64>) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let leaders: Vec<Option<u64>> = nodes.values().map(|n| n.node.local_status().leader).collect();
        let leader = leaders.first().copied().flatten();
        let agreed = leader.is_some() && leaders.iter().all(|l| *l == leader) && leader != not_leader;
        if agreed && nodes.values().all(|n| n.node.is_serving()) {
            return leader.unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "cluster did not serve within 30 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The `q`-quantile of sorted `samples`.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
