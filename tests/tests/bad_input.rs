//! Bad input to a node or the CLI gets a clear error naming the cause, never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use portcullis_tests::{Cluster, portcullis_bin};

fn run_node(config: &std::path::Path) -> Output {
    let child = Command::new(portcullis_bin())
        .args(["run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A bad config must make the node exit by itself, promptly.
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !waiter.is_finished() {
        if std::time::Instant::now() > deadline {
            portcullis_tests::signal(pid, "KILL");
            panic!("node with a bad config did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    waiter.join().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn assert_no_panic(o: &Output) {
    let e = stderr(o);
    assert!(!e.contains("panicked"), "panicked: {e}");
}

/// A valid single-node config in a fresh dir (from `portcullis dev`'s generator,
/// via a 1-node playground that we stop again).
fn one_node_setup() -> Cluster {
    let mut c = Cluster::start(1);
    c.kill9(1);
    c
}

#[test]
fn malformed_config_is_refused_with_line_and_usage_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "id = 1\ndata_dir = \n").unwrap();
    let out = run_node(&path);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("bad.toml") && e.contains("line 2"), "{e}");
}

#[test]
fn missing_config_file_names_the_path() {
    let out = run_node(std::path::Path::new("/nonexistent/portcullis.toml"));
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/portcullis.toml"), "{}", stderr(&out));
}

#[test]
fn missing_key_file_is_refused_with_its_path() {
    let c = one_node_setup();
    let config = c.nodes[&1].config.clone();
    std::fs::remove_file(c.path().join("data.key")).unwrap();
    let out = run_node(&config);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("data.key") && e.contains("not found"), "{e}");
}

#[test]
fn certificate_from_another_ca_is_refused_at_startup() {
    let c = one_node_setup();
    // A certificate signed by a CA the cluster does not trust.
    let foreign_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let foreign_ca = rcgen::CertifiedIssuer::self_signed(ca_params, foreign_key).unwrap();
    let node_key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.signed_by(&node_key, &foreign_ca).unwrap();
    std::fs::write(c.path().join("node1.pem"), cert.pem()).unwrap();
    std::fs::write(c.path().join("node1.key"), node_key.serialize_pem()).unwrap();

    let out = run_node(&c.nodes[&1].config);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("node1.pem") && e.contains("not valid for CA"), "{e}");
}

#[test]
fn unknown_node_id_in_remove_node_is_refused_by_name() {
    let c = Cluster::start(3);
    c.wait_all_serving(&[1, 2, 3], Duration::from_secs(20));
    let out = c.cli(2, &["cluster", "remove-node", "--id", "9"]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("node 9 is not a member"), "{}", stderr(&out));
}

#[test]
fn node_id_not_among_its_peers_is_refused() {
    let c = one_node_setup();
    let out = Command::new(portcullis_bin())
        .args(["run", "--config"])
        .arg(&c.nodes[&1].config)
        .env("PORTCULLIS_ID", "7")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("node id 7 is not among the peers"), "{}", stderr(&out));
}

#[test]
fn cli_without_endpoint_is_a_usage_error() {
    let out = Command::new(portcullis_bin())
        .args(["cluster", "status"])
        .env_remove("PORTCULLIS_ENDPOINT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("endpoint"), "{}", stderr(&out));
}

#[test]
fn cli_against_a_dead_endpoint_says_it_cannot_reach_it() {
    let port = portcullis_tests::free_port();
    let out = Command::new(portcullis_bin())
        .args(["cluster", "status", "--endpoint", &format!("http://127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));
}

#[test]
fn a_broken_policy_file_is_refused_with_its_line_and_nothing_is_applied() {
    let c = Cluster::start(1);
    let path = c.path().join("broken.yaml");
    std::fs::write(&path, "name: broken\nrules:\n  - match: { kinds: [select] }\n    action: alow\n").unwrap();
    let out = c.cli(1, &["policy", "apply", "-f", path.to_str().unwrap()]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("line 4") && stderr(&out).contains("unknown action \"alow\""), "{}", stderr(&out));
    let list = c.cli_ok(1, &["policy", "list", "--json"]);
    assert!(!list.contains("broken"), "{list}");
}
