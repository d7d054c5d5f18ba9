//! Backup files: a consistent copy of the replicated state, for `portcullis backup` and
//! `portcullis restore`.
//!
//! A backup holds the tables an operator cares about (resources with their secrets
//! still sealed, policies, approvals, sessions, events and their indexes), not the Raft
//! log, the membership or the idempotency records: it restores into a *new* cluster.
//!
//! Format (all integers big-endian):
//! `MAGIC`, `u32` header length + header JSON, the records (`u32` key length, key,
//! `u32` value length, value), `u32::MAX`, `u64` record count, and the SHA-256 of
//! everything before it. [`Backup::parse`] checks the digest before it looks at a single
//! record, so a corrupt or truncated file is refused whole, never used in part.

use ring::digest::{Context, SHA256, SHA256_OUTPUT_LEN};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Millis;
use crate::store::keys;

const MAGIC: &[u8; 10] = b"PCBACKUP1\n";
const END: u32 = u32::MAX;
/// Current format version, in the header. 2: events are stored as runs (one record per
/// session per append, `keys::event_run`); format 1 files held one record per event.
const FORMAT: u32 = 2;
/// Target size of one restore part: a Raft entry each, well under the 64 MiB message limit
/// even with 16 entries per append and base64 on top.
pub const PART_BYTES: usize = 256 * 1024;

/// The tables a backup carries; everything else (log markers, request ids, restore
/// staging) belongs to the cluster that wrote it.
const TABLES: [(&[u8], Table); 8] = [
    (keys::RESOURCE, Table::Resources),
    (keys::POLICY, Table::Policies),
    (keys::APPROVAL, Table::Approvals),
    (keys::SESSION, Table::Sessions),
    (keys::EVENT, Table::Events),
    (keys::BY_IDENTITY, Table::Index),
    (keys::BY_RESOURCE, Table::Index),
    (keys::BY_TIME, Table::Index),
];

#[derive(Clone, Copy)]
enum Table {
    Resources,
    Policies,
    Approvals,
    Sessions,
    Events,
    Index,
}

fn table_of(key: &[u8]) -> Option<Table> {
    TABLES.iter().find(|(prefix, _)| key.starts_with(prefix)).map(|(_, t)| *t)
}

/// Whether a state-machine key belongs in a backup.
pub fn is_backed_up(key: &[u8]) -> bool {
    table_of(key).is_some()
}

/// Where and when a backup was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupHeader {
    pub format: u32,
    pub created_at: Millis,
    /// The node that wrote it.
    pub node: u64,
    /// Its applied log index at that moment: the backup is the state after this entry.
    pub last_applied: u64,
}

/// Records per table, for the operator's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCounts {
    pub resources: u64,
    pub policies: u64,
    pub approvals: u64,
    pub sessions: u64,
    pub events: u64,
}

impl TableCounts {
    fn count(&mut self, key: &[u8]) {
        match table_of(key) {
            Some(Table::Resources) => self.resources += 1,
            Some(Table::Policies) => self.policies += 1,
            Some(Table::Approvals) => self.approvals += 1,
            Some(Table::Sessions) => self.sessions += 1,
            Some(Table::Events) => {
                // One record holds a run of events; its key says how many.
                let run = keys::event_run_seqs(key).map_or(1, |(first, last)| last.saturating_sub(first) + 1);
                self.events += run;
            }
            Some(Table::Index) | None => {}
        }
    }
}

/// Writes a backup record by record.
pub struct BackupWriter {
    out: Vec<u8>,
    records: u64,
}

impl BackupWriter {
    pub fn new(header: &BackupHeader) -> Result<Self> {
        let json = serde_json::to_vec(header).map_err(|e| Error::corrupt("backup header", e))?;
        let mut out = MAGIC.to_vec();
        put_chunk(&mut out, &json)?;
        Ok(BackupWriter { out, records: 0 })
    }

