//! Storage of one node: the Raft log in segment files, vote and state machine in sled.
//!
//! Layout on disk under the node's data dir:
//! - `log/`       the Raft log's segment files (`log_file`);
//! - `db/`        sled: trees `meta` (vote, committed, purge point, which tree is the
//!   live state machine) and `sm.*` (the state machine, see `keys`). sled flushes the
//!   state machine in the background; it is synced where the log behind it is purged
//!   (snapshots), and a crash only means re-applying entries from the log;
//! - `snapshots/` the current snapshot file and `current.json` pointing at it.

mod apply;
mod capture;
mod durable;
pub(crate) mod keys;
mod log;
mod log_file;
mod overlay;
mod recovery;
mod restore;
mod snapshot_file;
mod state_machine;
mod view;

use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::{AnyError, StorageError, StorageIOError};

pub use durable::Durability;
pub use log::LogStore;
pub use state_machine::{SnapshotBuilder, StateMachine};
pub use view::StateView;

use crate::error::{Error, Result};
use log_file::LogFile;
use state_machine::Shared;

/// Open (or create) the store under `data_dir`.
pub fn open(data_dir: &Path) -> Result<(LogStore, StateMachine, StateView)> {
    let db_dir = data_dir.join("db");
    let snapshot_dir = data_dir.join("snapshots");
    std::fs::create_dir_all(&snapshot_dir)
        .map_err(|e| Error::io(format!("create snapshot dir {}", snapshot_dir.display()), e))?;
    let storage = |e: sled::Error| Error::Storage { path: db_dir.display().to_string(), detail: e.to_string() };
    let db = sled::Config::new().path(&db_dir).mode(sled::Mode::HighThroughput).open().map_err(storage)?;
    let durability = Durability::start(db.clone(), &db_dir)?;
    // Logs used to live in sled's `log` tree; a data dir from then cannot be read safely.
    if db.tree_names().iter().any(|name| name.as_ref() == b"log") {
        return Err(Error::Storage {
            path: db_dir.display().to_string(),
            detail: "this data dir keeps its Raft log in the old format (sled tree `log`); \
                     restore a backup into a fresh data dir instead"
                .into(),
        });
    }
    let meta = db.open_tree("meta").map_err(storage)?;
    check_format(&meta, data_dir).map_err(storage)?;
    let last_purged = match meta.get(log::LAST_PURGED).map_err(storage)? {
        Some(bytes) => serde_json::from_slice::<openraft::LogId<u64>>(&bytes)
            .map(|id| Some(id.index))
            .map_err(|e| Error::Corrupt { what: "purge point", detail: e.to_string() })?,
        None => None,
    };
    let log_file = LogFile::open(&data_dir.join("log"), last_purged)?;
    let current = log_file.current();
    let log_sync = Durability::spawn("portcullis-log-sync", move || log_file::sync_current(&current))?;
    let tree = recovery::open_state_tree(&db, &meta, &db_dir, &snapshot_dir)?;
    let shared = Arc::new(Shared::new(db, meta.clone(), tree, durability.clone(), snapshot_dir, db_dir));
    let log_store = LogStore { log: Arc::new(Mutex::new(log_file)), log_sync, meta, durability };
    let view = StateView::new(shared.clone());
    Ok((log_store, StateMachine::new(shared), view))
}

/// The encoding of what a data dir holds (log entries, state records). Bumped when a
/// change makes older data unreadable: 2 = commands externally tagged and stamped with
/// their time, event detail kept as JSON text, indexes of pending approvals (`ap/`),
/// approvals by creation time (`at/`) and remembered request ids by time (`qt/`).
const DATA_FORMAT: u32 = 2;
const FORMAT_KEY: &[u8] = b"data_format";

/// Refuse a data dir written in another format, with what to do instead; stamp a fresh
/// one. A dir with neither a meta record nor a log segment is fresh.
fn check_format(meta: &sled::Tree, data_dir: &Path) -> std::result::Result<(), sled::Error> {
    let found = meta.get(FORMAT_KEY)?.and_then(|v| v.as_ref().try_into().ok().map(u32::from_be_bytes));
    let has_log = std::fs::read_dir(data_dir.join("log")).map(|mut d| d.next().is_some()).unwrap_or(false);
    match found {
        Some(DATA_FORMAT) => Ok(()),
        None if meta.is_empty() && !has_log => meta.insert(FORMAT_KEY, &DATA_FORMAT.to_be_bytes()).map(drop),
        other => Err(sled::Error::Unsupported(format!(
            "this data dir was written in data format {}, this build reads format {DATA_FORMAT}; \
             restore a backup into a fresh data dir instead",
            other.map_or_else(|| "1".to_string(), |v| v.to_string())
        ))),
    }
}

pub(crate) fn read_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::read(AnyError::new(&e)).into()
}

pub(crate) fn write_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::write(AnyError::new(&e)).into()
}

#[cfg(test)]
mod tests;
