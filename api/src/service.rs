//! The admin gRPC service on top of one node.
//!
//! Every call first authenticates its caller. Writes become one replicated
//! [`Op`] through [`ClusterNode::write`], which forwards to the leader and gives up at
//! its deadline; a command the state machine refuses comes back as `FailedPrecondition`
//! (or `NotFound`) with the refusal's reason. Reads are served from this node's local
//! view and may lag the leader by replication delay.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use portcullis_raft::Member;
use portcullis_raft::command::{Op, Response as OpResponse};
use portcullis_raft::model::{Policy, Session, now_millis};
use portcullis_raft::node::{ClusterNode, NodeStatus};
use portcullis_raft::store::StateView;
use tonic::codegen::tokio_stream::{self, Stream};
use tonic::{Request, Response, Status};

use crate::auth::{Authenticator, Caller, Role, Roles};
use crate::convert::{self, validate_name};
use crate::error::{rejected, status_from_raft};
use crate::proto::{self, admin_server::Admin};

/// Serves `portcullis.admin.v1.Admin` for one node.
#[derive(Clone)]
pub struct AdminService {
    /// The local node: replicated writes, local reads, membership.
    node: ClusterNode,
    /// Decides who the caller is; votes on approvals are recorded under that identity.
    auth: Arc<dyn Authenticator>,
    /// Which groups hold the admin and auditor roles.
    roles: Roles,
    /// Validates a policy document and returns its name; the policy language lives
    /// with the decision point (proxy), which this crate does not depend on.
    policy_check: PolicyCheck,
    /// Signs SSH user certificates with the cluster's SSH CA; `None` on a node without
    /// one (then `IssueSshCertificate` is unavailable).
    ssh_issuer: Option<SshIssuer>,
}

/// Validates policy source text: `Ok(name)` or the reason with its line.
pub type PolicyCheck = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// Certifies `public_key` (an OpenSSH line) for the caller with the cluster's SSH CA,
/// valid until the caller's credential expires. Lives with the SSH door (proxy), which
/// this crate does not depend on; refusals come back as the status to send.
pub type SshIssuer = Arc<dyn Fn(&Caller, &str) -> Result<IssuedSshCertificate, Status> + Send + Sync>;

/// A certificate [`SshIssuer`] made.
#[derive(Debug, Clone)]
pub struct IssuedSshCertificate {
    pub certificate: String,
    pub ca_public_key: String,
    /// Fingerprint of the certified key, for the audit log.
    pub key_fingerprint: String,
    /// Seconds since the epoch.
    pub valid_before: u64,
}

type Reply<T> = Result<Response<T>, Status>;

// === impl AdminService ===

impl AdminService {
    pub fn new(node: ClusterNode, auth: Arc<dyn Authenticator>, roles: Roles, policy_check: PolicyCheck) -> Self {
        AdminService { node, auth, roles, policy_check, ssh_issuer: None }
    }

    /// Serve `IssueSshCertificate` with `issuer`.
    pub fn with_ssh_issuer(mut self, issuer: SshIssuer) -> Self {
        self.ssh_issuer = Some(issuer);
        self
    }

    async fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        self.auth.authenticate(req.metadata()).await
    }

    /// Authenticate, then require one of `roles`.
    async fn authorize<T>(&self, req: &Request<T>, roles: &[Role]) -> Result<Caller, Status> {
        let caller = self.caller(req).await?;
        self.roles.require(&caller, roles)?;
        Ok(caller)
    }

    fn view(&self) -> &StateView {
        self.node.view()
    }

    /// One replicated write; a refusal by the state machine becomes an error status.
    async fn write(&self, op: Op) -> Result<OpResponse, Status> {
        let response = self.node.write(op).await.map_err(|e| status_from_raft(&e))?;
        match response.rejection() {
            Some(reason) => Err(rejected(reason)),
            None => Ok(response),
        }
    }

    async fn decide(&self, req: Request<proto::DecideRequest>, approve: bool) -> Reply<proto::DecideReply> {
        let caller = self.caller(&req).await?;
        let req = req.into_inner();
        if req.id.is_empty() {
            return Err(Status::invalid_argument("approval id is empty"));
        }
        let op = Op::DecideApproval {
            id: req.id,
            approver: caller.subject,
            approver_groups: caller.groups,
            approve,
            reason: req.reason,
            at: now_millis(),
        };
        match self.write(op).await? {
            OpResponse::Approval { approval } => {
                Ok(Response::new(proto::DecideReply { approval: Some(convert::approval_to_proto(&approval)) }))
            }
            other => Err(Status::internal(format!("unexpected result of an approval decision: {other:?}"))),
        }
    }
}

