//! # portcullis-chaos
//!
//! Jepsen-style chaos for Portcullis (issues 5, 15 and 16): real node processes from a
//! `portcullis dev --postgres --ssh --http` playground, real faults, a recorded
//! history, and a checker against the backends' own ground truth (the Postgres
//! database and its statement log; the SSH host's own file; the demo HTTP API's
//! request log).
//!
//! ## Layout
//! - `netns`: one network namespace per node (root only), iptables link rules.
//! - `cluster`: the playground (processes, admin CLI, teardown).
//! - `relay`, `links`: delaying TCP relays on node-to-node raft links.
//! - `backend`: the backend Postgres (ground-truth tables, forwarder).
//! - `host`: the SSH host (its log of the SSH workload, forwarder).
//! - `api`: the demo HTTP API (its request log, forwarder).
//! - `workload`: long-lived sessions per node on `ledger` and `gated`.
//! - `ssh_load`: long-lived SSH connections per node running logged commands.
//! - `http_load`: long-lived HTTPS connections per node sending logged POSTs.
//! - `door_load`: what those two share (connect all before the nemesis, reconnect).
//! - `approver`: approvers deciding gated statements through random nodes.
//! - `nemesis`: the seeded fault schedule and its runner.
//! - `history`: `RUN_DIR/history.jsonl`.
//! - `checker`: invariants; violations go to `RUN_DIR/violations.jsonl`.
//!
//! Exit codes: 0 no violations, 1 violations found, 2 usage error, 3 the harness
//! itself could not run.

mod api;
mod approver;
mod backend;
mod checker;
mod cluster;
mod door_load;
mod history;
mod host;
mod http_load;
mod links;
mod nemesis;
mod netns;
mod relay;
mod rng;
mod ssh_load;
use portcullis_chaos::tls;
mod workload;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use cluster::Playground;
use history::History;
use links::Links;
use nemesis::Nemesis;
use netns::Hosts;

#[derive(Parser, Debug)]
#[command(name = "portcullis-chaos", version, about = "Chaos harness and checker for Portcullis")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// One run: playground, workload, nemesis, heal, check.
    Run(RunArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Which faults to inject.
    #[arg(long, value_enum)]
    nemesis: Nemesis,
    /// How long the workload and nemesis run (before healing and checking).
    #[arg(long, default_value = "60s")]
    duration: humantime::Duration,
    /// Seed of the fault schedule.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Cluster size.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Concurrent sessions per node.
    #[arg(long, default_value_t = 3)]
    clients: usize,
    /// Long-lived SSH connections per node running commands through its SSH door
    /// (0: no SSH workload, and the playground runs without `--ssh`).
    #[arg(long, default_value_t = 1)]
    ssh_clients: usize,
    /// Long-lived HTTPS connections per node sending POSTs through its HTTP door to the
    /// demo API (0: no HTTP workload, and the playground runs without `--http`).
    #[arg(long, default_value_t = 1)]
    http_clients: usize,
    /// Audit mode of resource `demo-api`. `fast` (records written after the request was
    /// relayed) is a planted fault for the HTTP checks: with `--unsafe-no-lease` a node
    /// cut off keeps relaying requests whose records never commit, and the checker must
    /// say so (`http-unaudited-request`, `http-without-lease`).
    #[arg(long, value_enum, default_value_t = Audit::Strict)]
    http_audit: Audit,
    /// Audit mode of resource `demo-ssh`. `fast` (records written after the command
    /// ran) is a planted fault for the SSH checks: with `--unsafe-no-lease` a node cut
    /// off keeps running commands whose records never commit, and the checker must say
    /// so (`ssh-unaudited-command`, `ssh-without-lease`).
    #[arg(long, value_enum, default_value_t = Audit::Strict)]
    ssh_audit: Audit,
    /// Channels per SSH connection (`[limits] ssh_max_channels`), written into every
    /// node's config before the run (the nodes are restarted with it); 0 (the default)
    /// keeps the playground's (16 open at once). Before the door freed the channels the
    /// server closed, a connection outlived only 16 commands (CHAOS.md, "Bugs found"),
    /// which is what this was for.
    #[arg(long, default_value_t = 0)]
    ssh_max_channels: usize,
    /// Restart every node with the planted fault (`--unsafe-no-lease`): the checker
    /// must then report violations.
    #[arg(long)]
    unsafe_no_lease: bool,
    /// Keep the run directory here (default: a temp dir, removed after a clean run).
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Run the nodes on loopback even as root (no network nemeses).
    #[arg(long)]
    no_netns: bool,
}

