//! Whether the state machine tree on disk can be trusted when a node starts.
//!
//! Apply writes its changes one by one: an atomic sled batch makes sled roll its IO
//! buffer twice (a write and a `sync_file_range` each), and under audit load that was
//! the largest single CPU cost of a node (BENCHMARKS.md). So a crash can leave part of
//! the last apply on disk. The tree is therefore trusted only after a clean close
//! ([`mark_clean`], at graceful shutdown); after anything else it is rebuilt from the
//! current snapshot and openraft re-applies the log from there. The log holds every
//! entry after the snapshot: it is purged only up to a snapshot whose file is durable.

use std::path::Path;

use super::state_machine::{SM_TREE_POINTER, read_current};
use super::{durable, keys, snapshot_file};
use crate::error::{Error, Result};

/// Present in the meta tree only between a clean close and the next open.
const CLEAN_CLOSE: &[u8] = b"clean_close";

/// The state tree to start from: the one on disk after a clean close, otherwise a
/// fresh one loaded from the current snapshot (empty without one).
pub(super) fn open_state_tree(
    db: &sled::Db,
    meta: &sled::Tree,
    db_dir: &Path,
    snapshot_dir: &Path,
) -> Result<sled::Tree> {
    let storage = |e: sled::Error| Error::Storage { path: db_dir.display().to_string(), detail: e.to_string() };
    let clean = meta.remove(CLEAN_CLOSE).map_err(storage)?.is_some();
    if clean {
        // From now on a crash must not look like a clean close.
        durable::sync_sled_at(db, db_dir).map_err(|e| Error::io("sync state after open", e))?;
        tracing::info!("state machine closed cleanly last time: using the state on disk");
        let live = meta.get(SM_TREE_POINTER).map_err(storage)?.map_or_else(|| b"sm.0".to_vec(), |n| n.to_vec());
        return db.open_tree(&live).map_err(storage);
    }
    let name = format!("sm.{}", crate::ids::random_id());
    let tree = db.open_tree(&name).map_err(storage)?;
    if let Some(current) = read_current(snapshot_dir)? {
        snapshot_file::load_into(&snapshot_dir.join(&current.file), &tree)?;
        let json = |e: serde_json::Error| Error::corrupt("snapshot meta", e);
        let mut markers = sled::Batch::default();
        markers.insert(keys::LAST_APPLIED, serde_json::to_vec(&current.meta.last_log_id).map_err(json)?);
        markers.insert(keys::LAST_MEMBERSHIP, serde_json::to_vec(&current.meta.last_membership).map_err(json)?);
        tree.apply_batch(markers).map_err(storage)?;
        tracing::info!(snapshot = %current.meta.snapshot_id, "no clean close recorded: state rebuilt from the snapshot, the log re-applies the rest");
    } else {
        tracing::info!("no clean close recorded and no snapshot: the log re-applies the state");
    }
    meta.insert(SM_TREE_POINTER, name.as_bytes()).map_err(storage)?;
    durable::sync_sled_at(db, db_dir).map_err(|e| Error::io("sync rebuilt state", e))?;
    // The old tree, and any left by a crash during an earlier rebuild or snapshot install.
    for stale in db.tree_names() {
        if stale.starts_with(b"sm.") && stale.as_ref() != name.as_bytes() {
            db.drop_tree(&stale).map_err(storage)?;
        }
    }
    Ok(tree)
}

/// Record that the state tree is complete and durable; call with no apply running or to come.
pub(super) fn mark_clean(db: &sled::Db, meta: &sled::Tree, db_dir: &Path) -> Result<()> {
    meta.insert(CLEAN_CLOSE, b"1".as_slice())
        .map_err(|e| Error::Storage { path: db_dir.display().to_string(), detail: e.to_string() })?;
    // sled recovers a prefix of its log: the marker durable means the tree before it is too.
    durable::sync_sled_at(db, db_dir).map_err(|e| Error::io("sync state at close", e))
}

#[cfg(test)]
mod tests;
