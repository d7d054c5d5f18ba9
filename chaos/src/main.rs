//! # portcullis-chaos
//!
//! Jepsen-style chaos for Portcullis (issue 5): real node processes from a
//! `portcullis dev --postgres` playground, real faults, a recorded history, and a
//! checker against the backend's own ground truth.
//!
//! ## Layout
//! - `cluster`: the playground (processes, admin CLI, teardown).
//! - `workload`: long-lived sessions per node inserting into and reading `ledger`.
//! - `nemesis`: the seeded fault schedule and its runner.
//! - `history`: `RUN_DIR/history.jsonl`.
//! - `checker`: invariants; violations go to `RUN_DIR/violations.jsonl`.
//!
//! Exit codes: 0 no violations, 1 violations found, 2 usage error, 3 the harness
//! itself could not run.

mod checker;
mod cluster;
mod history;
mod nemesis;
mod rng;
use portcullis_chaos::tls;
mod workload;

use std::collections::BTreeSet;
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
use nemesis::Nemesis;

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
    /// Restart every node with the planted fault (`--unsafe-no-lease`): the checker
    /// must then report violations.
    #[arg(long)]
    unsafe_no_lease: bool,
    /// Keep the run directory here (default: a temp dir, removed after a clean run).
    #[arg(long)]
    keep: Option<PathBuf>,
}

/// The playground's policy: replaces the demo policy (same name) so that engineers
/// may read and insert into `ledger` without review; DDL and TRUNCATE stay denied.
const CHAOS_POLICY: &str = r#"name: demo
rules:
  - name: engineers-read
    match: { groups: [engineers], resources: [demo], kinds: [select, show, set, transaction, explain] }
    action: allow
  - name: chaos-ledger
    match: { groups: [engineers], resources: [demo], kinds: [select, insert], tables: [ledger] }
    action: allow
  - name: no-truncate-or-ddl
    match: { resources: [demo], kinds: [truncate, ddl] }
    action: deny
    reason: "TRUNCATE, DROP and other DDL are never allowed on demo"
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
    eprintln!("chaos: skipped: partition/flaky/slow need network namespaces (next cut)");
    let bin = cluster::portcullis_bin()?;
    eprintln!("chaos: starting a {}-node playground with Postgres", args.nodes);
    let play_dir = dir.join("playground");
    let pg = Arc::new(tokio::task::spawn_blocking(move || Playground::start(&play_dir, &bin, args.nodes)).await??);

    let outcome = exercise(&args, &dir, &pg, duration).await;
    pg.teardown();
    let summary = outcome?;
    let violations = summary.get("violations").and_then(Value::as_u64).unwrap_or(0);
    if violations == 0 && !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(summary)
}

