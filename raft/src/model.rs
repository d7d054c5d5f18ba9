//! The replicated data model: what the state machine stores.
//!
//! Every type here is part of the Raft log and of snapshots, so it is plain serde data
//! with no behaviour beyond small helpers. Times are milliseconds since the Unix epoch,
//! stamped by whoever submits a command, so apply stays deterministic on every node.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// The current wall-clock time in milliseconds; used when stamping commands.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Which front door serves a resource; also what policy's `match.protocols` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Postgres,
    Ssh,
    Http,
}

// === impl Protocol ===

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Postgres, Protocol::Ssh, Protocol::Http];

    /// The name used in policy files, resource files and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Postgres => "postgres",
            Protocol::Ssh => "ssh",
            Protocol::Http => "http",
        }
    }

    /// Parses a name as [`as_str`](Self::as_str) writes it; `None` for anything unknown.
    pub fn from_name(name: &str) -> Option<Self> {
        Protocol::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a statement's audit record must be committed relative to relaying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuditMode {
    /// Nothing is relayed (writes) or released (read results) before its record is committed.
    #[default]
    Strict,
    /// Records are batched and committed asynchronously.
    Fast,
}

/// A backend secret sealed with the cluster data key (AES-256-GCM).
///
/// Only ciphertext ever enters the log, the state machine, snapshots and backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// Base64 of the 12-byte nonce.
    pub nonce: String,
    /// Base64 of ciphertext plus tag.
    pub ciphertext: String,
}

/// The cluster's SSH authority: one CA key that certifies users and the gateway's host
/// key, and that host key, which every node's SSH door presents (so one
/// `@cert-authority` line in a client's known_hosts trusts every node).
///
/// Made once by the first node that serves and finds none ([`Op::SetSshAuthority`]:
/// first writer wins); the private keys are sealed with the cluster data key like
/// resource secrets. Not part of backups: it belongs to the cluster, like its membership.
///
/// [`Op::SetSshAuthority`]: crate::command::Op::SetSshAuthority
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshAuthority {
    /// The CA's private key, OpenSSH format, sealed.
    pub ca_key: SealedSecret,
    /// The CA's public key, an OpenSSH line (`ssh-ed25519 AAAA...`).
    pub ca_public_key: String,
    /// The gateway's host key, OpenSSH format, sealed.
    pub host_key: SealedSecret,
    /// The host key's public half, an OpenSSH line.
    pub host_public_key: String,
    pub created_at: Millis,
    /// The node that made it.
    pub created_by: u64,
}

/// A backend the gateway guards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub name: String,
    pub protocol: Protocol,
    /// Backend address, `host:port` or a URL for HTTP.
    pub address: String,
    /// Backend user the gateway logs in as.
    #[serde(default)]
    pub username: Option<String>,
    /// Backend credential, sealed. Never returned by the admin API.
    #[serde(default)]
    pub secret: Option<SealedSecret>,
    #[serde(default)]
    pub audit: AuditMode,
    /// Free-form protocol options (database name, TLS mode, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub updated_at: Millis,
    /// Backend logins for identity groups, tried in order before `username`/`secret`:
    /// the first whose groups the caller is in is used (defense in depth: the backend
    /// enforces its own grants per group).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logins: Vec<GroupLogin>,
}

/// A backend login for the members of some identity groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupLogin {
    pub groups: Vec<String>,
    pub username: String,
    /// Sealed like the resource's secret; never returned by the API.
    #[serde(default)]
    pub secret: Option<SealedSecret>,
}

/// A named policy document. Its rules are interpreted by the proxy's decision point;
/// the store keeps the validated source so `policy list` shows what was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    /// The policy as applied (YAML or JSON text).
    pub source: String,
    pub updated_at: Millis,
    /// Who applied it (identity subject).
    #[serde(default)]
    pub updated_by: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Expired,
}

impl ApprovalStatus {
    pub fn is_final(self) -> bool {
        !matches!(self, ApprovalStatus::Pending)
    }
}

