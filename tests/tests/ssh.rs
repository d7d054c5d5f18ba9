//! The SSH door end to end: real node processes, a real OpenSSH sshd as the host, real
//! OpenSSH `ssh` clients (with sshpass typing the token). The host is the oracle: what
//! ran there is checked on the host directly (`host_sh`), bypassing the gateway.
//! The playground's demo-ssh policy: engineers run read-only commands; changes wait for
//! an approver; shutdown, reboot, mkfs, dd are denied; shells need approval.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::Read;
use std::time::{Duration, Instant};

use portcullis_tests::{Cluster, err, out, wait_for};
use serde_json::Value;

const READY: Duration = Duration::from_secs(30);

/// A name no other test (or run) uses, for files on the shared demo account.
fn unique(what: &str) -> String {
    format!("{what}-{}-{}", std::process::id(), Instant::now().elapsed().as_nanos() ^ rand_tail())
}

fn rand_tail() -> u128 {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut bytes).unwrap();
    u64::from_le_bytes(bytes) as u128
}

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Pending approvals as seen by `token` through node `via`.
fn pending(c: &Cluster, via: u64, token: &str) -> Vec<Value> {
    let o = c.cli_as(via, Some(token), &["approvals", "list", "--pending", "--json"]);
    if !o.status.success() {
        return vec![];
    }
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array().cloned().or_else(|| v["approvals"].as_array().cloned()).unwrap_or_default()
}

/// The pending approval whose action mentions `marker`.
fn held(c: &Cluster, via: u64, token: &str, marker: &str) -> String {
    let a = wait_for(&format!("{marker} to be held"), READY, || {
        pending(c, via, token).into_iter().find(|a| a["action"].as_str().is_some_and(|t| t.contains(marker)))
    });
    a["id"].as_str().unwrap().to_string()
}

fn wait_approval_status(c: &Cluster, via: u64, token: &str, id: &str, status: &str) -> Value {
    wait_for(&format!("approval {id} to be {status}"), READY, || {
        let o = c.cli_as(via, Some(token), &["approvals", "list", "--json"]);
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        let list = v.as_array().cloned().or_else(|| v["approvals"].as_array().cloned())?;
        list.into_iter().find(|a| a["id"] == id && a["status"] == status)
    })
}

fn exists_on_host(c: &Cluster, file: &str) -> bool {
    c.host_sh(&format!("test -e {file} && echo yes || echo no")).trim() == "yes"
}

#[test]
fn commands_run_through_every_node_with_output_exit_status_and_stdin_relayed() {
    let c = Cluster::start_with_ssh(3);
    let token = c.engineer_token();
    let expected = c.host_sh("cat logs/app.log | grep -c ERROR");
    for node in 1..=3 {
        let o = c.ssh(node, &token, "cat logs/app.log | grep -c ERROR");
        assert_eq!((code(&o), out(&o)), (0, expected.clone()), "node {node}: {}", err(&o));
    }
    // The host's own exit status comes back (grep: 1 for no match).
    let o = c.ssh(1, &token, "grep no-such-text notes.txt");
    assert_eq!(code(&o), 1, "{}", err(&o));
    // Stdin reaches the command, EOF included.
    let o = c.ssh_via(2, &token, "demo-ssh", &[], &["wc -c"], b"hello gateway\n");
    assert_eq!(out(&o).trim(), "14", "{}", err(&o));
    // A terminal (-tt) is passed on.
    let o = c.ssh_via(3, &token, "demo-ssh", &["-tt"], &["tty"], b"");
    assert!(out(&o).contains("/dev/pts/"), "{} {}", out(&o), err(&o));
    // Each command is on record: what ran, its programs, how it ended.
    let export = wait_for("the sessions to close on record", READY, || {
        let export = c.cli_ok(1, &["sessions", "export", "--json", "--resource", "demo-ssh"]);
        (!export.contains("\"status\":\"open\"")).then_some(export)
    });
    assert!(export.contains("cat logs/app.log | grep -c ERROR"), "{export}");
    assert!(export.contains("\"programs\":[\"cat\",\"grep\"]"), "{export}");
    assert!(export.contains("exit 1") && export.contains("\"exit_status\":0"), "{export}");
}

