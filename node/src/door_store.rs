//! The doors' view of the cluster: [`portcullis_proxy::store::Store`] on a cluster node.

use std::sync::Arc;
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
    /// Resources and policies as last read, with the config generation they were read
    /// at (every request reads them; decoding them from sled each time cost the HTTP
    /// door about 8 % of its CPU). std mutex: never held across an await.
    config: std::sync::Mutex<ConfigCache>,
}

#[derive(Default)]
struct ConfigCache {
    generation: Option<u64>,
    policies: Option<Arc<Vec<Policy>>>,
    resources: std::collections::HashMap<String, Option<Arc<Resource>>>,
}

/// More resource names than this cached (names that do not exist count too): start over.
const MAX_CACHED_RESOURCES: usize = 4096;

impl NodeStore {
    pub fn new(node: ClusterNode, batcher: EventBatcher) -> Self {
        NodeStore { node, batcher, config: std::sync::Mutex::default() }
    }

    /// The cache, emptied first if the config changed since it was filled. The
    /// generation is read before anything is read from the store (see
    /// `Notifier::config_generation`).
    fn config_cache(&self) -> (u64, std::sync::MutexGuard<'_, ConfigCache>) {
        let generation = self.node.view().notifier().config_generation();
        let mut cache = self.config.lock().unwrap_or_else(|p| p.into_inner());
        if cache.generation != Some(generation) {
            *cache = ConfigCache { generation: Some(generation), ..ConfigCache::default() };
        }
        (generation, cache)
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

    fn resource(&self, name: &str) -> Result<Option<Arc<Resource>>, ProxyError> {
        let (generation, cache) = self.config_cache();
        if let Some(found) = cache.resources.get(name) {
            return Ok(found.clone());
        }
        drop(cache);
        let found = self.node.view().resource(name).map_err(map)?.map(Arc::new);
        let mut cache = self.config.lock().unwrap_or_else(|p| p.into_inner());
        if cache.generation == Some(generation) {
            if cache.resources.len() >= MAX_CACHED_RESOURCES {
                cache.resources.clear();
            }
            cache.resources.insert(name.to_string(), found.clone());
        }
        Ok(found)
    }

    fn policies(&self) -> Result<Arc<Vec<Policy>>, ProxyError> {
        let (generation, cache) = self.config_cache();
        if let Some(policies) = &cache.policies {
            return Ok(policies.clone());
        }
        drop(cache);
        let policies = Arc::new(self.node.view().policies().map_err(map)?);
        let mut cache = self.config.lock().unwrap_or_else(|p| p.into_inner());
        if cache.generation == Some(generation) {
            cache.policies = Some(policies.clone());
        }
        Ok(policies)
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