/// The playground's policy: replaces the demo policy (same name) so that engineers
/// may read and insert into `ledger` without review, inserts into `gated` wait for
/// one approver (6 s, so some expire); DDL and TRUNCATE stay denied.
const CHAOS_POLICY: &str = r#"name: demo
rules:
  - name: engineers-read
    match: { groups: [engineers], resources: [demo], kinds: [select, show, set, transaction, explain] }
    action: allow
  - name: chaos-ledger
    match: { groups: [engineers], resources: [demo], kinds: [select, insert], tables: [ledger] }
    action: allow
  - name: chaos-gated
    match: { groups: [engineers], resources: [demo], kinds: [insert], tables: [gated] }
    action: review
    reason: "chaos: gated inserts need one approver"
    approvers: { groups: [approvers], count: 1 }
    timeout: 6s
  - name: no-truncate-or-ddl
    match: { resources: [demo], kinds: [truncate, ddl] }
    action: deny
    reason: "TRUNCATE, DROP and other DDL are never allowed on demo"
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Audit {
    Strict,
    Fast,
}

impl Audit {
    /// The resource's `audit` field.
    fn word(self) -> &'static str {
        match self {
            Audit::Strict => "strict",
            Audit::Fast => "fast",
        }
    }
}

/// The playground's SSH policy, replaced (same name) by one that lets engineers run
/// exactly the workload's command line (`echo <op> $(date +%s%3N) >> <log>`: the
/// programs echo and date, writing by redirection) and nothing else.
const CHAOS_SSH_POLICY: &str = r#"name: demo-ssh
rules:
  - name: chaos-ssh-log
    match: { groups: [engineers], resources: [demo-ssh], kinds: [exec], only_commands: [echo, date] }
    action: allow
"#;

/// The playground's HTTP policy, replaced (same name) by one that lets engineers send
/// exactly the workload's requests (`POST /echo/chaos-http-...`) without review; every
/// other request is denied by default.
const CHAOS_HTTP_POLICY: &str = r#"name: demo-api
rules:
  - name: chaos-http-echo
    match: { groups: [engineers], resources: [demo-api], kinds: [post], paths: ["/echo/chaos-http-*"] }
    action: allow
