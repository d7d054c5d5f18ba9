#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::path::Path;

use super::{load_into, write_tree};
use crate::error::Error;

fn tree(db: &sled::Db, name: &str) -> sled::Tree {
    db.open_tree(name).unwrap()
}

fn db() -> sled::Db {
    sled::Config::new().temporary(true).open().unwrap()
}

fn records(tree: &sled::Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
    tree.iter().map(|r| r.unwrap()).map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

/// A tree with awkward records: empty key and value, binary bytes, a large value, and
/// enough records to cross load's internal batch size.
fn sample(db: &sled::Db) -> sled::Tree {
    let t = tree(db, "src");
    t.insert(b"", b"").unwrap();
    t.insert(b"empty-value", b"").unwrap();
    t.insert([0u8, 255, 0xff, 0xfe, 0, 0, 0, 0], vec![0u8, 0xff, 0xff, 0xff, 0xff]).unwrap();
    t.insert(b"big", vec![7u8; 300_000]).unwrap();
    for i in 0u32..5_000 {
        t.insert(format!("e/{i:08}"), format!("{{\"n\":{i}}}").into_bytes()).unwrap();
    }
    t
}

fn expect_corrupt(path: &Path, what: &str) -> String {
    let target = tree(&db(), "dst");
    match load_into(path, &target) {
        Err(Error::Corrupt { what: "snapshot", detail }) => detail,
        Err(other) => panic!("{what}: expected Error::Corrupt, got {other:?}"),
        Ok(n) => panic!("{what}: loaded {n} records from a bad file"),
    }
}

#[test]
fn write_then_load_round_trips_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.snap");
    let db = db();
    let src = sample(&db);
    let written = write_tree(&src, &path).unwrap();
    assert_eq!(written, u64::try_from(src.len()).unwrap());

    let dst = tree(&db, "dst");
    let loaded = load_into(&path, &dst).unwrap();
    assert_eq!(loaded, written);
    assert_eq!(records(&dst), records(&src));
}

#[test]
fn an_empty_tree_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.snap");
    let db = db();
    assert_eq!(write_tree(&tree(&db, "src"), &path).unwrap(), 0);
    let dst = tree(&db, "dst");
    assert_eq!(load_into(&path, &dst).unwrap(), 0);
    assert!(dst.is_empty());
}

#[test]
fn a_truncated_file_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.snap");
    let db = db();
    let src = tree(&db, "src");
    src.insert(b"k1", b"value one").unwrap();
    src.insert(b"k2", b"").unwrap();
    src.insert(b"k3", vec![1u8; 100]).unwrap();
    write_tree(&src, &path).unwrap();
    let full = std::fs::read(&path).unwrap();

    let cut_path = dir.path().join("cut.snap");
    // Every cut: inside the magic, inside length prefixes, inside keys and values, at
    // record boundaries, before the end marker, inside and just before the trailer count.
    for len in 0..full.len() {
        std::fs::write(&cut_path, &full[..len]).unwrap();
        expect_corrupt(&cut_path, &format!("cut at {len} of {}", full.len()));
    }
}

#[test]
fn a_truncated_large_snapshot_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.snap");
    let db = db();
    write_tree(&sample(&db), &path).unwrap();
    let full = std::fs::read(&path).unwrap();
    let cut_path = dir.path().join("cut.snap");
    for len in [8, 9, 12, 1_000, full.len() / 2, full.len() - 13, full.len() - 12, full.len() - 8, full.len() - 1] {
        std::fs::write(&cut_path, &full[..len]).unwrap();
        expect_corrupt(&cut_path, &format!("cut at {len}"));
    }
}

#[test]
fn a_file_with_wrong_magic_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.snap");
    let db = db();
    let src = tree(&db, "src");
    src.insert(b"k", b"v").unwrap();
    write_tree(&src, &path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let detail = expect_corrupt(&path, "wrong magic");
    assert!(detail.contains("not a Portcullis snapshot"), "{detail}");

    std::fs::write(&path, b"{\"not\": \"a snapshot at all\"}").unwrap();
    expect_corrupt(&path, "json");
}

#[test]
fn a_wrong_record_count_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.snap");
    let db = db();
    let src = tree(&db, "src");
    src.insert(b"k", b"v").unwrap();
    write_tree(&src, &path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] = 2;
    std::fs::write(&path, &bytes).unwrap();
    let detail = expect_corrupt(&path, "count");
    assert!(detail.contains("trailer says 2"), "{detail}");
}

#[test]
fn a_huge_length_prefix_is_refused_without_allocating_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.snap");
    let mut bytes = super::MAGIC.to_vec();
    bytes.extend_from_slice(&(u32::MAX - 1).to_be_bytes());
    bytes.extend_from_slice(b"short");
    std::fs::write(&path, &bytes).unwrap();
    expect_corrupt(&path, "huge length");
}

#[test]
fn a_missing_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let target = tree(&db(), "dst");
    assert!(matches!(load_into(&dir.path().join("absent.snap"), &target), Err(Error::Io { .. })));
}
