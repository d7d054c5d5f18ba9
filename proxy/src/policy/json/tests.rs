#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
//! `match.json`: the grammar, its errors, and decisions on bodies policy can and
//! cannot read.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Cmp, JsonBody, JsonTest, Pointer};
use crate::error::Error;
use crate::policy::{Decision, PolicySet, Protocol, Request, Verdict, Who, parse};

const REFUNDS: &str = r#"
name: refunds
rules:
  - name: small-refunds
    match: { groups: [engineers], protocols: [http], kinds: [post], json: { "/amount": "<=1000", "/currency": EUR } }
    action: allow
  - name: large-refunds
    match: { protocols: [http], kinds: [post], json: { "/amount": ">1000" } }
    action: deny
    reason: refunds over 1000 need finance
"#;

fn set(source: &str) -> PolicySet {
    PolicySet::new(vec![parse(source).unwrap()])
}

fn post(json: JsonBody) -> Request {
    Request {
        resource: "demo-api".into(),
        protocol: Protocol::Http,
        kind: "post".into(),
        tables: Vec::new(),
        functions: Vec::new(),
        commands: Vec::new(),
        path: Some("/orders/3/refund".into()),
        text: "POST /orders/3/refund".into(),
        missing_where: false,
        dynamic_sql: false,
        locks_rows: false,
        json,
        writes: true,
    }
}

fn body(v: Value) -> JsonBody {
    JsonBody::Parsed(Arc::new(v))
}

fn decide(source: &str, json: JsonBody) -> Decision {
    let who = Who { subject: "alice".into(), groups: vec!["engineers".into()] };
    set(source).decide(&who, &post(json))
}

fn rule_of(d: &Decision) -> &str {
    d.rule.as_deref().unwrap_or("(default deny)")
}

/// Parses `source`, expecting an error; returns (line, reason).
fn invalid(source: &str) -> (usize, String) {
    match parse(source) {
        Err(Error::PolicyInvalid { line, reason, .. }) => (line, reason),
        other => panic!("expected a policy error, got {other:?}"),
    }
}

// === decisions ===

#[test]
fn every_condition_must_hold_for_an_allow() {
    let d = decide(REFUNDS, body(json!({"amount": 10, "currency": "EUR"})));
    assert_eq!((&d.verdict, rule_of(&d)), (&Verdict::Allow, "refunds/small-refunds"));
    let d = decide(REFUNDS, body(json!({"amount": 10, "currency": "USD"})));
    assert_eq!(rule_of(&d), "(default deny)", "{d:?}");
    let d = decide(REFUNDS, body(json!({"currency": "EUR"})));
    assert_eq!(rule_of(&d), "(default deny)", "a missing amount is not small: {d:?}");
}

#[test]
fn a_large_amount_is_denied_whatever_else_the_body_says() {
    for v in [json!({"amount": 5000, "currency": "EUR"}), json!({"amount": 1000.5}), json!({"amount": "5000"})] {
        let d = decide(REFUNDS, body(v.clone()));
        assert!(matches!(d.verdict, Verdict::Deny { .. }), "{v}: {d:?}");
        assert_eq!(rule_of(&d), "refunds/large-refunds", "{v}");
    }
}

#[test]
fn an_unreadable_body_satisfies_deny_rules_and_never_allow_rules() {
    let d = decide(REFUNDS, JsonBody::Unreadable);
    assert_eq!(rule_of(&d), "refunds/large-refunds", "{d:?}");
    let allow_only = "name: a\nrules:\n  - match: { json: { \"/amount\": \"<=1000\" } }\n    action: allow\n";
    let d = decide(allow_only, JsonBody::Unreadable);
    assert_eq!(rule_of(&d), "(default deny)", "{d:?}");
    // A value a comparison cannot read as a number is in doubt the same way.
    for v in [json!({"amount": "5000abc"}), json!({"amount": [5000]}), json!({"amount": null})] {
        assert_eq!(rule_of(&decide(REFUNDS, body(v.clone()))), "refunds/large-refunds", "{v}");
        assert_eq!(rule_of(&decide(allow_only, body(v.clone()))), "(default deny)", "{v}");
    }
}

#[test]
fn no_body_matches_no_json_rule() {
    let d = decide(REFUNDS, JsonBody::Absent);
    assert_eq!(rule_of(&d), "(default deny)", "{d:?}");
    assert!(set(REFUNDS).reads_json());
    assert!(!set("name: a\nrules:\n  - action: allow\n").reads_json());
}

#[test]
fn a_review_rule_in_doubt_holds_and_a_mask_rule_in_doubt_masks() {
    let source = r#"
name: r
rules:
  - match: { kinds: [post] }
    action: allow
  - match: { json: { "/force": true } }
    action: review
    approvers: { groups: [dba] }
  - match: { json: { "/kind": { exists: true } } }
    action: mask
    mask: { detectors: [email] }
"#;
    let d = decide(source, JsonBody::Unreadable);
    assert!(matches!(d.verdict, Verdict::Review { .. }), "{d:?}");
    assert!(!d.masks.is_empty(), "{d:?}");
    let d = decide(source, body(json!({"force": false})));
    assert_eq!(d.verdict, Verdict::Allow);
    assert!(d.masks.is_empty(), "{d:?}");
    let d = decide(source, body(json!({"force": true, "kind": null})));
    assert!(matches!(d.verdict, Verdict::Review { .. }), "{d:?}");
    assert!(!d.masks.is_empty(), "{d:?}");
}

