//! The state machine: apply, snapshots, and the shared handle that readers use.
//!
//! The whole state lives in one sled tree (see `keys`). A snapshot is that tree streamed
//! to a file; installing one loads it into a fresh tree and then switches a pointer in
//! the meta tree, so a crash mid-install leaves the old state intact.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StoredMembership};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::apply::{Changes, apply_command};
use super::capture::Capture;
use super::durable::Durability;
use super::overlay::Overlay;
use super::snapshot_file::SnapshotWriter;
use super::{keys, read_err, snapshot_file, write_err};
use crate::command::Response;
use crate::notify::Notifier;
use crate::{Member, TypeConfig};

/// Last applied log id and membership, as openraft asks for them.
type AppliedState = (Option<LogId<u64>>, StoredMembership<u64, Member>);

pub(crate) const SM_TREE_POINTER: &[u8] = b"sm_tree";
const CURRENT: &str = "current.json";

/// State shared by the state machine, its snapshot builder and read views.
pub struct Shared {
    pub(crate) db: sled::Db,
    pub(crate) meta: sled::Tree,
    /// The live state tree. Swapped (not mutated) when a snapshot is installed.
    tree: RwLock<sled::Tree>,
    /// Serializes applies, and holds them off while a copy of the state is armed
    /// (`capture`) or a snapshot installed, so a copy is labelled with the right
    /// last-applied id.
    pub(crate) gate: Arc<tokio::sync::Mutex<()>>,
    /// Keeps a copy of the state consistent while applies go on (snapshots, backups).
    pub(crate) capture: Capture,
    /// One copy at a time, and never while a snapshot is installed (the copy reads the
    /// tree an install would replace).
    pub(crate) copying: Arc<tokio::sync::Mutex<()>>,
    pub(crate) durability: Durability,
    pub(crate) notifier: Notifier,
    pub(crate) snapshot_dir: PathBuf,
    pub(crate) db_dir: PathBuf,
}

impl Shared {
    pub(crate) fn new(
        db: sled::Db,
        meta: sled::Tree,
        tree: sled::Tree,
        durability: Durability,
        snapshot_dir: PathBuf,
        db_dir: PathBuf,
    ) -> Self {
        Shared {
            db,
            meta,
            tree: RwLock::new(tree),
            gate: Arc::new(tokio::sync::Mutex::new(())),
            capture: Capture::default(),
            copying: Arc::new(tokio::sync::Mutex::new(())),
            durability,
            notifier: Notifier::default(),
            snapshot_dir,
            db_dir,
        }
    }

    /// The current state tree (a cheap handle).
    pub fn tree(&self) -> sled::Tree {
        match self.tree.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn swap_tree(&self, tree: sled::Tree) -> sled::Tree {
        match self.tree.write() {
            Ok(mut t) => std::mem::replace(&mut *t, tree),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), tree),
        }
    }

    /// Record a clean close (see `recovery`): the tree on disk is whole. Call only once
    /// Raft is shut down; the gate keeps a last apply from being cut in half.
    pub(crate) async fn mark_clean(&self) -> crate::error::Result<()> {
        let _gate = self.gate.lock().await;
        super::recovery::mark_clean(&self.db, &self.meta, &self.db_dir)
    }

    pub(crate) fn applied_state(&self) -> Result<AppliedState, StorageError<u64>> {
        let tree = self.tree();
        let last_applied = match tree.get(keys::LAST_APPLIED).map_err(read_err)? {
            Some(b) => serde_json::from_slice(&b).map_err(read_err)?,
            None => None,
        };
        let membership = match tree.get(keys::LAST_MEMBERSHIP).map_err(read_err)? {
            Some(b) => serde_json::from_slice(&b).map_err(read_err)?,
            None => StoredMembership::default(),
        };
        Ok((last_applied, membership))
    }
}

/// Where the current snapshot is; replaced atomically by rename.
#[derive(Serialize, Deserialize)]
pub(super) struct CurrentSnapshot {
    pub(super) meta: SnapshotMeta<u64, Member>,
    pub(super) file: String,
}

/// The current snapshot's pointer, if there is a snapshot.
pub(super) fn read_current(snapshot_dir: &Path) -> crate::error::Result<Option<CurrentSnapshot>> {
    let path = snapshot_dir.join(CURRENT);
    match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map(Some).map_err(|e| crate::error::Error::corrupt("snapshot pointer", e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::error::Error::io(format!("read {}", path.display()), e)),
    }
}

