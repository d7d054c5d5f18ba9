#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use portcullis_api::proto;

use super::{Body, read};

fn event(seq: u64, kind: &str, detail: &str) -> proto::Event {
    proto::Event {
        session_id: "s1".into(),
        seq,
        at_ms: 1_700_000_000_000 + seq,
        kind: kind.into(),
        detail_json: detail.into(),
    }
}

#[test]
fn statements_take_their_results_and_refusals_stand_alone() {
    let story = read(&[
        event(0, "start", r#"{"backend_user":"app","settings":{"application_name":"psql"}}"#),
        event(
            1,
            "statement",
            r#"{"sql":"SELECT 1","kinds":["read"],"decision":"allow","rules":["demo/reads"],"approval":null,"masked":true}"#,
        ),
        event(2, "result", r#"{"tags":["SELECT 1"],"rows":1,"error":null,"duration_ms":1.5,"preview":[["***",null]]}"#),
        event(3, "refused", r#"{"sql":"DROP TABLE t","kinds":["ddl"],"rules":[],"approval":null,"reason":"no DDL"}"#),
        event(
            4,
            "statement",
            r#"{"sql":"DELETE FROM t","kinds":["write"],"decision":"approved","rules":["demo/writes"],"approval":"a-1","masked":false}"#,
        ),
        event(5, "result", r#"{"tags":["DELETE 1"],"rows":0,"error":null,"duration_ms":2.0,"preview":[]}"#),
    ]);
    assert_eq!(story.backend_login.as_deref(), Some("app"));
    assert_eq!(story.settings, vec!["application_name = psql".to_string()]);
    assert_eq!(story.items.len(), 3);
    let works: Vec<_> = story
        .items
        .iter()
        .map(|i| match &i.body {
            Body::Work(w) => w,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(works[0].decision, "allow");
    assert_eq!(works[0].outcome.as_ref().unwrap().preview, vec![vec!["***".to_string(), "NULL".to_string()]]);
    assert_eq!(works[1].decision, "refused");
    assert_eq!(works[1].reason.as_deref(), Some("no DDL"));
    assert!(works[1].outcome.is_none());
    assert_eq!(works[2].approval.as_deref(), Some("a-1"));
    assert_eq!(works[2].outcome.as_ref().unwrap().tags, vec!["DELETE 1".to_string()]);
}

#[test]
fn unknown_and_malformed_events_are_shown_raw_and_terminals_are_found() {
    let story = read(&[
        event(0, "recording", r#"{"channel":2,"seq":0,"events":[]}"#),
        event(1, "recording", r#"{"channel":2,"seq":1,"events":[]}"#),
        event(2, "telepathy", r#"{"thought":"<script>"}"#),
        event(3, "statement", "not json"),
        event(4, "file", r#"{"op":"download","path":"/etc/motd","bytes":12}"#),
    ]);
    assert_eq!(story.terminals, vec![2]);
    assert!(
        matches!(&story.items[0].body, Body::Raw { kind, json } if kind == "telepathy" && json.contains("<script>"))
    );
    assert!(matches!(&story.items[1].body, Body::Raw { json, .. } if json == "not json"));
    assert!(matches!(&story.items[2].body, Body::Line { text, .. } if text == "download /etc/motd (12 bytes)"));
}
