//! Node configuration: one TOML file per node, every key overridable by environment.
//!
//! An environment variable `PORTCULLIS_<KEY>` overrides a top-level key and
//! `PORTCULLIS_<SECTION>__<KEY>` a key in a section, e.g. `PORTCULLIS_RAFT__LEASE_MS=500`
//! or `PORTCULLIS_LISTEN__OPS=127.0.0.1:9000`. Lists (`peers`) take a TOML array.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_raft::Member;
use portcullis_raft::network::tls::TlsPaths;
use portcullis_raft::node::Timing;
use serde::{Deserialize, Serialize};

use crate::error::NodeError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id, unique in the cluster, from 1.
    pub id: u64,
    /// Where the node keeps its database and snapshots.
    pub data_dir: PathBuf,
    /// File with the cluster data key (32 bytes, base64); the same on every node.
    pub key_file: PathBuf,
    pub listen: Listen,
    /// Addresses other nodes and clients use to reach this node; defaults to `listen`.
    #[serde(default)]
    pub advertise: Advertise,
    pub tls: TlsPaths,
    /// The initial voters, used by `cluster init`. Include this node.
    #[serde(default)]
    pub peers: Vec<Peer>,
    #[serde(default)]
    pub raft: RaftTuning,
    /// The OIDC provider whose tokens this node accepts. Without it every
    /// authenticated call is refused (fail closed).
    #[serde(default)]
    pub identity: Option<portcullis_proxy::identity::IdentityConfig>,
    /// Which groups hold the admin API's roles.
    #[serde(default)]
    pub authz: portcullis_api::auth::Roles,
    /// What SIGTERM does (graceful shutdown).
    #[serde(default)]
    pub shutdown: ShutdownSettings,
    /// Bounds on what one client may make the doors hold (docs/policy.md, "Limits").
    #[serde(default)]
    pub limits: DoorLimits,
    /// The HTTP door's routing.
    #[serde(default)]
    pub http: HttpRouting,
    /// The web console's sign-in (it listens on `listen.console`).
    #[serde(default)]
    pub console: ConsoleSettings,
}

/// The web console's OIDC client (authorization code with PKCE against `[identity]
/// issuer`). The console itself is on when `listen.console` is set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// The client id registered with the provider for the console (a public client).
    pub client_id: String,
    /// The URL browsers use to reach this node's console, without a trailing slash; the
    /// redirect URI is `<public_url>/auth/callback`. Empty: `https://<listen.console>`.
    pub public_url: String,
    /// Scopes asked for at sign-in, space-separated; must include `openid`. Add the one
    /// your provider needs to put groups in tokens (`groups` at some providers).
    pub scopes: String,
    /// An RFC 8707 resource indicator sent with the sign-in and the code exchange, for
    /// providers that issue a JWT access token for the gateway only when asked for it by
    /// name (e.g. `urn:portcullis`). Empty: none.
    pub resource: String,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            client_id: "portcullis-console".into(),
            public_url: String::new(),
            scopes: "openid profile email".into(),
            resource: String::new(),
        }
    }
}

/// How the HTTP door finds a request's resource besides `/r/<resource>/`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpRouting {
    /// With `gw.example`, a request for host `<resource>.gw.example` goes to that
    /// resource with its path as it is (point a wildcard DNS name and certificate at the
    /// doors). Empty: only `/r/<resource>/<path>`.
    pub base_domain: String,
}

