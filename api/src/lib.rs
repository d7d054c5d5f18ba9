//! # portcullis-api
//!
//! The public admin API of a Portcullis node: the gRPC service operators and the
//! `portcullis` CLI talk to, on top of the replicated store.
//!
//! ## Layout
//! - `proto/admin.proto`, [`proto`]: the wire contract (package `portcullis.admin.v1`).
//! - [`service`]: [`AdminService`], the server. Writes become one replicated
//!   [`Op`](portcullis_raft::command::Op) through [`ClusterNode::write`]; reads are served
//!   from the node's local [`StateView`](portcullis_raft::store::StateView).
//! - [`convert`]: model ↔ proto conversions (and the rule that secrets never leave).
//! - [`auth`]: who is calling ([`Authenticator`]) and what they may do ([`Roles`]).
//! - [`client`]: [`AdminClient`], the typed client the CLI uses.
//! - `backup`: the Backup and Restore calls (checked, all-or-nothing restore).
//! - [`error`]: [`ApiError`] (client side) and the one mapping from store errors to
//!   gRPC statuses.

pub mod auth;
mod backup;
pub mod client;
pub mod convert;
pub mod error;
pub mod service;

#[cfg(test)]
mod tests;

pub mod proto {
    //! Generated admin protocol.
    #![allow(clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    tonic::include_proto!("portcullis.admin.v1");
}

use std::sync::Arc;

use portcullis_raft::node::ClusterNode;

pub use auth::{Authenticator, Caller, Role, Roles, TrustEveryone};
pub use client::{AdminClient, SessionExport};
pub use error::{ApiError, status_from_raft};
pub use service::AdminService;

/// The admin gRPC service of `node`, ready to add to a tonic server.
pub fn server(
    node: ClusterNode,
    auth: Arc<dyn Authenticator>,
    roles: Roles,
    policy_check: service::PolicyCheck,
) -> proto::admin_server::AdminServer<AdminService> {
    proto::admin_server::AdminServer::new(AdminService::new(node, auth, roles, policy_check))
}

/// As [`server`], also issuing SSH certificates with `ssh_issuer`.
pub fn server_with_ssh(
    node: ClusterNode,
    auth: Arc<dyn Authenticator>,
    roles: Roles,
    policy_check: service::PolicyCheck,
    ssh_issuer: service::SshIssuer,
) -> proto::admin_server::AdminServer<AdminService> {
    let service = AdminService::new(node, auth, roles, policy_check).with_ssh_issuer(ssh_issuer);
    proto::admin_server::AdminServer::new(service)
}
