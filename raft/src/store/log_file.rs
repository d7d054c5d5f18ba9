//! The Raft log in append-only segment files of its own (DESIGN §4: "keep the log in an
//! own append-only file with `sync_data`").
//!
//! Why not a sled tree: sled rewrites an entry several times as it consolidates pages,
//! and making one entry durable meant flushing all of sled. Under audit load that was the
//! largest share of a node's CPU (BENCHMARKS.md). Here an append is one `write` of the
//! encoded entries, and the sync thread (`Durability`) groups the `fdatasync`s.
//!
//! Layout: `<data dir>/log/<index of the segment's first record, 20 digits>.seg`. A record
//! is `len u32 | crc32 u32 | index u64 | term u64 | leader u64 | entry (len bytes)`, little
//! endian, the CRC covering everything after itself. When the log is opened, a torn
//! record at the end of the last segment (a crash mid-write; it was never reported
//! durable) is cut off; a bad record anywhere else is corruption and opening fails.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::{CommittedLeaderId, Entry, LogId};

use crate::TypeConfig;
use crate::error::{Error, Result};

/// A segment is closed once it grows past this; the next append starts a new one.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const HEADER: usize = 32;
/// Replication reads the newest entries once per follower: keep them decoded.
const CACHE_ENTRIES: usize = 4096;
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// The segment file appends go to, shared with the sync thread.
pub(crate) type CurrentSegment = Arc<Mutex<Option<Arc<File>>>>;

struct Segment {
    path: PathBuf,
    file: Arc<File>,
    len: u64,
}

/// Where one entry's record is.
#[derive(Clone, Copy)]
struct Position {
    log_id: LogId<u64>,
    /// Key of its segment (the segment's first index).
    segment: u64,
    offset: u64,
    len: u32,
}

/// The open log: segment files, the position of every live entry, and the newest
/// entries decoded.
pub(crate) struct LogFile {
    dir: PathBuf,
    segments: BTreeMap<u64, Segment>,
    /// Positions of the live entries, in index order without gaps.
    positions: VecDeque<Position>,
    /// The newest entries, ending at the last one, without gaps; with their record sizes.
    cache: VecDeque<(Entry<TypeConfig>, usize)>,
    cache_bytes: usize,
    current: CurrentSegment,
}