/// A session with all its events.
fn session_record(view: &StateView, session: &Session) -> Result<proto::SessionRecord, Status> {
    let events = view.events(&session.id).map_err(|e| status_from_raft(&e))?;
    Ok(proto::SessionRecord {
        session: Some(convert::session_to_proto(session)),
        events: events.iter().map(convert::event_to_proto).collect(),
    })
}

fn node_status_to_proto(n: NodeStatus) -> proto::NodeStatus {
    proto::NodeStatus {
        id: n.id,
        raft_addr: n.raft_addr,
        admin_addr: n.admin_addr,
        role: n.role,
        serving: n.serving,
        last_applied: n.last_applied,
        term: n.term,
        leader: n.leader,
        initialized: n.initialized,
    }
}

fn member_from_parts(id: u64, raft_addr: String, admin_addr: String) -> Result<Member, Status> {
    if id == 0 {
        return Err(Status::invalid_argument("node id must be greater than 0"));
    }
    if raft_addr.trim().is_empty() {
        return Err(Status::invalid_argument(format!("node {id}: raft address is empty")));
    }
    Ok(Member { raft_addr, admin_addr })
}

// === impl Admin ===

#[tonic::async_trait]
impl Admin for AdminService {
    async fn cluster_status(&self, req: Request<proto::ClusterStatusRequest>) -> Reply<proto::ClusterStatusReply> {
        self.authorize(&req, &[Role::Admin, Role::Auditor]).await?;
        let status = self.node.cluster_status().await;
        Ok(Response::new(proto::ClusterStatusReply {
            leader: status.leader,
            term: status.term,
            nodes: status.nodes.into_iter().map(node_status_to_proto).collect(),
        }))
    }

    async fn init(&self, req: Request<proto::InitRequest>) -> Reply<proto::InitReply> {
        self.authorize(&req, &[Role::Admin]).await?;
        let mut members = BTreeMap::new();
        for m in req.into_inner().members {
            let member = member_from_parts(m.id, m.raft_addr, m.admin_addr)?;
            if members.insert(m.id, member).is_some() {
                return Err(Status::invalid_argument(format!("node {} is listed twice", m.id)));
            }
        }
        self.node.initialize(members).await.map_err(|e| status_from_raft(&e))?;
        Ok(Response::new(proto::InitReply {}))
    }

    async fn add_node(&self, req: Request<proto::AddNodeRequest>) -> Reply<proto::AddNodeReply> {
        self.authorize(&req, &[Role::Admin]).await?;
        let req = req.into_inner();
        let member = member_from_parts(req.id, req.raft_addr, req.admin_addr)?;
        self.node.add_node(req.id, member).await.map_err(|e| status_from_raft(&e))?;
        Ok(Response::new(proto::AddNodeReply {}))
    }

    async fn remove_node(&self, req: Request<proto::RemoveNodeRequest>) -> Reply<proto::RemoveNodeReply> {
        self.authorize(&req, &[Role::Admin]).await?;
        self.node.remove_node(req.into_inner().id).await.map_err(|e| status_from_raft(&e))?;
        Ok(Response::new(proto::RemoveNodeReply {}))
    }

