//! The Postgres door under read load, against Postgres directly and PgBouncer, and
//! the cross-node approval release latency.
//!
//! Run (the release binary must exist; the bench builds nothing itself):
//!
//! ```sh
//! cargo build --release -p portcullis
//! cargo run --release -p portcullis-benches --bin pg_door -- [--seconds 5] [--clients 1,16,64] [--rounds 10]
//! ```
//!
//! One run on loopback: a 3-node playground (`portcullis dev --postgres --detach`, binary
//! from `target/release/portcullis` or `PORTCULLIS_BIN`) with resource `demo` (audit
//! strict) and `demofast` (same backend, audit fast, same masking), PgBouncer
//! (`/usr/sbin/pgbouncer`, client TLS required, transaction pooling) in front of the same
//! Postgres, and `pgbench` with a read-only custom script in simple / extended / prepared
//! protocol mode against: Postgres directly (no TLS), PgBouncer, the gateway strict, the
//! gateway fast. Then N rounds of a `DELETE` held on node 2 and approved through node 3,
//! timed two ways: in process (an admin gRPC client approves, a tokio-postgres session
//! holds the DELETE: from sending the approval until the DELETE's result arrives), and
//! with the real tools (from issuing `portcullis approvals approve` until psql exits).
//!
//! Everything started is stopped on exit, also on failure (a guard's `Drop`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use portcullis_benches::{cpu, ms, quantile};
use serde_json::Value;

const SCRIPT: &str = "\\set id random(1, 12)\nSELECT name, email FROM customers WHERE id = :id;\n";

struct Args {
    seconds: u64,
    clients: Vec<u32>,
    rounds: usize,
}

