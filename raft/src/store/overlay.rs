//! Read-your-writes buffer for one apply batch.
//!
//! Apply works on an overlay over the state machine tree and then writes everything it
//! changed, with the last-applied marker, key by key. Not as one atomic `sled::Batch`:
//! that costs two rolls of sled's IO buffer per apply; a crash mid-apply is handled by
//! rebuilding the tree from the snapshot instead (`recovery`).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::capture::Capture;
use crate::error::{Error, Result};

pub struct Overlay<'a> {
    tree: &'a sled::Tree,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a> Overlay<'a> {
    pub fn new(tree: &'a sled::Tree) -> Self {
        Overlay { tree, writes: BTreeMap::new() }
    }

    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.writes.get(key) {
            return Ok(v.clone());
        }
        let v = self.tree.get(key).map_err(storage_err)?;
        Ok(v.map(|iv| iv.to_vec()))
    }

    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.get_raw(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::corrupt("state record", e)),
        }
    }

    pub fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::corrupt("state record", e))?;
        self.writes.insert(key, Some(bytes));
        Ok(())
    }

    pub fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    pub fn remove(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// Keys under `prefix` in order, as this batch sees them: committed keys merged with
    /// this batch's writes (removals hidden). Apply batch boundaries differ between nodes,
    /// so a scan must not depend on whether an earlier entry is committed yet.
    pub fn keys(&self, prefix: &[u8]) -> impl Iterator<Item = Result<Vec<u8>>> + '_ {
        let owned = prefix.to_vec();
        let mut committed = self.tree.scan_prefix(prefix).keys().peekable();
        let mut pending = self
            .writes
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(&owned))
            .peekable();
        std::iter::from_fn(move || {
            loop {
                let order = match (committed.peek(), pending.peek()) {
                    (None, None) => return None,
                    (Some(Err(_)), _) | (Some(Ok(_)), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (Some(Ok(c)), Some((p, _))) => c.as_ref().cmp(p.as_slice()),
                };
                if order == Ordering::Less {
                    return committed.next().map(|k| k.map(|k| k.to_vec()).map_err(storage_err));
                }
                if order == Ordering::Equal {
                    committed.next();
                }
                if let Some((k, Some(_))) = pending.next() {
                    return Some(Ok(k.clone()));
                }
            }
        })
    }

    /// The greatest key under `prefix` as this batch sees it.
    pub fn last_key(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>> {
        let pending = self
            .writes
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k.clone())
            .last();
        let mut committed = None;
        for key in self.tree.scan_prefix(prefix).keys().rev() {
            let key = key.map_err(storage_err)?;
            // Removed in this batch: the one before it may still be there.
            if !matches!(self.writes.get(key.as_ref()), Some(None)) {
                committed = Some(key.to_vec());
                break;
            }
        }
        Ok(pending.max(committed))
    }

    /// Write this batch's changes to `tree`, key by key, each announced to `capture`
    /// first.
    pub fn write_to(self, tree: &sled::Tree, capture: &Capture) -> Result<()> {
        for (k, v) in self.writes {
            capture.before_write(tree, &k)?;
            match v {
                Some(v) => tree.insert(k, v).map(drop).map_err(storage_err)?,
                None => tree.remove(k).map(drop).map_err(storage_err)?,
            }
        }
        Ok(())
    }
}

pub fn storage_err(e: sled::Error) -> Error {
    Error::Storage { path: "state machine".into(), detail: e.to_string() }
}