/// openraft's state machine handle.
pub struct StateMachine {
    pub(crate) shared: Arc<Shared>,
    /// File a snapshot from the leader is being received into.
    receiving: Option<PathBuf>,
    /// Next event seq per session, kept between applies (see `Changes::next_seqs`).
    next_seqs: HashMap<String, u64>,
}

impl StateMachine {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        StateMachine { shared, receiving: None, next_seqs: HashMap::new() }
    }
}

/// Builds snapshots in a task of its own while holding the apply gate.
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
}

// === impl RaftSnapshotBuilder ===

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let shared = self.shared.clone();
        let copying = shared.copying.clone().lock_owned().await;
        let (last_log_id, last_membership) = {
            let _gate = shared.gate.lock().await;
            shared.capture.arm();
            shared.applied_state()?
        };
        let snapshot_id = format!(
            "{}-{}-{}",
            last_log_id.map(|l| l.leader_id.term).unwrap_or(0),
            last_log_id.map(|l| l.index).unwrap_or(0),
            crate::ids::random_id()
        );
        let file_name = format!("{snapshot_id}.snap");
        let path = shared.snapshot_dir.join(&file_name);
        let tree = shared.tree();
        let write_path = path.clone();
        let started = std::time::Instant::now();
        let copier = shared.clone();
        let records = tokio::task::spawn_blocking(move || {
            let _copying = copying;
            let mut out = SnapshotWriter::create(&write_path)?;
            copier.capture.copy(&tree, |k, v| out.record(k, v))?;
            out.finish()
        })
        .await
        .map_err(write_err)?
        .map_err(write_err)?;
        tracing::info!(
            index = last_log_id.map(|l| l.index).unwrap_or(0),
            records,
            millis = started.elapsed().as_millis() as u64,
            "snapshot built"
        );
        // The state up to the snapshot point must be durable before the log behind it is purged.
        shared.durability.sync_now().await.map_err(write_err)?;
        let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id };
        set_current(&shared, &meta, &file_name).await?;
        let file = tokio::fs::File::open(&path).await.map_err(write_err)?;
        metrics::counter!("portcullis_snapshots_built_total").increment(1);
        Ok(Snapshot { meta, snapshot: Box::new(file) })
    }
}

/// Point `current.json` at `file_name` and delete older snapshot files.
async fn set_current(
    shared: &Shared,
    meta: &SnapshotMeta<u64, Member>,
    file_name: &str,
) -> Result<(), StorageError<u64>> {
    let current = CurrentSnapshot { meta: meta.clone(), file: file_name.to_string() };
    let bytes = serde_json::to_vec(&current).map_err(write_err)?;
    let tmp = shared.snapshot_dir.join("current.json.tmp");
    // Durable before the log behind the snapshot is purged: an unclean start rebuilds from it.
    let mut file = tokio::fs::File::create(&tmp).await.map_err(write_err)?;
    file.write_all(&bytes).await.map_err(write_err)?;
    file.sync_data().await.map_err(write_err)?;
    drop(file);
    tokio::fs::rename(&tmp, shared.snapshot_dir.join(CURRENT)).await.map_err(write_err)?;
    tokio::fs::File::open(&shared.snapshot_dir).await.map_err(write_err)?.sync_all().await.map_err(write_err)?;
    let mut dir = tokio::fs::read_dir(&shared.snapshot_dir).await.map_err(write_err)?;
    while let Some(entry) = dir.next_entry().await.map_err(write_err)? {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".snap") && name != file_name {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }
    Ok(())
}

