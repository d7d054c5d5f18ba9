//! The one place that makes writes durable.
//!
//! sled 0.34's `flush` writes its buffers but does not reliably fsync the data file on
//! Linux (sled#1452), so a vote or log entry reported durable could vanish on power
//! loss. Every durability point goes through [`Durability::sync`]: sled flush, then
//! `fdatasync` of sled's data file. A dedicated thread groups concurrent requests, so
//! many appends share one sync (group commit) and the async runtime never blocks on disk.

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
    /// Start the sync thread for `db`, whose files live in `db_dir`.
    pub fn start(db: sled::Db, db_dir: &Path) -> Result<Self> {
        let data_file_path = db_dir.join("db");
        let data_file = File::open(&data_file_path)
            .map_err(|e| Error::io(format!("open sled data file {}", data_file_path.display()), e))?;
        let (requests, queue) = mpsc::channel::<SyncDone>();
        std::thread::Builder::new()
            .name("portcullis-sync".into())
            .spawn(move || sync_loop(db, data_file, queue))
            .map_err(|e| Error::io("spawn sync thread", e))?;
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

fn sync_loop(db: sled::Db, data_file: File, queue: mpsc::Receiver<SyncDone>) {
    while let Ok(first) = queue.recv() {
        // Everything queued so far was written before we start syncing, so one sync covers all.
        let mut waiting = vec![first];
        waiting.extend(queue.try_iter());
        let result = sync_to_disk(&db, &data_file);
        for done in waiting {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            };
            done(r);
        }
    }
}

/// The only function that syncs the database to disk.
fn sync_to_disk(db: &sled::Db, data_file: &File) -> std::io::Result<()> {
    let started = std::time::Instant::now();
    db.flush().map_err(std::io::Error::other)?;
    data_file.sync_data()?;
    metrics::histogram!("portcullis_storage_sync_seconds").record(started.elapsed().as_secs_f64());
    Ok(())
}
