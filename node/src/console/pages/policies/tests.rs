#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use askama::Template;
use portcullis_proxy::explain::{Trial, explain};
use portcullis_proxy::policy::{PolicySet, Who, parse};

use super::*;
use crate::console::views::{Frame, User};

const DEMO: &str = r#"
name: demo
rules:
  - name: engineers-read
    match: { groups: [engineers], resources: [demo], kinds: [select] }
    action: allow
  - name: writes-need-approval
    match: { groups: [engineers], resources: [demo], kinds: [insert, update, delete] }
    action: review
    approvers: { groups: [approvers], count: 1 }
    timeout: 10m
  - name: no-truncate-or-ddl
    match: { resources: [demo], kinds: [truncate, ddl] }
    action: deny
    reason: "DDL is never allowed on demo"
  - name: mask-pii
    match: { resources: [demo] }
    action: mask
    mask: { columns: [email] }
"#;

fn engineer() -> Who {
    Who { subject: "alice".into(), groups: vec!["engineers".into()] }
}

fn tried(sql: &str) -> TesterResult {
    let set = PolicySet::new(vec![parse(DEMO).unwrap()]);
    result_of(&explain(&set, &engineer(), "demo", Trial::Sql(sql)).unwrap())
}

fn frame() -> Frame {
    Frame {
        title: "Policies".into(),
        node_id: 1,
        serving: true,
        user: Some(User { subject: "dana".into(), csrf: "the-csrf".into() }),
        active: "policies",
        refresh: None,
    }
}

#[test]
fn a_held_delete_names_its_approvers_timeout_and_masks() {
    let r = tried("DELETE FROM customers WHERE id = 1");
    assert_eq!(r.decision, "review");
    assert_eq!(r.approvers.as_deref(), Some("approvers"));
    assert_eq!(r.needed, 1);
    assert_eq!(r.timeout.as_deref(), Some("10m"));
    assert_eq!(r.rules, ["demo/writes-need-approval"]);
    assert!(r.masks.iter().any(|m| m.contains("email")), "{:?}", r.masks);
    assert_eq!(r.requests, ["delete · tables customers · writes"]);
}

#[test]
fn an_allowed_select_with_masks_reads_as_mask_and_a_drop_as_deny() {
    let r = tried("SELECT email FROM customers");
    assert_eq!(r.decision, "mask");
    assert!(r.summary.contains("masked"));
    let r = tried("DROP TABLE customers");
    assert_eq!(r.decision, "deny");
    assert!(r.reason.unwrap().contains("demo/no-truncate-or-ddl"));
    assert!(r.masks.is_empty());
}

#[test]
fn the_page_escapes_sources_and_labels_every_field() {
    let page = PoliciesPage {
        frame: frame(),
        policies: vec![PolicyRow {
            name: "demo".into(),
            updated_by: "admin".into(),
            updated_at: "2025-01-01T00:00:00Z".into(),
            source: "name: demo # <script>alert(1)</script>".into(),
            invalid: None,
        }],
        resources: vec![ResourceOption { name: "demo".into(), door: "postgres" }],
        form: TesterForm {
            input: "DELETE FROM t WHERE x = '<b>'".into(),
            resource: "demo".into(),
            ..Default::default()
        },
        result: Some(tried("DELETE FROM customers WHERE id = 1")),
        problem: None,
    }
    .render()
    .unwrap();
    assert!(!page.contains("<script>") && !page.contains("<b>"), "{page}");
    assert!(page.contains(r#"action="/policies/test""#), "{page}");
    assert!(page.contains(r#"name="csrf" value="the-csrf""#), "{page}");
    for id in ["t-subject", "t-groups", "t-resource", "t-input"] {
        assert!(page.contains(&format!(r#"<label for="{id}">"#)), "{id}: {page}");
    }
    assert!(page.contains(r#"<option value="demo" selected>demo (postgres)</option>"#), "{page}");
    assert!(page.contains("Decision: <span class=\"decision\">review</span>"), "{page}");
    assert!(page.contains("Applied by") && page.contains("admin"), "{page}");
    assert!(page.contains(r#"<a href="/policies" aria-current="page">Policies</a>"#), "{page}");
}
