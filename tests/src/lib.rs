//! Harness for black-box tests: real `portcullis` processes on loopback.
//!
//! [`Cluster::start`] runs `portcullis dev --detach` in a temp dir and reads
//! `cluster.json`; tests then drive the cluster with the real CLI, kill -9 and restart
//! node processes, and read `/readyz`. Every process started is killed on drop.
//! Waits are conditions with deadlines, never fixed sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

pub mod oidc;
pub mod pg;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Path of the `portcullis` binary, built once per test process if needed.
pub fn portcullis_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("PORTCULLIS_BIN") {
            return PathBuf::from(p);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "portcullis", "--bin", "portcullis"])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p portcullis failed");
        let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
        target.join("debug").join("portcullis")
    })
    .clone()
}

/// Poll `cond` until it returns `Some`, or panic with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A node as listed in cluster.json.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: u64,
    pub admin: String,
    pub ops: String,
    pub raft: String,
    pub config: PathBuf,
    pub data_dir: PathBuf,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: BTreeMap<u64, NodeInfo>,
    /// Live pids by node id (from cluster.json, then from restarts).
    pids: BTreeMap<u64, u32>,
    /// Node processes this harness started itself (restarts, extra nodes).
    children: Vec<Child>,
    /// The playground's development issuer process.
    issuer_pid: Option<u32>,
    /// The playground's Postgres data dir, stopped on drop.
    pg_data: Option<PathBuf>,
    /// `lb` of cluster.json (`dev --lb`): HAProxy's addresses, pid and stats socket.
    pub lb: Option<Value>,
    /// `sshd` of cluster.json (`dev --ssh`): the playground's OpenSSH server (`addr`,
    /// `user`, `pid`, `client_key`, `host_key`, `log`), stopped on drop.
    pub sshd: Option<Value>,
    /// `http_api` of cluster.json (`dev --http`): the playground's demo HTTP API
    /// (`addr`, `url`, `log`, `pid`, `key_file`), stopped on drop.
    pub http_api: Option<Value>,
    /// Token of an admin, used by [`cli`](Cluster::cli); minted on first use unless set.
    admin_token: std::sync::Mutex<Option<String>>,
}

impl Cluster {
    /// A fresh `n`-node cluster, initialized, every node serving.
    pub fn start(n: u64) -> Cluster {
        Self::start_with(n, &[])
    }

    /// A fresh `n`-node playground with a throwaway Postgres as resource `demo`.
    pub fn start_with_postgres(n: u64) -> Cluster {
        Self::start_with(n, &["--postgres"])
    }

    /// A fresh `n`-node playground with a throwaway OpenSSH server as resource
    /// `demo-ssh` (and no Postgres).
    pub fn start_with_ssh(n: u64) -> Cluster {
        Self::start_with(n, &["--ssh"])
    }

    /// A fresh `n`-node playground with the demo HTTP API as resource `demo-api` (and
    /// no Postgres).
    pub fn start_with_http(n: u64) -> Cluster {
        Self::start_with(n, &["--http"])
    }

    /// A fresh `n`-node playground started with extra `portcullis dev` flags
    /// (`--postgres`, `--ssh`, `--http`, `--lb`).
    pub fn start_with(n: u64, extra: &[&str]) -> Cluster {
        Self::start_in(tempfile::tempdir().unwrap(), n, extra)
    }

    /// As [`start_with`](Self::start_with) in a directory the caller prepared (for
    /// example with the data key file of another cluster, to restore its backup).
    pub fn start_in(dir: tempfile::TempDir, n: u64, extra: &[&str]) -> Cluster {
        let out = Command::new(portcullis_bin())
            .args(["dev", "--detach", "--nodes", &n.to_string()])
            .args(extra)
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let cluster_json = dir.path().join("cluster.json");
        let mut cluster = Cluster {
            dir,
            nodes: BTreeMap::new(),
            pids: BTreeMap::new(),
            children: vec![],
            issuer_pid: None,
            pg_data: None,
            lb: None,
            sshd: None,
            http_api: None,
            admin_token: std::sync::Mutex::new(None),
        };
        if cluster_json.exists() {
            cluster.load_cluster_json();
        }
        assert!(
            out.status.success(),
            "portcullis dev failed: {}\n{}\nlogs:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            cluster.logs()
        );
        cluster
    }

