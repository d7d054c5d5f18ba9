//! SSH forwarding through the door, each kind a request of kind `forward`: denied
//! without a rule, relayed once policy allows it. Real OpenSSH clients and sshd; the
//! far end of each forward is a real socket checked directly (the host's side is this
//! machine's loopback, as the playground's sshd listens there).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use portcullis_tests::{Cluster, err, out, wait_for, write_and_wait};

const READY: Duration = Duration::from_secs(30);

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Apply a policy document named `name` with `rules` (YAML list items) through node 1.
fn apply(c: &Cluster, name: &str, rules: &str) {
    let policy = c.path().join(format!("{name}.yaml"));
    std::fs::write(&policy, format!("name: {name}\nrules:\n{rules}")).unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", policy.to_str().unwrap()]);
}

fn export(c: &Cluster) -> String {
    c.cli_ok(1, &["sessions", "export", "--json", "--resource", "demo-ssh"])
}

#[test]
fn a_local_forward_is_refused_without_a_rule_and_relayed_by_the_host_once_policy_allows_it() {
    let c = Cluster::start_with_ssh(1);
    let token = c.engineer_token();
    let (_, sshd_port) = c.sshd_addr().rsplit_once(':').map(|(h, p)| (h.to_string(), p.to_string())).unwrap();
    // Through a forward to the host's own sshd, a connection reads its SSH banner.
    let banner_via = |local: u16| -> String {
        let mut tcp =
            wait_for("the forward to listen", READY, || std::net::TcpStream::connect(("127.0.0.1", local)).ok());
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        let n = tcp.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let local = free();
    let spec = format!("{local}:127.0.0.1:{sshd_port}");
    let mut denied = c.spawn_ssh(1, &token, "demo-ssh", &["-N", "-L", &spec], &[]);
    assert!(!banner_via(local).starts_with("SSH-2.0"), "the demo policy has no forward rule: denied");
    portcullis_tests::kill_group(&mut denied);
    let policy = c.path().join("forward.yaml");
    std::fs::write(
        &policy,
        format!("name: forward\nrules:\n  - match: {{ groups: [engineers], resources: [demo-ssh], kinds: [forward], text: \"^forward to 127.0.0.1:{sshd_port}$\" }}\n    action: allow\n"),
    )
    .unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", policy.to_str().unwrap()]);
    let local = free();
    let spec = format!("{local}:127.0.0.1:{sshd_port}");
    let mut allowed = c.spawn_ssh(1, &token, "demo-ssh", &["-N", "-L", &spec], &[]);
    let banner = banner_via(local);
    portcullis_tests::kill_group(&mut allowed);
    assert!(banner.starts_with("SSH-2.0-OpenSSH"), "{banner:?}");
    let export = c.cli_ok(1, &["sessions", "export", "--json", "--resource", "demo-ssh"]);
    assert!(export.contains(&format!("forward to 127.0.0.1:{sshd_port}")), "{export}");
}

#[test]
fn a_remote_forward_is_refused_without_a_rule_and_the_host_connects_back_once_policy_allows_it() {
    let c = Cluster::start_with_ssh(1);
    let token = c.engineer_token();
    // The client's own service: greets whoever connects.
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let service_port = service.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in service.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.write_all(b"hello from the client\n");
        }
    });
    let remote = free_port();
    let spec = format!("{remote}:127.0.0.1:{service_port}");
    let opts = ["-o", "ExitOnForwardFailure=yes", "-N", "-R", spec.as_str()];
    // No rule: ssh is told the forward failed, and nothing listens on the host.
    let o = c.ssh_via(1, &token, "demo-ssh", &opts, &[], b"");
    assert_ne!(code(&o), 0, "the forward was accepted: {}", err(&o));
    assert!(err(&o).to_lowercase().contains("forwarding failed"), "{}", err(&o));
    assert!(TcpStream::connect(("127.0.0.1", remote)).is_err(), "the host listens on {remote}");
    let line = format!("remote forward from localhost:{remote}");
    let refused = export(&c);
    assert!(refused.contains(&line), "the refusal is not on record: {refused}");
    // A rule for exactly this forward: the host listens, and a connection made on the
    // host reaches the client's service.
    let rule = format!(
        "  - match: {{ groups: [engineers], resources: [demo-ssh], kinds: [forward], text: \"^{line}$\" }}\n    action: allow\n"
    );
    apply(&c, "remote-forward", &rule);
    let mut allowed = c.spawn_ssh(1, &token, "demo-ssh", &opts, &[]);
    let greeting = wait_for("the host to listen on the forwarded port", READY, || {
        let tcp = TcpStream::connect(("127.0.0.1", remote)).ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut line = String::new();
        BufReader::new(tcp).read_line(&mut line).ok()?;
        (!line.is_empty()).then_some(line)
    });
    assert_eq!(greeting, "hello from the client\n");
    // Each connection the host opened back is on record, with its bytes.
    let recorded = wait_for("the forwarded connection's record", READY, || {
        let text = export(&c);
        text.contains("\"connection\"").then_some(text)
    });
    assert!(recorded.contains(&format!("localhost:{remote}")), "{recorded}");
    assert!(recorded.contains("\"bytes_to_host\":22"), "the greeting's bytes: {recorded}");
    portcullis_tests::kill_group(&mut allowed);
    // A forward to another port is still refused.
    let other = format!("{}:127.0.0.1:{service_port}", free_port());
    let o = c.ssh_via(1, &token, "demo-ssh", &["-o", "ExitOnForwardFailure=yes", "-N", "-R", &other], &[], b"");
    assert_ne!(code(&o), 0, "a forward no rule allows was accepted");
}

/// A private ssh-agent for the client, holding one fresh key; stopped on drop.
struct Agent {
    process: std::process::Child,
    socket: String,
}

