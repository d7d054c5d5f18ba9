//! HA deployment (issue 6): real HAProxy (`portcullis dev --lb`, config rendered from
//! deploy/haproxy/haproxy.cfg.tmpl) in front of real nodes, psql and pgbench through it;
//! graceful shutdown on SIGTERM; rolling restarts; backup and restore.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use portcullis_tests::{Cluster, err, out, process_alive, wait_for};

/// psql through the load balancer, one statement per `-c`.
fn lb_psql(c: &Cluster, token: &str, sql: &str) -> Output {
    let (h, p) = c.lb_pg_addr();
    Command::new("psql")
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .arg(format!("host={h} port={p} dbname=demo user=alice sslmode=require connect_timeout=5"))
        .args(["-c", sql])
        .env("PGPASSWORD", token)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn wait_lb_all_up(c: &Cluster, ids: &[u64]) {
    wait_for("HAProxy to put every node in rotation", Duration::from_secs(20), || {
        let up = c.lb_pg_servers_up();
        ids.iter().all(|id| up.get(id) == Some(&true)).then_some(())
    });
}

/// Every exported audit event (JSON lines of `sessions export --json`) via node `via`.
fn audit_events(c: &Cluster, via: u64) -> Vec<serde_json::Value> {
    let text = c.cli_ok(via, &["sessions", "export", "--json", "--resource", "demo"]);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .flat_map(|l| {
            let record: serde_json::Value = serde_json::from_str(l).unwrap();
            let session = record["session"].clone();
            record["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let mut e = e.clone();
                    e["session"] = session.clone();
                    e
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn statement_sqls(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["kind"] == "statement")
        .filter_map(|e| e["detail"]["sql"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn psql_through_haproxy_keeps_working_when_any_node_dies_and_a_node_without_quorum_is_drained() {
    let mut c = Cluster::start_with(3, &["--postgres", "--lb"]);
    let token = c.engineer_token();
    wait_lb_all_up(&c, &[1, 2, 3]);
    let o = lb_psql(&c, &token, "SELECT count(*) FROM customers");
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).trim().parse::<u64>().unwrap() >= 10, "{}", out(&o));

    for victim in 1..=3u64 {
        c.kill9(victim);
        let killed = Instant::now();
        // New connections through the balancer succeed again within seconds (a leader's
        // death also costs an election).
        let recovered = loop {
            let o = lb_psql(&c, &token, "SELECT count(*) FROM customers");
            if o.status.success() {
                break killed.elapsed();
            }
            assert!(
                killed.elapsed() < Duration::from_secs(10),
                "no connection through HAProxy succeeded within 10 s of killing node {victim}: {}\n{}",
                err(&o),
                c.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        eprintln!("node {victim} killed: psql through HAProxy works again after {recovered:?}");
        c.restart(victim);
        c.wait_all_serving(&[1, 2, 3], Duration::from_secs(30));
        wait_lb_all_up(&c, &[1, 2, 3]);
    }

    // Idle sessions through HAProxy, spread over the nodes (leastconn). A node that
    // loses its lease keeps idle sessions open itself; HAProxy shuts them down when it
    // marks the node down.
    let rt = portcullis_tests::pg::runtime();
    let sessions: Vec<tokio_postgres::Client> = rt.block_on(async {
        let (h, p) = c.lb_pg_addr();
        let mut out = vec![];
        for _ in 0..3 {
            let mut config = tokio_postgres::Config::new();
            config.host(&h).port(p.parse().unwrap()).dbname("demo").user("alice").password(&token);
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let (client, connection) = config.connect(portcullis_tests::pg::make_tls(&c)).await.unwrap();
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client.simple_query("SELECT 1").await.unwrap();
            out.push(client);
        }
        out
    });

    // Node 1 alone: alive (healthz), but without a quorum its /readyz fails and
    // HAProxy takes it out of rotation.
    c.kill9(2);
    c.kill9(3);
    let pid1 = c.pid(1).unwrap();
    let drained = Instant::now();
    wait_for("HAProxy to take node 1 out of rotation", Duration::from_secs(10), || {
        (c.lb_pg_servers_up().get(&1) == Some(&false)).then_some(())
    });
    eprintln!("node 1 without quorum drained after {:?}", drained.elapsed());
    assert!(process_alive(pid1), "node 1 must still run: the balancer drained it, not a crash");
    assert_eq!(c.readyz(1), Some(503));
    wait_for("HAProxy to shut down the sessions of the drained node", Duration::from_secs(10), || {
        sessions.iter().all(|s| s.is_closed()).then_some(())
    });
    let o = lb_psql(&c, &token, "SELECT 1");
    assert!(!o.status.success(), "nothing serves, yet a statement went through: {}", out(&o));

    // Quorum back: node 1 returns to rotation without a restart.
    c.restart(2);
    c.restart(3);
    c.wait_all_serving(&[1, 2, 3], Duration::from_secs(30));
    wait_lb_all_up(&c, &[1, 2, 3]);
    let o = lb_psql(&c, &token, "SELECT 1");
    assert!(o.status.success(), "{}", err(&o));
}

#[test]
fn sigterm_drains_the_node_lets_the_running_statement_finish_and_flushes_its_audit() {
    let mut c = Cluster::start_with_postgres(3);
    let token = c.engineer_token();
    let running = c.spawn_psql(1, &token, "SELECT pg_sleep(3), 'drain-marker-1'");
    wait_for("the slow statement to reach Postgres", Duration::from_secs(10), || {
        c.postgres_log().contains("drain-marker-1").then_some(())
    });
    let pid = c.pid(1).unwrap();
    portcullis_tests::signal(pid, "TERM");
    // At once: not ready (the load balancer drains us) and no new connections.
    wait_for("node 1 /readyz to fail after SIGTERM", Duration::from_secs(3), || {
        (c.readyz(1) != Some(200)).then_some(())
    });
    let o = c.psql(1, &token, &["SELECT 'drain-marker-2'"]);
    assert!(!o.status.success(), "a new connection was served by a draining node: {}", out(&o));
    // The running statement finishes with its result.
    let done = running.wait_with_output().unwrap();
    assert!(done.status.success(), "the running statement failed: {}", err(&done));
    assert!(out(&done).contains("drain-marker-1"), "{}", out(&done));
    // Then the node leaves on its own, well within the grace period.
    c.terminate(1, Duration::from_secs(20));
    assert!(!c.postgres_log().contains("drain-marker-2"));

    // Its audit was flushed: the statement and its result are committed, and the
    // session is closed, as seen from another node.
    c.wait_all_serving_under(&[2, 3], Duration::from_secs(30), |l| l != 1);
    let events = audit_events(&c, 2);
    let session = events
        .iter()
        .find(|e| e["kind"] == "statement" && e["detail"]["sql"].as_str().unwrap_or("").contains("drain-marker-1"))
        .unwrap_or_else(|| panic!("no audit record of the drained statement: {events:?}"))["session"]
        .clone();
    assert_eq!(session["node"], 1);
    assert_eq!(session["status"], "closed", "{session}");
    let results = events.iter().filter(|e| e["session"]["id"] == session["id"] && e["kind"] == "result").count();
    assert!(results >= 1, "the statement's result record was lost: {events:?}");
    let log = std::fs::read_to_string(c.path().join("node1.log")).unwrap();
    assert!(log.contains("sessions ended and their audit is committed"), "{log}");
}

#[test]
fn rolling_restart_under_pgbench_through_haproxy_keeps_every_successful_statement_in_the_audit() {
    let mut c = Cluster::start_with(3, &["--postgres", "--lb"]);
    let token = c.engineer_token();
    c.backend_psql("CREATE TABLE ledger(op text PRIMARY KEY)");
    c.backend_psql("GRANT SELECT, INSERT ON ledger TO demo_app");
    let policy = c.path().join("ledger.yaml");
    std::fs::write(
        &policy,
        // Replaces the demo policy (same name), whose writes would wait for approval.
        "name: demo\nrules:\n  - match: { groups: [engineers], resources: [demo], kinds: [select] }\n    action: allow\n  - match: { groups: [engineers], resources: [demo], kinds: [insert], tables: [ledger] }\n    action: allow\n",
    )
    .unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", policy.to_str().unwrap()]);
    wait_lb_all_up(&c, &[1, 2, 3]);

    let stop = Arc::new(AtomicBool::new(false));
    // pgbench (select-only, simple protocol) through HAProxy, started again whenever a
    // restart ends its run; the sum of transactions it reports as processed.
    let script = c.path().join("read.sql");
    std::fs::write(&script, "\\set id random(1, 10)\nSELECT name FROM customers WHERE id = :id /* pgbench-ha */;\n")
        .unwrap();
    let (h, p) = c.lb_pg_addr();
    let bench = {
        let (stop, token, script) = (stop.clone(), token.clone(), script.clone());
        std::thread::spawn(move || {
            let mut processed = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let o = Command::new("pgbench")
                    .args(["-n", "-M", "simple", "-c", "2", "-T", "2", "-f", script.to_str().unwrap()])
                    .args(["-h", &h, "-p", &p, "-U", "alice", "demo"])
                    .env("PGPASSWORD", &token)
                    .env("PGSSLMODE", "require")
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&o.stdout).to_string();
                // "number of transactions actually processed: N" (or "N/M" with -t).
                if let Some(line) = text.lines().find(|l| l.starts_with("number of transactions actually processed")) {
                    let n = line.rsplit(':').next().unwrap().trim().split('/').next().unwrap();
                    processed += n.parse::<u64>().unwrap();
                } else {
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            processed
        })
    };
    // Writes with an id each, every one a new connection through HAProxy.
    let acked_so_far = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (stop, token, acked_so_far) = (stop.clone(), token.clone(), acked_so_far.clone());
        let (h, p) = c.lb_pg_addr();
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let op = format!("ha-op-{n}");
                let o = Command::new("psql")
                    .args(["-X", "-v", "ON_ERROR_STOP=1"])
                    .arg(format!("host={h} port={p} dbname=demo user=alice sslmode=require connect_timeout=5"))
                    .args(["-c", &format!("INSERT INTO ledger VALUES ('{op}')")])
                    .env("PGPASSWORD", &token)
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                if o.status.success() {
                    acked.push(op);
                    acked_so_far.fetch_add(1, Ordering::Relaxed);
                } else {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            acked
        })
    };

    std::thread::sleep(Duration::from_secs(2));
    for id in 1..=3u64 {
        let before = acked_so_far.load(Ordering::Relaxed);
        let status = c.terminate(id, Duration::from_secs(45));
        assert!(status.is_none_or(|s| s.success()), "node {id} exited with {status:?} after SIGTERM");
        std::thread::sleep(Duration::from_millis(500));
        c.restart(id);
        c.wait_all_serving(&[1, 2, 3], Duration::from_secs(30));
        wait_lb_all_up(&c, &[1, 2, 3]);
        std::thread::sleep(Duration::from_secs(1));
        // The workload went on through this node's restart.
        assert!(acked_so_far.load(Ordering::Relaxed) > before, "no write succeeded while node {id} restarted");
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    // SIGTERM closes the store cleanly, so a restarted node trusts its state on disk
    // instead of rebuilding it from a snapshot and the log.
    let logs = c.logs_full();
    assert!(logs.contains("closed cleanly last time"), "no restart found a clean close:\n{}", c.logs());
    let processed = bench.join().unwrap();
    let acked = writer.join().unwrap();
    eprintln!("rolling restart: {} acknowledged inserts, {processed} pgbench transactions", acked.len());
    assert!(acked.len() >= 10, "the write workload barely ran: {} acknowledged", acked.len());
    assert!(processed >= 50, "pgbench barely ran: {processed} transactions");

    // Everything that succeeded is in the audit (read after the restarts, via node 1).
    let events = audit_events(&c, 1);
    let sqls = statement_sqls(&events);
    let missing: Vec<&String> = acked.iter().filter(|op| !sqls.iter().any(|s| s.contains(op.as_str()))).collect();
    assert!(missing.is_empty(), "acknowledged inserts without an audit record: {missing:?}");
    let audited_reads = sqls.iter().filter(|s| s.contains("pgbench-ha")).count() as u64;
    assert!(
        audited_reads >= processed,
        "pgbench reported {processed} transactions, the audit holds {audited_reads} of its statements"
    );
    // Ground truth in the backend: every acknowledged insert is in the ledger, and every
    // ledger row (acknowledged or not: a reply can be lost in a restart) was audited.
    let ledger: BTreeSet<String> = c.backend_psql("SELECT op FROM ledger").lines().map(str::to_string).collect();
    let lost: Vec<&String> = acked.iter().filter(|op| !ledger.contains(*op)).collect();
    assert!(lost.is_empty(), "acknowledged inserts missing from the ledger: {lost:?}");
    let unaudited: Vec<&String> = ledger.iter().filter(|op| !sqls.iter().any(|s| s.contains(op.as_str()))).collect();
    assert!(unaudited.is_empty(), "ledger rows without an audit record: {unaudited:?}");
}

/// Policies, approvals, sessions and resources as each node lists them.
fn state_listing(c: &Cluster, via: u64) -> Vec<String> {
    ["policy", "approvals", "sessions", "resource"]
        .iter()
        .map(|what| c.cli_ok(via, &[what, "list", "--json"]))
        .collect()
}

#[test]
fn backup_restores_into_a_new_cluster_identically_and_bad_files_are_refused_whole() {
    let c = Cluster::start_with_postgres(3);
    let token = c.engineer_token();
    let o = c.psql(2, &token, &["SELECT count(*) FROM customers"]);
    assert!(o.status.success(), "{}", err(&o));
    // One approved and one denied approval, so the approvals table has both.
    for (n, approve) in [(11, true), (12, false)] {
        let held = c.spawn_psql(1, &token, &format!("DELETE FROM customers WHERE id = {n}"));
        let id = wait_for("the approval request", Duration::from_secs(20), || {
            let v: serde_json::Value =
                serde_json::from_str(&c.cli_ok(1, &["approvals", "list", "--pending", "--json"])).unwrap();
            v.as_array()?.first()?["id"].as_str().map(str::to_string)
        });
        let bob = c.token("bob", &["approvers"]);
        let verb = if approve { "approve" } else { "deny" };
        let o = c.cli_as(3, Some(&bob), &["approvals", verb, &id]);
        assert!(o.status.success(), "{}", err(&o));
        let _ = held.wait_with_output().unwrap();
    }
    // Sessions close in the background after their client leaves; back up a settled state.
    wait_for("every session closed", Duration::from_secs(20), || {
        let v: serde_json::Value = serde_json::from_str(&c.cli_ok(1, &["sessions", "list", "--json"])).unwrap();
        v.as_array()?.iter().all(|s| s["status"] != "open").then_some(())
    });
    let backup = c.path().join("state.pcb");
    let said = c.cli_ok(2, &["backup", "--out", backup.to_str().unwrap()]);
    assert!(said.contains("2 approvals") && said.contains("1 policies"), "{said}");
    let original = state_listing(&c, 1);

    // A new cluster holding the same data key (the backup's secrets stay sealed).
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(c.path().join("data.key"), dir.path().join("data.key")).unwrap();
    let fresh = Cluster::start_in(dir, 3, &[]);
    let empty = state_listing(&fresh, 1);

    // Bad files first: each refused with a clear error, and nothing restored.
    let bytes = std::fs::read(&backup).unwrap();
    let truncated = fresh.path().join("truncated.pcb");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    let corrupt = fresh.path().join("corrupt.pcb");
    std::fs::write(&corrupt, &flipped).unwrap();
    let not_a_backup = fresh.path().join("other.pcb");
    std::fs::write(&not_a_backup, b"-- PostgreSQL database dump\n").unwrap();
    for (file, expect) in [
        (&truncated, "corrupt or truncated"),
        (&corrupt, "corrupt or truncated"),
        (&not_a_backup, "not a Portcullis backup"),
    ] {
        let o = fresh.cli(2, &["restore", "--from", file.to_str().unwrap()]);
        assert!(!o.status.success(), "{} was restored", file.display());
        assert!(err(&o).contains(expect) && err(&o).contains("nothing was restored"), "{}", err(&o));
    }
    assert_eq!(state_listing(&fresh, 1), empty, "a refused restore changed the state");

    let said = fresh.cli_ok(2, &["restore", "--from", backup.to_str().unwrap()]);
    assert!(said.contains("restored"), "{said}");
    for id in 1..=3 {
        let listing = wait_for(&format!("node {id} to show the restored state"), Duration::from_secs(20), || {
            let l = state_listing(&fresh, id);
            (l == original).then_some(l)
        });
        assert_eq!(listing, original);
    }
    // A second restore would merge: refused.
    let o = fresh.cli(1, &["restore", "--from", backup.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(err(&o).contains("already holds"), "{}", err(&o));

    // A cluster with another data key could not open the restored secrets: refused.
    let other = Cluster::start(1);
    let o = other.cli(1, &["restore", "--from", backup.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(err(&o).contains("data key"), "{}", err(&o));
    assert!(other.cli_ok(1, &["policy", "list"]).contains("no policies"));
}