/// Bounds on what one client may make a node hold. Each has a protocol-native error
/// when hit; the defaults suit the playground and most deployments.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DoorLimits {
    /// Largest single client message (a Postgres Query, Parse, Bind, CopyData).
    pub max_message_bytes: usize,
    /// Extended-protocol messages buffered before a Sync: bytes and count.
    pub max_batch_bytes: usize,
    pub max_batch_messages: usize,
    /// A session idle inside a transaction block this long is ended; 0: never.
    pub idle_in_transaction_secs: u64,
    /// Longest text kept in an audit record or approval request (longer ones are cut,
    /// with their length and SHA-256 kept).
    pub record_text_max_bytes: usize,
    /// Sessions one identity may have open on this node at once.
    pub max_sessions_per_identity: usize,
    /// SSH: seconds a client has to log in; channels per connection; bytes of a
    /// command's output kept (masked) in its record; bytes of one terminal's recording
    /// (past it strict audit ends the channel, fast marks the recording truncated).
    pub ssh_login_timeout_secs: u64,
    pub ssh_max_channels: usize,
    pub ssh_output_preview_bytes: usize,
    pub ssh_recording_max_bytes: usize,
    /// HTTP: connections per node; seconds for the TLS handshake and a request's head,
    /// and for its body; request headers (count, bytes in all); a request body's bytes
    /// (a resource may lower it); bytes of a body read as JSON for `match.json`; a JSON
    /// response masked whole (larger ones line by line); bytes of bodies kept (masked)
    /// in records; seconds to connect to the backend; a WebSocket frame's and message's
    /// bytes (past either the connection is closed), and a backend's WebSocket message
    /// masked on the wire (kept whole up to this; past it the connection is closed);
    /// seconds a WebSocket may stay silent both ways before it is closed (0: never).
    pub http_max_connections: usize,
    pub http_header_timeout_secs: u64,
    pub http_body_timeout_secs: u64,
    pub http_max_headers: usize,
    pub http_max_header_bytes: usize,
    pub http_max_body_bytes: usize,
    pub http_max_json_inspect_bytes: usize,
    pub http_max_masked_json_bytes: usize,
    pub http_preview_bytes: usize,
    pub http_upstream_timeout_secs: u64,
    pub http_max_websocket_frame_bytes: u64,
    pub http_max_websocket_message_bytes: u64,
    pub http_max_masked_websocket_message_bytes: u64,
    pub http_websocket_idle_secs: u64,
}

impl Default for DoorLimits {
    fn default() -> Self {
        let pg = portcullis_proxy::postgres::PgSettings::default();
        let gate = portcullis_proxy::gate::GateSettings::default();
        let ssh = portcullis_proxy::ssh::SshSettings::default();
        let http = portcullis_proxy::http::HttpSettings::default();
        DoorLimits {
            max_message_bytes: pg.max_message,
            max_batch_bytes: pg.max_batch_bytes,
            max_batch_messages: pg.max_batch_messages,
            idle_in_transaction_secs: pg.idle_in_transaction.as_secs(),
            record_text_max_bytes: gate.record_text_max,
            max_sessions_per_identity: gate.max_sessions_per_identity,
            ssh_login_timeout_secs: ssh.login_timeout.as_secs(),
            ssh_max_channels: ssh.max_channels,
            ssh_output_preview_bytes: ssh.preview_bytes,
            ssh_recording_max_bytes: ssh.recording_max_bytes,
            http_max_connections: http.max_connections,
            http_header_timeout_secs: http.header_timeout.as_secs(),
            http_body_timeout_secs: http.body_timeout.as_secs(),
            http_max_headers: http.max_headers,
            http_max_header_bytes: http.max_header_bytes,
            http_max_body_bytes: http.max_body_bytes,
            http_max_json_inspect_bytes: http.max_json_inspect_bytes,
            http_max_masked_json_bytes: http.max_masked_json_bytes,
            http_preview_bytes: http.preview_bytes,
            http_upstream_timeout_secs: http.upstream_timeout.as_secs(),
            http_max_websocket_frame_bytes: http.max_websocket_frame_bytes,
            http_max_websocket_message_bytes: http.max_websocket_message_bytes,
            http_max_masked_websocket_message_bytes: http.max_masked_websocket_message_bytes,
            http_websocket_idle_secs: http.websocket_idle_timeout.as_secs(),
        }
    }
}

impl DoorLimits {
    pub fn gate(&self) -> portcullis_proxy::gate::GateSettings {
        portcullis_proxy::gate::GateSettings {
            record_text_max: self.record_text_max_bytes,
            max_sessions_per_identity: self.max_sessions_per_identity,
            ..Default::default()
        }
    }

    pub fn postgres(&self) -> portcullis_proxy::postgres::PgSettings {
        portcullis_proxy::postgres::PgSettings {
            max_message: self.max_message_bytes,
            max_batch_bytes: self.max_batch_bytes,
            max_batch_messages: self.max_batch_messages,
            idle_in_transaction: Duration::from_secs(self.idle_in_transaction_secs),
            ..Default::default()
        }
    }

    pub fn ssh(&self) -> portcullis_proxy::ssh::SshSettings {
        portcullis_proxy::ssh::SshSettings {
            login_timeout: Duration::from_secs(self.ssh_login_timeout_secs),
            max_channels: self.ssh_max_channels,
            preview_bytes: self.ssh_output_preview_bytes,
            recording_max_bytes: self.ssh_recording_max_bytes,
            ..Default::default()
        }
    }