impl Agent {
    fn start(dir: &std::path::Path, comment: &str) -> Agent {
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("agent.sock").display().to_string();
        let process = Command::new("ssh-agent").args(["-D", "-a", &socket]).stdout(Stdio::null()).spawn().unwrap();
        wait_for("ssh-agent's socket", READY, || std::path::Path::new(&socket).exists().then_some(()));
        let key = dir.join("key").display().to_string();
        let made =
            Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", &key]).status();
        assert!(made.unwrap().success());
        let added = Command::new("ssh-add").arg(&key).env("SSH_AUTH_SOCK", &socket).output().unwrap();
        assert!(added.status.success(), "{}", err(&added));
        Agent { process, socket }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[test]
fn agent_forwarding_reaches_the_host_only_once_policy_allows_it() {
    let c = Cluster::start_with_ssh(1);
    let token = c.engineer_token();
    let agent = Agent::start(&c.path().join("agent"), "the-clients-agent-key");
    apply(
        &c,
        "ssh-add",
        "  - match: { groups: [engineers], resources: [demo-ssh], kinds: [exec], only_commands: [ssh-add] }\n    action: allow\n",
    );
    let list_keys_on_host = || {
        let child =
            c.spawn_ssh_with(1, &token, "demo-ssh", &["-A"], &["ssh-add -l"], &[("SSH_AUTH_SOCK", &agent.socket)]);
        write_and_wait(child, b"")
    };
    // No rule: the command runs without the agent, and the client is told why.
    let o = list_keys_on_host();
    assert!(!out(&o).contains("the-clients-agent-key"), "the host reached the agent: {}", out(&o));
    assert_ne!(code(&o), 0);
    assert!(err(&o).contains("agent forwarding refused"), "{}", err(&o));
    // With a rule, the host lists the client's key through the forwarded agent.
    apply(
        &c,
        "agent",
        "  - match: { groups: [engineers], resources: [demo-ssh], kinds: [forward], text: \"^agent forwarding$\" }\n    action: allow\n",
    );
    let o = list_keys_on_host();
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(out(&o).contains("the-clients-agent-key"), "{}", out(&o));
    let recorded = wait_for("the agent connection's record", READY, || {
        let text = export(&c);
        text.contains("\"agent\"").then_some(text)
    });
    assert!(recorded.contains("agent forwarding"), "{recorded}");
}

/// An X server stand-in on the client's side (display `:n`, TCP port 6000+n): answers
/// each connection's setup with a marker, so the host can tell it got through.
fn fake_x_server() -> u16 {
    let (listener, display) = (50..100)
        .find_map(|n| TcpListener::bind(("127.0.0.1", 6000 + n)).ok().map(|l| (l, n)))
        .expect("a free X display port");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut setup = [0u8; 12];
            if stream.read_exact(&mut setup).is_ok() && setup[0] == b'l' {
                let _ = stream.write_all(b"X11-SETUP-REACHED-THE-CLIENT\n");
            }
        }
    });
    display
}

/// An X11 client for the host: a connection setup (little-endian, with the cookie sshd
/// stored for the forwarded display), then it prints what the display answered.
const X11_CLIENT: &str = r#"import os, socket, struct, subprocess
d = os.environ["DISPLAY"]
n = int(d.split(":")[1].split(".")[0])
name, cookie = subprocess.check_output(["xauth", "list", d]).decode().split()[1:3]
name, cookie = name.encode(), bytes.fromhex(cookie)
pad = lambda b: b + b"\0" * (-len(b) % 4)
s = socket.create_connection(("127.0.0.1", 6000 + n))
s.sendall(struct.pack("<cxHHHHxx", b"l", 11, 0, len(name), len(cookie)) + pad(name) + pad(cookie))
s.settimeout(10)
print(s.recv(100).decode())
"#;

#[test]
fn x11_forwarding_reaches_the_clients_display_only_once_policy_allows_it() {
    let c = Cluster::start_with_ssh(1);
    let token = c.engineer_token();
    let display = format!("127.0.0.1:{}", fake_x_server());
    // The X client is put on the host directly (its text has more parentheses than a
    // command line may: the classifier's bound).
    let script = format!("x11-client-{}.py", std::process::id());
    c.host_sh(&format!("cat > {script} <<'EOF'\n{X11_CLIENT}EOF"));
    let run_line = format!("python3 {script}");
    apply(
        &c,
        "x11-client",
        "  - match: { groups: [engineers], resources: [demo-ssh], kinds: [exec], only_commands: [python3] }\n    action: allow\n",
    );
    // -Y: the client has no xauth data for the stand-in display, so it uses a fake
    // cookie and checks it on the connections that come back (as with any X server).
    let run_x_client_on_host = || {
        let child = c.spawn_ssh_with(1, &token, "demo-ssh", &["-Y"], &[&run_line], &[("DISPLAY", &display)]);
        write_and_wait(child, b"")
    };
    let o = run_x_client_on_host();
    assert!(!out(&o).contains("X11-SETUP-REACHED-THE-CLIENT"), "{}", out(&o));
    assert!(err(&o).contains("X11 forwarding refused"), "{}", err(&o));
    apply(
        &c,
        "x11",
        "  - match: { groups: [engineers], resources: [demo-ssh], kinds: [forward], text: \"^X11 forwarding$\" }\n    action: allow\n",
    );
    let o = run_x_client_on_host();
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(out(&o).contains("X11-SETUP-REACHED-THE-CLIENT"), "out: {} err: {}", out(&o), err(&o));
    let recorded = wait_for("the X11 connection's record", READY, || {
        let text = export(&c);
        text.contains("\"x11\"").then_some(text)
    });
    assert!(recorded.contains("X11 forwarding"), "{recorded}");
}
