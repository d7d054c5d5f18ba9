use super::*;
use crate::history::FaultKind;

fn ssh_op(id: &str, node: u64, ok: bool) -> Op {
    Op {
        op: id.into(),
        node,
        client: 0,
        f: OpKind::Ssh,
        invoked_ms: 0,
        completed_ms: 1,
        ok,
        indeterminate: false,
        error: None,
    }
}

fn run(op: &str, node: u64, at_ms: u64) -> HostRun {
    HostRun { op: op.into(), node, at_ms }
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[test]
fn host_lines_and_audited_commands_parse() {
    assert_eq!(op_id_in("echo chaos-ssh-n2-c0-17 $(date)"), Some(("chaos-ssh-n2-c0-17", 2)));
    assert_eq!(op_id_in("chaos-n2-c0-17"), None, "a Postgres op id is not an SSH one");
    let log = "chaos-ssh-n1-c0-1 1700000000123\nnoise\nchaos-ssh-n3-c0-2 17x\nchaos-ssh-n3-c0-2 1700000000200\n";
    assert_eq!(
        host_runs(log),
        vec![run("chaos-ssh-n1-c0-1", 1, 1_700_000_000_123), run("chaos-ssh-n3-c0-2", 3, 1_700_000_000_200)]
    );
    let export = r#"{"session":{},"events":[
        {"kind":"statement","detail":{"command":"echo chaos-ssh-n1-c0-1 $(date +%s%3N) >> chaos-ssh-9.log","channel":"exec","programs":["echo","date"]}},
        {"kind":"refused","detail":{"command":"echo chaos-ssh-n1-c0-2 $(date +%s%3N) >> chaos-ssh-9.log"}},
        {"kind":"statement","detail":{"sql":"SELECT 1 /* chaos-n1-c0-3 */"}}]}"#
        .replace('\n', "");
    assert_eq!(audited_ops(&export), set(&["chaos-ssh-n1-c0-1"]));
}

#[test]
fn each_kind_of_ssh_violation_is_reported_and_a_clean_history_passes() {
    // Node 3 alone without a quorum from 10 s to 15 s.
    let faults = vec![Fault {
        kind: FaultKind::Partition,
        nodes: vec![3],
        isolated: vec![3],
        intensity: 0,
        leader_before: Some(1),
        start_ms: 10_000,
        end_ms: 15_000,
    }];
    let ops = vec![ssh_op("chaos-ssh-n1-c0-1", 1, true), ssh_op("chaos-ssh-n1-c0-2", 1, true)];
    let runs = vec![
        run("chaos-ssh-n1-c0-1", 1, 12_000), // another node: fine
        run("chaos-ssh-n3-c0-1", 3, 11_500), // within the lease and the host's start-up slack
        run("chaos-ssh-n3-c0-2", 3, 13_000), // past it
        run("chaos-ssh-n3-c0-3", 3, 16_000), // after healing began
    ];
    let audited = set(&["chaos-ssh-n1-c0-1", "chaos-ssh-n3-c0-1", "chaos-ssh-n3-c0-2", "chaos-ssh-n3-c0-3"]);
    let kinds = |v: &[Value]| -> Vec<String> {
        v.iter().filter_map(|x| x.get("check").and_then(Value::as_str)).map(String::from).collect()
    };
    let v = check(&ops, &faults, &runs, &audited);
    assert_eq!(kinds(&v), vec!["ssh-without-lease", "ssh-acknowledged-not-run"], "{v:?}");

    let mut twice = runs.clone();
    twice.push(run("chaos-ssh-n1-c0-1", 1, 12_001));
    let unaudited = set(&["chaos-ssh-n1-c0-1", "chaos-ssh-n3-c0-1", "chaos-ssh-n3-c0-3"]);
    let v = check(&ops, &faults, &twice, &unaudited);
    assert_eq!(
        kinds(&v),
        vec!["ssh-ran-twice", "ssh-unaudited-command", "ssh-without-lease", "ssh-acknowledged-not-run"],
        "{v:?}"
    );

    let clean_runs: Vec<HostRun> = runs.iter().filter(|r| r.op != "chaos-ssh-n3-c0-2").cloned().collect();
    let mut all = clean_runs.clone();
    all.push(run("chaos-ssh-n1-c0-2", 1, 12_500));
    let clean = check(
        &ops,
        &faults,
        &all,
        &set(&["chaos-ssh-n1-c0-1", "chaos-ssh-n1-c0-2", "chaos-ssh-n3-c0-1", "chaos-ssh-n3-c0-3"]),
    );
    assert!(clean.is_empty(), "{clean:?}");
}
