//! One cluster node: store, Raft, transport, lease and write path, assembled.
//!
//! [`ClusterNode`] is the handle the rest of the process uses (admin API, doors).
//! [`NodeCore`] (in `node_core`) is what it shares with its background tasks and the
//! inbound service. This module only assembles: settings and status types, the wiring
//! in [`ClusterNode::start`], and the handle's methods.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::{Config, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Member;
use crate::command::{Command, Op, Response};
use crate::crypto::DataKey;
use crate::error::{Error, Result};
use crate::lease::Lease;
use crate::model::SealedSecret;
use crate::network::ForwardRequest;
use crate::network::client::{MAX_MESSAGE_BYTES, Peers};
use crate::network::server::RaftGrpc;
use crate::network::tls::TlsMaterial;
use crate::proto::raft_service_server::RaftServiceServer;
use crate::store::StateView;
use crate::typ::{Raft, RaftError};

pub use crate::node_core::NodeCore;

/// Timing of one node. The lease must stay below the election timeout (DESIGN §4).
#[derive(Debug, Clone)]
pub struct Timing {
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
    /// How long a confirmed quorum contact lets this node serve.
    pub lease: Duration,
    /// Deadline of every replicated write.
    pub write_deadline: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat: Duration::from_millis(100),
            election_min: Duration::from_millis(1100),
            election_max: Duration::from_millis(1200),
            lease: Duration::from_millis(1000),
            write_deadline: Duration::from_millis(3000),
        }
    }
}

/// Everything a node needs to start.
pub struct NodeSettings {
    pub id: u64,
    pub data_dir: PathBuf,
    /// This node's advertised addresses.
    pub member: Member,
    /// The initial voters, used by `initialize` when given no members.
    pub peers: BTreeMap<u64, Member>,
    pub tls: TlsMaterial,
    pub data_key: DataKey,
    pub timing: Timing,
    /// Build a snapshot (and purge the log behind it) after this many entries, paced
    /// by how long the last build took (`snapshot_pacing`).
    pub snapshot_after_entries: u64,
    /// Drop closed sessions older than this (None: keep forever).
    pub retention: Option<Duration>,
    /// TEST ONLY (chaos harness's planted fault): serve without holding the lease.
    /// The node binary refuses it unless an environment variable confirms it.
    pub unsafe_no_lease: bool,
}

/// A node's view of itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    pub id: u64,
    pub raft_addr: String,
    pub admin_addr: String,
    /// leader | follower | candidate | learner | shutdown | unreachable
    pub role: String,
    pub serving: bool,
    pub last_applied: u64,
    pub term: u64,
    pub leader: Option<u64>,
    pub initialized: bool,
}

/// Every member's status, each asked directly.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterStatus {
    pub leader: Option<u64>,
    pub term: u64,
    pub nodes: Vec<NodeStatus>,
}

/// Handle to a running node. Cheap to clone.
#[derive(Clone)]
pub struct ClusterNode {
    core: Arc<NodeCore>,
}

pub fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

