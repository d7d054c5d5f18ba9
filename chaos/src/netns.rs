//! Hosts: one network namespace per node, joined by veth pairs to a bridge in the
//! root namespace, and the iptables rules the network nemeses set inside them.
//!
//! Names carry our pid (`pcx<pid>n<id>`, bridge `pcxb<pid>`) and the subnet
//! (`10.77.<k>.0/24`, bridge at `.1`, node N at `.10+N`) is one no interface uses
//! yet, so two runs never collide. Everything is removed by [`Hosts::teardown`]
//! (also on drop): processes still in a namespace are killed, then the namespaces
//! (taking their veth ends and iptables rules with them) and the bridge. Leftovers
//! of runs whose harness died (its pid is gone) are removed at the next start.
//!
//! Rules live in one chain `CHAOS` per namespace, jumped to from INPUT and OUTPUT;
//! each peer gets a chain `L<peer>` deciding its link (drop, or drop with a
//! probability and accept the rest, so a packet is rolled for at most once). A
//! link to a peer matches the peer's address as source or destination and, for
//! connections redirected through a relay in the root namespace, the original
//! destination (conntrack), so partitions hold on relayed links too. Only
//! node-to-node traffic is touched: the workload in the root namespace still
//! reaches every node.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context as _, bail};
use tokio::io::AsyncWriteExt as _;

/// What a link to a peer does to packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Drop,
    /// Drop this percentage of packets at random (iptables `statistic`).
    Loss(u64),
}

#[derive(Debug, Clone)]
pub struct NodeHost {
    pub id: u64,
    pub ns: String,
    pub ip: Ipv4Addr,
}

pub struct Hosts {
    pub bridge: String,
    pub bridge_ip: Ipv4Addr,
    pub nodes: Vec<NodeHost>,
    torn_down: Mutex<bool>,
}

/// Why namespace nemeses cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.as_deref().ok() != Some("0") {
        return Some("not running as root (network namespaces and iptables need it)".into());
    }
    for tool in ["ip", "iptables", "iptables-restore", "ss"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("`{tool}` is not installed (iproute2, iptables)"));
        }
    }
    None
}

