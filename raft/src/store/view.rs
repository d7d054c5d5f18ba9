//! Read view of the local state machine, for the admin API and the doors.
//!
//! Reads are local and may lag the leader by replication delay; callers that need an
//! up-to-date answer check the quorum lease first (see `lease`).

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::keys;
use super::overlay::storage_err;
use super::state_machine::Shared;
use crate::backup::BackupWriter;
use crate::error::{Error, Result};
use crate::model::{
    Approval, ApprovalStatus, Event, Policy, Resource, Session, SessionFilter, SessionStatus, SshAuthority,
};

/// Cheap, cloneable read handle.
#[derive(Clone)]
pub struct StateView {
    shared: Arc<Shared>,
}

impl StateView {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        StateView { shared }
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.shared.tree().get(key).map_err(storage_err)? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b).map(Some).map_err(|e| Error::corrupt("state record", e)),
        }
    }

    fn list<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for item in self.shared.tree().scan_prefix(prefix).values() {
            let bytes = item.map_err(storage_err)?;
            out.push(serde_json::from_slice(&bytes).map_err(|e| Error::corrupt("state record", e))?);
        }
        Ok(out)
    }

    /// Record a clean close of the store (only after Raft is shut down).
    pub(crate) async fn mark_clean(&self) -> Result<()> {
        self.shared.mark_clean().await
    }

    /// Index of the last applied log entry (0 before the first).
    pub fn last_applied(&self) -> u64 {
        *self.shared.notifier.subscribe_applied().borrow()
    }

    pub fn notifier(&self) -> &crate::notify::Notifier {
        &self.shared.notifier
    }

    pub fn resource(&self, name: &str) -> Result<Option<Resource>> {
        self.get(&keys::named(keys::RESOURCE, name))
    }

    pub fn resources(&self) -> Result<Vec<Resource>> {
        self.list(keys::RESOURCE)
    }

    pub fn policy(&self, name: &str) -> Result<Option<Policy>> {
        self.get(&keys::named(keys::POLICY, name))
    }

    pub fn policies(&self) -> Result<Vec<Policy>> {
        self.list(keys::POLICY)
    }

    /// The cluster's SSH authority, once a node has made it.
    pub fn ssh_authority(&self) -> Result<Option<SshAuthority>> {
        self.get(keys::SSH_AUTHORITY)
    }

    pub fn approval(&self, id: &str) -> Result<Option<Approval>> {
        self.get(&keys::named(keys::APPROVAL, id))
    }

    /// Approvals, oldest first; `pending_only` reads just the pending ones (their index).
    pub fn approvals(&self, pending_only: bool) -> Result<Vec<Approval>> {
        let mut all: Vec<Approval> = if pending_only {
            let mut pending = Vec::new();
            for key in self.shared.tree().scan_prefix(keys::PENDING_APPROVAL).keys() {
                let key = key.map_err(storage_err)?;
                let id =
                    String::from_utf8_lossy(key.get(keys::PENDING_APPROVAL.len()..).unwrap_or_default()).into_owned();
                pending.extend(self.approval(&id)?.filter(|a| a.status == ApprovalStatus::Pending));
            }
            pending
        } else {
            self.list(keys::APPROVAL)?
        };
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        Ok(all)
    }

    /// Wait until approval `id` is decided (approved, denied or expired), or `timeout`.
    ///
    /// Subscribes before reading, so a decision applied in between is not missed.
    /// Returns the approval as last seen (still pending on timeout).
    pub async fn wait_approval_decided(&self, id: &str, timeout: Duration) -> Result<Option<Approval>> {
        let mut changed = self.shared.notifier.subscribe_approvals();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let current = self.approval(id)?;
            match &current {
                Some(a) if a.status.is_final() => return Ok(current),
                _ => {}
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return Ok(current),
            }
        }
    }

    pub fn session(&self, id: &str) -> Result<Option<Session>> {
        let Some(mut session) = self.get::<Session>(&keys::named(keys::SESSION, id))? else {
            return Ok(None);
        };
        // Apply does not keep a count in the record; the events table is the count.
        let last = self.shared.tree().scan_prefix(keys::event_prefix(id)).keys().next_back();
        session.events = match last {
            Some(key) => keys::event_run_seqs(&key.map_err(storage_err)?).map_or(0, |(_, last)| last.saturating_add(1)),
            None => 0,
        };
        Ok(Some(session))
    }

    /// Sessions still open, in no particular order (their event counts are not filled
    /// in). A scan of every session record: for the rare sweeps of `liveness`.
    pub fn open_sessions(&self) -> Result<Vec<Session>> {
        let mut all: Vec<Session> = self.list(keys::SESSION)?;
        all.retain(|s| s.status == SessionStatus::Open);
        Ok(all)
    }

    /// Sessions matching `filter`, newest first.
    pub fn sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>> {
        let tree = self.shared.tree();
        // Pick the narrowest index for the scan; the other fields filter.
        let (prefix, fixed) = match (&filter.identity, &filter.resource) {
            (Some(identity), _) => {
                let p = keys::index_prefix(keys::BY_IDENTITY, identity);
                let n = p.len();
                (p, n)
            }
            (None, Some(resource)) => {
                let p = keys::index_prefix(keys::BY_RESOURCE, resource);
                let n = p.len();
                (p, n)
            }
            (None, None) => (keys::BY_TIME.to_vec(), keys::BY_TIME.len()),
        };
        let limit = filter.limit.unwrap_or(usize::MAX);
        // Index keys are `<prefix><started be><id>`: sessions started up to `until`
        // sort below `<prefix><until + 1 be>`.
        let entries = match filter.until.and_then(|until| until.checked_add(1)) {
            Some(past) => {
                let mut upper = prefix.clone();
                upper.extend_from_slice(&past.to_be_bytes());
                tree.range(prefix.clone()..upper)
            }
            None => tree.scan_prefix(&prefix),
        };
        let mut out = Vec::new();
        for key in entries.keys().rev() {
            let key = key.map_err(storage_err)?;
            let Some((started, id)) = keys::session_from_index(&key, fixed) else {
                continue;
            };
            if filter.since.is_some_and(|since| started < since) {
                break;
            }
            let Some(session) = self.session(&id)? else {
                continue;
            };
            if filter.resource.as_ref().is_some_and(|r| *r != session.resource) {
                continue;
            }
            out.push(session);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Events of a session in order.
    pub fn events(&self, session_id: &str) -> Result<Vec<Event>> {
        let runs: Vec<Vec<Event>> = self.list(&keys::event_prefix(session_id))?;
        Ok(runs.into_iter().flatten().collect())
    }

    /// A backup of the state as of one applied entry, copied as a snapshot is (see
    /// `capture`): applies go on meanwhile without showing in it.
    pub async fn backup(&self, node: u64) -> Result<Vec<u8>> {
        let copying = self.shared.copying.clone().lock_owned().await;
        let last_applied = {
            let _gate = self.shared.gate.lock().await;
            self.shared.capture.arm();
            self.shared.applied_state().map_err(|e| Error::corrupt("applied state", e))?.0
        };
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let _copying = copying;
            let header = BackupWriter::header(node, last_applied.map(|l| l.index).unwrap_or(0));
            let mut writer = BackupWriter::new(&header)?;
            shared.capture.copy(&shared.tree(), |k, v| writer.record(k, v))?;
            Ok(writer.finish())
        })
        .await
        .map_err(|e| Error::Fatal(format!("backup task: {e}")))?
    }

    /// Whether the tables a restore fills are all empty (a restore never merges).
    pub fn is_empty_for_restore(&self) -> Result<bool> {
        let tree = self.shared.tree();
        for prefix in keys::RESTORE_TARGET {
            if tree.scan_prefix(prefix).next().transpose().map_err(storage_err)?.is_some() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Every record of the state machine in key order, for digests and backups.
    pub fn for_each_record(&self, mut f: impl FnMut(&[u8], &[u8])) -> Result<()> {
        for item in self.shared.tree().iter() {
            let (k, v) = item.map_err(storage_err)?;
            f(&k, &v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
