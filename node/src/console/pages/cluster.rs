//! `GET /cluster`: members, leader, term, and per node its role, whether it serves
//! (holds the lease) and how far it has applied, from the admin API's `ClusterStatus`
//! (each member asked directly, as `portcullis cluster status` does).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use portcullis_api::proto::ClusterStatusRequest;
use portcullis_api::proto::admin_server::Admin;

use crate::console::Console;
use crate::console::admin::{refusal, request};
use crate::console::viewer::Viewer;
use crate::console::views::{ClusterPage, NodeRow, render};

pub async fn show(State(console): State<Console>, viewer: Viewer) -> Response {
    let call = request(&viewer.session, ClusterStatusRequest {});
    let status = match console.deps().admin.cluster_status(call).await {
        Ok(reply) => reply.into_inner(),
        Err(status) => return refusal(&console, &viewer, &status, "The cluster page", "the admin or auditor role"),
    };
    let nodes = status
        .nodes
        .into_iter()
        .map(|n| NodeRow {
            id: n.id,
            is_leader: status.leader == Some(n.id),
            role: n.role,
            serving: n.serving,
            last_applied: n.last_applied,
            term: n.term,
            raft_addr: n.raft_addr,
            admin_addr: n.admin_addr,
        })
        .collect();
    let page = ClusterPage {
        frame: viewer.frame(&console, "Cluster", "cluster"),
        leader: status.leader.map(|l| format!("node {l}")).unwrap_or_else(|| "none known".into()),
        term: status.term,
        nodes,
    };
    render(StatusCode::OK, &page)
}
