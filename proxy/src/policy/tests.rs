#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
//! Policy parsing (every invalid-file case with its position) and decisions end to end.

use std::time::Duration;

use super::glob::Glob;
use super::{ApprovalCovers, Command, Decision, PolicySet, Protocol, Request, Verdict, Who, parse};
use crate::error::Error;
use crate::mask::Detector;

fn set(sources: &[&str]) -> PolicySet {
    PolicySet::new(sources.iter().map(|s| parse(s).unwrap()).collect())
}

fn who(subject: &str, groups: &[&str]) -> Who {
    Who { subject: subject.to_owned(), groups: groups.iter().map(|g| (*g).to_owned()).collect() }
}

fn pg(resource: &str, kind: &str, tables: &[&str], text: &str) -> Request {
    Request {
        resource: resource.to_owned(),
        protocol: Protocol::Postgres,
        kind: kind.to_owned(),
        tables: tables.iter().map(|t| (*t).to_owned()).collect(),
        functions: Vec::new(),
        commands: Vec::new(),
        text: text.to_owned(),
        missing_where: false,
        dynamic_sql: false,
        writes: false,
        locks_rows: false,
        json: Default::default(),
        path: None,
    }
}

fn select(resource: &str) -> Request {
    pg(resource, "select", &["public.orders"], "SELECT * FROM orders")
}

fn engineer() -> Who {
    who("alice", &["engineers"])
}

fn is_allow(d: &Decision) -> bool {
    d.verdict == Verdict::Allow
}

fn deny_reason(d: &Decision) -> String {
    match &d.verdict {
        Verdict::Deny { reason } => reason.clone(),
        other => panic!("expected deny, got {other:?}"),
    }
}

/// Parses `source`, expecting an error; returns (line, column, reason).
fn invalid(source: &str) -> (usize, usize, String) {
    match parse(source) {
        Err(Error::PolicyInvalid { line, column, reason }) => (line, column, reason),
        Err(other) => panic!("unexpected error {other}"),
        Ok(doc) => panic!("parsed an invalid policy: {doc:?}"),
    }
}

