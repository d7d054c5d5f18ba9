#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use super::*;
use crate::policy::parse;

const POLICY: &str = r#"
name: demo
rules:
  - name: engineers-read
    match: { groups: [engineers], resources: [demo], kinds: [select] }
    action: allow
  - name: writes-need-approval
    match: { groups: [engineers], resources: [demo], kinds: [insert, update, delete] }
    action: review
    reason: "writes to demo need a second pair of eyes"
    approvers: { groups: [approvers], count: 1 }
    timeout: 10m
  - name: no-ddl
    match: { resources: [demo], kinds: [truncate, ddl] }
    action: deny
    reason: "DDL is never allowed on demo"
  - name: mask-pii
    match: { resources: [demo] }
    action: mask
    mask: { columns: [email], detectors: [ssn] }
  - name: ssh-read
    match: { groups: [engineers], resources: [demo-ssh], only_commands: [ls, cat] }
    action: allow
  - name: ssh-rm
    match: { groups: [engineers], resources: [demo-ssh], commands: [rm] }
    action: review
    approvers: { groups: [sre], count: 2 }
  - name: api-read
    match: { groups: [engineers], resources: [demo-api], kinds: [get] }
    action: allow
  - name: api-no-deletes
    match: { resources: [demo-api], kinds: [delete] }
    action: deny
    reason: "nothing is deleted through demo-api"
  - name: api-big-refunds
    match: { resources: [demo-api], kinds: [post], paths: ["/orders/*/refund"], json: { "/amount": ">1000" } }
    action: review
    approvers: { groups: [finance] }
"#;

fn policies() -> PolicySet {
    PolicySet::new(vec![parse(POLICY).unwrap()])
}

fn engineer() -> Who {
    Who { subject: "alice".into(), groups: vec!["engineers".into()] }
}

fn review(e: &Explanation) -> &crate::gate::Review {
    match &e.judgement.verdict {
        Combined::Review(r) => r,
        other => panic!("not a review: {other:?}"),
    }
}

fn denial(e: &Explanation) -> &str {
    match &e.judgement.verdict {
        Combined::Deny { reason } => reason,
        other => panic!("not a deny: {other:?}"),
    }
}

#[test]
fn a_delete_is_held_for_the_approvers_the_rule_names() {
    let e = explain(&policies(), &engineer(), "demo", Trial::Sql("DELETE FROM customers WHERE id = 1")).unwrap();
    let r = review(&e);
    assert_eq!(r.groups, ["approvers"]);
    assert_eq!(r.needed, 1);
    assert_eq!(r.timeout, Duration::from_secs(600));
    assert_eq!(r.reason, "writes to demo need a second pair of eyes");
    assert_eq!(e.judgement.rules, ["demo/writes-need-approval"]);
    assert_eq!(e.requests[0].kind, "delete");
    assert_eq!(e.requests[0].tables, ["customers"]);
    assert!(!e.judgement.masks.is_empty(), "a held write's results are masked when it runs");
    assert!(e.door_refusal.is_none());
}

#[test]
fn drop_table_is_denied_naming_the_rule() {
    let e = explain(&policies(), &engineer(), "demo", Trial::Sql("DROP TABLE customers")).unwrap();
    let reason = denial(&e);
    assert!(reason.contains("rule demo/no-ddl") && reason.contains("DDL is never allowed"), "{reason}");
    assert!(e.judgement.masks.is_empty(), "a denial masks nothing");
}

#[test]
fn every_statement_of_a_string_counts_and_a_deny_anywhere_denies() {
    let e = explain(&policies(), &engineer(), "demo", Trial::Sql("SELECT 1; DROP TABLE t")).unwrap();
    assert!(denial(&e).contains("demo/no-ddl"));
    let e = explain(&policies(), &engineer(), "demo", Trial::Sql("SELECT email FROM customers")).unwrap();
    assert_eq!(e.judgement.verdict, Combined::Allow);
    assert!(e.caveats.iter().any(|c| c.contains("lineage")), "{:?}", e.caveats);
}