/// One approver's vote on an approval request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalVote {
    pub approver: String,
    pub approve: bool,
    #[serde(default)]
    pub reason: String,
    pub at: Millis,
}

/// A held statement, command or request waiting for a human.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    /// Identity subject of the requester; they may never decide their own request.
    pub requester: String,
    pub resource: String,
    pub session_id: String,
    /// What is held (statement text, command line, request line).
    pub action: String,
    /// Groups whose members may decide.
    pub approver_groups: Vec<String>,
    /// Approvals needed before the request is approved; a single denial denies.
    pub approvals_needed: u32,
    pub votes: Vec<ApprovalVote>,
    pub status: ApprovalStatus,
    #[serde(default)]
    pub reason: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    /// Node the requester is connected to.
    pub node: u64,
    /// Set when nobody waits for the decision (HTTP `Prefer: respond-async`): the
    /// approval covers exactly the request with this digest, repeated by the requester
    /// once approved, through any node (so no node holds it, and the sweep does not
    /// withdraw it when its node goes away).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_digest: Option<String>,
    /// When the repeated request used it (`Op::UseApproval`): it covers one request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<Millis>,
}

impl Approval {
    /// When the decision was made (its last vote), if it was.
    pub fn decided_at(&self) -> Option<Millis> {
        if self.status == ApprovalStatus::Pending { None } else { self.votes.last().map(|v| v.at) }
    }

    /// Until when an approved request may be repeated (`request_digest`): as long after
    /// the decision as the request could wait for it.
    pub fn usable_until(&self) -> Option<Millis> {
        let wait = self.expires_at.saturating_sub(self.created_at);
        self.decided_at().map(|at| at.saturating_add(wait))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Open,
    Closed,
    Failed,
    /// The node serving it ended without closing it (killed, crashed, or removed from
    /// the cluster): closed on its behalf (`liveness`), its last statement's result may
    /// be missing.
    Lost,
}

/// One entry of the session index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub identity: String,
    pub resource: String,
    pub protocol: Protocol,
    pub node: u64,
    pub client_addr: String,
    pub started_at: Millis,
    #[serde(default)]
    pub ended_at: Option<Millis>,
    pub status: SessionStatus,
    /// Number of events recorded so far; the next event gets this sequence number.
    /// Filled in when read (`StateView::session`); the stored record keeps 0.
    #[serde(default)]
    pub events: u64,
}

/// One recorded event of a session (statement, decision, result summary...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub session_id: String,
    /// Position in the session, assigned by the state machine at apply.
    #[serde(default)]
    pub seq: u64,
    pub at: Millis,
    pub kind: String,
    #[serde(default)]
    pub detail: Detail,
}

/// An event's detail: JSON kept as the text it was written as. Audit events pass through
/// every node (log append, replication, apply, snapshots) but only people and tools read
/// their detail, so it is never parsed into a tree on the way; building and freeing that
/// tree cost about a tenth of a follower's CPU under audit load (BENCHMARKS.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Detail(Box<serde_json::value::RawValue>);

impl Detail {
    /// `value` as JSON text, written straight from its type (no tree in between).
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Self {
        // Serializing plain data cannot fail; `null` is the unreachable fallback.
        Detail(serde_json::value::to_raw_value(value).unwrap_or_default())
    }

    /// The JSON text.
    pub fn as_json(&self) -> &str {
        self.0.get()
    }
}

impl From<serde_json::Value> for Detail {
    fn from(value: serde_json::Value) -> Self {
        // Serializing a Value cannot fail; `null` is the unreachable fallback.
        Detail(serde_json::value::to_raw_value(&value).unwrap_or_default())
    }
}

/// `null`, as for an event recorded without detail.
impl Default for Detail {
    fn default() -> Self {
        Detail(Box::default())
    }
}

impl PartialEq for Detail {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// Filter for listing sessions; every field narrows the result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFilter {
    pub identity: Option<String>,
    pub resource: Option<String>,
    pub since: Option<Millis>,
    /// Started at or before this (the newest first from there: pages of older sessions).
    pub until: Option<Millis>,
    pub limit: Option<usize>,
}
