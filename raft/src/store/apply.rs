//! Apply of one [`Command`] to the state machine: the rules of the data model.
//!
//! Pure with respect to its inputs (the overlay and the command), so every node reaches
//! the same state. Refusals are values (`Response::Rejected`), never errors: a refused
//! command is still a committed log entry and must apply the same way everywhere.

use serde::{Deserialize, Serialize};

use super::keys;
use super::overlay::Overlay;
use crate::command::{Command, Op, Response};
use crate::error::Result;
use crate::model::{Approval, ApprovalStatus, ApprovalVote, Event, Millis, Session, SessionStatus};

/// What an apply batch changed, for notifications, and what it knows across applies.
#[derive(Debug, Default)]
pub struct Changes {
    pub approvals: bool,
    /// Resources or policies were written (readers' caches must read again).
    pub config: bool,
    /// Next event seq of sessions appended to lately, so an append need not look up the
    /// session's last event (a reverse scan in sled). The state machine keeps it between
    /// applies; anything that removes or replaces events clears it.
    pub next_seqs: std::collections::HashMap<String, u64>,
}

/// More sessions than this in the seq cache: start over (each entry is only a shortcut).
const MAX_CACHED_SEQS: usize = 100_000;

/// The remembered answer to a request id (idempotent apply).
#[derive(Serialize, Deserialize)]
struct Remembered {
    at: Millis,
    response: Response,
}

pub fn apply_command(tx: &mut Overlay<'_>, cmd: Command, changes: &mut Changes) -> Result<Response> {
    let request_key = keys::named(keys::REQUEST, &cmd.request_id);
    if let Some(seen) = tx.get::<Remembered>(&request_key)? {
        return Ok(seen.response);
    }
    let response = apply_op(tx, cmd.op, changes)?;
    tx.put(request_key, &Remembered { at: cmd.at, response: response.clone() })?;
    tx.put_raw(keys::request_by_time(cmd.at, &cmd.request_id), vec![]);
    Ok(response)
}

fn rejected(reason: impl Into<String>) -> Result<Response> {
    Ok(Response::Rejected { reason: reason.into() })
}