    /// The HTTP door's settings; `routing` adds the base domain.
    pub fn http(&self, routing: &HttpRouting) -> portcullis_proxy::http::HttpSettings {
        let base = routing.base_domain.trim().trim_matches('.');
        portcullis_proxy::http::HttpSettings {
            max_connections: self.http_max_connections,
            header_timeout: Duration::from_secs(self.http_header_timeout_secs),
            body_timeout: Duration::from_secs(self.http_body_timeout_secs),
            max_headers: self.http_max_headers,
            max_header_bytes: self.http_max_header_bytes,
            max_body_bytes: self.http_max_body_bytes,
            max_json_inspect_bytes: self.http_max_json_inspect_bytes,
            max_masked_json_bytes: self.http_max_masked_json_bytes,
            preview_bytes: self.http_preview_bytes,
            upstream_timeout: Duration::from_secs(self.http_upstream_timeout_secs),
            max_websocket_frame_bytes: self.http_max_websocket_frame_bytes,
            max_websocket_message_bytes: self.http_max_websocket_message_bytes,
            max_masked_websocket_message_bytes: self.http_max_masked_websocket_message_bytes,
            websocket_idle_timeout: Duration::from_secs(self.http_websocket_idle_secs),
            base_domain: (!base.is_empty()).then(|| base.to_ascii_lowercase()),
            // The backend pool keeps its defaults (BENCHMARKS.md measured them).
            ..Default::default()
        }
    }
}

/// Graceful shutdown on SIGTERM: fail /readyz and stop accepting at once, close idle
/// sessions, let running statements finish for up to `grace_secs`, flush the audit,
/// then leave the cluster's traffic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownSettings {
    pub grace_secs: u64,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        ShutdownSettings { grace_secs: 30 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Node-to-node gRPC (mutual TLS).
    pub raft: String,
    /// Admin gRPC API (TLS).
    pub admin: String,
    /// /healthz, /readyz, /metrics (plain HTTP; keep it on a private interface).
    pub ops: String,
    /// The Postgres door (TLS required); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg: Option<String>,
    /// The SSH door; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<String>,
    /// The HTTP door (TLS required); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// The web console (HTTPS with the node's certificate); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Advertise {
    #[serde(default)]
    pub raft: String,
    #[serde(default)]
    pub admin: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub id: u64,
    pub raft: String,
    pub admin: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTuning {
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    pub write_deadline_ms: u64,
    /// Build a snapshot after this many entries; never sooner after the last build than
    /// five times what it took (a snapshot copies the whole state, audit included).
    pub snapshot_after_entries: u64,
    /// Closed sessions (with their events) and decided approvals older than this many
    /// days are pruned; 0 keeps them forever.
    pub retention_days: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        let t = Timing::default();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        RaftTuning {
            lease_ms: ms(t.lease),
            heartbeat_ms: ms(t.heartbeat),
            election_min_ms: ms(t.election_min),
            election_max_ms: ms(t.election_max),
            write_deadline_ms: ms(t.write_deadline),
            snapshot_after_entries: 5000,
            retention_days: 0,
        }
    }
}

impl RaftTuning {
    pub fn timing(&self) -> Timing {
        Timing {
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            election_min: Duration::from_millis(self.election_min_ms),
            election_max: Duration::from_millis(self.election_max_ms),
            lease: Duration::from_millis(self.lease_ms),
            write_deadline: Duration::from_millis(self.write_deadline_ms),
        }
    }
}

impl NodeConfig {
    /// The console's public URL (`console.public_url`, else `https://<listen.console>`);
    /// `None` when the console is off.
    pub fn console_url(&self) -> Option<String> {
        let listen = self.listen.console.as_ref()?;
        let url = self.console.public_url.trim().trim_end_matches('/');
        Some(if url.is_empty() { format!("https://{listen}") } else { url.to_string() })
    }

    /// Read `path`, apply environment overrides from `env`, and check the result.
    pub fn load(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, NodeError> {
        let err = |detail: String| NodeError::Config { path: path.to_path_buf(), detail };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&text, env).map_err(err)
    }