#[test]
fn a_command_hidden_anywhere_in_the_line_is_decided_like_the_command_alone() {
    let c = Cluster::start_with_ssh(1);
    let token = c.engineer_token();
    let file = unique("hidden");
    for line in [
        format!("dd if=/dev/zero of={file} count=1"),
        format!("ls | dd of={file}"),
        format!("(dd if=/dev/zero of={file} count=1)"),
        format!("echo $(dd if=/dev/zero of={file} count=1)"),
        format!("echo `dd if=/dev/zero of={file} count=1`"),
        format!("bash -c 'dd if=/dev/zero of={file} count=1'"),
        format!("sh -c \"sh -c 'dd if=/dev/zero of={file} count=1'\""),
        format!("true; dd if=/dev/zero of={file} count=1"),
        format!("ls && sudo dd if=/dev/zero of={file} count=1"),
        format!("echo {file} | xargs -I F dd if=/dev/zero of=F count=1"),
    ] {
        let o = c.ssh(1, &token, &line);
        assert_eq!(code(&o), 126, "{line}: {}", err(&o));
        assert!(err(&o).contains("raw disks is never allowed"), "{line}: not the dd rule: {}", err(&o));
    }
    assert!(!exists_on_host(&c, &file), "a hidden dd ran on the host");
    // A line the door cannot read is refused, and says why.
    let o = c.ssh(1, &token, "$CMD notes.txt");
    assert_eq!(code(&o), 126);
    assert!(err(&o).contains("known only at run time"), "{}", err(&o));
}

#[test]
fn a_held_command_approved_through_another_node_runs_exactly_once() {
    let c = Cluster::start_with_ssh(3);
    let token = c.engineer_token();
    let bob = c.token("bob", &["approvers"]);
    let file = unique("approved");
    let child = c.spawn_ssh(1, &token, "demo-ssh", &[], &[&format!("tee -a {file}")]);
    let id = held(&c, 2, &bob, &file);
    assert!(!exists_on_host(&c, &file), "it ran before the approval");
    let o = c.cli_as(3, Some(&bob), &["approvals", "approve", &id]);
    assert!(o.status.success(), "{}", err(&o));
    let o = portcullis_tests::write_and_wait(child, b"one line\n");
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(err(&o).contains(&format!("waiting for approval {id}")), "{}", err(&o));
    assert_eq!(
        c.host_sh(&format!("cat {file}")),
        "one line\n",
        "the command ran once, with the input typed while held"
    );
    // The approval was used up.
    let o = c.cli_as(2, Some(&bob), &["approvals", "approve", &id]);
    assert!(!o.status.success(), "approved twice: {}", out(&o));
    c.host_sh(&format!("rm -f {file}"));
}

#[test]
fn a_held_command_denied_or_expired_exits_non_zero_with_the_reason_and_never_runs() {
    let c = Cluster::start_with_ssh(1);
    let token = c.engineer_token();
    let bob = c.token("bob", &["approvers"]);
    // Denied by an approver.
    let file = unique("denied");
    let child = c.spawn_ssh(1, &token, "demo-ssh", &[], &[&format!("touch {file}")]);
    let id = held(&c, 1, &bob, &file);
    let o = c.cli_as(1, Some(&bob), &["approvals", "deny", &id, "--reason", "not during the freeze"]);
    assert!(o.status.success(), "{}", err(&o));
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 126, "{}", err(&o));
    assert!(err(&o).contains("not during the freeze"), "{}", err(&o));
    assert!(!exists_on_host(&c, &file));
    // Expired: a policy with a short timeout.
    let policy = c.path().join("short.yaml");
    std::fs::write(
        &policy,
        "name: short\nrules:\n  - match: { resources: [demo-ssh], commands: [mkdir] }\n    action: review\n    \
         approvers: { groups: [approvers] }\n    timeout: 2s\n",
    )
    .unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", policy.to_str().unwrap()]);
    let dir = unique("expired");
    let started = Instant::now();
    let o = c.ssh(1, &token, &format!("mkdir {dir}"));
    assert_eq!(code(&o), 126, "{}", err(&o));
    assert!(err(&o).contains("expired") || err(&o).contains("no decision"), "{}", err(&o));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(!exists_on_host(&c, &dir));
}