// === the grammar ===

#[test]
fn literals_compare_by_value_and_operators_by_number() {
    let source = r#"
name: g
rules:
  - match: { json: { "/n": 10, "/s": "EUR", "/b": true, "/z": null, "/a": [1, "x"], "/o": { equals: { k: 1 } }, "/lit": { equals: ">5" } } }
    action: allow
"#;
    let good = json!({"n": 10.0, "s": "EUR", "b": true, "z": null, "a": [1.0, "x"], "o": {"k": 1}, "lit": ">5"});
    assert_eq!(decide(source, body(good.clone())).verdict, Verdict::Allow);
    for (key, bad) in
        [("n", json!("10")), ("s", json!("eur")), ("b", json!("true")), ("z", json!(0)), ("lit", json!(6))]
    {
        let mut v = good.clone();
        v[key] = bad;
        assert_ne!(decide(source, body(v.clone())).verdict, Verdict::Allow, "{v}");
    }
    assert_eq!(JsonTest::parse(&json!(">= 2.5")).unwrap(), JsonTest::Compare(Cmp::Ge, 2.5));
    assert_eq!(JsonTest::parse(&json!("<-1")).unwrap(), JsonTest::Compare(Cmp::Lt, -1.0));
    assert_eq!(JsonTest::parse(&json!({"exists": false})).unwrap(), JsonTest::Exists(false));
    assert_eq!(JsonTest::parse(&json!("*")).unwrap(), JsonTest::Equals(json!("*")));
}

#[test]
fn pointers_follow_rfc_6901() {
    let doc = json!({"a/b": 1, "m~n": 2, "items": [{"sku": "x"}, {"sku": "y"}], "": 3, "01": 4});
    let find = |p: &str| Pointer::parse(p).unwrap().find(&doc).cloned();
    assert_eq!(find("/a~1b"), Some(json!(1)));
    assert_eq!(find("/m~0n"), Some(json!(2)));
    assert_eq!(find("/items/1/sku"), Some(json!("y")));
    assert_eq!(find("/"), Some(json!(3)));
    assert_eq!(find("/01"), Some(json!(4)), "an object key, not an index");
    assert_eq!(find("/items/01"), None, "no leading zeros in an index");
    assert_eq!(find("/items/-"), None);
    assert_eq!(find("/items/2"), None);
    assert_eq!(find(""), Some(doc.clone()));
    assert!(Pointer::parse("amount").is_err());
    assert!(Pointer::parse("/a~2").is_err());
    assert!(Pointer::parse("/a~").is_err());
}

#[test]
fn a_bad_pointer_or_operator_is_refused_naming_the_rule() {
    let (line, reason) =
        invalid("name: p\nrules:\n  - name: refunds\n    match:\n      json:\n        amount: 5\n    action: deny\n");
    assert_eq!(line, 6, "{reason}");
    assert!(reason.contains("rule p/refunds") && reason.contains("must start with /"), "{reason}");
    let (_, reason) = invalid("name: p\nrules:\n  - match: { json: { \"/amount\": \">lots\" } }\n    action: deny\n");
    assert!(reason.contains("rule p/#1") && reason.contains("not a comparison"), "{reason}");
    let (_, reason) = invalid("name: p\nrules:\n  - match: { json: { \"/a~2\": 1 } }\n    action: deny\n");
    assert!(reason.contains("~ must be followed by 0"), "{reason}");
    let (_, reason) = invalid("name: p\nrules:\n  - match: { json: { \"/a\": { gt: 1 } } }\n    action: deny\n");
    assert!(reason.contains("unknown condition \"gt\""), "{reason}");
    let (_, reason) =
        invalid("name: p\nrules:\n  - match: { json: { \"/a\": { exists: yes please } } }\n    action: deny\n");
    assert!(reason.contains("exists takes true or false"), "{reason}");
    let (_, reason) = invalid("name: p\nrules:\n  - match: { json: {} }\n    action: deny\n");
    assert!(reason.contains("match.json is empty"), "{reason}");
}

#[test]
fn the_documented_example_parses() {
    let source = r#"
name: docs
rules:
  - name: large-refunds
    match:
      kinds: [post]
      paths: ["/orders/*/refund"]
      json:
        "/amount": ">1000"          # numeric comparison: > >= < <= and a number
        "/currency": EUR            # any other value: equal to this JSON literal
        "/force": true
        "/items/0/sku": { exists: true }    # present (false: absent)
        "/note": { equals: ">5" }           # equality with a literal string that starts with > or <
    action: review
    approvers: { groups: [finance] }
"#;
    let doc = parse(source).unwrap();
    let json = doc.rules[0].matcher.json.as_ref().unwrap();
    assert_eq!(json.conditions.len(), 5);
    assert!(json.doubt_matches, "a review rule matches in doubt");
    let hit = json!({"amount": 1500, "currency": "EUR", "force": true, "items": [{"sku": "a"}], "note": ">5"});
    assert!(json.matches(&body(hit)));
}
