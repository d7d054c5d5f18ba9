//! Ending what nobody else will: overdue approvals, and what a vanished node left behind.
//!
//! A node closes its own sessions and ends its own holds (expiring or withdrawing their
//! approvals) as they end. A node that is killed, crashes or is cut off cannot, so
//! without these sweeps its sessions would stay "open" in the index forever and
//! approvers would keep seeing (and could approve) requests for statements that can no
//! longer run:
//!
//! - The leader expires pending approvals past their deadline, once a second, and once
//!   a minute forgets request ids too old to be retried (`REQUEST_MEMORY`).
//! - At start, once serving, a node closes the sessions it had open before (status
//!   `lost`): its process ended, and their client connections with it.
//! - The leader withdraws pending approvals held on a node it has not heard from for
//!   [`unreachable_after`] (or that is no longer a member). That node's lease ran out
//!   long before (a follower renews only by applying the leader's log), and a node
//!   without its lease ends its holds without running them, so nothing it holds can run
//!   any more. Withdrawing is always safe: a statement runs only on an approval, and a
//!   withdrawn approval is final.
//! - The leader closes (`lost`) the sessions of nodes that are no longer members, when
//!   it becomes leader and whenever the membership changes. A member that is merely down
//!   keeps its sessions open until it restarts (the first rule) or is removed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;
use tokio_util::sync::CancellationToken;

use crate::command::{Command, Op, REQUEST_MEMORY};
use crate::model::{Approval, Millis, Session, SessionStatus, now_millis};
use crate::node_core::NodeCore;

/// How long the leader goes without an answer from a node before it withdraws the
/// approvals held there: five leases, and never under five seconds.
pub(crate) fn unreachable_after(lease: Duration) -> Duration {
    (lease * 5).max(Duration::from_secs(5))
}

pub(crate) fn spawn(core: Arc<NodeCore>, shutdown: CancellationToken) {
    tokio::spawn(close_sessions_from_before_start(core.clone(), now_millis(), shutdown.clone()));
    tokio::spawn(sweep_as_leader(core, shutdown));
}

