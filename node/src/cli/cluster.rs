//! `portcullis cluster status | init | add-node | remove-node`.

use portcullis_api::proto;
use serde_json::json;

use super::output::{emit, emit_json, table, yes_no};
use super::{CliError, Globals, connect};

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCmd {
    /// Every member's role and progress, each member asked directly.
    Status,
    /// Initialize a new cluster with the peers from the node's config.
    Init,
    /// Add a node: first as a learner, then as a voter once it has caught up.
    AddNode {
        /// Id of the new node (its `id` in its config).
        #[arg(long)]
        id: u64,
        /// Its node-to-node (raft) address, host:port.
        #[arg(long)]
        addr: String,
        /// Its admin API address, host:port.
        #[arg(long)]
        admin_addr: Option<String>,
    },
    /// Remove a node from the membership.
    RemoveNode {
        #[arg(long)]
        id: u64,
    },
}

pub async fn cluster(cmd: ClusterCmd, g: &Globals) -> Result<(), CliError> {
    let client = connect(g).await?;
    match cmd {
        ClusterCmd::Status => {
            let status = client.cluster_status().await?;
            if g.json { emit_json(&status_json(&status)) } else { emit(&status_table(&status)) }
        }
        ClusterCmd::Init => {
            client.init(Vec::new()).await?;
            emit("cluster initialized")
        }
        ClusterCmd::AddNode { id, addr, admin_addr } => {
            client.add_node(id, addr, admin_addr.unwrap_or_default()).await?;
            emit(&format!("node {id} added as a voter"))
        }
        ClusterCmd::RemoveNode { id } => {
            client.remove_node(id).await?;
            emit(&format!("node {id} removed"))
        }
    }
}

/// The `cluster status --json` document (DESIGN §6).
pub fn status_json(status: &proto::ClusterStatusReply) -> serde_json::Value {
    let nodes: Vec<serde_json::Value> = status
        .nodes
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "addr": n.raft_addr,
                "admin": n.admin_addr,
                "role": n.role,
                "serving": n.serving,
                "last_applied": n.last_applied,
            })
        })
        .collect();
    json!({ "leader": status.leader, "term": status.term, "nodes": nodes })
}

pub fn status_table(status: &proto::ClusterStatusReply) -> String {
    let leader = status.leader.map_or_else(|| "none".to_string(), |l| l.to_string());
    let rows: Vec<Vec<String>> = status
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.id.to_string(),
                n.role.clone(),
                yes_no(n.serving),
                n.last_applied.to_string(),
                n.term.to_string(),
                n.raft_addr.clone(),
                n.admin_addr.clone(),
            ]
        })
        .collect();
    let headers = ["ID", "ROLE", "SERVING", "APPLIED", "TERM", "ADDR", "ADMIN"];
    format!("leader: {leader}  term: {}\n\n{}", status.term, table(&headers, &rows))
}
