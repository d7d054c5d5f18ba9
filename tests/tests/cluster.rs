//! The foundation's promises, with real node processes (issue: "Foundation").

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use portcullis_tests::{Cluster, NodeInfo, free_port, wait_for};

const READY: Duration = Duration::from_secs(20);

/// Write a policy file named `name` in the cluster dir and return its path.
fn policy_file(c: &Cluster, name: &str) -> String {
    let path = c.path().join(format!("{name}.yaml"));
    std::fs::write(&path, format!("name: {name}\nrules: []\n")).unwrap();
    path.display().to_string()
}

fn policy_names(c: &Cluster, via: u64) -> Option<Vec<String>> {
    let out = c.cli(via, &["policy", "list", "--json"]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let list = v.as_array().cloned().or_else(|| v["policies"].as_array().cloned())?;
    let mut names: Vec<String> = list.iter().filter_map(|p| p["name"].as_str().map(String::from)).collect();
    names.sort();
    Some(names)
}

fn wait_policy_everywhere(c: &Cluster, ids: &[u64], name: &str) {
    for id in ids {
        wait_for(&format!("policy {name} on node {id}"), READY, || {
            policy_names(c, *id).filter(|n| n.iter().any(|x| x == name))
        });
    }
}

#[test]
fn three_nodes_elect_a_leader_and_a_write_through_any_node_is_readable_on_all() {
    let c = Cluster::start(3);
    let leader = c.wait_all_serving(&[1, 2, 3], READY);
    assert!((1..=3).contains(&leader));
    let status = c.status(1).unwrap();
    assert_eq!(status["nodes"].as_array().unwrap().len(), 3, "{status}");
    for n in status["nodes"].as_array().unwrap() {
        let role = n["role"].as_str().unwrap();
        assert!(role == "leader" || role == "follower", "{status}");
        assert!(n["addr"].is_string() && n["last_applied"].is_u64(), "{status}");
    }
    for via in 1..=3u64 {
        let name = format!("written-via-{via}");
        let file = policy_file(&c, &name);
        c.cli_ok(via, &["policy", "apply", "-f", &file]);
        wait_policy_everywhere(&c, &[1, 2, 3], &name);
    }
}

#[test]
fn leader_kill_elects_a_new_leader_without_losing_committed_writes() {
    let mut c = Cluster::start(3);
    let leader = c.wait_all_serving(&[1, 2, 3], READY);
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let file = policy_file(&c, "before-failover");
    c.cli_ok(follower, &["policy", "apply", "-f", &file]);

    c.kill9(leader);
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let new_leader = c.wait_all_serving_under(&survivors, READY, |l| l != leader);
    assert_ne!(new_leader, leader);
    for id in &survivors {
        let names = policy_names(&c, *id).unwrap();
        assert!(names.contains(&"before-failover".to_string()), "node {id} lost a committed write: {names:?}");
    }
    let file = policy_file(&c, "after-failover");
    c.cli_ok(survivors[0], &["policy", "apply", "-f", &file]);
    wait_policy_everywhere(&c, &survivors, "after-failover");

    // The old leader comes back as a follower and catches up.
    c.restart(leader);
    c.wait_all_serving(&[1, 2, 3], READY);
    wait_policy_everywhere(&c, &[leader], "after-failover");
}

#[test]
fn restarting_every_node_keeps_all_committed_state() {
    let mut c = Cluster::start(3);
    c.wait_all_serving(&[1, 2, 3], READY);
    for i in 0..5 {
        let file = policy_file(&c, &format!("durable-{i}"));
        c.cli_ok(1 + (i % 3), &["policy", "apply", "-f", &file]);
    }
    for id in 1..=3 {
        c.kill9(id);
    }
    for id in 1..=3 {
        c.restart(id);
    }
    c.wait_all_serving(&[1, 2, 3], READY);
    for id in 1..=3 {
        let names = wait_for("policies after restart", READY, || policy_names(&c, id).filter(|n| n.len() >= 5));
        for i in 0..5 {
            assert!(names.contains(&format!("durable-{i}")), "node {id} lost durable-{i}: {names:?}");
        }
    }
}

#[test]
fn a_lone_node_stops_serving_within_the_lease_and_serves_again_when_a_peer_returns() {
    let mut c = Cluster::start(3);
    c.wait_all_serving(&[1, 2, 3], READY);
    assert_eq!(c.readyz(1), Some(200));

    c.kill9(2);
    c.kill9(3);
    // Lease 1 s; allow generous slack for a loaded CI machine.
    let lost_at = Instant::now();
    wait_for("node 1 /readyz 503", Duration::from_secs(5), || (c.readyz(1) == Some(503)).then_some(()));
    eprintln!("node 1 stopped serving {:?} after its peers died", lost_at.elapsed());

    let file = policy_file(&c, "needs-quorum");
    let started = Instant::now();
    let out = c.cli(1, &["policy", "apply", "-f", &file]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "a write without quorum must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no quorum"), "error should say no quorum: {err}");
    assert!(took < Duration::from_secs(15), "the write must fail within its deadline, took {took:?}");

    c.restart(2);
    c.wait_all_serving(&[1, 2], READY);
    assert_eq!(c.readyz(1), Some(200));
}