#[test]
fn a_client_gone_while_held_withdraws_the_approval_and_the_command_never_runs() {
    let c = Cluster::start_with_ssh(3);
    let token = c.engineer_token();
    let bob = c.token("bob", &["approvers"]);
    let file = unique("gone");
    let mut child = c.spawn_ssh(2, &token, "demo-ssh", &[], &[&format!("touch {file}")]);
    let id = held(&c, 1, &bob, &file);
    portcullis_tests::kill_group(&mut child);
    let withdrawn = wait_approval_status(&c, 3, &bob, &id, "expired");
    assert!(withdrawn.to_string().contains("withdrawn"), "{withdrawn}");
    let o = c.cli_as(3, Some(&bob), &["approvals", "approve", &id]);
    assert!(!o.status.success(), "a withdrawn approval was approved: {}", out(&o));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!exists_on_host(&c, &file), "the vanished client's command ran");
}

#[test]
fn with_the_quorum_gone_no_command_reaches_the_host_and_the_client_is_told_why() {
    let mut c = Cluster::start_with_ssh(3);
    let token = c.engineer_token();
    // A command running while the quorum goes away is cut off, with the reason.
    let running = c.spawn_ssh(1, &token, "demo-ssh", &[], &["tail -f logs/app.log"]);
    wait_for("the tail to run on the host", READY, || {
        c.host_sh("ps -eo args").contains("tail -f logs/app.log").then_some(())
    });
    c.kill9(2);
    c.kill9(3);
    wait_for("node 1 to stop serving", Duration::from_secs(10), || (c.readyz(1) == Some(503)).then_some(()));
    let started = Instant::now();
    let o = running.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "the running channel was not closed promptly");
    assert!(err(&o).contains("quorum lease"), "{:?} stdout {} stderr {}", o.status, out(&o), err(&o));
    // New connections are refused with the reason, and nothing runs on the host.
    let file = unique("no-quorum");
    let o = c.ssh(1, &token, &format!("echo hi > {file}"));
    assert_ne!(code(&o), 0);
    assert!(err(&o).contains("quorum lease"), "{}", err(&o));
    assert!(!exists_on_host(&c, &file), "a command reached the host without the quorum");
}

#[test]
fn forwarding_without_a_rule_is_refused_and_garbage_or_a_silent_client_cost_the_node_nothing() {
    let c = Cluster::start_with_ssh(1);
    let token = c.engineer_token();
    // A remote forward is refused (ExitOnForwardFailure makes ssh say so).
    let o =
        c.ssh_via(1, &token, "demo-ssh", &["-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22"], &[], b"");
    assert_ne!(code(&o), 0, "the forward was accepted");
    assert!(err(&o).to_lowercase().contains("forwarding failed"), "{}", err(&o));
    // Garbage instead of an SSH greeting, and a huge line: a clean disconnect.
    use std::io::Write;
    let addr = c.ssh_addr(1);
    for junk in [b"\x00\xff garbage \r\n".repeat(10), vec![b'A'; 1 << 20]] {
        let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = tcp.write_all(&junk);
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink);
    }
    // Many idle connections that never log in do not stop others.
    let idle: Vec<_> = (0..50).map(|_| std::net::TcpStream::connect(&addr).unwrap()).collect();
    let o = c.ssh(1, &token, "echo still serving");
    assert_eq!(out(&o).trim(), "still serving", "{}", err(&o));
    drop(idle);
    assert_eq!(c.readyz(1), Some(200));
}