fn apply_op(tx: &mut Overlay<'_>, op: Op, changes: &mut Changes) -> Result<Response> {
    match op {
        Op::PutResource { resource } => {
            changes.config = true;
            tx.put(keys::named(keys::RESOURCE, &resource.name), &resource)?;
            Ok(Response::Done)
        }
        Op::DeleteResource { name } => {
            let key = keys::named(keys::RESOURCE, &name);
            if tx.get_raw(&key)?.is_none() {
                return rejected(format!("no resource named {name}"));
            }
            changes.config = true;
            tx.remove(key);
            Ok(Response::Done)
        }
        Op::PutPolicy { policy } => {
            changes.config = true;
            tx.put(keys::named(keys::POLICY, &policy.name), &policy)?;
            Ok(Response::Done)
        }
        Op::DeletePolicy { name } => {
            let key = keys::named(keys::POLICY, &name);
            if tx.get_raw(&key)?.is_none() {
                return rejected(format!("no policy named {name}"));
            }
            changes.config = true;
            tx.remove(key);
            Ok(Response::Done)
        }
        Op::RequestApproval { mut approval } => {
            let key = keys::named(keys::APPROVAL, &approval.id);
            if let Some(existing) = tx.get::<Approval>(&key)? {
                return Ok(Response::Approval { approval: Box::new(existing) });
            }
            approval.status = ApprovalStatus::Pending;
            approval.votes.clear();
            approval.used_at = None;
            tx.put_raw(keys::approval_by_time(approval.created_at, &approval.id), vec![]);
            put_approval(tx, &approval)?;
            changes.approvals = true;
            Ok(Response::Approval { approval: Box::new(approval) })
        }
        Op::DecideApproval { id, approver, approver_groups, approve, reason, at } => {
            decide(tx, &id, approver, &approver_groups, approve, reason, at, changes)
        }
        Op::ExpireApproval { id, at } => {
            let key = keys::named(keys::APPROVAL, &id);
            let Some(mut approval) = tx.get::<Approval>(&key)? else {
                return rejected(format!("no approval {id}"));
            };
            if approval.status == ApprovalStatus::Pending && at >= approval.expires_at {
                approval.status = ApprovalStatus::Expired;
                approval.reason = "no decision before the approval deadline".into();
                put_approval(tx, &approval)?;
                changes.approvals = true;
            }
            Ok(Response::Approval { approval: Box::new(approval) })
        }
        Op::WithdrawApproval { id, reason, .. } => {
            let key = keys::named(keys::APPROVAL, &id);
            let Some(mut approval) = tx.get::<Approval>(&key)? else {
                return rejected(format!("no approval {id}"));
            };
            if approval.status == ApprovalStatus::Pending {
                approval.status = ApprovalStatus::Expired;
                approval.reason = format!(
                    "withdrawn: {}",
                    reason.as_deref().unwrap_or("the requester canceled the statement before a decision")
                );
                put_approval(tx, &approval)?;
                changes.approvals = true;
            }
            Ok(Response::Approval { approval: Box::new(approval) })
        }
        Op::UseApproval { id, requester, request_digest, at } => {
            use_approval(tx, &id, &requester, &request_digest, at, changes)
        }
        Op::OpenSession { mut session } => {
            let key = keys::named(keys::SESSION, &session.id);
            // Counters and status belong to the state machine, not to the submitter.
            session.events = 0;
            session.status = SessionStatus::Open;
            session.ended_at = None;
            if tx.get_raw(&key)?.is_some() {
                return Ok(Response::Done);
            }
            tx.put_raw(keys::index(keys::BY_IDENTITY, &session.identity, session.started_at, &session.id), vec![]);
            tx.put_raw(keys::index(keys::BY_RESOURCE, &session.resource, session.started_at, &session.id), vec![]);
            tx.put_raw(keys::by_time(session.started_at, &session.id), vec![]);
            tx.put(key, &session)?;
            Ok(Response::Done)
        }
        Op::AppendEvents { events } => append_events(tx, events, &mut changes.next_seqs),
        Op::CloseSession { id, at, status } => {
            changes.next_seqs.remove(&id);
            let key = keys::named(keys::SESSION, &id);
            let Some(mut session) = tx.get::<Session>(&key)? else {
                return rejected(format!("no session {id}"));
            };
            if session.status == SessionStatus::Open {
                session.status = status;
                session.ended_at = Some(at);
                tx.put(key, &session)?;
            }
            Ok(Response::Done)
        }
        Op::PruneSessions { before } => {
            changes.next_seqs.clear();
            prune(tx, before)
        }
        Op::ForgetRequests { before } => forget_requests(tx, before),
        Op::SetSshAuthority { authority } => {
            if tx.get_raw(keys::SSH_AUTHORITY)?.is_none() {
                tx.put(keys::SSH_AUTHORITY.to_vec(), &authority)?;
            }
            Ok(Response::Done)
        }
        Op::RestoreStage { restore_id, part, records } => super::restore::stage(tx, &restore_id, part, &records),
        Op::RestoreCommit { restore_id, parts, sha256 } => {
            changes.next_seqs.clear();
            super::restore::commit(tx, &restore_id, parts, &sha256, changes)
        }
    }
}

/// See [`Op::UseApproval`]: each refusal names the reason, so the requester knows what
/// to do (wait, ask again, or stop).
fn use_approval(
    tx: &mut Overlay<'_>,
    id: &str,
    requester: &str,
    request_digest: &str,
    at: Millis,
    changes: &mut Changes,
) -> Result<Response> {
    let key = keys::named(keys::APPROVAL, id);
    let Some(mut approval) = tx.get::<Approval>(&key)? else {
        return rejected(format!("no approval {id}"));
    };
    if approval.requester != requester {
        return rejected(format!("approval {id} was requested by someone else"));
    }
    if approval.request_digest.as_deref() != Some(request_digest) {
        return rejected(format!(
            "approval {id} covers another request (method, path, query and body must be the same)"
        ));
    }
    if approval.status == ApprovalStatus::Pending {
        return rejected(format!("approval {id} is not decided yet; repeat the request once it is approved"));
    }
    if approval.status != ApprovalStatus::Approved {
        return rejected(format!("approval {id} is {}", status_word(approval.status)));
    }
    if approval.used_at.is_some() {
        return rejected(format!("approval {id} was already used; it covers one request"));
    }
    if approval.usable_until().is_some_and(|until| at > until) {
        return rejected(format!("approval {id} was not used in time after its decision; ask again"));
    }
    approval.used_at = Some(at);
    put_approval(tx, &approval)?;
    changes.approvals = true;
    Ok(Response::Approval { approval: Box::new(approval) })
}

