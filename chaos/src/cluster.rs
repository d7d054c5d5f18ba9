//! The playground under test: `portcullis dev --postgres [--ssh] [--http] --detach` in
//! the run directory, its node processes (kill -9, SIGSTOP/SIGCONT, restart), the admin
//! CLI and the backends (Postgres; the SSH host and the demo HTTP API when asked for). With [`Hosts`] (root only) every node lives in its own
//! network namespace and is (re)started there. Everything it started is torn down
//! by [`Playground::teardown`], which `Drop` also calls (errors, Ctrl-C); the hosts
//! go after the processes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;

use crate::netns::Hosts;

/// The node environment variable that confirms `--unsafe-no-lease`.
pub const UNSAFE_CONFIRM: &str = "PORTCULLIS_I_UNDERSTAND_UNSAFE_NO_LEASE";

#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: u64,
    /// Postgres door, `host:port`.
    pub pg: String,
    /// SSH door, `host:port` (with `dev --ssh`).
    pub ssh: Option<String>,
    /// HTTP door, `host:port` (with `dev --http`).
    pub http: Option<String>,
    pub admin: String,
    /// Node-to-node listener, `host:port`.
    pub raft: String,
    pub config: PathBuf,
    /// The node's network namespace, when it has one.
    pub netns: Option<String>,
}

/// The playground's backend Postgres (from `postgres.json`).
#[derive(Debug, Clone)]
pub struct Backend {
    pub port: u16,
    pub superuser_password: String,
    /// The gateway's backend role `demo_app` (to register `demo` again).
    pub app_password: String,
    pub data_dir: Option<PathBuf>,
    pub log: PathBuf,
}

/// The playground's OpenSSH server (from cluster.json `sshd`, with `dev --ssh`): the
/// host behind resource `demo-ssh`, on the root namespace's loopback.
#[derive(Debug, Clone)]
pub struct Sshd {
    pub port: u16,
    /// The account every login lands in.
    pub user: String,
    /// A private key that logs in to the host directly, bypassing the gateway (the
    /// gateway's own login: the resource's secret).
    pub client_key: PathBuf,
    /// The host's public key line, pinned by the resource.
    pub host_key: String,
    /// sshd's pid, killed on teardown.
    pid: Option<u32>,
}

/// The playground's demo HTTP API (from cluster.json `http_api`, with `dev --http`):
/// the backend behind resource `demo-api`, on the root namespace's loopback.
#[derive(Debug, Clone)]
pub struct DemoApi {
    pub port: u16,
    /// Its request log: one JSON line per request that reached it.
    pub log: PathBuf,
    /// The API key (the credential the gateway injects), to register `demo-api` again.
    pub key_file: PathBuf,
    /// The API's pid, killed on teardown.
    pid: Option<u32>,
}

pub struct Playground {
    pub dir: PathBuf,
    bin: PathBuf,
    pub nodes: Vec<NodeInfo>,
    pub backend: Backend,
    pub sshd: Option<Sshd>,
    pub api: Option<DemoApi>,
    pub ca: PathBuf,
    admin_token: Mutex<Option<String>>,
    unsafe_no_lease: Mutex<bool>,
    /// Live pid per node: from cluster.json, then from our restarts.
    pids: Mutex<BTreeMap<u64, u32>>,
    /// Node processes we started (restarts), reaped on kill and teardown.
    children: Mutex<Vec<Child>>,
    issuer_pid: Option<u32>,
    torn_down: Mutex<bool>,
    /// Declared last: dropped after `Drop::drop` has killed the processes inside.
    pub hosts: Option<Hosts>,
}

/// Which of the playground's optional doors (and their backends) to start.
#[derive(Debug, Clone, Copy)]
pub struct Doors {
    /// `dev --ssh`: the SSH door and the playground's sshd (resource `demo-ssh`).
    pub ssh: bool,
    /// `dev --http`: the HTTP door and the demo API (resource `demo-api`).
    pub http: bool,
}

