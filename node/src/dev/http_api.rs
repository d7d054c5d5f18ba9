//! `portcullis dev --http`: the demo HTTP API behind the playground, resource `demo-api`.
//!
//! The API itself is `demo_api.rs`, run as its own process (`portcullis dev demo-api`)
//! so it outlives `dev --detach` like the nodes do. Its state lives in `DIR/demo-api/`:
//! `demo-api.json` (the port, kept so a restart registers the same address), `key`
//! (the API key, 0600: the credential the gateway injects; it is never printed) and
//! `pid`. Its request log, one JSON line per request, is `DIR/demo-api-requests.log`;
//! its own stderr is `DIR/demo-api.log`. `mod.rs` registers it as resource `demo-api`
//! with [`DEMO_API_POLICY`] and lists it in cluster.json (`http_api`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use portcullis_api::proto::{AuditMode, Protocol, PutResourceRequest};

use crate::cli::HttpCredential;
use crate::error::NodeError;

fn err(detail: impl Into<String>) -> NodeError {
    NodeError::Dev(detail.into())
}

/// The playground's demo API, as `mod.rs` registers it and cluster.json describes it.
#[derive(Debug, Clone)]
pub struct ApiInfo {
    pub port: u16,
    pub pid: u32,
    /// `DIR/demo-api`: port, key and pid files.
    pub dir: PathBuf,
    /// The request log (JSON lines).
    pub log: PathBuf,
    /// The API key; goes to the resource's sealed secret, never to output.
    key: String,
}

impl ApiInfo {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.join("key")
    }

    /// cluster.json's `http_api` (paths and numbers only: no key).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "addr": self.addr(),
            "url": format!("http://{}", self.addr()),
            "log": self.log,
            "pid": self.pid,
            "dir": self.dir,
            "key_file": self.key_file(),
        })
    }

    /// The resource `demo-api`: the backend's URL, its key as a bearer credential
    /// (mapped exactly as `credential: { bearer: KEY }` in a resource file is), strict
    /// audit.
    pub fn resource(&self) -> Result<PutResourceRequest, NodeError> {
        let mut request = PutResourceRequest {
            name: "demo-api".into(),
            protocol: Protocol::Http as i32,
            address: format!("http://{}", self.addr()),
            username: None,
            secret: None,
            audit: AuditMode::Strict as i32,
            options: Default::default(),
            logins: vec![],
        };
        HttpCredential::Bearer(self.key.clone()).apply(&mut request).map_err(err)?;
        Ok(request)
    }
}

/// What a restart must keep: the port the resource is registered with.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    port: u16,
}

pub const DEMO_API_POLICY: &str = r#"# The playground's demo policy for resource demo-api (see docs/policy.md).
name: demo-api
rules:
  - name: engineers-read
    match: { groups: [engineers], resources: [demo-api], kinds: [get, head] }
    action: allow
  - name: engineers-echo-socket
    match: { groups: [engineers], resources: [demo-api], kinds: [websocket], paths: [/ws/echo] }
    action: allow
  - name: changes-need-approval
    match: { groups: [engineers], resources: [demo-api], kinds: [post, put, patch] }
    action: review
    reason: "changing orders through demo-api needs a second pair of eyes"
    approvers: { groups: [approvers], count: 1 }
    timeout: 10m
  - name: no-deletes
    match: { resources: [demo-api], kinds: [delete] }
    action: deny
    reason: "deleting through demo-api is never allowed; cancel an order with PATCH {\"status\": \"cancelled\"}"
  - name: mask-secrets
    match: { resources: [demo-api] }
    action: mask
    mask: { detectors: [email, api_key, jwt] }
"#;

/// Create the key (first run) and start the API on `port_if_new`, or find the one
/// already running for `dir`; returns where it is.
pub async fn ensure_running(dir: &Path, exe: &Path, port_if_new: u16) -> Result<ApiInfo, NodeError> {
    let home = dir.join("demo-api");
    std::fs::create_dir_all(&home).map_err(|e| NodeError::io("create demo-api dir", e))?;
    let saved_path = home.join("demo-api.json");
    let saved = if saved_path.exists() {
        let text = std::fs::read_to_string(&saved_path).map_err(|e| NodeError::io("read demo-api/demo-api.json", e))?;
        serde_json::from_str::<Saved>(&text).map_err(|e| err(format!("demo-api/demo-api.json: {e}")))?
    } else {
        let saved = Saved { port: port_if_new };
        let text = serde_json::to_string_pretty(&saved).map_err(|e| err(e.to_string()))?;
        std::fs::write(&saved_path, text).map_err(|e| NodeError::io("write demo-api/demo-api.json", e))?;
        saved
    };
    let key_path = home.join("key");
    if !key_path.exists() {
        write_key(&key_path)?;
    }
    let key = std::fs::read_to_string(&key_path).map_err(|e| NodeError::io("read demo-api/key", e))?.trim().to_string();
    let log = dir.join("demo-api-requests.log");
    let addr = format!("127.0.0.1:{}", saved.port);
    let pid = match running_pid(&home) {
        Some(pid) => pid,
        None => {
            let log_arg = log.display().to_string();
            let mut child = super::spawn_logged(
                exe,
                dir,
                "demo-api",
                &["dev", "demo-api", "--listen", &addr, "--log", &log_arg, "--key-file"],
                &key_path,
            )?;
            let pid = child.id().ok_or_else(|| err("the demo API exited at once; see demo-api.log"))?;
            if let Err(e) = super::wait_listening(&addr).await {
                let _ = child.kill().await;
                return Err(e);
            }
            std::fs::write(home.join("pid"), pid.to_string()).map_err(|e| NodeError::io("write demo-api/pid", e))?;
            pid
        }
    };
    Ok(ApiInfo { port: saved.port, pid, dir: home, log, key })
}

