//! The one place that makes writes durable.
//!
//! Two files need it: sled's (vote, purge point, state machine checkpoints) and the Raft
//! log's segment files (`log_file`). sled 0.34's `flush` writes its buffers but does not
//! reliably fsync the data file on Linux (sled#1452), so its sync is sled flush, then
//! `fdatasync` of sled's data file. A dedicated thread per file groups concurrent requests,
//! so many appends share one sync (group commit) and the async runtime never blocks on disk.

use std::fs::File;
use std::path::Path;
use std::sync::mpsc;

use crate::error::{Error, Result};

/// Called once the data written before the request is on stable storage.
pub type SyncDone = Box<dyn FnOnce(std::io::Result<()>) + Send>;

/// Handle to the sync thread. Cheap to clone.
#[derive(Clone)]
pub struct Durability {
    requests: mpsc::Sender<SyncDone>,
}

impl Durability {
    /// Start the sync thread for `db`, whose files live in `db_dir`: sled flush, then
    /// fdatasync of sled's data file.
    pub fn start(db: sled::Db, db_dir: &Path) -> Result<Self> {
        let data_file_path = db_dir.join("db");
        let data_file = File::open(&data_file_path)
            .map_err(|e| Error::io(format!("open sled data file {}", data_file_path.display()), e))?;
        Self::spawn("portcullis-sync", move || sync_sled(&db, &data_file))
    }

    /// Start a sync thread named `name` that makes writes durable with `sync_to_disk`.
    pub(crate) fn spawn(name: &str, sync_to_disk: impl Fn() -> std::io::Result<()> + Send + 'static) -> Result<Self> {
        let (requests, queue) = mpsc::channel::<SyncDone>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || sync_loop(sync_to_disk, queue))
            .map_err(|e| Error::io(format!("spawn sync thread {name}"), e))?;
        Ok(Durability { requests })
    }

    /// Ask for a sync; `done` runs on the sync thread once it completed or failed.
    pub fn sync(&self, done: SyncDone) {
        if let Err(mpsc::SendError(done)) = self.requests.send(done) {
            done(Err(std::io::Error::other("sync thread stopped")));
        }
    }

    /// Sync and wait for it.
    pub async fn sync_now(&self) -> std::io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.sync(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        rx.await.unwrap_or_else(|_| Err(std::io::Error::other("sync thread stopped")))
    }
}

fn sync_loop(sync_to_disk: impl Fn() -> std::io::Result<()>, queue: mpsc::Receiver<SyncDone>) {
    while let Ok(first) = queue.recv() {
        // Everything queued so far was written before we start syncing, so one sync covers all.
        let mut waiting = vec![first];
        waiting.extend(queue.try_iter());
        let started = std::time::Instant::now();
        let result = sync_to_disk();
        metrics::histogram!("portcullis_storage_sync_seconds").record(started.elapsed().as_secs_f64());
        for done in waiting {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            };
            done(r);
        }
    }
}

/// Sync sled now, on the calling thread (for open and close, where nothing else runs).
pub(crate) fn sync_sled_at(db: &sled::Db, db_dir: &Path) -> std::io::Result<()> {
    sync_sled(db, &File::open(db_dir.join("db"))?)
}

/// sled's flush, then the fdatasync sled 0.34 leaves out.
fn sync_sled(db: &sled::Db, data_file: &File) -> std::io::Result<()> {
    db.flush().map_err(std::io::Error::other)?;
    data_file.sync_data()
}
