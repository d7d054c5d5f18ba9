//! `portcullis dev --lb`: HAProxy in front of the playground's nodes.
//!
//! The config is rendered from the deploy template (deploy/haproxy/haproxy.cfg.tmpl,
//! built into the binary), so the playground exercises the same health checks and
//! timeouts an operator deploys. HAProxy runs in the foreground as a child process
//! (`-db`), logging to `DIR/haproxy.log`.

use std::path::{Path, PathBuf};

use crate::config::NodeConfig;
use crate::error::NodeError;

const TEMPLATE: &str = include_str!("../../../deploy/haproxy/haproxy.cfg.tmpl");

/// The load balancer's listen addresses, one per door it fronts.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LbAddrs {
    pub pg: Option<String>,
    pub ssh: Option<String>,
    pub http: Option<String>,
    pub admin: String,
    /// HAProxy's admin socket (`show servers state`).
    pub stats_socket: PathBuf,
}

/// `haproxy` on PATH (or in /usr/sbin, which a non-root PATH may lack).
pub fn find_haproxy() -> Result<PathBuf, NodeError> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("haproxy")).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/haproxy"), PathBuf::from("/usr/local/sbin/haproxy")])
        .find(|p| p.is_file())
        .ok_or_else(|| {
            NodeError::Dev(
                "--lb needs HAProxy, and `haproxy` was not found on PATH or in /usr/sbin; install it (Debian: apt-get install haproxy) or run without --lb".into(),
            )
        })
}