    async fn put_resource(&self, req: Request<proto::PutResourceRequest>) -> Reply<proto::PutResourceReply> {
        self.authorize(&req, &[Role::Admin]).await?;
        let mut req = req.into_inner();
        validate_name("resource", &req.name)?;
        // Seal before anything is replicated; the plaintext goes no further than here.
        let secret = match req.secret.take() {
            Some(plain) => Some(self.node.seal_secret(&plain).map_err(|e| status_from_raft(&e))?),
            // No secret given: keep the stored one, so re-applying a file without the
            // password does not wipe it.
            None => self.view().resource(&req.name).map_err(|e| status_from_raft(&e))?.and_then(|r| r.secret),
        };
        let stored = self.view().resource(&req.name).map_err(|e| status_from_raft(&e))?;
        let mut logins = Vec::with_capacity(req.logins.len());
        for login in std::mem::take(&mut req.logins) {
            if login.groups.is_empty() || login.groups.iter().any(String::is_empty) || login.username.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "resource {}: every login needs groups and a username",
                    req.name
                )));
            }
            let secret = match login.secret {
                Some(plain) => Some(self.node.seal_secret(&plain).map_err(|e| status_from_raft(&e))?),
                None => stored
                    .as_ref()
                    .and_then(|r| r.logins.iter().find(|l| l.username == login.username))
                    .and_then(|l| l.secret.clone()),
            };
            logins.push(portcullis_raft::model::GroupLogin { groups: login.groups, username: login.username, secret });
        }
        let resource = convert::resource_from_put(req, secret, logins, now_millis())?;
        self.write(Op::PutResource { resource }).await?;
        Ok(Response::new(proto::PutResourceReply {}))
    }

    async fn list_resources(&self, req: Request<proto::ListResourcesRequest>) -> Reply<proto::ListResourcesReply> {
        self.authorize(&req, &[Role::Admin, Role::Auditor]).await?;
        let resources = self.view().resources().map_err(|e| status_from_raft(&e))?;
        Ok(Response::new(proto::ListResourcesReply {
            resources: resources.iter().map(convert::resource_to_proto).collect(),
        }))
    }

    async fn delete_resource(&self, req: Request<proto::DeleteResourceRequest>) -> Reply<proto::DeleteResourceReply> {
        self.authorize(&req, &[Role::Admin]).await?;
        let name = req.into_inner().name;
        validate_name("resource", &name)?;
        self.write(Op::DeleteResource { name }).await?;
        Ok(Response::new(proto::DeleteResourceReply {}))
    }

    async fn put_policy(&self, req: Request<proto::PutPolicyRequest>) -> Reply<proto::PutPolicyReply> {
        let caller = self.authorize(&req, &[Role::Admin]).await?;
        let req = req.into_inner();
        validate_name("policy", &req.name)?;
        if req.source.trim().is_empty() {
            return Err(Status::invalid_argument(format!("policy {}: source is empty", req.name)));
        }
        match (self.policy_check)(&req.source) {
            Ok(name) if name == req.name => {}
            Ok(name) => {
                return Err(Status::invalid_argument(format!(
                    "policy is named {name} in its source, not {}",
                    req.name
                )));
            }
            Err(reason) => return Err(Status::invalid_argument(format!("policy {}: {reason}", req.name))),
        }
        let policy =
            Policy { name: req.name, source: req.source, updated_at: now_millis(), updated_by: caller.subject };
        self.write(Op::PutPolicy { policy }).await?;
        Ok(Response::new(proto::PutPolicyReply {}))
    }

    async fn list_policies(&self, req: Request<proto::ListPoliciesRequest>) -> Reply<proto::ListPoliciesReply> {
        self.authorize(&req, &[Role::Admin, Role::Auditor]).await?;
        let policies = self.view().policies().map_err(|e| status_from_raft(&e))?;
        Ok(Response::new(proto::ListPoliciesReply {
            policies: policies.iter().map(convert::policy_to_proto).collect(),
        }))
    }

    async fn delete_policy(&self, req: Request<proto::DeletePolicyRequest>) -> Reply<proto::DeletePolicyReply> {
        self.authorize(&req, &[Role::Admin]).await?;
        let name = req.into_inner().name;
        validate_name("policy", &name)?;
        self.write(Op::DeletePolicy { name }).await?;
        Ok(Response::new(proto::DeletePolicyReply {}))
    }

    async fn list_approvals(&self, req: Request<proto::ListApprovalsRequest>) -> Reply<proto::ListApprovalsReply> {
        let caller = self.caller(&req).await?;
        let mut approvals = self.view().approvals(req.into_inner().pending_only).map_err(|e| status_from_raft(&e))?;
        // Admins and auditors see every approval; an approver sees those their groups may decide.
        if !self.roles.has(&caller, Role::Admin) && !self.roles.has(&caller, Role::Auditor) {
            approvals.retain(|a| a.approver_groups.iter().any(|g| caller.groups.contains(g)));
        }
        Ok(Response::new(proto::ListApprovalsReply {
            approvals: approvals.iter().map(convert::approval_to_proto).collect(),
        }))
    }

    async fn approve(&self, req: Request<proto::DecideRequest>) -> Reply<proto::DecideReply> {
        self.decide(req, true).await
    }

    async fn deny(&self, req: Request<proto::DecideRequest>) -> Reply<proto::DecideReply> {
        self.decide(req, false).await
    }

    async fn list_sessions(&self, req: Request<proto::SessionFilter>) -> Reply<proto::ListSessionsReply> {
        self.authorize(&req, &[Role::Admin, Role::Auditor]).await?;
        let filter = convert::session_filter_from_proto(req.get_ref());
        let sessions = self.view().sessions(&filter).map_err(|e| status_from_raft(&e))?;
        Ok(Response::new(proto::ListSessionsReply {
            sessions: sessions.iter().map(convert::session_to_proto).collect(),
        }))
    }

    async fn show_session(&self, req: Request<proto::ShowSessionRequest>) -> Reply<proto::SessionRecord> {
        self.authorize(&req, &[Role::Admin, Role::Auditor]).await?;
        let id = req.into_inner().id;
        let session = self
            .view()
            .session(&id)
            .map_err(|e| status_from_raft(&e))?
            .ok_or_else(|| Status::not_found(format!("no session {id}")))?;
        Ok(Response::new(session_record(self.view(), &session)?))
    }

    type ExportSessionsStream = Pin<Box<dyn Stream<Item = Result<proto::SessionRecord, Status>> + Send + 'static>>;

    async fn export_sessions(&self, req: Request<proto::SessionFilter>) -> Reply<Self::ExportSessionsStream> {
        self.authorize(&req, &[Role::Admin, Role::Auditor]).await?;
        let filter = convert::session_filter_from_proto(req.get_ref());
        let view = self.view().clone();
        let sessions = view.sessions(&filter).map_err(|e| status_from_raft(&e))?;
        // Events are read lazily, one session per item, as the client pulls.
        let records = sessions.into_iter().map(move |s| session_record(&view, &s));
        Ok(Response::new(Box::pin(tokio_stream::iter(records))))
    }

    type BackupStream = Pin<Box<dyn Stream<Item = Result<proto::BackupChunk, Status>> + Send + 'static>>;

    async fn backup(&self, req: Request<proto::BackupRequest>) -> Reply<Self::BackupStream> {
        self.authorize(&req, &[Role::Admin]).await?;
        let chunks = crate::backup::take(&self.node).await?;
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks.into_iter().map(Ok)))))
    }

    async fn restore(&self, req: Request<tonic::Streaming<proto::BackupChunk>>) -> Reply<proto::RestoreReply> {
        self.authorize(&req, &[Role::Admin]).await?;
        Ok(Response::new(crate::backup::restore(&self.node, req.into_inner()).await?))
    }

    async fn issue_ssh_certificate(
        &self,
        req: Request<proto::IssueSshCertificateRequest>,
    ) -> Reply<proto::IssueSshCertificateReply> {
        // No role: every identity may get a certificate, for itself only (the caller's).
        let caller = self.caller(&req).await?;
        let Some(issuer) = &self.ssh_issuer else {
            return Err(Status::unimplemented("this node issues no SSH certificates"));
        };
        if caller.expires_at.is_none() {
            return Err(Status::failed_precondition(
                "your credential has no expiry, and an SSH certificate must expire with it",
            ));
        }
        let issued = issuer(&caller, &req.get_ref().public_key)?;
        // The audit trail of certificates: who, which key, until when (never the token).
        tracing::info!(
            subject = %caller.subject,
            groups = ?caller.groups,
            key = %issued.key_fingerprint,
            valid_before = issued.valid_before,
            "issued an SSH user certificate"
        );
        Ok(Response::new(proto::IssueSshCertificateReply {
            certificate: issued.certificate,
            ca_public_key: issued.ca_public_key,
            valid_before: issued.valid_before,
        }))
    }
}
