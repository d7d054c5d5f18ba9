//! Refusals in HTTP's words: `application/problem+json` (RFC 9457) with the status that
//! says what the client can do about it.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use serde_json::json;

use crate::gate::Refusal;

pub type ResponseBody = BoxBody<Bytes, std::io::Error>;

/// A problem response with `status`, a short title and the detail.
pub fn problem(status: StatusCode, detail: &str, approval: Option<&str>) -> Response<ResponseBody> {
    let mut doc = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    if let (Some(id), Some(map)) = (approval, doc.as_object_mut()) {
        map.insert("approval".into(), json!(id));
    }
    let body = Full::new(Bytes::from(doc.to_string())).map_err(|never| match never {}).boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/problem+json"));
    if matches!(status, StatusCode::SERVICE_UNAVAILABLE) {
        response.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
    }
    if let Some(Ok(v)) = approval.map(HeaderValue::from_str) {
        response.headers_mut().insert("portcullis-approval", v);
    }
    response
}

/// The status for each way the gate refuses a request (exhaustive: a new refusal must
/// be placed).
pub fn refusal_status(refusal: &Refusal) -> StatusCode {
    match refusal {
        Refusal::LeaseLost
        | Refusal::LeaseLostWhileHeld { .. }
        | Refusal::HoldNotRecorded { .. }
        | Refusal::AuditNotCommitted { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Refusal::Unclassifiable { .. } => StatusCode::BAD_REQUEST,
        Refusal::Denied { .. } | Refusal::ApprovalDenied { .. } | Refusal::Undecided { .. } => StatusCode::FORBIDDEN,
        Refusal::ApprovalExpired { .. } => StatusCode::FORBIDDEN,
        // Nobody is listening any more; the status is for the record.
        Refusal::CanceledWhileHeld { .. } | Refusal::ClientGoneWhileHeld { .. } => StatusCode::REQUEST_TIMEOUT,
        Refusal::Unsupported { .. } => StatusCode::NOT_IMPLEMENTED,
        Refusal::Deferred { .. } => StatusCode::ACCEPTED,
        Refusal::ApprovalUnusable { .. } => StatusCode::FORBIDDEN,
    }
}

pub fn refusal(refusal: &Refusal) -> Response<ResponseBody> {
    if let Refusal::Deferred { approval, decide_by } = refusal {
        return deferred(approval, *decide_by, &refusal.to_string());
    }
    problem(refusal_status(refusal), &refusal.to_string(), refusal.approval())
}

/// 202 for a deferred request (`Prefer: respond-async`): which approval to wait for,
/// where to see it, and how to repeat the request (RFC 7240's "respond-async" answer).
fn deferred(approval: &str, decide_by: u64, detail: &str) -> Response<ResponseBody> {
    let status_url = format!("/approvals/{approval}");
    let doc = json!({
        "status": "pending",
        "approval": approval,
        "decide_by_ms": decide_by,
        "detail": detail,
        "status_url": status_url,
        "retry": { "header": "Portcullis-Approval", "value": approval },
    });
    let body = Full::new(Bytes::from(doc.to_string())).map_err(|never| match never {}).boxed();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::ACCEPTED;
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("preference-applied", HeaderValue::from_static("respond-async"));
    if let Ok(v) = HeaderValue::from_str(approval) {
        headers.insert("portcullis-approval", v);
    }
    if let Ok(v) = HeaderValue::from_str(&status_url) {
        headers.insert("location", v);
    }
    response
}
