//! The typed admin client the CLI uses.
//!
//! [`AdminClient::connect`] dials eagerly, so an unreachable node is reported at once
//! ("cannot reach https://127.0.0.1:7101: connection refused (is the node running?)").
//! Every call carries `authorization: Bearer <token>` when a token was given, and every
//! error comes back as an [`ApiError`] whose Display is ready for an operator.

use std::time::Duration;

use tonic::codegen::http::Uri;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status, Streaming};

use crate::error::{ApiError, describe_connect_error};
use crate::proto;

/// How long to wait for a TCP + TLS + HTTP/2 connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on one unary call; the node's own write deadline is shorter, so its
/// "no quorum" answer arrives before this fires.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

type Inner = proto::admin_client::AdminClient<InterceptedService<Channel, BearerToken>>;

/// A connection to one node's admin API. Cheap to clone.
#[derive(Clone)]
pub struct AdminClient {
    inner: Inner,
    /// As given by the caller; named in connection errors.
    endpoint: String,
}

/// Adds the bearer token, when there is one, to every request.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

/// The stream of an export; yields records until the node has sent them all.
pub struct SessionExport {
    stream: Streaming<proto::SessionRecord>,
    endpoint: String,
}

// === impl BearerToken ===

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

// === impl AdminClient ===