#[test]
fn add_node_and_remove_node_change_membership_and_a_removed_node_stops_serving() {
    let mut c = Cluster::start(3);
    c.wait_all_serving(&[1, 2, 3], READY);

    // Node 4 reuses node 1's CA-signed certificate (certificates name hosts, not ids).
    let (raft, admin, ops) = (free_port(), free_port(), free_port());
    let base = std::fs::read_to_string(&c.nodes[&1].config).unwrap();
    let mut config: toml::Table = toml::from_str(&base).unwrap();
    config.insert("id".into(), 4.into());
    config.insert("data_dir".into(), c.path().join("node4").display().to_string().into());
    // A joining node has no initial peers: it waits to be added.
    config.remove("peers");
    let listen = config.get_mut("listen").unwrap().as_table_mut().unwrap();
    listen.insert("raft".into(), format!("127.0.0.1:{raft}").into());
    listen.insert("admin".into(), format!("127.0.0.1:{admin}").into());
    listen.insert("ops".into(), format!("127.0.0.1:{ops}").into());
    listen.insert("pg".into(), format!("127.0.0.1:{}", free_port()).into());
    listen.insert("ssh".into(), format!("127.0.0.1:{}", free_port()).into());
    listen.insert("http".into(), format!("127.0.0.1:{}", free_port()).into());
    listen.insert("console".into(), format!("127.0.0.1:{}", free_port()).into());
    let path = c.path().join("node4.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    c.add_node_info(NodeInfo {
        id: 4,
        admin: format!("https://127.0.0.1:{admin}"),
        ops: format!("http://127.0.0.1:{ops}"),
        raft: format!("127.0.0.1:{raft}"),
        config: path.clone(),
        data_dir: c.path().join("node4"),
    });
    c.spawn_node(4, &path);
    wait_for("node 4 ops port", READY, || c.readyz(4));
    assert_eq!(c.readyz(4), Some(503), "a node that is no member must not serve");

    c.cli_ok(
        2,
        &[
            "cluster",
            "add-node",
            "--id",
            "4",
            "--addr",
            &format!("127.0.0.1:{raft}"),
            "--admin-addr",
            &format!("127.0.0.1:{admin}"),
        ],
    );
    c.wait_all_serving(&[1, 2, 3, 4], READY);
    let file = policy_file(&c, "seen-by-four");
    c.cli_ok(1, &["policy", "apply", "-f", &file]);
    wait_policy_everywhere(&c, &[4], "seen-by-four");

    c.cli_ok(3, &["cluster", "remove-node", "--id", "4"]);
    wait_for("node 4 to stop serving", READY, || (c.readyz(4) == Some(503)).then_some(()));
    let status = c.status(1).unwrap();
    let ids: Vec<u64> = status["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 3, "node 4 still listed: {status}");
    assert!(!ids.contains(&4));
    c.wait_all_serving(&[1, 2, 3], READY);
}

#[test]
fn a_node_that_missed_compacted_log_catches_up_from_a_snapshot_and_a_killed_node_rebuilds_from_its_own() {
    let mut c = Cluster::start(3);
    c.wait_all_serving(&[1, 2, 3], READY);
    // Snapshot (and purge the log behind it) every 10 entries.
    for id in 1..=3 {
        c.kill9(id);
        c.edit_config(id, |t| {
            let raft = t.entry("raft").or_insert_with(|| toml::Table::new().into()).as_table_mut().unwrap();
            raft.insert("snapshot_after_entries".into(), 10.into());
        });
    }
    for id in 1..=3 {
        c.restart(id);
    }
    c.wait_all_serving(&[1, 2, 3], READY);
    c.kill9(3);
    for i in 0..30 {
        let file = policy_file(&c, &format!("compacted-{i}"));
        c.cli_ok(1 + (i % 2), &["policy", "apply", "-f", &file]);
    }
    c.restart(3);
    c.wait_all_serving(&[1, 2, 3], READY);
    let names = wait_for("node 3 to catch up", READY, || policy_names(&c, 3).filter(|n| n.len() >= 30));
    assert!(names.contains(&"compacted-29".to_string()), "{names:?}");
    let metrics = http_get(&c.nodes[&3].ops, "/metrics");
    let installed = metrics
        .lines()
        .find(|l| l.starts_with("portcullis_snapshots_installed_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(installed >= 1.0, "node 3 should have installed a snapshot:\n{metrics}");

    // Node 1 built snapshots itself. Killed (no clean close), it rebuilds its state from
    // its newest snapshot and re-applies the log after it: nothing is missing.
    let log_path = c.path().join("node1.log");
    let before = std::fs::read_to_string(&log_path).unwrap_or_default().len();
    c.kill9(1);
    c.restart(1);
    c.wait_all_serving(&[1, 2, 3], READY);
    let names = wait_for("node 1 to list every policy again", READY, || policy_names(&c, 1).filter(|n| n.len() >= 30));
    assert!(names.contains(&"compacted-29".to_string()), "{names:?}");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        log.get(before..).unwrap_or_default().contains("state rebuilt from the snapshot"),
        "node 1 did not rebuild from its snapshot after kill -9:\n{}",
        log.get(before..).unwrap_or_default()
    );
}

fn http_get(base: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    buf
}
