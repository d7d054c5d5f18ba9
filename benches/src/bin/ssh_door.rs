//! The SSH door against OpenSSH directly: bulk throughput, a command's round trip, and
//! keystroke echo in a terminal.
//!
//! Run (the release binary must exist; the bench builds nothing itself):
//!
//! ```sh
//! cargo build --release -p portcullis
//! cargo run --release -p portcullis-benches --bin ssh_door -- [--mib 1024] [--rounds 50] [--keys 200]
//! ```
//!
//! One run on loopback: a 1-node playground (`portcullis dev --ssh --detach`, binary from
//! `target/release/portcullis` or `PORTCULLIS_BIN`) whose resource `demo-ssh` is the
//! playground's own sshd, with a policy that allows what the bench runs. The same OpenSSH
//! client (`ssh`, the token typed by `sshpass`) runs each measurement twice: through the
//! gateway's door, and straight to that sshd with the playground's key.
//! - throughput: `head -c N /dev/zero` streamed to the client (`--mib`, default 1024);
//! - round trip: `ssh host true`, whole connections (login included), p50/p99;
//! - echo: in `ssh -tt host cat`, one byte typed until the terminal echoes it, p50/p99
//!   (cat itself only gets the line at a newline, which is never typed).
//!
//! Everything started is stopped on exit, also on failure (a guard's `Drop`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use portcullis_benches::{ms, quantile};
use serde_json::Value;

const POLICY: &str =
    "name: bench\nrules:\n  - match: { resources: [demo-ssh], kinds: [exec, shell] }\n    action: allow\n";

struct Args {
    mib: u64,
    rounds: usize,
    keys: usize,
}

fn parse_args() -> Args {
    let mut a = Args { mib: 1024, rounds: 50, keys: 200 };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--mib" => a.mib = value.parse().expect("--mib N"),
            "--rounds" => a.rounds = value.parse().expect("--rounds N"),
            "--keys" => a.keys = value.parse().expect("--keys N"),
            other => panic!("unknown argument {other:?}; usage: ssh_door [--mib N] [--rounds N] [--keys N]"),
        }
        i += 2;
    }
    a
}

fn portcullis_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PORTCULLIS_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    let bin = target.join("release").join("portcullis");
    assert!(bin.exists(), "{} not found: run `cargo build --release -p portcullis` first", bin.display());
    bin
}

