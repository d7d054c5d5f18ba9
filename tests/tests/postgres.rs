//! The Postgres door end to end: real Postgres (initdb + pg_ctl), real psql and
//! pgbench, real node processes. The playground's demo policy: engineers may read;
//! writes need one approver; TRUNCATE and DDL are denied; email and ssn are masked.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_tests::{Cluster, err, out, wait_for};

const READY: Duration = Duration::from_secs(30);

/// Pending approvals as seen by `token` through node `via`.
fn pending(c: &Cluster, via: u64, token: &str) -> Vec<serde_json::Value> {
    let o = c.cli_as(via, Some(token), &["approvals", "list", "--pending", "--json"]);
    if !o.status.success() {
        return vec![];
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array().cloned().or_else(|| v["approvals"].as_array().cloned()).unwrap_or_default()
}

/// Wait until approval `id`, listed through node `via`, has `status`; returns it.
fn wait_approval_status(c: &Cluster, via: u64, token: &str, id: &str, status: &str) -> serde_json::Value {
    wait_for(&format!("approval {id} to be {status}"), Duration::from_secs(30), || {
        let o = c.cli_as(via, Some(token), &["approvals", "list", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        v.as_array()?.iter().find(|a| a["id"] == id && a["status"] == status).cloned()
    })
}

fn customer_count(c: &Cluster, token: &str) -> i64 {
    let o = c.psql(1, token, &["SELECT count(*) FROM customers"]);
    assert!(o.status.success(), "{}", err(&o));
    out(&o).trim().parse().unwrap()
}

#[test]
fn psql_reads_through_every_node_with_pii_masked_and_every_statement_audited() {
    let c = Cluster::start_with_postgres(3);
    let token = c.engineer_token();
    for id in 1..=3 {
        let o = c.psql(id, &token, &["SELECT id, name, email, ssn FROM customers ORDER BY id LIMIT 2"]);
        assert!(o.status.success(), "node {id}: {}", err(&o));
        let text = out(&o);
        assert!(text.contains("1|Ada Lovelace|***|***"), "node {id}: {text}");
        assert!(!text.contains("ada@example.com") && !text.contains("123-45-6789"), "PII leaked: {text}");
    }
    // Detectors mask values in any column, e.g. text that merely contains an email.
    let o = c.psql(2, &token, &["SELECT 'write to ada@example.com' AS note"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).trim(), "write to a***@example.com");
    // A masked column stays masked under any name it flows into: computed, renamed,
    // behind a subquery, or read as a whole row. Plain columns beside it stay readable.
    for sql in [
        "SELECT name, reverse(email) FROM customers WHERE id = 1",
        "SELECT name, email AS contact FROM customers WHERE id = 1",
        "SELECT name, encode(convert_to(ssn, 'UTF8'), 'base64') FROM customers WHERE id = 1",
        "SELECT name, x FROM (SELECT name, replace(ssn, '-', '') AS x FROM customers) s WHERE name LIKE 'Ada%'",
    ] {
        let o = c.psql(2, &token, &[sql]);
        assert!(o.status.success(), "{sql}: {}", err(&o));
        let text = out(&o);
        assert!(text.trim() == "Ada Lovelace|***" || text.trim() == "***|***", "{sql}: {text}");
    }
    // A whole row is of the table's composite type, not a text type: masked, it is NULL
    // (docs/policy.md, "Masking"), which every driver can decode.
    let o = c.psql(2, &token, &["SELECT c FROM customers c WHERE id = 1"]);
    assert!(o.status.success(), "whole row: {}", err(&o));
    assert_eq!(out(&o).trim(), "", "whole row: {}", out(&o));

    // The audit: sessions of alice on demo, each statement with its decision.
    let sessions = c.cli_ok(1, &["sessions", "list", "--identity", "alice", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&sessions).unwrap();
    let list = v.as_array().cloned().or_else(|| v["sessions"].as_array().cloned()).unwrap();
    assert!(list.len() >= 4, "{sessions}");
    let id = list[0]["id"].as_str().unwrap().to_string();
    let show = c.cli_ok(1, &["sessions", "show", &id, "--json"]);
    assert!(show.contains("\"statement\"") && show.contains("customers"), "{show}");
    assert!(show.contains("allow"), "{show}");
    assert!(!show.contains("ada@example.com"), "the audit preview must be masked too: {show}");
}

#[test]
fn denied_statements_never_reach_the_backend() {
    let c = Cluster::start_with_postgres(3);
    let token = c.engineer_token();
    for sql in ["TRUNCATE customers /* marker-truncate */", "DROP TABLE customers /* marker-drop */"] {
        let o = c.psql(2, &token, &[sql]);
        assert!(!o.status.success());
        assert!(err(&o).contains("denied by policy") && err(&o).contains("no-truncate-or-ddl"), "{}", err(&o));
    }
    // A read that calls an administration function is denied by the parsed call, however
    // the name is spelled (the text regex could not see through a Unicode escape).
    for sql in [
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity /* marker-terminate */",
        r#"SELECT U&"pg_terminate\005fbackend"(1) /* marker-terminate-escaped */"#,
    ] {
        let o = c.psql(1, &token, &[sql]);
        assert!(!o.status.success());
        assert!(err(&o).contains("no-admin-functions"), "{}", err(&o));
    }
    // Taking on another role is a privilege statement, not a setting the demo lets through.
    let o = c.psql(2, &token, &["SET ROLE postgres /* marker-set-role */"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("no policy rule allows grant"), "{}", err(&o));
    // Unparseable SQL is denied with the parser's own message.
    let o = c.psql(2, &token, &["SELEC * FROM customers /* marker-typo */"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("syntax error"), "{}", err(&o));
    // A multi-statement query with one denied part runs none of it.
    let o = c.psql(3, &token, &["SELECT 1 /* marker-multi */; DROP TABLE customers"]);
    assert!(!o.status.success());
    // Nobody outside the policy's groups gets anything (default deny).
    let stranger = c.token("mallory", &["contractors"]);
    let o = c.psql(1, &stranger, &["SELECT * FROM customers /* marker-stranger */"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("no policy rule allows select"), "{}", err(&o));

    assert_eq!(customer_count(&c, &token), 12);
    let log = c.postgres_log();
    for marker in [
        "marker-truncate",
        "marker-drop",
        "marker-typo",
        "marker-multi",
        "marker-stranger",
        "marker-terminate",
        "marker-set-role",
    ] {
        assert!(!log.contains(marker), "{marker} reached the backend");
    }
}

#[test]
fn a_delete_held_on_node_2_is_released_by_an_approval_through_node_3_exactly_once() {
    let c = Cluster::start_with_postgres(3);
    let token = c.engineer_token();
    let held = c.spawn_psql(2, &token, "DELETE FROM customers WHERE id = 12 /* marker-held */");
    let bob = c.token("bob", &["approvers"]);
    let approval = wait_for("the DELETE to be held", READY, || pending(&c, 3, &bob).into_iter().next());
    let id = approval["id"].as_str().unwrap().to_string();
    assert!(!c.postgres_log().contains("marker-held"), "a held statement reached the backend");

    // The requester may not approve their own request.
    let alice_admin = c.token("alice", &["engineers", "approvers"]);
    let o = c.cli_as(3, Some(&alice_admin), &["approvals", "approve", &id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("may not decide their own request"), "{}", err(&o));

    c.cli_ok(3, &["--token", &bob, "approvals", "approve", &id, "--reason", "checked"]);
    let o = held.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains(&format!("waiting for approval {id}")), "{}", err(&o));
    assert_eq!(customer_count(&c, &token), 11);
    assert_eq!(c.postgres_log().matches("marker-held").count(), 1, "the approved DELETE must run exactly once");
    // Deciding again changes nothing.
    let carol = c.token("carol", &["approvers"]);
    let o = c.cli_as(1, Some(&carol), &["approvals", "deny", &id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("already approved"), "{}", err(&o));
}

#[test]
fn review_then_deny_and_review_then_expire_end_the_statement_with_the_reason() {
    let c = Cluster::start_with_postgres(3);
    let token = c.engineer_token();
    // A second policy: UPDATEs mentioning expire_me wait at most 2 s.
    let file = c.path().join("short.yaml");
    std::fs::write(
        &file,
        "name: short\nrules:\n  - name: short-review\n    match: { resources: [demo], kinds: [update], text: expire_me }\n    action: review\n    approvers: { groups: [approvers] }\n    timeout: 2s\n",
    )
    .unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", file.to_str().unwrap()]);

    let held = c.spawn_psql(1, &token, "UPDATE customers SET name = 'x' WHERE id = 1 /* marker-denied */");
    let bob = c.token("bob", &["approvers"]);
    let approval = wait_for("the UPDATE to be held", READY, || pending(&c, 2, &bob).into_iter().next());
    let id = approval["id"].as_str().unwrap().to_string();
    c.cli_ok(2, &["--token", &bob, "approvals", "deny", &id, "--reason", "not today"]);
    let o = held.wait_with_output().unwrap();
    assert!(!o.status.success());
    assert!(err(&o).contains(&format!("approval {id} denied by bob: not today")), "{}", err(&o));

    let started = Instant::now();
    let o = c.psql(3, &token, &["UPDATE customers SET name = 'y' WHERE id = 2 /* expire_me */"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("expired"), "{}", err(&o));
    assert!(started.elapsed() < Duration::from_secs(20));
    let log = c.postgres_log();
    assert!(!log.contains("marker-denied") && !log.contains("expire_me"), "a refused UPDATE reached the backend");
}

#[test]
fn an_approval_whose_waiting_node_died_expires_at_its_deadline_and_cannot_be_approved_after() {
    let mut c = Cluster::start_with_postgres(3);
    let token = c.engineer_token();
    let file = c.path().join("short.yaml");
    std::fs::write(
        &file,
        "name: short\nrules:\n  - name: short-review\n    match: { resources: [demo], kinds: [update], text: orphaned }\n    action: review\n    approvers: { groups: [approvers] }\n    timeout: 3s\n",
    )
    .unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", file.to_str().unwrap()]);
    // Hold on a follower, then kill it: nobody waits for the approval any more.
    let leader = c.wait_all_serving(&[1, 2, 3], READY);
    let holder = (1..=3).find(|id| *id != leader).unwrap();
    let other = (1..=3).find(|id| *id != leader && *id != holder).unwrap();
    let held = c.spawn_psql(holder, &token, "UPDATE customers SET name = 'z' WHERE id = 3 /* orphaned */");
    let bob = c.token("bob", &["approvers"]);
    let approval = wait_for("the UPDATE to be held", READY, || pending(&c, leader, &bob).into_iter().next());
    let id = approval["id"].as_str().unwrap().to_string();
    c.kill9(holder);
    let _ = held.wait_with_output();
    // The leader's sweep expires it once its deadline has passed.
    let expired = wait_approval_status(&c, other, &bob, &id, "expired");
    assert_eq!(expired["status"], "expired");
    let o = c.cli_as(leader, Some(&bob), &["approvals", "approve", &id]);
    assert!(!o.status.success(), "an expired approval was approved: {}", out(&o));
    assert!(err(&o).contains("expired"), "{}", err(&o));
    assert!(!c.postgres_log().contains("orphaned"), "the orphaned UPDATE reached the backend");
}

#[test]
fn ctrl_c_or_a_vanished_client_while_held_withdraws_the_approval_and_the_statement_never_runs() {
    let c = Cluster::start_with_postgres(3);
    let token = c.engineer_token();
    let bob = c.token("bob", &["approvers"]);
    let held = c.spawn_psql(2, &token, "DELETE FROM customers WHERE id = 5 /* marker-canceled-while-held */");
    let approval = wait_for("the DELETE to be held", READY, || pending(&c, 1, &bob).into_iter().next());
    let id = approval["id"].as_str().unwrap().to_string();
    // psql's Ctrl-C: libpq sends a cancel request on a new connection.
    let mut held = held;
    portcullis_tests::signal(held.id(), "INT");
    wait_for("psql to stop after Ctrl-C", Duration::from_secs(10), || held.try_wait().unwrap().map(|_| ()));
    let o = held.wait_with_output().unwrap();
    assert!(!o.status.success());
    assert!(err(&o).contains("canceling statement due to user request") && err(&o).contains(&id), "{}", err(&o));
    // The approval is final, so an approver cannot release what will never run.
    let withdrawn = wait_approval_status(&c, 3, &bob, &id, "expired");
    assert!(withdrawn.to_string().contains("withdrawn"), "{withdrawn}");
    let o = c.cli_as(3, Some(&bob), &["approvals", "approve", &id]);
    assert!(!o.status.success(), "a withdrawn approval was approved: {}", out(&o));
    assert!(!c.postgres_log().contains("marker-canceled-while-held"), "the canceled DELETE reached the backend");

    // A client that goes away while held (killed: its socket closes) withdraws it too.
    let mut gone = c.spawn_psql(3, &token, "DELETE FROM customers WHERE id = 6 /* marker-client-gone-while-held */");
    let approval = wait_for("the second DELETE to be held", READY, || {
        pending(&c, 1, &bob).into_iter().find(|a| a["action"].as_str().is_some_and(|t| t.contains("client-gone")))
    });
    let id = approval["id"].as_str().unwrap().to_string();
    gone.kill().unwrap();
    let _ = gone.wait();
    let withdrawn = wait_approval_status(&c, 1, &bob, &id, "expired");
    assert!(withdrawn.to_string().contains("withdrawn"), "{withdrawn}");
    let o = c.cli_as(2, Some(&bob), &["approvals", "approve", &id]);
    assert!(!o.status.success(), "the vanished client's approval was approved: {}", out(&o));
    assert!(!c.postgres_log().contains("marker-client-gone-while-held"), "the vanished client's DELETE ran");
    assert_eq!(customer_count(&c, &token), 12);
}

#[test]
fn a_node_killed_while_holding_a_statement_has_the_approval_withdrawn_and_its_session_closed_as_lost_on_restart() {
    let mut c = Cluster::start_with_postgres(3);
    let token = c.engineer_token();
    let bob = c.token("bob", &["approvers"]);
    let leader = c.leader(1).expect("a leader");
    let holder = (1..=3).find(|&n| n != leader).unwrap();
    let via = (1..=3).find(|&n| n != leader && n != holder).unwrap();
    let mut held =
        c.spawn_psql(holder, &token, "DELETE FROM customers WHERE id = 7 /* marker-held-on-a-killed-node */");
    let approval = wait_for("the DELETE to be held", READY, || pending(&c, via, &bob).into_iter().next());
    let id = approval["id"].as_str().unwrap().to_string();
    let session = approval["session_id"].as_str().unwrap().to_string();
    let session_status = |c: &Cluster| {
        let v: serde_json::Value = serde_json::from_str(&c.cli_ok(via, &["sessions", "list", "--json"])).unwrap();
        let list = v.as_array().cloned().or_else(|| v["sessions"].as_array().cloned()).unwrap();
        list.iter().find(|s| s["id"] == session.as_str()).map(|s| s["status"].as_str().unwrap().to_string())
    };
    assert_eq!(session_status(&c).as_deref(), Some("open"));

    // The node dies without a word: the leader stops hearing from it and withdraws the
    // approval, so nobody can approve a statement that can no longer run.
    c.kill9(holder);
    let _ = held.wait();
    let withdrawn = wait_approval_status(&c, via, &bob, &id, "expired");
    let reason = withdrawn["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("node {holder}")) && reason.contains("unreachable"), "{withdrawn}");
    let o = c.cli_as(via, Some(&bob), &["approvals", "approve", &id]);
    assert!(!o.status.success(), "an approval held on a dead node was approved: {}", out(&o));
    // A node that is only down keeps its sessions until it comes back or is removed.
    assert_eq!(session_status(&c).as_deref(), Some("open"));

    // Back, it closes what it had open before it died.
    c.restart(holder);
    wait_for("the dead node's session to be closed as lost", READY, || {
        (session_status(&c).as_deref() == Some("lost")).then_some(())
    });
    assert!(!c.postgres_log().contains("marker-held-on-a-killed-node"), "the DELETE held on the killed node ran");
    assert_eq!(customer_count(&c, &token), 12);
}

#[test]
fn two_racing_decisions_on_one_approval_have_exactly_one_winner() {
    let c = Cluster::start_with_postgres(3);
    let token = c.engineer_token();
    let held = c.spawn_psql(1, &token, "INSERT INTO customers (name) VALUES ('race')");
    let bob = c.token("bob", &["approvers"]);
    let carol = c.token("carol", &["approvers"]);
    let approval = wait_for("the INSERT to be held", READY, || pending(&c, 2, &bob).into_iter().next());
    let id = approval["id"].as_str().unwrap().to_string();
    let bin = portcullis_tests::portcullis_bin();
    let racer = |node: u64, tok: &str, verb: &str| {
        Command::new(&bin)
            .args(["approvals", verb, &id])
            .env("PORTCULLIS_ENDPOINT", &c.nodes[&node].admin)
            .env("PORTCULLIS_CA", c.ca())
            .env("PORTCULLIS_TOKEN", tok)
            .env("PORTCULLIS_CONFIG_DIR", c.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = racer(2, &bob, "approve");
    let d = racer(3, &carol, "deny");
    let (a, d) = (a.wait_with_output().unwrap(), d.wait_with_output().unwrap());
    assert!(a.status.success() != d.status.success(), "exactly one decision must win: {} / {}", err(&a), err(&d));
    let o = held.wait_with_output().unwrap();
    assert_eq!(o.status.success(), a.status.success(), "the statement follows the winning decision");
}

#[test]
fn pgbench_runs_through_the_gateway_in_simple_extended_and_prepared_modes() {
    let c = Cluster::start_with_postgres(3);
    let token = c.engineer_token();
    let script = c.path().join("read.sql");
    std::fs::write(&script, "\\set id random(1, 10)\nSELECT name, email FROM customers WHERE id = :id;\n").unwrap();
    for (node, mode) in [(1, "simple"), (2, "extended"), (3, "prepared")] {
        let (h, p) = c.pg_addr(node);
        let o = Command::new("pgbench")
            .args([
                "-n",
                "-M",
                mode,
                "-c",
                "2",
                "-t",
                "25",
                "-f",
                script.to_str().unwrap(),
                "-h",
                &h,
                "-p",
                &p,
                "-U",
                "alice",
                "demo",
            ])
            .env("PGPASSWORD", &token)
            .env("PGSSLMODE", "require")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "pgbench -M {mode} via node {node}: {}{}", out(&o), err(&o));
        assert!(out(&o).contains("number of transactions actually processed: 50/50"), "{}", out(&o));
    }
}

#[test]
fn with_the_quorum_gone_no_statement_reaches_the_backend_and_the_client_is_told_at_once() {
    let mut c = Cluster::start_with_postgres(3);
    let token = c.engineer_token();
    let conninfo = c.pg_conninfo(1, "alice");
    // A session opened while healthy...
    let mut psql = Command::new("psql")
        .args(["-X", "-A", "-t", &conninfo])
        .env("PGPASSWORD", &token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = psql.stdin.as_mut().unwrap();
        writeln!(stdin, "SELECT 'before-' || count(*) FROM customers;").unwrap();
        stdin.flush().unwrap();
    }
    wait_for("the first query to run", READY, || c.postgres_log().contains("'before-'").then_some(()));
    // ...then its node loses the quorum.
    c.kill9(2);
    c.kill9(3);
    wait_for("node 1 to stop serving", Duration::from_secs(5), || (c.readyz(1) == Some(503)).then_some(()));
    {
        use std::io::Write;
        let stdin = psql.stdin.as_mut().unwrap();
        writeln!(stdin, "SELECT 'marker-after-quorum-loss';").unwrap();
        writeln!(stdin, "\\q").unwrap();
    }
    let started = Instant::now();
    let o = psql.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "the client must be told promptly");
    assert!(err(&o).contains("quorum lease"), "{}", err(&o));
    assert!(!c.postgres_log().contains("marker-after-quorum-loss"), "a statement reached the backend without quorum");
    // New connections are refused with 57P03 as well.
    let o = c.psql(1, &token, &["SELECT 1"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("quorum lease"), "{}", err(&o));
}

#[test]
fn the_gateway_reaches_the_backend_over_verified_tls_when_the_resource_asks_for_it() {
    let c = Cluster::start_with_postgres(1);
    let pg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(c.path().join("postgres.json")).unwrap()).unwrap();
    let file = c.path().join("tls.yaml");
    std::fs::write(
        &file,
        format!(
            "resources:\n  - name: demotls\n    protocol: postgres\n    address: 127.0.0.1:{}\n    username: demo_app\n    password: \"{}\"\n    options: {{ database: demo, sslmode: verify-full, sslrootcert: \"{}\" }}\n",
            pg["port"],
            pg["app_password"].as_str().unwrap(),
            c.ca().display()
        ),
    )
    .unwrap();
    c.cli_ok(1, &["resource", "apply", "-f", file.to_str().unwrap()]);
    let policy = c.path().join("tls-policy.yaml");
    std::fs::write(&policy, "name: tls\nrules:\n  - match: { groups: [engineers], resources: [demotls], kinds: [select] }\n    action: allow\n").unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", policy.to_str().unwrap()]);
    let (h, p) = c.pg_addr(1);
    let o = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            &format!("host={h} port={p} dbname=demotls user=alice sslmode=require"),
            "-c",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ])
        .env("PGPASSWORD", c.engineer_token())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).trim(), "t", "the backend connection must be encrypted");
}

#[test]
fn door_metrics_count_decisions_refusals_holds_audit_commits_and_sessions_per_door() {
    use portcullis_tests::metric;
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    let pg = [("door", "postgres")];

    let o = c.psql(1, &token, &["SELECT 1 AS allowed"]);
    assert!(o.status.success(), "{}", err(&o));
    let o = c.psql(1, &token, &["DROP TABLE customers"]);
    assert!(!o.status.success(), "a DROP was allowed: {}", out(&o));

    let held = c.spawn_psql(1, &token, "UPDATE customers SET name = name WHERE id = 1 /* marker-metrics */");
    let bob = c.token("bob", &["approvers"]);
    let approval = wait_for("the UPDATE to be held", READY, || pending(&c, 1, &bob).into_iter().next());
    let id = approval["id"].as_str().unwrap().to_string();
    let during = c.metrics(1);
    assert_eq!(metric(&during, "portcullis_gate_holds_pending", &pg), Some(1.0), "{during}");
    assert_eq!(metric(&during, "portcullis_gate_sessions_open", &pg), Some(1.0), "{during}");
    c.cli_ok(1, &["--token", &bob, "approvals", "approve", &id]);
    let o = held.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", err(&o));

    let m = wait_for("the held session to end", READY, || {
        let m = c.metrics(1);
        (metric(&m, "portcullis_gate_sessions_open", &pg) == Some(0.0)).then_some(m)
    });
    let decisions = |action| {
        metric(&m, "portcullis_gate_decisions_total", &[("door", "postgres"), ("resource", "demo"), ("action", action)])
    };
    assert!(decisions("allow") >= Some(1.0), "{m}");
    assert_eq!(decisions("deny"), Some(1.0), "{m}");
    assert_eq!(decisions("review"), Some(1.0), "{m}");
    assert_eq!(metric(&m, "portcullis_gate_refusals_total", &[("door", "postgres"), ("reason", "denied")]), Some(1.0));
    assert_eq!(metric(&m, "portcullis_gate_holds_pending", &pg), Some(0.0), "{m}");
    assert_eq!(
        metric(&m, "portcullis_gate_hold_seconds_count", &[("door", "postgres"), ("outcome", "approved")]),
        Some(1.0),
        "{m}"
    );
    assert!(
        metric(&m, "portcullis_gate_audit_commit_seconds_count", &[("mode", "strict"), ("ok", "true")]) >= Some(3.0)
    );
    assert_eq!(metric(&m, "portcullis_gate_sessions_total", &pg), Some(3.0), "{m}");
}

#[test]
fn functions_that_run_sql_the_statement_does_not_show_are_denied_by_the_demo_policy() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    for sql in [
        "SELECT table_to_xml('customers', true, false, '')",
        "SELECT schema_to_xml('public', true, false, '')",
        "SELECT query_to_xml('SELECT email FROM customers', true, false, '')",
        "SELECT word FROM ts_stat('SELECT to_tsvector(email) FROM customers')",
    ] {
        let o = c.psql(1, &token, &[sql]);
        assert!(!o.status.success(), "{sql} ran: {}", out(&o));
        assert!(err(&o).contains("no-dynamic-sql") || err(&o).contains("no-admin-functions"), "{sql}: {}", err(&o));
        assert!(!out(&o).contains("@example.com"), "{sql} leaked: {}", out(&o));
    }
    let log = c.postgres_log();
    assert!(!log.contains("table_to_xml") && !log.contains("ts_stat"), "a dynamic-SQL call reached Postgres:\n{log}");
}

#[test]
fn a_prepared_write_is_held_at_every_execution_and_the_approver_sees_its_parameters() {
    use portcullis_tests::pg;
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    let bob = c.token("bob", &["approvers"]);
    let rt = pg::runtime();
    let client = rt.block_on(pg::connect(&c, 1, "demo", "alice", &token)).unwrap();
    let client = std::sync::Arc::new(client);
    // Preparing holds nothing: no execution, no parameters yet.
    let stmt = rt.block_on(client.prepare("UPDATE customers SET name = name || ' (checked)' WHERE id = $1")).unwrap();
    assert!(pending(&c, 1, &bob).is_empty(), "a Parse was held");

    // Execution 1 (id 3): held, the approval shows the parameter, approved, runs.
    let run = |id: i32| {
        let (client, stmt) = (client.clone(), stmt.clone());
        rt.spawn(async move { client.execute(&stmt, &[&id]).await })
    };
    let first = run(3);
    let approval = wait_for("execution 1 to be held", READY, || pending(&c, 1, &bob).into_iter().next());
    let action = approval["action"].as_str().unwrap().to_string();
    assert!(action.contains("$1 = '3'"), "the approver does not see the parameter: {action}");
    c.cli_ok(1, &["--token", &bob, "approvals", "approve", approval["id"].as_str().unwrap()]);
    assert_eq!(rt.block_on(first).unwrap().unwrap(), 1);

    // Execution 2 (id 4) of the same statement: held again; denied, it does not run.
    let second = run(4);
    let approval2 = wait_for("execution 2 to be held", READY, || pending(&c, 1, &bob).into_iter().next());
    assert_ne!(approval2["id"], approval["id"], "one approval covered two executions");
    assert!(approval2["action"].as_str().unwrap().contains("$1 = '4'"), "{approval2}");
    c.cli_ok(1, &["--token", &bob, "approvals", "deny", approval2["id"].as_str().unwrap(), "--reason", "not 4"]);
    let e = rt.block_on(second).unwrap().unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{e:?}");

    let names = c.backend_psql("SELECT id, name FROM customers WHERE id IN (3, 4) ORDER BY id");
    assert!(names.contains("3|Grace Hopper (checked)"), "{names}");
    assert!(names.contains("4|Edsger Dijkstra") && !names.contains("Dijkstra (checked)"), "{names}");
    // The audit shows each execution with its parameters.
    let sessions = c.cli_ok(1, &["sessions", "export", "--json", "--resource", "demo"]);
    assert!(sessions.contains("\"params\":[\"3\"]"), "{sessions}");
}

#[test]
fn harmless_startup_settings_reach_postgres_and_are_recorded_and_the_rest_is_refused_by_name() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    let env = [("PGAPPNAME", "marker-app"), ("PGOPTIONS", "-c statement_timeout=4321")];
    let o = c.psql_with_env(1, &token, &env, &["SHOW statement_timeout"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).trim(), "4321ms", "the client's statement_timeout did not reach Postgres");
    let export = c.cli_ok(1, &["sessions", "export", "--json", "--resource", "demo"]);
    assert!(export.contains("\"start\"") && export.contains("marker-app"), "application_name not recorded: {export}");

    for (env, named) in [
        (("PGOPTIONS", "-c search_path=evil"), "search_path"),
        (("PGOPTIONS", "-c standard_conforming_strings=off"), "standard_conforming_strings"),
        (("PGCLIENTENCODING", "LATIN1"), "LATIN1"),
    ] {
        let o = c.psql_with_env(1, &token, &[env], &["SELECT 1"]);
        assert!(!o.status.success(), "{env:?} was accepted");
        assert!(err(&o).contains(named), "{env:?}: {}", err(&o));
    }
}

#[test]
fn policy_tells_row_locking_reads_and_two_phase_commit_from_plain_reads_and_transactions() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    // The demo policy: two-phase commit is denied by name, plain transactions pass.
    let o = c.psql(1, &token, &["BEGIN", "SELECT 1", "PREPARE TRANSACTION 'marker_2pc'"]);
    assert!(!o.status.success(), "{}", out(&o));
    assert!(err(&o).contains("no-two-phase"), "{}", err(&o));
    let o = c.psql(1, &token, &["BEGIN", "SELECT 1", "COMMIT"]);
    assert!(o.status.success(), "{}", err(&o));
    // A rule on locks_rows holds row-locking reads apart from plain ones.
    let file = c.path().join("locks.yaml");
    std::fs::write(
        &file,
        "name: locks\nrules:\n  - name: no-row-locks\n    match: { resources: [demo], locks_rows: true }\n    action: deny\n    reason: reads only, no row locks\n",
    )
    .unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", file.to_str().unwrap()]);
    let o = c.psql(1, &token, &["SELECT id FROM customers WHERE id = 1 FOR UPDATE"]);
    assert!(!o.status.success() && err(&o).contains("no row locks"), "{}", err(&o));
    let o = c.psql(1, &token, &["SELECT id FROM customers WHERE id = 1"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(!c.postgres_log().contains("marker_2pc") && !c.postgres_log().contains("FOR UPDATE"));
}

#[test]
fn error_texts_never_carry_masked_data_to_the_client_or_the_audit() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    for sql in [
        "SELECT string_agg(email || ssn, ',')::int FROM customers",
        "SELECT (email)::int FROM customers WHERE id = 1",
        "SELECT ssn::date FROM customers WHERE id = 2",
    ] {
        let o = c.psql(1, &token, &[sql]);
        assert!(!o.status.success(), "{sql} succeeded");
        let text = err(&o);
        assert!(text.contains("ERROR:") && !text.contains("denied"), "{sql}: not the backend's error: {text}");
        assert!(!text.contains("@example.com") && !text.contains("45-6789"), "{sql} leaked: {text}");
    }
    let export = c.cli_ok(1, &["sessions", "export", "--json", "--resource", "demo"]);
    assert!(export.contains("invalid input syntax"), "the errors were not recorded: {export}");
    assert!(!export.contains("@example.com"), "the audit kept masked data: {export}");
}

#[test]
fn plans_and_aliased_functions_are_not_masked_as_if_they_held_masked_columns() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    let o = c.psql(1, &token, &["EXPLAIN SELECT email FROM customers WHERE id = 1"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("Scan") && !out(&o).contains("***"), "the plan was masked: {}", out(&o));
    let o = c.psql(1, &token, &["SELECT x FROM unnest(ARRAY[1,2]) AS t(x)"]);
    assert_eq!(out(&o).trim(), "1\n2", "{}", err(&o));
    // The table's own columns under other names stay masked.
    let o = c.psql(1, &token, &["SELECT x FROM customers AS c(a, b, x) WHERE a = 1"]);
    assert_eq!(out(&o).trim(), "***", "{}", err(&o));
}

#[test]
fn statistics_and_activity_views_do_not_hand_out_masked_values_or_other_sessions_statements() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    c.backend_psql("ANALYZE customers");
    for sql in [
        "SELECT most_common_vals::text FROM pg_stats WHERE tablename = 'customers' AND attname = 'email'",
        "SELECT histogram_bounds::text AS h FROM pg_catalog.pg_stats WHERE tablename = 'customers' AND attname = 'email'",
        "SELECT * FROM pg_stats WHERE tablename = 'customers' AND attname = 'ssn'",
    ] {
        let o = c.psql(1, &token, &[sql]);
        assert!(o.status.success(), "{sql}: {}", err(&o));
        assert!(!out(&o).contains("@example.com") && !out(&o).contains("45-6789"), "{sql} leaked: {}", out(&o));
    }
    // Another session's statement text, with its literals, stays hidden.
    let held = c.spawn_psql(1, &token, "SELECT pg_sleep(3), 'marker-secret-literal'");
    wait_for("the other statement to run", READY, || {
        let n = c.backend_psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(3)%'");
        (n.trim() == "1").then_some(())
    });
    let o = c.psql(1, &token, &["SELECT query FROM pg_stat_activity"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(!out(&o).contains("marker-secret-literal"), "another session's statement leaked: {}", out(&o));
    let _ = held.wait_with_output();
}

#[test]
fn every_spelling_of_a_whole_row_read_through_psql_keeps_the_masked_columns_masked() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    for sql in [
        "SELECT customers FROM public.customers WHERE id = 1",
        "SELECT to_json(c) FROM customers c WHERE id = 1",
        "SELECT row_to_json(customers)::text FROM customers WHERE id = 1",
        "SELECT ROW(c.*)::text FROM customers c WHERE id = 1",
        "SELECT json_agg(t)::text FROM (SELECT * FROM customers) t",
        "TABLE customers",
        "SELECT (c).email FROM customers c WHERE id = 1",
    ] {
        let o = c.psql(1, &token, &[sql]);
        assert!(o.status.success(), "{sql}: {}", err(&o));
        assert!(!out(&o).contains("@example.com") && !out(&o).contains("45-6789"), "{sql} leaked: {}", out(&o));
    }
}

#[test]
fn copy_to_stdout_streams_every_column_with_the_masked_ones_masked() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    let file = c.path().join("copy.yaml");
    std::fs::write(
        &file,
        "name: copy\nrules:\n  - match: { groups: [engineers], resources: [demo], kinds: [copy] }\n    action: allow\n",
    )
    .unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", file.to_str().unwrap()]);
    // psql's \copy: COPY ... TO STDOUT in the text format.
    let o = c.psql(1, &token, &["\\copy customers to stdout"]);
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    assert!(text.lines().any(|l| l == "1\tAda Lovelace\t***\t***"), "{text}");
    assert_eq!(text.lines().count(), 12, "{text}");
    // CSV with a header and a column list.
    let o = c.psql(1, &token, &["COPY customers (name, email) TO STDOUT WITH (FORMAT csv, HEADER)"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).starts_with("name,email\nAda Lovelace,***\n"), "{}", out(&o));
    // A query's rows: its columns as Postgres describes them, judged like a SELECT's.
    for (sql, want) in [
        ("COPY (SELECT email, ssn FROM customers WHERE id = 1) TO STDOUT", "***\t***"),
        ("COPY (SELECT id, name AS who, email AS e FROM customers WHERE id = 1) TO STDOUT", "1\tAda Lovelace\t***"),
        ("COPY (SELECT upper(email), length(name) FROM customers WHERE id = 1) TO STDOUT (FORMAT csv)", "***,"),
    ] {
        let o = c.psql(1, &token, &[sql]);
        assert!(o.status.success(), "{sql}: {}", err(&o));
        assert_eq!(out(&o).trim(), want, "{sql}");
    }
    // The binary format too, tuple by tuple.
    let o = c.psql(1, &token, &["COPY customers TO STDOUT (FORMAT binary)"]);
    assert!(o.status.success(), "{}", err(&o));
    let bytes = String::from_utf8_lossy(&o.stdout);
    assert!(bytes.starts_with("PGCOPY") && bytes.contains("Ada Lovelace") && bytes.contains("***"), "{bytes:?}");
    assert!(!bytes.contains("@example.com") && !bytes.contains("45-6789"), "binary COPY leaked: {bytes:?}");
    let o = c.psql(1, &token, &["\\copy customers to stdout csv"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).lines().count(), 12, "{}", out(&o));
    assert!(!out(&o).contains("@example.com") && !text.contains("@example.com"), "{}", out(&o));
}

#[test]
fn pg_dump_of_demo_through_the_gateway_restores_with_the_masked_columns_masked() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    let dump = c.path().join("demo.sql");
    let o = Command::new("pg_dump")
        .arg(c.pg_conninfo(1, "agent"))
        .args(["--no-owner", "--no-privileges", "-f"])
        .arg(&dump)
        .env("PGPASSWORD", &token)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "pg_dump through the gateway failed: {}", err(&o));
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(text.contains("COPY public.customers"), "{text}");
    assert!(!text.contains("@example.com") && !text.contains("45-6789"), "the dump holds masked data");
    assert!(text.contains("Ada Lovelace\t***\t***"), "{text}");
    // It restores into a new database, and the data no rule masks equals the original's.
    c.backend_psql("CREATE DATABASE restored");
    c.backend_psql_in("restored", &["-f", dump.to_str().unwrap()]);
    let check = "SELECT count(*), count(DISTINCT name), min(email), min(ssn) FROM customers";
    assert_eq!(c.backend_psql_in("restored", &["-c", check]).trim(), "12|12|***|***");
    let names = "SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM customers";
    assert_eq!(c.backend_psql_in("restored", &["-c", names]), c.backend_psql(names));

    // The custom format too, restored with pg_restore.
    let custom = c.path().join("demo.dump");
    let o = Command::new("pg_dump")
        .arg(c.pg_conninfo(1, "agent"))
        .args(["--no-owner", "--no-privileges", "-Fc", "-f"])
        .arg(&custom)
        .env("PGPASSWORD", &token)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "pg_dump -Fc through the gateway failed: {}", err(&o));
    c.backend_psql("CREATE DATABASE restored_custom");
    let pg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(c.path().join("postgres.json")).unwrap()).unwrap();
    let o = Command::new("pg_restore")
        .args(["--no-owner", "-d"])
        .arg(format!("host=127.0.0.1 port={} dbname=restored_custom user=postgres", pg["port"]))
        .arg(&custom)
        .env("PGPASSWORD", pg["superuser_password"].as_str().unwrap())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "pg_restore failed: {}", err(&o));
    assert_eq!(c.backend_psql_in("restored_custom", &["-c", check]).trim(), "12|12|***|***");
}

