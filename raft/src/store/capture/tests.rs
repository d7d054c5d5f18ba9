#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;

fn tree() -> sled::Tree {
    let db = sled::Config::new().temporary(true).open().unwrap();
    db.open_tree("sm").unwrap()
}

fn contents(tree: &sled::Tree) -> BTreeMap<Vec<u8>, Vec<u8>> {
    tree.iter().map(|i| i.unwrap()).map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

/// What apply does for one key: announce it, then change it.
fn write(capture: &Capture, tree: &sled::Tree, key: &[u8], value: Option<&[u8]>) {
    capture.before_write(tree, key).unwrap();
    match value {
        Some(v) => tree.insert(key, v).map(drop).unwrap(),
        None => tree.remove(key).map(drop).unwrap(),
    }
}

fn copy_of(capture: &Capture, tree: &sled::Tree) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    let count = capture
        .copy(tree, |k, v| {
            assert!(out.insert(k.to_vec(), v.to_vec()).is_none(), "key {k:?} copied twice");
            Ok(())
        })
        .unwrap();
    assert_eq!(count, out.len() as u64);
    out
}

#[test]
fn the_copy_shows_the_state_at_arming_whatever_changed_after() {
    let capture = Capture::default();
    let t = tree();
    for k in ["a", "b", "c", "d", "e"] {
        t.insert(k, k.as_bytes()).unwrap();
    }
    let at_arming = contents(&t);
    capture.arm();
    write(&capture, &t, b"b", Some(b"changed"));
    write(&capture, &t, b"c", None);
    write(&capture, &t, b"d", None);
    write(&capture, &t, b"d", Some(b"back again"));
    write(&capture, &t, b"bb", Some(b"new"));
    write(&capture, &t, b"z", Some(b"new at the end"));
    assert_eq!(copy_of(&capture, &t), at_arming);
    // Disarmed: later writes keep nothing aside.
    write(&capture, &t, b"a", Some(b"after"));
    assert!(capture.lock().is_none());
}

#[test]
fn a_copy_racing_a_writer_still_equals_the_state_at_arming() {
    let mut kept_aside = 0;
    for round in 0..20u64 {
        let capture = Arc::new(Capture::default());
        let t = tree();
        for i in 0..2_000u64 {
            t.insert(format!("k{i:05}"), i.to_be_bytes().as_slice()).unwrap();
        }
        let at_arming = contents(&t);
        capture.arm();
        let writer = {
            let (capture, t) = (capture.clone(), t.clone());
            std::thread::spawn(move || {
                // A cheap deterministic walk over the keys: updates, deletes, inserts.
                let mut x = round.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                for n in 0..3_000u64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = format!("k{:05}", x % 2_500);
                    let value = match x % 3 {
                        0 => None,
                        _ => Some(n.to_be_bytes()),
                    };
                    write(&capture, &t, key.as_bytes(), value.as_ref().map(|v| v.as_slice()));
                }
            })
        };
        // Copy slowly, so the writer runs while the copy is under way.
        let mut copied = BTreeMap::new();
        capture
            .copy(&t, |k, v| {
                std::thread::yield_now();
                kept_aside = kept_aside.max(capture.lock().as_ref().map_or(0, |a| a.pre_images.len()));
                assert!(copied.insert(k.to_vec(), v.to_vec()).is_none(), "key {k:?} copied twice");
                Ok(())
            })
            .unwrap();
        writer.join().unwrap();
        assert_eq!(copied, at_arming, "round {round}");
    }
    assert!(kept_aside > 0, "the writer never overlapped a copy: the test proved nothing");
}