#[test]
fn a_terminal_session_is_recorded_masked_and_replays_as_asciicast_v2() {
    let c = Cluster::start_with_ssh(1);
    let token = c.engineer_token();
    let policy = c.path().join("shells.yaml");
    std::fs::write(
        &policy,
        "name: shells\nrules:\n  - match: { groups: [engineers], resources: [demo-ssh], kinds: [shell] }\n    action: allow\n  \
         - match: { resources: [demo-ssh] }\n    action: mask\n    mask: { detectors: [ssn] }\n",
    )
    .unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", policy.to_str().unwrap()]);
    // The demo document reviews shells, and review beats allow: take it away.
    c.cli_ok(1, &["policy", "delete", "demo-ssh"]);
    let o = c.ssh_via(1, &token, "demo-ssh", &["-tt"], &[], b"echo rec-$((40+2)) 123-45-6789\nexit\n");
    assert_eq!(code(&o), 0, "{} {}", out(&o), err(&o));
    assert!(out(&o).contains("rec-42"), "{}", out(&o));
    assert!(!out(&o).contains("123-45-6789"), "the terminal showed an unmasked SSN: {}", out(&o));
    let list: Value =
        serde_json::from_str(&c.cli_ok(1, &["sessions", "list", "--json", "--resource", "demo-ssh"])).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_string();
    let cast_file = c.path().join("shell.cast");
    wait_for("the recording to be on record", READY, || {
        let o = c.cli(1, &["sessions", "replay", &id, "--out", cast_file.to_str().unwrap()]);
        (o.status.success() && std::fs::read_to_string(&cast_file).unwrap().contains("rec-42")).then_some(())
    });
    let cast = std::fs::read_to_string(&cast_file).unwrap();
    let mut lines = cast.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2, "{header}");
    assert!(header["width"].as_u64().unwrap() > 0 && header["height"].as_u64().unwrap() > 0, "{header}");
    let events: Vec<Value> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(events.iter().any(|e| e[1] == "o" && e[2].as_str().unwrap().contains("rec-42")), "{cast}");
    assert!(events.iter().any(|e| e[1] == "i"), "input is recorded: {cast}");
    assert!(events.windows(2).all(|w| w[0][0].as_f64() <= w[1][0].as_f64()), "times go forward: {cast}");
    assert!(!cast.contains("123-45-6789") && cast.contains("***-**-6789"), "the recording is masked: {cast}");
    // asciinema itself accepts the file (installed beside the test drivers by
    // scripts/install-deps.sh).
    let asciinema = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .unwrap()
        .join("portcullis-ci/drivers/bin/asciinema");
    assert!(asciinema.exists(), "{} is missing: run scripts/install-deps.sh", asciinema.display());
    let o = std::process::Command::new(&asciinema)
        .args(["play", "-s", "100"])
        .arg(&cast_file)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success() && out(&o).contains("rec-42"), "asciinema play: {} {}", out(&o), err(&o));
    // Played back in the terminal (fast).
    let o = c.cli(1, &["sessions", "replay", &id, "--speed", "100"]);
    assert!(o.status.success() && out(&o).contains("rec-42"), "{}", err(&o));
}

/// `sshpass -e <tool> <args>` with the token as password, common ssh options, `input`
/// on stdin.
fn tool(c: &Cluster, token: &str, tool: &str, port_flag: &str, args: &[&str], input: &[u8]) -> std::process::Output {
    let addr = c.ssh_addr(1);
    let (_, port) = addr.rsplit_once(':').unwrap();
    let child = std::process::Command::new("sshpass")
        .args(["-e", tool, "-F", "/dev/null", port_flag, port])
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
        .args(["-o", "PubkeyAuthentication=no"])
        .args(args)
        .env("SSHPASS", token)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    portcullis_tests::write_and_wait(child, input)
}

