//! `portcullis backup --out FILE` and `portcullis restore --from FILE`.
//!
//! Both check the file on this side too: a backup is written only after it has been
//! read back whole (digest and records), and a restore sends nothing unless the file
//! checks out, so a corrupt or truncated file is named before the cluster sees it.

use std::io::Write;
use std::path::{Path, PathBuf};

use portcullis_raft::backup::{Backup, TableCounts};
use serde_json::json;

use super::output::{emit, emit_json};
use super::{CliError, Globals, connect};

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// File to write; replaced atomically, so an interrupted backup leaves no half file.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// A file written by `portcullis backup`.
    #[arg(long)]
    pub from: PathBuf,
}

pub async fn backup(args: BackupArgs, g: &Globals) -> Result<(), CliError> {
    let bytes = connect(g).await?.backup().await?;
    let file_err = |detail: String| CliError::File { path: args.out.display().to_string(), detail };
    let checked = Backup::parse(&bytes).map_err(|e| file_err(format!("the node sent a bad backup: {e}")))?;
    write_atomically(&args.out, &bytes).map_err(|e| file_err(e.to_string()))?;
    let h = &checked.header;
    if g.json {
        return emit_json(&json!({
            "file": args.out, "bytes": bytes.len(), "node": h.node, "last_applied": h.last_applied,
            "created_at": h.created_at, "counts": checked.counts,
        }));
    }
    emit(&format!(
        "backup of node {} at applied index {} written to {} ({} bytes): {}",
        h.node,
        h.last_applied,
        args.out.display(),
        bytes.len(),
        describe(&checked.counts)
    ))
}

pub async fn restore(args: RestoreArgs, g: &Globals) -> Result<(), CliError> {
    let file_err = |detail: String| CliError::File { path: args.from.display().to_string(), detail };
    let bytes = std::fs::read(&args.from).map_err(|e| file_err(format!("cannot read: {e}")))?;
    let checked = Backup::parse(&bytes).map_err(|e| file_err(format!("{e}; nothing was restored")))?;
    let reply = connect(g).await?.restore(bytes).await?;
    if g.json {
        return emit_json(&json!({
            "records": reply.records, "counts": checked.counts,
            "backup_last_applied": reply.backup_last_applied,
        }));
    }
    emit(&format!(
        "restored {} records from {} (taken at applied index {}): {}",
        reply.records,
        args.from.display(),
        reply.backup_last_applied,
        describe(&checked.counts)
    ))
}

fn describe(c: &TableCounts) -> String {
    format!(
        "{} resources, {} policies, {} approvals, {} sessions, {} events",
        c.resources, c.policies, c.approvals, c.sessions, c.events
    )
}

/// Write to `FILE.partial`, sync, then rename over `FILE`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let mut file = std::fs::File::create(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&partial, path)
}
