//! Policy: the `decide` phase (DESIGN §3). Every door turns what a caller asks for into a
//! protocol-agnostic [`Request`] (resource, protocol, statement kind, tables, text) and
//! asks [`PolicySet::decide`] for a [`Decision`]: allow, deny (with a reason for the
//! client), or hold for review; plus the [`MaskPlan`] to apply to the results. Pure code:
//! no I/O, no clock, no bytes.
//!
//! # Policy files
//!
//! A policy document is YAML, parsed by [`parse`] (unknown fields are errors, and every
//! error names its line and column):
//!
//! ```yaml
//! name: demo                      # required, names the document in audit records
//! rules:                          # required; evaluated all together, order only breaks ties
//!   - name: engineers-read        # optional; audit shows "demo/engineers-read" (else "demo/#1")
//!     match:                      # every field is optional; omitted = matches anything
//!       groups: [engineers]       # caller is in ANY of these groups
//!       resources: [demo, "prod-*"]   # glob on the resource name (exact case)
//!       protocols: [postgres]     # postgres | ssh | http
//!       kinds: [select]           # statement kinds, see below
//!       tables: ["public.*", customers]  # glob; ANY touched table matches ANY pattern
//!       functions: [set_config, "dblink*"] # glob; ANY called function matches ANY pattern
//!       text: "(?i)pg_sleep"      # regex searched in the statement / command / request
//!       json: { "/amount": ">1000", "/currency": EUR }  # HTTP: the JSON body, see [`json`]
//!       missing_where: true       # UPDATE/DELETE without WHERE (false: only with WHERE)
//!       dynamic_sql: true         # calls a function that runs SQL it does not show
//!       writes: true              # may change state (a write, or a volatile function call)
//!       locks_rows: true          # SELECT ... FOR UPDATE / FOR SHARE
//!     action: allow               # allow | deny | review | mask
//!     reason: "..."               # deny and review only; shown to the client
//!     approvers: { groups: [dba], count: 1 }   # review only, required; count ≥ 1 (default 1)
//!     timeout: 5m                 # review only; humantime, > 0 (default 15m)
//!     approval_covers: execution  # review only: execution (default) | statement
//!     mask:                       # mask only; at least one of columns / detectors
//!       columns: [email, ssn, "*password*"]   # glob on result column names (ASCII case ignored)
//!       detectors: [email, credit_card, ssn, api_key, jwt]
//! ```
//!
//! Globs know only `*` (any run of characters, `.` included) and `?` (one character).
//! Lists may not be empty (write nothing to match anything). Kinds are lower-case names
//! from [`KNOWN_KINDS`]: Postgres `select insert update delete merge ddl truncate copy set
//! show transaction call explain grant other`, SSH `exec shell scp sftp forward`, HTTP methods `get head
//! post put patch delete options connect trace` and `websocket` (an upgrade), and `unknown` for what a door could not
//! classify. A request's kind is free text; a kind no rule names (such as `unknown`)
//! matches only rules that omit `kinds` or list it.
//!
//! Tables: a pattern without a `.` matches the table name in any schema (`customers`
//! matches `public.customers`); a request table without a schema is also tried as
//! `public.<name>`, Postgres's default search path, so `deny public.secrets` cannot be
//! dodged by writing `secrets`. Doors should qualify names when they know better.
//!
//! Commands (SSH): every program a command line runs, wherever it hides (pipelines,
//! `;`/`&&`, subshells, `$(...)`, `sh -c '...'`, `sudo`, `env`, `xargs`, `find -exec`),
//! by name (`rm`) and by the path it was written with (`/bin/rm`); globs, ASCII case
//! ignored; a rule matches when any program matches any pattern. `only_commands` is
//! its counterpart for allow rules: it matches when the line runs at least one program
//! and every program matches a pattern (`ls | grep x` fits `[ls, grep]`; `ls; python3`
//! does not); there a bare name means the system's program (`ls`, `/bin/ls`), not a
//! file of that name elsewhere (`./ls`, `/tmp/ls`).
//!
//! Paths (HTTP): a glob on the request's path under the resource (`/v1/orders/*/refund`;
//! `*` also spans `/`), ASCII case kept; the query string is not part of it (match it
//! with `text`, which is `METHOD /path?query`).
//!
//! JSON (HTTP): conditions on the request's JSON body by RFC 6901 pointer, all of which
//! must hold; a body policy cannot read (not JSON, a duplicate key, too large) counts
//! for `deny`/`review`/`mask` rules and against `allow` rules. See [`json`].
//!
//! Functions (Postgres): every function a statement calls, anywhere in it, by the name
//! Postgres's parser resolved (quoting, case and `U&"..."` escapes cannot disguise it,
//! unlike with `text`). Patterns work as for tables; an unqualified call is also tried
//! as `pg_catalog.<name>` and `public.<name>`. A function called from inside another
//! function (or from dynamic SQL) is not visible: deny the outer one.
//!
//! # Decisions
//!
//! Every rule of every document whose `match` fits counts; none short-circuits.
//! - any matching `deny` → **Deny** with the first deny rule's reason (default
//!   `denied by policy rule <rule>`); deny beats everything.
//! - else any matching `review` → **Review**; several combine: approver groups are the
//!   union, approvals needed the maximum, the timeout the minimum, the reason the first's.
//! - else any matching `allow` → **Allow**.
//! - else **Deny** by default: `no policy rule allows <kind> on <resource> for <subject>`.
//!
//! `mask` rules neither allow nor deny: each matching one adds its columns and detectors
//! to the decision's [`MaskPlan`], which applies whenever the statement runs (allowed, or
//! reviewed and approved). A denied decision carries an empty plan.