    pub fn header(node: u64, last_applied: u64) -> BackupHeader {
        BackupHeader { format: FORMAT, created_at: crate::model::now_millis(), node, last_applied }
    }

    /// Add a record if its table belongs in a backup.
    pub fn record(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if !is_backed_up(key) {
            return Ok(());
        }
        put_chunk(&mut self.out, key)?;
        put_chunk(&mut self.out, value)?;
        self.records += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(&END.to_be_bytes());
        self.out.extend_from_slice(&self.records.to_be_bytes());
        let digest = ring::digest::digest(&SHA256, &self.out);
        self.out.extend_from_slice(digest.as_ref());
        self.out
    }
}

fn put_chunk(out: &mut Vec<u8>, bytes: &[u8]) -> Result<()> {
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|l| *l != END)
        .ok_or_else(|| Error::corrupt("backup record", "larger than 4 GiB"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// A checked backup.
#[derive(Debug)]
pub struct Backup {
    pub header: BackupHeader,
    pub counts: TableCounts,
    /// The encoded records (`u32` key length, key, `u32` value length, value), ready to
    /// be cut into restore parts at record boundaries.
    records: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Backup {
    /// Check and decode a whole backup file. Every problem is named: not a backup, a
    /// newer format, corrupt or truncated (digest mismatch), or malformed records.
    pub fn parse(bytes: &[u8]) -> Result<Backup> {
        let bad = |detail: String| Error::corrupt("backup", detail);
        if !bytes.starts_with(MAGIC) {
            return Err(bad("not a Portcullis backup (no PCBACKUP1 header)".into()));
        }
        let body_len = bytes
            .len()
            .checked_sub(SHA256_OUTPUT_LEN)
            .filter(|l| *l >= MAGIC.len() + 12)
            .ok_or_else(|| bad(format!("truncated: only {} bytes", bytes.len())))?;
        let (body, digest) = bytes.split_at(body_len);
        let mut ctx = Context::new(&SHA256);
        ctx.update(body);
        if ctx.finish().as_ref() != digest {
            return Err(bad(
                "checksum mismatch: the file is corrupt or truncated (take a new backup; nothing was restored)".into(),
            ));
        }
        let mut cursor = Cursor { bytes: body, at: MAGIC.len() };
        let header_json = cursor.chunk()?.ok_or_else(|| bad("no header".into()))?;
        let header: BackupHeader =
            serde_json::from_slice(header_json).map_err(|e| bad(format!("header does not decode: {e}")))?;
        if header.format != FORMAT {
            return Err(bad(format!(
                "format {} is not supported by this version (it reads format {FORMAT})",
                header.format
            )));
        }
        let mut counts = TableCounts::default();
        let mut records = Vec::new();
        while let Some(key) = cursor.chunk()? {
            let value =
                cursor.chunk()?.ok_or_else(|| bad(format!("record {} has a key but no value", records.len())))?;
            if !is_backed_up(key) {
                return Err(bad(format!("record {} is not a backed-up table", records.len())));
            }
            counts.count(key);
            records.push((key.to_vec(), value.to_vec()));
        }
        let expected = cursor.u64()?;
        if expected != records.len() as u64 || cursor.at != body.len() {
            return Err(bad(format!("holds {} records, trailer says {expected}", records.len())));
        }
        Ok(Backup { header, counts, records })
    }

    /// Key and value of every record, in key order.
    pub fn records(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.records.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// The backed-up resources (their secrets still sealed), to check that the restoring
    /// cluster holds the data key that opens them.
    pub fn resources(&self) -> Result<Vec<crate::model::Resource>> {
        self.records
            .iter()
            .filter(|(k, _)| k.starts_with(keys::RESOURCE))
            .map(|(_, v)| serde_json::from_slice(v).map_err(|e| Error::corrupt("backed-up resource", e)))
            .collect()
    }

    /// The records cut into parts of about [`PART_BYTES`] each, encoded for
    /// [`decode_records`], and the SHA-256 (hex) of their concatenation.
    pub fn parts(&self) -> Result<(Vec<Vec<u8>>, String)> {
        let mut parts = Vec::new();
        let mut current = Vec::new();
        let mut ctx = Context::new(&SHA256);
        for (k, v) in &self.records {
            put_chunk(&mut current, k)?;
            put_chunk(&mut current, v)?;
            if current.len() >= PART_BYTES {
                ctx.update(&current);
                parts.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            ctx.update(&current);
            parts.push(current);
        }
        Ok((parts, hex(ctx.finish().as_ref())))
    }
}

/// SHA-256 (hex) of restore parts, as [`Backup::parts`] computes it.
pub fn parts_digest<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut ctx = Context::new(&SHA256);
    for p in parts {
        ctx.update(p);
    }
    hex(ctx.finish().as_ref())
}

/// Decode the records of restore parts (length-prefixed keys and values, no trailer).
pub fn decode_records(bytes: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut cursor = Cursor { bytes, at: 0 };
    let mut out = Vec::new();
    while cursor.at < bytes.len() {
        let key = cursor.chunk()?.ok_or_else(|| Error::corrupt("restore part", "end marker inside a part"))?;
        let value = cursor.chunk()?.ok_or_else(|| Error::corrupt("restore part", "key without a value"))?;
        out.push((key.to_vec(), value.to_vec()));
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bounds-checked reading of length-prefixed chunks.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len()).ok_or_else(|| {
            Error::corrupt("backup", format!("truncated record at byte {} (needs {n} more bytes)", self.at))
        })?;
        let out = self.bytes.get(self.at..end).unwrap_or_default();
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32> {
        let b: [u8; 4] = self.take(4)?.try_into().map_err(|_| Error::corrupt("backup", "short length"))?;
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64> {
        let b: [u8; 8] = self.take(8)?.try_into().map_err(|_| Error::corrupt("backup", "short count"))?;
        Ok(u64::from_be_bytes(b))
    }

    /// One chunk, or `None` at the end marker.
    fn chunk(&mut self) -> Result<Option<&'a [u8]>> {
        match self.u32()? {
            END => Ok(None),
            len => self.take(len as usize).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = BackupWriter::new(&BackupWriter::header(1, 42)).unwrap();
        w.record(b"m/last_applied", b"skipped").unwrap();
        w.record(b"p/demo", b"{\"policy\":1}").unwrap();
        w.record(b"s/abc", b"{\"session\":1}").unwrap();
        w.record(b"q/req", b"skipped too").unwrap();
        w.finish()
    }

    #[test]
    fn round_trip_keeps_only_the_backed_up_tables() {
        let b = Backup::parse(&sample()).unwrap();
        assert_eq!(b.header.last_applied, 42);
        assert_eq!(b.counts, TableCounts { policies: 1, sessions: 1, ..Default::default() });
        let keys: Vec<&[u8]> = b.records().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![b"p/demo".as_slice(), b"s/abc".as_slice()]);
        let (parts, digest) = b.parts().unwrap();
        assert_eq!(digest, parts_digest(parts.iter().map(Vec::as_slice)));
        let decoded: Vec<_> = parts.iter().flat_map(|p| decode_records(p).unwrap()).collect();
        assert_eq!(decoded.len(), 2);
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let bytes = sample();
        for len in 0..bytes.len() {
            assert!(Backup::parse(&bytes[..len]).is_err(), "truncated to {len} bytes was accepted");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(Backup::parse(&bad).is_err(), "flipped byte {i} was accepted");
        }
    }

    #[test]
    fn a_file_that_is_not_a_backup_is_named_so() {
        let err = Backup::parse(b"PGDMP\x01\x0e\x00 some pg_dump").unwrap_err().to_string();
        assert!(err.contains("not a Portcullis backup"), "{err}");
    }
}
