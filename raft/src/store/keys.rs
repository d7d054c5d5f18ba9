//! Key layout of the state machine tree.
//!
//! One sled tree holds the whole state machine, so a snapshot or backup is one ordered
//! scan (`capture`) and a crash recovery one tree rebuilt from a snapshot (`recovery`).
//! Keys are a short table prefix plus fields; numbers are big-endian so byte order is
//! numeric order.

pub const LAST_APPLIED: &[u8] = b"m/last_applied";
pub const LAST_MEMBERSHIP: &[u8] = b"m/last_membership";

pub const RESOURCE: &[u8] = b"r/";
pub const POLICY: &[u8] = b"p/";
pub const APPROVAL: &[u8] = b"a/";
/// Pending approvals, `ap/<id>` (empty value): the once-a-second sweep and
/// `approvals list --pending` read only these, not every approval ever made.
pub const PENDING_APPROVAL: &[u8] = b"ap/";
/// Approvals by creation time, `at/<created be><id>` (empty value): retention drops the
/// old ones reading only those.
pub const APPROVAL_BY_TIME: &[u8] = b"at/";

/// `at/<created be><id>`.
pub fn approval_by_time(created: u64, id: &str) -> Vec<u8> {
    let mut k = APPROVAL_BY_TIME.to_vec();
    k.extend_from_slice(&created.to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}
pub const SESSION: &[u8] = b"s/";
pub const EVENT: &[u8] = b"e/";
pub const BY_IDENTITY: &[u8] = b"xi/";
pub const BY_RESOURCE: &[u8] = b"xr/";
pub const BY_TIME: &[u8] = b"xt/";
pub const REQUEST: &[u8] = b"q/";
/// Remembered request ids by submission time, `qt/<at be><request id>`: forgetting the
/// old ones reads only those.
pub const REQUEST_BY_TIME: &[u8] = b"qt/";
/// The cluster's SSH authority (one record; not backed up, not restored).
pub const SSH_AUTHORITY: &[u8] = b"k/ssh_authority";
/// The tables a restore fills, which must all be empty before it (it never merges).
pub const RESTORE_TARGET: [&[u8]; 5] = [RESOURCE, POLICY, APPROVAL, SESSION, EVENT];

/// Parts of a restore in progress, invisible to readers until the restore commits.
pub const RESTORE_PART: &[u8] = b"t/";

/// Part `part` of restore `restore`: `t/<restore>\0<part be>`.
pub fn restore_part(restore: &str, part: u64) -> Vec<u8> {
    let mut k = named(RESTORE_PART, restore);
    k.push(0);
    k.extend_from_slice(&part.to_be_bytes());
    k
}

/// `prefix` + `name`.
pub fn named(prefix: &[u8], name: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// A run of one session's events with consecutive seqs, stored as one record: the events
/// one `AppendEvents` command added to the session (a statement's record and the result
/// riding along with it), so an append costs one write per session, not one per event.
/// `e/<session>\0<first seq be><last seq be>`; the value is the events as a JSON array.
pub fn event_run(session: &str, first: u64, last: u64) -> Vec<u8> {
    let mut k = event_prefix(session);
    k.extend_from_slice(&first.to_be_bytes());
    k.extend_from_slice(&last.to_be_bytes());
    k
}

pub fn event_prefix(session: &str) -> Vec<u8> {
    let mut k = named(EVENT, session);
    k.push(0);
    k
}

/// The first and last seq of an event run key.
pub fn event_run_seqs(key: &[u8]) -> Option<(u64, u64)> {
    let at = key.len().checked_sub(16)?;
    let first = u64::from_be_bytes(key.get(at..at + 8)?.try_into().ok()?);
    let last = u64::from_be_bytes(key.get(at + 8..)?.try_into().ok()?);
    Some((first, last))
}

/// Secondary index entry `<prefix><field>\0<started be><session>`; the value is empty.
pub fn index(prefix: &[u8], field: &str, started: u64, session: &str) -> Vec<u8> {
    let mut k = index_prefix(prefix, field);
    k.extend_from_slice(&started.to_be_bytes());
    k.extend_from_slice(session.as_bytes());
    k
}

pub fn index_prefix(prefix: &[u8], field: &str) -> Vec<u8> {
    let mut k = named(prefix, field);
    k.push(0);
    k
}

/// `qt/<at be><request id>`.
pub fn request_by_time(at: u64, request_id: &str) -> Vec<u8> {
    let mut k = REQUEST_BY_TIME.to_vec();
    k.extend_from_slice(&at.to_be_bytes());
    k.extend_from_slice(request_id.as_bytes());
    k
}

/// Time index entry `xt/<started be><session>`.
pub fn by_time(started: u64, session: &str) -> Vec<u8> {
    let mut k = BY_TIME.to_vec();
    k.extend_from_slice(&started.to_be_bytes());
    k.extend_from_slice(session.as_bytes());
    k
}

/// Session id from an index key whose fixed part is `fixed_len` bytes long, followed by
/// 8 bytes of start time.
pub fn session_from_index(key: &[u8], fixed_len: usize) -> Option<(u64, String)> {
    let rest = key.get(fixed_len..)?;
    let (time, id) = rest.split_at_checked(8)?;
    let time = u64::from_be_bytes(time.try_into().ok()?);
    Some((time, String::from_utf8(id.to_vec()).ok()?))
}
