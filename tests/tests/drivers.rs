//! Real client drivers through the Postgres door on resources with mask rules:
//! SQLAlchemy 2's ORM over psycopg2 (create, multi-row insert with RETURNING, query,
//! reflection), asyncpg (binary results, a prepared statement run past the point where
//! drivers switch to server-side plans) and pgjdbc (past its prepareThreshold: a
//! server-side statement with binary transfer). Masked values come back masked and
//! decodable; nothing else breaks. The Python drivers live in a venv
//! `scripts/install-deps.sh` makes (pins in tests/python/requirements.txt); pgjdbc is
//! Debian's `libpostgresql-jdbc-java`, run with java's source launcher.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use portcullis_tests::{Cluster, err, out};

/// The drivers' Python, or why the test cannot run.
fn python() -> Result<PathBuf, String> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or("neither XDG_CACHE_HOME nor HOME is set")?;
    let python = cache.join("portcullis-ci/drivers/bin/python");
    if python.exists() {
        Ok(python)
    } else {
        Err(format!("{} is missing: run scripts/install-deps.sh (CI does)", python.display()))
    }
}

/// Run `tests/python/<script>` against node 1's door on `resource` as alice (an
/// engineer); its last stdout line is JSON.
fn run(c: &Cluster, python: &PathBuf, script: &str, resource: &str) -> serde_json::Value {
    let (_, port) = c.pg_addr(1);
    let token = c.engineer_token();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python").join(script);
    let o = Command::new(python)
        .arg(&path)
        .args([port.as_str(), token.as_str(), c.ca().to_str().unwrap(), resource])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{script} failed: {}\n{}", err(&o), c.logs());
    serde_json::from_str(out(&o).lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{script}: {e}: {}", out(&o)))
}

#[test]
fn sqlalchemy_orm_and_asyncpg_work_on_masked_resources_and_never_see_a_masked_value() {
    let python = match python() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let c = Cluster::start_with_postgres(1);
    // asyncpg on `demo` (email and ssn masked, detectors on).
    let v = run(&c, &python, "asyncpg_prepared.py", "demo");
    assert_eq!(v["rows"][0], serde_json::json!([1, "Ada Lovelace", "***", "***"]), "{v}");
    assert!(v["repeated"].as_array().unwrap().iter().all(|r| r == &serde_json::json!([1, "***"])), "{v}");
    assert_eq!(v["count"], 12);

    // SQLAlchemy's ORM on a resource where engineers may create tables, email masked.
    c.backend_psql("GRANT CREATE ON SCHEMA public TO demo_app");
    let pg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(c.path().join("postgres.json")).unwrap()).unwrap();
    let resource = c.path().join("orm.yaml");
    std::fs::write(
        &resource,
        format!(
            "name: orm\nprotocol: postgres\naddress: 127.0.0.1:{}\nusername: demo_app\npassword: {}\noptions: {{ database: demo }}\n",
            pg["port"],
            pg["app_password"].as_str().unwrap()
        ),
    )
    .unwrap();
    c.cli_ok(1, &["resource", "apply", "-f", resource.to_str().unwrap()]);
    let policy = c.path().join("orm-policy.yaml");
    std::fs::write(
        &policy,
        "name: orm\nrules:\n  - match: { groups: [engineers], resources: [orm], kinds: [select, insert, update, delete, ddl, transaction, set, show] }\n    action: allow\n  - match: { resources: [orm] }\n    action: mask\n    mask: { columns: [email] }\n",
    )
    .unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", policy.to_str().unwrap()]);
    let v = run(&c, &python, "sqlalchemy_orm.py", "orm");
    assert_eq!(v["ids"], serde_json::json!([1, 2, 3, 4, 5]), "RETURNING ids came back wrong: {v}");
    assert_eq!(v["rows"][0], serde_json::json!([1, "p0", "***"]), "{v}");
    assert!(!v.to_string().contains("@example.com"), "a masked value reached the driver: {v}");
    assert_eq!(v["columns"], serde_json::json!(["email", "id", "name"]));
}

#[test]
fn jdbc_keeps_decoding_masked_rows_after_it_switches_to_a_server_side_statement() {
    let jar = PathBuf::from("/usr/share/java/postgresql.jar");
    let java_ok = Command::new("javac").arg("-version").output().is_ok_and(|o| o.status.success());
    if !jar.exists() || !java_ok {
        eprintln!("SKIPPED: pgjdbc ({}) or a JDK is missing: run scripts/install-deps.sh (CI does)", jar.display());
        return;
    }
    let c = Cluster::start_with_postgres(1);
    let (host, port) = c.pg_addr(1);
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("java/JdbcMasked.java");
    let o = Command::new("java")
        .arg("-cp")
        .arg(&jar)
        .arg(&source)
        .args([host.as_str(), port.as_str(), c.engineer_token().as_str(), c.ca().to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "JDBC failed: {}\n{}", err(&o), c.logs());
    let v: serde_json::Value = serde_json::from_str(out(&o).lines().last().unwrap_or_default()).unwrap();
    assert_eq!(v["ids"], 10, "{v}");
    let rows = v["rows"].as_str().unwrap();
    assert_eq!(rows.matches("Ada Lovelace|***|***;").count(), 10, "{rows}");
    assert!(!rows.contains("@example.com"), "{rows}");
}
