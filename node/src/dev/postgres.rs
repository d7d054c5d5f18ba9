//! `portcullis dev --postgres`: a throwaway Postgres behind the playground.
//!
//! initdb + pg_ctl from PATH or /usr/lib/postgresql/*/bin, run as the `postgres` user
//! when we are root (Postgres refuses to run as root). Seeds a `demo` database with
//! a `customers` table, registers it as resource `demo`, and applies a demo policy.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::NodeError;

fn err(detail: impl Into<String>) -> NodeError {
    NodeError::Dev(detail.into())
}

/// Where the playground's Postgres lives, kept in `DIR/postgres.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PgInfo {
    pub port: u16,
    pub data_dir: PathBuf,
    pub bin_dir: PathBuf,
    /// Password of the gateway's backend role `demo_app`.
    pub app_password: String,
    pub superuser_password: String,
}

pub const DEMO_POLICY: &str = r#"# The playground's demo policy (see docs/policy.md).
name: demo
rules:
  - name: engineers-read
    match: { groups: [engineers], resources: [demo], kinds: [select, show, set, transaction, explain, lock] }
    action: allow
  - name: engineers-copy-out
    match: { groups: [engineers], resources: [demo], kinds: [copy], writes: false }
    action: allow
  - name: writes-need-approval
    match: { groups: [engineers], resources: [demo], kinds: [insert, update, delete] }
    action: review
    reason: "writes to demo need a second pair of eyes"
    approvers: { groups: [approvers], count: 1 }
    timeout: 10m
  - name: no-truncate-or-ddl
    match: { resources: [demo], kinds: [truncate, ddl] }
    action: deny
    reason: "TRUNCATE, DROP and other DDL are never allowed on demo"
  - name: no-admin-functions
    match: { resources: [demo], functions: [pg_terminate_backend, pg_cancel_backend, "pg_read*file", pg_ls_dir, "lo_*", "dblink*", "query_to_xml*"] }
    action: deny
    reason: "server administration and dynamic-SQL functions are never allowed on demo"
  - name: no-two-phase
    match: { resources: [demo], kinds: [two_phase] }
    action: deny
    reason: "prepared transactions outlive their session and hold locks; never on demo"
  - name: no-dynamic-sql
    match: { resources: [demo], dynamic_sql: true }
    action: deny
    reason: "functions that run SQL the statement does not show (query_to_xml, table_to_xml, ...) would bypass masking; never allowed on demo"
  - name: mask-pii
    match: { resources: [demo] }
    action: mask
    mask: { columns: [email, ssn, "*password*"], detectors: [email, credit_card, ssn] }
"#;

/// Find the directory holding initdb and pg_ctl.
pub fn find_bin_dir() -> Result<PathBuf, NodeError> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
                // Resolve symlinks so the versioned bin dir (with postgres) is used.
                let real =
                    std::fs::canonicalize(dir.join("initdb")).ok().and_then(|p| p.parent().map(Path::to_path_buf));
                return Ok(real.unwrap_or(dir));
            }
        }
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).filter(|p| p.join("initdb").exists()).collect())
        .unwrap_or_default();
    candidates.sort();
    candidates.pop().ok_or_else(|| {
        err("no Postgres server found (initdb and pg_ctl on PATH or under /usr/lib/postgresql/*/bin); install it, e.g. `apt-get install postgresql`")
    })
}

pub(super) fn is_root() -> bool {
    // `id -u` avoids libc (the workspace forbids unsafe code).
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// Add search (x) permission for group and others to `dir` and every ancestor, so a
/// server running as another user reaches its files there (a temp dir is 0700). Only
/// traversal: nothing becomes listable or readable that was not.
pub(super) fn let_others_traverse(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut p = dir.to_path_buf();
    loop {
        if let Ok(meta) = std::fs::metadata(&p) {
            let mode = meta.permissions().mode() | 0o011;
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode));
        }
        if !p.pop() {
            break;
        }
    }
}

