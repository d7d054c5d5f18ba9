//! Read-your-writes buffer for one apply batch.
//!
//! Apply works on an overlay over the state machine tree and writes everything it
//! changed, together with the last-applied marker, as one atomic `sled::Batch`. A crash
//! therefore leaves the tree at an entry boundary, and openraft re-applies from there.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

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

    /// Committed keys (not this batch's writes) under `prefix` in order, up to `limit`.
    pub fn committed_keys(&self, prefix: &[u8]) -> impl Iterator<Item = Result<sled::IVec>> + '_ {
        self.tree.scan_prefix(prefix).keys().map(|k| k.map_err(storage_err))
    }

    pub fn into_batch(self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for (k, v) in self.writes {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        batch
    }
}

pub fn storage_err(e: sled::Error) -> Error {
    Error::Storage { path: "state machine".into(), detail: e.to_string() }
}
