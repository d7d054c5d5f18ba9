//! `portcullis approvals list [--pending] | approve ID | deny ID`.

use portcullis_api::proto;
use serde_json::json;

use super::output::{cell, emit, emit_json, table};
use super::time::format_ms;
use super::{CliError, Globals, connect};

#[derive(clap::Subcommand, Debug)]
pub enum ApprovalsCmd {
    /// List approval requests, oldest first.
    List {
        /// Only requests still waiting for a decision.
        #[arg(long)]
        pending: bool,
    },
    /// Vote to approve a held request.
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Deny a held request (a single denial denies).
    Deny {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

pub async fn approvals(cmd: ApprovalsCmd, g: &Globals) -> Result<(), CliError> {
    let client = connect(g).await?;
    match cmd {
        ApprovalsCmd::List { pending } => {
            let approvals = client.list_approvals(pending).await?;
            if g.json {
                return emit_json(&json!(approvals.iter().map(approval_json).collect::<Vec<_>>()));
            }
            if approvals.is_empty() {
                return emit(if pending { "no pending approvals" } else { "no approvals" });
            }
            emit(&approvals_table(&approvals))
        }
        ApprovalsCmd::Approve { id, reason } => {
            let approval = client.approve(&id, &reason).await?;
            decided(g, "approved", &approval)
        }
        ApprovalsCmd::Deny { id, reason } => {
            let approval = client.deny(&id, &reason).await?;
            decided(g, "denied", &approval)
        }
    }
}

fn decided(g: &Globals, vote: &str, a: &proto::Approval) -> Result<(), CliError> {
    if g.json {
        return emit_json(&approval_json(a));
    }
    emit(&format!("voted {vote}: approval {} is now {} ({})", a.id, a.status().word(), votes(a)))
}

/// `approvals/needed` as a short summary.
fn votes(a: &proto::Approval) -> String {
    let yes = a.votes.iter().filter(|v| v.approve).count();
    format!("{yes}/{} approvals", a.approvals_needed)
}

pub fn approval_json(a: &proto::Approval) -> serde_json::Value {
    let votes: Vec<serde_json::Value> = a
        .votes
        .iter()
        .map(|v| json!({ "approver": v.approver, "approve": v.approve, "reason": v.reason, "at_ms": v.at_ms }))
        .collect();
    json!({
        "id": a.id,
        "status": a.status().word(),
        "requester": a.requester,
        "resource": a.resource,
        "session_id": a.session_id,
        "action": a.action,
        "approver_groups": a.approver_groups,
        "approvals_needed": a.approvals_needed,
        "votes": votes,
        "reason": a.reason,
        "created_at_ms": a.created_at_ms,
        "expires_at_ms": a.expires_at_ms,
        "node": a.node,
    })
}

pub fn approvals_table(approvals: &[proto::Approval]) -> String {
    let rows: Vec<Vec<String>> = approvals
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                a.status().word().to_string(),
                a.requester.clone(),
                a.resource.clone(),
                votes(a),
                format_ms(a.created_at_ms),
                format_ms(a.expires_at_ms),
                cell(&a.action, 60),
            ]
        })
        .collect();
    table(&["ID", "STATUS", "REQUESTER", "RESOURCE", "VOTES", "CREATED", "EXPIRES", "ACTION"], &rows)
}
