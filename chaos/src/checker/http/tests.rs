use super::*;
use crate::history::FaultKind;

fn http_op(id: &str, node: u64, ok: bool) -> Op {
    Op {
        op: id.into(),
        node,
        client: 0,
        f: OpKind::Http,
        invoked_ms: 0,
        completed_ms: 1,
        ok,
        indeterminate: false,
        error: None,
    }
}

fn got(op: &str, node: u64, at_ms: u64, digest: &str) -> Received {
    Received { op: op.into(), node, at_ms, method: "POST".into(), body_sha256: Some(digest.into()) }
}

fn audit(entries: &[(&str, &str)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (op, digest) in entries {
        out.entry(op.to_string()).or_default().insert(digest.to_string());
    }
    out
}

fn kinds(v: &[Value]) -> Vec<String> {
    v.iter().filter_map(|x| x.get("check").and_then(Value::as_str)).map(String::from).collect()
}

#[test]
fn backend_log_lines_and_audited_requests_parse() {
    assert_eq!(op_id_in("/echo/chaos-http-n2-c0-17"), Some(("chaos-http-n2-c0-17", 2)));
    assert_eq!(op_id_in("echo chaos-ssh-n2-c0-17"), None, "an SSH op id is not an HTTP one");
    let log = [
        r#"{"time_ms":1700000000123,"method":"POST","path":"/echo/chaos-http-n1-c0-1","query":"","body_bytes":9,"body_sha256":"aa"}"#,
        r#"{"time_ms":1700000000124,"method":"GET","path":"/orders","body_bytes":0,"body_sha256":"e3"}"#,
        "not json",
        r#"{"time_ms":1700000000200,"method":"POST","path":"/echo/chaos-http-n3-c1-2","body_bytes":0,"body_sha256":"e3"}"#,
    ]
    .join("\n");
    assert_eq!(
        received(&log),
        vec![
            got("chaos-http-n1-c0-1", 1, 1_700_000_000_123, "aa"),
            Received {
                op: "chaos-http-n3-c1-2".into(),
                node: 3,
                at_ms: 1_700_000_000_200,
                method: "POST".into(),
                body_sha256: None
            },
        ]
    );
    let export = r#"{"session":{},"events":[
        {"kind":"statement","detail":{"request":"POST /echo/chaos-http-n1-c0-1","body_bytes":9,"body_sha256":"aa"}},
        {"kind":"refused","detail":{"request":"POST /echo/chaos-http-n1-c0-2","body_sha256":"bb"}},
        {"kind":"statement","detail":{"request":"POST /echo/other","body_sha256":"cc","body_preview":"chaos-http-n1-c0-3"}},
        {"kind":"statement","detail":{"request":"GET /echo/chaos-http-n2-c0-4"}}]}"#
        .replace('\n', "");
    assert_eq!(audited_ops(&export), audit(&[("chaos-http-n1-c0-1", "aa"), ("chaos-http-n2-c0-4", "")]));
}

#[test]
fn each_kind_of_http_violation_is_reported_and_a_clean_history_passes() {
    // Node 3 alone without a quorum from 10 s to 15 s.
    let faults = vec![Fault {
        kind: FaultKind::Pause,
        nodes: vec![1, 2],
        isolated: vec![3],
        intensity: 0,
        leader_before: Some(1),
        start_ms: 10_000,
        end_ms: 15_000,
    }];
    let ops = vec![http_op("chaos-http-n1-c0-1", 1, true), http_op("chaos-http-n1-c0-2", 1, true)];
    let reached = vec![
        got("chaos-http-n1-c0-1", 1, 12_000, "a1"), // another node: fine
        got("chaos-http-n3-c0-1", 3, 11_200, "b1"), // within the lease and slack
        got("chaos-http-n3-c0-2", 3, 11_300, "x"),  // past it
        got("chaos-http-n3-c0-3", 3, 16_000, "c3"), // after healing began
    ];
    let audited = audit(&[
        ("chaos-http-n1-c0-1", "a1"),
        ("chaos-http-n3-c0-1", "b1"),
        ("chaos-http-n3-c0-2", "x"),
        ("chaos-http-n3-c0-3", "c3"),
    ]);
    let v = check(&ops, &faults, &reached, &audited);
    assert_eq!(kinds(&v), vec!["http-without-lease", "http-acknowledged-not-received"], "{v:?}");

    let mut twice = reached.clone();
    twice.push(got("chaos-http-n1-c0-1", 1, 12_001, "a1"));
    let mut other = audit(&[("chaos-http-n1-c0-1", "a1"), ("chaos-http-n3-c0-1", "b1")]);
    other.insert("chaos-http-n3-c0-3".into(), ["not c3".to_string()].into());
    let v = check(&ops, &faults, &twice, &other);
    assert_eq!(
        kinds(&v),
        vec![
            "http-received-twice",
            "http-unaudited-request",
            "http-body-mismatch",
            "http-without-lease",
            "http-acknowledged-not-received"
        ],
        "{v:?}"
    );

    let mut clean: Vec<Received> = reached.iter().filter(|r| r.op != "chaos-http-n3-c0-2").cloned().collect();
    clean.push(got("chaos-http-n1-c0-2", 1, 12_500, "a2"));
    let mut all = audited.clone();
    all.insert("chaos-http-n1-c0-2".into(), ["a2".to_string()].into());
    let v = check(&ops, &faults, &clean, &all);
    assert!(v.is_empty(), "{v:?}");
}
