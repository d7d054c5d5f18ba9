//! `Backup` and `Restore`: the admin API side of `portcullis backup` / `restore`.
//!
//! Backup copies the local state under the apply gate (one consistent point) while the
//! node holds the quorum lease, so the copy is at most a lease behind the leader.
//! Restore checks the whole file first (digest, format, data key, an empty target),
//! then replicates it as staged parts and installs it with one commit entry: the
//! cluster either has all of it or none of it.

use portcullis_raft::backup::Backup;
use portcullis_raft::command::{Op, Response as OpResponse};
use portcullis_raft::node::ClusterNode;
use tonic::{Status, Streaming};

use crate::error::status_from_raft;
use crate::proto;

/// Chunk size of a streamed backup.
const CHUNK_BYTES: usize = 1024 * 1024;
/// Largest backup a node accepts for restore (it is held in memory while checked).
const MAX_RESTORE_BYTES: usize = 1024 * 1024 * 1024;

pub(crate) async fn take(node: &ClusterNode) -> Result<Vec<proto::BackupChunk>, Status> {
    if !node.is_serving() {
        return Err(Status::unavailable(
            "not serving: this node does not hold the quorum lease, so its copy could be stale; ask another node",
        ));
    }
    let bytes = node.view().backup(node.id()).await.map_err(|e| status_from_raft(&e))?;
    Ok(bytes.chunks(CHUNK_BYTES).map(|c| proto::BackupChunk { data: c.to_vec() }).collect())
}

pub(crate) async fn restore(
    node: &ClusterNode,
    mut chunks: Streaming<proto::BackupChunk>,
) -> Result<proto::RestoreReply, Status> {
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks.message().await? {
        if bytes.len().saturating_add(chunk.data.len()) > MAX_RESTORE_BYTES {
            return Err(Status::resource_exhausted(format!(
                "backup larger than {} MiB; nothing was restored",
                MAX_RESTORE_BYTES / (1024 * 1024)
            )));
        }
        bytes.extend_from_slice(&chunk.data);
    }
    let backup = Backup::parse(&bytes).map_err(|e| Status::invalid_argument(format!("{e}; nothing was restored")))?;
    for resource in backup.resources().map_err(|e| Status::invalid_argument(e.to_string()))? {
        if let Some(sealed) = &resource.secret
            && node.open_secret(sealed).is_err()
        {
            return Err(Status::failed_precondition(format!(
                "the backup's secret of resource {} does not open with this cluster's data key: start the cluster with the data key file of the cluster that took the backup; nothing was restored",
                resource.name
            )));
        }
    }
    if !node.view().is_empty_for_restore().map_err(|e| status_from_raft(&e))? {
        return Err(Status::failed_precondition(
            "restore refused: this cluster already holds resources, policies, approvals or sessions; restore into a new, empty cluster",
        ));
    }
    let (parts, sha256) = backup.parts().map_err(|e| Status::invalid_argument(e.to_string()))?;
    let restore_id = portcullis_raft::ids::random_id();
    for (part, records) in parts.iter().enumerate() {
        let records = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, records);
        let op = Op::RestoreStage { restore_id: restore_id.clone(), part: part as u64, records };
        node.write(op).await.map_err(|e| status_from_raft(&e))?;
    }
    let commit = Op::RestoreCommit { restore_id, parts: parts.len() as u64, sha256 };
    let records = match node.write(commit).await.map_err(|e| status_from_raft(&e))? {
        OpResponse::Restored { records } => records,
        other => return Err(Status::internal(format!("unexpected result of a restore: {other:?}"))),
    };
    tracing::info!(records, "restored a backup");
    let c = &backup.counts;
    Ok(proto::RestoreReply {
        records,
        resources: c.resources,
        policies: c.policies,
        approvals: c.approvals,
        sessions: c.sessions,
        events: c.events,
        backup_last_applied: backup.header.last_applied,
    })
}