#[test]
fn masked_data_is_followed_through_views_functions_and_generated_columns_and_clear_columns_stay_clear() {
    let c = Cluster::start_with_postgres(1);
    // Made on the backend directly, before the gateway's first session reads the catalog.
    c.backend_psql(
        "CREATE VIEW contacts AS SELECT id, email AS contact, upper(name) AS shout FROM customers;
         CREATE VIEW contacts_again AS SELECT contact AS reach FROM contacts;
         CREATE FUNCTION identifier_of(int) RETURNS text LANGUAGE sql STABLE AS 'SELECT ssn FROM customers WHERE id = $1';
         ALTER TABLE customers ADD COLUMN tax_id text GENERATED ALWAYS AS (ssn) STORED;
         GRANT SELECT ON contacts, contacts_again TO demo_app;",
    );
    let token = c.engineer_token();
    // A masked column is masked whole (`***`), not merely by the detectors
    // (`a***@example.com`, `***-**-6789`), under whatever name it comes back.
    for (sql, want) in [
        ("SELECT id, contact FROM contacts WHERE id = 1", "1|***"),
        ("SELECT reach FROM contacts_again LIMIT 1", "***"),
        ("SELECT upper(contact) FROM contacts WHERE id = 1", "***"),
        ("SELECT identifier_of(1)", "***"),
        ("SELECT tax_id FROM customers WHERE id = 1", "***"),
        ("SELECT e FROM (SELECT email AS e FROM customers) s LIMIT 1", "***"),
        ("WITH w AS (SELECT ssn AS s FROM customers) SELECT s FROM w LIMIT 1", "***"),
        // Columns that hold no masked data stay clear even beside masked ones.
        ("SELECT name AS who, email FROM customers WHERE id = 1", "Ada Lovelace|***"),
        ("SELECT s.name FROM (SELECT name, email FROM customers) s WHERE s.name LIKE 'Ada%'", "Ada Lovelace"),
        ("SELECT c.id, c.name FROM customers c JOIN contacts k ON k.id = c.id WHERE c.id = 1", "1|Ada Lovelace"),
    ] {
        let o = c.psql(1, &token, &[sql]);
        assert!(o.status.success(), "{sql}: {}", err(&o));
        assert_eq!(out(&o).trim(), want, "{sql}");
    }
    let o = c.psql(1, &token, &["SELECT * FROM contacts", "SELECT reach FROM contacts_again", "TABLE customers"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(!out(&o).contains("@example.com") && !out(&o).contains("-6789"), "leaked: {}", out(&o));
}

#[test]
fn a_view_redefined_through_the_gateway_is_judged_by_its_new_definition_at_once() {
    let c = Cluster::start_with_postgres(1);
    c.backend_psql(
        "CREATE VIEW reach AS SELECT id, name AS contact FROM customers; ALTER VIEW reach OWNER TO demo_app",
    );
    // DDL allowed, no detectors: only the column rule stands between the client and the data.
    let file = c.path().join("demo.yaml");
    std::fs::write(
        &file,
        "name: demo\nrules:\n  - match: { groups: [engineers], resources: [demo], kinds: [select, ddl, transaction] }\n    \
         action: allow\n  - match: { resources: [demo] }\n    action: mask\n    mask: { columns: [email, ssn] }\n",
    )
    .unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", file.to_str().unwrap()]);
    let token = c.engineer_token();
    let redefine = |to: &str| format!("CREATE OR REPLACE VIEW reach AS SELECT id, {to} AS contact FROM customers");
    // The rows psql printed, without the command tags.
    let rows = |o: &std::process::Output| -> String {
        let text = out(o);
        text.lines().filter(|l| !["CREATE VIEW", "BEGIN", "COMMIT"].contains(l)).collect::<Vec<_>>().join("\n")
    };
    let o = c.psql(
        1,
        &token,
        &[
            "SELECT contact FROM reach WHERE id = 1",
            &redefine("email"),
            "SELECT contact FROM reach WHERE id = 1",
            &redefine("name"),
            "SELECT contact FROM reach WHERE id = 1",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(rows(&o), "Ada Lovelace\n***\nAda Lovelace", "one session");
    // Inside the transaction that redefines it, before the catalog can show it.
    let o = c.psql(
        1,
        &token,
        &[
            "BEGIN",
            &redefine("email"),
            "SELECT contact FROM reach WHERE id = 1",
            "SELECT id FROM customers WHERE id = 1",
            "COMMIT",
            "SELECT contact FROM reach WHERE id = 1",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(rows(&o), "***\n1\n***", "one transaction");
    // Another session of the node sees the new definition too.
    let o = c.psql(1, &token, &["SELECT contact FROM reach WHERE id = 1"]);
    assert_eq!(out(&o).trim(), "***", "{}", err(&o));
}