impl ClusterNode {
    /// Open the store, start Raft, serve node-to-node RPCs on `raft_listener` and keep
    /// the lease. Everything stops when `shutdown` is cancelled.
    pub async fn start(
        settings: NodeSettings,
        raft_listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        if settings.id == 0 {
            return Err(Error::Membership("node id 0 is reserved; use ids from 1".into()));
        }
        let t = &settings.timing;
        let election_ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let config = Config {
            cluster_name: "portcullis".into(),
            heartbeat_interval: election_ms(t.heartbeat),
            election_timeout_min: election_ms(t.election_min),
            election_timeout_max: election_ms(t.election_max),
            install_snapshot_timeout: 10_000,
            // Snapshots are triggered by `snapshot_pacing`: after as many entries, paced
            // by how long the last build took.
            snapshot_policy: SnapshotPolicy::Never,
            // Keep some log behind a snapshot so briefly lagging followers need no snapshot.
            max_in_snapshot_log_to_keep: (settings.snapshot_after_entries / 2).clamp(1, 1000),
            snapshot_max_chunk_size: 4 * 1024 * 1024,
            // openraft gives one append-entries RPC a heartbeat interval (100 ms) to
            // complete; audit batches make entries large, so send few per RPC or a busy
            // follower times out and the leader loses its quorum (and the lease).
            max_payload_entries: 16,
            ..Config::default()
        };
        if t.lease >= t.election_min {
            return Err(Error::Membership(format!(
                "lease {:?} must be shorter than election_timeout_min {:?}, or an old leader could still serve after a new one is elected",
                t.lease, t.election_min
            )));
        }
        let config = Arc::new(config.validate().map_err(|e| Error::Membership(format!("raft config: {e}")))?);
        let (log_store, state_machine, view) = crate::store::open(&settings.data_dir)?;
        let peers = Peers::new(settings.tls.mutual_client(), Duration::from_millis(500));
        let raft = Raft::new(settings.id, config, peers.clone(), log_store, state_machine)
            .await
            .map_err(|e| Error::Fatal(e.to_string()))?;

        let (lease, serving_tx) = Lease::new(settings.timing.lease, settings.unsafe_no_lease);
        let core = Arc::new(NodeCore {
            id: settings.id,
            raft,
            view,
            peers,
            settings,
            lease,
            started: tokio::time::Instant::now(),
            last_leader_contact_ms: std::sync::atomic::AtomicU64::new(0),
        });

        let service = RaftServiceServer::new(RaftGrpc::new(core.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let server = tonic::transport::Server::builder()
            .tls_config(core.settings.tls.mutual_server())
            .map_err(|e| Error::Tls(e.to_string()))?
            .add_service(service);
        let incoming = crate::network::incoming_nodelay(raft_listener);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = server.serve_with_incoming_shutdown(incoming, stop.cancelled()).await {
                tracing::error!(error = %e, "node-to-node server stopped");
            }
        });

        Lease::spawn(core.clone(), serving_tx, shutdown.clone());
        crate::election::spawn(core.clone(), shutdown.clone());
        spawn_metrics(core.clone(), shutdown.clone());
        crate::snapshot_pacing::spawn(core.clone(), shutdown.clone());
        crate::sweep::spawn(core.clone(), shutdown.clone());
        if let Some(retention) = core.settings.retention {
            spawn_retention(core.clone(), retention, shutdown.clone());
        }
        let raft = core.raft.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            let _ = raft.shutdown().await;
        });
        Ok(ClusterNode { core })
    }

    pub fn id(&self) -> u64 {
        self.core.id
    }

    pub fn view(&self) -> &StateView {
        &self.core.view
    }

    /// Stop Raft, then record a clean close, so the next start trusts the state on
    /// disk instead of rebuilding it from the snapshot (`store::recovery`).
    pub async fn shutdown(&self) -> Result<()> {
        self.core.raft.shutdown().await.map_err(|e| Error::Fatal(e.to_string()))?;
        self.core.view.mark_clean().await
    }

    pub fn raft(&self) -> &Raft {
        &self.core.raft
    }

    /// Whether this node holds the quorum lease right now: the lease task says so and
    /// the lease has not run out on the clock (the task may not have run yet).
    pub fn is_serving(&self) -> bool {
        self.core.is_serving()
    }

    /// Changes of the serving state; every blocking wait of a door selects on it.
    pub fn serving(&self) -> watch::Receiver<bool> {
        self.core.lease.serving()
    }

    /// A replicated write: committed by a quorum and applied, or an error within the
    /// write deadline. Followers forward to the leader.
    pub async fn write(&self, op: Op) -> Result<Response> {
        self.write_command(Command::new(op)).await
    }

    /// As [`write`](Self::write) with a caller-chosen request id (retries reuse it).
    pub async fn write_command(&self, cmd: Command) -> Result<Response> {
        let started = std::time::Instant::now();
        let result = crate::forward::write(&self.core, cmd).await;
        metrics::histogram!("portcullis_commit_seconds").record(started.elapsed().as_secs_f64());
        match result? {
            Response::Rejected { reason } => Err(Error::Rejected(reason)),
            other => Ok(other),
        }
    }

    /// Make this the first node of a new cluster. With no `members`, uses the
    /// configured peers.
    pub async fn initialize(&self, members: BTreeMap<u64, Member>) -> Result<()> {
        let members = if members.is_empty() { self.core.settings.peers.clone() } else { members };
        if !members.contains_key(&self.core.id) {
            return Err(Error::Membership(format!(
                "the initial members must include this node (id {}); configured peers: {:?}",
                self.core.id,
                members.keys().collect::<Vec<_>>()
            )));
        }
        match self.core.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => {
                Err(Error::Membership("cluster is already initialized".into()))
            }
            Err(e) => Err(Error::Membership(e.to_string())),
        }
    }

    /// Add a node: first as a learner that catches up, then as a voter.
    pub async fn add_node(&self, id: u64, member: Member) -> Result<()> {
        if id == 0 {
            return Err(Error::Membership("node id 0 is reserved; use ids from 1".into()));
        }
        crate::forward::membership(&self.core, ForwardRequest::AddNode { id, member }).await
    }

    pub async fn remove_node(&self, id: u64) -> Result<()> {
        crate::forward::membership(&self.core, ForwardRequest::RemoveNode { id }).await
    }

    pub fn local_status(&self) -> NodeStatus {
        self.core.local_status()
    }

    /// Status of every member, each asked directly with a short timeout.
    pub async fn cluster_status(&self) -> ClusterStatus {
        let metrics = self.core.raft.metrics().borrow().clone();
        let members: Vec<(u64, Member)> = metrics.membership_config.nodes().map(|(id, m)| (*id, m.clone())).collect();
        let asks = members.into_iter().map(|(id, member)| {
            let core = self.core.clone();
            async move {
                if id == core.id {
                    return core.local_status();
                }
                match core.peers.status(id, &member.raft_addr, Duration::from_millis(800)).await {
                    Ok(s) => NodeStatus {
                        id,
                        raft_addr: member.raft_addr,
                        admin_addr: member.admin_addr,
                        role: s.role,
                        serving: s.serving,
                        last_applied: s.last_applied,
                        term: s.term,
                        leader: s.leader,
                        initialized: s.initialized,
                    },
                    Err(_) => NodeStatus {
                        id,
                        raft_addr: member.raft_addr,
                        admin_addr: member.admin_addr,
                        role: "unreachable".into(),
                        serving: false,
                        last_applied: 0,
                        term: 0,
                        leader: None,
                        initialized: false,
                    },
                }
            }
        });
        let nodes = futures_join_all(asks).await;
        ClusterStatus { leader: metrics.current_leader, term: metrics.current_term, nodes }
    }

    pub fn seal_secret(&self, plaintext: &str) -> Result<SealedSecret> {
        self.core.settings.data_key.seal(plaintext)
    }

    pub fn open_secret(&self, sealed: &SealedSecret) -> Result<String> {
        self.core.settings.data_key.open(sealed)
    }
}