impl LogFile {
    /// Open the log under `dir`, dropping entries at or before `last_purged`.
    pub(crate) fn open(dir: &Path, last_purged: Option<u64>) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create log dir {}", dir.display()), e))?;
        let mut log = LogFile {
            dir: dir.to_path_buf(),
            segments: BTreeMap::new(),
            positions: VecDeque::new(),
            cache: VecDeque::new(),
            cache_bytes: 0,
            current: Arc::new(Mutex::new(None)),
        };
        let names = segment_names(dir)?;
        let last_key = names.last().map(|(key, _)| *key);
        for (key, path) in names {
            let is_last = Some(key) == last_key;
            log.load_segment(key, path, is_last, last_purged)?;
        }
        // Segments holding only purged entries (a crash between recording the purge point
        // and deleting them) go now; the last one stays, appends continue there.
        let purged_only: Vec<u64> = log
            .segments
            .keys()
            .copied()
            .filter(|key| Some(*key) != last_key && !log.positions.iter().any(|p| p.segment == *key))
            .collect();
        log.delete_segments(&purged_only)?;
        let current = log.segments.values().next_back().map(|s| s.file.clone());
        *log.current.lock().map_err(|_| poisoned())? = current;
        Ok(log)
    }

    fn load_segment(&mut self, key: u64, path: PathBuf, is_last: bool, last_purged: Option<u64>) -> Result<()> {
        let bytes = std::fs::read(&path).map_err(|e| Error::io(format!("read log segment {}", path.display()), e))?;
        let mut offset = 0usize;
        while offset < bytes.len() {
            let Some((log_id, len)) = parse_record(bytes.get(offset..).unwrap_or_default()) else {
                if !is_last {
                    return Err(Error::Corrupt {
                        what: "raft log",
                        detail: format!("bad record at byte {offset} of {}", path.display()),
                    });
                }
                tracing::warn!(segment = %path.display(), offset, "cutting off a torn record at the end of the raft log");
                break;
            };
            if last_purged.is_none_or(|p| log_id.index > p) {
                if let Some(prev) = self.positions.back()
                    && prev.log_id.index.checked_add(1) != Some(log_id.index)
                {
                    return Err(Error::Corrupt {
                        what: "raft log",
                        detail: format!(
                            "entry {} follows entry {} in {}",
                            log_id.index,
                            prev.log_id.index,
                            path.display()
                        ),
                    });
                }
                self.positions.push_back(Position { log_id, segment: key, offset: offset as u64, len });
            }
            offset += HEADER + len as usize;
        }
        let file = open_segment(&path)?;
        if (offset as u64) < bytes.len() as u64 {
            file.set_len(offset as u64).map_err(|e| Error::io(format!("cut log segment {}", path.display()), e))?;
            file.sync_data().map_err(|e| Error::io(format!("sync log segment {}", path.display()), e))?;
        }
        let len = offset.min(bytes.len()) as u64;
        self.segments.insert(key, Segment { path, file: Arc::new(file), len });
        Ok(())
    }

    /// The file the sync thread makes durable.
    pub(crate) fn current(&self) -> CurrentSegment {
        self.current.clone()
    }

    pub(crate) fn last_log_id(&self) -> Option<LogId<u64>> {
        self.positions.back().map(|p| p.log_id)
    }

    /// Write `entries` after the last one. Durable only after the sync thread's next sync.
    pub(crate) fn append(&mut self, entries: impl IntoIterator<Item = Entry<TypeConfig>>) -> Result<()> {
        let mut encoded = Vec::new();
        let mut records = Vec::new();
        for entry in entries {
            let start = encoded.len();
            let len = encode_record(&entry, &mut encoded)?;
            records.push((entry, start, len));
        }
        let Some((first, _, _)) = records.first() else {
            return Ok(());
        };
        let first_index = first.log_id.index;
        let key = self.segment_for_append(first_index)?;
        let segment = self.segments.get_mut(&key).ok_or_else(|| missing_segment(key))?;
        let base = segment.len;
        (&*segment.file)
            .write_all(&encoded)
            .map_err(|e| Error::io(format!("append to log segment {}", segment.path.display()), e))?;
        segment.len += encoded.len() as u64;
        for (entry, start, len) in records {
            self.positions.push_back(Position { log_id: entry.log_id, segment: key, offset: base + start as u64, len });
            let size = HEADER + len as usize;
            self.cache.push_back((entry, size));
            self.cache_bytes += size;
        }
        while self.cache.len() > CACHE_ENTRIES || self.cache_bytes > CACHE_BYTES {
            match self.cache.pop_front() {
                Some((_, size)) => self.cache_bytes -= size,
                None => break,
            }
        }
        Ok(())
    }

    /// The segment the next append goes to: the last one, or a new one starting at
    /// `first_index` once the last is full.
    fn segment_for_append(&mut self, first_index: u64) -> Result<u64> {
        if let Some((key, segment)) = self.segments.iter().next_back()
            && segment.len < SEGMENT_BYTES
        {
            return Ok(*key);
        }
        if let Some(full) = self.segments.values().next_back() {
            // Everything in the old segment must be durable before the sync thread moves on.
            full.file.sync_data().map_err(|e| Error::io(format!("sync log segment {}", full.path.display()), e))?;
        }
        let path = self.dir.join(format!("{first_index:020}.seg"));
        let file = Arc::new(open_segment(&path)?);
        sync_dir(&self.dir)?;
        self.segments.insert(first_index, Segment { path, file: file.clone(), len: 0 });
        *self.current.lock().map_err(|_| poisoned())? = Some(file);
        Ok(first_index)
    }

    /// The live entries with indexes in `start..end` (`end` exclusive, `None` for all).
    pub(crate) fn read(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry<TypeConfig>>> {
        let Some(first) = self.positions.front().map(|p| p.log_id.index) else {
            return Ok(Vec::new());
        };
        let cached_from = self.cache.front().map(|(e, _)| e.log_id.index).unwrap_or(u64::MAX);
        let from = usize::try_from(start.saturating_sub(first)).unwrap_or(usize::MAX);
        let mut entries = Vec::new();
        for position in self.positions.iter().skip(from) {
            let index = position.log_id.index;
            if end.is_some_and(|end| index >= end) {
                break;
            }
            let cached =
                index.checked_sub(cached_from).and_then(|i| usize::try_from(i).ok()).and_then(|i| self.cache.get(i));
            match cached {
                Some((entry, _)) => entries.push(entry.clone()),
                None => entries.push(self.read_record(position)?),
            }
        }
        Ok(entries)
    }

    fn read_record(&self, position: &Position) -> Result<Entry<TypeConfig>> {
        let segment = self.segments.get(&position.segment).ok_or_else(|| missing_segment(position.segment))?;
        let mut record = vec![0u8; HEADER + position.len as usize];
        segment
            .file
            .read_exact_at(&mut record, position.offset)
            .map_err(|e| Error::io(format!("read log segment {}", segment.path.display()), e))?;
        let corrupt = || Error::Corrupt {
            what: "raft log",
            detail: format!("record of entry {} in {}", position.log_id.index, segment.path.display()),
        };
        parse_record(&record).ok_or_else(corrupt)?;
        serde_json::from_slice(record.get(HEADER..).unwrap_or_default()).map_err(|_| corrupt())
    }

    /// Remove the entries from `index` on (a conflicting suffix), durably.
    pub(crate) fn truncate(&mut self, index: u64) -> Result<()> {
        let Some(first) = self.positions.front().map(|p| p.log_id.index) else {
            return Ok(());
        };
        let keep = usize::try_from(index.saturating_sub(first)).unwrap_or(usize::MAX);
        let Some(cut) = self.positions.get(keep).copied() else {
            return Ok(());
        };
        let later: Vec<u64> = self.segments.range(cut.segment + 1..).map(|(key, _)| *key).collect();
        self.delete_segments(&later)?;
        let segment = self.segments.get_mut(&cut.segment).ok_or_else(|| missing_segment(cut.segment))?;
        let context = |what: &str| format!("{what} log segment {}", segment.path.display());
        segment.file.set_len(cut.offset).map_err(|e| Error::io(context("cut"), e))?;
        segment.file.sync_data().map_err(|e| Error::io(context("sync"), e))?;
        segment.len = cut.offset;
        let current = segment.file.clone();
        *self.current.lock().map_err(|_| poisoned())? = Some(current);
        self.positions.truncate(keep);
        while self.cache.back().is_some_and(|(e, _)| e.log_id.index >= index) {
            if let Some((_, size)) = self.cache.pop_back() {
                self.cache_bytes -= size;
            }
        }
        Ok(())
    }

    /// Forget the entries up to and including `index`; delete segments holding nothing else.
    /// The caller has recorded the purge point durably first.
    pub(crate) fn purge(&mut self, index: u64) -> Result<()> {
        while self.positions.front().is_some_and(|p| p.log_id.index <= index) {
            self.positions.pop_front();
        }
        while self.cache.front().is_some_and(|(e, _)| e.log_id.index <= index) {
            if let Some((_, size)) = self.cache.pop_front() {
                self.cache_bytes -= size;
            }
        }
        // A segment holds only purged entries when the next one starts at or before index + 1.
        let keys: Vec<u64> = self.segments.keys().copied().collect();
        let purged: Vec<u64> = keys
            .windows(2)
            .filter_map(|pair| match pair {
                [key, next] if *next <= index.saturating_add(1) => Some(*key),
                _ => None,
            })
            .collect();
        self.delete_segments(&purged)
    }

    fn delete_segments(&mut self, keys: &[u64]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        for key in keys {
            if let Some(segment) = self.segments.remove(key) {
                std::fs::remove_file(&segment.path)
                    .map_err(|e| Error::io(format!("delete log segment {}", segment.path.display()), e))?;
            }
        }
        sync_dir(&self.dir)
    }
}