fn run(args: &[&str]) -> anyhow::Result<String> {
    let (cmd, rest) = args.split_first().context("empty command")?;
    let out = Command::new(cmd).args(rest).stdin(Stdio::null()).output().with_context(|| format!("run {args:?}"))?;
    if !out.status.success() {
        bail!("{args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Best effort (teardown): errors are ignored, there is nothing better to do.
fn quiet(args: &[&str]) {
    let _ = run(args);
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid in a name we created (`pcx<pid>n<id>` or `pcxb<pid>`), if it is one.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("pcxb").or_else(|| name.strip_prefix("pcx"))?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Remove namespaces and bridges of earlier runs whose harness is gone.
fn remove_stale() {
    let me = std::process::id();
    let stale = |name: &str| owner_pid(name).is_some_and(|p| p != me && !pid_alive(p));
    if let Ok(list) = run(&["ip", "netns", "list"]) {
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| stale(n)) {
            eprintln!("chaos: removing namespace {ns} left by a dead run");
            kill_inside(ns);
            quiet(&["ip", "netns", "del", ns]);
        }
    }
    if let Ok(list) = run(&["ip", "-o", "link", "show", "type", "bridge"]) {
        for br in list.lines().filter_map(|l| l.split(':').nth(1)).map(str::trim).filter(|b| stale(b)) {
            eprintln!("chaos: removing bridge {br} left by a dead run");
            quiet(&["ip", "link", "del", br]);
        }
    }
}

fn kill_inside(ns: &str) {
    if let Ok(pids) = run(&["ip", "netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            quiet(&["kill", "-KILL", pid]);
        }
    }
}

/// A /24 under 10.77/16 that no interface or route uses yet.
fn free_subnet() -> anyhow::Result<u8> {
    let used = format!("{}{}", run(&["ip", "-4", "addr"])?, run(&["ip", "-4", "route"])?);
    let start = std::process::id() % 200;
    for i in 0..200u32 {
        let k = u8::try_from(20 + (start + i) % 200).unwrap_or(20);
        if !used.contains(&format!("10.77.{k}.")) {
            return Ok(k);
        }
    }
    bail!("no free subnet in 10.77.20-219.0/24")
}

impl Hosts {
    /// Bridge, namespaces and veths for nodes `1..=n`; on failure what was made is removed.
    pub fn create(n: u64) -> anyhow::Result<Hosts> {
        remove_stale();
        let pid = std::process::id();
        let k = free_subnet()?;
        let mut hosts = Hosts {
            bridge: format!("pcxb{pid}"),
            bridge_ip: Ipv4Addr::new(10, 77, k, 1),
            nodes: vec![],
            torn_down: Mutex::new(false),
        };
        // `hosts` is dropped (torn down) if any step fails.
        run(&["ip", "link", "add", &hosts.bridge, "type", "bridge"])?;
        run(&["ip", "addr", "add", &format!("{}/24", hosts.bridge_ip), "dev", &hosts.bridge])?;
        run(&["ip", "link", "set", &hosts.bridge, "up"])?;
        for id in 1..=n {
            let last = u8::try_from(10 + id).context("too many nodes")?;
            let node = NodeHost { id, ns: format!("pcx{pid}n{id}"), ip: Ipv4Addr::new(10, 77, k, last) };
            let veth = format!("pcx{pid}v{id}");
            run(&["ip", "netns", "add", &node.ns])?;
            hosts.nodes.push(node.clone());
            run(&["ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &node.ns])?;
            run(&["ip", "link", "set", &veth, "master", &hosts.bridge, "up"])?;
            let ns = node.ns.as_str();
            run(&["ip", "-n", ns, "addr", "add", &format!("{}/24", node.ip), "dev", "eth0"])?;
            run(&["ip", "-n", ns, "link", "set", "eth0", "up"])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            let peers: Vec<String> = (1..=n).filter(|p| *p != id).map(|p| format!(":L{p} - [0:0]")).collect();
            restore(
                ns,
                &format!(
                    "*filter\n:CHAOS - [0:0]\n{}\n-A INPUT -j CHAOS\n-A OUTPUT -j CHAOS\nCOMMIT\n",
                    peers.join("\n")
                ),
            )?;
        }
        Ok(hosts)
    }

    pub fn node(&self, id: u64) -> Option<&NodeHost> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// `--node-hosts`, `--node-netns` and `--service-host` for `portcullis dev`.
    pub fn dev_args(&self) -> Vec<String> {
        let join = |f: &dyn Fn(&NodeHost) -> String| self.nodes.iter().map(f).collect::<Vec<_>>().join(",");
        vec![
            "--node-hosts".into(),
            join(&|n| n.ip.to_string()),
            "--node-netns".into(),
            join(&|n| n.ns.clone()),
            "--service-host".into(),
            self.bridge_ip.to_string(),
        ]
    }

    /// Set every node's links at once (nodes not in `links` get all links healed).
    pub async fn set_links(&self, links: &BTreeMap<u64, Vec<(u64, Link)>>) -> anyhow::Result<()> {
        for node in &self.nodes {
            let mine = links.get(&node.id).map(Vec::as_slice).unwrap_or_default();
            let mut text = String::from("*filter\n:CHAOS - [0:0]\n");
            for peer in self.nodes.iter().filter(|p| p.id != node.id) {
                text.push_str(&format!(":L{} - [0:0]\n", peer.id));
            }
            for (peer, link) in mine {
                let Some(p) = self.node(*peer) else { continue };
                let chain = format!("L{peer}");
                text.push_str(&format!("-A CHAOS -s {ip} -j {chain}\n-A CHAOS -d {ip} -j {chain}\n", ip = p.ip));
                text.push_str(&format!("-A CHAOS -m conntrack --ctorigdst {} -j {chain}\n", p.ip));
                match link {
                    Link::Drop => text.push_str(&format!("-A {chain} -j DROP\n")),
                    Link::Loss(pct) => text.push_str(&format!(
                        "-A {chain} -m statistic --mode random --probability {:.2} -j DROP\n-A {chain} -j ACCEPT\n",
                        (*pct as f64) / 100.0
                    )),
                }
            }
            text.push_str("COMMIT\n");
            restore_async(&node.ns, &text).await?;
        }
        Ok(())
    }

    /// Heal every link.
    pub async fn heal(&self) -> anyhow::Result<()> {
        self.set_links(&BTreeMap::new()).await
    }

    /// In node `id`'s namespace, send new TCP connections to `dst` through `via`
    /// (DNAT), and abort the established ones so they reconnect through it.
    pub fn redirect(&self, id: u64, redirects: &[(SocketAddr, SocketAddr)]) -> anyhow::Result<()> {
        let node = self.node(id).context("no such node")?;
        let mut text = String::from("*nat\n");
        for (dst, via) in redirects {
            text.push_str(&format!(
                "-A OUTPUT -p tcp -d {} --dport {} -j DNAT --to-destination {via}\n",
                dst.ip(),
                dst.port()
            ));
        }
        text.push_str("COMMIT\n");
        restore(&node.ns, &text)?;
        for (dst, _) in redirects {
            let filter = format!("dst {} dport = {}", dst.ip(), dst.port());
            run(&["ip", "netns", "exec", &node.ns, "sh", "-c", &format!("ss -K {filter} >/dev/null")])?;
        }
        Ok(())
    }

    /// Kill what still runs in the namespaces, delete them and the bridge; idempotent.
    pub fn teardown(&self) {
        {
            let mut done = self.torn_down.lock().unwrap_or_else(|p| p.into_inner());
            if *done {
                return;
            }
            *done = true;
        }
        for node in &self.nodes {
            kill_inside(&node.ns);
            quiet(&["ip", "netns", "del", &node.ns]);
        }
        quiet(&["ip", "link", "del", &self.bridge]);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// `iptables-restore --noflush` in `ns`: declared chains are flushed, others kept.
fn restore(ns: &str, rules: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "iptables-restore", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("run iptables-restore")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(rules.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("iptables-restore in {ns} failed: {}\n{rules}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// As [`restore`], without blocking the runtime (nemeses run next to the workload).
async fn restore_async(ns: &str, rules: &str) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new("ip")
        .args(["netns", "exec", ns, "iptables-restore", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("run iptables-restore")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(rules.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!("iptables-restore in {ns} failed: {}\n{rules}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_of_this_harness_carry_an_owner_pid() {
        assert_eq!(owner_pid("pcx123n2"), Some(123));
        assert_eq!(owner_pid("pcxb4567"), Some(4567));
        assert_eq!(owner_pid("docker0"), None);
        assert_eq!(owner_pid("pcxq"), None);
    }
}