#[allow(clippy::too_many_arguments)]
fn decide(
    tx: &mut Overlay<'_>,
    id: &str,
    approver: String,
    approver_groups: &[String],
    approve: bool,
    reason: String,
    at: Millis,
    changes: &mut Changes,
) -> Result<Response> {
    let key = keys::named(keys::APPROVAL, id);
    let Some(mut approval) = tx.get::<Approval>(&key)? else {
        return rejected(format!("no approval {id}"));
    };
    if approval.status.is_final() {
        return rejected(format!("approval {id} is already {}", status_word(approval.status)));
    }
    if at >= approval.expires_at {
        approval.status = ApprovalStatus::Expired;
        approval.reason = "no decision before the approval deadline".into();
        put_approval(tx, &approval)?;
        changes.approvals = true;
        return rejected(format!("approval {id} expired"));
    }
    if approver == approval.requester {
        return rejected(format!("{approver} requested {id} and may not decide their own request"));
    }
    if !approval.approver_groups.iter().any(|g| approver_groups.contains(g)) {
        return rejected(format!(
            "{approver} may not decide {id}: membership in one of [{}] required",
            approval.approver_groups.join(", ")
        ));
    }
    if approval.votes.iter().any(|v| v.approver == approver) {
        return rejected(format!("{approver} has already voted on {id}"));
    }
    approval.votes.push(ApprovalVote { approver, approve, reason: reason.clone(), at });
    if !approve {
        approval.status = ApprovalStatus::Denied;
        approval.reason = reason;
    } else {
        let approvals = approval.votes.iter().filter(|v| v.approve).count();
        if u32::try_from(approvals).unwrap_or(u32::MAX) >= approval.approvals_needed.max(1) {
            approval.status = ApprovalStatus::Approved;
            approval.reason = reason;
        }
    }
    put_approval(tx, &approval)?;
    changes.approvals = true;
    Ok(Response::Approval { approval: Box::new(approval) })
}

/// Store `approval` and keep the pending index (`keys::PENDING_APPROVAL`) in step.
pub(super) fn put_approval(tx: &mut Overlay<'_>, approval: &Approval) -> Result<()> {
    let pending = keys::named(keys::PENDING_APPROVAL, &approval.id);
    if approval.status == ApprovalStatus::Pending {
        tx.put_raw(pending, vec![]);
    } else {
        tx.remove(pending);
    }
    tx.put(keys::named(keys::APPROVAL, &approval.id), approval)
}

fn status_word(status: ApprovalStatus) -> &'static str {
    match status {
        ApprovalStatus::Pending => "pending",
        ApprovalStatus::Approved => "approved",
        ApprovalStatus::Denied => "denied",
        ApprovalStatus::Expired => "expired",
    }
}

fn append_events(
    tx: &mut Overlay<'_>,
    events: Vec<Event>,
    next_seqs: &mut std::collections::HashMap<String, u64>,
) -> Result<Response> {
    // Check that every session exists first, so a batch is all-or-nothing. A session's
    // next seq is one past its last event: the events table is its own counter, so
    // appending never rewrites the session record.
    let mut runs: Vec<(String, u64, Vec<Event>)> = Vec::new();
    for event in &events {
        if runs.iter().any(|(id, _, _)| *id == event.session_id) {
            continue;
        }
        if tx.get_raw(&keys::named(keys::SESSION, &event.session_id))?.is_none() {
            return rejected(format!("no session {}", event.session_id));
        }
        let first = match next_seqs.get(&event.session_id) {
            Some(next) => *next,
            None => next_event_seq(tx, &event.session_id)?,
        };
        runs.push((event.session_id.clone(), first, Vec::new()));
    }
    let mut seqs = Vec::with_capacity(events.len());
    for mut event in events {
        let Some((_, first, run)) = runs.iter_mut().find(|(id, _, _)| *id == event.session_id) else {
            return rejected(format!("no session {}", event.session_id));
        };
        event.seq = first.saturating_add(run.len() as u64);
        seqs.push(event.seq);
        run.push(event);
    }
    // One record per session: its events of this command, in order.
    for (session, first, run) in runs {
        let next = first.saturating_add(run.len() as u64);
        tx.put(keys::event_run(&session, first, next.saturating_sub(1)), &run)?;
        if next_seqs.len() >= MAX_CACHED_SEQS {
            next_seqs.clear();
        }
        next_seqs.insert(session, next);
    }
    Ok(Response::Appended { seqs })
}

