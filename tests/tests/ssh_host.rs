//! The SSH playground (`portcullis dev --ssh`): a throwaway OpenSSH server registered
//! as resource `demo-ssh`, and the harness's direct line to it that later SSH tests
//! use as their oracle.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use portcullis_tests::Cluster;
use serde_json::Value;

#[test]
fn ssh_playground_registers_demo_ssh_and_the_host_answers_directly() {
    // --- 1. A one-node playground with only the SSH target.
    let cluster = Cluster::start_with_ssh(1);

    // --- 2. cluster.json lists the resource, the sshd and the node's SSH door.
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(cluster.path().join("cluster.json")).unwrap()).unwrap();
    let resources: Vec<&str> = file["resources"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(resources, ["demo-ssh"], "{file}");
    assert!(cluster.sshd_addr().starts_with("127.0.0.1:"), "{file}");
    assert!(cluster.sshd_host_key().starts_with("ssh-ed25519 AAAA"), "{file}");
    assert!(cluster.ssh_addr(1).starts_with("127.0.0.1:"), "{file}");

    // --- 3. The admin API has it as an SSH resource pointing at that sshd.
    let list: Value = serde_json::from_str(&cluster.cli_ok(1, &["resource", "list", "--json"])).unwrap();
    let text = list.to_string();
    let entries = list.as_array().or_else(|| list["resources"].as_array()).unwrap_or_else(|| panic!("{text}"));
    let demo = entries.iter().find(|r| r["name"] == "demo-ssh").unwrap_or_else(|| panic!("no demo-ssh in {text}"));
    assert_eq!(demo["protocol"].as_str().map(str::to_ascii_lowercase).as_deref(), Some("ssh"), "{demo}");
    assert_eq!(demo["address"].as_str(), Some(cluster.sshd_addr().as_str()), "{demo}");
    assert_eq!(demo["username"].as_str(), Some(cluster.sshd_user().as_str()), "{demo}");
    assert_eq!(demo["options"]["host_key"].as_str(), Some(cluster.sshd_host_key().as_str()), "{demo}");
    assert_eq!(demo["has_secret"], true, "{demo}");
    assert!(!text.contains("PRIVATE KEY"), "resource list leaks the client key: {text}");

    // --- 4. The host answers the harness directly, as the demo user.
    assert_eq!(cluster.host_sh("echo hi"), "hi\n");
    assert_eq!(cluster.host_sh("whoami").trim(), cluster.sshd_user());
    assert!(cluster.host_sh("cat notes.txt").contains("Portcullis"), "demo files are seeded");
    assert!(cluster.sshd_log().contains("Accepted publickey"), "{}", cluster.sshd_log());
}
