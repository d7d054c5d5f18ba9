//! Conversions between the replicated model and the admin protocol.
//!
//! Outbound conversions are total. Inbound ones validate and answer `InvalidArgument`.
//! Secrets only go inbound: [`resource_to_proto`] reports `has_secret` and drops the
//! sealed value.

use std::collections::BTreeMap;

use portcullis_raft::model::{
    self, Approval, ApprovalStatus, ApprovalVote, AuditMode, Event, Millis, Policy, Protocol, Resource, SealedSecret,
    Session, SessionFilter, SessionStatus,
};
use tonic::Status;

use crate::proto;

// === enums ===

/// Lowercase words for enums, as used in resource files and CLI output.
impl proto::Protocol {
    pub fn word(self) -> &'static str {
        match self {
            proto::Protocol::Unspecified => "unspecified",
            proto::Protocol::Postgres => "postgres",
            proto::Protocol::Ssh => "ssh",
            proto::Protocol::Http => "http",
        }
    }

    pub fn from_word(word: &str) -> Option<Self> {
        match word.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Some(proto::Protocol::Postgres),
            "ssh" => Some(proto::Protocol::Ssh),
            "http" | "https" => Some(proto::Protocol::Http),
            _ => None,
        }
    }
}

impl proto::AuditMode {
    pub fn word(self) -> &'static str {
        match self {
            proto::AuditMode::Unspecified | proto::AuditMode::Strict => "strict",
            proto::AuditMode::Fast => "fast",
        }
    }

    pub fn from_word(word: &str) -> Option<Self> {
        match word.to_ascii_lowercase().as_str() {
            "strict" => Some(proto::AuditMode::Strict),
            "fast" => Some(proto::AuditMode::Fast),
            _ => None,
        }
    }
}

impl proto::ApprovalStatus {
    pub fn word(self) -> &'static str {
        match self {
            proto::ApprovalStatus::Unspecified => "unknown",
            proto::ApprovalStatus::Pending => "pending",
            proto::ApprovalStatus::Approved => "approved",
            proto::ApprovalStatus::Denied => "denied",
            proto::ApprovalStatus::Expired => "expired",
        }
    }
}

impl proto::SessionStatus {
    pub fn word(self) -> &'static str {
        match self {
            proto::SessionStatus::Unspecified => "unknown",
            proto::SessionStatus::Open => "open",
            proto::SessionStatus::Closed => "closed",
            proto::SessionStatus::Failed => "failed",
            proto::SessionStatus::Lost => "lost",
        }
    }
}

fn protocol_to_proto(p: Protocol) -> proto::Protocol {
    match p {
        Protocol::Postgres => proto::Protocol::Postgres,
        Protocol::Ssh => proto::Protocol::Ssh,
        Protocol::Http => proto::Protocol::Http,
    }
}

fn protocol_from_proto(raw: i32) -> Result<Protocol, Status> {
    match proto::Protocol::try_from(raw) {
        Ok(proto::Protocol::Postgres) => Ok(Protocol::Postgres),
        Ok(proto::Protocol::Ssh) => Ok(Protocol::Ssh),
        Ok(proto::Protocol::Http) => Ok(Protocol::Http),
        Ok(proto::Protocol::Unspecified) | Err(_) => {
            Err(Status::invalid_argument("protocol is required: postgres, ssh or http"))
        }
    }
}

fn audit_to_proto(a: AuditMode) -> proto::AuditMode {
    match a {
        AuditMode::Strict => proto::AuditMode::Strict,
        AuditMode::Fast => proto::AuditMode::Fast,
    }
}

fn audit_from_proto(raw: i32) -> Result<AuditMode, Status> {
    match proto::AuditMode::try_from(raw) {
        Ok(proto::AuditMode::Unspecified | proto::AuditMode::Strict) => Ok(AuditMode::Strict),
        Ok(proto::AuditMode::Fast) => Ok(AuditMode::Fast),
        Err(_) => Err(Status::invalid_argument(format!("unknown audit mode {raw}: use strict or fast"))),
    }
}

fn approval_status_to_proto(s: ApprovalStatus) -> proto::ApprovalStatus {
    match s {
        ApprovalStatus::Pending => proto::ApprovalStatus::Pending,
        ApprovalStatus::Approved => proto::ApprovalStatus::Approved,
        ApprovalStatus::Denied => proto::ApprovalStatus::Denied,
        ApprovalStatus::Expired => proto::ApprovalStatus::Expired,
    }
}

