//! Outbound node-to-node calls.
//!
//! [`Peers`] keeps one lazily-connected channel per peer address. [`PeerNetwork`] is
//! openraft's per-target `RaftNetwork`; it tells network failures (peer unreachable,
//! back off) apart from errors the remote Raft returned.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{InstallSnapshotError, NetworkError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::{ForwardReply, ForwardRequest, SnapshotChunkMeta};
use crate::error::{Error, Result};
use crate::proto::raft_service_client::RaftServiceClient;
use crate::proto::{Payload, ReadIndexRequest, SnapshotChunk, StatusReply, StatusRequest};
use crate::typ::{RPCError, RaftError};
use crate::{Member, TypeConfig};

/// Largest gRPC message between nodes (append-entries batches, snapshot chunks).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Channels to peers, shared by Raft replication, forwarding and the lease.
#[derive(Clone)]
pub struct Peers {
    tls: ClientTlsConfig,
    connect_timeout: Duration,
    /// std mutex: held only to clone or insert a channel, never across an await.
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// When each peer last answered a Raft RPC from this node (as leader: replication).
    answered: Arc<Mutex<HashMap<u64, Instant>>>,
}

impl Peers {
    pub fn new(tls: ClientTlsConfig, connect_timeout: Duration) -> Self {
        Peers { tls, connect_timeout, channels: Arc::default(), answered: Arc::default() }
    }

    /// When `peer` last answered a Raft RPC sent from here.
    pub(crate) fn last_answer(&self, peer: u64) -> Option<Instant> {
        lock(&self.answered).get(&peer).copied()
    }

    fn answered(&self, peer: u64) {
        lock(&self.answered).insert(peer, Instant::now());
    }

    fn channel(&self, addr: &str) -> Result<Channel> {
        let mut channels = lock(&self.channels);
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|e| Error::Tls(format!("peer address {addr}: {e}")))?
            .tls_config(self.tls.clone())
            .map_err(|e| Error::Tls(format!("peer address {addr}: {e}")))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    pub fn client(&self, addr: &str) -> Result<RaftServiceClient<Channel>> {
        Ok(RaftServiceClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// Ask the leader at `addr` to run `req`, within `timeout`.
    pub async fn forward(
        &self,
        peer: u64,
        addr: &str,
        req: &ForwardRequest,
        timeout: Duration,
    ) -> Result<ForwardReply> {
        let mut client = self.client(addr)?;
        let payload = encode(req).map_err(|e| peer_err(peer, addr, e))?;
        let reply = tokio::time::timeout(timeout, client.forward(payload))
            .await
            .map_err(|_| peer_err(peer, addr, "forwarded write timed out"))?
            .map_err(|s| peer_err(peer, addr, status_text(&s)))?;
        decode(&reply.into_inner()).map_err(|e| peer_err(peer, addr, e))
    }

    /// The leader's read index, confirmed with a quorum (lease renewal of a follower).
    pub async fn read_index(&self, me: u64, leader: u64, addr: &str, timeout: Duration) -> Result<u64> {
        let mut client = self.client(addr)?;
        let reply = tokio::time::timeout(timeout, client.read_index(ReadIndexRequest { node_id: me }))
            .await
            .map_err(|_| peer_err(leader, addr, "read index timed out"))?
            .map_err(|s| peer_err(leader, addr, status_text(&s)))?;
        Ok(reply.into_inner().index)
    }

    pub async fn status(&self, peer: u64, addr: &str, timeout: Duration) -> Result<StatusReply> {
        let mut client = self.client(addr)?;
        let reply = tokio::time::timeout(timeout, client.status(StatusRequest {}))
            .await
            .map_err(|_| peer_err(peer, addr, "status timed out"))?
            .map_err(|s| peer_err(peer, addr, status_text(&s)))?;
        Ok(reply.into_inner())
    }
}

/// The maps behind these mutexes stay consistent under a panic (single inserts), so a
/// poisoned lock is used as it is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn peer_err(peer: u64, addr: &str, detail: impl ToString) -> Error {
    Error::Peer { peer, addr: addr.to_string(), detail: detail.to_string() }
}

/// A gRPC status as text an operator can act on, including the transport cause.
pub fn status_text(s: &tonic::Status) -> String {
    use std::error::Error as _;
    let mut text = if s.message().is_empty() { format!("{:?}", s.code()) } else { s.message().to_string() };
    let mut source = s.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub(crate) fn encode<T: Serialize>(value: &T) -> std::result::Result<Payload, serde_json::Error> {
    Ok(Payload { data: serde_json::to_vec(value)? })
}

pub(crate) fn decode<T: DeserializeOwned>(payload: &Payload) -> std::result::Result<T, serde_json::Error> {
    serde_json::from_slice(&payload.data)
}

// === impl RaftNetworkFactory ===

impl RaftNetworkFactory<TypeConfig> for Peers {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: u64, node: &Member) -> Self::Network {
        PeerNetwork { target, addr: node.raft_addr.clone(), peers: self.clone() }
    }
}

/// openraft's connection to one peer.
pub struct PeerNetwork {
    target: u64,
    addr: String,
    peers: Peers,
}

impl PeerNetwork {
    /// Send `req`, get back the remote's `Result<Resp, RaftError<E>>`.
    async fn call<Req, Resp, E>(
        &self,
        option: &RPCOption,
        send: impl AsyncFnOnce(
            RaftServiceClient<Channel>,
            Payload,
        ) -> std::result::Result<tonic::Response<Payload>, tonic::Status>,
        req: &Req,
    ) -> std::result::Result<Resp, RPCError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = self.peers.client(&self.addr).map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let payload = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let reply = tokio::time::timeout(option.hard_ttl(), send(client, payload))
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?
            .map_err(|s| RPCError::Unreachable(Unreachable::new(&s)))?;
        self.peers.answered(self.target);
        let result: std::result::Result<Resp, RaftError<E>> =
            decode(&reply.into_inner()).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

// === impl RaftNetwork ===

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> std::result::Result<AppendEntriesResponse<u64>, RPCError> {
        self.call(&option, async |mut c, p| c.append_entries(p).await, &rpc).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> std::result::Result<InstallSnapshotResponse<u64>, RPCError<InstallSnapshotError>> {
        let meta = SnapshotChunkMeta { vote: rpc.vote, meta: rpc.meta, offset: rpc.offset, done: rpc.done };
        let meta = serde_json::to_vec(&meta).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let chunk = SnapshotChunk { meta, data: rpc.data };
        let mut client = self.peers.client(&self.addr).map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let reply = tokio::time::timeout(option.hard_ttl(), client.install_snapshot(chunk))
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?
            .map_err(|s| RPCError::Unreachable(Unreachable::new(&s)))?;
        self.peers.answered(self.target);
        let result: std::result::Result<InstallSnapshotResponse<u64>, RaftError<InstallSnapshotError>> =
            decode(&reply.into_inner()).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> std::result::Result<VoteResponse<u64>, RPCError> {
        self.call(&option, async |mut c, p| c.vote(p).await, &rpc).await
    }
}
