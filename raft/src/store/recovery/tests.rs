#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use openraft::{CommittedLeaderId, LogId, SnapshotMeta, StoredMembership};

use super::*;
use crate::store::state_machine::CurrentSnapshot;

struct Disk {
    dir: tempfile::TempDir,
    db: sled::Db,
    meta: sled::Tree,
}

impl Disk {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("snapshots")).unwrap();
        let db = sled::Config::new().path(dir.path().join("db")).open().unwrap();
        let meta = db.open_tree("meta").unwrap();
        Disk { dir, db, meta }
    }

    /// What a node start does: the state tree to use.
    fn start(&self) -> sled::Tree {
        open_state_tree(&self.db, &self.meta, &self.dir.path().join("db"), &self.dir.path().join("snapshots")).unwrap()
    }

    fn close_cleanly(&self) {
        mark_clean(&self.db, &self.meta, &self.dir.path().join("db")).unwrap();
    }
}

fn keys_of(tree: &sled::Tree) -> Vec<String> {
    tree.iter().keys().map(|k| String::from_utf8(k.unwrap().to_vec()).unwrap()).collect()
}

#[test]
fn after_a_clean_close_the_tree_on_disk_is_used_as_it_is() {
    let disk = Disk::new();
    let tree = disk.start();
    tree.insert("p/kept", b"1".as_slice()).unwrap();
    disk.close_cleanly();
    let again = disk.start();
    assert_eq!(again.name(), tree.name());
    assert_eq!(keys_of(&again), vec!["p/kept"]);
    // The marker is spent: a crash after this start is not taken for a clean close.
    let after_crash = disk.start();
    assert_ne!(after_crash.name(), tree.name());
    assert!(keys_of(&after_crash).is_empty());
}

#[test]
fn after_an_unclean_stop_without_a_snapshot_the_state_starts_empty() {
    let disk = Disk::new();
    let tree = disk.start();
    tree.insert("p/half-applied", b"1".as_slice()).unwrap();
    let rebuilt = disk.start();
    assert!(keys_of(&rebuilt).is_empty(), "nothing of a possibly half-applied tree survives");
    assert!(!disk.db.tree_names().iter().any(|n| n.as_ref() == tree.name().as_ref()), "the old tree is dropped");
    // A tree left half-loaded by a crash during an earlier rebuild goes too.
    disk.db.open_tree("sm.half-loaded").unwrap().insert("x", b"1".as_slice()).unwrap();
    let again = disk.start();
    let trees: Vec<Vec<u8>> =
        disk.db.tree_names().iter().map(|n| n.to_vec()).filter(|n| n.starts_with(b"sm.")).collect();
    assert_eq!(trees, vec![again.name().to_vec()]);
}

#[test]
fn after_an_unclean_stop_the_state_is_the_current_snapshot_with_its_markers() {
    let disk = Disk::new();
    let tree = disk.start();
    tree.insert("p/in-snapshot", b"1".as_slice()).unwrap();
    let snapshots = disk.dir.path().join("snapshots");
    snapshot_file::write_tree(&tree, &snapshots.join("s1.snap")).unwrap();
    let last = LogId::new(CommittedLeaderId::new(3, 1), 42);
    let meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: StoredMembership::default(),
        snapshot_id: "s1".into(),
    };
    let current = CurrentSnapshot { meta, file: "s1.snap".into() };
    std::fs::write(snapshots.join("current.json"), serde_json::to_vec(&current).unwrap()).unwrap();
    // Applied after the snapshot, then a crash.
    tree.insert("p/after-snapshot", b"1".as_slice()).unwrap();

    let rebuilt = disk.start();
    let mut expected = vec!["m/last_applied".to_string(), "m/last_membership".to_string(), "p/in-snapshot".to_string()];
    expected.sort();
    assert_eq!(keys_of(&rebuilt), expected);
    let applied: Option<LogId<u64>> =
        serde_json::from_slice(&rebuilt.get(keys::LAST_APPLIED).unwrap().unwrap()).unwrap();
    assert_eq!(applied, Some(last), "openraft re-applies the log after the snapshot's index");
}
