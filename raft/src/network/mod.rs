//! Node-to-node transport: tonic gRPC over mutual TLS.
//!
//! - [`tls`]: loads and checks certificates, builds tonic TLS configs.
//! - [`client`]: outbound calls (openraft's `RaftNetwork`, plus forward, read-index, status).
//! - [`server`]: the inbound service.
//!
//! openraft messages travel serde-encoded inside protobuf `Payload`s; snapshot data
//! travels as raw bytes.

pub mod client;
#[cfg(feature = "dev-ca")]
pub mod dev_ca;
pub mod server;
pub mod tls;

use serde::{Deserialize, Serialize};
use tokio_stream::{Stream, StreamExt as _};

use crate::Member;

/// Accepted connections of a gRPC listener with Nagle's algorithm off. tonic does not
/// set TCP_NODELAY on connections it did not accept itself; without it a small HTTP/2
/// frame written behind an unacknowledged one waits for the peer's delayed ACK (up to
/// 40 ms on Linux), which showed up as 40 ms approval releases.
pub fn incoming_nodelay(
    listener: tokio::net::TcpListener,
) -> impl Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static {
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|tcp| {
            let _ = tcp.set_nodelay(true);
        })
    })
}
use crate::command::{Command, Response};

/// What a follower asks the leader to do on its behalf.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardRequest {
    Write(std::sync::Arc<Command>),
    AddNode { id: u64, member: Member },
    RemoveNode { id: u64 },
}

/// The leader's answer to a [`ForwardRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardReply {
    Written(Response),
    Done,
    /// Not the leader (any more): retry against `leader`.
    NotLeader {
        leader: Option<u64>,
        member: Option<Member>,
    },
    Failed(String),
}

/// Chunk of snapshot data with its openraft metadata.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SnapshotChunkMeta {
    pub vote: openraft::Vote<u64>,
    pub meta: openraft::SnapshotMeta<u64, Member>,
    pub offset: u64,
    pub done: bool,
}