const ALLOW_ENGINEERS: &str = "
name: demo
rules:
  - name: engineers-read
    match:
      groups: [engineers]
      resources: [demo, \"prod-*\"]
      protocols: [postgres]
      kinds: [select]
    action: allow
";

// === actions end to end ===

#[test]
fn allow_rule_allows_matching_request_and_names_itself() {
    let d = set(&[ALLOW_ENGINEERS]).decide(&engineer(), &select("demo"));
    assert!(is_allow(&d));
    assert_eq!(d.rule.as_deref(), Some("demo/engineers-read"));
    assert!(d.masks.is_empty());
}

#[test]
fn unnamed_rule_is_labelled_by_position() {
    let src = "name: d\nrules:\n  - action: deny\n  - action: allow\n";
    let d = set(&[src]).decide(&engineer(), &select("x"));
    assert_eq!(d.rule.as_deref(), Some("d/#1"));
    assert_eq!(deny_reason(&d), "denied by policy rule d/#1");
}

#[test]
fn deny_rule_gives_its_reason() {
    let src = "
name: guard
rules:
  - name: no-sleep
    match: { text: \"(?i)pg_sleep\" }
    action: deny
    reason: pg_sleep is not allowed here
";
    let d = set(&[ALLOW_ENGINEERS, src]).decide(&engineer(), &pg("demo", "select", &[], "select PG_SLEEP(10)"));
    assert_eq!(deny_reason(&d), "pg_sleep is not allowed here");
    assert_eq!(d.rule.as_deref(), Some("guard/no-sleep"));
}

#[test]
fn review_rule_holds_for_approvers() {
    let src = "
name: writes
rules:
  - name: prod-writes
    match: { resources: [\"prod-*\"], kinds: [update, delete] }
    action: review
    reason: writes to production need a second pair of eyes
    approvers: { groups: [dba], count: 2 }
    timeout: 5m
";
    let d = set(&[src]).decide(&engineer(), &pg("prod-eu", "update", &["public.orders"], "update orders set x=1"));
    assert_eq!(
        d.verdict,
        Verdict::Review {
            approver_groups: vec!["dba".into()],
            approvals_needed: 2,
            timeout: Duration::from_secs(300),
            reason: "writes to production need a second pair of eyes".into(),
            covers: ApprovalCovers::Execution,
        }
    );
    assert_eq!(d.rule.as_deref(), Some("writes/prod-writes"));
}

#[test]
fn review_defaults_count_timeout_and_reason() {
    let src = "name: w\nrules:\n  - action: review\n    approvers:\n      groups: [dba]\n";
    let d = set(&[src]).decide(&engineer(), &pg("prod", "delete", &[], ""));
    let Verdict::Review { approvals_needed, timeout, reason, .. } = d.verdict else { panic!("not a review") };
    assert_eq!(approvals_needed, 1);
    assert_eq!(timeout, Duration::from_secs(15 * 60));
    assert_eq!(reason, "delete on prod requires approval (w/#1)");
}

#[test]
fn several_reviews_combine_groups_max_count_min_timeout() {
    let src = "
name: r
rules:
  - name: first
    action: review
    approvers: { groups: [dba, leads], count: 1 }
    timeout: 1h
  - name: second
    action: review
    reason: second reason
    approvers: { groups: [security, dba], count: 3 }
    timeout: 10m
";
    let d = set(&[src]).decide(&engineer(), &select("demo"));
    assert_eq!(
        d.verdict,
        Verdict::Review {
            approver_groups: vec!["dba".into(), "leads".into(), "security".into()],
            approvals_needed: 3,
            timeout: Duration::from_secs(600),
            reason: "second reason".into(),
            covers: ApprovalCovers::Execution,
        }
    );
    assert_eq!(d.rule.as_deref(), Some("r/first"));
}

const MASKS: &str = "
name: pii
rules:
  - match: { tables: [customers] }
    action: mask
    mask: { columns: [email, \"*password*\"], detectors: [credit_card] }
  - match: { resources: [demo] }
    action: mask
    mask:
      columns: [email, ssn]
      detectors: [email, credit_card]
";

#[test]
fn matching_mask_rules_accumulate_into_the_plan() {
    let d = set(&[ALLOW_ENGINEERS, MASKS]).decide(&engineer(), &pg("demo", "select", &["public.customers"], ""));
    assert!(is_allow(&d));
    let columns: Vec<&str> = d.masks.columns.iter().map(Glob::as_str).collect();
    assert_eq!(columns, ["email", "*password*", "ssn"]);
    assert_eq!(d.masks.detectors, [Detector::Email, Detector::CreditCard]);
    assert_eq!(d.masks.mask_value("user_password_hash", "x").as_deref(), Some("***"));
}

#[test]
fn mask_rule_that_does_not_match_adds_nothing() {
    let d = set(&[ALLOW_ENGINEERS, MASKS]).decide(&engineer(), &pg("prod-1", "select", &["public.orders"], ""));
    assert!(is_allow(&d));
    assert!(d.masks.is_empty());
}

#[test]
fn masks_apply_to_reviewed_requests() {
    let src = "name: r\nrules:\n  - action: review\n    approvers: { groups: [dba] }\n";
    let d = set(&[src, MASKS]).decide(&engineer(), &select("demo"));
    assert!(matches!(d.verdict, Verdict::Review { .. }));
    assert!(!d.masks.is_empty());
}

#[test]
fn mask_rule_alone_does_not_allow() {
    let d = set(&[MASKS]).decide(&engineer(), &select("demo"));
    assert_eq!(deny_reason(&d), "no policy rule allows select on demo for alice");
    assert!(d.masks.is_empty(), "a denied request carries no masks");
}

// === precedence and default deny ===

#[test]
fn deny_beats_allow_whatever_the_order() {
    let deny = "name: z\nrules:\n  - match: { resources: [demo] }\n    action: deny\n    reason: frozen\n";
    for docs in [[ALLOW_ENGINEERS, deny], [deny, ALLOW_ENGINEERS]] {
        let d = set(&docs).decide(&engineer(), &select("demo"));
        assert_eq!(deny_reason(&d), "frozen");
        assert_eq!(d.rule.as_deref(), Some("z/#1"));
    }
}

#[test]
fn deny_beats_review() {
    let src = "
name: x
rules:
  - action: review
    approvers: { groups: [dba] }
  - action: deny
    reason: no
";
    assert_eq!(deny_reason(&set(&[src]).decide(&engineer(), &select("demo"))), "no");
}

#[test]
fn review_beats_allow() {
    let src = "name: x\nrules:\n  - action: review\n    approvers: { groups: [dba] }\n";
    let d = set(&[ALLOW_ENGINEERS, src]).decide(&engineer(), &select("demo"));
    assert!(matches!(d.verdict, Verdict::Review { .. }));
}

#[test]
fn default_deny_names_kind_resource_and_subject() {
    let d = set(&[ALLOW_ENGINEERS]).decide(&who("bob", &["sales"]), &select("demo"));
    assert_eq!(deny_reason(&d), "no policy rule allows select on demo for bob");
    assert_eq!(d.rule, None);
}

#[test]
fn empty_policy_set_denies_everything() {
    let d = PolicySet::default().decide(&engineer(), &select("demo"));
    assert_eq!(deny_reason(&d), "no policy rule allows select on demo for alice");
}

#[test]
fn unknown_kind_is_denied_unless_a_rule_names_it_or_omits_kinds() {
    let unknown = pg("demo", "unknown", &[], "???");
    assert!(!is_allow(&set(&[ALLOW_ENGINEERS]).decide(&engineer(), &unknown)));
    let named = "name: u\nrules:\n  - match: { kinds: [unknown] }\n    action: allow\n";
    assert!(is_allow(&set(&[named]).decide(&engineer(), &unknown)));
    let any = "name: u\nrules:\n  - match: { groups: [engineers] }\n    action: allow\n";
    assert!(is_allow(&set(&[any]).decide(&engineer(), &unknown)));
}

// === matching ===

#[test]
fn groups_match_any_of_the_callers_groups() {
    let s = set(&[ALLOW_ENGINEERS]);
    assert!(is_allow(&s.decide(&who("c", &["sales", "engineers"]), &select("demo"))));
    assert!(!is_allow(&s.decide(&who("c", &[]), &select("demo"))));
    assert!(!is_allow(&s.decide(&who("c", &["Engineers"]), &select("demo"))), "group names are exact");
}

#[test]
fn resources_match_by_glob() {
    let s = set(&[ALLOW_ENGINEERS]);
    assert!(is_allow(&s.decide(&engineer(), &select("prod-eu"))));
    assert!(is_allow(&s.decide(&engineer(), &select("prod-"))));
    assert!(!is_allow(&s.decide(&engineer(), &select("prod"))));
    assert!(!is_allow(&s.decide(&engineer(), &select("demo2"))));
    assert!(!is_allow(&s.decide(&engineer(), &select("DEMO"))), "resource names are exact");
}

#[test]
fn protocols_restrict_the_door() {
    let mut req = select("demo");
    req.protocol = Protocol::Ssh;
    assert!(!is_allow(&set(&[ALLOW_ENGINEERS]).decide(&engineer(), &req)));
    let ssh = "name: s\nrules:\n  - match: { protocols: [ssh, http], kinds: [exec, get] }\n    action: allow\n";
    req.kind = "exec".into();
    assert!(is_allow(&set(&[ssh]).decide(&engineer(), &req)));
    req.protocol = Protocol::Http;
    req.kind = "GET".into();
    assert!(is_allow(&set(&[ssh]).decide(&engineer(), &req)), "kinds ignore ASCII case");
}

#[test]
fn kinds_must_be_listed() {
    let s = set(&[ALLOW_ENGINEERS]);
    assert!(!is_allow(&s.decide(&engineer(), &pg("demo", "insert", &[], ""))));
}

#[test]
fn tables_match_if_any_touched_table_matches() {
    let src = "name: t\nrules:\n  - match: { tables: [\"public.*\", customers] }\n    action: allow\n";
    let s = set(&[src]);
    let allowed = |tables: &[&str]| is_allow(&s.decide(&engineer(), &pg("db", "select", tables, "")));
    assert!(allowed(&["public.orders"]));
    assert!(allowed(&["audit.log", "public.orders"]));
    assert!(allowed(&["sales.customers"]), "a bare pattern matches in any schema");
    assert!(allowed(&["PUBLIC.Orders"]), "identifiers ignore ASCII case");
    assert!(allowed(&["orders"]), "an unqualified table is tried in public");
    assert!(!allowed(&["audit.log"]));
    assert!(!allowed(&[]), "a rule with tables needs a touched table");
}

#[test]
fn schema_qualified_deny_cannot_be_dodged_by_unqualified_name() {
    let src = "name: t\nrules:\n  - action: allow\n  - match: { tables: [public.secrets] }\n    action: deny\n";
    let d = set(&[src]).decide(&engineer(), &pg("db", "select", &["secrets"], ""));
    assert_eq!(deny_reason(&d), "denied by policy rule t/#2");
}

#[test]
fn text_regex_searches_the_statement() {
    let src = "name: t\nrules:\n  - match: { text: \"(?i)\\\\bdrop\\\\s+table\\\\b\" }\n    action: allow\n";
    let s = set(&[src]);
    assert!(is_allow(&s.decide(&engineer(), &pg("db", "ddl", &[], "begin; DROP  TABLE x"))));
    assert!(!is_allow(&s.decide(&engineer(), &pg("db", "ddl", &[], "drop tablespace x"))));
}

#[test]
fn locks_rows_matches_the_fact() {
    let src = "name: l\nrules:\n  - match: { kinds: [select] }\n    action: allow\n  - match: { locks_rows: true }\n    action: deny\n    reason: no row locks\n";
    let s = set(&[src]);
    let mut req = pg("db", "select", &["public.orders"], "select * from orders for update");
    req.locks_rows = true;
    assert_eq!(deny_reason(&s.decide(&engineer(), &req)), "no row locks");
    req.locks_rows = false;
    assert!(is_allow(&s.decide(&engineer(), &req)));
}

#[test]
fn dynamic_sql_matches_the_fact() {
    let src = "
name: d
rules:
  - action: allow
  - match: { dynamic_sql: true }
    action: deny
    reason: no dynamic SQL
";
    let s = set(&[src]);
    let mut req = pg("db", "select", &[], "select query_to_xml('select 1', true, false, '')");
    req.dynamic_sql = true;
    assert_eq!(deny_reason(&s.decide(&engineer(), &req)), "no dynamic SQL");
    req.dynamic_sql = false;
    assert!(is_allow(&s.decide(&engineer(), &req)));
}

#[test]
fn missing_where_matches_the_fact() {
    let src = "
name: w
rules:
  - action: allow
  - match: { kinds: [update, delete], missing_where: true }
    action: deny
    reason: add a WHERE clause
";
    let s = set(&[src]);
    let mut req = pg("db", "delete", &["public.orders"], "delete from orders");
    req.missing_where = true;
    assert_eq!(deny_reason(&s.decide(&engineer(), &req)), "add a WHERE clause");
    req.missing_where = false;
    assert!(is_allow(&s.decide(&engineer(), &req)));
    let only_with_where = "name: w\nrules:\n  - match: { missing_where: false }\n    action: allow\n";
    req.missing_where = true;
    assert!(!is_allow(&set(&[only_with_where]).decide(&engineer(), &req)));
}

#[test]
fn every_field_of_a_match_must_hold() {
    let s = set(&[ALLOW_ENGINEERS]);
    // Right group and resource, wrong kind.
    assert!(!is_allow(&s.decide(&engineer(), &pg("demo", "update", &[], ""))));
    // Right everything but group.
    assert!(!is_allow(&s.decide(&who("x", &["ops"]), &select("demo"))));
}

// === globs ===

#[test]
fn glob_star_matches_any_run_including_empty_and_dots() {
    let g = Glob::new("a*b");
    assert!(g.matches("ab"));
    assert!(g.matches("a.x.y.b"));
    assert!(g.matches("abab"));
    assert!(!g.matches("aba"));
    assert!(Glob::new("*").matches(""));
    assert!(Glob::new("**").matches("anything"));
    assert!(Glob::new("*x*y*").matches("axbxcy"));
    assert!(!Glob::new("*x*y*").matches("ayx"));
}

#[test]
fn glob_question_mark_matches_exactly_one_char() {
    let g = Glob::new("db?");
    assert!(g.matches("db1"));
    assert!(g.matches("dbé"), "one char, not one byte");
    assert!(!g.matches("db"));
    assert!(!g.matches("db12"));
    assert!(Glob::new("?*").matches("x"));
    assert!(!Glob::new("?*").matches(""));
}

#[test]
fn glob_literal_and_case() {
    assert!(Glob::new("orders").matches("orders"));
    assert!(!Glob::new("orders").matches("orders2"));
    assert!(!Glob::new("").matches("x"));
    assert!(Glob::new("").matches(""));
    assert!(!Glob::new("Orders").matches("orders"));
    assert!(Glob::new("Orders").matches_ignore_ascii_case("ORDERS"));
    assert!(Glob::new("[a]").matches("[a]"), "brackets are literal");
    assert!(Glob::new("orders").is_literal());
    assert!(!Glob::new("ord?rs").is_literal());
}

#[test]
fn glob_backtracking_stays_fast() {
    let text = "a".repeat(5000);
    assert!(!Glob::new("*a*a*a*a*a*b").matches(&text));
}

// === parsing: valid files ===

#[test]
fn full_schema_example_parses() {
    let src = "
name: demo                    # required
rules:
  - name: engineers-read
    match:
      groups: [engineers]
      resources: [demo, \"prod-*\"]
      protocols: [postgres]
      kinds: [select]
      tables: [\"public.*\", customers]
      text: \"(?i)pg_sleep\"
      missing_where: true
    action: allow
  - action: deny
  - action: review
    reason: needs review
    approvers: { groups: [approvers], count: 1 }
    timeout: 5m
  - action: mask
    mask:
      columns: [email, ssn, \"*password*\"]
      detectors: [email, credit_card, ssn, api_key, jwt]
";
    let doc = parse(src).unwrap();
    assert_eq!(doc.name, "demo");
    assert_eq!(doc.rules.len(), 4);
}

#[test]
fn rules_may_sit_at_the_same_indent_as_their_key() {
    let src = "name: d\nrules:\n- action: allow\n- action: alow\n";
    let (line, column, _) = invalid(src);
    assert_eq!((line, column), (4, 11));
}

// === parsing: invalid files report where ===

#[test]
fn unknown_action_reports_its_line_and_column() {
    let src = "name: d\nrules:\n  - name: a\n    action: allow\n  - name: b\n    action: alow\n";
    let (line, column, reason) = invalid(src);
    assert_eq!((line, column), (6, 13));
    assert_eq!(reason, "unknown action \"alow\" (expected allow, deny, review or mask)");
    let e = parse(src).unwrap_err().to_string();
    assert_eq!(e, "policy line 6, column 13: unknown action \"alow\" (expected allow, deny, review or mask)");
}

#[test]
fn unknown_field_reports_serde_position() {
    let src = "name: d\nrules:\n  - action: allow\n    mtch: {}\n";
    let (line, column, reason) = invalid(src);
    assert_eq!(line, 4);
    assert_eq!(column, 5);
    assert!(reason.contains("unknown field `mtch`"), "{reason}");
    assert!(!reason.contains("at line"), "position is not repeated: {reason}");
}

#[test]
fn unknown_match_field_is_rejected() {
    let (line, _, reason) = invalid("name: d\nrules:\n  - match:\n      user: [x]\n    action: allow\n");
    assert_eq!(line, 4);
    assert!(reason.contains("unknown field `user`"), "{reason}");
}

#[test]
fn missing_name_and_bad_yaml_are_rejected() {
    let (_, _, reason) = invalid("rules: []\n");
    assert!(reason.contains("missing field `name`"), "{reason}");
    let (line, _, _) = invalid("name: d\nrules:\n  - action: [allow\n");
    assert!(line >= 3);
    let (line, column, reason) = invalid("name: \"  \"\nrules: []\n");
    assert_eq!((line, column), (1, 1));
    assert_eq!(reason, "name must not be empty");
}

#[test]
fn unknown_kind_reports_the_value() {
    let src = "name: d\nrules:\n  - match:\n      kinds: [select, selec]\n    action: allow\n";
    let (line, column, reason) = invalid(src);
    assert_eq!((line, column), (4, 23));
    assert!(reason.starts_with("unknown kind \"selec\" (expected one of select, insert"), "{reason}");
}

#[test]
fn unknown_kind_in_block_list_reports_its_line() {
    let src = "name: d\nrules:\n  - action: allow\n    match:\n      kinds:\n        - select\n        - upsert\n";
    assert_eq!(invalid(src).0, 7);
}

#[test]
fn unknown_protocol_is_rejected() {
    let src = "name: d\nrules:\n  - action: allow\n    match: { protocols: [postgres, mysql] }\n";
    let (line, column, reason) = invalid(src);
    assert_eq!((line, column), (4, 36));
    assert_eq!(reason, "unknown protocol \"mysql\" (expected postgres, ssh or http)");
}

#[test]
fn unknown_detector_is_rejected() {
    let src = "name: d\nrules:\n  - action: allow\n  - action: mask\n    mask:\n      detectors: [email, iban]\n";
    let (line, column, reason) = invalid(src);
    assert_eq!((line, column), (6, 26));
    assert!(reason.starts_with("unknown detector \"iban\" (expected one of api_key, jwt, email"), "{reason}");
}

#[test]
fn bad_regex_is_rejected_at_parse_time() {
    let src = "name: d\nrules:\n  - action: deny\n    match:\n      text: \"(?i)pg_sleep(\"\n";
    let (line, column, reason) = invalid(src);
    assert_eq!((line, column), (5, 7));
    assert!(reason.starts_with("invalid regex \"(?i)pg_sleep(\": "), "{reason}");
    assert!(!reason.contains('\n'), "{reason}");
}

#[test]
fn review_without_approvers_is_rejected() {
    let src = "name: d\nrules:\n  - action: allow\n\n  # held\n  - name: held\n    action: review\n";
    let (line, column, reason) = invalid(src);
    assert_eq!((line, column), (7, 13));
    assert!(reason.starts_with("review rule needs approvers"), "{reason}");
}

#[test]
fn approvers_count_zero_is_rejected() {
    let src = "name: d\nrules:\n  - action: review\n    approvers: { groups: [dba], count: 0 }\n";
    let (line, column, reason) = invalid(src);
    assert_eq!((line, column), (4, 33));
    assert_eq!(reason, "approvers.count must be at least 1");
    let block = "name: d\nrules:\n  - action: review\n    approvers:\n      groups: [dba]\n      count: 0\n";
    assert_eq!(invalid(block).0, 6);
}

#[test]
fn approvers_without_groups_are_rejected() {
    let src = "name: d\nrules:\n  - action: review\n    approvers: { groups: [] }\n";
    let (line, _, reason) = invalid(src);
    assert_eq!(line, 4);
    assert_eq!(reason, "approvers.groups must name at least one group");
    let (line, _, reason) = invalid("name: d\nrules:\n  - action: review\n    approvers: { count: 2 }\n");
    assert_eq!(line, 4);
    assert!(reason.contains("missing field `groups`"), "{reason}");
}

#[test]
fn negative_count_is_a_type_error() {
    let (line, _, _) = invalid("name: d\nrules:\n  - action: review\n    approvers: { groups: [a], count: -1 }\n");
    assert_eq!(line, 4);
}

#[test]
fn invalid_timeout_is_rejected() {
    let src = "name: d\nrules:\n  - action: review\n    approvers: { groups: [dba] }\n    timeout: 5 parsecs\n";
    let (line, column, reason) = invalid(src);
    assert_eq!((line, column), (5, 5));
    assert!(reason.starts_with("invalid timeout \"5 parsecs\""), "{reason}");
    let zero = "name: d\nrules:\n  - action: review\n    approvers: { groups: [dba] }\n    timeout: 0s\n";
    assert_eq!(invalid(zero).2, "timeout must be longer than zero");
}

#[test]
fn deny_without_reason_is_allowed() {
    let doc = parse("name: d\nrules:\n  - action: deny\n").unwrap();
    assert_eq!(doc.rules.len(), 1);
}

#[test]
fn fields_of_other_actions_are_rejected() {
    let cases = [
        ("  - action: allow\n    reason: why\n", 4, "reason applies only to deny and review rules, not allow"),
        ("  - action: deny\n    approvers: { groups: [a] }\n", 4, "approvers applies only to review rules, not deny"),
        ("  - action: allow\n    timeout: 5m\n", 4, "timeout applies only to review rules, not allow"),
        ("  - action: deny\n    mask: { columns: [a] }\n", 4, "mask applies only to mask rules, not deny"),
    ];
    for (rule, want_line, want) in cases {
        let (line, column, reason) = invalid(&format!("name: d\nrules:\n{rule}"));
        assert_eq!((line, column, reason.as_str()), (want_line, 5, want));
    }
}

#[test]
fn mask_rule_needs_something_to_mask() {
    let (line, _, reason) = invalid("name: d\nrules:\n  - action: mask\n");
    assert_eq!(line, 3);
    assert!(reason.starts_with("mask rule needs a mask block"), "{reason}");
    let (line, _, reason) = invalid("name: d\nrules:\n  - action: mask\n    mask: {}\n");
    assert_eq!(line, 4);
    assert_eq!(reason, "mask needs at least one of columns or detectors");
}

#[test]
fn empty_match_lists_are_rejected() {
    let src = "name: d\nrules:\n  - action: allow\n    match:\n      groups: [a]\n      resources: []\n";
    let (line, column, reason) = invalid(src);
    assert_eq!((line, column), (6, 7));
    assert_eq!(reason, "match.resources is empty and would match nothing; omit it to match anything");
    let (_, _, reason) = invalid("name: d\nrules:\n  - action: allow\n    match: { tables: [\"\"] }\n");
    assert_eq!(reason, "match.tables has an empty entry");
}

#[test]
fn errors_point_into_the_right_rule_of_many() {
    let src = "
name: d
rules:
  - name: one
    action: review
    approvers: { groups: [a], count: 2 }
  - name: two   # action: review
    action: review
    approvers:
      groups: [b]
      count: 0
";
    assert_eq!(invalid(src).0, 11);
}

#[test]
fn a_function_rule_matches_calls_by_bare_or_qualified_name_and_its_deny_beats_the_allow() {
    let policy = set(&[
        ALLOW_ENGINEERS,
        "
name: guard
rules:
  - name: no-admin-functions
    match: { functions: [pg_catalog.set_config, \"dblink*\", pg_terminate_backend] }
    action: deny
    reason: admin functions are off limits
",
    ]);
    let call = |functions: &[&str]| {
        let mut req = select("demo");
        req.functions = functions.iter().map(|f| (*f).to_owned()).collect();
        policy.decide(&engineer(), &req)
    };
    // Unqualified calls resolve through pg_catalog; a bare pattern fits any schema.
    for functions in
        [&["set_config"][..], &["pg_catalog.set_config"], &["lower", "dblink_exec"], &["x.pg_terminate_backend"]]
    {
        let d = call(functions);
        assert_eq!(deny_reason(&d), "admin functions are off limits", "{functions:?}");
        assert_eq!(d.rule.as_deref(), Some("guard/no-admin-functions"));
    }
    // A qualified pattern does not fit the same name in another schema; others pass.
    for functions in [&["app.set_config"][..], &["lower", "now"], &[]] {
        assert!(is_allow(&call(functions)), "{functions:?}");
    }
}

#[test]
fn an_empty_functions_list_is_refused_with_its_position() {
    let (line, _, reason) = invalid("name: p\nrules:\n  - match: { functions: [] }\n    action: allow\n");
    assert_eq!(line, 3);
    assert!(reason.contains("functions"), "{reason}");
}

#[test]
fn an_approval_covers_one_execution_unless_every_matching_review_rule_says_statement() {
    let src = |covers: &str| {
        format!(
            "name: c\nrules:\n  - match: {{ kinds: [update] }}\n    action: review\n    approvers: {{ groups: [dba] }}\n{covers}"
        )
    };
    let covers_of = |d: Decision| match d.verdict {
        Verdict::Review { covers, .. } => covers,
        other => panic!("not a review: {other:?}"),
    };
    let req = pg("db", "update", &["public.t"], "update t set x = $1");
    assert_eq!(covers_of(set(&[&src("")]).decide(&engineer(), &req)), ApprovalCovers::Execution);
    let statement = src("    approval_covers: statement\n");
    assert_eq!(covers_of(set(&[&statement]).decide(&engineer(), &req)), ApprovalCovers::Statement);
    let both = set(&[&statement, &src("").replace("name: c", "name: d")]);
    assert_eq!(covers_of(both.decide(&engineer(), &req)), ApprovalCovers::Execution);
    let e = parse(&src("    approval_covers: forever\n")).unwrap_err();
    assert!(e.to_string().contains("approval_covers"), "{e}");
    let e = parse("name: x\nrules:\n  - action: allow\n    approval_covers: statement\n").unwrap_err();
    assert!(e.to_string().contains("only to review"), "{e}");
}

#[test]
fn a_command_rule_matches_any_program_of_a_command_line_by_name_or_path() {
    let policy = set(&["
name: hosts
rules:
  - name: read-only
    match: { groups: [engineers], protocols: [ssh], kinds: [exec], commands: [ls, cat, grep, \"/usr/bin/*\"] }
    action: allow
  - name: no-destruction
    match: { protocols: [ssh], commands: [rm, \"MKFS*\", shutdown] }
    action: deny
    reason: destructive commands are off limits
"]);
    let run = |programs: &[&str]| {
        let req = Request {
            protocol: Protocol::Ssh,
            kind: "exec".into(),
            commands: programs
                .iter()
                .map(|p| Command { name: p.rsplit('/').next().unwrap().to_owned(), path: (*p).to_owned() })
                .collect(),
            ..pg("demo-ssh", "exec", &[], &programs.join(" | "))
        };
        policy.decide(&engineer(), &req)
    };
    assert!(is_allow(&run(&["ls"])));
    assert!(is_allow(&run(&["cat", "grep"])));
    assert!(is_allow(&run(&["/usr/bin/stat"])), "by path");
    assert_eq!(deny_reason(&run(&["ls", "/bin/rm"])), "destructive commands are off limits", "by name");
    assert_eq!(deny_reason(&run(&["mkfs.ext4"])), "destructive commands are off limits", "case ignored");
    assert!(!is_allow(&run(&["stat"])), "no rule allows stat");
    assert!(!is_allow(&run(&[])), "a command rule needs a program to match");
}

#[test]
fn an_only_commands_rule_matches_when_every_program_of_the_line_is_listed() {
    let policy = set(&["
name: hosts
rules:
  - match: { groups: [engineers], kinds: [exec], only_commands: [ls, grep, \"/usr/bin/*\"] }
    action: allow
"]);
    let run = |programs: &[&str]| {
        let req = Request {
            protocol: Protocol::Ssh,
            commands: programs
                .iter()
                .map(|p| Command { name: p.rsplit('/').next().unwrap().to_owned(), path: (*p).to_owned() })
                .collect(),
            ..pg("demo-ssh", "exec", &[], &programs.join(" | "))
        };
        policy.decide(&engineer(), &req)
    };
    assert!(is_allow(&run(&["ls", "grep"])));
    assert!(is_allow(&run(&["ls", "/usr/bin/python3"])), "each by name or by path");
    assert!(!is_allow(&run(&["ls", "python3"])), "one unlisted program is enough to fall through");
    assert!(is_allow(&run(&["/bin/ls", "/usr/bin/grep"])), "the system's own, written with their paths");
    assert!(!is_allow(&run(&["/tmp/ls"])), "a file named ls elsewhere is not the listed ls");
    assert!(!is_allow(&run(&["./grep"])));
    assert!(!is_allow(&run(&[])), "no program, no match");
}
