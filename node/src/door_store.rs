//! The doors' view of the cluster: [`portcullis_proxy::store::Store`] on a cluster node.

use std::time::Duration;

use portcullis_proxy::Error as ProxyError;
use portcullis_proxy::store::{Committed, Store};
use portcullis_raft::Error as RaftError;
use portcullis_raft::audit_batch::EventBatcher;
use portcullis_raft::command::{Op, Response};
use portcullis_raft::model::{Approval, Event, Policy, Resource, SealedSecret, SshAuthority};
use portcullis_raft::node::ClusterNode;
use tokio::sync::watch;

pub struct NodeStore {
    node: ClusterNode,
    batcher: EventBatcher,
}

impl NodeStore {
    pub fn new(node: ClusterNode, batcher: EventBatcher) -> Self {
        NodeStore { node, batcher }
    }
}

fn map(e: RaftError) -> ProxyError {
    match e {
        RaftError::NoQuorum { .. } | RaftError::NotServing { .. } | RaftError::NoLeader => {
            ProxyError::NoQuorum(e.to_string())
        }
        RaftError::Rejected(reason) => ProxyError::Refused(reason),
        other => ProxyError::Store(other.to_string()),
    }
}

impl Store for NodeStore {
    fn node_id(&self) -> u64 {
        self.node.id()
    }

    fn is_serving(&self) -> bool {
        self.node.is_serving()
    }

    fn serving(&self) -> watch::Receiver<bool> {
        self.node.serving()
    }

    fn resource(&self, name: &str) -> Result<Option<Resource>, ProxyError> {
        self.node.view().resource(name).map_err(map)
    }

    fn policies(&self) -> Result<Vec<Policy>, ProxyError> {
        self.node.view().policies().map_err(map)
    }

    fn open_secret(&self, sealed: &SealedSecret) -> Result<String, ProxyError> {
        self.node.open_secret(sealed).map_err(map)
    }

    fn seal_secret(&self, plaintext: &str) -> Result<SealedSecret, ProxyError> {
        self.node.seal_secret(plaintext).map_err(map)
    }

    fn ssh_authority(&self) -> Result<Option<SshAuthority>, ProxyError> {
        self.node.view().ssh_authority().map_err(map)
    }

    async fn submit(&self, op: Op) -> Result<Response, ProxyError> {
        self.node.write(op).await.map_err(map)
    }

    async fn enqueue(&self, events: Vec<Event>) -> Result<Committed, ProxyError> {
        let committed = self.batcher.submit(events).await.map_err(map)?;
        Ok(Box::pin(async move { committed.await.map(|_| ()).map_err(map) }))
    }

    async fn wait_approval(&self, id: &str, timeout: Duration) -> Result<Option<Approval>, ProxyError> {
        self.node.view().wait_approval_decided(id, timeout).await.map_err(map)
    }
}
