//! Requests that will not wait for an approver (RFC 7240 `Prefer: respond-async`): the
//! door answers 202 with the approval to wait for (`reply`), and the client repeats the
//! same request with `Portcullis-Approval: <id>` once it is approved; the approval
//! covers exactly that request ([`request_digest`]) and is used once (the gate's
//! `deferred`). `GET /approvals/<id>[?wait=SECS]` tells the requester where it stands,
//! waiting up to [`MAX_WAIT`] for a decision.

use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use ring::digest;
use serde_json::json;

use super::reply::{ResponseBody, problem};
use crate::identity::Verifier;
use crate::store::Store;

/// The header a repeated request names its approval in.
pub const APPROVAL_HEADER: &str = "portcullis-approval";

/// The longest `GET /approvals/<id>?wait=` waits for a decision.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Whether the client asked not to wait (`Prefer: respond-async`, any of its values).
pub fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.split(';').next().is_some_and(|name| name.trim().eq_ignore_ascii_case("respond-async")))
}

/// The approval a repeated request presents; `Err` when the header is there but unusable
/// (several, or not text): the request is refused rather than decided without it.
pub fn presented_approval(headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    let mut values = headers.get_all(APPROVAL_HEADER).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err("more than one Portcullis-Approval header"),
        (Some(v), None) => {
            let id = v.to_str().map_err(|_| "a Portcullis-Approval header that is not text")?.trim();
            if id.is_empty() || id.len() > 128 {
                return Err("an empty or overlong Portcullis-Approval header");
            }
            Ok(Some(id.to_string()))
        }
    }
}

/// What one approval covers: the resource, method, path, query and body, each
/// length-prefixed so no two requests share a digest by moving bytes between parts.
pub fn request_digest(resource: &str, method: &Method, path: &str, query: &str, body: &[u8]) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in [resource.as_bytes(), method.as_str().as_bytes(), path.as_bytes(), query.as_bytes(), body] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET /approvals/<id>[?wait=SECS]`: the approval as its requester may see it (anyone
/// else gets 404, as for an approval that does not exist).
pub async fn status<S: Store>(
    store: &S,
    verifier: &Verifier,
    headers: &HeaderMap,
    id: &str,
    query: &str,
) -> http::Response<ResponseBody> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .unwrap_or_default();
    let identity = match verifier.verify(token).await {
        Ok(identity) => identity,
        Err(e) => return problem(StatusCode::UNAUTHORIZED, &e.to_string(), None),
    };
    let wait = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("wait="))
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(Duration::ZERO, |s| Duration::from_secs(s).min(MAX_WAIT));
    let approval = match store.wait_approval(id, wait).await {
        Ok(Some(a)) if a.requester == identity.subject => a,
        Ok(_) => return problem(StatusCode::NOT_FOUND, &format!("no approval {id} of yours"), None),
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), None),
    };
    let status = match approval.status {
        portcullis_raft::model::ApprovalStatus::Approved if approval.used_at.is_some() => "used",
        portcullis_raft::model::ApprovalStatus::Pending => "pending",
        portcullis_raft::model::ApprovalStatus::Approved => "approved",
        portcullis_raft::model::ApprovalStatus::Denied => "denied",
        portcullis_raft::model::ApprovalStatus::Expired => "expired",
    };
    let doc = json!({
        "approval": approval.id,
        "status": status,
        "reason": approval.reason,
        "action": approval.action,
        "decide_by_ms": approval.expires_at,
        "usable_until_ms": approval.usable_until(),
        "retry": { "header": "Portcullis-Approval", "value": approval.id },
    });
    let body = Full::new(Bytes::from(doc.to_string())).map_err(|never| match never {}).boxed();
    let mut response = http::Response::new(body);
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn respond_async_is_found_among_other_preferences_in_any_case() {
        assert!(prefers_async(&headers(&[("prefer", "respond-async")])));
        assert!(prefers_async(&headers(&[("prefer", "return=minimal, Respond-Async; wait=10")])));
        assert!(prefers_async(&headers(&[("prefer", "wait=5"), ("prefer", "respond-async")])));
        assert!(!prefers_async(&headers(&[("prefer", "return=representation")])));
        assert!(!prefers_async(&headers(&[("prefer", "respond-asynchronously")])));
        assert!(!prefers_async(&HeaderMap::new()));
    }

    #[test]
    fn an_approval_header_must_be_one_short_text() {
        assert_eq!(presented_approval(&HeaderMap::new()), Ok(None));
        assert_eq!(presented_approval(&headers(&[("portcullis-approval", " a1 ")])), Ok(Some("a1".into())));
        assert!(presented_approval(&headers(&[("portcullis-approval", "a1"), ("portcullis-approval", "a2")])).is_err());
        assert!(presented_approval(&headers(&[("portcullis-approval", "")])).is_err());
    }

    #[test]
    fn the_digest_covers_every_part_and_where_each_ends() {
        let d = |path: &str, query: &str, body: &[u8]| request_digest("api", &Method::POST, path, query, body);
        let base = d("/orders", "a=1", b"{}");
        assert_eq!(base, d("/orders", "a=1", b"{}"));
        assert_ne!(base, d("/orders", "a=2", b"{}"));
        assert_ne!(base, d("/orders", "a=1", b"{ }"));
        assert_ne!(base, request_digest("api", &Method::PUT, "/orders", "a=1", b"{}"));
        assert_ne!(base, request_digest("other", &Method::POST, "/orders", "a=1", b"{}"));
        // Bytes moved from the path into the query are another request.
        assert_ne!(d("/ordersa", "=1", b"{}"), base);
    }
}