fn parse_args() -> Args {
    let mut a = Args { seconds: 5, clients: vec![1, 16, 64], rounds: 10 };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--seconds" => a.seconds = value.parse().expect("--seconds N"),
            "--clients" => {
                a.clients = value.split(',').map(|c| c.trim().parse().expect("--clients 1,16,64")).collect();
            }
            "--rounds" => a.rounds = value.parse().expect("--rounds N"),
            other => {
                panic!("unknown argument {other:?}; usage: pg_door [--seconds N] [--clients 1,16,64] [--rounds N]")
            }
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
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --release -p portcullis` first (or set PORTCULLIS_BIN)",
        bin.display()
    );
    bin
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// `tool` run as the `postgres` user when we are root (Postgres and PgBouncer refuse root).
fn as_postgres(tool: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(tool);
        c
    } else {
        Command::new(tool)
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn kill(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).stderr(Stdio::null()).status();
}

/// Everything this run started; stopped on drop, whatever happened.
struct Guard {
    dir: tempfile::TempDir,
    node_pids: Vec<u32>,
    issuer_pid: Option<u32>,
    pg: Option<PgInfo>,
    pgbouncer_pidfiles: Vec<PathBuf>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for pidfile in &self.pgbouncer_pidfiles {
            if let Some(pid) = std::fs::read_to_string(pidfile).ok().and_then(|s| s.trim().parse().ok()) {
                kill(pid, "TERM");
            }
        }
        for pid in self.node_pids.iter().chain(self.issuer_pid.iter()) {
            kill(*pid, "KILL");
        }
        if let Some(pg) = &self.pg {
            let _ = as_postgres(&pg.bin_dir.join("pg_ctl"))
                .args(["stop", "-m", "immediate", "-D"])
                .arg(&pg.data_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if std::thread::panicking() {
            // The temp dir goes away with us: show the end of every log first.
            for e in std::fs::read_dir(self.dir.path()).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.ends_with(".log") {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    eprintln!("--- {name} (last 15 lines)");
                    for l in &lines[lines.len().saturating_sub(15)..] {
                        eprintln!("{l}");
                    }
                }
            }
        }
        eprintln!("# stopped everything started in {}", self.dir.path().display());
    }
}

#[derive(Clone)]
struct PgInfo {
    port: u16,
    data_dir: PathBuf,
    bin_dir: PathBuf,
    app_password: String,
    superuser_password: String,
}

struct Playground {
    bin: PathBuf,
    dir: PathBuf,
    /// Node id → (admin endpoint, Postgres door port).
    nodes: Vec<(u64, String, u16)>,
    /// Ops addresses (host:port) of every node, for `/readyz`.
    ops: Vec<String>,
    pg: PgInfo,
}

impl Playground {
    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn token(&self, sub: &str, groups: &str) -> String {
        let o = Command::new(&self.bin)
            .args(["dev", "token", "--dir"])
            .arg(&self.dir)
            .args(["--sub", sub, "--groups", groups, "--ttl", "4h"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "dev token: {}", text(&o));
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    }

    fn admin(&self, node: u64) -> &str {
        &self.nodes.iter().find(|n| n.0 == node).unwrap().1
    }

    fn door_port(&self, node: u64) -> u16 {
        self.nodes.iter().find(|n| n.0 == node).unwrap().2
    }

    fn cli_cmd(&self, node: u64, token: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("PORTCULLIS_ENDPOINT", self.admin(node))
            .env("PORTCULLIS_CA", self.ca())
            .env("PORTCULLIS_TOKEN", token)
            .env("PORTCULLIS_CONFIG_DIR", self.dir.join("cli-config"))
            .stdin(Stdio::null());
        cmd
    }

    fn cli_ok(&self, node: u64, token: &str, args: &[&str]) -> String {
        let o = self.cli_cmd(node, token, args).output().unwrap();
        assert!(o.status.success(), "portcullis {args:?} via node {node}: {}", text(&o));
        String::from_utf8(o.stdout).unwrap()
    }

    /// SQL as the Postgres superuser (for watching backend connections).
    fn superuser_sql(&self, sql: &str) -> String {
        let o = Command::new("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-p",
                &self.pg.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-c", sql])
            .env("PGPASSWORD", &self.pg.superuser_password)
            .env("PGSSLMODE", "disable")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Wait (bounded) until every node's `/readyz` answers 200; returns how long it took.
    fn wait_all_ready(&self) -> Duration {
        let t0 = Instant::now();
        while !self.ops.iter().all(|a| readyz(a) == Some(200)) {
            if t0.elapsed() > Duration::from_secs(60) {
                eprintln!("# warning: not every node ready after 60 s; going on");
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        t0.elapsed()
    }

    /// Times any node logged losing its quorum lease so far.
    fn lease_losses(&self) -> usize {
        (1..=self.nodes.len())
            .map(|id| {
                std::fs::read_to_string(self.dir.join(format!("node{id}.log")))
                    .unwrap_or_default()
                    .matches("quorum lease lost")
                    .count()
            })
            .sum()
    }

    /// Wait (bounded) until no `demo_app` backends are left from the previous run, so a
    /// run never starts next to another run's lingering connections.
    fn wait_backends_gone(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let n: u64 = self
                .superuser_sql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'demo_app'")
                .parse()
                .unwrap_or(u64::MAX);
            if n == 0 {
                return;
            }
            if Instant::now() > deadline {
                eprintln!("# warning: {n} demo_app backends still open after 20 s; going on");
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn start_playground(bin: &Path, guard: &mut Guard) -> Playground {
    let dir = guard.dir.path().to_path_buf();
    let o = Command::new(bin)
        .args(["dev", "--detach", "--postgres", "--nodes", "3", "--dir"])
        .arg(&dir)
        // Every pgbench client is the same identity: lift the per-identity session cap.
        .env("PORTCULLIS_LIMITS__MAX_SESSIONS_PER_IDENTITY", "10000")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // Record what to stop before judging the outcome.
    let cluster: Option<Value> =
        std::fs::read_to_string(dir.join("cluster.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    let pg: Option<PgInfo> = std::fs::read_to_string(dir.join("postgres.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .map(|v| PgInfo {
            port: v["port"].as_u64().unwrap() as u16,
            data_dir: PathBuf::from(v["data_dir"].as_str().unwrap()),
            bin_dir: PathBuf::from(v["bin_dir"].as_str().unwrap()),
            app_password: v["app_password"].as_str().unwrap().to_string(),
            superuser_password: v["superuser_password"].as_str().unwrap().to_string(),
        });
    guard.pg = pg.clone();
    if let Some(c) = &cluster {
        guard.issuer_pid = c["issuer_pid"].as_u64().map(|p| p as u32);
        guard.node_pids =
            c["nodes"].as_array().unwrap().iter().filter_map(|n| n["pid"].as_u64()).map(|p| p as u32).collect();
    }
    assert!(o.status.success(), "portcullis dev --postgres --detach failed: {}", text(&o));
    let cluster = cluster.expect("cluster.json");
    let nodes = cluster["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let pg = n["pg"].as_str().expect("node has a Postgres door");
            let port = pg.rsplit_once(':').unwrap().1.parse().unwrap();
            (n["id"].as_u64().unwrap(), n["admin"].as_str().unwrap().to_string(), port)
        })
        .collect();
    let ops = cluster["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["ops"].as_str().unwrap().trim_start_matches("http://").to_string())
        .collect();
    Playground { bin: bin.to_path_buf(), dir, nodes, ops, pg: pg.expect("postgres.json") }
}

/// Register `demofast` (same backend, audit fast) and a policy letting engineers read
/// both, masking `demofast` exactly like the demo policy masks `demo`, so the two differ
/// only in audit mode.
fn register_fast(p: &Playground, admin: &str) {
    let resource = p.dir.join("demofast.yaml");
    std::fs::write(
        &resource,
        format!(
            "name: demofast\nprotocol: postgres\naddress: 127.0.0.1:{}\nusername: demo_app\npassword: {}\naudit: fast\noptions: {{ database: demo }}\n",
            p.pg.port, p.pg.app_password
        ),
    )
    .unwrap();
    p.cli_ok(1, admin, &["resource", "apply", "-f", resource.to_str().unwrap()]);
    let policy = p.dir.join("bench-policy.yaml");
    std::fs::write(
        &policy,
        "name: bench\nrules:\n  - name: engineers-read-both\n    match: { groups: [engineers], resources: [demo, demofast], kinds: [select] }\n    action: allow\n  - name: mask-pii-fast\n    match: { resources: [demofast] }\n    action: mask\n    mask: { columns: [email, ssn, \"*password*\"], detectors: [email, credit_card, ssn] }\n",
    )
    .unwrap();
    p.cli_ok(1, admin, &["policy", "apply", "-f", policy.to_str().unwrap()]);
}

/// PgBouncer in front of the playground's Postgres, client TLS required with the
/// playground's node certificate (the same kind of key the door presents).
fn start_pgbouncer(p: &Playground, guard: &mut Guard, name: &str, pool_mode: &str, pool_size: u32) -> u16 {
    let dir = p.dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    std::fs::copy(p.dir.join("node1.pem"), dir.join("server.pem")).unwrap();
    std::fs::copy(p.dir.join("node1.key"), dir.join("server.key")).unwrap();
    // A plain password in the userlist lets PgBouncer answer both the client's and the
    // server's SCRAM exchange (Postgres 15 stores SCRAM verifiers).
    std::fs::write(dir.join("userlist.txt"), format!("\"demo_app\" \"{}\"\n", p.pg.app_password)).unwrap();
    let ini = format!(
        "[databases]\n\
         demo = host=127.0.0.1 port={pg} dbname=demo user=demo_app\n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = scram-sha-256\n\
         auth_file = {dir}/userlist.txt\n\
         pool_mode = {pool_mode}\n\
         default_pool_size = {pool_size}\n\
         max_client_conn = 500\n\
         server_idle_timeout = 1\n\
         client_tls_sslmode = require\n\
         client_tls_key_file = {dir}/server.key\n\
         client_tls_cert_file = {dir}/server.pem\n\
         server_tls_sslmode = disable\n\
         ignore_startup_parameters = extra_float_digits\n\
         logfile = {dir}/pgbouncer.log\n\
         pidfile = {dir}/pgbouncer.pid\n",
        pg = p.pg.port,
        dir = dir.display(),
    );
    std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
    if is_root() {
        let st = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status().unwrap();
        assert!(st.success(), "chown {}", dir.display());
        // The playground dir itself is already traversable by `postgres` (dev made it so).
    }
    let mut perms = std::fs::metadata(dir.join("server.key")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(dir.join("server.key"), perms).unwrap();
    let pidfile = dir.join("pgbouncer.pid");
    guard.pgbouncer_pidfiles.push(pidfile.clone());
    let o = as_postgres(Path::new("/usr/sbin/pgbouncer")).arg("-d").arg(dir.join("pgbouncer.ini")).output().unwrap();
    let log = || std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default();
    assert!(o.status.success(), "pgbouncer failed to start: {}\n{}", text(&o), log());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "pgbouncer not listening on {port}: {}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
    port
}

/// HTTP status of GET /readyz on `addr` (host:port), or None if nothing answers.
fn readyz(addr: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Where a pgbench run goes and how it logs in.
struct Target {
    port: u16,
    user: String,
    password: String,
    dbname: String,
    sslmode: &'static str,
}

enum Tps {
    Ok { tps: f64, transactions: u64 },
    Failed(String),
}

impl Tps {
    fn value(&self) -> Option<f64> {
        match self {
            Tps::Ok { tps, .. } => Some(*tps),
            Tps::Failed(_) => None,
        }
    }
}

/// The processes a run's CPU is charged to.
struct Watched {
    postmaster: u32,
    pgbouncers: Vec<u32>,
    door_node: u32,
    other_nodes: Vec<u32>,
    ticks: f64,
}

/// CPU seconds so far, by role.
#[derive(Clone, Copy, Default)]
struct CpuSample {
    pgbench: f64,
    postgres: f64,
    pgbouncer: f64,
    door_node: f64,
    other_nodes: f64,
}

impl Watched {
    fn sample(&self) -> CpuSample {
        let sum = |pids: &[u32]| pids.iter().filter_map(|p| cpu::seconds(*p, self.ticks)).sum::<f64>();
        CpuSample {
            pgbench: cpu::waited_children_seconds(self.ticks),
            postgres: sum(&[self.postmaster]),
            pgbouncer: sum(&self.pgbouncers),
            door_node: sum(&[self.door_node]),
            other_nodes: sum(&self.other_nodes),
        }
    }

    /// Wait (bounded) until the gateway nodes are idle again, so work a run left behind
    /// (fast mode's audit backlog) is charged to that run.
    fn settle(&self) {
        let mut last = self.sample();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(250));
            let now = self.sample();
            if (now.door_node + now.other_nodes) - (last.door_node + last.other_nodes) < 0.02 {
                return;
            }
            last = now;
        }
    }
}

/// CPU microseconds per transaction of one run, by role, and how many cores were busy.
fn cpu_row(label: &str, mode: &str, clients: u32, tps: &Tps, before: CpuSample, after: CpuSample) -> Option<String> {
    let Tps::Ok { tps, transactions } = tps else {
        return None;
    };
    let per = |a: f64, b: f64| (a - b) * 1e6 / (*transactions).max(1) as f64;
    let pgbench = per(after.pgbench, before.pgbench);
    let postgres = per(after.postgres, before.postgres);
    let between = per(after.pgbouncer + after.door_node, before.pgbouncer + before.door_node);
    let others = per(after.other_nodes, before.other_nodes);
    let total = pgbench + postgres + between + others;
    Some(format!(
        "{mode:>9} {clients:>7} {label:>10} {tps:>9.0} {pgbench:>8.0} {postgres:>9.0} {between:>8.0} {others:>7.0} {total:>7.0} {:>11.2}",
        total * tps / 1e6
    ))
}

fn pgbench(script: &Path, t: &Target, mode: &str, clients: u32, seconds: u64) -> Tps {
    let o = Command::new("pgbench")
        .args(["-n", "-M", mode, "-c", &clients.to_string(), "-j", &clients.min(2).to_string()])
        .args(["-T", &seconds.to_string(), "-f", script.to_str().unwrap()])
        .args(["-h", "127.0.0.1", "-p", &t.port.to_string(), "-U", &t.user, &t.dbname])
        .env("PGPASSWORD", &t.password)
        .env("PGSSLMODE", t.sslmode)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let failed = out
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    let tps = out
        .lines()
        .find(|l| l.starts_with("tps = ") && l.contains("without initial connection time"))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|s| s.parse::<f64>().ok());
    let transactions = out
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse::<u64>().ok());
    match (tps, transactions) {
        (Some(tps), Some(transactions)) if o.status.success() && failed == 0 => Tps::Ok { tps, transactions },
        _ => {
            let err = String::from_utf8_lossy(&o.stderr);
            let first: Vec<&str> =
                err.lines().chain(out.lines().rev().take(3)).filter(|l| !l.trim().is_empty()).take(5).collect();
            Tps::Failed(format!(
                "exit {:?}, failed transactions {failed}, tps {tps:?}: {}",
                o.status.code(),
                first.join(" | ")
            ))
        }
    }
}

fn cell(t: &Tps) -> String {
    match t {
        Tps::Ok { tps, .. } => format!("{tps:.0}"),
        Tps::Failed(_) => "FAIL".into(),
    }
}

fn ratio(a: &Tps, b: &Tps) -> String {
    match (a.value(), b.value()) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

fn main() {
    let args = parse_args();
    let bin = portcullis_bin();
    println!(
        "# pg_door: {}s per pgbench run, clients {:?}, {} approval rounds, {} cores, binary {}",
        args.seconds,
        args.clients,
        args.rounds,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        bin.display()
    );
    let mut guard = Guard {
        dir: tempfile::Builder::new().prefix("pg_door.").tempdir().unwrap(),
        node_pids: vec![],
        issuer_pid: None,
        pg: None,
        pgbouncer_pidfiles: vec![],
    };
    let p = start_playground(&bin, &mut guard);
    let admin = p.token("bench-admin", "admin");
    register_fast(&p, &admin);
    let status: Value = serde_json::from_str(&p.cli_ok(1, &admin, &["cluster", "status", "--json"])).unwrap();
    let leader = status["leader"].as_u64();
    let door_node = 1u64;
    println!(
        "# playground {} (leader node {leader:?}); gateway load goes to node {door_node}'s door, Postgres on port {}",
        p.dir.display(),
        p.pg.port
    );
    // Transaction pooling cannot keep prepared statements in PgBouncer 1.18 (no
    // max_prepared_statements before 1.21): prepared mode goes through a second instance
    // in session pooling, with as many server connections as clients.
    let max_clients = args.clients.iter().copied().max().unwrap_or(1);
    let bouncer_tx = start_pgbouncer(&p, &mut guard, "pgbouncer-tx", "transaction", 20);
    let bouncer_session = start_pgbouncer(&p, &mut guard, "pgbouncer-session", "session", max_clients);

    // Approval latency first, on an idle cluster: the load below leaves an audit
    // backlog (fast mode does not wait for its records) that the cluster drains later.
    p.wait_all_ready();
    approval_release_in_process(&p, args.rounds);
    approval_release(&p, args.rounds);
    let losses_before = p.lease_losses();

    let script = p.dir.join("read.sql");
    std::fs::write(&script, SCRIPT).unwrap();
    let alice = p.token("alice", "engineers");
    let direct = Target {
        port: p.pg.port,
        user: "demo_app".into(),
        password: p.pg.app_password.clone(),
        dbname: "demo".into(),
        sslmode: "disable",
    };
    let bouncer = |port| Target {
        port,
        user: "demo_app".into(),
        password: p.pg.app_password.clone(),
        dbname: "demo".into(),
        sslmode: "require",
    };
    let gateway = |db: &str| Target {
        port: p.door_port(door_node),
        user: "alice".into(),
        password: alice.clone(),
        dbname: db.into(),
        sslmode: "require",
    };
    let (strict_t, fast_t) = (gateway("demo"), gateway("demofast"));
    let pid_in = |path: &Path| -> u32 {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines().next().unwrap().trim().parse().unwrap()
    };
    let node_pid = |id: u64| guard.node_pids[p.nodes.iter().position(|n| n.0 == id).unwrap()];
    let watched = Watched {
        postmaster: pid_in(&p.pg.data_dir.join("postmaster.pid")),
        pgbouncers: guard.pgbouncer_pidfiles.iter().map(|f| pid_in(f)).collect(),
        door_node: node_pid(door_node),
        other_nodes: p.nodes.iter().filter(|n| n.0 != door_node).map(|n| node_pid(n.0)).collect(),
        ticks: cpu::ticks_per_second(),
    };
    let mut cpu_rows = vec![];

    println!(
        "\n## read-only pgbench (`SELECT name, email FROM customers WHERE id = :id`), tps without connection time"
    );
    println!(
        "{:>9} {:>7} {:>9} {:>10} {:>9} {:>9} {:>14} {:>17} {:>15}",
        "mode",
        "clients",
        "direct",
        "pgbouncer",
        "strict",
        "fast",
        "strict/direct",
        "strict/pgbouncer",
        "fast/pgbouncer"
    );
    let mut failures = vec![];
    let mut waits = vec![];
    for mode in ["simple", "extended", "prepared"] {
        let bouncer_t = bouncer(if mode == "prepared" { bouncer_session } else { bouncer_tx });
        for &clients in &args.clients {
            let mut run = |label: &str, t: &Target| {
                p.wait_backends_gone();
                let waited = p.wait_all_ready();
                if waited > Duration::from_millis(500) {
                    waits.push(format!("before {label} -M {mode} -c {clients}: {:.1} s", waited.as_secs_f64()));
                }
                let before = watched.sample();
                let r = pgbench(&script, t, mode, clients, args.seconds);
                let pgbench_done = watched.sample().pgbench;
                if let Tps::Failed(why) = &r {
                    failures.push(format!("{label} -M {mode} -c {clients}: {why}"));
                }
                // Charge the run with what it leaves behind: backends still exiting
                // (reaped by the postmaster) and the gateway's audit backlog.
                p.wait_backends_gone();
                watched.settle();
                let after = CpuSample { pgbench: pgbench_done, ..watched.sample() };
                cpu_rows.extend(cpu_row(label, mode, clients, &r, before, after));
                r
            };
            let d = run("direct", &direct);
            let b = run("pgbouncer", &bouncer_t);
            let s = run("strict", &strict_t);
            let f = run("fast", &fast_t);
            println!(
                "{mode:>9} {clients:>7} {:>9} {:>10} {:>9} {:>9} {:>14} {:>17} {:>15}",
                cell(&d),
                cell(&b),
                cell(&s),
                cell(&f),
                ratio(&s, &d),
                ratio(&s, &b),
                ratio(&f, &b)
            );
        }
    }
    println!("(pgbouncer: transaction pooling, 20 server connections; prepared mode: session pooling, {max_clients})");
    println!(
        "\n## CPU per transaction (µs) by process: pgbench, Postgres (postmaster and its exited backends), \
         between (PgBouncer, or the gateway node serving the door), other gateway nodes; \
         busy = cores in use on average"
    );
    println!(
        "{:>9} {:>7} {:>10} {:>9} {:>8} {:>9} {:>8} {:>7} {:>7} {:>11}",
        "mode", "clients", "target", "tps", "pgbench", "postgres", "between", "others", "total", "busy"
    );
    for row in &cpu_rows {
        println!("{row}");
    }
    for f in &failures {
        println!("FAILED {f}");
    }
    for w in &waits {
        println!("waited for every node to serve again {w}");
    }
    let t0 = Instant::now();
    p.wait_all_ready();
    println!(
        "quorum lease lost {} times across nodes during the load ({losses_before} before it); all nodes serving again {:.1} s after the last run",
        p.lease_losses() - losses_before,
        t0.elapsed().as_secs_f64()
    );
    drop(guard);
}

/// Held `DELETE` on node 2 (tokio-postgres session), approved through node 3 (admin gRPC
/// client in this process): from sending the approval until the DELETE's result is back
/// at the client. This is the release latency itself, without process start-ups.
fn approval_release_in_process(p: &Playground, rounds: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (release, seen) = rt.block_on(async {
        let ca = std::fs::read(p.ca()).unwrap();
        let bob = p.token("bob", "approvers");
        let admin = portcullis_api::AdminClient::connect(p.admin(3), Some(&ca), Some(bob)).await.unwrap();
        let tls = portcullis_chaos::tls::MakeRustls::trusting(&p.ca()).unwrap();
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(p.door_port(2))
            .dbname("demo")
            .user("alice")
            .password(p.token("alice", "engineers"));
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
        let (client, connection) = config.connect(tls).await.unwrap();
        tokio::spawn(connection);
        let client = std::sync::Arc::new(client);
        let (mut release, mut seen) = (vec![], vec![]);
        for _ in 0..rounds {
            let asked = Instant::now();
            let c = client.clone();
            let held = tokio::spawn(async move {
                let r = c.simple_query("DELETE FROM customers WHERE id = -1").await;
                (r.map(|_| ()), Instant::now())
            });
            let id = loop {
                let pending = admin.list_approvals(true).await.unwrap();
                if let Some(a) = pending.first() {
                    break a.id.clone();
                }
                assert!(asked.elapsed() < Duration::from_secs(60), "DELETE was not held within 60 s");
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            seen.push(asked.elapsed());
            let t0 = Instant::now();
            admin.approve(&id, "bench").await.unwrap();
            let (result, done) = held.await.unwrap();
            result.unwrap();
            release.push(done.duration_since(t0));
        }
        (release, seen)
    });
    let (mut release, mut seen) = (release, seen);
    release.sort();
    seen.sort();
    println!(
        "\n## approval release, in process (DELETE held on node 2 via tokio-postgres, approved through node 3 via gRPC), {rounds} rounds"
    );
    println!("{:<52} {:>8} {:>8} {:>8}", "", "p50 ms", "p99 ms", "samples");
    for (label, v) in [
        ("approve sent -> DELETE result at the client", &release),
        ("(DELETE sent -> approval seen pending, by polling)", &seen),
    ] {
        println!("{label:<52} {:>8.2} {:>8.2} {:>8}", ms(quantile(v, 0.5)), ms(quantile(v, 0.99)), v.len());
    }
}

/// Held `DELETE` on node 2, approved through node 3: time from issuing the approve
/// command until psql exits; the CLI's own round trip (`approvals list`) as baseline.
fn approval_release(p: &Playground, rounds: usize) {
    let alice = p.token("alice", "engineers");
    let bob = p.token("bob", "approvers");
    let door2 = p.door_port(2);
    let mut release = vec![];
    let mut approve_cli = vec![];
    let mut list_cli = vec![];
    let mut held_after = vec![];
    for _ in 0..rounds {
        let mut held = Command::new("psql")
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg(format!("host=127.0.0.1 port={door2} dbname=demo user=alice sslmode=require connect_timeout=10"))
            .args(["-c", "DELETE FROM customers WHERE id = -1"])
            .env("PGPASSWORD", &alice)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let asked = Instant::now();
        let deadline = asked + Duration::from_secs(60);
        let id = loop {
            if held.try_wait().unwrap().is_some() {
                panic!("the DELETE ended before it was approved: {}", text(&held.wait_with_output().unwrap()));
            }
            let t0 = Instant::now();
            let o = p.cli_cmd(3, &bob, &["approvals", "list", "--pending", "--json"]).output().unwrap();
            list_cli.push(t0.elapsed());
            assert!(o.status.success(), "approvals list: {}", text(&o));
            let v: Value = serde_json::from_slice(&o.stdout).unwrap();
            if let Some(id) = v.as_array().and_then(|a| a.first()).and_then(|a| a["id"].as_str()) {
                break id.to_string();
            }
            assert!(Instant::now() < deadline, "DELETE was not held within 60 s");
        };
        held_after.push(asked.elapsed());
        let t0 = Instant::now();
        let mut approve = p.cli_cmd(3, &bob, &["approvals", "approve", &id]).stdout(Stdio::null()).spawn().unwrap();
        let o = held.wait_with_output().unwrap();
        release.push(t0.elapsed());
        let st = approve.wait().unwrap();
        approve_cli.push(t0.elapsed());
        assert!(st.success(), "approvals approve {id} failed");
        assert!(o.status.success(), "held DELETE did not complete after approval: {}", text(&o));
    }
    let first_held = held_after.first().copied().unwrap_or_default();
    release.sort();
    held_after.sort();
    approve_cli.sort();
    list_cli.sort();
    println!("\n## approval release across nodes (DELETE held on node 2, approved through node 3), {rounds} rounds");
    println!("{:<52} {:>8} {:>8} {:>8}", "", "p50 ms", "p99 ms", "samples");
    for (label, v) in [
        ("approve issued -> psql exits (incl. CLI start)", &release),
        ("`approvals approve` CLI process, start to exit", &approve_cli),
        ("baseline: `approvals list` CLI process round trip", &list_cli),
        ("(psql started -> approval seen pending, by polling)", &held_after),
    ] {
        println!("{label:<52} {:>8.2} {:>8.2} {:>8}", ms(quantile(v, 0.5)), ms(quantile(v, 0.99)), v.len());
    }
    println!("(first round: the DELETE was seen pending {:.0} ms after psql started)", ms(first_held));
}