"#;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Cmd::Run(args) = cli.command;
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            r = run(args) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted (Ctrl-C); tearing down")),
        }
    });
    // Dropping the runtime drops every task and with them the playground, whose
    // Drop kills the nodes and stops Postgres.
    drop(runtime);
    match result {
        Ok(summary) => {
            println!("{summary}");
            let violations = summary.get("violations").and_then(Value::as_u64).unwrap_or(1);
            if violations == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn run_dir(args: &RunArgs) -> anyhow::Result<(PathBuf, bool)> {
    if let Some(dir) = &args.keep {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        return Ok((std::fs::canonicalize(dir)?, true));
    }
    let dir = std::env::temp_dir().join(format!(
        "portcullis-chaos-{}-{}-{}",
        args.nemesis.word(),
        args.seed,
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok((dir, false))
}

async fn run(args: RunArgs) -> anyhow::Result<Value> {
    let (dir, keep) = run_dir(&args)?;
    let duration: Duration = args.duration.into();
    eprintln!("chaos: run dir {}", dir.display());
    let why_not = if args.no_netns { Some("--no-netns".to_string()) } else { netns::unavailable() };
    let hosts = match &why_not {
        None => {
            let n = args.nodes;
            let hosts = tokio::task::spawn_blocking(move || Hosts::create(n)).await??;
            eprintln!("chaos: nodes in network namespaces on bridge {} ({})", hosts.bridge, hosts.bridge_ip);
            Some(hosts)
        }
        Some(why) => {
            eprintln!("chaos: skipped: partition, leader-isolation, flaky, slow: {why}; nodes on loopback");
            None
        }
    };
    let netns = hosts.is_some();
    let bin = cluster::portcullis_bin()?;
    eprintln!("chaos: starting a {}-node playground with Postgres", args.nodes);
    let play_dir = dir.join("playground");
    let nodes = args.nodes;
    let doors = cluster::Doors { ssh: args.ssh_clients > 0, http: args.http_clients > 0 };
    let pg =
        Arc::new(tokio::task::spawn_blocking(move || Playground::start(&play_dir, &bin, nodes, hosts, doors)).await??);

    let outcome = exercise(&args, &dir, &pg, duration, netns, why_not).await;
    pg.teardown();
    let summary = outcome?;
    let violations = summary.get("violations").and_then(Value::as_u64).unwrap_or(0);
    if violations == 0 && !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(summary)
}

/// What `setup` starts that must outlive the checks.
struct Setup {
    /// The backend Postgres on the bridge (nodes reach it through this).
    _backend: Option<relay::Relay>,
    /// The SSH host on the bridge.
    _host: Option<relay::Relay>,
    /// The demo HTTP API on the bridge.
    _api: Option<relay::Relay>,
    links: Option<Links>,
}

async fn apply_policy(pg: &Playground, dir: &Path, file: &str, text: &str) -> anyhow::Result<()> {
    let policy = dir.join(file);
    std::fs::write(&policy, text)?;
    let path = policy.display().to_string();
    let out = pg.cli(1, &["policy", "apply", "-f", &path], Duration::from_secs(20)).await?;
    if !out.status.success() {
        bail!("policy apply -f {file} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Backends, policies and (planted fault, relays) node setup, then a converged cluster.
async fn setup(args: &RunArgs, dir: &Path, pg: &Arc<Playground>) -> anyhow::Result<Setup> {
    backend::prepare(pg).await?;
    let forwarder = backend::expose(pg, dir).await?;
    apply_policy(pg, dir, "chaos-policy.yaml", CHAOS_POLICY).await?;
    let host_forwarder = if pg.sshd.is_some() {
        host::prepare(pg).await?;
        apply_policy(pg, dir, "chaos-ssh-policy.yaml", CHAOS_SSH_POLICY).await?;
        host::expose(pg, dir, args.ssh_audit.word()).await?
    } else {
        None
    };
    let api_forwarder = if pg.api.is_some() {
        apply_policy(pg, dir, "chaos-http-policy.yaml", CHAOS_HTTP_POLICY).await?;
        api::expose(pg, dir, args.http_audit.word()).await?
    } else {
        None
    };
    let mut restart = false;
    if pg.sshd.is_some() && args.ssh_max_channels > 0 {
        eprintln!("chaos: restarting every node with ssh_max_channels = {}", args.ssh_max_channels);
        for n in &pg.nodes {
            set_ssh_max_channels(&n.config, args.ssh_max_channels)?;
        }
        restart = true;
    }
    if args.unsafe_no_lease {
        eprintln!("chaos: restarting every node with --unsafe-no-lease (the planted fault)");
        pg.set_unsafe_no_lease();
        restart = true;
    }
    if restart {
        for id in pg.ids() {
            pg.stop(id).await;
        }
        for id in pg.ids() {
            pg.restart(id)?;
        }
    }
    pg.wait_all_serving(Duration::from_secs(60)).await?;
    let links = if args.nemesis.needs_relays() && pg.hosts.is_some() {
        eprintln!("chaos: node-to-node raft links through delaying relays");
        let links = Links::start(pg).await?;
        pg.wait_all_serving(Duration::from_secs(60)).await?;
        Some(links)
    } else {
        None
    };
    // Equal applied indexes: the chaos policy is in force on every node.
    checker::converge::applied(pg, Duration::from_secs(20)).await.map_err(|e| anyhow!("before the run: {e}"))?;
    Ok(Setup { _backend: forwarder, _host: host_forwarder, _api: api_forwarder, links })
}

/// Rewrite the `ssh_max_channels = N` line of a node config's `[limits]`.
fn set_ssh_max_channels(config: &Path, n: usize) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config).with_context(|| format!("read {}", config.display()))?;
    let line = format!("ssh_max_channels = {n}");
    let mut found = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("ssh_max_channels") {
                found = true;
                line.clone()
            } else {
                l.to_string()
            }
        })
        .collect();
    if !found {
        bail!("{} has no ssh_max_channels line (portcullis dev writes every limit)", config.display());
    }
    std::fs::write(config, out.join("\n") + "\n").with_context(|| format!("write {}", config.display()))
}

async fn exercise(
    args: &RunArgs,
    dir: &Path,
    pg: &Arc<Playground>,
    duration: Duration,
    netns: bool,
    why_not: Option<String>,
) -> anyhow::Result<Value> {
    // The forwarders must outlive the checks (nodes reach the backends through them).
    let mut set = setup(args, dir, pg).await?;
    let links = set.links.take().map(Arc::new);
    let kinds = args.nemesis.kinds(netns);
    if kinds.is_empty() {
        eprintln!(
            "chaos: no faults: nemesis {} needs network namespaces; the workload runs alone",
            args.nemesis.word()
        );
    }
    let plan = nemesis::schedule(args.seed, &kinds, &pg.ids(), 10_000);

    let history = Arc::new(History::create(&dir.join("history.jsonl"))?);
    let targets = pg
        .nodes
        .iter()
        .map(|n| {
            let (host, port) = n.pg.rsplit_once(':').ok_or_else(|| anyhow!("bad pg address {}", n.pg))?;
            Ok(workload::Target { node: n.id, host: host.to_string(), port: port.parse()? })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let load = workload::Workload {
        targets,
        clients: args.clients,
        token: pg.token("chaos-engineer", "engineers")?,
        tls: tls::MakeRustls::trusting(&pg.ca)?,
        seed: args.seed,
    };
    let approver = approver::Approver {
        pg: pg.clone(),
        token: pg.token("chaos-approver", "approvers")?,
        history: history.clone(),
        rng: rng::Rng::new(args.seed ^ 0xA99_0FE5),
    };
    let stop_load = CancellationToken::new();
    let stop_nemesis = CancellationToken::new();
    eprintln!(
        "chaos: workload ({} sessions, {} SSH and {} HTTPS connections per node) and nemesis {} for {duration:?}",
        args.clients,
        if pg.sshd.is_some() { args.ssh_clients } else { 0 },
        if pg.api.is_some() { args.http_clients } else { 0 },
        args.nemesis.word()
    );
    let mut clients = load.spawn(history.clone(), stop_load.clone());
    if pg.sshd.is_some() {
        let targets = pg
            .nodes
            .iter()
            .map(|n| {
                let addr = n.ssh.clone().ok_or_else(|| anyhow!("node {} has no SSH door", n.id))?;
                Ok(ssh_load::Target { node: n.id, addr })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let ssh = ssh_load::SshWorkload {
            targets,
            clients: args.ssh_clients,
            token: pg.token("chaos-engineer", "engineers")?,
            log: host::log_name(),
            seed: args.seed,
        };
        // Connected before the first fault: a node without its quorum cannot record
        // a new session, so only these connections can show whether it keeps relaying.
        ssh.spawn(history.clone(), stop_load.clone(), &mut clients).await;
    }
    if pg.api.is_some() {
        let targets = pg
            .nodes
            .iter()
            .map(|n| {
                let addr = n.http.clone().ok_or_else(|| anyhow!("node {} has no HTTP door", n.id))?;
                Ok(http_load::Target { node: n.id, addr })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let http = http_load::HttpWorkload {
            targets,
            clients: args.http_clients,
            token: pg.token("chaos-engineer", "engineers")?,
            tls: tls::client_config(&pg.ca)?,
            seed: args.seed,
        };
        // Connected before the first fault, like the SSH connections.
        http.spawn(history.clone(), stop_load.clone(), &mut clients).await;
    }
    let started = Instant::now();
    let approving = tokio::spawn(approver.run(stop_load.clone()));
    let nemesis = tokio::spawn(nemesis::run(pg.clone(), links.clone(), history.clone(), plan, stop_nemesis.clone()));
    tokio::time::sleep(duration).await;
    stop_nemesis.cancel();
    let nemesis_result = nemesis.await;
    stop_load.cancel();
    while clients.join_next().await.is_some() {}
    let _ = approving.await;
    history.flush();
    eprintln!("chaos: healed after {:?}; checking", started.elapsed());
    match nemesis_result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.context("the nemesis failed")),
        Err(e) => bail!("the nemesis task failed: {e}"),
    }
    check(args, dir, pg, &history, netns, why_not).await
}

async fn check(
    args: &RunArgs,
    dir: &Path,
    pg: &Arc<Playground>,
    history: &History,
    netns: bool,
    why_not: Option<String>,
) -> anyhow::Result<Value> {
    let mut violations: Vec<Value> = vec![];
    if let Err(e) = pg.wait_all_serving(Duration::from_secs(60)).await {
        violations.push(json!({"check": "no-recovery", "detail": e.to_string()}));
    }
    let serving_since_ms = history::now_ms();
    let digests = match checker::converge::states(pg, Duration::from_secs(60)).await {
        Ok(d) => json!(d),
        Err(e) => {
            violations.push(json!({"check": "no-convergence", "detail": e}));
            Value::Null
        }
    };
    let ledger = backend::read_ledger(pg).await?;
    let runs = backend::read_gated(pg).await?;
    let export = pg.cli(1, &["sessions", "export", "--resource", "demo"], Duration::from_secs(120)).await?;
    if !export.status.success() {
        bail!("sessions export failed: {}", String::from_utf8_lossy(&export.stderr));
    }
    std::fs::write(dir.join("audit.jsonl"), &export.stdout)?;
    // The leader has had the grace since it served again to expire what fell due
    // while nobody could (see `overdue`).
    let ready_ms = serving_since_ms + checker::gated::OVERDUE_GRACE_MS + 1000;
    tokio::time::sleep(Duration::from_millis(ready_ms.saturating_sub(history::now_ms()))).await;
    let listed = pg.cli(1, &["approvals", "list", "--json"], Duration::from_secs(30)).await?;
    if !listed.status.success() {
        bail!("approvals list failed: {}", String::from_utf8_lossy(&listed.stderr));
    }
    std::fs::write(dir.join("approvals.json"), &listed.stdout)?;
    let listed_at_ms = history::now_ms();
    let approval_list: Value = serde_json::from_slice(&listed.stdout)?;
    let approvals = checker::gated::approvals(&approval_list);
    let audited = checker::audited_ops(&String::from_utf8_lossy(&export.stdout));
    let log = std::fs::read_to_string(&pg.backend.log).context("read the backend's log")?;
    let relays = checker::relays(&log);
    let ops = history.ops();
    let faults = history.faults();
    violations.extend(checker::check(&checker::Evidence {
        ops: &ops,
        faults: &faults,
        ledger: &ledger,
        audited: &audited,
        relays: &relays,
    }));
    violations.extend(checker::gated::check(&ops, &runs, &approvals, &audited));
    violations.extend(checker::gated::overdue(&approval_list, listed_at_ms, serving_since_ms));
    let ssh = if pg.sshd.is_some() {
        let export = pg.cli(1, &["sessions", "export", "--resource", "demo-ssh"], Duration::from_secs(120)).await?;
        if !export.status.success() {
            bail!("sessions export --resource demo-ssh failed: {}", String::from_utf8_lossy(&export.stderr));
        }
        std::fs::write(dir.join("audit-ssh.jsonl"), &export.stdout)?;
        let log = host::take_log(pg).await?;
        std::fs::write(dir.join("ssh-host.log"), &log)?;
        let runs = checker::ssh::host_runs(&log);
        let audited = checker::ssh::audited_ops(&String::from_utf8_lossy(&export.stdout));
        violations.extend(checker::ssh::check(&ops, &faults, &runs, &audited));
        checker::ssh::summary(&ops, &runs, &audited)
    } else {
        Value::Null
    };
    let http = if pg.api.is_some() {
        let export = pg.cli(1, &["sessions", "export", "--resource", "demo-api"], Duration::from_secs(120)).await?;
        if !export.status.success() {
            bail!("sessions export --resource demo-api failed: {}", String::from_utf8_lossy(&export.stderr));
        }
        std::fs::write(dir.join("audit-http.jsonl"), &export.stdout)?;
        let log = api::read_log(pg)?;
        std::fs::write(dir.join("http-backend.log"), &log)?;
        let received = checker::http::received(&log);
        let audited = checker::http::audited_ops(&String::from_utf8_lossy(&export.stdout));
        violations.extend(checker::http::check(&ops, &faults, &received, &audited));
        checker::http::summary(&ops, &received, &audited)
    } else {
        Value::Null
    };
    let mut file = std::fs::File::create(dir.join("violations.jsonl"))?;
    for v in &violations {
        writeln!(file, "{v}")?;
        eprintln!("chaos: VIOLATION {v}");
    }
    let mut failover = checker::failovers(&ops, &faults);
    failover.sort_unstable();
    let ok = ops.iter().filter(|o| o.ok).count();
    eprintln!("chaos: ssh {ssh}");
    eprintln!("chaos: http {http}");
    let tally = checker::gated::tally(&approvals);
    let mut kinds: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for f in &faults {
        *kinds.entry(f.kind.words().0).or_insert(0) += 1;
    }
    eprintln!(
        "chaos: {} ops ({ok} ok), faults {kinds:?}, {} ledger rows, {} gated rows, approvals {tally:?}, {} audited ops, {} relayed statements logged, {} violations",
        ops.len(),
        ledger.len(),
        runs.values().sum::<u64>(),
        audited.len(),
        relays.len(),
        violations.len()
    );
    eprintln!("chaos: state digests per node: {digests}");
    Ok(json!({
        "nemesis": args.nemesis.word(),
        "seed": args.seed,
        "ops": ops.len(),
        "ok": ok,
        "failed": ops.len() - ok,
        "violations": violations.len(),
        "failover_ms_p50": failover.get(failover.len() / 2),
        "failover_ms_max": failover.last(),
        "faults": kinds,
        "approvals": tally,
        "ssh": ssh,
        "http": http,
        "netns": netns,
        "skipped": why_not,
        "run_dir": dir,
    }))
}