/// Sessions this node had open before `started_at` (it restarted), once it serves.
async fn close_sessions_from_before_start(core: Arc<NodeCore>, started_at: Millis, shutdown: CancellationToken) {
    let mut serving = core.lease.serving();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            ready = serving.wait_for(|s| *s) => if ready.is_err() { return },
        }
        let stale = match open_sessions(&core).await {
            Ok(open) => own_sessions_from_before(open, core.id, started_at),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list open sessions to close those from before the restart");
                Vec::new()
            }
        };
        if close_lost(&core, &stale, "this node restarted").await {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Once a second on the leader: expire overdue approvals and withdraw those held on
/// unreachable or removed nodes; on becoming leader and on membership changes, close
/// the sessions of removed nodes.
async fn sweep_as_leader(core: Arc<NodeCore>, shutdown: CancellationToken) {
    let limit = unreachable_after(core.settings.timing.lease);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // When this node became leader: a peer not heard from since is counted from then.
    let mut leader_since: Option<Instant> = None;
    // The membership whose removed nodes' sessions were closed; None: not done yet.
    let mut swept_members: Option<BTreeSet<u64>> = None;
    let mut ticks: u64 = 0;
    loop {
        ticks = ticks.wrapping_add(1);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let metrics = core.raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader || !core.is_serving() {
            leader_since = None;
            swept_members = None;
            continue;
        }
        let since = *leader_since.get_or_insert_with(Instant::now);
        let members: BTreeSet<u64> = metrics.membership_config.membership().nodes().map(|(id, _)| *id).collect();
        let silent: BTreeSet<u64> = members
            .iter()
            .copied()
            .filter(|&id| id != core.id)
            .filter(|&id| core.peers.last_answer(id).map_or(since, |at| at.max(since)).elapsed() >= limit)
            .collect();

        match core.view.approvals(true) {
            Ok(pending) => {
                for (approval, op) in approvals_to_end(&pending, now_millis(), core.id, &members, &silent) {
                    match crate::forward::write(&core, Command::new(op)).await {
                        Ok(_) => {
                            tracing::info!(approval = %approval.id, node = approval.node, "ended a pending approval nobody else will")
                        }
                        Err(e) => {
                            tracing::warn!(approval = %approval.id, error = %e, "ending a pending approval failed; will retry")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list pending approvals"),
        }

        if ticks.is_multiple_of(60) {
            let memory = u64::try_from(REQUEST_MEMORY.as_millis()).unwrap_or(u64::MAX);
            let op = Op::ForgetRequests { before: now_millis().saturating_sub(memory) };
            if let Err(e) = crate::forward::write(&core, Command::new(op)).await {
                tracing::warn!(error = %e, "forgetting old request ids failed; will retry");
            }
        }

        if swept_members.as_ref() != Some(&members) {
            let done = match open_sessions(&core).await {
                Ok(open) => {
                    close_lost(&core, &sessions_of_removed_nodes(open, &members), "its node left the cluster").await
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list open sessions");
                    false
                }
            };
            if done {
                swept_members = Some(members);
            }
        }
    }
}

/// Every open session: a scan of all session records, so off the async workers.
async fn open_sessions(core: &NodeCore) -> crate::error::Result<Vec<Session>> {
    let view = core.view.clone();
    tokio::task::spawn_blocking(move || view.open_sessions())
        .await
        .map_err(|e| crate::error::Error::Fatal(format!("session scan task: {e}")))?
}

/// Close `sessions` as lost; true if every one was closed.
async fn close_lost(core: &NodeCore, sessions: &[Session], why: &str) -> bool {
    let mut all = true;
    for session in sessions {
        let op = Op::CloseSession { id: session.id.clone(), at: now_millis(), status: SessionStatus::Lost };
        match crate::forward::write(core, Command::new(op)).await {
            Ok(_) => tracing::info!(session = %session.id, node = session.node, "closed a session as lost: {why}"),
            Err(e) => {
                tracing::warn!(session = %session.id, error = %e, "closing a lost session failed; will retry");
                all = false;
            }
        }
    }
    all
}

fn own_sessions_from_before(open: Vec<Session>, me: u64, started_at: Millis) -> Vec<Session> {
    open.into_iter().filter(|s| s.node == me && s.started_at < started_at).collect()
}

fn sessions_of_removed_nodes(open: Vec<Session>, members: &BTreeSet<u64>) -> Vec<Session> {
    open.into_iter().filter(|s| !members.contains(&s.node)).collect()
}

/// What ends each pending approval nobody else will end: past its deadline, expire it;
/// held on a removed node or one silent too long, withdraw it with the reason. The
/// leader's own holds end by themselves before their deadline.
fn approvals_to_end<'a>(
    pending: &'a [Approval],
    now: Millis,
    me: u64,
    members: &BTreeSet<u64>,
    silent: &BTreeSet<u64>,
) -> Vec<(&'a Approval, Op)> {
    let withdraw = |a: &Approval, why: String| Op::WithdrawApproval { id: a.id.clone(), at: now, reason: Some(why) };
    pending
        .iter()
        .filter_map(|a| {
            let op = if a.expires_at <= now {
                Op::ExpireApproval { id: a.id.clone(), at: now }
            } else if a.node == me || a.request_digest.is_some() {
                // A deferred request is repeated through any node: none holds it.
                return None;
            } else if !members.contains(&a.node) {
                withdraw(a, format!("node {} that held the statement left the cluster; it did not run", a.node))
            } else if silent.contains(&a.node) {
                withdraw(a, format!("node {} that held the statement is unreachable; it did not run", a.node))
            } else {
                return None;
            };
            Some((a, op))
        })
        .collect()
}

#[cfg(test)]
mod tests;
