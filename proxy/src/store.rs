//! The seam between the doors and the replicated state.
//!
//! The proxy knows nothing of Raft: it reads state, submits commands, appends audit
//! events, waits for approvals and watches whether its node may serve, all through
//! [`Store`]. The node binary implements it on top of its cluster node.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use portcullis_raft::command::{Op, Response};
use portcullis_raft::model::{Approval, Event, Policy, Resource, SealedSecret, SshAuthority};
use tokio::sync::watch;

use crate::error::Result;

/// Resolves once queued audit events are committed by a quorum.
pub type Committed = std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send>>;

pub trait Store: Send + Sync + 'static {
    /// This node's id (recorded in sessions and approvals).
    fn node_id(&self) -> u64;

    /// Whether this node holds the quorum lease at this instant (checks the clock,
    /// not only the last published state). Check it before relaying anything.
    fn is_serving(&self) -> bool;

    /// Changes of the serving state, for waits that must end when the lease is lost.
    fn serving(&self) -> watch::Receiver<bool>;

    /// The resource named `name`; shared, as the store may keep it while it is unchanged.
    fn resource(&self, name: &str) -> Result<Option<Arc<Resource>>>;

    /// The stored policies. A store may hand out the same `Arc` while they are
    /// unchanged (the gate then skips even comparing them).
    fn policies(&self) -> Result<Arc<Vec<Policy>>>;

    /// Decrypt a backend secret with the cluster data key.
    fn open_secret(&self, sealed: &SealedSecret) -> Result<String>;

    /// Encrypt a secret with the cluster data key before it is replicated (the SSH
    /// authority's keys, made by whichever node first finds none).
    fn seal_secret(&self, plaintext: &str) -> Result<SealedSecret>;

    /// The cluster's SSH authority (CA and host key, sealed), once a node has made it.
    fn ssh_authority(&self) -> Result<Option<SshAuthority>>;

    /// A replicated write (committed by a quorum, or an error within its deadline).
    fn submit(&self, op: Op) -> impl Future<Output = Result<Response>> + Send;

    /// Queue audit events for group commit, together and in order, and resolve once
    /// they are queued: a session's events commit in the order they were queued. The
    /// [`Committed`] future resolves once a quorum committed them.
    fn enqueue(&self, events: Vec<Event>) -> impl Future<Output = Result<Committed>> + Send;

    /// Wait until approval `id` is decided, or `timeout`; returns it as last seen.
    fn wait_approval(&self, id: &str, timeout: Duration) -> impl Future<Output = Result<Option<Approval>>> + Send;
}

#[cfg(any(test, feature = "test-util"))]
pub mod memory;
