//! The state one node shares with its background tasks and its inbound service.
//!
//! [`ClusterNode`](crate::node::ClusterNode) is the handle the rest of the process
//! uses; it, every task it starts (`lease`, `election`, `sweep`, metrics, retention) and
//! the inbound service (`network::server`) hold one `Arc<NodeCore>`. `node` assembles
//! it; this module only says what it holds and what the node answers from it: its own
//! status, and, as leader, a follower's lease renewal (`read_index_for`) and the writes
//! and membership changes followers forward to it (`handle_forwarded`).

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use openraft::ChangeMembers;

use crate::error::{Error, Result};
use crate::lease::Lease;
use crate::network::client::Peers;
use crate::network::{ForwardReply, ForwardRequest};
use crate::node::{NodeSettings, NodeStatus, role_name};
use crate::store::StateView;
use crate::typ::{ClientWriteError, Raft, RaftError};

/// State shared by the node handle, its tasks and its inbound service.
pub struct NodeCore {
    pub(crate) id: u64,
    pub(crate) raft: Raft,
    pub(crate) view: StateView,
    pub(crate) peers: Peers,
    pub(crate) settings: NodeSettings,
    /// The quorum lease: whether this node may serve right now (see `lease`).
    pub(crate) lease: Lease,
    /// Reference point for `last_leader_contact_ms`.
    pub(crate) started: tokio::time::Instant,
    /// When the leader's append-entries was last accepted, in ms since `started`
    /// (0: never). Drives prompt elections (see `election`).
    pub(crate) last_leader_contact_ms: AtomicU64,
}

// === impl NodeCore ===

impl NodeCore {
    /// Whether this node holds the quorum lease right now (see `Lease::is_held`).
    pub(crate) fn is_serving(&self) -> bool {
        self.lease.is_held()
    }

    pub(crate) fn local_status(&self) -> NodeStatus {
        let m = self.raft.metrics().borrow().clone();
        let member = m
            .membership_config
            .membership()
            .get_node(&self.id)
            .cloned()
            .unwrap_or_else(|| self.settings.member.clone());
        NodeStatus {
            id: self.id,
            raft_addr: member.raft_addr,
            admin_addr: member.admin_addr,
            role: role_name(m.state).into(),
            serving: self.is_serving(),
            last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            term: m.current_term,
            leader: m.current_leader,
            initialized: m.membership_config.membership().nodes().next().is_some(),
        }
    }

    /// Leader side of a follower's lease renewal: confirm leadership with a quorum and
    /// return the index the follower must have applied before it may serve.
    pub(crate) async fn read_index_for(&self, asking: u64) -> Result<u64> {
        let voters: BTreeSet<u64> = self.raft.metrics().borrow().membership_config.membership().voter_ids().collect();
        if !voters.contains(&asking) {
            return Err(Error::NotServing { reason: format!("node {asking} is not a voting member") });
        }
        let timeout = self.settings.timing.lease;
        match tokio::time::timeout(timeout, self.raft.get_read_log_id()).await {
            Ok(Ok((read_log_id, _applied))) => Ok(read_log_id.map(|l| l.index).unwrap_or(0)),
            Ok(Err(e)) => Err(Error::NotServing { reason: e.to_string() }),
            Err(_) => Err(Error::NoQuorum { deadline: timeout, detail: "leadership not confirmed".into() }),
        }
    }

    /// Run a follower's request here, as the leader.
    pub(crate) async fn handle_forwarded(&self, req: ForwardRequest) -> ForwardReply {
        let deadline = self.settings.timing.write_deadline;
        let result = match req {
            ForwardRequest::Write(cmd) => match tokio::time::timeout(deadline, self.raft.client_write(cmd)).await {
                Ok(Ok(resp)) => return ForwardReply::Written(resp.data),
                Ok(Err(e)) => Err(e),
                Err(_) => return ForwardReply::Failed(no_quorum(deadline, "leader could not commit").to_string()),
            },
            ForwardRequest::AddNode { id, member } => {
                let added = tokio::time::timeout(deadline * 4, async {
                    self.raft.add_learner(id, member, true).await?;
                    self.raft.change_membership(ChangeMembers::AddVoterIds([id].into()), false).await
                })
                .await;
                match added {
                    Ok(Ok(_)) => return ForwardReply::Done,
                    Ok(Err(e)) => Err(e),
                    Err(_) => return ForwardReply::Failed(no_quorum(deadline * 4, "membership change").to_string()),
                }
            }
            ForwardRequest::RemoveNode { id } => {
                let voters: BTreeSet<u64> =
                    self.raft.metrics().borrow().membership_config.membership().voter_ids().collect();
                let learners: BTreeSet<u64> =
                    self.raft.metrics().borrow().membership_config.membership().learner_ids().collect();
                if !voters.contains(&id) && !learners.contains(&id) {
                    return ForwardReply::Failed(format!("node {id} is not a member of this cluster"));
                }
                let removal = tokio::time::timeout(deadline * 2, async {
                    if voters.contains(&id) {
                        self.raft.change_membership(ChangeMembers::RemoveVoters([id].into()), false).await?;
                    }
                    self.raft.change_membership(ChangeMembers::RemoveNodes([id].into()), false).await
                })
                .await;
                match removal {
                    Ok(Ok(_)) => return ForwardReply::Done,
                    Ok(Err(e)) => Err(e),
                    Err(_) => return ForwardReply::Failed(no_quorum(deadline * 2, "membership change").to_string()),
                }
            }
        };
        match result {
            Ok(()) => ForwardReply::Done,
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                ForwardReply::NotLeader { leader: f.leader_id, member: f.leader_node }
            }
            Err(e) => ForwardReply::Failed(e.to_string()),
        }
    }
}

/// The error of a write or membership change that no quorum committed within `deadline`.
pub(crate) fn no_quorum(deadline: Duration, detail: &str) -> Error {
    Error::NoQuorum { deadline, detail: detail.to_string() }
}
