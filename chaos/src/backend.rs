//! The backend Postgres as the checker's ground truth: tables the workload writes,
//! a statement log the checker can read, and (with namespaces) a forwarder that
//! makes it reachable from the nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::cluster::Playground;
use crate::relay::Relay;

pub async fn superuser(pg: &Playground) -> anyhow::Result<tokio_postgres::Client> {
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

/// `ledger` (free inserts), `gated` (inserts that need an approval; no key, so a
/// statement that ran twice shows as two rows), and a statement log with UTC
/// millisecond stamps.
pub async fn prepare(pg: &Playground) -> anyhow::Result<()> {
    let db = superuser(pg).await?;
    for sql in [
        "CREATE TABLE IF NOT EXISTS ledger (op_id text PRIMARY KEY, node int, at timestamptz DEFAULT now())",
        "GRANT ALL ON ledger TO demo_app",
        "CREATE TABLE IF NOT EXISTS gated (op_id text NOT NULL, node int, at timestamptz DEFAULT now())",
        "GRANT ALL ON gated TO demo_app",
        "ALTER SYSTEM SET log_timezone = 'UTC'",
        "ALTER SYSTEM SET log_line_prefix = '%m [%p] %a '",
        "SELECT pg_reload_conf()",
    ] {
        db.batch_execute(sql).await.with_context(|| format!("backend: {sql}"))?;
    }
    Ok(())
}

/// Nodes in namespaces cannot reach the backend on the root namespace's loopback,
/// where `portcullis dev` registered it: forward the bridge to it and register
/// `demo` again at the bridge address. The relay must live as long as the run.
pub async fn expose(pg: &Playground, dir: &std::path::Path) -> anyhow::Result<Option<Relay>> {
    let Some(hosts) = &pg.hosts else { return Ok(None) };
    let target: SocketAddr = ([127, 0, 0, 1], pg.backend.port).into();
    let relay = Relay::start(SocketAddr::new(hosts.bridge_ip.into(), 0), target).await?;
    let file = dir.join("demo-resource.json");
    let spec = serde_json::json!({
        "name": "demo", "protocol": "postgres", "address": relay.addr.to_string(),
        "username": "demo_app", "password": pg.backend.app_password, "audit": "strict",
        "options": {"database": "demo"},
    });
    std::fs::write(&file, spec.to_string())?;
    let path = file.display().to_string();
    let out = pg.cli(1, &["resource", "apply", "-f", &path], Duration::from_secs(20)).await?;
    let _ = std::fs::remove_file(&file);
    if !out.status.success() {
        bail!("re-registering demo at {}: {}", relay.addr, String::from_utf8_lossy(&out.stderr));
    }
    Ok(Some(relay))
}

pub async fn read_ledger(pg: &Playground) -> anyhow::Result<BTreeSet<String>> {
    let db = superuser(pg).await?;
    let rows = db.query("SELECT op_id FROM ledger", &[]).await.context("read the ledger")?;
    rows.iter().map(|r| r.try_get::<_, String>(0).map_err(Into::into)).collect()
}

/// How many times each approval-gated statement ran.
pub async fn read_gated(pg: &Playground) -> anyhow::Result<BTreeMap<String, u64>> {
    let db = superuser(pg).await?;
    let rows = db.query("SELECT op_id, count(*) FROM gated GROUP BY op_id", &[]).await.context("read gated")?;
    rows.iter().map(|r| Ok((r.try_get::<_, String>(0)?, u64::try_from(r.try_get::<_, i64>(1)?).unwrap_or(0)))).collect()
}