#[test]
fn scp_and_sftp_move_files_and_each_file_is_on_record_with_path_direction_and_size() {
    let c = Cluster::start_with_ssh(1);
    let token = c.engineer_token();
    let local = c.path().join("local.txt");
    std::fs::write(&local, "twelve bytes").unwrap();
    let (sftp_up, scp_up, legacy_up) = (unique("sftp-up"), unique("scp-up"), unique("legacy-up"));
    // sftp, commands on stdin.
    let down = c.path().join("down.txt");
    let script = format!("put {} {sftp_up}\nget notes.txt {}\n", local.display(), down.display());
    let o = tool(&c, &token, "sftp", "-P", &["demo-ssh@127.0.0.1"], script.as_bytes());
    assert!(o.status.success(), "sftp: {} {}", out(&o), err(&o));
    assert_eq!(std::fs::read_to_string(&down).unwrap(), c.host_sh("cat notes.txt"));
    // scp (over SFTP, OpenSSH's default) and legacy scp (-O: `scp -t` on the host).
    let to = |name: &str| format!("demo-ssh@127.0.0.1:{name}");
    let o = tool(&c, &token, "scp", "-P", &[local.to_str().unwrap(), &to(&scp_up)], b"");
    assert!(o.status.success(), "scp: {}", err(&o));
    let o = tool(&c, &token, "scp", "-P", &["-O", local.to_str().unwrap(), &to(&legacy_up)], b"");
    assert!(o.status.success(), "scp -O: {}", err(&o));
    for name in [&sftp_up, &scp_up, &legacy_up] {
        assert_eq!(c.host_sh(&format!("cat {name}")), "twelve bytes", "{name}");
    }
    let export = wait_for("the transfers to be on record", READY, || {
        let export = c.cli_ok(1, &["sessions", "export", "--json", "--resource", "demo-ssh"]);
        (export.matches("\"kind\":\"file\"").count() >= 4).then_some(export)
    });
    let files: Vec<Value> = export
        .lines()
        .flat_map(|l| serde_json::from_str::<Value>(l).unwrap()["events"].as_array().unwrap().clone())
        .filter(|e| e["kind"] == "file")
        .map(|e| e["detail"].clone())
        .collect();
    let find = |op: &str, path_end: &str| {
        files.iter().find(|f| f["op"] == op && f["path"].as_str().unwrap().ends_with(path_end)).cloned()
    };
    assert_eq!(find("upload", &sftp_up).unwrap()["bytes"], 12, "{files:?}");
    assert_eq!(find("upload", &scp_up).unwrap()["bytes"], 12, "{files:?}");
    assert!(find("upload", &legacy_up).unwrap()["bytes"].as_u64().unwrap() >= 12, "{files:?}");
    assert!(find("download", "notes.txt").unwrap()["bytes"].as_u64().unwrap() > 0, "{files:?}");
    c.host_sh(&format!("rm -f {sftp_up} {scp_up} {legacy_up}"));
}

