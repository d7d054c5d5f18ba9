//! # portcullis-raft
//!
//! The replicated state of a Portcullis cluster: policy, resources, approvals and the
//! session index, kept by openraft on sled, plus what a node needs around it.
//!
//! ## Layout
//! - [`model`], [`command`]: the data and the replicated writes (one serde enum).
//! - [`store`]: log, vote and state machine in one sled database; snapshots as files;
//!   the one function that syncs to disk.
//! - [`network`]: node-to-node gRPC (mTLS): outbound client, inbound service.
//! - [`forward`]: the write path: commit locally on the leader or forward to it, always
//!   under a deadline.
//! - [`lease`]: the quorum lease that decides whether this node serves (fail closed).
//! - [`notify`]: apply notifications for waiters.
//! - [`audit_batch`]: group commit of audit events.
//! - [`backup`]: the backup file format (`portcullis backup` / `restore`).
//! - [`crypto`]: the cluster data key that seals backend secrets.
//! - [`node`]: assembles all of the above for one process; `node_core` is the state
//!   its handle, background tasks and inbound service share.

// openraft's `StorageError` is large, and its traits dictate it as our storage error type.
#![allow(clippy::result_large_err)]

pub mod audit_batch;
pub mod backup;
pub mod command;
pub mod crypto;
mod election;
pub mod error;
pub mod forward;
pub mod ids;
pub mod lease;
pub mod model;
pub mod network;
pub mod node;
mod node_core;
pub mod notify;
mod snapshot_pacing;
pub mod store;
mod sweep;

pub mod proto {
    //! Generated node-to-node protocol.
    #![allow(clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    tonic::include_proto!("portcullis.raft.v1");
}

pub use error::{Error, Result};

/// A cluster member as recorded in the Raft membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// Node-to-node gRPC address (`host:port`), served with mTLS.
    pub raft_addr: String,
    /// Admin gRPC address (`host:port`), for clients and `cluster status`.
    pub admin_addr: String,
}

openraft::declare_raft_types!(
    /// openraft type configuration of Portcullis.
    pub TypeConfig:
        D = std::sync::Arc<command::Command>,
        R = command::Response,
        NodeId = u64,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Aliases for openraft's generic types.
pub mod typ {
    use crate::{Member, TypeConfig};

    pub type Raft = openraft::Raft<TypeConfig>;
    pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<u64, E>;
    pub type RPCError<E = openraft::error::Infallible> = openraft::error::RPCError<u64, Member, RaftError<E>>;
    pub type ClientWriteError = openraft::error::ClientWriteError<u64, Member>;
    pub type ForwardToLeader = openraft::error::ForwardToLeader<u64, Member>;
    pub type CheckIsLeaderError = openraft::error::CheckIsLeaderError<u64, Member>;
    pub type InitializeError = openraft::error::InitializeError<u64, Member>;
    pub type ClientWriteResponse = openraft::raft::ClientWriteResponse<TypeConfig>;
    pub type Metrics = openraft::RaftMetrics<u64, Member>;
}