fn session_status_to_proto(s: SessionStatus) -> proto::SessionStatus {
    match s {
        SessionStatus::Open => proto::SessionStatus::Open,
        SessionStatus::Closed => proto::SessionStatus::Closed,
        SessionStatus::Failed => proto::SessionStatus::Failed,
        SessionStatus::Lost => proto::SessionStatus::Lost,
    }
}

// === outbound ===

/// A resource as the API shows it: without its secret.
pub fn resource_to_proto(r: &Resource) -> proto::Resource {
    proto::Resource {
        name: r.name.clone(),
        protocol: protocol_to_proto(r.protocol).into(),
        address: r.address.clone(),
        username: r.username.clone(),
        has_secret: r.secret.is_some(),
        audit: audit_to_proto(r.audit).into(),
        options: r.options.clone().into_iter().collect(),
        updated_at_ms: r.updated_at,
        logins: r
            .logins
            .iter()
            .map(|l| proto::GroupLoginInfo {
                groups: l.groups.clone(),
                username: l.username.clone(),
                has_secret: l.secret.is_some(),
            })
            .collect(),
    }
}

pub fn policy_to_proto(p: &Policy) -> proto::Policy {
    proto::Policy {
        name: p.name.clone(),
        source: p.source.clone(),
        updated_at_ms: p.updated_at,
        updated_by: p.updated_by.clone(),
    }
}

fn vote_to_proto(v: &ApprovalVote) -> proto::ApprovalVote {
    proto::ApprovalVote { approver: v.approver.clone(), approve: v.approve, reason: v.reason.clone(), at_ms: v.at }
}

pub fn approval_to_proto(a: &Approval) -> proto::Approval {
    proto::Approval {
        id: a.id.clone(),
        requester: a.requester.clone(),
        resource: a.resource.clone(),
        session_id: a.session_id.clone(),
        action: a.action.clone(),
        approver_groups: a.approver_groups.clone(),
        approvals_needed: a.approvals_needed,
        votes: a.votes.iter().map(vote_to_proto).collect(),
        status: approval_status_to_proto(a.status).into(),
        reason: a.reason.clone(),
        created_at_ms: a.created_at,
        expires_at_ms: a.expires_at,
        node: a.node,
    }
}

pub fn session_to_proto(s: &Session) -> proto::Session {
    proto::Session {
        id: s.id.clone(),
        identity: s.identity.clone(),
        resource: s.resource.clone(),
        protocol: protocol_to_proto(s.protocol).into(),
        node: s.node,
        client_addr: s.client_addr.clone(),
        started_at_ms: s.started_at,
        ended_at_ms: s.ended_at,
        status: session_status_to_proto(s.status).into(),
        events: s.events,
    }
}

pub fn event_to_proto(e: &Event) -> proto::Event {
    proto::Event {
        session_id: e.session_id.clone(),
        seq: e.seq,
        at_ms: e.at,
        kind: e.kind.clone(),
        detail_json: e.detail.as_json().to_string(),
    }
}

// === inbound ===

/// Names of resources and policies: non-empty, no surrounding whitespace, no control
/// characters (they appear in keys, logs and tables).
pub fn validate_name(what: &str, name: &str) -> Result<(), Status> {
    if name.is_empty() {
        return Err(Status::invalid_argument(format!("{what} name is empty")));
    }
    if name.trim() != name || name.chars().any(char::is_control) {
        return Err(Status::invalid_argument(format!(
            "{what} name {name:?} has surrounding whitespace or control characters"
        )));
    }
    Ok(())
}

/// The resource to store for a put request, with its already sealed secret.
/// `secret` and `logins` are already sealed by the caller (the plaintext never gets here).
pub fn resource_from_put(
    req: proto::PutResourceRequest,
    secret: Option<SealedSecret>,
    logins: Vec<model::GroupLogin>,
    at: Millis,
) -> Result<Resource, Status> {
    validate_name("resource", &req.name)?;
    let protocol = protocol_from_proto(req.protocol)?;
    let audit = audit_from_proto(req.audit)?;
    if req.address.trim().is_empty() {
        return Err(Status::invalid_argument(format!("resource {}: address is empty", req.name)));
    }
    Ok(Resource {
        name: req.name,
        protocol,
        address: req.address,
        username: req.username.filter(|u| !u.is_empty()),
        secret,
        audit,
        options: req.options.into_iter().collect::<BTreeMap<_, _>>(),
        updated_at: at,
        logins,
    })
}

pub fn session_filter_from_proto(f: &proto::SessionFilter) -> model::SessionFilter {
    SessionFilter {
        identity: f.identity.clone().filter(|s| !s.is_empty()),
        resource: f.resource.clone().filter(|s| !s.is_empty()),
        since: f.since_ms,
        until: f.until_ms,
        limit: f.limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
    }
}