#[test]
fn a_held_command_stalls_nothing_else_on_its_connection() {
    let c = Cluster::start_with_ssh(1);
    let token = c.engineer_token();
    let bob = c.token("bob", &["approvers"]);
    // One connection (OpenSSH's ControlMaster), several channels over it.
    let socket = c.path().join("mux");
    let mux = |extra: &[&str]| -> Vec<String> {
        let mut v = vec!["-o".to_string(), format!("ControlPath={}", socket.display())];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let master_opts = mux(&["-M", "-N", "-o", "ControlPersist=no"]);
    let master_refs: Vec<&str> = master_opts.iter().map(String::as_str).collect();
    let mut master = c.spawn_ssh(1, &token, "demo-ssh", &master_refs, &[]);
    wait_for("the master connection", READY, || socket.exists().then_some(()));
    let file = unique("muxed");
    let held_opts = mux(&[]);
    let held_refs: Vec<&str> = held_opts.iter().map(String::as_str).collect();
    let held_cmd = format!("touch {file}");
    let held_child = c.spawn_ssh(1, &token, "demo-ssh", &held_refs, &[&held_cmd]);
    let id = held(&c, 1, &bob, &file);
    // While that channel waits for a human, the same connection runs another command.
    let started = Instant::now();
    let o = c.ssh_via(1, &token, "demo-ssh", &held_refs, &["echo meanwhile"], b"");
    assert_eq!(out(&o).trim(), "meanwhile", "{}", err(&o));
    assert!(started.elapsed() < Duration::from_secs(10));
    let o = c.cli_as(1, Some(&bob), &["approvals", "approve", &id]);
    assert!(o.status.success(), "{}", err(&o));
    let o = held_child.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(exists_on_host(&c, &file));
    // Channels end and make room: a connection runs more commands in its life than it
    // may have open at once (16).
    for i in 0..20 {
        let o = c.ssh_via(1, &token, "demo-ssh", &held_refs, &[&format!("echo run-{i}")], b"");
        assert_eq!(out(&o).trim(), format!("run-{i}"), "{}", err(&o));
    }
    portcullis_tests::kill_group(&mut master);
    c.host_sh(&format!("rm -f {file}"));
}

#[test]
fn haproxy_in_front_carries_ssh_to_a_serving_node() {
    let c = Cluster::start_with(3, &["--ssh", "--lb"]);
    let token = c.engineer_token();
    let cluster: Value =
        serde_json::from_str(&std::fs::read_to_string(c.path().join("cluster.json")).unwrap()).unwrap();
    let lb = cluster["lb"]["ssh"].as_str().unwrap_or_else(|| panic!("no lb.ssh in {cluster}"));
    let (_, port) = lb.rsplit_once(':').unwrap();
    for _ in 0..3 {
        let child = std::process::Command::new("sshpass")
            .args(["-e", "ssh", "-F", "/dev/null", "-p", port])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .args(["-o", "PubkeyAuthentication=no", "demo-ssh@127.0.0.1", "whoami"])
            .env("SSHPASS", &token)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let o = portcullis_tests::write_and_wait(child, b"");
        assert_eq!(out(&o).trim(), c.sshd_user(), "{}", err(&o));
    }
}

#[test]
fn a_channel_flood_is_bounded_per_connection_and_a_client_that_never_logs_in_is_cut_off() {
    let mut c = Cluster::start_with_ssh(1);
    let token = c.engineer_token();
    // A short login deadline for node 1 (the default is 30 s).
    let config = c.nodes[&1].config.clone();
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("ssh_login_timeout_secs = 30"), "{text}");
    std::fs::write(&config, text.replace("ssh_login_timeout_secs = 30", "ssh_login_timeout_secs = 2")).unwrap();
    c.kill9(1);
    c.restart(1);
    wait_for("node 1 to serve again", READY, || (c.readyz(1) == Some(200)).then_some(()));
    // A client that says hello and then nothing is disconnected at the deadline.
    let started = Instant::now();
    let mut silent = std::net::TcpStream::connect(c.ssh_addr(1)).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    use std::io::Write;
    silent.write_all(b"SSH-2.0-SlowClient\r\n").unwrap();
    let mut sink = Vec::new();
    let _ = silent.read_to_end(&mut sink);
    assert!(started.elapsed() < Duration::from_secs(15), "the silent client was kept {:?}", started.elapsed());
    // Twenty channels at once over one connection: at most 16 are open at a time, the
    // rest are refused, and the node goes on serving.
    let socket = c.path().join("flood");
    let path_opt = format!("ControlPath={}", socket.display());
    let mut master = c.spawn_ssh(1, &token, "demo-ssh", &["-o", &path_opt, "-M", "-N", "-o", "ControlPersist=no"], &[]);
    wait_for("the master connection", READY, || socket.exists().then_some(()));
    let marker = unique("flood");
    let flood: Vec<_> = (0..20)
        .map(|_| c.spawn_ssh(1, &token, "demo-ssh", &["-o", &path_opt], &[&format!("tail -f notes.txt {marker}")]))
        .collect();
    // The host's sshd allows 10 sessions per connection (MaxSessions) and the door 16
    // channels per client connection: of 20, at least 4 end at once, refused.
    let mut flood = flood;
    let ended = wait_for("the refused channels to end", READY, || {
        let ended = flood.iter_mut().map(|ch| ch.try_wait().unwrap().is_some()).filter(|done| *done).count();
        (ended >= 4).then_some(ended)
    });
    let running = c.host_sh(&format!("ps -eo args | grep -c '^tail -f notes.txt {marker}' || true"));
    let running: usize = running.trim().parse().unwrap();
    assert!(running <= 16 && ended + running <= 20, "{running} running on the host, {ended} ended");
    let o = c.ssh(1, &token, "echo still serving");
    assert_eq!(out(&o).trim(), "still serving", "{}", err(&o));
    portcullis_tests::kill_group(&mut master);
    for mut child in flood {
        portcullis_tests::kill_group(&mut child);
    }
}