mod decide;
mod glob;
pub mod json;
mod locate;
mod parse;
mod rule;

use std::time::Duration;

pub use decide::PolicySet;
pub use glob::Glob;
pub use json::JsonBody;
pub use parse::parse;
pub use rule::{Action, ApprovalCovers, Approvers, Match, PolicyDoc, Rule};

pub use crate::mask::MaskPlan;
/// The door a request came through: the one protocol enum of the whole gateway.
pub use portcullis_raft::model::Protocol;

/// Review timeout when a rule names none.
pub const DEFAULT_REVIEW_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Every statement kind a policy file may name in `match.kinds`.
pub const KNOWN_KINDS: &[&str] = &[
    // Postgres
    "select",
    "insert",
    "update",
    "delete",
    "merge",
    "ddl",
    "truncate",
    "copy",
    "set",
    "show",
    "transaction",
    "two_phase",
    "call",
    "explain",
    "grant",
    "vacuum",
    "prepare",
    "listen",
    "lock",
    "do",
    "other",
    // SSH
    "exec",
    "shell",
    "scp",
    "sftp",
    "forward",
    // HTTP methods
    "get",
    "head",
    "post",
    "put",
    "patch",
    "options",
    "connect",
    "trace",
    // HTTP: a WebSocket upgrade (an HTTP/1.1 GET asking for `Upgrade: websocket`)
    "websocket",
    // Any door: could not classify.
    "unknown",
];

/// Who is asking: the verified identity, reduced to what policy reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub subject: String,
    pub groups: Vec<String>,
}

impl From<&crate::identity::Identity> for Who {
    fn from(identity: &crate::identity::Identity) -> Self {
        Who { subject: identity.subject.clone(), groups: identity.groups.clone() }
    }
}

/// One statement, command or HTTP request, as every door describes it to policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The resource name (Postgres: the `dbname` the client asked for).
    pub resource: String,
    pub protocol: Protocol,
    /// Statement kind (`select`, `exec`, `post`, `unknown`, …); free text, matched
    /// ignoring ASCII case.
    pub kind: String,
    /// Tables the statement touches, `schema.table` where known.
    pub tables: Vec<String>,
    /// Functions the statement calls, `schema.name` where written so (Postgres).
    pub functions: Vec<String>,
    /// Programs a command line runs (SSH).
    pub commands: Vec<Command>,
    /// The request's path under the resource (HTTP: `/v1/orders/7/refund`).
    pub path: Option<String>,
    /// The statement, command line or `METHOD path` (+ body), for `match.text`.
    pub text: String,
    /// The request's body read as JSON (HTTP), for `match.json`.
    pub json: JsonBody,
    /// UPDATE or DELETE without a WHERE clause.
    pub missing_where: bool,
    /// It runs SQL it does not show (Postgres: `query_to_xml`, `table_to_xml`, ...).
    pub dynamic_sql: bool,
    /// A row-locking read (`SELECT ... FOR UPDATE / FOR SHARE`, Postgres).
    pub locks_rows: bool,
    /// It may change state: a writing kind, or (Postgres) a call of a function with
    /// side effects, per the backend's catalog.
    pub writes: bool,
}

/// A program a command line runs: its name (`rm`) and the path it was written with
/// (`/bin/rm`, or the name again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub name: String,
    pub path: String,
}

/// Where a program written with a path may be and still count as the system's own.
const SYSTEM_DIRS: &[&str] = &["/bin/", "/usr/bin/", "/sbin/", "/usr/sbin/", "/usr/local/bin/", "/usr/local/sbin/"];

impl Command {
    /// `commands`: the program by its name wherever it lives (`rm` fits `/tmp/x/rm`:
    /// a deny by name cannot be dodged by a copy), or by its path.
    pub(crate) fn matches(&self, glob: &Glob) -> bool {
        glob.matches_ignore_ascii_case(&self.name) || glob.matches_ignore_ascii_case(&self.path)
    }

    /// `only_commands`: a bare-name pattern fits only the system's program (looked up
    /// on the PATH, or written with a system directory), so `ls` does not allow `./ls`
    /// or `/tmp/ls`; a pattern with a `/` fits the path as written.
    pub(crate) fn is_the_listed(&self, glob: &Glob) -> bool {
        if glob.as_str().contains('/') {
            return glob.matches_ignore_ascii_case(&self.path);
        }
        let systems = self.path == self.name
            || SYSTEM_DIRS.iter().any(|d| self.path.strip_prefix(d).is_some_and(|rest| rest == self.name));
        systems && glob.matches_ignore_ascii_case(&self.name)
    }
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// The rule that decided (`doc/rule-name` or `doc/#n`); `None` for the default deny.
    pub rule: Option<String>,
    /// Masks to apply to the results if the request runs; empty when denied.
    pub masks: MaskPlan,
}

/// Allow, deny, or hold for review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// `reason` is shown to the client.
    Deny {
        reason: String,
    },
    /// Hold until `approvals_needed` members of `approver_groups` approve, or `timeout`.
    Review {
        approver_groups: Vec<String>,
        approvals_needed: u32,
        timeout: Duration,
        reason: String,
        /// What one approval releases.
        covers: ApprovalCovers,
    },
}

#[cfg(test)]
mod tests;