#[test]
fn sql_the_door_cannot_parse_is_refused_by_the_door_not_policy() {
    let e = explain(&policies(), &engineer(), "demo", Trial::Sql("SELEC * FROM t")).unwrap();
    assert!(e.requests.is_empty());
    assert!(denial(&e).contains("syntax error"), "{}", denial(&e));
    assert!(e.door_refusal.is_some());
}

#[test]
fn function_calls_count_as_writes_without_the_catalog_and_say_so() {
    let e = explain(&policies(), &engineer(), "demo", Trial::Sql("SELECT lower(name) FROM customers")).unwrap();
    assert!(e.requests[0].writes);
    assert!(e.caveats.iter().any(|c| c.contains("catalog")), "{:?}", e.caveats);
}

#[test]
fn an_unknown_group_gets_the_default_deny() {
    let nobody = Who { subject: "zed".into(), groups: vec![] };
    let e = explain(&policies(), &nobody, "demo", Trial::Sql("SELECT 1")).unwrap();
    assert!(denial(&e).contains("no policy rule allows select on demo for zed"), "{}", denial(&e));
}

#[test]
fn an_ssh_rm_anywhere_in_the_line_is_held() {
    let e = explain(&policies(), &engineer(), "demo-ssh", Trial::Command("ls && sudo rm x")).unwrap();
    let r = review(&e);
    assert_eq!(r.groups, ["sre"]);
    assert_eq!(r.needed, 2);
    let names: Vec<_> = e.requests[0].commands.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&"rm") && names.contains(&"ls"), "{names:?}");
    let e = explain(&policies(), &engineer(), "demo-ssh", Trial::Command("ls -l | cat")).unwrap();
    assert_eq!(e.judgement.verdict, Combined::Allow);
}

#[test]
fn an_ssh_line_the_door_cannot_read_is_refused_by_the_door() {
    let e = explain(&policies(), &engineer(), "demo-ssh", Trial::Command("ls $(")).unwrap();
    assert_eq!(e.requests[0].kind, "unknown");
    assert!(e.door_refusal.is_some());
    assert!(matches!(e.judgement.verdict, Combined::Deny { .. }));
}

#[test]
fn an_http_delete_is_denied_and_a_get_allowed() {
    let e = explain(&policies(), &engineer(), "demo-api", Trial::Http("DELETE /orders/1")).unwrap();
    assert!(denial(&e).contains("demo/api-no-deletes"), "{}", denial(&e));
    let e =
        explain(&policies(), &engineer(), "demo-api", Trial::Http("get /r/demo-api/orders?limit=5 HTTP/1.1")).unwrap();
    assert_eq!(e.judgement.verdict, Combined::Allow);
    assert_eq!(e.requests[0].path.as_deref(), Some("/orders"));
    assert_eq!(e.requests[0].text, "GET /orders?limit=5");
}

#[test]
fn an_http_body_is_read_as_json_when_a_rule_reads_it() {
    let big = "POST /orders/7/refund\n\n{\"amount\": 5000}";
    let e = explain(&policies(), &engineer(), "demo-api", Trial::Http(big)).unwrap();
    assert_eq!(review(&e).groups, ["finance"]);
    let small = "POST /orders/7/refund\n\n{\"amount\": 5}";
    let e = explain(&policies(), &engineer(), "demo-api", Trial::Http(small)).unwrap();
    assert!(matches!(e.judgement.verdict, Combined::Deny { .. }), "no rule allows a small refund");
}

#[test]
fn an_http_line_without_method_and_path_is_untestable() {
    for bad in ["", "DELETE", "DELETE orders/1", "DE LETE /x", "GET /a b c"] {
        let e = explain(&policies(), &engineer(), "demo-api", Trial::Http(bad)).unwrap_err();
        assert!(matches!(e, Error::Untestable { .. }), "{bad}: {e}");
    }
}