impl AdminClient {
    /// Connect to `endpoint` (`https://host:port` or `http://host:port`).
    ///
    /// For https the server certificate is verified against `ca_pem` (required: no
    /// system roots are built in), for the host named in the URL.
    pub async fn connect(endpoint: &str, ca_pem: Option<&[u8]>, token: Option<String>) -> Result<Self, ApiError> {
        let (mut builder, domain, tls) = parse_endpoint(endpoint)?;
        if tls {
            let ca = ca_pem.ok_or_else(|| {
                ApiError::InvalidInput(format!("{endpoint} uses TLS: a CA certificate is needed to verify the node"))
            })?;
            let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name(domain);
            builder = builder.tls_config(config).map_err(|e| ApiError::Tls(describe_connect_error(&e)))?;
        }
        let token = match token.filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => Some(
                MetadataValue::try_from(format!("Bearer {t}"))
                    .map_err(|_| ApiError::InvalidInput("token contains characters not allowed in a header".into()))?,
            ),
        };
        let channel = builder.connect_timeout(CONNECT_TIMEOUT).timeout(CALL_TIMEOUT).connect().await.map_err(|e| {
            let mut detail = describe_connect_error(&e);
            if !tls && !detail.contains("refused") && !detail.contains("timed out") {
                // Plain HTTP/2 against a TLS port fails with a framing error.
                detail.push_str(" (nodes serve TLS: use an https:// endpoint)");
            }
            ApiError::Connect { endpoint: endpoint.to_string(), detail }
        })?;
        Ok(AdminClient {
            inner: proto::admin_client::AdminClient::with_interceptor(channel, BearerToken(token)),
            endpoint: endpoint.to_string(),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn error(&self, status: Status) -> ApiError {
        status_error(&self.endpoint, status)
    }

    pub async fn cluster_status(&self) -> Result<proto::ClusterStatusReply, ApiError> {
        let reply = self.inner.clone().cluster_status(proto::ClusterStatusRequest {}).await;
        Ok(reply.map_err(|s| self.error(s))?.into_inner())
    }

    /// Initialize the cluster; no members = the peers from the node's config.
    pub async fn init(&self, members: Vec<proto::Member>) -> Result<(), ApiError> {
        self.inner.clone().init(proto::InitRequest { members }).await.map_err(|s| self.error(s))?;
        Ok(())
    }

    pub async fn add_node(&self, id: u64, raft_addr: String, admin_addr: String) -> Result<(), ApiError> {
        let req = proto::AddNodeRequest { id, raft_addr, admin_addr };
        self.inner.clone().add_node(req).await.map_err(|s| self.error(s))?;
        Ok(())
    }

    pub async fn remove_node(&self, id: u64) -> Result<(), ApiError> {
        self.inner.clone().remove_node(proto::RemoveNodeRequest { id }).await.map_err(|s| self.error(s))?;
        Ok(())
    }

    pub async fn put_resource(&self, resource: proto::PutResourceRequest) -> Result<(), ApiError> {
        self.inner.clone().put_resource(resource).await.map_err(|s| self.error(s))?;
        Ok(())
    }

    pub async fn list_resources(&self) -> Result<Vec<proto::Resource>, ApiError> {
        let reply = self.inner.clone().list_resources(proto::ListResourcesRequest {}).await;
        Ok(reply.map_err(|s| self.error(s))?.into_inner().resources)
    }

    pub async fn delete_resource(&self, name: &str) -> Result<(), ApiError> {
        let req = proto::DeleteResourceRequest { name: name.to_string() };
        self.inner.clone().delete_resource(req).await.map_err(|s| self.error(s))?;
        Ok(())
    }

    pub async fn put_policy(&self, name: &str, source: &str) -> Result<(), ApiError> {
        let req = proto::PutPolicyRequest { name: name.to_string(), source: source.to_string() };
        self.inner.clone().put_policy(req).await.map_err(|s| self.error(s))?;
        Ok(())
    }

    pub async fn list_policies(&self) -> Result<Vec<proto::Policy>, ApiError> {
        let reply = self.inner.clone().list_policies(proto::ListPoliciesRequest {}).await;
        Ok(reply.map_err(|s| self.error(s))?.into_inner().policies)
    }

    pub async fn delete_policy(&self, name: &str) -> Result<(), ApiError> {
        let req = proto::DeletePolicyRequest { name: name.to_string() };
        self.inner.clone().delete_policy(req).await.map_err(|s| self.error(s))?;
        Ok(())
    }

    pub async fn list_approvals(&self, pending_only: bool) -> Result<Vec<proto::Approval>, ApiError> {
        let reply = self.inner.clone().list_approvals(proto::ListApprovalsRequest { pending_only }).await;
        Ok(reply.map_err(|s| self.error(s))?.into_inner().approvals)
    }

    /// Vote to approve; returns the approval after the vote.
    pub async fn approve(&self, id: &str, reason: &str) -> Result<proto::Approval, ApiError> {
        let req = proto::DecideRequest { id: id.to_string(), reason: reason.to_string() };
        let reply = self.inner.clone().approve(req).await.map_err(|s| self.error(s))?;
        reply.into_inner().approval.ok_or_else(|| ApiError::Protocol("approve answered without the approval".into()))
    }

    /// Vote to deny; returns the approval after the vote.
    pub async fn deny(&self, id: &str, reason: &str) -> Result<proto::Approval, ApiError> {
        let req = proto::DecideRequest { id: id.to_string(), reason: reason.to_string() };
        let reply = self.inner.clone().deny(req).await.map_err(|s| self.error(s))?;
        reply.into_inner().approval.ok_or_else(|| ApiError::Protocol("deny answered without the approval".into()))
    }

    pub async fn list_sessions(&self, filter: proto::SessionFilter) -> Result<Vec<proto::Session>, ApiError> {
        let reply = self.inner.clone().list_sessions(filter).await;
        Ok(reply.map_err(|s| self.error(s))?.into_inner().sessions)
    }

    pub async fn show_session(&self, id: &str) -> Result<proto::SessionRecord, ApiError> {
        let reply = self.inner.clone().show_session(proto::ShowSessionRequest { id: id.to_string() }).await;
        Ok(reply.map_err(|s| self.error(s))?.into_inner())
    }

    pub async fn export_sessions(&self, filter: proto::SessionFilter) -> Result<SessionExport, ApiError> {
        let reply = self.inner.clone().export_sessions(filter).await.map_err(|s| self.error(s))?;
        Ok(SessionExport { stream: reply.into_inner(), endpoint: self.endpoint.clone() })
    }
}

impl AdminClient {
    /// A backup file of the node's state, whole.
    pub async fn backup(&self) -> Result<Vec<u8>, ApiError> {
        let reply = self.inner.clone().backup(proto::BackupRequest {}).await.map_err(|s| self.error(s))?;
        let mut stream = reply.into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(|s| self.error(s))? {
            out.extend_from_slice(&chunk.data);
        }
        Ok(out)
    }

    /// A certificate of the cluster's SSH CA for `public_key` (an OpenSSH line), naming
    /// the caller (whose token this client sends).
    pub async fn issue_ssh_certificate(&self, public_key: &str) -> Result<proto::IssueSshCertificateReply, ApiError> {
        let req = proto::IssueSshCertificateRequest { public_key: public_key.to_string() };
        let reply = self.inner.clone().issue_ssh_certificate(req).await.map_err(|s| self.error(s))?;
        Ok(reply.into_inner())
    }

    /// Send a backup file to restore into this (new, empty) cluster.
    pub async fn restore(&self, bytes: Vec<u8>) -> Result<proto::RestoreReply, ApiError> {
        let chunks: Vec<proto::BackupChunk> =
            bytes.chunks(1024 * 1024).map(|c| proto::BackupChunk { data: c.to_vec() }).collect();
        let reply =
            self.inner.clone().restore(tonic::codegen::tokio_stream::iter(chunks)).await.map_err(|s| self.error(s))?;
        Ok(reply.into_inner())
    }
}

// === impl SessionExport ===

impl SessionExport {
    /// The next record, or `None` once the export is complete.
    pub async fn next(&mut self) -> Result<Option<proto::SessionRecord>, ApiError> {
        self.stream.message().await.map_err(|s| status_error(&self.endpoint, s))
    }
}

/// Endpoint builder, TLS domain name and whether TLS is used, from a URL.
pub(crate) fn parse_endpoint(endpoint: &str) -> Result<(Endpoint, String, bool), ApiError> {
    let bad = |why: &str| {
        ApiError::InvalidInput(format!("endpoint {endpoint:?} {why}: expected a URL like https://127.0.0.1:7101"))
    };
    let uri: Uri = endpoint.parse().map_err(|_| bad("is not a URL"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        Some(_) => return Err(bad("has an unsupported scheme")),
        None => return Err(bad("has no scheme")),
    };
    let host = uri.host().ok_or_else(|| bad("has no host"))?;
    // IPv6 literals come bracketed in URLs but not in certificate SANs.
    let domain = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let builder = Endpoint::from_shared(endpoint.to_string()).map_err(|_| bad("is not a valid endpoint"))?;
    Ok((builder, domain, tls))
}

/// An error status as an [`ApiError`]: transport failures (the channel could not
/// reconnect) become `Connect`, everything else carries the node's message.
fn status_error(endpoint: &str, status: Status) -> ApiError {
    if let Some(source) = std::error::Error::source(&status) {
        return ApiError::Connect { endpoint: endpoint.to_string(), detail: describe_connect_error(source) };
    }
    ApiError::Status { code: status.code(), message: status.message().to_string() }
}