/// Find `portcullis`: env PORTCULLIS_BIN, else next to our own executable.
pub fn portcullis_bin() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("PORTCULLIS_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locate portcullis-chaos")?;
    let dir = exe.parent().ok_or_else(|| anyhow!("{} has no parent directory", exe.display()))?;
    let candidate = dir.join("portcullis");
    if candidate.exists() {
        return Ok(candidate);
    }
    // target/<profile>/portcullis-chaos → try both profiles.
    if let Some(target) = dir.parent() {
        for profile in ["release", "debug"] {
            let p = target.join(profile).join("portcullis");
            if p.exists() {
                return Ok(p);
            }
        }
    }
    bail!(
        "portcullis binary not found next to {}; build it (cargo build -p portcullis) or set PORTCULLIS_BIN",
        exe.display()
    )
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

fn str_field(v: &Value, key: &str) -> anyhow::Result<String> {
    v.get(key).and_then(Value::as_str).map(String::from).ok_or_else(|| anyhow!("cluster.json: missing {key}"))
}

impl Playground {
    /// Run `portcullis dev --postgres --detach` (and `--ssh` with `doors.ssh`, `--http`
    /// with `doors.http`) in `dir` and load what it started. With `hosts`, each node
    /// binds its namespace address and runs in its namespace.
    pub fn start(dir: &Path, bin: &Path, nodes: u64, hosts: Option<Hosts>, doors: Doors) -> anyhow::Result<Playground> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let out = Command::new(bin)
            .args(["dev", "--postgres", "--detach", "--nodes", &nodes.to_string()])
            .args(if doors.ssh { &["--ssh"][..] } else { &[][..] })
            .args(if doors.http { &["--http"][..] } else { &[][..] })
            .arg("--dir")
            .arg(dir)
            .args(hosts.as_ref().map(Hosts::dev_args).unwrap_or_default())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {} dev", bin.display()))?;
        let loaded = Self::load(dir, bin, hosts);
        if !out.status.success() {
            bail!("portcullis dev failed: {}\n{}", lossy(&out.stderr), lossy(&out.stdout));
        }
        loaded
    }

    fn load(dir: &Path, bin: &Path, hosts: Option<Hosts>) -> anyhow::Result<Playground> {
        let text = std::fs::read_to_string(dir.join("cluster.json")).context("read cluster.json")?;
        let v: Value = serde_json::from_str(&text).context("parse cluster.json")?;
        let mut nodes = vec![];
        let mut pids = BTreeMap::new();
        for n in v.get("nodes").and_then(Value::as_array).ok_or_else(|| anyhow!("cluster.json: no nodes"))? {
            let id = n.get("id").and_then(Value::as_u64).ok_or_else(|| anyhow!("cluster.json: node without id"))?;
            if let Some(pid) = n.get("pid").and_then(Value::as_u64).and_then(|p| u32::try_from(p).ok()) {
                pids.insert(id, pid);
            }
            nodes.push(NodeInfo {
                id,
                pg: str_field(n, "pg")?,
                ssh: n.get("ssh").and_then(Value::as_str).map(String::from),
                http: n.get("http").and_then(Value::as_str).map(String::from),
                admin: str_field(n, "admin")?,
                raft: str_field(n, "raft")?,
                config: PathBuf::from(str_field(n, "config")?),
                netns: hosts.as_ref().and_then(|h| h.node(id)).map(|h| h.ns.clone()),
            });
        }
        let pg_text = std::fs::read_to_string(dir.join("postgres.json")).context("read postgres.json")?;
        let pg: Value = serde_json::from_str(&pg_text).context("parse postgres.json")?;
        let backend = Backend {
            port: pg
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| anyhow!("postgres.json: no port"))?,
            superuser_password: str_field(&pg, "superuser_password")?,
            app_password: str_field(&pg, "app_password")?,
            data_dir: pg.get("data_dir").and_then(Value::as_str).map(PathBuf::from),
            log: dir.join("postgres.log"),
        };
        let sshd = match v.get("sshd").filter(|s| !s.is_null()) {
            Some(s) => {
                let addr = str_field(s, "addr")?;
                let port = addr
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse().ok())
                    .ok_or_else(|| anyhow!("cluster.json: sshd addr {addr:?} has no port"))?;
                Some(Sshd {
                    port,
                    user: str_field(s, "user")?,
                    client_key: PathBuf::from(str_field(s, "client_key")?),
                    host_key: str_field(s, "host_key")?,
                    pid: s.get("pid").and_then(Value::as_u64).and_then(|p| u32::try_from(p).ok()),
                })
            }
            None => None,
        };
        let api = match v.get("http_api").filter(|a| !a.is_null()) {
            Some(a) => {
                let addr = str_field(a, "addr")?;
                let port = addr
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse().ok())
                    .ok_or_else(|| anyhow!("cluster.json: http_api addr {addr:?} has no port"))?;
                Some(DemoApi {
                    port,
                    log: PathBuf::from(str_field(a, "log")?),
                    key_file: PathBuf::from(str_field(a, "key_file")?),
                    pid: a.get("pid").and_then(Value::as_u64).and_then(|p| u32::try_from(p).ok()),
                })
            }
            None => None,
        };
        Ok(Playground {
            dir: dir.to_path_buf(),
            bin: bin.to_path_buf(),
            nodes,
            backend,
            sshd,
            api,
            ca: dir.join("ca.pem"),
            admin_token: Mutex::new(None),
            unsafe_no_lease: Mutex::new(false),
            pids: Mutex::new(pids),
            children: Mutex::new(vec![]),
            issuer_pid: v.get("issuer_pid").and_then(Value::as_u64).and_then(|p| u32::try_from(p).ok()),
            torn_down: Mutex::new(false),
            hosts,
        })
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// A token from the playground's development issuer.
    pub fn token(&self, sub: &str, groups: &str) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .args(["dev", "token", "--dir"])
            .arg(&self.dir)
            .args(["--sub", sub, "--groups", groups, "--ttl", "6h"])
            .stdin(Stdio::null())
            .output()
            .context("run portcullis dev token")?;
        if !out.status.success() {
            bail!("portcullis dev token failed: {}", lossy(&out.stderr));
        }
        Ok(lossy(&out.stdout))
    }

    fn admin_token(&self) -> anyhow::Result<String> {
        let mut slot = self.admin_token.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = slot.as_ref() {
            return Ok(t.clone());
        }
        let t = self.token("chaos", "admin")?;
        *slot = Some(t.clone());
        Ok(t)
    }

    /// Run the admin CLI against node `via` (bounded: a paused node never answers).
    pub async fn cli(&self, via: u64, args: &[&str], timeout: Duration) -> anyhow::Result<Output> {
        self.cli_as(via, &self.admin_token()?, args, timeout).await
    }

    /// As [`Playground::cli`], as the holder of `token`.
    pub async fn cli_as(&self, via: u64, token: &str, args: &[&str], timeout: Duration) -> anyhow::Result<Output> {
        let node = self.nodes.iter().find(|n| n.id == via).ok_or_else(|| anyhow!("no node {via}"))?;
        let child = tokio::process::Command::new(&self.bin)
            .args(args)
            .env("PORTCULLIS_ENDPOINT", &node.admin)
            .env("PORTCULLIS_CA", &self.ca)
            .env("PORTCULLIS_TOKEN", token)
            .env("PORTCULLIS_CONFIG_DIR", self.dir.join("cli-config"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("run the portcullis CLI")?;
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(out) => Ok(out?),
            Err(_) => bail!("portcullis {args:?} via node {via} did not answer within {timeout:?}"),
        }
    }

    /// `cluster status --json` as seen by `via`.
    pub async fn status(&self, via: u64) -> Option<Value> {
        let out = self.cli(via, &["cluster", "status", "--json"], Duration::from_secs(5)).await.ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Wait until some node reports a leader and every node serving; returns the leader.
    pub async fn wait_all_serving(&self, timeout: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + timeout;
        let ids = self.ids();
        let mut last = String::from("no answer");
        loop {
            for via in &ids {
                let Some(s) = self.status(*via).await else { continue };
                let serving = s
                    .get("nodes")
                    .and_then(Value::as_array)
                    .map(|ns| ns.iter().filter(|n| n.get("serving").and_then(Value::as_bool) == Some(true)).count())
                    .unwrap_or(0);
                if let Some(l) = s.get("leader").and_then(Value::as_u64)
                    && serving == ids.len()
                {
                    return Ok(l);
                }
                last = s.to_string();
                break;
            }
            if Instant::now() > deadline {
                bail!("the cluster did not have every node serving within {timeout:?}; last status: {last}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn pid(&self, id: u64) -> Option<u32> {
        self.pids.lock().unwrap_or_else(|p| p.into_inner()).get(&id).copied()
    }

    pub fn pause(&self, id: u64) {
        if let Some(pid) = self.pid(id) {
            signal(pid, "STOP");
        }
    }

    pub fn resume(&self, id: u64) {
        if let Some(pid) = self.pid(id) {
            signal(pid, "CONT");
        }
    }

    /// kill -9 node `id` and wait (bounded) until its process is gone.
    pub async fn kill9(&self, id: u64) {
        let pid = self.pids.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        let Some(pid) = pid else { return };
        signal(pid, "KILL");
        self.reap(pid, Duration::from_secs(10)).await;
    }

    /// Stop node `id` gracefully (SIGTERM, then SIGKILL after 10 s).
    pub async fn stop(&self, id: u64) {
        let pid = self.pids.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        let Some(pid) = pid else { return };
        signal(pid, "TERM");
        if !self.reap(pid, Duration::from_secs(10)).await {
            signal(pid, "KILL");
            self.reap(pid, Duration::from_secs(10)).await;
        }
    }

    /// Wait until `pid` is gone, reaping it if it is our child; false on timeout.
    async fn reap(&self, pid: u32, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            {
                // Reap exited children (a zombie would look alive).
                let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
                children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
            }
            if !process_alive(pid) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// From now on every (re)start runs with `--unsafe-no-lease` (the planted fault).
    pub fn set_unsafe_no_lease(&self) {
        *self.unsafe_no_lease.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }

    /// Start node `id` again from its config, as an operator would.
    pub fn restart(&self, id: u64) -> anyhow::Result<()> {
        let node = self.nodes.iter().find(|n| n.id == id).ok_or_else(|| anyhow!("no node {id}"))?;
        let log_path = self.dir.join(format!("node{id}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        // In its namespace, as `portcullis dev` started it (`ip netns exec` execs the
        // node, so the child's pid is the node's).
        let mut cmd = match &node.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.args(["run", "--config"]).arg(&node.config);
        if *self.unsafe_no_lease.lock().unwrap_or_else(|p| p.into_inner()) {
            cmd.arg("--unsafe-no-lease").env(UNSAFE_CONFIRM, "yes");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("restart node {id}"))?;
        self.pids.lock().unwrap_or_else(|p| p.into_inner()).insert(id, child.id());
        self.children.lock().unwrap_or_else(|p| p.into_inner()).push(child);
        Ok(())
    }

    /// Kill every process we know of and stop Postgres; idempotent.
    pub fn teardown(&self) {
        {
            let mut done = self.torn_down.lock().unwrap_or_else(|p| p.into_inner());
            if *done {
                return;
            }
            *done = true;
        }
        let pids: Vec<u32> = self.pids.lock().unwrap_or_else(|p| p.into_inner()).values().copied().collect();
        let sshd = self.sshd.as_ref().and_then(|s| s.pid);
        let api = self.api.as_ref().and_then(|a| a.pid);
        for pid in pids.iter().chain(self.issuer_pid.iter()).chain(sshd.iter()).chain(api.iter()) {
            signal(*pid, "KILL");
        }
        for c in self.children.lock().unwrap_or_else(|p| p.into_inner()).iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(data) = &self.backend.data_dir {
            portcullis_chaos::postgres::stop(data);
        }
        if let Some(hosts) = &self.hosts {
            hosts.teardown();
        }
    }
}

impl Drop for Playground {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn process_alive(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; look at its state.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|s| s.split_whitespace().next()).is_none_or(|s| s != "Z"),
        Err(_) => false,
    }
}
