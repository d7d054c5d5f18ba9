//! Storage of one node: Raft log, vote and state machine in one sled database.
//!
//! Layout on disk under the node's data dir:
//! - `db/`        sled: trees `log` (entries by big-endian index), `meta` (vote,
//!   committed, purge point, which tree is the live state machine) and `sm.*`
//!   (the state machine, see `keys`);
//! - `snapshots/` the current snapshot file and `current.json` pointing at it.

mod apply;
mod durable;
pub(crate) mod keys;
mod log;
mod overlay;
mod restore;
mod snapshot_file;
mod state_machine;
mod view;

use std::path::Path;
use std::sync::Arc;

use openraft::{AnyError, StorageError, StorageIOError};

pub use durable::Durability;
pub use log::LogStore;
pub use state_machine::{SnapshotBuilder, StateMachine};
pub use view::StateView;

use crate::error::{Error, Result};
use state_machine::{SM_TREE_POINTER, Shared};

/// Open (or create) the store under `data_dir`.
pub fn open(data_dir: &Path) -> Result<(LogStore, StateMachine, StateView)> {
    let db_dir = data_dir.join("db");
    let snapshot_dir = data_dir.join("snapshots");
    std::fs::create_dir_all(&snapshot_dir)
        .map_err(|e| Error::io(format!("create snapshot dir {}", snapshot_dir.display()), e))?;
    let storage = |e: sled::Error| Error::Storage { path: db_dir.display().to_string(), detail: e.to_string() };
    let db = sled::Config::new().path(&db_dir).mode(sled::Mode::HighThroughput).open().map_err(storage)?;
    let durability = Durability::start(db.clone(), &db_dir)?;
    let log = db.open_tree("log").map_err(storage)?;
    let meta = db.open_tree("meta").map_err(storage)?;
    let sm_name = match meta.get(SM_TREE_POINTER).map_err(storage)? {
        Some(name) => name.to_vec(),
        None => b"sm.0".to_vec(),
    };
    let tree = db.open_tree(&sm_name).map_err(storage)?;
    let shared = Arc::new(Shared::new(db, meta.clone(), tree, durability.clone(), snapshot_dir));
    let log_store = LogStore { log, meta, durability };
    let view = StateView::new(shared.clone());
    Ok((log_store, StateMachine::new(shared), view))
}

pub(crate) fn read_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::read(AnyError::new(&e)).into()
}

pub(crate) fn write_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::write(AnyError::new(&e)).into()
}

#[cfg(test)]
mod tests;
