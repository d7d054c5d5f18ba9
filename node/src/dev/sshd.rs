//! `portcullis dev --ssh`: a throwaway OpenSSH server behind the playground.
//!
//! Everything lives in `DIR/sshd/`: a host key, the key pair the gateway logs in with
//! (`client_key`, whose public half is the only authorized key), `sshd_config` and the
//! pid file; sshd's own log is `DIR/sshd.log`. sshd runs on loopback as root's or the
//! caller's child; logins go to one unprivileged account, `portcullis-demo`, when we are
//! root (CI and sessions are), otherwise to the caller. `mod.rs` registers it as
//! resource `demo-ssh` with [`DEMO_SSH_POLICY`].

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::postgres::{is_root, let_others_traverse, run};
use crate::error::NodeError;

fn err(detail: impl Into<String>) -> NodeError {
    NodeError::Dev(detail.into())
}

/// sshd refuses to start by a relative path (it re-executes itself per connection).
const SSHD: &str = "/usr/sbin/sshd";
/// The account logins land in when we run as root.
pub const DEMO_USER: &str = "portcullis-demo";

/// The playground's sshd, as `mod.rs` registers it and cluster.json describes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SshdInfo {
    pub port: u16,
    pub pid: u32,
    /// `DIR/sshd`: keys, config, pid file.
    pub dir: PathBuf,
    /// The account every login lands in.
    pub user: String,
    /// The public host key line (`ssh-ed25519 AAAA...`, no comment), pinned by the
    /// resource so the gateway can check whom it talks to.
    pub host_key: String,
    /// The OpenSSH private key (PEM) the gateway logs in with; never serialized.
    #[serde(skip)]
    pub client_key: String,
    pub log: PathBuf,
}

/// What a restart must keep: the port the resource is registered with, and the user.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    port: u16,
    user: String,
}

pub const DEMO_SSH_POLICY: &str = r#"# The playground's demo policy for resource demo-ssh (see docs/policy.md).
name: demo-ssh
rules:
  # only_commands: every program of the line must be one of these (`ls; python3 x`
  # does not fit), wherever it hides; writes: false keeps out lines that redirect into
  # files (`echo x > notes.txt`). env, find, sort and uniq are left out: they run other
  # programs or write files by themselves (`env python3`, `find -exec`, `sort -o`).
  - name: engineers-read-only
    match:
      groups: [engineers]
      resources: [demo-ssh]
      kinds: [exec]
      only_commands: [ls, cat, head, tail, grep, ps, df, du, uptime, whoami, id, echo, pwd, wc, stat, uname, date, hostname, free, printenv, tty, "true"]
      writes: false
    action: allow
  - name: changes-need-approval
    match:
      groups: [engineers]
      resources: [demo-ssh]
      kinds: [exec]
      commands: [rm, kill, pkill, systemctl, chmod, chown, mv, cp, touch, mkdir, tee, find]
    action: review
    reason: "changing files or processes on demo-ssh needs a second pair of eyes"
    approvers: { groups: [approvers], count: 1 }
    timeout: 10m
  - name: no-power-or-disk-wiping
    match: { resources: [demo-ssh], commands: [shutdown, reboot, halt, poweroff, "mkfs*", dd] }
    action: deny
    reason: "shutting the host down or writing raw disks is never allowed on demo-ssh"
  - name: shells-need-approval
    match: { groups: [engineers], resources: [demo-ssh], kinds: [shell] }
    action: review
    reason: "an interactive shell on demo-ssh runs whatever is typed; an approver lets it start"
    approvers: { groups: [approvers], count: 1 }
    timeout: 10m
  # Forwarding (kind forward) has no rule: denied by default.
  - name: engineers-copy-files
    match: { groups: [engineers], resources: [demo-ssh], kinds: [scp, sftp] }
    action: allow
"#;

