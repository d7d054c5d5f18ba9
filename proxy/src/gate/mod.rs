//! The gate: the door-independent phases that every door walks (DESIGN §3).
//!
//! A door (Postgres, SSH, HTTP) owns its bytes: framing, its handshake, and what the
//! client's input means. Everything that must happen the same way whichever door the
//! work came through lives here, once:
//!
//! ```text
//!  door                              gate
//!  ────                              ────
//!  authenticate (token) ───────────▶ Gate::open               session recorded before any work
//!  per unit of work (statement, command, request):
//!  classify  input → Requests ─────▶ GateSession::decide      policy → Judgement (+ masks)
//!                                    GateSession::clear       deny → Refusal; review → hold:
//!          Door::tell_waiting ◀───── │                        approval through any node, or
//!          Door::gave_up      ─────▶ │                        deadline / cancel / lease lost
//!                                    GateSession::audit       → Permit (strict: record committed
//!  relay     needs the Permit ◀──────┘                        before a write runs, before a
//!  mask      with Judgement::masks                            read's results leave)
//!  (any refusal)            ───────▶ GateSession::refused     recorded, then the door says it
//!  record    what came back ───────▶ GateSession::record      in its protocol's words
//!  session end ────────────────────▶ GateSession::close
//! ```
//!
//! The order is enforced by types: a [`Permit`] comes only from
//! [`GateSession::audit`], which takes [`Cleared`] work, which only
//! [`GateSession::clear`] returns for a [`Judgement`]. Every refusal goes through
//! [`GateSession::refused`], so it is recorded (and counted) the same way on every
//! path, and each door maps [`Refusal`] to its protocol in one exhaustive function.
//!
//! - [`judgement`]: combining policy decisions. [`hold`]: the approval wait.
//! - [`audit`]: the bounded audit backlog and the [`Permit`]. [`record`]: typed audit records.
//! - [`door`]: what the gate needs from a door while work is held.
//! - [`metrics`]: the gateway's door metrics, recorded here once for every door.

pub mod audit;
pub mod deferred;
pub mod door;
pub mod hold;
pub mod judgement;
mod metrics;
pub mod record;
pub mod refusal;
mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use audit::{Effect, Permit};
pub use door::{Door, GaveUp, Waiting};
pub use judgement::{Combined, Judgement, Review};
pub use record::{OutputRecord, ResultRecord, Work};
pub use refusal::{Refusal, Unclassified};
pub use session::{Cleared, GateSession, IdentitySlot, Opening, RESULT_FLUSH_AFTER, Recorder};

use crate::error::Result;
use crate::policy::{PolicySet, parse};
use crate::store::Store;

/// Tunables of the gate, shared by every door of a node.
#[derive(Debug, Clone)]
pub struct GateSettings {
    /// Audit records that may be waiting for commit at once, across sessions and
    /// doors: a session that outruns the cluster (fast mode) waits for room instead of
    /// queueing without bound and starving replication.
    pub audit_backlog: usize,
    /// Longest text (statement, command, request line, backend error) kept in an audit
    /// record or an approval request; longer ones are cut, with their length and
    /// SHA-256 recorded beside them.
    pub record_text_max: usize,
    /// Sessions one identity may have open on this node at once, across doors; one
    /// more is refused (Postgres: FATAL 53300), so one client cannot take every
    /// backend connection.
    pub max_sessions_per_identity: usize,
}

impl Default for GateSettings {
    fn default() -> Self {
        GateSettings {
            audit_backlog: 4096,
            record_text_max: record::DEFAULT_RECORD_TEXT_MAX,
            max_sessions_per_identity: 32,
        }
    }
}

/// Parsed policies and the (name, updated_at) stamp they were built from.
/// The parsed set, with the stored list it was parsed from (the same `Arc` while the
/// store's own cache holds) and that list's names and update times.
struct CachedPolicies {
    source: Arc<Vec<portcullis_raft::model::Policy>>,
    stamp: Vec<(String, u64)>,
    set: Arc<PolicySet>,
}

/// What every door of a node shares: the store, the parsed policies and the audit
/// backlog. Built once per node (`node`'s `run`) and handed to each door.
pub struct Gate<S: Store> {
    store: Arc<S>,
    backlog: audit::Backlog,
    settings: GateSettings,
    /// Open sessions per identity subject on this node.
    open_by_identity: Arc<Mutex<HashMap<String, usize>>>,
    /// Parsed policies, rebuilt when the stored ones change. std mutex: never held
    /// across an await.
    policies: Mutex<Option<CachedPolicies>>,
}

// === impl Gate ===

impl<S: Store> Gate<S> {
    pub fn new(store: Arc<S>, settings: GateSettings) -> Self {
        Gate {
            store,
            backlog: audit::Backlog::new(settings.audit_backlog),
            settings,
            open_by_identity: Arc::default(),
            policies: Mutex::new(None),
        }
    }

    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The current policy set. Stored policies were validated when applied; one that
    /// no longer parses is skipped with a warning (it can only deny less, never allow).
    pub fn policies(&self) -> Result<Arc<PolicySet>> {
        let stored = self.store.policies()?;
        let mut cache = self.policies.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.as_ref()
            && Arc::ptr_eq(&c.source, &stored)
        {
            return Ok(c.set.clone());
        }
        let stamp: Vec<(String, u64)> = stored.iter().map(|p| (p.name.clone(), p.updated_at)).collect();
        if let Some(c) = cache.as_mut()
            && c.stamp == stamp
        {
            c.source = stored;
            return Ok(c.set.clone());
        }
        let mut docs = Vec::new();
        for p in stored.iter() {
            match parse(&p.source) {
                Ok(doc) => docs.push(doc),
                Err(e) => tracing::warn!(policy = %p.name, error = %e, "stored policy does not parse; skipped"),
            }
        }
        let set = Arc::new(PolicySet::new(docs));
        *cache = Some(CachedPolicies { source: stored, stamp, set: set.clone() });
        Ok(set)
    }

    /// Wait until every audit record handed to the store has been committed (or has
    /// failed and been logged).
    pub async fn audit_flushed(&self) {
        self.backlog.drained().await;
    }
}

#[cfg(test)]
mod tests;
