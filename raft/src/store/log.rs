//! The Raft log (its own segment files, `log_file`) and the vote (sled's `meta` tree).
//!
//! An append is reported durable to openraft only from the log's sync thread
//! ([`Durability`]), after the fdatasync of the segment written to.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, RaftLogReader, StorageError, Vote};

use super::durable::Durability;
use super::log_file::LogFile;
use super::{read_err, write_err};
use crate::TypeConfig;

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
pub(super) const LAST_PURGED: &[u8] = b"last_purged";

/// Log storage handle; clones share the same log and tree.
#[derive(Clone)]
pub struct LogStore {
    pub(super) log: Arc<Mutex<LogFile>>,
    /// Syncs the log's current segment.
    pub(super) log_sync: Durability,
    pub(super) meta: sled::Tree,
    /// Syncs sled (vote, purge point).
    pub(super) durability: Durability,
}

impl LogStore {
    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError<u64>> {
        match self.meta.get(key).map_err(read_err)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(read_err),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError<u64>> {
        let bytes = serde_json::to_vec(value).map_err(write_err)?;
        self.meta.insert(key, bytes).map_err(write_err)?;
        Ok(())
    }

    async fn sync(&self) -> Result<(), StorageError<u64>> {
        self.durability.sync_now().await.map_err(write_err)
    }

    fn log(&self) -> Result<MutexGuard<'_, LogFile>, StorageError<u64>> {
        self.log.lock().map_err(|_| write_err(crate::error::Error::Fatal("raft log lock poisoned".into())))
    }
}

// === impl RaftLogReader ===

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Some(i.saturating_add(1)),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        self.log()?.read(start, end).map_err(read_err)
    }
}

// === impl RaftLogStorage ===

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let last_purged_log_id: Option<LogId<u64>> = self.get_meta(LAST_PURGED)?;
        let last_log_id = self.log()?.last_log_id().or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        self.put_meta(VOTE, vote)?;
        self.sync().await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        self.get_meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), StorageError<u64>> {
        // Not synced: a lost committed marker only means re-applying from the snapshot point.
        self.put_meta(COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self.get_meta::<Option<LogId<u64>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        self.log()?.append(entries).map_err(write_err)?;
        // Reported durable only after the real sync, from the sync thread.
        self.log_sync.sync(Box::new(move |result| callback.log_io_completed(result)));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        // Synced before it returns.
        self.log()?.truncate(log_id.index).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        // Record the purge point first: if we crash midway, the state still says which
        // entries are gone, and opening the log drops the leftovers.
        self.put_meta(LAST_PURGED, &log_id)?;
        self.sync().await?;
        self.log()?.purge(log_id.index).map_err(write_err)
    }
}
