#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use portcullis_raft::Error;
use tonic::Code;

use crate::error::{ApiError, status_from_raft};

#[test]
fn availability_errors_are_unavailable() {
    for err in [Error::NoLeader, Error::NotServing { reason: "lease expired".into() }] {
        assert_eq!(status_from_raft(&err).code(), Code::Unavailable);
    }
}

#[test]
fn refusals_saying_no_are_not_found() {
    let status = status_from_raft(&Error::Rejected("no resource named db".into()));
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "no resource named db");
}

#[test]
fn other_refusals_are_failed_precondition() {
    let status = status_from_raft(&Error::Rejected("alice requested a1 and may not decide their own request".into()));
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status_from_raft(&Error::NotInitialized).code(), Code::FailedPrecondition);
}

#[test]
fn storage_errors_are_internal() {
    let err = Error::Storage { path: "/d".into(), detail: "disk".into() };
    assert_eq!(status_from_raft(&err).code(), Code::Internal);
}

#[test]
fn status_display_is_the_server_message() {
    let err = ApiError::Status { code: Code::FailedPrecondition, message: "approval a1 is already approved".into() };
    assert_eq!(err.to_string(), "approval a1 is already approved");
    let err = ApiError::Status { code: Code::PermissionDenied, message: "alice is not an approver".into() };
    assert_eq!(err.to_string(), "permission denied: alice is not an approver");
}

#[test]
fn endpoint_needs_scheme_and_host() {
    assert!(crate::client::parse_endpoint("127.0.0.1:7101").is_err());
    assert!(crate::client::parse_endpoint("ftp://127.0.0.1:7101").is_err());
    let Ok((_, domain, tls)) = crate::client::parse_endpoint("https://localhost:7101") else {
        panic!("https URL rejected");
    };
    assert_eq!(domain, "localhost");
    assert!(tls);
    let Ok((_, domain, tls)) = crate::client::parse_endpoint("http://[::1]:7101") else {
        panic!("IPv6 URL rejected");
    };
    assert_eq!(domain, "::1");
    assert!(!tls);
}

#[tokio::test]
async fn refused_connection_names_the_endpoint_and_the_fix() {
    // Bind then drop a listener to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let Err(err) = crate::AdminClient::connect(&endpoint, None, None).await else {
        panic!("connected to a closed port");
    };
    assert_eq!(err.to_string(), format!("cannot reach {endpoint}: connection refused (is the node running?)"));
}

#[tokio::test]
async fn https_without_ca_is_refused_before_dialing() {
    let Err(err) = crate::AdminClient::connect("https://127.0.0.1:1", None, None).await else {
        panic!("connected without a CA");
    };
    assert!(matches!(err, ApiError::InvalidInput(_)), "{err}");
}