/// Create keys and config (first run) and start sshd on `port_if_new`, or find the
/// one already running for `dir`; returns where it is.
pub fn ensure_running(dir: &Path, port_if_new: u16) -> Result<SshdInfo, NodeError> {
    let home = dir.join("sshd");
    let saved_path = home.join("sshd.json");
    let saved = if saved_path.exists() {
        let text = std::fs::read_to_string(&saved_path).map_err(|e| NodeError::io("read sshd/sshd.json", e))?;
        serde_json::from_str::<Saved>(&text).map_err(|e| err(format!("sshd/sshd.json: {e}")))?
    } else {
        Saved { port: port_if_new, user: login_user()? }
    };
    if is_root() {
        ensure_demo_user()?;
    }
    std::fs::create_dir_all(&home).map_err(|e| NodeError::io("create sshd dir", e))?;
    // sshd reads authorized_keys as the login user: it must reach and read it.
    chmod(&home, 0o755)?;
    if is_root() {
        let_others_traverse(dir);
    }
    let host_key = home.join("host_ed25519");
    let client_key = home.join("client_key");
    for key in [&host_key, &client_key] {
        if !key.exists() {
            keygen(key)?;
        }
    }
    let authorized = home.join("authorized_keys");
    let client_pub = read(&client_key.with_extension("pub"))?;
    std::fs::write(&authorized, client_pub).map_err(|e| NodeError::io("write authorized_keys", e))?;
    chmod(&authorized, 0o644)?;
    let config = home.join("sshd_config");
    std::fs::write(&config, render_config(&home, saved.port, &saved.user))
        .map_err(|e| NodeError::io("write sshd_config", e))?;
    let text = serde_json::to_string_pretty(&saved).map_err(|e| err(e.to_string()))?;
    std::fs::write(&saved_path, text).map_err(|e| NodeError::io("write sshd/sshd.json", e))?;

    let log = dir.join("sshd.log");
    let pid = match running_pid(&home) {
        Some(pid) => pid,
        None => start(&config, &log, saved.port)?,
    };
    Ok(SshdInfo {
        port: saved.port,
        pid,
        dir: home,
        user: saved.user,
        host_key: public_key_line(&read(&host_key.with_extension("pub"))?)?,
        client_key: read(&client_key)?,
        log,
    })
}

/// Stop the playground's sshd (connections already open keep their own processes
/// until they end).
pub fn stop(info: &SshdInfo) {
    let _ = Command::new("kill").arg("-TERM").arg(info.pid.to_string()).status();
}

fn read(path: &Path) -> Result<String, NodeError> {
    std::fs::read_to_string(path).map_err(|e| NodeError::io(format!("read {}", path.display()), e))
}

fn chmod(path: &Path, mode: u32) -> Result<(), NodeError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| NodeError::io(format!("chmod {}", path.display()), e))
}

/// `ssh-ed25519 AAAA... comment` → `ssh-ed25519 AAAA...`.
fn public_key_line(text: &str) -> Result<String, NodeError> {
    let mut fields = text.split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(kind), Some(key)) => Ok(format!("{kind} {key}")),
        _ => Err(err(format!("unexpected public key file: {text:?}"))),
    }
}

fn keygen(path: &Path) -> Result<(), NodeError> {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", "ed25519", "-N", "", "-C", "portcullis-dev", "-f"]).arg(path).stdin(Stdio::null());
    run(cmd, "ssh-keygen (install openssh-client)").map(|_| ())
}

fn render_config(home: &Path, port: u16, user: &str) -> String {
    let path = |name: &str| home.join(name).display().to_string();
    format!(
        "# Written by `portcullis dev --ssh`; rewritten on every start.
Port {port}
ListenAddress 127.0.0.1
HostKey \"{host_key}\"
PidFile \"{pid}\"
AuthorizedKeysFile \"{authorized}\"
AllowUsers {user}
PermitRootLogin no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# The playground dir belongs to whoever ran `dev`, not to the login user.
StrictModes no
Subsystem sftp internal-sftp
AllowTcpForwarding yes
# The gateway decides forwarding (kind `forward`); the host offers all of it.
AllowAgentForwarding yes
X11Forwarding yes
PermitUserEnvironment no
PrintMotd no
LogLevel VERBOSE
",
        host_key = path("host_ed25519"),
        pid = path("sshd.pid"),
        authorized = path("authorized_keys"),
    )
}

