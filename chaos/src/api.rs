//! The demo HTTP API (the playground's backend behind resource `demo-api`, started by
//! `portcullis dev --http`) as the checker's ground truth for the HTTP workload: it
//! appends one JSON line per request that reached it to its request log (method,
//! path, body digest, its clock on arrival), which the harness reads from the
//! playground directory afterwards, bypassing the gateway. With namespaces, a
//! forwarder makes the API reachable from the nodes.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};

use crate::cluster::{DemoApi, Playground};
use crate::relay::Relay;

fn api(pg: &Playground) -> anyhow::Result<&DemoApi> {
    pg.api.as_ref().ok_or_else(|| anyhow!("the playground has no demo API (dev --http)"))
}

/// Nodes in namespaces cannot reach the API on the root namespace's loopback, where
/// `portcullis dev --http` registered it: forward the bridge to it and register
/// `demo-api` again at the bridge address (same bearer key). The relay must live as
/// long as the run. `audit` other than strict (the planted `--http-audit fast`)
/// registers the resource again in any case.
pub async fn expose(pg: &Playground, dir: &Path, audit: &str) -> anyhow::Result<Option<Relay>> {
    let a = api(pg)?;
    let target: SocketAddr = ([127, 0, 0, 1], a.port).into();
    let relay = match &pg.hosts {
        Some(hosts) => Some(Relay::start(SocketAddr::new(hosts.bridge_ip.into(), 0), target).await?),
        None if audit == "strict" => return Ok(None),
        None => None,
    };
    let address = relay.as_ref().map_or(target, |r| r.addr);
    let key = std::fs::read_to_string(&a.key_file).with_context(|| format!("read {}", a.key_file.display()))?;
    let file = dir.join("demo-api-resource.json");
    let spec = serde_json::json!({
        "name": "demo-api", "protocol": "http", "address": format!("http://{address}"),
        "credential": {"bearer": key.trim()}, "audit": audit,
    });
    std::fs::write(&file, spec.to_string())?;
    let path = file.display().to_string();
    let out = pg.cli(1, &["resource", "apply", "-f", &path], Duration::from_secs(20)).await;
    let _ = std::fs::remove_file(&file);
    let out = out?;
    if !out.status.success() {
        bail!("re-registering demo-api at {address}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(relay)
}

/// The API's request log so far (empty if nothing reached it).
pub fn read_log(pg: &Playground) -> anyhow::Result<String> {
    let a = api(pg)?;
    match std::fs::read_to_string(&a.log) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("read {}", a.log.display())),
    }
}
