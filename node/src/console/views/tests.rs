#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use super::*;

fn frame(serving: bool, user: bool) -> Frame {
    Frame {
        title: "Approvals".into(),
        node_id: 2,
        serving,
        user: user.then(|| User { subject: "bob".into(), csrf: "the-csrf".into() }),
        active: "approvals",
        refresh: None,
    }
}

#[test]
fn waiting_times_read_as_people_say_them() {
    assert_eq!(waited(0, 5_400), "5 s");
    assert_eq!(waited(0, 192_000), "3 min 12 s");
    assert_eq!(waited(0, 7_260_000), "2 h 1 min");
    assert_eq!(waited(10_000, 0), "0 s", "a clock behind the record is not negative");
}

#[test]
fn every_page_has_the_nav_the_sign_out_form_and_its_csrf_field() {
    let page = ApprovalsPage { frame: frame(true, true), rows: vec![], notice: None }.render().unwrap();
    assert!(page.contains("<title>Approvals · Portcullis node 2</title>"), "{page}");
    assert!(page.contains(r#"<a href="/approvals" aria-current="page">Approvals</a>"#), "{page}");
    assert!(page.contains(r#"<a href="/cluster">Cluster</a>"#), "{page}");
    assert!(page.contains(r#"action="/auth/sign-out""#), "{page}");
    assert!(page.contains(r#"name="csrf" value="the-csrf""#), "{page}");
    assert!(!page.contains("No quorum"), "{page}");
    // Scripts only from the console's own files, none inline (CSP `script-src 'self'`).
    for tag in page.split("<script").skip(1) {
        assert!(tag.starts_with(r#" src="/assets/"#) && tag.contains(" defer></script>"), "<script{tag}");
    }
    assert!(page.contains(r#"<script src="/assets/console.js" defer></script>"#), "{page}");
}

#[test]
fn a_node_without_the_lease_shows_the_banner() {
    let page = MessagePage { frame: frame(false, false), heading: "x".into(), paragraphs: vec![], link: None }
        .render()
        .unwrap();
    assert!(page.contains("No quorum") && page.contains("does not hold the quorum lease"), "{page}");
    assert!(!page.contains("sign-out"), "nobody signed in, no sign-out");
}

#[test]
fn approvals_are_escaped_and_each_has_labelled_decision_controls() {
    let row = ApprovalRow {
        id: "ap-1".into(),
        requester: "alice".into(),
        action: "DELETE FROM t WHERE x = '<script>'".into(),
        resource: "demo".into(),
        node: 3,
        reason: "writes need review".into(),
        approver_groups: "approvers".into(),
        votes: "0 of 1 approvals".into(),
        waited: "5 s".into(),
        own: false,
    };
    let page = ApprovalsPage { frame: frame(true, true), rows: vec![row], notice: Some("Approved ap-0".into()) }
        .render()
        .unwrap();
    assert!(!page.contains("<script>"), "{page}");
    assert!(page.contains("&#60;script&#62;") || page.contains("&lt;script&gt;"), "{page}");
    assert!(page.contains(r#"action="/approvals/ap-1/decide""#), "{page}");
    assert!(page.contains(r#"<label for="reason-ap-1">Reason</label>"#), "{page}");
    assert!(page.contains(r#"value="approve""#) && page.contains(r#"value="deny""#), "{page}");
    assert!(page.contains("node 3") && page.contains("writes need review") && page.contains("Approved ap-0"));
}