/// Stops the playground's processes when dropped.
struct Guard {
    pids: Vec<u32>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

/// How to reach the host one way or the other.
struct Route {
    name: &'static str,
    /// `ssh` arguments before the command (port, login, options).
    args: Vec<String>,
    /// Through sshpass with this token, or with the key in `args`.
    token: Option<String>,
}

impl Route {
    fn command(&self, extra: &[&str]) -> Command {
        let mut cmd = match &self.token {
            Some(token) => {
                let mut c = Command::new("sshpass");
                c.args(["-e", "ssh"]).env("SSHPASS", token);
                c
            }
            None => Command::new("ssh"),
        };
        cmd.args(["-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "LogLevel=ERROR", "-o", "Compression=no"])
            .args(&self.args)
            .args(extra);
        cmd
    }
}

fn main() {
    let args = parse_args();
    let bin = portcullis_bin();
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(&bin)
        .args(["dev", "--nodes", "1", "--ssh", "--detach", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "dev failed: {}", String::from_utf8_lossy(&o.stderr));
    let cluster: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("cluster.json")).unwrap()).unwrap();
    let mut pids: Vec<u32> =
        cluster["nodes"].as_array().unwrap().iter().map(|n| n["pid"].as_u64().unwrap() as u32).collect();
    pids.extend(cluster["sshd"]["pid"].as_u64().map(|p| p as u32));
    pids.extend(cluster["issuer_pid"].as_u64().map(|p| p as u32));
    let _guard = Guard { pids };
    let cli = |token: &str, argv: &[&str]| {
        let o = Command::new(&bin)
            .args(argv)
            .env("PORTCULLIS_ENDPOINT", cluster["nodes"][0]["admin"].as_str().unwrap())
            .env("PORTCULLIS_CA", dir.path().join("ca.pem"))
            .env("PORTCULLIS_TOKEN", token)
            .output()
            .unwrap();
        assert!(o.status.success(), "{argv:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let token = |sub: &str, groups: &str| {
        let o = Command::new(&bin)
            .args([
                "dev",
                "token",
                "--dir",
                dir.path().to_str().unwrap(),
                "--sub",
                sub,
                "--groups",
                groups,
                "--ttl",
                "2h",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let admin = token("bench-admin", "admin");
    let policy = dir.path().join("bench.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    cli(&admin, &["policy", "delete", "demo-ssh"]);
    cli(&admin, &["policy", "apply", "-f", policy.to_str().unwrap()]);

    let door = cluster["nodes"][0]["ssh"].as_str().unwrap().rsplit_once(':').unwrap().1.to_string();
    let sshd = cluster["sshd"]["addr"].as_str().unwrap().rsplit_once(':').unwrap().1.to_string();
    let user = cluster["sshd"]["user"].as_str().unwrap();
    let key = cluster["sshd"]["client_key"].as_str().unwrap();
    let routes = [
        Route {
            name: "openssh direct",
            args: vec![
                "-p".into(),
                sshd,
                "-i".into(),
                key.into(),
                "-o".into(),
                "IdentitiesOnly=yes".into(),
                format!("{user}@127.0.0.1"),
            ],
            token: None,
        },
        Route {
            name: "portcullis",
            args: vec!["-p".into(), door, "-o".into(), "PubkeyAuthentication=no".into(), "demo-ssh@127.0.0.1".into()],
            token: Some(token("bench", "engineers")),
        },
    ];

    println!("ssh_door: 1 node, loopback; OpenSSH client both ways; target: the playground's sshd");
    println!();
    println!("throughput: head -c {} MiB /dev/zero", args.mib);
    let mut rates = Vec::new();
    for route in &routes {
        let started = Instant::now();
        let mut child = route
            .command(&[&format!("head -c {} /dev/zero", args.mib << 20)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = stdout.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        assert!(child.wait().unwrap().success(), "{}: the transfer failed", route.name);
        assert_eq!(total, args.mib << 20, "{}: short transfer", route.name);
        let secs = started.elapsed().as_secs_f64();
        let rate = (total as f64 / (1 << 20) as f64) / secs;
        println!("  {:<16} {:>8.1} MiB/s ({secs:.2} s)", route.name, rate);
        rates.push(rate);
    }
    println!("  ratio portcullis/direct: {:.2}", rates[1] / rates[0]);

    println!();
    println!("round trip: ssh host true (a whole connection, login included), {} rounds", args.rounds);
    let mut p50s = Vec::new();
    for route in &routes {
        let mut times = Vec::with_capacity(args.rounds);
        for _ in 0..args.rounds {
            let started = Instant::now();
            let o = route.command(&["true"]).stdin(Stdio::null()).output().unwrap();
            assert!(o.status.success(), "{}: {}", route.name, String::from_utf8_lossy(&o.stderr));
            times.push(started.elapsed());
        }
        times.sort();
        let (p50, p99) = (quantile(&times, 0.5), quantile(&times, 0.99));
        println!("  {:<16} p50 {:>7.2} ms  p99 {:>7.2} ms", route.name, ms(p50), ms(p99));
        p50s.push(p50);
    }
    println!("  ratio portcullis/direct (p50): {:.2}", ms(p50s[1]) / ms(p50s[0]));

    println!();
    println!("keystroke echo: one byte typed in `ssh -tt host cat` until it comes back, {} keys", args.keys);
    let mut echo50 = Vec::new();
    for route in &routes {
        let mut child = route.command(&["-tt", "cat"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        // Warm up: the first echo also waits for the login.
        let mut byte = [0u8; 1];
        stdin.write_all(b"w").unwrap();
        stdin.flush().unwrap();
        while byte[0] != b'w' {
            stdout.read_exact(&mut byte).unwrap();
        }
        let mut times = Vec::with_capacity(args.keys);
        for i in 0..args.keys {
            let key = b'a' + (i % 26) as u8;
            let started = Instant::now();
            stdin.write_all(&[key]).unwrap();
            stdin.flush().unwrap();
            loop {
                stdout.read_exact(&mut byte).unwrap();
                if byte[0] == key {
                    break;
                }
            }
            times.push(started.elapsed());
        }
        let _ = child.kill();
        let _ = child.wait();
        times.sort();
        let (p50, p99) = (quantile(&times, 0.5), quantile(&times, 0.99));
        println!("  {:<16} p50 {:>7.3} ms  p99 {:>7.3} ms", route.name, ms(p50), ms(p99));
        echo50.push(p50);
    }
    println!("  ratio portcullis/direct (p50): {:.2}", ms(echo50[1]) / ms(echo50[0]));
}
