//! Hidden `portcullis dev` options for the chaos harness: each node on its own
//! address, optionally inside its own network namespace.
//!
//! The raft membership stores every node's raft address when the cluster is
//! initialized, so a node that is to live in a namespace must have its namespace
//! address from the start. With `--node-hosts` the freshly prepared playground is
//! rewritten before anything starts: node listeners and peers move to the given
//! addresses, the dev issuer to `--service-host` (an address of the root namespace
//! that the namespaces can route to), and node certificates are re-issued to also
//! name their address (the admin CLI and the Postgres door verify the address they
//! dial; node-to-node TLS verifies `localhost`, which they still name). With
//! `--node-netns` each node is started under `ip netns exec`. Without these options
//! `portcullis dev` is unchanged.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose};
use tokio::process::Child;

use super::issuer::IssuerInfo;
use crate::config::NodeConfig;
use crate::error::NodeError;

#[derive(clap::Args, Debug, Default)]
pub struct HostArgs {
    /// Bind node N's listeners on the Nth of these addresses (comma-separated).
    #[arg(long, hide = true, value_delimiter = ',')]
    pub node_hosts: Vec<IpAddr>,
    /// Start node N inside the Nth of these network namespaces (`ip netns exec`).
    #[arg(long, hide = true, value_delimiter = ',')]
    pub node_netns: Vec<String>,
    /// Where the dev issuer listens, reachable from every node's address.
    #[arg(long, hide = true, requires = "node_hosts")]
    pub service_host: Option<IpAddr>,
}

fn dev_err(detail: impl Into<String>) -> NodeError {
    NodeError::Dev(detail.into())
}

/// `addr` with its host replaced (the port is kept: it was chosen free already).
fn rehost(addr: &str, host: IpAddr) -> Result<String, NodeError> {
    let (_, port) = addr.rsplit_once(':').ok_or_else(|| dev_err(format!("address {addr:?} has no port")))?;
    Ok(match host {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    })
}

impl HostArgs {
    fn host(&self, id: u64) -> Option<IpAddr> {
        self.node_hosts.get(usize::try_from(id).ok()?.checked_sub(1)?).copied()
    }

    fn netns(&self, id: u64) -> Option<&str> {
        self.node_netns.get(usize::try_from(id).ok()?.checked_sub(1)?).map(String::as_str)
    }

    /// Rewrite the prepared playground for the given addresses (idempotent: a reused
    /// directory is rewritten the same way). Does nothing without `--node-hosts`.
    pub fn apply(&self, dir: &Path, configs: &[(u64, PathBuf)]) -> Result<(), NodeError> {
        let n = configs.len();
        if !self.node_netns.is_empty() && self.node_netns.len() != n {
            return Err(dev_err(format!("--node-netns names {} namespaces for {n} nodes", self.node_netns.len())));
        }
        if self.node_hosts.is_empty() {
            return Ok(());
        }
        if self.node_hosts.len() != n {
            return Err(dev_err(format!("--node-hosts names {} addresses for {n} nodes", self.node_hosts.len())));
        }
        let mut issuer = IssuerInfo::load(dir)?;
        if let Some(service) = self.service_host {
            let listen = rehost(&issuer.listen, service)?;
            issuer = IssuerInfo {
                issuer: format!("http://{listen}{}", portcullis_proxy::identity::DEV_ISSUER_PATH),
                listen,
            };
            issuer.save(dir)?;
        }
        for (id, path) in configs {
            let mut config = NodeConfig::load(path, std::iter::empty())?;
            let host = self.host(*id).ok_or_else(|| dev_err(format!("no address for node {id}")))?;
            config.listen.raft = rehost(&config.listen.raft, host)?;
            config.listen.admin = rehost(&config.listen.admin, host)?;
            config.listen.ops = rehost(&config.listen.ops, host)?;
            if let Some(pg) = &config.listen.pg {
                config.listen.pg = Some(rehost(pg, host)?);
            }
            if let Some(ssh) = &config.listen.ssh {
                config.listen.ssh = Some(rehost(ssh, host)?);
            }
            if let Some(http) = &config.listen.http {
                config.listen.http = Some(rehost(http, host)?);
            }
            for peer in &mut config.peers {
                let h = self.host(peer.id).ok_or_else(|| dev_err(format!("no address for node {}", peer.id)))?;
                peer.raft = rehost(&peer.raft, h)?;
                peer.admin = rehost(&peer.admin, h)?;
            }
            if let Some(identity) = &mut config.identity {
                identity.issuer = issuer.issuer.clone();
            }
            let text = toml::to_string_pretty(&config).map_err(|e| dev_err(e.to_string()))?;
            std::fs::write(path, text).map_err(|e| NodeError::io(format!("write {}", path.display()), e))?;
            issue_node_cert(dir, *id, host)?;
        }
        Ok(())
    }

    /// Start node `id`: inside its namespace when one is given, else as `dev` always does.
    pub fn spawn_node(&self, exe: &Path, dir: &Path, id: u64, config: &Path) -> Result<Child, NodeError> {
        let Some(ns) = self.netns(id) else {
            return super::spawn_node(exe, dir, id, config);
        };
        let exe = exe.to_str().ok_or_else(|| dev_err(format!("{} is not UTF-8", exe.display())))?;
        // `ip netns exec` execs the node, so the child's pid is the node's pid.
        super::spawn_logged(
            Path::new("ip"),
            dir,
            &format!("node{id}"),
            &["netns", "exec", ns, exe, "run", "--config"],
            config,
        )
    }
}

/// Re-issue `node<ID>.pem` naming `localhost`, `127.0.0.1` (as the playground CA's
/// certificates always do) and the node's own address, signed by the playground CA.
fn issue_node_cert(dir: &Path, id: u64, host: IpAddr) -> Result<(), NodeError> {
    let err = |e: rcgen::Error| dev_err(format!("certificate for node {id}: {e}"));
    let read =
        |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| NodeError::io(format!("read {name}"), e));
    let ca_key = KeyPair::from_pem(&read("ca.key")?).map_err(err)?;
    let issuer = Issuer::from_ca_cert_pem(&read("ca.pem")?, ca_key).map_err(err)?;
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string(), host.to_string()])
        .map_err(err)?;
    params.distinguished_name.push(DnType::CommonName, format!("portcullis node {id}"));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    let write = |name: String, text: String| {
        let path = dir.join(&name);
        std::fs::write(&path, text).map_err(|e| NodeError::io(format!("write {name}"), e))?;
        Ok::<PathBuf, NodeError>(path)
    };
    write(format!("node{id}.pem"), cert.pem())?;
    let key_path = write(format!("node{id}.key"), key.serialize_pem())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| NodeError::io("chmod node key", e))
}
