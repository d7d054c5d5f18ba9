//! Who is calling, and what they may do: the first thing every admin RPC does.
//!
//! [`Authenticator`] is the seam: it turns request metadata into a [`Caller`] or refuses
//! with `Unauthenticated`. [`Roles`] maps groups to the admin API's roles; each RPC
//! names the role it needs and a refusal names what was missing. Approve/Deny record
//! the caller's subject and groups in the replicated vote, so the state machine checks
//! approver groups and self-approval itself.

use tonic::Status;
use tonic::metadata::MetadataMap;

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Identity subject (e.g. the OIDC `sub`).
    pub subject: String,
    /// Groups the subject belongs to.
    pub groups: Vec<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    /// Who vouched for the caller (the token's issuer).
    pub issuer: String,
    /// When the caller's credential expires (the token's `exp`, seconds since the
    /// epoch); `None` for callers without one. What it vouches for (an SSH
    /// certificate) never outlives it.
    pub expires_at: Option<u64>,
}

/// Authenticates admin API callers from gRPC metadata.
#[tonic::async_trait]
pub trait Authenticator: Send + Sync {
    /// The caller of a request, or `Unauthenticated` / `Unavailable` naming why.
    async fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, Status>;
}

/// The bearer token of a request, or an `Unauthenticated` status saying how to send one.
pub fn bearer_token(metadata: &MetadataMap) -> Result<&str, Status> {
    let Some(value) = metadata.get("authorization") else {
        return Err(Status::unauthenticated(
            "no token: pass --token or set PORTCULLIS_TOKEN (`portcullis login`, or `portcullis dev token` in the playground)",
        ));
    };
    let value = value.to_str().map_err(|_| Status::unauthenticated("authorization metadata is not text"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Ok(token.trim()),
        _ => Err(Status::unauthenticated("authorization metadata must be `Bearer <token>`")),
    }
}

/// A role of the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Membership, resources, policies.
    Admin,
    /// Read sessions, policies, resources, cluster status.
    Auditor,
}

/// Which groups hold which role.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Roles {
    pub admin_groups: Vec<String>,
    pub auditor_groups: Vec<String>,
}

impl Default for Roles {
    fn default() -> Self {
        Roles { admin_groups: vec!["admin".into()], auditor_groups: vec!["auditor".into()] }
    }
}

impl Roles {
    fn groups(&self, role: Role) -> &[String] {
        match role {
            Role::Admin => &self.admin_groups,
            Role::Auditor => &self.auditor_groups,
        }
    }

    pub fn has(&self, caller: &Caller, role: Role) -> bool {
        caller.groups.iter().any(|g| self.groups(role).contains(g))
    }

    /// Ok if the caller holds any of `roles`; otherwise `PermissionDenied` naming the groups.
    pub fn require(&self, caller: &Caller, roles: &[Role]) -> Result<(), Status> {
        if roles.iter().any(|r| self.has(caller, *r)) {
            return Ok(());
        }
        let needed: Vec<&str> = roles.iter().flat_map(|r| self.groups(*r)).map(String::as_str).collect();
        let what = if needed.len() == 1 {
            format!("group {}", needed.join(""))
        } else {
            format!("one of groups {}", needed.join(", "))
        };
        Err(Status::permission_denied(format!(
            "{what} required; {} is in [{}]",
            caller.subject,
            caller.groups.join(", ")
        )))
    }
}

/// Accepts every caller as `anonymous` in groups `admin` and `auditor`. Only for tests
/// of the API itself; nodes always verify tokens.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustEveryone;

#[tonic::async_trait]
impl Authenticator for TrustEveryone {
    async fn authenticate(&self, _metadata: &MetadataMap) -> Result<Caller, Status> {
        Ok(Caller {
            subject: "anonymous".to_string(),
            groups: vec!["admin".to_string(), "auditor".to_string()],
            email: None,
            name: None,
            issuer: String::new(),
            expires_at: None,
        })
    }
}
