#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::io::Write;

use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

use super::*;
use crate::command::{Command, Op};

fn entry(index: u64, term: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(std::sync::Arc::new(Command {
            request_id: format!("r{index}"),
            at: 0,
            op: Op::DeletePolicy { name: format!("p{index}") },
        })),
    }
}

fn indexes(entries: &[Entry<TypeConfig>]) -> Vec<u64> {
    entries.iter().map(|e| e.log_id.index).collect()
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    names.sort();
    names
}

#[test]
fn entries_survive_reopening_with_their_terms() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogFile::open(dir.path(), None).unwrap();
    log.append((1..=5).map(|i| entry(i, 2))).unwrap();
    log.append([entry(6, 3)]).unwrap();
    drop(log);

    let log = LogFile::open(dir.path(), None).unwrap();
    assert_eq!(log.last_log_id(), Some(LogId::new(CommittedLeaderId::new(3, 1), 6)));
    let read = log.read(2, Some(5)).unwrap();
    assert_eq!(indexes(&read), vec![2, 3, 4]);
    assert_eq!(read[0], entry(2, 2));
    assert_eq!(indexes(&log.read(0, None).unwrap()), vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn a_torn_record_at_the_end_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogFile::open(dir.path(), None).unwrap();
    log.append((1..=3).map(|i| entry(i, 1))).unwrap();
    drop(log);
    let segment = dir.path().join(&segment_files(dir.path())[0]);
    let whole = std::fs::metadata(&segment).unwrap().len();
    // Half a record, as a crash in the middle of a write leaves it.
    let mut half = Vec::new();
    encode_record(&entry(4, 1), &mut half).unwrap();
    half.truncate(half.len() / 2);
    std::fs::OpenOptions::new().append(true).open(&segment).unwrap().write_all(&half).unwrap();

    let mut log = LogFile::open(dir.path(), None).unwrap();
    assert_eq!(indexes(&log.read(0, None).unwrap()), vec![1, 2, 3]);
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), whole);
    // Appends continue right after the last whole record.
    log.append([entry(4, 1)]).unwrap();
    drop(log);
    let log = LogFile::open(dir.path(), None).unwrap();
    assert_eq!(indexes(&log.read(0, None).unwrap()), vec![1, 2, 3, 4]);
}

#[test]
fn a_damaged_record_before_the_end_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogFile::open(dir.path(), None).unwrap();
    log.append((1..=3).map(|i| entry(i, 1))).unwrap();
    // Force a second segment so the damage is not at the end of the last one.
    log.segments.values_mut().for_each(|s| s.len = SEGMENT_BYTES);
    log.append([entry(4, 1)]).unwrap();
    drop(log);
    let first = dir.path().join(&segment_files(dir.path())[0]);
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[HEADER + 3] ^= 0xff;
    std::fs::write(&first, bytes).unwrap();

    let err = LogFile::open(dir.path(), None).err().expect("a damaged log must not open");
    assert!(err.to_string().contains("corrupt raft log"), "{err}");
}

#[test]
fn truncate_removes_the_suffix_across_segments_durably() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogFile::open(dir.path(), None).unwrap();
    log.append((1..=3).map(|i| entry(i, 1))).unwrap();
    log.segments.values_mut().for_each(|s| s.len = SEGMENT_BYTES);
    log.append((4..=6).map(|i| entry(i, 1))).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 2);

    log.truncate(3).unwrap();
    assert_eq!(indexes(&log.read(0, None).unwrap()), vec![1, 2]);
    assert_eq!(segment_files(dir.path()).len(), 1, "the later segment is deleted");
    log.append([entry(3, 2)]).unwrap();
    drop(log);

    let log = LogFile::open(dir.path(), None).unwrap();
    assert_eq!(indexes(&log.read(0, None).unwrap()), vec![1, 2, 3]);
    assert_eq!(log.last_log_id(), Some(LogId::new(CommittedLeaderId::new(2, 1), 3)));
}

#[test]
fn purge_forgets_entries_and_deletes_segments_holding_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogFile::open(dir.path(), None).unwrap();
    log.append((1..=3).map(|i| entry(i, 1))).unwrap();
    log.segments.values_mut().for_each(|s| s.len = SEGMENT_BYTES);
    log.append((4..=6).map(|i| entry(i, 1))).unwrap();

    log.purge(2).unwrap();
    assert_eq!(indexes(&log.read(0, None).unwrap()), vec![3, 4, 5, 6]);
    assert_eq!(segment_files(dir.path()).len(), 2, "entry 3 still lives in the first segment");
    log.purge(4).unwrap();
    assert_eq!(segment_files(dir.path()), vec![format!("{:020}.seg", 4)]);
    drop(log);

    let log = LogFile::open(dir.path(), Some(4)).unwrap();
    assert_eq!(indexes(&log.read(0, None).unwrap()), vec![5, 6]);
}

#[test]
fn purging_past_the_end_lets_the_log_continue_after_the_purge_point() {
    // A follower that installed a snapshot newer than its whole log.
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogFile::open(dir.path(), None).unwrap();
    log.append((1..=3).map(|i| entry(i, 1))).unwrap();
    log.purge(100).unwrap();
    assert_eq!(log.last_log_id(), None);
    log.append([entry(101, 4)]).unwrap();
    drop(log);

    let log = LogFile::open(dir.path(), Some(100)).unwrap();
    assert_eq!(indexes(&log.read(0, None).unwrap()), vec![101]);
}

#[test]
fn reads_past_the_cache_come_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogFile::open(dir.path(), None).unwrap();
    let count = CACHE_ENTRIES as u64 + 10;
    log.append((1..=count).map(|i| entry(i, 1))).unwrap();
    assert_eq!(log.cache.len(), CACHE_ENTRIES);
    let read = log.read(1, Some(21)).unwrap();
    assert_eq!(indexes(&read), (1..=20).collect::<Vec<_>>());
    assert_eq!(read[4], entry(5, 1));
    assert_eq!(log.read(count, None).unwrap(), vec![entry(count, 1)]);
}