    pub fn parse(text: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, String> {
        let parsed: NodeConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        // Round-trip through a value holding every key (defaults included), so each key
        // can be overridden, then decode again so overrides are type-checked.
        let mut value = toml::Value::try_from(&parsed).map_err(|e| e.to_string())?;
        let env: BTreeMap<String, String> = env.into_iter().filter(|(k, _)| k.starts_with("PORTCULLIS_")).collect();
        apply_env(&mut value, "PORTCULLIS", &env)?;
        let config: NodeConfig = value.try_into().map_err(|e: toml::de::Error| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("id: must be 1 or more (0 is reserved)".into());
        }
        if !self.peers.is_empty() && !self.peers.iter().any(|p| p.id == self.id) {
            let ids: Vec<u64> = self.peers.iter().map(|p| p.id).collect();
            return Err(format!("peers: node id {} is not among the peers {ids:?}", self.id));
        }
        if let Some(identity) = &self.identity {
            identity.check()?;
        }
        let base = self.http.base_domain.trim().trim_matches('.');
        if !base.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') || base.contains("..") {
            return Err(format!("http.base_domain: {base:?} is not a DNS name (e.g. gw.example)"));
        }
        let l = &self.limits;
        for (key, secs) in [
            ("http_header_timeout_secs", l.http_header_timeout_secs),
            ("http_body_timeout_secs", l.http_body_timeout_secs),
            ("http_upstream_timeout_secs", l.http_upstream_timeout_secs),
        ] {
            if secs == 0 {
                return Err(format!("limits.{key}: must be 1 or more"));
            }
        }
        let url = self.console.public_url.trim();
        if !url.is_empty() && !url.starts_with("https://") {
            return Err(format!("console.public_url: {url:?} must be an https:// URL (the session cookie is Secure)"));
        }
        if !self.console.scopes.split_whitespace().any(|s| s == "openid") {
            return Err(format!("console.scopes {:?} must include openid", self.console.scopes));
        }
        if self.console.client_id.trim().is_empty() {
            return Err("console.client_id is empty: set the client id registered for the console".into());
        }
        let r = &self.raft;
        if r.lease_ms == 0 || r.lease_ms >= r.election_min_ms {
            return Err(format!(
                "raft.lease_ms ({}) must be above 0 and below raft.election_min_ms ({})",
                r.lease_ms, r.election_min_ms
            ));
        }
        if r.election_min_ms >= r.election_max_ms || r.heartbeat_ms >= r.election_min_ms {
            return Err("raft: need heartbeat_ms < election_min_ms < election_max_ms".into());
        }
        Ok(())
    }

    pub fn member(&self) -> Member {
        let pick = |adv: &str, listen: &str| if adv.is_empty() { listen.to_string() } else { adv.to_string() };
        Member {
            raft_addr: pick(&self.advertise.raft, &self.listen.raft),
            admin_addr: pick(&self.advertise.admin, &self.listen.admin),
        }
    }

    pub fn peer_members(&self) -> BTreeMap<u64, Member> {
        self.peers.iter().map(|p| (p.id, Member { raft_addr: p.raft.clone(), admin_addr: p.admin.clone() })).collect()
    }
}

/// Override leaves of `value` from `PREFIX_<PATH>` variables (`__` between levels).
fn apply_env(value: &mut toml::Value, prefix: &str, env: &BTreeMap<String, String>) -> Result<(), String> {
    let toml::Value::Table(table) = value else { return Ok(()) };
    for (key, slot) in table.iter_mut() {
        let name = format!("{prefix}{}{}", if prefix == "PORTCULLIS" { "_" } else { "__" }, key.to_uppercase());
        if let toml::Value::Table(_) = slot {
            apply_env(slot, &name, env)?;
            continue;
        }
        let Some(raw) = env.get(&name) else { continue };
        let parsed = match slot {
            toml::Value::Integer(_) => raw
                .trim()
                .parse::<i64>()
                .map(toml::Value::Integer)
                .map_err(|_| format!("{name}: expected an integer, got {raw:?}"))?,
            toml::Value::Boolean(_) => raw
                .trim()
                .parse::<bool>()
                .map(toml::Value::Boolean)
                .map_err(|_| format!("{name}: expected true or false, got {raw:?}"))?,
            toml::Value::Array(_) => {
                let doc: toml::Table =
                    toml::from_str(&format!("v = {raw}")).map_err(|e| format!("{name}: expected a TOML array: {e}"))?;
                doc.get("v").cloned().ok_or_else(|| format!("{name}: expected a TOML array"))?
            }
            _ => toml::Value::String(raw.clone()),
        };
        *slot = parsed;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