/// Run futures concurrently and collect their outputs in order.
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

/// Export Raft state as Prometheus gauges whenever it changes.
fn spawn_metrics(core: Arc<NodeCore>, shutdown: CancellationToken) {
    let mut rx = core.raft.metrics();
    tokio::spawn(async move {
        loop {
            {
                let m = rx.borrow_and_update();
                metrics::gauge!("portcullis_raft_term").set(m.current_term as f64);
                metrics::gauge!("portcullis_raft_last_applied")
                    .set(m.last_applied.map(|l| l.index).unwrap_or(0) as f64);
                for state in [ServerState::Leader, ServerState::Follower, ServerState::Candidate, ServerState::Learner]
                {
                    let value = if m.state == state { 1.0 } else { 0.0 };
                    metrics::gauge!("portcullis_raft_role", "role" => role_name(state)).set(value);
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = rx.changed() => if changed.is_err() { return },
            }
        }
    });
}

/// On the leader, prune closed sessions past the retention horizon once a minute.
fn spawn_retention(core: Arc<NodeCore>, retention: Duration, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if core.raft.metrics().borrow().state != ServerState::Leader {
                continue;
            }
            let horizon = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
            let before = crate::model::now_millis().saturating_sub(horizon);
            let cmd = Command::new(Op::PruneSessions { before });
            if let Err(e) = crate::forward::write(&core, cmd).await {
                tracing::warn!(error = %e, "retention pruning failed; will retry");
            }
        }
    });
}