/// A fresh random key, readable by its owner only.
fn write_key(path: &Path) -> Result<(), NodeError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 24];
    ring::rand::SystemRandom::new().fill(&mut b).map_err(|_| err("cannot generate the demo API key"))?;
    let key: String = b.iter().map(|x| format!("{x:02x}")).collect();
    std::fs::write(path, format!("demo_{key}\n")).map_err(|e| NodeError::io("write demo-api/key", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| NodeError::io("chmod demo-api/key", e))
}

/// The pid in `home/pid` if that process is alive and is this playground's demo API
/// (a stale file may name a pid some other process has since been given).
fn running_pid(home: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(home.join("pid")).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    let ours = cmdline.contains("demo-api") && cmdline.contains(&home.join("key").display().to_string());
    ours.then_some(pid)
}

/// Stop the playground's demo API.
pub fn stop(info: &ApiInfo) {
    let _ = std::process::Command::new("kill").arg("-TERM").arg(info.pid.to_string()).status();
}

/// Start the demo API, register `demo-api` and apply its demo policy.
pub async fn setup(dir: &Path, endpoint: &str, ca: &[u8], token: &str) -> Result<ApiInfo, NodeError> {
    let exe = std::env::current_exe().map_err(|e| NodeError::io("locate the portcullis binary", e))?;
    let info = ensure_running(dir, &exe, super::free_port()?).await?;
    let registered = register(&info, endpoint, ca, token).await;
    if registered.is_err() {
        stop(&info);
    }
    registered.map(|()| info)
}

async fn register(info: &ApiInfo, endpoint: &str, ca: &[u8], token: &str) -> Result<(), NodeError> {
    let client = portcullis_api::client::AdminClient::connect(endpoint, Some(ca), Some(token.to_string()))
        .await
        .map_err(|e| err(e.to_string()))?;
    client.put_resource(info.resource()?).await.map_err(|e| err(format!("register resource demo-api: {e}")))?;
    client.put_policy("demo-api", DEMO_API_POLICY).await.map_err(|e| err(format!("apply the demo-api policy: {e}")))?;
    Ok(())
}

/// What to try, printed by `dev`: curl lines through node 1's HTTP door, and the API
/// directly (the key stays in its file: `$(cat ...)`).
pub fn print_steps(dir: &Path, door: Option<&str>, info: &ApiInfo) {
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "portcullis".into());
    let token =
        |sub: &str, groups: &str| format!("$({exe} dev token --dir {} --sub {sub} --groups {groups})", dir.display());
    let ca = dir.join("ca.pem");
    println!();
    println!("HTTP resource `demo-api` (the demo API on http://{}) with the demo-api policy:", info.addr());
    println!("  engineers may GET and HEAD; POST, PUT and PATCH wait for one approver; DELETE is denied;");
    println!("  emails, API keys and JWTs in responses are masked. The gateway injects the API's key:");
    println!("  clients present their own token, never the key.");
    if let Some(door) = door {
        let base = format!("https://{door}/r/demo-api");
        let curl =
            format!("curl --cacert {} -H \"Authorization: Bearer {}\"", ca.display(), token("alice", "engineers"));
        println!("Call it as alice (an engineer) through node 1's HTTP door:");
        println!("  {curl} {base}/orders    # allowed, emails masked");
        println!("  {curl} {base}/profile    # allowed, email, api_token and session masked");
        println!(
            "  {curl} -X POST -H 'Content-Type: application/json' -d '{{\"amount\": 25}}' {base}/orders/3/refund    # waits for approval"
        );
        println!("  {curl} -X DELETE {base}/orders/3    # denied");
        println!("Approve it as bob (an approver), from another terminal:");
        println!("  PORTCULLIS_TOKEN={} {exe} approvals list --pending", token("bob", "approvers"));
        println!("  ... {exe} approvals approve <id>");
    }
    println!("The API itself, bypassing the gateway (for comparison; its request log is {}):", info.log.display());
    println!("  curl -H \"Authorization: Bearer $(cat {})\" http://{}/orders", info.key_file().display(), info.addr());
}

#[cfg(test)]
mod tests;