/// The pid in `home/sshd.pid` if that process is alive and is our sshd (a stale file
/// may name a pid some other process has since been given).
fn running_pid(home: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(home.join("sshd.pid")).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let ours = String::from_utf8_lossy(&cmdline).contains(&home.join("sshd_config").display().to_string());
    ours.then_some(pid)
}

/// Start `sshd -D` in the background and wait until it accepts connections.
fn start(config: &Path, log: &Path, port: u16) -> Result<u32, NodeError> {
    if !Path::new(SSHD).exists() {
        return Err(err(format!("{SSHD} not found; install it, e.g. `apt-get install openssh-server`")));
    }
    if is_root() {
        // Privilege separation needs its empty directory (tmpfs: gone after a reboot).
        std::fs::create_dir_all("/run/sshd").map_err(|e| NodeError::io("create /run/sshd", e))?;
        chmod(Path::new("/run/sshd"), 0o755)?;
    }
    let mut check = Command::new(SSHD);
    check.arg("-t").arg("-f").arg(config);
    run(check, "sshd -t (check sshd_config)")?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| NodeError::io(format!("open {}", log.display()), e))?;
    let mut child = Command::new(SSHD)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(out))
        .spawn()
        .map_err(|e| NodeError::io("start sshd", e))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(err(format!("sshd exited at once ({status}); see {}", log.display())));
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(child.id());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(err(format!("sshd does not accept connections on 127.0.0.1:{port} after 10 s; see {}", log.display())))
}

/// Root logs the demo in as [`DEMO_USER`]; anyone else as themselves (a non-root
/// sshd can only log in the user it runs as).
fn login_user() -> Result<String, NodeError> {
    if is_root() {
        return Ok(DEMO_USER.to_string());
    }
    let mut id = Command::new("id");
    id.arg("-un");
    let name = run(id, "id -un")?.trim().to_string();
    if name.is_empty() { Err(err("cannot tell the current user's name (id -un)")) } else { Ok(name) }
}

/// Create [`DEMO_USER`] if missing and seed its home with a few harmless files.
fn ensure_demo_user() -> Result<(), NodeError> {
    if !user_exists() {
        let mut add = Command::new("useradd");
        add.args(["-m", "-s", "/bin/bash", DEMO_USER]);
        // Another playground may be creating it at the same moment.
        if let Err(e) = run(add, "useradd")
            && !user_exists()
        {
            return Err(e);
        }
    }
    // useradd leaves the password field `!`, which sshd without PAM reads as a locked
    // account and refuses even key logins; `*` means "no password" and is not locked.
    let mut unlock = Command::new("usermod");
    unlock.args(["-p", "*", DEMO_USER]);
    run(unlock, "usermod -p '*'")?;
    let mut getent = Command::new("getent");
    getent.args(["passwd", DEMO_USER]);
    let home = run(getent, "getent passwd")?;
    let home = home.trim().split(':').nth(5).map(PathBuf::from).ok_or_else(|| err("no home for the demo user"))?;
    seed_home(&home)
}

fn user_exists() -> bool {
    Command::new("id").arg(DEMO_USER).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Demo files, written only when missing: several playgrounds share this home, and
/// what one session changed is not ours to undo.
fn seed_home(home: &Path) -> Result<(), NodeError> {
    let files: [(&str, &str); 3] = [
        ("notes.txt", "Welcome to the Portcullis SSH playground.\nEvery command you run here went through policy.\n"),
        (
            "logs/app.log",
            "2026-01-01T10:00:00Z INFO  app started\n2026-01-01T10:00:05Z WARN  cache miss rate 40%\n2026-01-01T10:01:00Z ERROR upstream timed out\n2026-01-01T10:02:00Z INFO  request served in 12 ms\n",
        ),
        ("data/report.csv", "region,orders\nnorth,120\nsouth,95\n"),
    ];
    for (name, text) in files {
        let path = home.join(name);
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| NodeError::io(format!("create {}", parent.display()), e))?;
        }
        std::fs::write(&path, text).map_err(|e| NodeError::io(format!("write {}", path.display()), e))?;
    }
    let mut chown = Command::new("chown");
    chown.arg("-R").arg(format!("{DEMO_USER}:")).arg(home);
    run(chown, "chown the demo home").map(|_| ())
}

#[cfg(test)]
mod tests;
