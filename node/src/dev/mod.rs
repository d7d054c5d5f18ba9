//! `portcullis dev`: a local playground cluster.
//!
//! Creates (or reuses) a directory with a CA, node certificates, a data key and one
//! TOML per node; starts each node as its own `portcullis run` process; initializes
//! the cluster; writes `cluster.json` (DESIGN §6); prints what to type next; and stops
//! the nodes on Ctrl-C. Running it again on the same directory restarts the same
//! cluster with its data.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::process::{Child, Command};

mod demo_api;
mod hosts;
mod http_api;
mod issuer;
mod lb;
mod postgres;
mod sshd;

use portcullis_raft::network::dev_ca as certs;

use crate::config::{Listen, NodeConfig, Peer, RaftTuning};
use crate::error::NodeError;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DevArgs {
    #[command(subcommand)]
    pub command: Option<DevCmd>,
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Playground directory; reused (same cluster, same data) if it exists.
    #[arg(long, default_value = ".portcullis-dev")]
    pub dir: PathBuf,
    /// Set up and start the cluster, write cluster.json, then exit and leave the
    /// nodes running (for scripts and tests) instead of waiting for Ctrl-C.
    #[arg(long)]
    pub detach: bool,
    /// Also start a throwaway Postgres, register it as resource `demo` and apply a
    /// demo policy.
    #[arg(long)]
    pub postgres: bool,
    /// Also start a throwaway OpenSSH server on loopback, register it as resource
    /// `demo-ssh` and apply a demo policy.
    #[arg(long)]
    pub ssh: bool,
    /// Also start a small demo HTTP API on loopback, register it as resource
    /// `demo-api` (its key as the injected credential) and apply a demo policy.
    #[arg(long)]
    pub http: bool,
    /// Also start HAProxy in front of the nodes (config rendered from
    /// deploy/haproxy/haproxy.cfg.tmpl); its addresses go to cluster.json `lb`.
    #[arg(long)]
    pub lb: bool,
    /// Hidden options for the chaos harness (node addresses, network namespaces).
    #[command(flatten)]
    pub hosts: hosts::HostArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum DevCmd {
    /// Mint a token from the playground's development issuer (INSECURE, for development).
    Token {
        /// Playground directory.
        #[arg(long, default_value = ".portcullis-dev")]
        dir: PathBuf,
        /// Subject of the token.
        #[arg(long)]
        sub: String,
        /// Groups, comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Lifetime, e.g. 1h, 15m.
        #[arg(long, default_value = "1h")]
        ttl: humantime::Duration,
        /// Audience.
        #[arg(long, default_value = "portcullis")]
        aud: String,
        /// Backdate the token by this much (tests use it to mint expired tokens).
        #[arg(long, hide = true)]
        issued_ago: Option<humantime::Duration>,
    },
    /// Serve the development issuer of a playground (started by `portcullis dev`).
    #[command(hide = true)]
    Issuer {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Serve the playground's demo HTTP API (started by `portcullis dev --http`).
    #[command(hide = true)]
    DemoApi(demo_api::DemoApiArgs),
}

/// One node's line in cluster.json.
#[derive(Serialize)]
struct NodeEntry {
    id: u64,
    pid: Option<u32>,
    admin: String,
    pg: Option<String>,
    ssh: Option<String>,
    http: Option<String>,
    /// The web console's URL (`https://127.0.0.1:<port>`).
    console: Option<String>,
    ops: String,
    raft: String,
    data_dir: PathBuf,
    config: PathBuf,
}

#[derive(Serialize)]
struct ClusterFile {
    ca: PathBuf,
    /// The playground's Postgres (`--postgres`): address and data dir.
    #[serde(skip_serializing_if = "Option::is_none")]
    postgres: Option<serde_json::Value>,
    /// The playground's sshd (`--ssh`): address, dir, log, login user, pid.
    #[serde(skip_serializing_if = "Option::is_none")]
    sshd: Option<serde_json::Value>,
    /// The playground's demo HTTP API (`--http`): address, URL, request log, pid.
    #[serde(skip_serializing_if = "Option::is_none")]
    http_api: Option<serde_json::Value>,
    issuer: Option<String>,
    issuer_pid: Option<u32>,
    resources: Vec<String>,
    lb: Option<serde_json::Value>,
    nodes: Vec<NodeEntry>,
}

pub async fn dev(args: DevArgs) -> Result<(), NodeError> {
    match args.command {
        Some(DevCmd::Token { dir, sub, groups, ttl, aud, issued_ago }) => {
            let backdate = issued_ago.map(Into::into).unwrap_or_default();
            let token = issuer::mint_at(&dir, &sub, &groups, ttl.into(), &aud, backdate)?;
            println!("{token}");
            return Ok(());
        }
        Some(DevCmd::Issuer { dir }) => return issuer::serve(&dir).await,
        Some(DevCmd::DemoApi(api)) => return demo_api::run(api).await,
        None => {}
    }
    if args.nodes == 0 || args.nodes > 9 {
        return Err(NodeError::Dev(format!("--nodes must be between 1 and 9, got {}", args.nodes)));
    }
    std::fs::create_dir_all(&args.dir).map_err(|e| NodeError::io(format!("create {}", args.dir.display()), e))?;
    let dir =
        std::fs::canonicalize(&args.dir).map_err(|e| NodeError::io(format!("resolve {}", args.dir.display()), e))?;
    let _ = PLAYGROUND.set(dir.clone());
    eprintln!(
        "WARNING: `portcullis dev` is a development playground: throwaway certificates, keys on disk, loopback only."
    );

    // Missing HAProxy is a usage problem: say so before anything starts.
    let haproxy = if args.lb { Some(lb::find_haproxy()?) } else { None };
    let configs = prepare(&dir, args.nodes, Doors { ssh: args.ssh, http: args.http })?;
    args.hosts.apply(&dir, &configs)?;
    let exe = std::env::current_exe().map_err(|e| NodeError::io("locate the portcullis binary", e))?;
    let issuer_info = issuer::IssuerInfo::load(&dir)?;
    let mut issuer_child = spawn_logged(&exe, &dir, "issuer", &["dev", "issuer", "--dir"], &dir)?;
    if let Err(e) = wait_listening(&issuer_info.listen).await {
        let _ = issuer_child.kill().await;
        return Err(e);
    }
    let mut children = Vec::new();
    for (id, path) in &configs {
        children.push(args.hosts.spawn_node(&exe, &dir, *id, path)?);
    }
    let first = configs.first().map(|(_, p)| p.clone()).ok_or_else(|| NodeError::Dev("no nodes".into()))?;
    let first = NodeConfig::load(&first, std::iter::empty())?;
    let endpoint = format!("https://{}", first.listen.admin);
    let ca = std::fs::read(dir.join("ca.pem")).map_err(|e| NodeError::io("read ca.pem", e))?;

    let admin_token =
        issuer::mint(&dir, "portcullis-dev", &["admin".to_string()], Duration::from_secs(600), "portcullis")?;
    let ready = form_cluster(&endpoint, &ca, &admin_token, args.nodes).await;
    let entries = configs
        .iter()
        .zip(children.iter())
        .map(|((id, path), child)| {
            let c = NodeConfig::load(path, std::iter::empty())?;
            Ok(NodeEntry {
                id: *id,
                pid: child.id(),
                admin: format!("https://{}", c.listen.admin),
                pg: c.listen.pg.clone(),
                ssh: c.listen.ssh.clone(),
                http: c.listen.http.clone(),
                console: c.console_url(),
                ops: format!("http://{}", c.listen.ops),
                raft: c.listen.raft.clone(),
                data_dir: c.data_dir.clone(),
                config: path.clone(),
            })
        })
        .collect::<Result<Vec<_>, NodeError>>()?;
    let mut pg_info = None;
    let mut resources = vec![];
    if args.postgres && ready.is_ok() {
        match setup_postgres(&dir, &endpoint, &ca, &admin_token).await {
            Ok(info) => {
                resources.push("demo".to_string());
                pg_info = Some(info);
            }
            Err(e) => {
                stop_all(&mut children).await;
                let _ = issuer_child.kill().await;
                return Err(e);
            }
        }
    }
    let mut sshd_info = None;
    if args.ssh && ready.is_ok() {
        match setup_ssh(&dir, &endpoint, &ca, &admin_token).await {
            Ok(info) => {
                resources.push("demo-ssh".to_string());
                sshd_info = Some(info);
            }
            Err(e) => {
                stop_all(&mut children).await;
                let _ = issuer_child.kill().await;
                stop_targets(pg_info.as_ref(), None, None);
                return Err(e);
            }
        }
    }
    let mut api_info = None;
    if args.http && ready.is_ok() {
        match http_api::setup(&dir, &endpoint, &ca, &admin_token).await {
            Ok(info) => {
                resources.push("demo-api".to_string());
                api_info = Some(info);
            }
            Err(e) => {
                stop_all(&mut children).await;
                let _ = issuer_child.kill().await;
                stop_targets(pg_info.as_ref(), sshd_info.as_ref(), None);
                return Err(e);
            }
        }
    }
    let mut lb_info = None;
    if let (Some(haproxy), Ok(())) = (&haproxy, &ready) {
        match start_lb(&dir, haproxy, &configs).await {
            Ok((child, addrs)) => {
                let mut json = serde_json::to_value(&addrs).map_err(|e| NodeError::Dev(e.to_string()))?;
                if let Some(obj) = json.as_object_mut() {
                    obj.insert("pid".into(), child.id().into());
                    obj.insert(
                        "config".into(),
                        serde_json::Value::String(dir.join("haproxy.cfg").display().to_string()),
                    );
                }
                lb_info = Some(json);
                children.push(child);
            }
            Err(e) => {
                stop_all(&mut children).await;
                let _ = issuer_child.kill().await;
                stop_targets(pg_info.as_ref(), sshd_info.as_ref(), api_info.as_ref());
                return Err(e);
            }
        }
    }
    let file = ClusterFile {
        postgres: pg_info.as_ref().map(|p| {
            serde_json::json!({"addr": format!("127.0.0.1:{}", p.port), "data_dir": p.data_dir, "log": dir.join("postgres.log")})
        }),
        sshd: sshd_info.as_ref().map(|s| {
            serde_json::json!({
                "addr": format!("127.0.0.1:{}", s.port),
                "dir": s.dir,
                "log": s.log,
                "user": s.user,
                "pid": s.pid,
                "client_key": s.dir.join("client_key"),
                "host_key": s.host_key,
            })
        }),
        http_api: api_info.as_ref().map(http_api::ApiInfo::json),
        ca: dir.join("ca.pem"),
        issuer: Some(issuer_info.issuer.clone()),
        issuer_pid: issuer_child.id(),
        resources,
        lb: lb_info,
        nodes: entries,
    };
    let json = serde_json::to_string_pretty(&file).map_err(|e| NodeError::Dev(e.to_string()))?;
    std::fs::write(dir.join("cluster.json"), json).map_err(|e| NodeError::io("write cluster.json", e))?;

    children.push(issuer_child);
    if let Err(e) = ready {
        stop_all(&mut children).await;
        return Err(e);
    }
    print_next_steps(&dir, &endpoint, &file);
    if let Some(lb) = &file.lb {
        println!(
            "HAProxy in front (only nodes whose /readyz is 200 get traffic): Postgres {}, SSH {}, HTTPS {}, admin https://{}; config {}",
            lb["pg"].as_str().unwrap_or("-"),
            lb["ssh"].as_str().unwrap_or("-"),
            lb["http"].as_str().unwrap_or("-"),
            lb["admin"].as_str().unwrap_or("-"),
            dir.join("haproxy.cfg").display()
        );
    }
    if let Some(info) = &pg_info {
        print_postgres_steps(&dir, &file, info);
    }
    if let Some(info) = &sshd_info {
        print_ssh_steps(&dir, &file, info);
    }
    if let Some(info) = &api_info {
        http_api::print_steps(&dir, file.nodes.first().and_then(|n| n.http.as_deref()), info);
    }
    if args.detach {
        // The nodes outlive us; their pids are in cluster.json.
        return Ok(());
    }
    eprintln!("Press Ctrl-C to stop the cluster.");
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("stopping nodes...");
    stop_all(&mut children).await;
    stop_targets(pg_info.as_ref(), sshd_info.as_ref(), api_info.as_ref());
    Ok(())
}

/// Stop the playground's throwaway backends, whichever were started.
fn stop_targets(pg: Option<&postgres::PgInfo>, sshd: Option<&sshd::SshdInfo>, api: Option<&http_api::ApiInfo>) {
    if let Some(info) = pg {
        postgres::stop(info);
    }
    if let Some(info) = sshd {
        sshd::stop(info);
    }
    if let Some(info) = api {
        http_api::stop(info);
    }
}

/// Render the HAProxy config for the nodes, check it, start HAProxy and wait until it
/// listens.
async fn start_lb(dir: &Path, haproxy: &Path, configs: &[(u64, PathBuf)]) -> Result<(Child, lb::LbAddrs), NodeError> {
    let nodes = configs
        .iter()
        .map(|(id, path)| Ok((*id, NodeConfig::load(path, std::iter::empty())?)))
        .collect::<Result<Vec<_>, NodeError>>()?;
    let serves_pg = nodes.iter().any(|(_, c)| c.listen.pg.is_some());
    let serves_ssh = nodes.iter().any(|(_, c)| c.listen.ssh.is_some());
    let serves_http = nodes.iter().any(|(_, c)| c.listen.http.is_some());
    let addrs = lb::LbAddrs {
        pg: if serves_pg { Some(format!("127.0.0.1:{}", free_port()?)) } else { None },
        ssh: if serves_ssh { Some(format!("127.0.0.1:{}", free_port()?)) } else { None },
        http: if serves_http { Some(format!("127.0.0.1:{}", free_port()?)) } else { None },
        admin: format!("127.0.0.1:{}", free_port()?),
        stats_socket: dir.join("haproxy.sock"),
    };
    let config = dir.join("haproxy.cfg");
    std::fs::write(&config, lb::render(&nodes, &addrs)?).map_err(|e| NodeError::io("write haproxy.cfg", e))?;
    lb::check(haproxy, &config)?;
    let mut child = spawn_logged(haproxy, dir, "haproxy", &["-db", "-f"], &config)?;
    if let Err(e) = wait_listening(&addrs.admin).await {
        let _ = child.kill().await;
        return Err(e);
    }
    Ok((child, addrs))
}

/// Write CA, certificates, key and node configs unless they exist; return each node's config path.
/// Which doors besides Postgres the playground's nodes open (each one's listener is
/// another port to find; parallel playgrounds on one machine compete for them).
struct Doors {
    ssh: bool,
    http: bool,
}

fn prepare(dir: &Path, nodes: u64, doors: Doors) -> Result<Vec<(u64, PathBuf)>, NodeError> {
    let existing: Vec<(u64, PathBuf)> =
        (1..=nodes).map(|id| (id, dir.join(format!("node{id}.toml")))).filter(|(_, p)| p.exists()).collect();
    if existing.len() as u64 == nodes {
        eprintln!("reusing the playground in {}", dir.display());
        return Ok(existing);
    }
    if !existing.is_empty() {
        return Err(NodeError::Dev(format!(
            "{} holds {} of {nodes} node configs; remove the directory or pass the node count it was created with",
            dir.display(),
            existing.len()
        )));
    }
    certs::ensure_ca(dir)?;
    issuer::ensure_key(dir)?;
    let issuer_info = issuer::IssuerInfo::for_port(free_port()?);
    issuer_info.save(dir)?;
    let key_path = dir.join("data.key");
    if !key_path.exists() {
        let key = portcullis_raft::crypto::DataKey::generate_base64()?;
        std::fs::write(&key_path, format!("{key}\n")).map_err(|e| NodeError::io("write data.key", e))?;
    }
    let mut listens = Vec::new();
    for _ in 1..=nodes {
        let [raft, admin, ops, pg, console] = [free_port()?, free_port()?, free_port()?, free_port()?, free_port()?];
        let ssh = if doors.ssh { Some(free_port()?) } else { None };
        let http = if doors.http { Some(free_port()?) } else { None };
        listens.push(Listen {
            raft: format!("127.0.0.1:{raft}"),
            admin: format!("127.0.0.1:{admin}"),
            ops: format!("127.0.0.1:{ops}"),
            pg: Some(format!("127.0.0.1:{pg}")),
            ssh: ssh.map(|p| format!("127.0.0.1:{p}")),
            http: http.map(|p| format!("127.0.0.1:{p}")),
            console: Some(format!("127.0.0.1:{console}")),
        });
    }
    let peers: Vec<Peer> =
        listens.iter().zip(1u64..).map(|(l, id)| Peer { id, raft: l.raft.clone(), admin: l.admin.clone() }).collect();
    let mut out = Vec::new();
    for (listen, id) in listens.into_iter().zip(1u64..) {
        certs::issue_node_cert(dir, id)?;
        let config = NodeConfig {
            id,
            data_dir: dir.join(format!("node{id}")),
            key_file: key_path.clone(),
            listen,
            advertise: Default::default(),
            tls: portcullis_raft::network::tls::TlsPaths {
                ca: dir.join("ca.pem"),
                cert: dir.join(format!("node{id}.pem")),
                key: dir.join(format!("node{id}.key")),
            },
            peers: peers.clone(),
            raft: RaftTuning::default(),
            identity: Some(portcullis_proxy::identity::IdentityConfig {
                issuer: issuer_info.issuer.clone(),
                insecure_dev_issuer: true,
                refresh_min_interval_secs: 1,
                ..Default::default()
            }),
            authz: Default::default(),
            shutdown: Default::default(),
            limits: Default::default(),
            http: Default::default(),
            console: Default::default(),
        };
        let text = toml::to_string_pretty(&config).map_err(|e| NodeError::Dev(e.to_string()))?;
        let path = dir.join(format!("node{id}.toml"));
        std::fs::write(&path, text).map_err(|e| NodeError::io(format!("write {}", path.display()), e))?;
        out.push((id, path));
    }
    Ok(out)
}

/// A free loopback port for a listener, chosen below the kernel's ephemeral range
/// (32768+): a port from that range can be taken by some outgoing connection while
/// its node is down, and the node could not bind it again on restart.
fn free_port() -> Result<u16, NodeError> {
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..500 {
        let port = 20_000 + random_u16() % 12_000;
        if handed.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() && reserve_across_processes(port) {
            handed.push(port);
            return Ok(port);
        }
    }
    Err(NodeError::Dev("no free port found in 20000-31999 on 127.0.0.1".into()))
}

/// This process's playground directory: what its port claims name.
static PLAYGROUND: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Claim `port` for this playground against other playgrounds on the machine: a
/// port that binds now may be a stopped node's (a test kills and restarts nodes), and
/// another playground starting meanwhile must not take it. A claim is a file in the
/// temp dir, created exclusively, naming the playground directory. It is given up
/// when that directory is gone (a test's playground lives in a temporary directory
/// removed at its end) or after a day; without the first rule, a day of test runs
/// used up the whole range.
fn reserve_across_processes(port: u16) -> bool {
    let dir = std::env::temp_dir().join("portcullis-dev-ports");
    if std::fs::create_dir_all(&dir).is_err() {
        return true;
    }
    let claim = dir.join(port.to_string());
    if claim_is_stale(&claim) {
        let _ = std::fs::remove_file(&claim);
    }
    let Ok(mut file) = std::fs::OpenOptions::new().write(true).create_new(true).open(&claim) else {
        return false;
    };
    if let Some(owner) = PLAYGROUND.get() {
        use std::io::Write;
        let _ = file.write_all(owner.as_os_str().as_encoded_bytes());
    }
    true
}

/// A claim older than a day, or whose playground directory no longer exists. A claim
/// naming no directory (being written, or from an older version) stands for its day.
fn claim_is_stale(claim: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(claim) else { return false };
    if meta.modified().ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age > Duration::from_secs(24 * 3600)) {
        return true;
    }
    match std::fs::read(claim) {
        Ok(owner) if !owner.is_empty() => !Path::new(&*String::from_utf8_lossy(&owner)).exists(),
        _ => false,
    }
}

fn random_u16() -> u16 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 2];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u16::from_be_bytes(b)
}

