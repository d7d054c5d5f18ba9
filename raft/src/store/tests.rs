#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};

use super::{LogStore, StateMachine};
use crate::TypeConfig;

struct TempStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for TempStoreBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().map_err(super::write_err)?;
        let (log, sm, _view) = super::open(dir.path()).map_err(super::write_err)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() -> Result<(), StorageError<u64>> {
    Suite::test_all(TempStoreBuilder)?;
    Ok(())
}

#[test]
fn a_fresh_data_dir_is_stamped_and_one_in_another_format_is_refused_naming_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let meta = db.open_tree("meta").unwrap();
    super::check_format(&meta, dir.path()).unwrap();
    assert!(meta.get(super::FORMAT_KEY).unwrap().is_some(), "a fresh dir gets the current format");
    super::check_format(&meta, dir.path()).unwrap();

    // Written before formats were stamped: state, but no format record.
    meta.remove(super::FORMAT_KEY).unwrap();
    meta.insert("vote", b"{}".as_slice()).unwrap();
    let refused = super::check_format(&meta, dir.path()).unwrap_err().to_string();
    assert!(refused.contains("data format 1") && refused.contains("reads format 2"), "{refused}");

    meta.insert(super::FORMAT_KEY, &3u32.to_be_bytes()).unwrap();
    let refused = super::check_format(&meta, dir.path()).unwrap_err().to_string();
    assert!(refused.contains("data format 3"), "{refused}");
}

#[test]
fn log_segments_without_a_format_record_are_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("log")).unwrap();
    std::fs::write(dir.path().join("log").join("00000000000000000001.seg"), b"").unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let meta = db.open_tree("meta").unwrap();
    assert!(super::check_format(&meta, dir.path()).is_err());
}