// === impl RaftStateMachine ===

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<AppliedState, StorageError<u64>> {
        self.shared.applied_state()
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let _gate = self.shared.gate.lock().await;
        let tree = self.shared.tree();
        let mut tx = Overlay::new(&tree);
        // Taken, and given back only once this apply is written: on an error it is gone.
        let mut changes = Changes { next_seqs: std::mem::take(&mut self.next_seqs), ..Changes::default() };
        let mut responses = Vec::new();
        let mut last_applied = None;
        let mut membership = None;
        for entry in entries {
            last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => responses.push(Response::Done),
                EntryPayload::Normal(cmd) => {
                    let cmd = Arc::unwrap_or_clone(cmd);
                    responses.push(apply_command(&mut tx, cmd, &mut changes).map_err(write_err)?);
                }
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m));
                    responses.push(Response::Done);
                }
            }
        }
        let Some(last) = last_applied else {
            return Ok(responses);
        };
        tx.put(keys::LAST_APPLIED.to_vec(), &Some(last)).map_err(write_err)?;
        if let Some(m) = &membership {
            tx.put(keys::LAST_MEMBERSHIP.to_vec(), m).map_err(write_err)?;
        }
        // Not atomic: a crash mid-apply makes the next start rebuild from the snapshot (`recovery`).
        tx.write_to(&tree, &self.shared.capture).map_err(write_err)?;
        self.next_seqs = std::mem::take(&mut changes.next_seqs);
        self.shared.notifier.applied(last.index);
        if changes.approvals {
            self.shared.notifier.approvals_changed();
        }
        if changes.config {
            self.shared.notifier.config_changed();
        }
        metrics::gauge!("portcullis_raft_last_applied").set(last.index as f64);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { shared: self.shared.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError<u64>> {
        let path = self.shared.snapshot_dir.join(format!("receiving-{}", crate::ids::random_id()));
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .await
            .map_err(write_err)?;
        if let Some(old) = self.receiving.replace(path) {
            let _ = tokio::fs::remove_file(old).await;
        }
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, Member>,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<u64>> {
        let shared = self.shared.clone();
        let _copying = shared.copying.lock().await;
        let _gate = shared.gate.lock().await;
        self.next_seqs.clear();
        // Keep the received data as our current snapshot file.
        let file_name = format!("{}.snap", meta.snapshot_id);
        let path = shared.snapshot_dir.join(&file_name);
        snapshot.seek(SeekFrom::Start(0)).await.map_err(write_err)?;
        let mut out = tokio::fs::File::create(&path).await.map_err(write_err)?;
        tokio::io::copy(&mut snapshot, &mut out).await.map_err(write_err)?;
        out.sync_data().await.map_err(write_err)?;
        drop(out);
        if let Some(received) = self.receiving.take() {
            let _ = tokio::fs::remove_file(received).await;
        }
        // Load into a fresh tree, then switch the pointer: never a half-installed state.
        let tree_name = format!("sm.{}", crate::ids::random_id());
        let tree = shared.db.open_tree(&tree_name).map_err(write_err)?;
        let load_tree = tree.clone();
        let load_path = path.clone();
        let loaded = tokio::task::spawn_blocking(move || snapshot_file::load_into(&load_path, &load_tree)).await;
        if !matches!(loaded, Ok(Ok(_))) {
            // A corrupt snapshot leaves the live state alone; reclaim the partial tree.
            let _ = shared.db.drop_tree(tree.name());
        }
        loaded.map_err(write_err)?.map_err(write_err)?;
        let mut markers = sled::Batch::default();
        markers.insert(keys::LAST_APPLIED, serde_json::to_vec(&meta.last_log_id).map_err(write_err)?);
        markers.insert(keys::LAST_MEMBERSHIP, serde_json::to_vec(&meta.last_membership).map_err(write_err)?);
        tree.apply_batch(markers).map_err(write_err)?;
        shared.durability.sync_now().await.map_err(write_err)?;
        // The snapshot becomes current before the tree switches: a crash in between
        // rebuilds from this snapshot (`recovery`), never from an older one.
        set_current(&shared, meta, &file_name).await?;
        shared.meta.insert(SM_TREE_POINTER, tree_name.as_bytes()).map_err(write_err)?;
        shared.durability.sync_now().await.map_err(write_err)?;
        let old = shared.swap_tree(tree);
        let _ = shared.db.drop_tree(old.name());
        if let Some(l) = meta.last_log_id {
            shared.notifier.applied(l.index);
        }
        shared.notifier.approvals_changed();
        shared.notifier.config_changed();
        metrics::counter!("portcullis_snapshots_installed_total").increment(1);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let current_path = self.shared.snapshot_dir.join(CURRENT);
        let bytes = match tokio::fs::read(&current_path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_err(e)),
        };
        let current: CurrentSnapshot = serde_json::from_slice(&bytes).map_err(read_err)?;
        let file = tokio::fs::File::open(self.shared.snapshot_dir.join(&current.file)).await.map_err(read_err)?;
        Ok(Some(Snapshot { meta: current.meta, snapshot: Box::new(file) }))
    }
}