fn spawn_node(exe: &Path, dir: &Path, id: u64, config: &Path) -> Result<Child, NodeError> {
    spawn_logged(exe, dir, &format!("node{id}"), &["run", "--config"], config)
}

/// Start `exe args.. last` with stdout and stderr appended to `DIR/<name>.log`.
fn spawn_logged(exe: &Path, dir: &Path, name: &str, args: &[&str], last: &Path) -> Result<Child, NodeError> {
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| NodeError::io(format!("open {}", log_path.display()), e))?;
    let log2 = log.try_clone().map_err(|e| NodeError::io("clone log handle", e))?;
    Command::new(exe)
        .args(args)
        .arg(last)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .spawn()
        .map_err(|e| NodeError::io(format!("start {name}"), e))
}

/// Wait until something accepts connections on `addr`.
async fn wait_listening(addr: &str) -> Result<(), NodeError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(NodeError::Dev(format!("nothing listens on {addr} after 10 s; see the logs in the playground dir")))
}

/// Initialize (first run) and wait until every node serves.
async fn form_cluster(endpoint: &str, ca: &[u8], token: &str, nodes: u64) -> Result<(), NodeError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut initialized = false;
    let mut last = String::from("no answer yet");
    while tokio::time::Instant::now() < deadline {
        match portcullis_api::client::AdminClient::connect(endpoint, Some(ca), Some(token.to_string())).await {
            Ok(client) => {
                let init_error = if initialized {
                    None
                } else {
                    match client.init(vec![]).await {
                        Ok(()) => None,
                        Err(e) if e.to_string().contains("already initialized") => None,
                        Err(e) => Some(e.to_string()),
                    }
                };
                initialized = init_error.is_none();
                match client.cluster_status().await {
                    _ if init_error.is_some() => last = init_error.unwrap_or_default(),
                    Ok(s) => {
                        let serving = s.nodes.iter().filter(|n| n.serving).count() as u64;
                        if s.leader.is_some() && serving == nodes {
                            return Ok(());
                        }
                        last = format!("leader {:?}, {serving} of {nodes} nodes serving", s.leader);
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(NodeError::Dev(format!(
        "cluster did not become ready within 30 s: {last}; see node*.log in the playground dir"
    )))
}

async fn stop_all(children: &mut [Child]) {
    for child in children.iter() {
        if let Some(pid) = child.id() {
            // SIGTERM lets the node shut down cleanly; kill() below is the fallback.
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
    }
    for child in children.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
}

fn print_next_steps(dir: &Path, endpoint: &str, file: &ClusterFile) {
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "portcullis".into());
    println!("Portcullis playground is up: {} nodes in {}", file.nodes.len(), dir.display());
    for n in &file.nodes {
        println!(
            "  node {}  pid {:>7}  admin {}  ops {}  console {}",
            n.id,
            n.pid.map(|p| p.to_string()).unwrap_or_default(),
            n.admin,
            n.ops,
            n.console.as_deref().unwrap_or("off")
        );
    }
    println!();
    println!("Try, in another terminal:");
    println!("  export PORTCULLIS_ENDPOINT={endpoint} PORTCULLIS_CA={}", dir.join("ca.pem").display());
    println!(
        "  export PORTCULLIS_TOKEN=$({exe} dev token --dir {} --sub alice --groups admin,approvers)",
        dir.display()
    );
    println!("  {exe} cluster status");
    if let Some(console) = file.nodes.first().and_then(|n| n.console.as_deref()) {
        println!(
            "  open {console}/approvals    # the web console (trust {} in the browser); sign in as bob, groups approvers",
            dir.join("ca.pem").display()
        );
    }
    println!("  curl -s {}/readyz", file.nodes.first().map(|n| n.ops.as_str()).unwrap_or(""));
    println!("  kill -9 <pid of the leader>; {exe} cluster status     # a survivor takes over");
    println!("  {exe} run --config {}      # restart node 1 by hand", dir.join("node1.toml").display());
    println!("Details of every node: {}", dir.join("cluster.json").display());
}

/// Start the throwaway Postgres, seed it, register `demo` and apply the demo policy.
async fn setup_postgres(dir: &Path, endpoint: &str, ca: &[u8], token: &str) -> Result<postgres::PgInfo, NodeError> {
    let info = postgres::ensure_running(dir, free_port()?)?;
    postgres::seed(&info)?;
    let client = portcullis_api::client::AdminClient::connect(endpoint, Some(ca), Some(token.to_string()))
        .await
        .map_err(|e| NodeError::Dev(e.to_string()))?;
    use portcullis_api::proto::{AuditMode, Protocol, PutResourceRequest};
    let resource = PutResourceRequest {
        name: "demo".into(),
        protocol: Protocol::Postgres as i32,
        address: format!("127.0.0.1:{}", info.port),
        username: Some("demo_app".into()),
        secret: Some(info.app_password.clone()),
        audit: AuditMode::Strict as i32,
        options: [("database".to_string(), "demo".to_string())].into_iter().collect(),
        logins: vec![],
    };
    client.put_resource(resource).await.map_err(|e| NodeError::Dev(format!("register resource demo: {e}")))?;
    client
        .put_policy("demo", postgres::DEMO_POLICY)
        .await
        .map_err(|e| NodeError::Dev(format!("apply the demo policy: {e}")))?;
    Ok(info)
}

fn print_postgres_steps(dir: &Path, file: &ClusterFile, info: &postgres::PgInfo) {
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "portcullis".into());
    let Some(pg) = file.nodes.first().and_then(|n| n.pg.clone()) else { return };
    let (host, port) = pg.rsplit_once(':').unwrap_or(("127.0.0.1", "5432"));
    println!();
    println!("Postgres resource `demo` (backend 127.0.0.1:{}) with the demo policy:", info.port);
    println!("  engineers may SELECT; INSERT/UPDATE/DELETE wait for one approver; TRUNCATE and DDL are denied;");
    println!("  admin functions (pg_terminate_backend, dblink...) and dynamic SQL (table_to_xml...) are denied;");
    println!("  COPY ... TO STDOUT, psql \\copy and pg_dump work, masked;");
    println!("  columns email and ssn are masked, also in anything computed from them (reverse(email)...).");
    println!("Connect as alice (an engineer):");
    println!(
        "  PGPASSWORD=$({exe} dev token --dir {} --sub alice --groups engineers) psql \"host={host} port={port} dbname=demo user=alice sslmode=require\"",
        dir.display()
    );
    println!("  demo=> SELECT * FROM customers LIMIT 3;      -- email and ssn come back masked");
    println!("  demo=> DELETE FROM customers WHERE id = 12;  -- waits for approval");
    println!("Approve it as bob (an approver), from another terminal:");
    println!(
        "  PORTCULLIS_TOKEN=$({exe} dev token --dir {} --sub bob --groups approvers) {exe} approvals list --pending",
        dir.display()
    );
    println!("  ... {exe} approvals approve <id>");
}

/// Start the throwaway sshd, register it as `demo-ssh` and apply its demo policy.
async fn setup_ssh(dir: &Path, endpoint: &str, ca: &[u8], token: &str) -> Result<sshd::SshdInfo, NodeError> {
    let info = sshd::ensure_running(dir, free_port()?)?;
    let registered = register_ssh(&info, endpoint, ca, token).await;
    if registered.is_err() {
        sshd::stop(&info);
    }
    registered.map(|()| info)
}

async fn register_ssh(info: &sshd::SshdInfo, endpoint: &str, ca: &[u8], token: &str) -> Result<(), NodeError> {
    let client = portcullis_api::client::AdminClient::connect(endpoint, Some(ca), Some(token.to_string()))
        .await
        .map_err(|e| NodeError::Dev(e.to_string()))?;
    use portcullis_api::proto::{AuditMode, Protocol, PutResourceRequest};
    let resource = PutResourceRequest {
        name: "demo-ssh".into(),
        protocol: Protocol::Ssh as i32,
        address: format!("127.0.0.1:{}", info.port),
        username: Some(info.user.clone()),
        secret: Some(info.client_key.clone()),
        audit: AuditMode::Strict as i32,
        options: [("host_key".to_string(), info.host_key.clone())].into_iter().collect(),
        logins: vec![],
    };
    client.put_resource(resource).await.map_err(|e| NodeError::Dev(format!("register resource demo-ssh: {e}")))?;
    client
        .put_policy("demo-ssh", sshd::DEMO_SSH_POLICY)
        .await
        .map_err(|e| NodeError::Dev(format!("apply the demo-ssh policy: {e}")))?;
    Ok(())
}

fn print_ssh_steps(dir: &Path, file: &ClusterFile, info: &sshd::SshdInfo) {
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "portcullis".into());
    let Some(door) = file.nodes.first().and_then(|n| n.ssh.clone()) else { return };
    let (host, port) = door.rsplit_once(':').unwrap_or(("127.0.0.1", "22"));
    let token =
        |sub: &str, groups: &str| format!("$({exe} dev token --dir {} --sub {sub} --groups {groups})", dir.display());
    let ssh = format!("ssh -p {port} -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no demo-ssh@{host}");
    println!();
    println!(
        "SSH resource `demo-ssh` (OpenSSH on 127.0.0.1:{}, logins land in user {}) with the demo-ssh policy:",
        info.port, info.user
    );
    println!("  engineers may run read-only pipelines (ls, cat, grep, tail, wc, ps, df ... | sort | uniq);");
    println!("  rm, mv, cp, kill, chmod, tee, find ... and interactive shells wait for one approver;");
    println!("  shutdown, reboot, mkfs*, dd are denied; scp and sftp are allowed; port forwarding is denied.");
    println!("Run commands as alice (an engineer); her password is her token: paste it at the prompt, or");
    println!("  export SSHPASS={}", token("alice", "engineers"));
    println!("  sshpass -e {ssh} 'ls -la'    # allowed");
    println!("  sshpass -e {ssh} 'grep ERROR logs/app.log | wc -l'    # allowed");
    println!("  sshpass -e {ssh} 'rm notes.txt'    # waits for approval");
    println!("Approve it as bob (an approver), from another terminal:");
    println!("  PORTCULLIS_TOKEN={} {exe} approvals list --pending", token("bob", "approvers"));
    println!("  ... {exe} approvals approve <id>");
    println!("The host itself, bypassing the gateway (for comparison):");
    println!(
        "  ssh -i {} -p {} -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no {}@127.0.0.1 'ls -la'",
        info.dir.join("client_key").display(),
        info.port,
        info.user
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::claim_is_stale;

    #[test]
    fn a_port_claim_is_given_up_once_its_playground_directory_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let playground = dir.path().join("playground");
        std::fs::create_dir(&playground).unwrap();
        let claim = dir.path().join("20001");
        std::fs::write(&claim, playground.as_os_str().as_encoded_bytes()).unwrap();
        assert!(!claim_is_stale(&claim), "its playground is still there");
        std::fs::remove_dir(&playground).unwrap();
        assert!(claim_is_stale(&claim), "its playground is gone");
        // A claim naming nothing (being written, or an older one) stands.
        std::fs::write(&claim, b"").unwrap();
        assert!(!claim_is_stale(&claim));
        assert!(!claim_is_stale(&dir.path().join("no-such-claim")));
    }
}
