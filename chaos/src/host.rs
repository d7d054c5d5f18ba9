//! The SSH host (the playground's OpenSSH server behind resource `demo-ssh`) as the
//! checker's ground truth for the SSH workload: every command the workload sends
//! appends its operation id and the host's clock to a log file in the login account's
//! home, which the harness reads afterwards with the host's own key, bypassing the
//! gateway. With namespaces, a forwarder makes the host reachable from the nodes.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};

use crate::cluster::{Playground, Sshd};
use crate::relay::Relay;

/// The host's log of the SSH workload, in the login account's home. The home is
/// shared by every playground on the machine (one `portcullis-demo` account), so the
/// name carries the harness's pid: concurrent runs never read each other's lines.
pub fn log_name() -> String {
    format!("chaos-ssh-{}.log", std::process::id())
}

fn sshd(pg: &Playground) -> anyhow::Result<&Sshd> {
    pg.sshd.as_ref().ok_or_else(|| anyhow!("the playground has no sshd (dev --ssh)"))
}

/// Run `cmd` on the host directly (the gateway's own key, not through a door) and
/// return its stdout; fails on a non-zero exit.
pub async fn sh(pg: &Playground, cmd: &str) -> anyhow::Result<String> {
    let s = sshd(pg)?;
    let child = tokio::process::Command::new("ssh")
        .args(["-F", "/dev/null", "-i"])
        .arg(&s.client_key)
        .args(["-p", &s.port.to_string()])
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10"])
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
        .arg(format!("{}@127.0.0.1", s.user))
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("run ssh (install openssh-client)")?;
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .map_err(|_| anyhow!("ssh to the host: no answer within 60 s ({cmd})"))??;
    if !out.status.success() {
        bail!("on the host, {cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Nodes in namespaces cannot reach the host on the root namespace's loopback, where
/// `portcullis dev --ssh` registered it: forward the bridge to it and register
/// `demo-ssh` again at the bridge address (same login, key and pinned host key). The
/// relay must live as long as the run. `audit` other than strict (the planted
/// `--ssh-audit fast`) registers the resource again in any case.
pub async fn expose(pg: &Playground, dir: &std::path::Path, audit: &str) -> anyhow::Result<Option<Relay>> {
    let Some(s) = &pg.sshd else { return Ok(None) };
    let target: SocketAddr = ([127, 0, 0, 1], s.port).into();
    let relay = match &pg.hosts {
        Some(hosts) => Some(Relay::start(SocketAddr::new(hosts.bridge_ip.into(), 0), target).await?),
        None if audit == "strict" => return Ok(None),
        None => None,
    };
    let address = relay.as_ref().map_or(target, |r| r.addr);
    let key = std::fs::read_to_string(&s.client_key).with_context(|| format!("read {}", s.client_key.display()))?;
    let file = dir.join("demo-ssh-resource.json");
    let spec = serde_json::json!({
        "name": "demo-ssh", "protocol": "ssh", "address": address.to_string(),
        "username": s.user, "secret": key, "audit": audit,
        "options": {"host_key": s.host_key},
    });
    std::fs::write(&file, spec.to_string())?;
    let path = file.display().to_string();
    let out = pg.cli(1, &["resource", "apply", "-f", &path], Duration::from_secs(20)).await;
    let _ = std::fs::remove_file(&file);
    let out = out?;
    if !out.status.success() {
        bail!("re-registering demo-ssh at {address}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(relay)
}

/// Start from an empty log (a stale file of an earlier run with the same pid).
pub async fn prepare(pg: &Playground) -> anyhow::Result<()> {
    sh(pg, &format!("rm -f {}", log_name())).await.map(|_| ())
}

/// The host's log of the run (empty if nothing ran), then remove it from the host.
pub async fn take_log(pg: &Playground) -> anyhow::Result<String> {
    let name = log_name();
    let text = sh(pg, &format!("cat {name} 2>/dev/null; true")).await?;
    sh(pg, &format!("rm -f {name}")).await?;
    Ok(text)
}
