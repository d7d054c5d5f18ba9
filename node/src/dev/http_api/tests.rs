#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
//! The demo-api policy parses and decides what the playground's steps promise, and
//! the resource is registered the way a resource file with `credential:` would be.

use std::path::PathBuf;

use portcullis_proxy::mask::Detector;
use portcullis_proxy::policy::{Decision, PolicySet, Protocol, Request, Verdict, Who, parse};

use super::{ApiInfo, DEMO_API_POLICY};

fn decide(groups: &[&str], method: &str) -> Decision {
    let set = PolicySet::new(vec![parse(DEMO_API_POLICY).unwrap()]);
    let who = Who { subject: "alice".into(), groups: groups.iter().map(|g| g.to_string()).collect() };
    let request = Request {
        resource: "demo-api".into(),
        protocol: Protocol::Http,
        kind: method.to_ascii_lowercase(),
        tables: vec![],
        functions: vec![],
        commands: vec![],
        path: Some("/orders/3".into()),
        text: format!("{method} /orders/3"),
        missing_where: false,
        dynamic_sql: false,
        locks_rows: false,
        json: Default::default(),
        writes: !matches!(method, "GET" | "HEAD"),
    };
    set.decide(&who, &request)
}

#[test]
fn demo_api_policy_parses() {
    assert_eq!(parse(DEMO_API_POLICY).unwrap().name, "demo-api");
}

#[test]
fn engineers_read_and_reads_are_masked() {
    for method in ["GET", "HEAD"] {
        let d = decide(&["engineers"], method);
        assert_eq!(d.verdict, Verdict::Allow, "{method}: {d:?}");
        for detector in [Detector::Email, Detector::ApiKey, Detector::Jwt] {
            assert!(d.masks.detectors.contains(&detector), "{method}: {detector:?} in {:?}", d.masks);
        }
    }
}

#[test]
fn engineers_changes_wait_for_one_approver() {
    for method in ["POST", "PUT", "PATCH"] {
        match decide(&["engineers"], method).verdict {
            Verdict::Review { approver_groups, approvals_needed, .. } => {
                assert_eq!(approver_groups, ["approvers"], "{method}");
                assert_eq!(approvals_needed, 1, "{method}");
            }
            other => panic!("{method}: {other:?}"),
        }
    }
}

#[test]
fn deletes_are_denied_with_a_reason_for_everyone() {
    for groups in [&["engineers"][..], &["approvers", "admin"][..]] {
        match decide(groups, "DELETE").verdict {
            Verdict::Deny { reason } => assert!(reason.contains("never allowed"), "{reason}"),
            other => panic!("{groups:?}: {other:?}"),
        }
    }
}

#[test]
fn other_methods_and_strangers_are_denied_by_default() {
    assert!(matches!(decide(&["engineers"], "OPTIONS").verdict, Verdict::Deny { .. }));
    assert!(matches!(decide(&["visitors"], "GET").verdict, Verdict::Deny { .. }));
}

#[test]
fn resource_carries_the_key_as_a_sealed_bearer_credential() {
    let info = ApiInfo {
        port: 20123,
        pid: 1,
        dir: PathBuf::from("/tmp/x/demo-api"),
        log: PathBuf::from("/tmp/x/demo-api-requests.log"),
        key: "demo_k3y".into(),
    };
    let r = info.resource().unwrap();
    assert_eq!(r.name, "demo-api");
    assert_eq!(r.protocol(), portcullis_api::proto::Protocol::Http);
    assert_eq!(r.address, "http://127.0.0.1:20123");
    assert_eq!(r.secret.as_deref(), Some("demo_k3y"));
    assert_eq!(r.username, None);
    assert_eq!(r.audit(), portcullis_api::proto::AuditMode::Strict);
    assert_eq!(r.options.get("credential").map(String::as_str), Some("bearer"));
    assert_eq!(r.options.len(), 1, "{:?}", r.options);
    let listed = info.json().to_string();
    assert!(!listed.contains("demo_k3y"), "cluster.json must not hold the key: {listed}");
}
