//! Inbound node-to-node service. Served only with mutual TLS (see `tls`).

use std::sync::Arc;

use openraft::raft::InstallSnapshotRequest;
use tonic::{Request, Response, Status};

use super::client::{decode, encode};
use super::{ForwardRequest, SnapshotChunkMeta};
use crate::node_core::NodeCore;
use crate::proto::raft_service_server::RaftService;
use crate::proto::{Payload, ReadIndexReply, ReadIndexRequest, SnapshotChunk, StatusReply, StatusRequest};

pub struct RaftGrpc {
    core: Arc<NodeCore>,
}

impl RaftGrpc {
    pub fn new(core: Arc<NodeCore>) -> Self {
        RaftGrpc { core }
    }
}

fn bad_request(e: serde_json::Error) -> Status {
    Status::invalid_argument(format!("undecodable node-to-node message: {e}"))
}

fn reply<T: serde::Serialize>(value: &T) -> Result<Response<Payload>, Status> {
    encode(value).map(Response::new).map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl RaftService for RaftGrpc {
    async fn append_entries(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let req = decode(request.get_ref()).map_err(bad_request)?;
        let result = self.core.raft.append_entries(req).await;
        if matches!(&result, Ok(r) if !matches!(r, openraft::raft::AppendEntriesResponse::HigherVote(_))) {
            self.core.leader_contact();
        }
        reply(&result)
    }

    async fn vote(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let req = decode(request.get_ref()).map_err(bad_request)?;
        reply(&self.core.raft.vote(req).await)
    }

    async fn install_snapshot(&self, request: Request<SnapshotChunk>) -> Result<Response<Payload>, Status> {
        let chunk = request.into_inner();
        let meta: SnapshotChunkMeta = serde_json::from_slice(&chunk.meta).map_err(bad_request)?;
        let req = InstallSnapshotRequest {
            vote: meta.vote,
            meta: meta.meta,
            offset: meta.offset,
            data: chunk.data,
            done: meta.done,
        };
        reply(&self.core.raft.install_snapshot(req).await)
    }

    async fn forward(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let req: ForwardRequest = decode(request.get_ref()).map_err(bad_request)?;
        reply(&self.core.handle_forwarded(req).await)
    }

    async fn read_index(&self, request: Request<ReadIndexRequest>) -> Result<Response<ReadIndexReply>, Status> {
        let asking = request.get_ref().node_id;
        match self.core.read_index_for(asking).await {
            Ok(index) => Ok(Response::new(ReadIndexReply { index })),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn status(&self, _request: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        let s = self.core.local_status();
        Ok(Response::new(StatusReply {
            id: s.id,
            role: s.role,
            serving: s.serving,
            last_applied: s.last_applied,
            term: s.term,
            leader: s.leader,
            initialized: s.initialized,
        }))
    }
}
