//! Snapshot files: the state machine tree streamed to disk, record by record.
//!
//! The audit grows without bound, so a snapshot never lives in one memory buffer: it is
//! written from a tree iterator into a file and read back the same way. Format:
//! `MAGIC`, then records `u32 key len, key, u32 value len, value` (big-endian), then
//! `END` and the record count, so a truncated file is detected instead of half-loaded.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"PCSNAP1\n";
const END: u32 = u32::MAX;

/// Write every record of `tree` to `path`; returns the record count.
#[cfg(test)]
pub fn write_tree(tree: &sled::Tree, path: &Path) -> Result<u64> {
    let mut out = SnapshotWriter::create(path)?;
    for item in tree.iter() {
        let (k, v) = item.map_err(|e| Error::Storage { path: path.display().to_string(), detail: e.to_string() })?;
        out.record(&k, &v)?;
    }
    out.finish()
}

/// A snapshot file being written, record by record.
pub struct SnapshotWriter {
    out: BufWriter<File>,
    path: std::path::PathBuf,
    count: u64,
}

impl SnapshotWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(format!("create snapshot {}", path.display()), e))?;
        let mut writer = SnapshotWriter { out: BufWriter::new(file), path: path.to_path_buf(), count: 0 };
        writer.out.write_all(MAGIC).map_err(|e| writer.io(e))?;
        Ok(writer)
    }

    pub fn record(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        write_chunk(&mut self.out, key).and_then(|()| write_chunk(&mut self.out, value)).map_err(|e| self.io(e))?;
        self.count += 1;
        Ok(())
    }

    /// Write the trailer and sync the file; returns the record count.
    pub fn finish(mut self) -> Result<u64> {
        let trailer = [END.to_be_bytes().as_slice(), self.count.to_be_bytes().as_slice()].concat();
        self.out.write_all(&trailer).map_err(|e| self.io(e))?;
        let path = self.path;
        let io = |e| Error::io(format!("write snapshot {}", path.display()), e);
        let file = self.out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_data().map_err(io)?;
        Ok(self.count)
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::io(format!("write snapshot {}", self.path.display()), e)
    }
}

fn write_chunk(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| std::io::Error::other("record larger than 4 GiB"))?;
    if len == END {
        return Err(std::io::Error::other("record too large"));
    }
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)
}

/// Load the records of the snapshot at `path` into `tree`, which must be empty.
pub fn load_into(path: &Path, tree: &sled::Tree) -> Result<u64> {
    let file = File::open(path).map_err(|e| Error::io(format!("open snapshot {}", path.display()), e))?;
    let mut input = BufReader::new(file);
    let corrupt = |detail: String| Error::corrupt("snapshot", format!("{}: {detail}", path.display()));
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic).map_err(|e| corrupt(format!("header: {e}")))?;
    if &magic != MAGIC {
        return Err(corrupt("not a Portcullis snapshot".into()));
    }
    let mut count: u64 = 0;
    let mut batch = sled::Batch::default();
    let mut in_batch = 0usize;
    while let Some(key) = read_chunk(&mut input).map_err(|e| corrupt(format!("record {count}: {e}")))? {
        let value = read_chunk(&mut input)
            .map_err(|e| corrupt(format!("record {count}: {e}")))?
            .ok_or_else(|| corrupt(format!("record {count} has a key but no value")))?;
        batch.insert(key, value);
        in_batch += 1;
        count += 1;
        if in_batch >= 4096 {
            tree.apply_batch(std::mem::take(&mut batch)).map_err(|e| corrupt(e.to_string()))?;
            in_batch = 0;
        }
    }
    let mut expected = [0u8; 8];
    input.read_exact(&mut expected).map_err(|e| corrupt(format!("trailer: {e}")))?;
    if u64::from_be_bytes(expected) != count {
        return Err(corrupt(format!("holds {count} records, trailer says {}", u64::from_be_bytes(expected))));
    }
    tree.apply_batch(batch).map_err(|e| corrupt(e.to_string()))?;
    Ok(count)
}

/// One length-prefixed chunk, or `None` at the end marker.
fn read_chunk(input: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len == END {
        return Ok(None);
    }
    let mut buf = Vec::new();
    input.take(u64::from(len)).read_to_end(&mut buf)?;
    if buf.len() != len as usize {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "truncated record"));
    }
    Ok(Some(buf))
}

#[cfg(test)]
mod tests;