/// Run a Postgres tool, as the `postgres` user when we are root.
fn pg_command(bin: &Path, tool: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

pub(super) fn run(mut cmd: Command, what: &str) -> Result<String, NodeError> {
    let out = cmd.output().map_err(|e| err(format!("{what}: {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn random_password() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 18];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Create (first run) and start the playground's Postgres; returns where it is.
pub fn ensure_running(dir: &Path, port_if_new: u16) -> Result<PgInfo, NodeError> {
    let info_path = dir.join("postgres.json");
    let info = if info_path.exists() {
        let text = std::fs::read_to_string(&info_path).map_err(|e| NodeError::io("read postgres.json", e))?;
        serde_json::from_str::<PgInfo>(&text).map_err(|e| err(format!("postgres.json: {e}")))?
    } else {
        let bin_dir = find_bin_dir()?;
        let info = PgInfo {
            port: port_if_new,
            data_dir: dir.join("pgdata"),
            bin_dir,
            app_password: random_password(),
            superuser_password: random_password(),
        };
        init(dir, &info)?;
        let text = serde_json::to_string_pretty(&info).map_err(|e| err(e.to_string()))?;
        std::fs::write(&info_path, text).map_err(|e| NodeError::io("write postgres.json", e))?;
        info
    };
    start(dir, &info)?;
    Ok(info)
}

fn init(dir: &Path, info: &PgInfo) -> Result<(), NodeError> {
    std::fs::create_dir_all(&info.data_dir).map_err(|e| NodeError::io("create pgdata", e))?;
    let pwfile = dir.join("pg-superuser.pw");
    std::fs::write(&pwfile, format!("{}\n", info.superuser_password)).map_err(|e| NodeError::io("write pwfile", e))?;
    if is_root() {
        // The server runs as `postgres`: it must own its files and reach the directory.
        let mut chown = Command::new("chown");
        chown.args(["-R", "postgres:postgres"]).arg(&info.data_dir).arg(&pwfile);
        run(chown, "chown pgdata")?;
        let_others_traverse(dir);
    }
    let mut initdb = pg_command(&info.bin_dir, "initdb");
    initdb
        .arg("-D")
        .arg(&info.data_dir)
        .args(["-U", "postgres", "--auth=scram-sha-256", "-E", "UTF8", "--no-instructions"])
        .arg(format!("--pwfile={}", pwfile.display()));
    run(initdb, "initdb")?;
    let _ = std::fs::remove_file(&pwfile);
    // TLS for the gateway's backend connections (resource option sslmode): the
    // playground CA's node certificate names 127.0.0.1.
    for (from, to) in [("node1.pem", "server.crt"), ("node1.key", "server.key")] {
        let target = info.data_dir.join(to);
        std::fs::copy(dir.join(from), &target).map_err(|e| NodeError::io(format!("copy {from} into pgdata"), e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| NodeError::io("chmod server key", e))?;
        if is_root() {
            let mut chown = Command::new("chown");
            chown.arg("postgres:postgres").arg(&target);
            run(chown, "chown server certificate")?;
        }
    }
    Ok(())
}

fn start(dir: &Path, info: &PgInfo) -> Result<(), NodeError> {
    let mut status = pg_command(&info.bin_dir, "pg_ctl");
    status.arg("status").arg("-D").arg(&info.data_dir);
    if status.output().map(|o| o.status.success()).unwrap_or(false) {
        return Ok(());
    }
    let log = dir.join("postgres.log");
    if is_root() {
        let _ = std::fs::File::create(&log);
        let _ = Command::new("chown").args(["postgres:postgres"]).arg(&log).status();
    }
    let mut pg_ctl = pg_command(&info.bin_dir, "pg_ctl");
    pg_ctl.arg("start").arg("-w").arg("-D").arg(&info.data_dir).arg("-l").arg(&log).arg("-o").arg(format!(
        "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c log_statement=all -c ssl=on",
        info.port
    ));
    run(pg_ctl, "pg_ctl start")?;
    Ok(())
}

/// Stop the playground's Postgres.
pub fn stop(info: &PgInfo) {
    let mut pg_ctl = pg_command(&info.bin_dir, "pg_ctl");
    pg_ctl.arg("stop").arg("-m").arg("fast").arg("-D").arg(&info.data_dir);
    let _ = pg_ctl.output();
}

/// Run SQL as the superuser through psql.
fn psql(info: &PgInfo, db: &str, sql: &str) -> Result<String, NodeError> {
    let psql = info.bin_dir.join("psql");
    let psql = if psql.exists() { psql } else { PathBuf::from("psql") };
    let mut cmd = Command::new(psql);
    cmd.args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
        "-p",
        &info.port.to_string(),
        "-U",
        "postgres",
        "-d",
        db,
        "-c",
        sql,
    ])
    .env("PGPASSWORD", &info.superuser_password);
    run(cmd, "psql")
}

/// Create the demo database, role and seed data (idempotent).
pub fn seed(info: &PgInfo) -> Result<(), NodeError> {
    let exists = psql(info, "postgres", "SELECT 1 FROM pg_database WHERE datname = 'demo'")?;
    if exists.contains('1') {
        return Ok(());
    }
    psql(info, "postgres", &format!("CREATE ROLE demo_app LOGIN PASSWORD '{}'", info.app_password))?;
    psql(info, "postgres", "CREATE DATABASE demo OWNER demo_app")?;
    let seed = "CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text, ssn text);
        ALTER TABLE customers OWNER TO demo_app;
        INSERT INTO customers (name, email, ssn) VALUES
          ('Ada Lovelace', 'ada@example.com', '123-45-6789'),
          ('Alan Turing', 'alan@example.com', '234-56-7890'),
          ('Grace Hopper', 'grace@example.com', '345-67-8901'),
          ('Edsger Dijkstra', 'edsger@example.com', '456-78-9012'),
          ('Barbara Liskov', 'barbara@example.com', '567-89-0123'),
          ('Donald Knuth', 'donald@example.com', '678-90-1234'),
          ('Frances Allen', 'frances@example.com', '789-01-2345'),
          ('Ken Thompson', 'ken@example.com', '321-54-9876'),
          ('Margaret Hamilton', 'margaret@example.com', '432-65-0987'),
          ('John McCarthy', 'john@example.com', '543-76-1098'),
          ('Radia Perlman', 'radia@example.com', '654-87-2109'),
          ('Leslie Lamport', 'leslie@example.com', '765-98-3210');
        GRANT ALL ON ALL TABLES IN SCHEMA public TO demo_app;
        GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO demo_app;";
    psql(info, "demo", seed)?;
    Ok(())
}
