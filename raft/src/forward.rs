//! The write path: commit on the leader, or forward to it, always under a deadline.
//!
//! openraft 0.9 has no CheckQuorum: a leader cut off from its followers keeps trying to
//! replicate and `client_write` would wait forever. Every write therefore runs under the
//! node's write deadline and ends with a "no quorum" error naming what was missing.

use std::time::Duration;

use crate::command::{Command, Response};
use crate::error::{Error, Result};
use crate::network::{ForwardReply, ForwardRequest};
use crate::node_core::{NodeCore, no_quorum};
use crate::typ::{ClientWriteError, RaftError};

/// Commit `cmd` through the leader and return its apply result.
pub(crate) async fn write(core: &NodeCore, cmd: Command) -> Result<Response> {
    let deadline = core.settings.timing.write_deadline;
    // Shared, not copied, by every retry and by the log (an audit batch is large).
    let cmd = std::sync::Arc::new(cmd);
    let attempt = async {
        loop {
            match core.raft.client_write(cmd.clone()).await {
                Ok(resp) => return Ok(resp.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {}
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                    return Err(Error::Membership(e.to_string()));
                }
                Err(RaftError::Fatal(f)) => return Err(Error::Fatal(f.to_string())),
            }
            match forward_to_leader(core, &ForwardRequest::Write(cmd.clone()), deadline).await {
                Some(ForwardReply::Written(r)) => return Ok(r),
                Some(ForwardReply::Done) => return Ok(Response::Done),
                Some(ForwardReply::Failed(msg)) => return Err(Error::NoQuorum { deadline, detail: msg }),
                Some(ForwardReply::NotLeader { .. }) | None => wait_for_leader_change(core).await,
            }
        }
    };
    match tokio::time::timeout(deadline, attempt).await {
        Ok(result) => result,
        Err(_) => Err(no_quorum(deadline, &describe_leader(core))),
    }
}

/// Run a membership change on the leader (here, or forwarded).
pub(crate) async fn membership(core: &NodeCore, req: ForwardRequest) -> Result<()> {
    let deadline = core.settings.timing.write_deadline * 4;
    let attempt = async {
        loop {
            let leader = core.raft.metrics().borrow().current_leader;
            let reply = if leader == Some(core.id) {
                Some(core.handle_forwarded(req.clone()).await)
            } else {
                forward_to_leader(core, &req, deadline).await
            };
            match reply {
                Some(ForwardReply::Done) | Some(ForwardReply::Written(_)) => return Ok(()),
                Some(ForwardReply::Failed(msg)) => return Err(Error::Membership(msg)),
                Some(ForwardReply::NotLeader { .. }) | None => wait_for_leader_change(core).await,
            }
        }
    };
    match tokio::time::timeout(deadline, attempt).await {
        Ok(result) => result,
        Err(_) => Err(no_quorum(deadline, &describe_leader(core))),
    }
}

/// Send `req` to the current leader; `None` if no leader is known or it did not answer.
async fn forward_to_leader(core: &NodeCore, req: &ForwardRequest, timeout: Duration) -> Option<ForwardReply> {
    let (leader, member) = {
        let m = core.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        let member = m.membership_config.membership().get_node(&leader).cloned()?;
        (leader, member)
    };
    if leader == core.id {
        return None;
    }
    match core.peers.forward(leader, &member.raft_addr, req, timeout).await {
        Ok(reply) => Some(reply),
        Err(e) => {
            tracing::debug!(error = %e, "forward to leader failed");
            None
        }
    }
}

/// Wait briefly for the leader to change (or a short pause), before retrying.
async fn wait_for_leader_change(core: &NodeCore) {
    let mut rx = core.raft.metrics();
    let before = rx.borrow_and_update().current_leader;
    let _ = tokio::time::timeout(Duration::from_millis(100), async {
        while rx.changed().await.is_ok() {
            if rx.borrow().current_leader != before {
                return;
            }
        }
    })
    .await;
}

fn describe_leader(core: &NodeCore) -> String {
    let m = core.raft.metrics().borrow().clone();
    let voters = m.membership_config.membership().voter_ids().count();
    match m.current_leader {
        None => format!("no leader known among {voters} voters"),
        Some(l) if l == core.id => format!("this node leads but fewer than a majority of {voters} voters acknowledged"),
        Some(l) => format!("leader {l} did not confirm the write ({voters} voters)"),
    }
}
