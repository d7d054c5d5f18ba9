//! SSH certificates end to end: `portcullis ssh login` exchanges a token for a key pair
//! and a certificate of the cluster's SSH CA, and plain OpenSSH logs in with it through
//! any node, trusting the gateway by one `@cert-authority` line (no host-key prompt,
//! StrictHostKeyChecking=yes), with no password or token involved.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use portcullis_tests::{Cluster, err, out, wait_for};
use serde_json::Value;

const READY: Duration = Duration::from_secs(30);

/// `portcullis ssh login --out FILE` through node `via` with `token`, plus `extra` flags.
fn ssh_login(c: &Cluster, via: u64, token: &str, file: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["ssh", "login", "--out", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    c.cli_as(via, Some(token), &args)
}

/// Log in as alice (an engineer) and write the printed known_hosts line to a file.
fn alice_with_known_hosts(c: &Cluster, dir: &Path) -> (PathBuf, PathBuf) {
    let key = dir.join("alice");
    let o = ssh_login(c, 1, &c.engineer_token(), &key, &["--known-hosts"]);
    assert!(o.status.success(), "ssh login failed: {}", err(&o));
    let line = out(&o);
    assert!(line.trim().starts_with("@cert-authority * ssh-ed25519 "), "{line}");
    assert_eq!(line.trim().lines().count(), 1, "stdout is the line alone: {line}");
    let known_hosts = dir.join("known_hosts");
    std::fs::write(&known_hosts, format!("{}\n", line.trim())).unwrap();
    (key, known_hosts)
}

/// OpenSSH through node `id`'s door with key `key` (and its `-cert.pub`, if any), host
/// keys checked strictly against `known_hosts`, no password or keyboard-interactive.
fn ssh_with_key(c: &Cluster, id: u64, key: &Path, known_hosts: &Path, cmd: &str) -> Output {
    let addr = c.ssh_addr(id);
    let (host, port) = addr.rsplit_once(':').unwrap();
    Command::new("ssh")
        .args(["-F", "/dev/null", "-i", key.to_str().unwrap(), "-p", port])
        .args(["-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes"])
        .args(["-o", &format!("UserKnownHostsFile={}", known_hosts.display())])
        .args(["-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no"])
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"])
        .arg(format!("demo-ssh@{host}"))
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ssh_keygen(args: &[&str]) {
    let o = Command::new("ssh-keygen").args(["-q"]).args(args).stdin(Stdio::null()).output().unwrap();
    assert!(o.status.success(), "ssh-keygen {args:?}: {}", err(&o));
}

fn refused(o: &Output) -> bool {
    !o.status.success() && err(o).contains("Permission denied")
}

#[test]
fn a_certificate_logs_in_through_every_node_trusting_the_cluster_ca_alone() {
    let c = Cluster::start_with_ssh(3);
    let dir = tempfile::tempdir().unwrap();
    let (key, known_hosts) = alice_with_known_hosts(&c, dir.path());

    // OpenSSH's own naming: the private key (0600) and its certificate beside it.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let cert = dir.path().join("alice-cert.pub");
    assert!(std::fs::read_to_string(&cert).unwrap().starts_with("ssh-ed25519-cert-v01@openssh.com "));

    let user = c.sshd_user();
    for node in 1..=3 {
        let o = ssh_with_key(&c, node, &key, &known_hosts, "whoami");
        assert_eq!((o.status.code(), out(&o).trim().to_string()), (Some(0), user.clone()), "node {node}: {}", err(&o));
    }
    // The sessions are alice's, as with a token.
    let export = wait_for("the certificate sessions on record", READY, || {
        let export = c.cli_ok(1, &["sessions", "export", "--json", "--identity", "alice"]);
        let sessions: Vec<Value> = export.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let closed = sessions.iter().filter(|s| s["session"]["status"] == "closed").count();
        (closed >= 3).then_some(sessions)
    });
    let nodes: std::collections::BTreeSet<u64> =
        export.iter().map(|s| s["session"]["node"].as_u64().unwrap()).collect();
    assert_eq!(nodes.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(export.iter().all(|s| s["session"]["identity"] == "alice" && s["session"]["resource"] == "demo-ssh"));
    assert!(export.iter().any(|s| s.to_string().contains("whoami")), "{export:?}");

    // Another login from any node gets the same CA: the authority is the cluster's.
    let o = ssh_login(&c, 3, &c.engineer_token(), &dir.path().join("again"), &["--known-hosts"]);
    assert_eq!(out(&o).trim(), std::fs::read_to_string(&known_hosts).unwrap().trim(), "{}", err(&o));
}

#[test]
fn json_output_names_the_files_the_expiry_and_the_known_hosts_line() {
    let c = Cluster::start_with_ssh(1);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id");
    let o = ssh_login(&c, 1, &c.engineer_token(), &key, &["--json"]);
    assert!(o.status.success(), "{}", err(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["private_key_file"], key.to_str().unwrap());
    assert_eq!(v["certificate_file"], format!("{}-cert.pub", key.display()));
    assert!(v["known_hosts"].as_str().unwrap().starts_with("@cert-authority * ssh-ed25519 "), "{v}");
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'), "{v}");
    // No token: the cause is named, exit 1; a usage error exits 2.
    let o = c.cli_as(1, None, &["ssh", "login", "--out", key.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("token"), "{}", err(&o));
    let o = c.cli_as(1, Some(&c.engineer_token()), &["ssh", "login", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
}

#[test]
fn foreign_expired_and_uncertified_keys_are_refused() {
    let c = Cluster::start_with_ssh(1);
    let dir = tempfile::tempdir().unwrap();
    let (_, known_hosts) = alice_with_known_hosts(&c, dir.path());
    let d = |name: &str| dir.path().join(name);

    // A plain key without a certificate names nobody.
    ssh_keygen(&["-t", "ed25519", "-N", "", "-f", d("plain").to_str().unwrap()]);
    let o = ssh_with_key(&c, 1, &d("plain"), &known_hosts, "whoami");
    assert!(refused(&o), "plain key: {} {}", out(&o), err(&o));

    // A certificate for alice from another CA.
    ssh_keygen(&["-t", "ed25519", "-N", "", "-f", d("other-ca").to_str().unwrap()]);
    ssh_keygen(&["-t", "ed25519", "-N", "", "-f", d("forged").to_str().unwrap()]);
    let pubkey = format!("{}.pub", d("forged").display());
    ssh_keygen(&["-s", d("other-ca").to_str().unwrap(), "-I", "alice", "-n", "alice", "-V", "-5m:+1h", &pubkey]);
    assert!(d("forged-cert.pub").exists());
    let o = ssh_with_key(&c, 1, &d("forged"), &known_hosts, "whoami");
    assert!(refused(&o), "foreign CA: {} {}", out(&o), err(&o));

    // A certificate that expired with its token.
    let short = c.token_with(&["--sub", "alice", "--groups", "engineers", "--ttl", "3s"]);
    let o = ssh_login(&c, 1, &short, &d("short"), &[]);
    assert!(o.status.success(), "{}", err(&o));
    let expired = wait_for("the short certificate to be refused", READY, || {
        let o = ssh_with_key(&c, 1, &d("short"), &known_hosts, "true");
        refused(&o).then_some(o)
    });
    assert!(!out(&expired).contains(&c.sshd_user()));
}

#[test]
fn a_certificate_carries_an_identity_whose_token_would_not_fit_a_password() {
    let c = Cluster::start_with_ssh(1);
    let dir = tempfile::tempdir().unwrap();
    let (_, known_hosts) = alice_with_known_hosts(&c, dir.path());
    // 200 groups besides `engineers`: a token OpenSSH could not send as a password
    // (it reads at most 1023 bytes).
    let mut groups: Vec<String> = (0..200).map(|i| format!("team-{i:03}")).collect();
    groups.push("engineers".into());
    let token = c.token_with(&["--sub", "alice", "--groups", &groups.join(",")]);
    assert!(token.len() > 1023, "token is {} bytes", token.len());
    let key = dir.path().join("big");
    let o = ssh_login(&c, 1, &token, &key, &[]);
    assert!(o.status.success(), "{}", err(&o));
    let o = ssh_with_key(&c, 1, &key, &known_hosts, "whoami");
    assert_eq!(out(&o).trim(), c.sshd_user(), "{}", err(&o));
}
