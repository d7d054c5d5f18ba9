//! Chaos smoke (issues 5, 15 and 16): `portcullis-chaos` against a real playground. A
//! run of every nemesis (kills and pauses; as root also partitions, leader isolation,
//! lossy and slow links in network namespaces) must find no violations, with the
//! Postgres, SSH and HTTP workloads (every command that ran on the SSH host and every
//! request that reached the demo API audited, none through a node without its lease);
//! the same harness with the planted fault
//! (`--unsafe-no-lease`) must find some — the checker can fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

use portcullis_tests::portcullis_bin;

/// The runs take the whole machine (real clusters, timing-sensitive faults): one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn chaos_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "portcullis-chaos", "--bin", "portcullis-chaos"])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p portcullis-chaos failed");
        let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
        target.join("debug").join("portcullis-chaos")
    })
    .clone()
}

/// Run the harness; returns its output and the JSON summary (its last stdout line).
fn chaos(args: &[&str]) -> (Output, serde_json::Value) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let keep = tempfile::tempdir().unwrap();
    let child = Command::new(chaos_bin())
        .arg("run")
        .args(args)
        .arg("--keep")
        .arg(keep.path())
        .env("PORTCULLIS_BIN", portcullis_bin())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let last = stdout.lines().last().unwrap_or_default();
    let summary: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("no JSON summary ({e}); stdout:\n{stdout}\nstderr:\n{stderr}"));
    let violations = std::fs::read_to_string(keep.path().join("violations.jsonl")).unwrap_or_default();
    eprintln!("{stderr}\nsummary: {summary}\nviolations:\n{violations}");
    // Nothing of the run may outlive it.
    let leftovers = Command::new("pgrep").arg("-f").arg(keep.path().to_str().unwrap()).output().unwrap();
    assert!(
        String::from_utf8_lossy(&leftovers.stdout).trim().is_empty(),
        "processes of the run are still alive: {}",
        String::from_utf8_lossy(&leftovers.stdout)
    );
    // Nor its network namespaces and bridge (named after the harness's pid).
    let netns = Command::new("ip").args(["netns", "list"]).output().map(|o| o.stdout).unwrap_or_default();
    let links = Command::new("ip").args(["-o", "link", "show"]).output().map(|o| o.stdout).unwrap_or_default();
    let ours = |text: &[u8], prefix: &str| {
        String::from_utf8_lossy(text).lines().filter(|l| l.contains(prefix)).map(String::from).collect::<Vec<_>>()
    };
    assert!(ours(&netns, &format!("pcx{pid}n")).is_empty(), "namespaces left behind: {:?}", ours(&netns, "pcx"));
    assert!(ours(&links, &format!("pcxb{pid}")).is_empty(), "bridge left behind: {:?}", ours(&links, "pcxb"));
    (out, summary)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

#[test]
fn every_nemesis_leaves_no_violation_and_the_workload_makes_progress() {
    let (out, s) = chaos(&["--nemesis", "all", "--duration", "60s", "--seed", "7"]);
    assert_eq!(s["violations"], 0, "{s}");
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert!(s["ops"].as_u64().unwrap() > 50, "too few operations to mean anything: {s}");
    assert!(s["ok"].as_u64().unwrap() > 50, "too few successful operations: {s}");
    assert_eq!(s["nemesis"], "all");
    assert_eq!(s["seed"], 7);
    assert!(s["faults"].as_object().is_some_and(|f| !f.is_empty()), "no fault was injected: {s}");
    assert!(s["approvals"].as_object().is_some_and(|a| !a.is_empty()), "no statement waited for approval: {s}");
    // The SSH workload ran, and the host's own log (the oracle) saw its commands.
    assert!(s["ssh"]["ok"].as_u64().unwrap() > 20, "too few SSH commands succeeded: {s}");
    assert!(s["ssh"]["host_runs"].as_u64().unwrap() >= s["ssh"]["ok"].as_u64().unwrap(), "{s}");
    // The HTTP workload ran, and the demo API's request log (the oracle) saw its POSTs.
    assert!(s["http"]["ok"].as_u64().unwrap() > 20, "too few HTTP requests succeeded: {s}");
    assert!(s["http"]["backend_requests"].as_u64().unwrap() >= s["http"]["ok"].as_u64().unwrap(), "{s}");
    // As root (CI) the nodes run in network namespaces and the network nemeses run.
    assert_eq!(s["netns"], is_root(), "{s}");
}

#[test]
fn the_planted_fault_is_caught_by_the_checker() {
    // The Postgres workload alone, as this test has always run it: the SSH checks'
    // own planted fault (`--ssh-audit fast`) is in CHAOS.md's runs.
    let (out, s) = chaos(&[
        "--nemesis",
        "pause",
        "--duration",
        "25s",
        "--seed",
        "7",
        "--unsafe-no-lease",
        "--ssh-clients",
        "0",
        "--http-clients",
        "0",
    ]);
    assert!(s["violations"].as_u64().unwrap() > 0, "--unsafe-no-lease must produce violations: {s}");
    assert_eq!(out.status.code(), Some(1), "{s}");
}