async fn exercise(args: &RunArgs, dir: &Path, pg: &Arc<Playground>, duration: Duration) -> anyhow::Result<Value> {
    prepare_backend(pg).await?;
    let policy = dir.join("chaos-policy.yaml");
    std::fs::write(&policy, CHAOS_POLICY)?;
    let path = policy.display().to_string();
    let out = pg.cli(1, &["policy", "apply", "-f", &path], Duration::from_secs(20)).await?;
    if !out.status.success() {
        bail!("policy apply failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    if args.unsafe_no_lease {
        eprintln!("chaos: restarting every node with --unsafe-no-lease (the planted fault)");
        pg.set_unsafe_no_lease();
        for id in pg.ids() {
            pg.stop(id).await;
        }
        for id in pg.ids() {
            pg.restart(id)?;
        }
    }
    pg.wait_all_serving(Duration::from_secs(60)).await?;
    // Equal applied indexes: the chaos policy is in force on every node.
    converge(pg, Duration::from_secs(20)).await.map_err(|e| anyhow!("before the run: {e}"))?;

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
    let stop_load = CancellationToken::new();
    let stop_nemesis = CancellationToken::new();
    eprintln!(
        "chaos: workload ({} sessions per node) and nemesis {} for {duration:?}",
        args.clients,
        args.nemesis.word()
    );
    let started = Instant::now();
    let mut clients = load.spawn(history.clone(), stop_load.clone());
    let nemesis =
        tokio::spawn(nemesis::run(pg.clone(), history.clone(), args.nemesis, args.seed, stop_nemesis.clone()));
    tokio::time::sleep(duration).await;
    stop_nemesis.cancel();
    let nemesis_result = nemesis.await;
    stop_load.cancel();
    while clients.join_next().await.is_some() {}
    history.flush();
    eprintln!("chaos: healed after {:?}; checking", started.elapsed());
    match nemesis_result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.context("the nemesis failed")),
        Err(e) => bail!("the nemesis task failed: {e}"),
    }

    let mut violations: Vec<Value> = vec![];
    if let Err(e) = pg.wait_all_serving(Duration::from_secs(60)).await {
        violations.push(json!({"check": "no-recovery", "detail": e.to_string()}));
    }
    if let Err(e) = converge(pg, Duration::from_secs(30)).await {
        violations.push(json!({"check": "no-convergence", "detail": e.to_string()}));
    }
    let ledger = read_ledger(pg).await?;
    let export = pg.cli(1, &["sessions", "export", "--resource", "demo"], Duration::from_secs(120)).await?;
    if !export.status.success() {
        bail!("sessions export failed: {}", String::from_utf8_lossy(&export.stderr));
    }
    std::fs::write(dir.join("audit.jsonl"), &export.stdout)?;
    let audited = checker::audited_ops(&String::from_utf8_lossy(&export.stdout));
    let log = std::fs::read_to_string(&pg.backend.log).context("read the backend's log")?;
    let relays = checker::relays(&log);
    let ops = history.ops();
    let faults = history.faults();
    violations.extend(checker::check(&checker::Evidence {
        ids: &pg.ids(),
        ops: &ops,
        faults: &faults,
        ledger: &ledger,
        audited: &audited,
        relays: &relays,
    }));
    let mut file = std::fs::File::create(dir.join("violations.jsonl"))?;
    for v in &violations {
        writeln!(file, "{v}")?;
        eprintln!("chaos: VIOLATION {v}");
    }
    let mut failover = checker::failovers(&ops, &faults);
    failover.sort_unstable();
    let ok = ops.iter().filter(|o| o.ok).count();
    eprintln!(
        "chaos: {} ops ({ok} ok), {} faults, {} ledger rows, {} audited ops, {} relayed statements logged, {} violations",
        ops.len(),
        faults.len(),
        ledger.len(),
        audited.len(),
        relays.len(),
        violations.len()
    );
    Ok(json!({
        "nemesis": args.nemesis.word(),
        "seed": args.seed,
        "ops": ops.len(),
        "ok": ok,
        "failed": ops.len() - ok,
        "violations": violations.len(),
        "failover_ms_p50": failover.get(failover.len() / 2),
        "failover_ms_max": failover.last(),
        "run_dir": dir,
    }))
}

async fn superuser(pg: &Playground) -> anyhow::Result<tokio_postgres::Client> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(pg.backend.port)
        .user("postgres")
        .password(&pg.backend.superuser_password)
        .dbname("demo")
        .connect_timeout(Duration::from_secs(10));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.context("connect to the backend")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The ledger table, and a statement log the checker can read: UTC millisecond stamps.
async fn prepare_backend(pg: &Playground) -> anyhow::Result<()> {
    let db = superuser(pg).await?;
    for sql in [
        "CREATE TABLE IF NOT EXISTS ledger (op_id text PRIMARY KEY, node int, at timestamptz DEFAULT now())",
        "GRANT ALL ON ledger TO demo_app",
        "ALTER SYSTEM SET log_timezone = 'UTC'",
        "ALTER SYSTEM SET log_line_prefix = '%m [%p] %a '",
        "SELECT pg_reload_conf()",
    ] {
        db.batch_execute(sql).await.with_context(|| format!("backend: {sql}"))?;
    }
    Ok(())
}

async fn read_ledger(pg: &Playground) -> anyhow::Result<BTreeSet<String>> {
    let db = superuser(pg).await?;
    let rows = db.query("SELECT op_id FROM ledger", &[]).await.context("read the ledger")?;
    rows.iter().map(|r| r.try_get::<_, String>(0).map_err(Into::into)).collect()
}

/// Wait until every node reports the same applied index.
async fn converge(pg: &Playground, timeout: Duration) -> anyhow::Result<u64> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no status");
    loop {
        for via in pg.ids() {
            let Some(s) = pg.status(via).await else { continue };
            let applied: Vec<Option<u64>> = s
                .get("nodes")
                .and_then(Value::as_array)
                .map(|ns| ns.iter().map(|n| n.get("last_applied").and_then(Value::as_u64)).collect())
                .unwrap_or_default();
            if let Some(Some(first)) = applied.first()
                && applied.len() == pg.nodes.len()
                && applied.iter().all(|a| *a == Some(*first))
            {
                return Ok(*first);
            }
            last = format!("last_applied per node: {applied:?}");
            break;
        }
        if Instant::now() > deadline {
            bail!("nodes did not converge within {timeout:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