/// Render the template for `nodes` (id, config) behind `lb`.
pub fn render(nodes: &[(u64, NodeConfig)], lb: &LbAddrs) -> Result<String, NodeError> {
    let servers = |door: fn(&NodeConfig) -> Option<String>| -> Result<String, NodeError> {
        let mut lines = Vec::new();
        for (id, c) in nodes {
            let Some(addr) = door(c) else { continue };
            let (ops_host, ops_port) = c
                .listen
                .ops
                .rsplit_once(':')
                .ok_or_else(|| NodeError::Dev(format!("node {id}: ops address {} has no port", c.listen.ops)))?;
            lines.push(format!("    server node{id} {addr} check addr {ops_host} port {ops_port}"));
        }
        Ok(lines.join("\n"))
    };
    let mut values: Vec<(&str, String)> = vec![
        ("pg_servers", servers(|c| c.listen.pg.clone())?),
        ("admin_servers", servers(|c| Some(c.listen.admin.clone()))?),
        ("ssh_servers", servers(|c| c.listen.ssh.clone())?),
        ("http_servers", servers(|c| c.listen.http.clone())?),
        ("lb_admin", lb.admin.clone()),
        ("stats_socket", lb.stats_socket.display().to_string()),
    ];
    for (name, addr) in [("lb_pg", &lb.pg), ("lb_ssh", &lb.ssh), ("lb_http", &lb.http)] {
        values.push((name, addr.clone().unwrap_or_default()));
    }
    let served = |door: &str| match door {
        "pg" => lb.pg.is_some(),
        "ssh" => lb.ssh.is_some(),
        "http" => lb.http.is_some(),
        _ => true,
    };
    let mut out = String::new();
    let mut keep = true;
    for line in TEMPLATE.lines() {
        if let Some(door) = line.strip_prefix("# door: ") {
            keep = served(door.trim());
            continue;
        }
        if line.trim() == "# end door" {
            keep = true;
            continue;
        }
        if !keep {
            continue;
        }
        let mut line = line.to_string();
        for (name, value) in &values {
            line = line.replace(&format!("{{{{{name}}}}}"), value);
        }
        if line.contains("{{") && !line.trim_start().starts_with('#') {
            return Err(NodeError::Dev(format!("haproxy template: unfilled placeholder in {line:?}")));
        }
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// Check the rendered config with `haproxy -c`, so a bad one is reported as such.
pub fn check(haproxy: &Path, config: &Path) -> Result<(), NodeError> {
    let out = std::process::Command::new(haproxy)
        .args(["-c", "-q", "-f"])
        .arg(config)
        .output()
        .map_err(|e| NodeError::io(format!("run {} -c", haproxy.display()), e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(NodeError::Dev(format!(
        "haproxy rejected {}: {}",
        config.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn renders_servers_with_readyz_checks_and_drops_doors_nobody_serves() {
        let config = |id: u64| -> NodeConfig {
            let toml = format!(
                r#"id = {id}
data_dir = "/tmp/n{id}"
key_file = "/tmp/key"
[listen]
raft = "127.0.0.1:1{id}00"
admin = "127.0.0.1:1{id}01"
ops = "127.0.0.1:1{id}02"
pg = "127.0.0.1:1{id}03"
[tls]
ca = "/tmp/ca.pem"
cert = "/tmp/c.pem"
key = "/tmp/c.key"
"#
            );
            toml::from_str(&toml).unwrap()
        };
        let nodes = vec![(1, config(1)), (2, config(2))];
        let lb = LbAddrs {
            pg: Some("127.0.0.1:9000".into()),
            admin: "127.0.0.1:9001".into(),
            stats_socket: "/tmp/x.sock".into(),
            ..Default::default()
        };
        let text = render(&nodes, &lb).unwrap();
        assert!(text.contains("bind 127.0.0.1:9000"), "{text}");
        assert!(text.contains("server node2 127.0.0.1:1203 check addr 127.0.0.1 port 1202"), "{text}");
        assert!(text.contains("server node1 127.0.0.1:1101 check addr 127.0.0.1 port 1102"), "{text}");
        assert!(text.contains("option httpchk GET /readyz"));
        assert!(text.contains("on-marked-down shutdown-sessions"));
        assert!(!text.contains("frontend ssh") && !text.contains("frontend http\n"), "{text}");
        assert!(!text.lines().any(|l| l.contains("{{") && !l.starts_with('#')), "{text}");
    }

    #[test]
    fn the_http_door_gets_a_passthrough_frontend_with_the_same_readyz_checks() {
        let config = |id: u64| -> NodeConfig {
            let toml = format!(
                r#"id = {id}
data_dir = "/tmp/n{id}"
key_file = "/tmp/key"
[listen]
raft = "127.0.0.1:1{id}00"
admin = "127.0.0.1:1{id}01"
ops = "127.0.0.1:1{id}02"
pg = "127.0.0.1:1{id}03"
http = "127.0.0.1:1{id}05"
[tls]
ca = "/tmp/ca.pem"
cert = "/tmp/c.pem"
key = "/tmp/c.key"
"#
            );
            toml::from_str(&toml).unwrap()
        };
        let nodes = vec![(1, config(1)), (2, config(2))];
        let lb = LbAddrs {
            pg: Some("127.0.0.1:9000".into()),
            http: Some("127.0.0.1:9002".into()),
            admin: "127.0.0.1:9001".into(),
            stats_socket: "/tmp/x.sock".into(),
            ..Default::default()
        };
        let text = render(&nodes, &lb).unwrap();
        let http = text.split("frontend http\n").nth(1).unwrap_or_default();
        assert!(!http.is_empty(), "no http frontend: {text}");
        assert!(http.contains("bind 127.0.0.1:9002"), "{text}");
        assert!(http.contains("server node1 127.0.0.1:1105 check addr 127.0.0.1 port 1102"), "{text}");
        assert!(http.contains("server node2 127.0.0.1:1205 check addr 127.0.0.1 port 1202"), "{text}");
        // TLS passes through: the frontend is TCP like the defaults, no `ssl` on its bind.
        assert!(!text.contains("mode http") && !text.contains(" ssl "), "{text}");
        assert!(!text.contains("frontend ssh"), "{text}");
    }
}