/// Sync the segment appends go to; what the log's sync thread runs.
pub(crate) fn sync_current(current: &CurrentSegment) -> std::io::Result<()> {
    let file = current.lock().map_err(|_| std::io::Error::other("log segment lock poisoned"))?.clone();
    match file {
        Some(file) => file.sync_data(),
        None => Ok(()),
    }
}

/// Append `entry`'s record to `out`; returns the entry's encoded length.
fn encode_record(entry: &Entry<TypeConfig>, out: &mut Vec<u8>) -> Result<u32> {
    let start = out.len();
    out.resize(start + HEADER, 0);
    serde_json::to_writer(&mut *out, entry)
        .map_err(|e| Error::Corrupt { what: "raft entry", detail: e.to_string() })?;
    let len = out.len() - start - HEADER;
    let len32 = u32::try_from(len).map_err(|_| Error::Corrupt {
        what: "raft entry",
        detail: format!("{len} bytes is too large for one record"),
    })?;
    let id = entry.log_id;
    let mut header = [0u8; HEADER];
    header[0..4].copy_from_slice(&len32.to_le_bytes());
    header[8..16].copy_from_slice(&id.index.to_le_bytes());
    header[16..24].copy_from_slice(&id.leader_id.term.to_le_bytes());
    header[24..32].copy_from_slice(&id.leader_id.node_id.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header[8..]);
    crc.update(out.get(start + HEADER..).unwrap_or_default());
    header[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
    if let Some(slot) = out.get_mut(start..start + HEADER) {
        slot.copy_from_slice(&header);
    }
    Ok(len32)
}

/// The log id and entry length of the record at the start of `bytes`, if it is whole and
/// its CRC matches.
fn parse_record(bytes: &[u8]) -> Option<(LogId<u64>, u32)> {
    let word = |at: usize| -> Option<u64> { Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?)) };
    let len = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?);
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let body = bytes.get(8..HEADER + len as usize)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let (index, term, leader) = (word(8)?, word(16)?, word(24)?);
    Some((LogId::new(CommittedLeaderId::new(term, leader), index), len))
}

/// The segment files under `dir`, in index order.
fn segment_names(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let read = std::fs::read_dir(dir).map_err(|e| Error::io(format!("list log dir {}", dir.display()), e))?;
    let mut names = Vec::new();
    for item in read {
        let item = item.map_err(|e| Error::io(format!("list log dir {}", dir.display()), e))?;
        let name = item.file_name().to_string_lossy().to_string();
        if let Some(key) = name.strip_suffix(".seg").and_then(|n| n.parse::<u64>().ok()) {
            names.push((key, item.path()));
        }
    }
    names.sort();
    Ok(names)
}

fn open_segment(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(format!("open log segment {}", path.display()), e))
}

/// Make creations and deletions of segment files durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(format!("sync log dir {}", dir.display()), e))
}

fn missing_segment(key: u64) -> Error {
    Error::Corrupt { what: "raft log", detail: format!("segment {key:020}.seg is gone") }
}

fn poisoned() -> Error {
    Error::Fatal("raft log lock poisoned".into())
}

#[cfg(test)]
mod tests;