/// One past the seq of the session's last event (0 for none).
pub(super) fn next_event_seq(tx: &Overlay<'_>, session: &str) -> Result<u64> {
    Ok(tx
        .last_key(&keys::event_prefix(session))?
        .and_then(|key| keys::event_run_seqs(&key))
        .map_or(0, |(_, last)| last.saturating_add(1)))
}

fn prune(tx: &mut Overlay<'_>, before: Millis) -> Result<Response> {
    let mut doomed = Vec::new();
    for key in tx.keys(keys::BY_TIME) {
        let key = key?;
        let Some((started, id)) = keys::session_from_index(&key, keys::BY_TIME.len()) else {
            continue;
        };
        if started >= before {
            break;
        }
        if let Some(session) = tx.get::<Session>(&keys::named(keys::SESSION, &id))?
            && session.status != SessionStatus::Open
            && session.ended_at.is_some_and(|end| end < before)
        {
            doomed.push(session);
        }
    }
    let mut event_keys = Vec::new();
    for session in &doomed {
        for key in tx.keys(&keys::event_prefix(&session.id)) {
            event_keys.push(key?);
        }
    }
    for key in event_keys {
        tx.remove(key);
    }
    for s in &doomed {
        tx.remove(keys::index(keys::BY_IDENTITY, &s.identity, s.started_at, &s.id));
        tx.remove(keys::index(keys::BY_RESOURCE, &s.resource, s.started_at, &s.id));
        tx.remove(keys::by_time(s.started_at, &s.id));
        tx.remove(keys::named(keys::SESSION, &s.id));
    }
    prune_approvals(tx, before)?;
    Ok(Response::Pruned { sessions: u64::try_from(doomed.len()).unwrap_or(u64::MAX) })
}

/// Retention for approvals: drop the decided ones created before `before`, reading only
/// those (and the few old ones still pending, which stay until they end).
fn prune_approvals(tx: &mut Overlay<'_>, before: Millis) -> Result<()> {
    let mut doomed = Vec::new();
    for key in tx.keys(keys::APPROVAL_BY_TIME) {
        let key = key?;
        let fixed = keys::APPROVAL_BY_TIME.len();
        let Some(created) = key.get(fixed..fixed + 8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes) else {
            continue;
        };
        if created >= before {
            break;
        }
        let id = String::from_utf8_lossy(key.get(fixed + 8..).unwrap_or_default()).into_owned();
        match tx.get::<Approval>(&keys::named(keys::APPROVAL, &id))? {
            Some(approval) if !approval.status.is_final() => {}
            _ => doomed.push((key, id)),
        }
    }
    for (key, id) in doomed {
        tx.remove(keys::named(keys::APPROVAL, &id));
        tx.remove(key);
    }
    Ok(())
}

/// Drop the remembered answers of requests submitted before `before`, oldest first,
/// reading only those.
fn forget_requests(tx: &mut Overlay<'_>, before: Millis) -> Result<Response> {
    let mut old = Vec::new();
    for key in tx.keys(keys::REQUEST_BY_TIME) {
        let key = key?;
        let at_end = keys::REQUEST_BY_TIME.len() + 8;
        let Some(at) = key.get(keys::REQUEST_BY_TIME.len()..at_end).and_then(|b| b.try_into().ok()) else {
            continue;
        };
        if u64::from_be_bytes(at) >= before {
            break;
        }
        old.push(key);
    }
    for key in old {
        let id = String::from_utf8_lossy(key.get(keys::REQUEST_BY_TIME.len() + 8..).unwrap_or_default()).into_owned();
        tx.remove(keys::named(keys::REQUEST, &id));
        tx.remove(key);
    }
    Ok(Response::Done)
}

#[cfg(test)]
mod tests;