    fn load_cluster_json(&mut self) {
        let text = std::fs::read_to_string(self.dir.path().join("cluster.json")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        self.issuer_pid = v["issuer_pid"].as_u64().map(|p| p as u32);
        self.pg_data = v["postgres"]["data_dir"].as_str().map(PathBuf::from);
        self.lb = Some(v["lb"].clone()).filter(|lb| lb.is_object());
        self.sshd = Some(v["sshd"].clone()).filter(|s| s.is_object());
        self.http_api = Some(v["http_api"].clone()).filter(|s| s.is_object());
        for n in v["nodes"].as_array().unwrap() {
            let id = n["id"].as_u64().unwrap();
            if let Some(pid) = n["pid"].as_u64() {
                self.pids.insert(id, pid as u32);
            }
            self.nodes.insert(
                id,
                NodeInfo {
                    id,
                    admin: n["admin"].as_str().unwrap().to_string(),
                    ops: n["ops"].as_str().unwrap().to_string(),
                    raft: n["raft"].as_str().unwrap().to_string(),
                    config: PathBuf::from(n["config"].as_str().unwrap()),
                    data_dir: PathBuf::from(n["data_dir"].as_str().unwrap()),
                },
            );
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A token from the playground's development issuer.
    pub fn token(&self, sub: &str, groups: &[&str]) -> String {
        self.token_with(&["--sub", sub, "--groups", &groups.join(",")])
    }

    /// A token minted with extra `portcullis dev token` arguments (e.g. `--issued-ago`).
    /// A token for alice in group `engineers` (the demo policy's readers).
    pub fn engineer_token(&self) -> String {
        self.token("alice", &["engineers"])
    }

    pub fn token_with(&self, args: &[&str]) -> String {
        let out = Command::new(portcullis_bin())
            .args(["dev", "token", "--dir"])
            .arg(self.dir.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "dev token failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Run the CLI against node `id`'s admin endpoint as an admin.
    pub fn cli(&self, id: u64, args: &[&str]) -> Output {
        let token = {
            let mut slot = self.admin_token.lock().unwrap();
            slot.get_or_insert_with(|| self.token("test-admin", &["admin"])).clone()
        };
        self.cli_as(id, Some(&token), args)
    }

    /// Use `token` for [`cli`](Cluster::cli) from now on (e.g. one from another provider).
    pub fn set_admin_token(&self, token: String) {
        *self.admin_token.lock().unwrap() = Some(token);
    }

    /// Edit node `id`'s TOML config in place.
    pub fn edit_config(&self, id: u64, edit: impl FnOnce(&mut toml::Table)) {
        let path = &self.nodes[&id].config;
        let mut table: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        edit(&mut table);
        std::fs::write(path, toml::to_string(&table).unwrap()).unwrap();
    }

    /// Run the CLI against node `id` with `token` (None: no token at all).
    pub fn cli_as(&self, id: u64, token: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new(portcullis_bin());
        cmd.args(args)
            .env("PORTCULLIS_ENDPOINT", &self.nodes[&id].admin)
            .env("PORTCULLIS_CA", self.ca())
            .env_remove("PORTCULLIS_TOKEN")
            // Never fall back to a developer's own cached login.
            .env("PORTCULLIS_CONFIG_DIR", self.dir.path().join("cli-config"))
            .stdin(Stdio::null());
        if let Some(t) = token {
            cmd.env("PORTCULLIS_TOKEN", t);
        }
        cmd.output().unwrap()
    }

    /// Run the CLI and return stdout, panicking with stderr on failure.
    pub fn cli_ok(&self, id: u64, args: &[&str]) -> String {
        let out = self.cli(id, args);
        assert!(
            out.status.success(),
            "portcullis {args:?} via node {id} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `cluster status --json` as seen from node `id`.
    pub fn status(&self, id: u64) -> Option<Value> {
        let out = self.cli(id, &["cluster", "status", "--json"]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The leader id, as agreed by node `via`, once known.
    pub fn leader(&self, via: u64) -> Option<u64> {
        self.status(via)?["leader"].as_u64()
    }

    /// HTTP status of GET `/readyz` on node `id` (None if it does not answer).
    pub fn readyz(&self, id: u64) -> Option<u16> {
        http_status(&self.nodes[&id].ops, "/readyz")
    }

    /// psql as the superuser directly on the playground's backend (setup and ground
    /// truth); returns the unaligned, tuples-only output.
    pub fn backend_psql(&self, sql: &str) -> String {
        self.backend_psql_in("demo", &["-c", sql])
    }

    /// psql as the superuser on the playground's backend, in database `db`, with `args`
    /// (`-c SQL`, `-f FILE`); stops at the first error.
    pub fn backend_psql_in(&self, db: &str, args: &[&str]) -> String {
        let pg: Value =
            serde_json::from_str(&std::fs::read_to_string(self.path().join("postgres.json")).unwrap()).unwrap();
        let o = Command::new("psql")
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .arg(format!("host=127.0.0.1 port={} dbname={db} user=postgres", pg["port"]))
            .args(args)
            .env("PGPASSWORD", pg["superuser_password"].as_str().unwrap())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "backend psql {args:?}: {}", err(&o));
        out(&o)
    }

    /// The Prometheus text of GET `/metrics` on node `id` (empty if it does not answer).
    pub fn metrics(&self, id: u64) -> String {
        http_get(&self.nodes[&id].ops, "/metrics").map(|(_, body)| body).unwrap_or_default()
    }

    pub fn pid(&self, id: u64) -> Option<u32> {
        self.pids.get(&id).copied()
    }

    /// kill -9 node `id` and wait until its process is gone.
    pub fn kill9(&mut self, id: u64) {
        let pid = self.pids.remove(&id).unwrap_or_else(|| panic!("node {id} is not running"));
        signal(pid, "KILL");
        wait_for(&format!("node {id} (pid {pid}) to exit"), Duration::from_secs(10), || {
            (!process_alive(pid)).then_some(())
        });
        for child in &mut self.children {
            if child.id() == pid {
                let _ = child.wait();
            }
        }
        self.wait_ports_free(id);
    }

    /// A killed multi-threaded process shows as a zombie as soon as its main thread is
    /// gone, while other threads may still hold its listening sockets: a restart right
    /// then fails with "address in use". Wait until node `id`'s ports are free.
    fn wait_ports_free(&self, id: u64) {
        let Some(node) = self.nodes.get(&id) else { return };
        let addrs = [&node.raft, &node.admin, &node.ops].map(|a| {
            a.trim_start_matches("https://").trim_start_matches("http://").parse::<std::net::SocketAddr>().ok()
        });
        wait_for(&format!("node {id}'s ports to be free"), Duration::from_secs(10), || {
            addrs.iter().flatten().all(|sa| std::net::TcpListener::bind(sa).is_ok()).then_some(())
        });
    }

    pub fn signal(&self, id: u64, sig: &str) {
        signal(self.pids[&id], sig);
    }

    /// SIGTERM node `id` (graceful shutdown) and wait up to `timeout` for it to exit;
    /// returns its exit status when the harness started it (None for `dev`'s own
    /// processes, which are not our children). Panics if it does not exit in time.
    pub fn terminate(&mut self, id: u64, timeout: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.pids.remove(&id).unwrap_or_else(|| panic!("node {id} is not running"));
        signal(pid, "TERM");
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(child) = self.children.iter_mut().find(|c| c.id() == pid) {
                if let Some(status) = child.try_wait().unwrap() {
                    self.wait_ports_free(id);
                    return Some(status);
                }
            } else if !process_alive(pid) {
                self.wait_ports_free(id);
                return None;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node {id} (pid {pid}) still running {timeout:?} after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The load balancer's Postgres address as (host, port) (`dev --lb`).
    pub fn lb_pg_addr(&self) -> (String, String) {
        let addr = self.lb.as_ref().and_then(|lb| lb["pg"].as_str()).expect("started with --lb").to_string();
        let (h, p) = addr.rsplit_once(':').unwrap();
        (h.to_string(), p.to_string())
    }

    /// HAProxy's view of the Postgres backend: node id → whether it is in rotation
    /// (operational state 2 in `show servers state`).
    pub fn lb_pg_servers_up(&self) -> BTreeMap<u64, bool> {
        let socket = self.lb.as_ref().and_then(|lb| lb["stats_socket"].as_str()).expect("started with --lb");
        let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
        use std::io::{Read, Write};
        stream.write_all(b"show servers state pg_nodes\n").unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        // Columns: be_id be_name srv_id srv_name srv_addr srv_op_state ...
        text.lines()
            .filter_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                let id = cols.get(3)?.strip_prefix("node")?.parse().ok()?;
                Some((id, *cols.get(5)? == "2"))
            })
            .collect()
    }

    /// Start node `id` again from its config, as an operator would.
    pub fn restart(&mut self, id: u64) {
        let config = self.nodes[&id].config.clone();
        self.spawn_node(id, &config);
    }

    /// Start a node process from `config` and track it as node `id`.
    pub fn spawn_node(&mut self, id: u64, config: &Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node{id}.log")))
            .unwrap();
        let child = Command::new(portcullis_bin())
            .args(["run", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.pids.insert(id, child.id());
        self.children.push(child);
    }

    /// Register an extra node (not from cluster.json).
    pub fn add_node_info(&mut self, info: NodeInfo) {
        self.nodes.insert(info.id, info);
    }

    /// Wait until every listed node reports serving, with one agreed leader.
    pub fn wait_all_serving(&self, ids: &[u64], timeout: Duration) -> u64 {
        self.wait_all_serving_under(ids, timeout, |_| true)
    }

    /// As [`wait_all_serving`](Self::wait_all_serving), with a leader accepted by `leader_ok`
    /// (e.g. not the one just killed, whose followers keep serving until their lease ends).
    pub fn wait_all_serving_under(&self, ids: &[u64], timeout: Duration, leader_ok: impl Fn(u64) -> bool) -> u64 {
        wait_for(&format!("nodes {ids:?} all serving"), timeout, || {
            let via = *ids.first()?;
            let s = self.status(via)?;
            let leader = s["leader"].as_u64().filter(|l| leader_ok(*l))?;
            let nodes = s["nodes"].as_array()?;
            let all = ids
                .iter()
                .all(|id| nodes.iter().any(|n| n["id"].as_u64() == Some(*id) && n["serving"].as_bool() == Some(true)));
            all.then_some(leader)
        })
    }

    /// The Postgres door address of node `id` as (host, port).
    pub fn pg_addr(&self, id: u64) -> (String, String) {
        let text = std::fs::read_to_string(self.dir.path().join("cluster.json")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let node = v["nodes"].as_array().unwrap().iter().find(|n| n["id"].as_u64() == Some(id)).unwrap().clone();
        let addr = node["pg"].as_str().unwrap().to_string();
        let (h, p) = addr.rsplit_once(':').unwrap();
        (h.to_string(), p.to_string())
    }

    /// A libpq connection string to node `id`'s Postgres door for resource `demo`.
    pub fn pg_conninfo(&self, id: u64, user: &str) -> String {
        let (h, p) = self.pg_addr(id);
        format!("host={h} port={p} dbname=demo user={user} sslmode=require connect_timeout=10")
    }

    /// Run psql against node `id` with `token` as password; `-c` for each statement.
    pub fn psql(&self, id: u64, token: &str, statements: &[&str]) -> Output {
        self.psql_with_env(id, token, &[], statements)
    }

    /// [`psql`](Cluster::psql) with extra environment (`PGOPTIONS`, `PGAPPNAME`, ...).
    pub fn psql_with_env(&self, id: u64, token: &str, env: &[(&str, &str)], statements: &[&str]) -> Output {
        let mut cmd = Command::new("psql");
        cmd.arg("-X").arg("-A").arg("-t").arg("-v").arg("ON_ERROR_STOP=1").arg(self.pg_conninfo(id, "agent"));
        for st in statements {
            cmd.arg("-c").arg(st);
        }
        cmd.envs(env.iter().copied());
        cmd.env("PGPASSWORD", token).stdin(Stdio::null()).output().unwrap()
    }

    /// Start psql against node `id` running `sql` in the background (for statements
    /// that will be held for approval); stdout and stderr are piped.
    pub fn spawn_psql(&self, id: u64, token: &str, sql: &str) -> Child {
        Command::new("psql")
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg(self.pg_conninfo(id, "agent"))
            .args(["-c", sql])
            .env("PGPASSWORD", token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The SSH door address of node `id` (`host:port`, cluster.json `nodes[].ssh`).
    pub fn ssh_addr(&self, id: u64) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("cluster.json")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let node = v["nodes"].as_array().unwrap().iter().find(|n| n["id"].as_u64() == Some(id)).unwrap().clone();
        node["ssh"].as_str().unwrap_or_else(|| panic!("node {id} has no ssh address")).to_string()
    }

    fn sshd_field(&self, field: &str) -> String {
        let sshd = self.sshd.as_ref().expect("started with --ssh");
        sshd[field].as_str().unwrap_or_else(|| panic!("cluster.json sshd.{field} missing")).to_string()
    }

    /// An OpenSSH `ssh` through node `id`'s SSH door to `login` (`demo-ssh`), with
    /// `token` as the password (sshpass, from the environment: never on a command line),
    /// and `args` after the destination (`-t`, the command...). Stdin is `input`.
    pub fn ssh_via(&self, id: u64, token: &str, login: &str, opts: &[&str], args: &[&str], input: &[u8]) -> Output {
        let child = self.spawn_ssh(id, token, login, opts, args);
        write_and_wait(child, input)
    }

    /// As [`ssh_via`](Self::ssh_via) for `demo-ssh` and one command line, no input.
    pub fn ssh(&self, id: u64, token: &str, cmd: &str) -> Output {
        self.ssh_via(id, token, "demo-ssh", &[], &[cmd], b"")
    }

    /// `ssh` through node `id`'s door, started and left running (stdin, stdout and
    /// stderr piped), e.g. for a command that will be held for approval.
    pub fn spawn_ssh(&self, id: u64, token: &str, login: &str, opts: &[&str], args: &[&str]) -> Child {
        self.spawn_ssh_with(id, token, login, opts, args, &[])
    }

    /// As [`spawn_ssh`](Self::spawn_ssh), with variables added to the client's
    /// environment (`SSH_AUTH_SOCK`, `DISPLAY`).
    pub fn spawn_ssh_with(
        &self,
        id: u64,
        token: &str,
        login: &str,
        opts: &[&str],
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Child {
        let addr = self.ssh_addr(id);
        let (host, port) = addr.rsplit_once(':').unwrap();
        // Its own process group: sshpass runs ssh as a child, and "the client goes
        // away" must take both (see `kill_group`).
        use std::os::unix::process::CommandExt;
        Command::new("sshpass")
            .process_group(0)
            .args(["-e", "ssh", "-F", "/dev/null", "-p", port])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .args(["-o", "PubkeyAuthentication=no", "-o", "ConnectTimeout=10"])
            .args(opts)
            .arg(format!("{login}@{host}"))
            .args(args)
            .env("SSHPASS", token)
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The account logins to the playground's sshd land in (`portcullis-demo` as root).
    pub fn sshd_user(&self) -> String {
        self.sshd_field("user")
    }

    /// The playground sshd's own address (the backend, not a door), `127.0.0.1:port`.
    pub fn sshd_addr(&self) -> String {
        self.sshd_field("addr")
    }

    /// The public host key line the resource pins (`ssh-ed25519 AAAA...`).
    pub fn sshd_host_key(&self) -> String {
        self.sshd_field("host_key")
    }

    /// The playground sshd's own log (LogLevel VERBOSE): logins and sessions that
    /// reached the backend.
    pub fn sshd_log(&self) -> String {
        std::fs::read_to_string(self.sshd_field("log")).unwrap_or_default()
    }

    /// Run `cmd` on the host directly as the demo user, bypassing the gateway (setup
    /// and ground truth for SSH tests), with the playground's client key; returns
    /// stdout, panicking on a non-zero exit.
    pub fn host_sh(&self, cmd: &str) -> String {
        let o = self.host_ssh(cmd);
        assert!(o.status.success(), "host_sh {cmd:?} failed ({}): {}", o.status, err(&o));
        out(&o)
    }

    /// As [`host_sh`](Self::host_sh), returning the whole output whatever the exit.
    pub fn host_ssh(&self, cmd: &str) -> Output {
        let addr = self.sshd_addr();
        let (host, port) = addr.rsplit_once(':').unwrap();
        Command::new("ssh")
            .args(["-F", "/dev/null", "-i", &self.sshd_field("client_key"), "-p", port])
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10"])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .arg(format!("{}@{host}", self.sshd_user()))
            .arg(cmd)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// The web console URL of node `id` (`https://host:port`, cluster.json `nodes[].console`).
    pub fn console_url(&self, id: u64) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("cluster.json")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let node = v["nodes"].as_array().unwrap().iter().find(|n| n["id"].as_u64() == Some(id)).unwrap().clone();
        node["console"].as_str().unwrap_or_else(|| panic!("node {id} has no console")).to_string()
    }

    /// The HTTP door address of node `id` (`host:port`, cluster.json `nodes[].http`).
    pub fn http_addr(&self, id: u64) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("cluster.json")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let node = v["nodes"].as_array().unwrap().iter().find(|n| n["id"].as_u64() == Some(id)).unwrap().clone();
        node["http"].as_str().unwrap_or_else(|| panic!("node {id} has no http address")).to_string()
    }

    fn http_api_field(&self, field: &str) -> String {
        let api = self.http_api.as_ref().expect("started with --http");
        api[field].as_str().unwrap_or_else(|| panic!("cluster.json http_api.{field} missing")).to_string()
    }

    /// The demo HTTP API's own address (the backend, not a door), `127.0.0.1:port`.
    pub fn api_addr(&self) -> String {
        self.http_api_field("addr")
    }

    /// The demo API's key: the credential the gateway injects (a backend secret:
    /// tests compare with it, never print it).
    pub fn api_key(&self) -> String {
        std::fs::read_to_string(self.http_api_field("key_file")).unwrap().trim().to_string()
    }

    /// The demo API's request log, one JSON object per request that reached it, in
    /// arrival order: `time_ms`, `method`, `path`, `query`, `version`, `headers`
    /// (`[name, value]` pairs; the key shows as `[demo-api key]`, any other
    /// Authorization as `<scheme> [other sha256:…]`), `credential` (`bearer` when the
    /// key came as a bearer token; `none`, `other`, ...), `body_bytes`, `body_sha256`.
    pub fn api_log(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.http_api_field("log")).unwrap_or_default();
        // A line being appended right now is not whole yet: leave it for the next read.
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        whole
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("demo API log line {l:?}: {e}")))
            .collect()
    }

    /// The playground Postgres's own log (log_statement = all): what reached the backend.
    pub fn postgres_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Every log in the playground dir, whole (for leak checks).
    pub fn logs_full(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            if e.file_name().to_string_lossy().ends_with(".log") {
                out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        out
    }

    /// Concatenated node logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.ends_with(".log") {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    out.push_str(&format!("--- {name} (last lines)\n"));
                    for l in tail.into_iter().rev() {
                        out.push_str(l);
                        out.push('\n');
                    }
                }
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(data) = &self.pg_data {
            portcullis_chaos::postgres::stop(data);
        }
        let lb_pid = self.lb.as_ref().and_then(|lb| lb["pid"].as_u64()).map(|p| p as u32);
        let sshd_pid = self.sshd.as_ref().and_then(|s| s["pid"].as_u64()).map(|p| p as u32);
        let api_pid = self.http_api.as_ref().and_then(|s| s["pid"].as_u64()).map(|p| p as u32);
        let backends = lb_pid.iter().chain(sshd_pid.iter()).chain(api_pid.iter());
        for pid in self.pids.values().chain(self.issuer_pid.iter()).chain(backends) {
            signal(*pid, "KILL");
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A command's stdout as text.
pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A command's stderr as text.
pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

pub fn process_alive(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; check its state.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.split_whitespace().nth(2).is_none_or(|s| s != "Z"),
        Err(_) => false,
    }
}

/// Status code of a plain HTTP GET (ops port), or None if nothing answers.
pub fn http_status(base: &str, path: &str) -> Option<u16> {
    http_get(base, path).map(|(status, _)| status)
}

/// Status code and body of a plain HTTP GET (ops port), or None if nothing answers.
pub fn http_get(base: &str, path: &str) -> Option<(u16, String)> {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    // HTTP/1.0: the body comes whole, never chunked.
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// The sum of the samples of metric `name` whose labels include every pair of `labels`,
/// in Prometheus text `exposition`; None when no sample matches.
pub fn metric(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (metric, tags) = series.split_once('{').unwrap_or((series, ""));
        if metric != name || !labels.iter().all(|(k, v)| tags.contains(&format!("{k}=\"{v}\""))) {
            continue;
        }
        if let Ok(v) = value.parse::<f64>() {
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

/// A free loopback port for a listener, below the kernel's ephemeral range (see
/// `portcullis dev`), so an outgoing connection cannot take it while a node is down.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut handed = HANDED_OUT.lock().unwrap();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let mut x = seed ^ std::process::id().rotate_left(16);
    for _ in 0..500 {
        // xorshift: cheap variety, no dependency.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let port = 32_000 - (x % 6_000) as u16;
        if !handed.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed.push(port);
            return port;
        }
    }
    panic!("no free port found");
}

/// Write `input` to `child`'s stdin, close it, and wait for its output.
pub fn write_and_wait(mut child: Child, input: &[u8]) -> Output {
    use std::io::Write;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    child.wait_with_output().unwrap()
}

/// SIGKILL `child`'s whole process group (it was started as a group leader).
pub fn kill_group(child: &mut Child) {
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
    let _ = child.wait();
}
