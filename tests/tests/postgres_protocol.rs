//! The Postgres door at the protocol level: a real driver (tokio-postgres over
//! rustls) in simple and extended mode, COPY both ways, cancel requests, fast audit
//! mode, and bytes no driver would send. Each bad input gets a protocol-native error
//! or a close, never a hang or a panic, and the node goes on serving.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, TryStreamExt};
use portcullis_tests::pg::{self, Ending};
use portcullis_tests::{Cluster, err, out, wait_for};
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::error::SqlState;

const READY: Duration = Duration::from_secs(30);

/// The SQLSTATE of a tokio-postgres error, if the server sent one.
fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}

fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string())
}

/// Rows of a simple query as text cells.
fn simple_rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect()
}

/// No node of the playground panicked.
fn assert_no_panic(c: &Cluster) {
    let logs = c.logs_full();
    assert!(!logs.contains("panicked"), "a node panicked:\n{}", c.logs());
}

/// Node `id` still serves a fresh psql client.
fn assert_still_serves(c: &Cluster, id: u64, token: &str) {
    let o = c.psql(id, token, &["SELECT 'still-' || count(*) FROM customers"]);
    assert!(o.status.success(), "node {id} no longer serves psql: {}\n{}", err(&o), c.logs());
    assert!(out(&o).contains("still-"), "{}", out(&o));
}

fn apply(c: &Cluster, what: &str, name: &str, yaml: &str) {
    let file = c.path().join(name);
    std::fs::write(&file, yaml).unwrap();
    c.cli_ok(1, &[what, "apply", "-f", file.to_str().unwrap()]);
}

/// The playground backend as a resource under another name (no mask rule matches it).
fn register_alias(c: &Cluster, name: &str, audit: &str) {
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(c.path().join("postgres.json")).unwrap()).unwrap();
    let port = info["port"].as_u64().unwrap();
    let password = info["app_password"].as_str().unwrap();
    apply(
        c,
        "resource",
        &format!("{name}.yaml"),
        &format!(
            "name: {name}\nprotocol: postgres\naddress: 127.0.0.1:{port}\nusername: demo_app\npassword: {password}\naudit: {audit}\noptions: {{ database: demo }}\n"
        ),
    );
}

#[test]
fn tokio_postgres_runs_simple_extended_and_transactional_queries_through_every_node() {
    let c = Cluster::start_with_postgres(3);
    let token = c.engineer_token();
    let rt = pg::runtime();
    rt.block_on(async {
        for id in 1..=3 {
            let client = pg::connect(&c, id, "demo", "alice", &token).await.unwrap();

            // Simple protocol: text results, masked.
            let msgs = client.simple_query("SELECT name, email FROM customers WHERE id = 1").await.unwrap();
            let rows = simple_rows(&msgs);
            assert_eq!(rows, vec![vec![Some("Ada Lovelace".to_string()), Some("***".to_string())]], "node {id}");

            // Extended protocol (Parse/Bind/Describe/Execute/Sync), binary results.
            let rows = client.query("SELECT name, email FROM customers WHERE id = $1", &[&1i32]).await.unwrap();
            assert_eq!(rows.len(), 1, "node {id}");
            let name: &str = rows[0].get(0);
            let email: Option<&str> = rows[0].get(1);
            assert_eq!(name, "Ada Lovelace");
            assert_eq!(email, Some("***"), "node {id}: email column must be masked in binary results too");

            // A value computed from a masked column is masked whole.
            let rows = client
                .query("SELECT name || ' <' || email || '>' AS contact FROM customers WHERE id = $1", &[&2i32])
                .await
                .unwrap();
            let contact: &str = rows[0].get(0);
            assert_eq!(contact, "***", "node {id}");

            // Detectors apply to binary text values as well (an email in any text).
            let rows = client.query("SELECT $1::text AS note", &[&"write to alan@example.com"]).await.unwrap();
            let note: &str = rows[0].get(0);
            assert_eq!(note, "write to a***@example.com", "node {id}");

            // A prepared statement runs many times under its one decision.
            let stmt = client.prepare("SELECT count(*) FROM customers WHERE id <= $1").await.unwrap();
            for n in [3i32, 5, 12] {
                let count: i64 = client.query_one(&stmt, &[&n]).await.unwrap().get(0);
                assert_eq!(count, i64::from(n));
            }

            // Denied, in both protocols: 42501, and the session goes on.
            let e = client.simple_query("DROP TABLE customers").await.unwrap_err();
            assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
            assert!(db_message(&e).contains("no-truncate-or-ddl"), "{}", db_message(&e));
            let e = client.execute("DROP TABLE customers", &[]).await.unwrap_err();
            assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
            let n: i64 = client.query_one("SELECT count(*) FROM customers", &[]).await.unwrap().get(0);
            assert_eq!(n, 12, "node {id}: the session must stay usable after a refusal");

            // A backend error (not ours) also leaves the session usable.
            let e = client.query("SELECT * FROM no_such_table", &[]).await.unwrap_err();
            assert_eq!(e.code(), Some(&SqlState::UNDEFINED_TABLE), "{e:?}");
            let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
            assert_eq!(one, 1);
        }

        // A transaction: BEGIN; SELECT; COMMIT, through the driver's own API.
        let mut client = pg::connect(&c, 2, "demo", "alice", &token).await.unwrap();
        let tx = client.transaction().await.unwrap();
        let name: String = tx.query_one("SELECT name FROM customers WHERE id = $1", &[&3i32]).await.unwrap().get(0);
        assert_eq!(name, "Grace Hopper");
        let n: i64 = tx.query_one("SELECT count(*) FROM customers", &[]).await.unwrap().get(0);
        assert_eq!(n, 12);
        tx.commit().await.unwrap();
        // And by hand in the simple protocol, with an error inside rolling it back.
        client.simple_query("BEGIN").await.unwrap();
        client.simple_query("SELECT 1").await.unwrap();
        let e = client.simple_query("SELECT 1/0").await.unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::DIVISION_BY_ZERO));
        let e = client.simple_query("SELECT 2").await.unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
        client.simple_query("ROLLBACK").await.unwrap();
        let rows = simple_rows(&client.simple_query("SELECT 'after-rollback'").await.unwrap());
        assert_eq!(rows, vec![vec![Some("after-rollback".to_string())]]);
    });
    assert!(c.postgres_log().contains("BEGIN"), "the transaction reached the backend");
    assert!(!c.postgres_log().contains("DROP TABLE"), "a denied DROP reached the backend");
    assert_no_panic(&c);
}

#[test]
fn copy_to_stdout_and_from_stdin_run_when_a_policy_allows_copy() {
    let c = Cluster::start_with_postgres(3);
    let token = c.engineer_token();
    // Without a rule for it, a COPY that writes is denied (default deny; the demo policy
    // allows engineers only COPY ... TO STDOUT, which reads).
    let o = c.psql(1, &token, &["COPY customers (name) FROM STDIN"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("no policy rule allows copy"), "{}", err(&o));

    // `democopy`: the same backend, with no mask rule, COPY allowed for engineers.
    register_alias(&c, "democopy", "strict");
    apply(
        &c,
        "policy",
        "copy.yaml",
        "name: copy\nrules:\n  - name: engineers-copy\n    match: { groups: [engineers], resources: [democopy], kinds: [copy, select] }\n    action: allow\n",
    );
    let conninfo = |id: u64| c.pg_conninfo(id, "alice").replace("dbname=demo", "dbname=democopy");

    // COPY ... TO STDOUT through psql (simple protocol).
    let o = Command::new("psql")
        .args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            &conninfo(2),
            "-c",
            "COPY (SELECT id, name FROM customers ORDER BY id) TO STDOUT",
        ])
        .env("PGPASSWORD", &token)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    assert!(text.starts_with("1\tAda Lovelace\n2\tAlan Turing\n"), "{text}");
    assert_eq!(text.lines().count(), 12, "{text}");

    // COPY ... FROM STDIN through psql.
    let mut child = Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", &conninfo(3), "-c", "COPY customers (name, ssn) FROM STDIN"])
        .env("PGPASSWORD", &token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"Copy One\t\\N\nCopy Two\t\\N\n\\.\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("COPY 2"), "{}", out(&o));

    // And both ways in the extended protocol, through tokio-postgres.
    let rt = pg::runtime();
    rt.block_on(async {
        let client = pg::connect(&c, 1, "democopy", "alice", &token).await.unwrap();
        let t = Duration::from_secs(20);
        let sink = tokio::time::timeout(t, client.copy_in::<_, Bytes>("COPY customers (name) FROM STDIN"))
            .await
            .expect("COPY FROM STDIN (extended) did not start")
            .unwrap();
        futures_util::pin_mut!(sink);
        tokio::time::timeout(t, sink.send(Bytes::from_static(b"Copy Three\nCopy Four\n")))
            .await
            .expect("COPY data not taken")
            .unwrap();
        let n =
            tokio::time::timeout(t, sink.as_mut().finish()).await.expect("COPY FROM STDIN (extended) did not finish");
        assert_eq!(n.unwrap(), 2);
        let n: i64 =
            client.query_one("SELECT count(*) FROM customers WHERE name LIKE 'Copy %'", &[]).await.unwrap().get(0);
        assert_eq!(n, 4);
        let stream = client.copy_out("COPY (SELECT name FROM customers WHERE id = 1) TO STDOUT").await.unwrap();
        let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
        assert_eq!(chunks.concat(), b"Ada Lovelace\n");
        // The session is still in step afterwards.
        let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
    });

    // On `demo`, whose results are masked, COPY TO STDOUT runs once copy is allowed
    // there, its rows masked like a SELECT's (a masked text column is `***`).
    apply(
        &c,
        "policy",
        "copy-demo.yaml",
        "name: copy-demo\nrules:\n  - name: engineers-copy-demo\n    match: { groups: [engineers], resources: [demo], kinds: [copy] }\n    action: allow\n",
    );
    let o = c.psql(1, &token, &["COPY (SELECT email FROM customers) TO STDOUT /* marker-copy-pii */"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(!out(&o).contains("@example.com"), "COPY leaked PII: {}", out(&o));
    assert!(out(&o).lines().all(|l| l == "***" || l == "\\N") && out(&o).lines().count() >= 12, "{}", out(&o));
    assert_no_panic(&c);
}

#[test]
fn a_cancel_request_stops_a_long_query_with_57014_and_the_session_goes_on() {
    let c = Cluster::start_with_postgres(3);
    let token = c.engineer_token();
    let rt = pg::runtime();
    rt.block_on(async {
        for id in [1, 3] {
            let client = pg::connect(&c, id, "demo", "alice", &token).await.unwrap();
            let cancel = client.cancel_token();
            let marker = format!("marker-sleep-{id}");
            let sql = format!("SELECT pg_sleep(30) /* {marker} */");
            let started = Instant::now();
            let query = async { client.simple_query(&sql).await };
            let canceller = async {
                let log_has = || c.postgres_log().contains(&marker);
                while !log_has() {
                    assert!(started.elapsed() < READY, "the sleep never reached the backend");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                cancel.cancel_query(pg::make_tls(&c)).await.unwrap();
            };
            let (result, ()) = tokio::join!(query, canceller);
            let e = result.unwrap_err();
            assert_eq!(sqlstate(&e).as_deref(), Some("57014"), "node {id}: {e:?}");
            assert!(started.elapsed() < Duration::from_secs(15), "cancel took {:?}", started.elapsed());
            let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
            assert_eq!(one, 1);
        }
    });
    // psql too: SIGINT sends a cancel request (libpq's own, over TLS).
    let conninfo = c.pg_conninfo(2, "alice");
    let child = Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", &conninfo, "-c", "SELECT pg_sleep(30) /* marker-psql-sleep */"])
        .env("PGPASSWORD", &token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the psql sleep to reach the backend", READY, || {
        c.postgres_log().contains("marker-psql-sleep").then_some(())
    });
    let started = Instant::now();
    portcullis_tests::signal(child.id(), "INT");
    let o = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(!o.status.success());
    assert!(err(&o).contains("canceling statement due to user request"), "{}", err(&o));
    assert_no_panic(&c);
}

#[test]
fn bytes_before_login_get_a_protocol_error_or_a_close_and_the_node_keeps_serving() {
    let c = Cluster::start_with_postgres(3);
    let token = c.engineer_token();
    let quiet = Duration::from_secs(10);

    // (a) 1 KiB of garbage (a fixed xorshift stream), then our half closed.
    let mut x: u32 = 0x9e37_79b9;
    let garbage: Vec<u8> = (0..1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    let mut s = pg::raw_connect(&c, 1);
    pg::send(&mut s, &garbage);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let end = pg::read_until_close(&mut s, quiet, quiet);
    assert!(matches!(end, Ending::Closed(_)), "garbage: the door must close, got {end:?}");
    if let Some(e) = end.error() {
        assert_eq!(e.field(b'C').as_deref(), Some("08P01"), "{e:?}");
    }
    assert_still_serves(&c, 1, &token);

    // Garbage whose first word is a plausible length, left open: the door answers
    // the first message it can decode (or closes), it does not wait for more.
    let mut s = pg::raw_connect(&c, 1);
    pg::send(&mut s, &[0, 0, 0, 16, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8]);
    let end = pg::read_until_close(&mut s, quiet, quiet);
    assert!(matches!(end, Ending::Closed(_)), "garbage startup: the door must close, got {end:?}");
    if let Some(e) = end.error() {
        assert_eq!(e.field(b'C').as_deref(), Some("08P01"), "{e:?}");
    }

    // (b) A truncated startup: the length says 100, 10 bytes come, then a close.
    let mut s = pg::raw_connect(&c, 2);
    let startup =
        pg::startup_message(&[("user", "alice"), ("database", "demo"), ("application_name", "x".repeat(60).as_str())]);
    assert!(startup.len() >= 100);
    let mut truncated = 100i32.to_be_bytes().to_vec();
    truncated.extend_from_slice(&startup[4..10]);
    pg::send(&mut s, &truncated);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let end = pg::read_until_close(&mut s, quiet, quiet);
    assert!(matches!(end, Ending::Closed(_)), "truncated startup: got {end:?}");
    assert_still_serves(&c, 2, &token);

    // (c) A startup claiming 1 GiB, before TLS: refused at once, nothing buffered.
    let mut s = pg::raw_connect(&c, 3);
    let mut huge = (1i32 << 30).to_be_bytes().to_vec();
    huge.extend_from_slice(&196_608i32.to_be_bytes());
    huge.extend_from_slice(b"user\0");
    pg::send(&mut s, &huge);
    let end = pg::read_until_close(&mut s, quiet, quiet);
    assert!(matches!(end, Ending::Closed(_)), "1 GiB startup: got {end:?}");
    let e = end.error().unwrap_or_else(|| panic!("no error for a 1 GiB startup: {end:?}"));
    assert_eq!(e.field(b'S').as_deref(), Some("FATAL"));
    assert_eq!(e.field(b'C').as_deref(), Some("08P01"), "{e:?}");
    assert!(e.field(b'M').unwrap_or_default().contains("exceeds the limit"), "{e:?}");
    // An invalid length (< 4) likewise.
    let mut s = pg::raw_connect(&c, 3);
    pg::send(&mut s, &[0, 0, 0, 2, 0, 0, 0, 0]);
    let end = pg::read_until_close(&mut s, quiet, quiet);
    assert!(matches!(end, Ending::Closed(_)), "length 2: got {end:?}");
    assert_eq!(end.error().and_then(|e| e.field(b'C')).as_deref(), Some("08P01"), "{end:?}");
    assert_still_serves(&c, 3, &token);

    // (d) A well-formed startup without TLS: FATAL 28000, TLS required.
    let mut s = pg::raw_connect(&c, 1);
    pg::send(&mut s, &pg::startup_message(&[("user", "alice"), ("database", "demo")]));
    let end = pg::read_until_close(&mut s, quiet, quiet);
    assert!(matches!(end, Ending::Closed(_)), "plaintext startup: got {end:?}");
    let e = end.error().unwrap_or_else(|| panic!("no error for a plaintext startup: {end:?}"));
    assert_eq!(e.field(b'S').as_deref(), Some("FATAL"));
    assert_eq!(e.field(b'C').as_deref(), Some("28000"));
    assert!(e.field(b'M').unwrap_or_default().contains("TLS required"), "{e:?}");
    // psql with sslmode=disable is told the same.
    let (h, p) = c.pg_addr(1);
    let o = Command::new("psql")
        .args([
            "-X",
            &format!("host={h} port={p} dbname=demo user=alice sslmode=disable connect_timeout=10"),
            "-c",
            "SELECT 1",
        ])
        .env("PGPASSWORD", &token)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(err(&o).contains("TLS required"), "{}", err(&o));

    // An oversized message after login (over TLS): 08P01 and a close, before the
    // door buffers it.
    let rt = pg::runtime();
    rt.block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut tls = pg::raw_tls_login(&c, 2, "demo", &token).await;
        let mut big = vec![b'Q'];
        big.extend_from_slice(&(32i32 << 20).to_be_bytes());
        big.extend_from_slice(b"SELECT ");
        tls.write_all(&big).await.unwrap();
        tls.flush().await.unwrap();
        let end = pg::read_async_until_close(&mut tls, quiet).await;
        assert!(matches!(end, Ending::Closed(_)), "oversized query: got {end:?}");
        let e = end.error().unwrap_or_else(|| panic!("no error for an oversized query: {end:?}"));
        assert_eq!(e.field(b'C').as_deref(), Some("08P01"), "{e:?}");
        assert!(e.field(b'M').unwrap_or_default().contains("exceeds the limit"), "{e:?}");

        // An unknown message type after login: an error and a close, not a hang.
        let mut tls = pg::raw_tls_login(&c, 2, "demo", &token).await;
        tls.write_all(&pg::message(b'!', b"nonsense")).await.unwrap();
        tls.flush().await.unwrap();
        let end = pg::read_async_until_close(&mut tls, quiet).await;
        assert!(matches!(end, Ending::Closed(_)), "unknown message: got {end:?}");
    });
    assert_still_serves(&c, 2, &token);
    assert_no_panic(&c);
}

#[test]
fn bad_tokens_are_refused_at_login_and_strangers_are_denied_every_statement() {
    let c = Cluster::start_with_postgres(3);
    let token = c.engineer_token();

    // (e) A wrong token: FATAL 28P01 "token rejected".
    let o = c.psql(1, "garbage", &["SELECT 1"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("token rejected"), "{}", err(&o));
    let rt = pg::runtime();
    rt.block_on(async {
        let e = pg::connect(&c, 1, "demo", "alice", "garbage").await.err().unwrap();
        assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e:?}");
        assert!(db_message(&e).contains("token rejected"), "{}", db_message(&e));

        // (f) An expired token.
        let expired = c.token_with(&["--sub", "alice", "--groups", "engineers", "--ttl", "1s", "--issued-ago", "2m"]);
        let e = pg::connect(&c, 2, "demo", "alice", &expired).await.err().unwrap();
        assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e:?}");
        assert!(db_message(&e).contains("token rejected"), "{}", db_message(&e));
        assert!(db_message(&e).to_lowercase().contains("expired"), "{}", db_message(&e));

        // A token for another audience.
        let other = c.token_with(&["--sub", "alice", "--groups", "engineers", "--aud", "someone-else"]);
        let e = pg::connect(&c, 3, "demo", "alice", &other).await.err().unwrap();
        assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e:?}");

        // An unknown resource: 3D000.
        let e = pg::connect(&c, 3, "nope", "alice", &token).await.err().unwrap();
        assert_eq!(sqlstate(&e).as_deref(), Some("3D000"), "{e:?}");

        // (g) A valid token outside every group: connects, but every statement is
        // denied (default deny), in both protocols, and nothing reaches the backend.
        let stranger = c.token("mallory", &["contractors"]);
        let client = pg::connect(&c, 3, "demo", "mallory", &stranger).await.unwrap();
        let e = client.simple_query("SELECT * FROM customers /* marker-stranger-simple */").await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
        assert!(db_message(&e).contains("no policy rule allows select"), "{}", db_message(&e));
        let e = client
            .query("SELECT * FROM customers WHERE id = $1 /* marker-stranger-ext */", &[&1i32])
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
    });
    let log = c.postgres_log();
    assert!(!log.contains("marker-stranger"), "a stranger's statement reached the backend");
    assert_still_serves(&c, 1, &token);
    assert_no_panic(&c);
}

#[test]
fn a_fast_audit_resource_serves_selects_and_records_them_soon_after() {
    let c = Cluster::start_with_postgres(3);
    let token = c.engineer_token();
    register_alias(&c, "demofast", "fast");
    apply(
        &c,
        "policy",
        "fast.yaml",
        "name: fast\nrules:\n  - name: engineers-read-fast\n    match: { groups: [engineers], resources: [demofast], kinds: [select] }\n    action: allow\n",
    );
    let listed = c.cli_ok(1, &["resource", "list", "--json"]);
    assert!(listed.contains("demofast"), "{listed}");

    let rt = pg::runtime();
    rt.block_on(async {
        let client = pg::connect(&c, 2, "demofast", "alice", &token).await.unwrap();
        let msgs = client.simple_query("SELECT name FROM customers WHERE id = 4 /* marker-fast */").await.unwrap();
        assert_eq!(simple_rows(&msgs), vec![vec![Some("Edsger Dijkstra".to_string())]]);
        let name: String = client.query_one("SELECT name FROM customers WHERE id = $1", &[&5i32]).await.unwrap().get(0);
        assert_eq!(name, "Barbara Liskov");
        // Still only what the policy allows.
        let e = client.simple_query("DELETE FROM customers WHERE id = 1").await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
    });

    let show = wait_for("the fast-mode statement to be recorded", READY, || {
        let list = c.cli_ok(3, &["sessions", "list", "--resource", "demofast", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&list).ok()?;
        let sessions = v.as_array().cloned().or_else(|| v["sessions"].as_array().cloned())?;
        sessions.iter().find_map(|s| {
            let id = s["id"].as_str()?;
            let show = c.cli_ok(3, &["sessions", "show", id, "--json"]);
            (show.contains("marker-fast") && show.contains("\"statement\"")).then_some(show)
        })
    });
    assert!(show.contains("alice"), "{show}");
    assert!(show.contains("allow"), "{show}");
    assert_no_panic(&c);
}

#[test]
fn a_pipeline_with_a_denied_statement_runs_none_of_its_statements() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    register_alias(&c, "pipe", "strict");
    apply(
        &c,
        "policy",
        "pipe.yaml",
        "name: pipe\nrules:\n  - match: { groups: [engineers], resources: [pipe], kinds: [select, update] }\n    action: allow\n  - match: { resources: [pipe], kinds: [ddl] }\n    action: deny\n    reason: no DDL on pipe\n",
    );
    let rt = pg::runtime();
    let ending = rt.block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut s = pg::raw_tls_login(&c, 1, "pipe", &token).await;
        // One Sync batch: an allowed UPDATE, then a denied DROP. Unnamed statements.
        let mut batch = Vec::new();
        let parse = |sql: &str| {
            let mut body = vec![0u8];
            body.extend_from_slice(sql.as_bytes());
            body.extend_from_slice(&[0, 0, 0]);
            pg::message(b'P', &body)
        };
        let bind = pg::message(b'B', &[0, 0, 0, 0, 0, 0, 0, 0]);
        let execute = pg::message(b'E', &[0, 0, 0, 0, 0]);
        batch.extend(parse("UPDATE customers SET name = 'pipelined' WHERE id = 1"));
        batch.extend(&bind);
        batch.extend(&execute);
        batch.extend(parse("DROP TABLE customers"));
        batch.extend(&bind);
        batch.extend(&execute);
        batch.extend(pg::message(b'S', &[]));
        s.write_all(&batch).await.unwrap();
        s.flush().await.unwrap();
        pg::read_async_until_close(&mut s, Duration::from_secs(5)).await
    });
    let error = ending.error().unwrap_or_else(|| panic!("no error for the denied statement: {ending:?}"));
    assert_eq!(error.field(b'C').as_deref(), Some("42501"), "{error:?}");
    assert!(error.field(b'M').unwrap_or_default().contains("no DDL on pipe"), "{error:?}");
    assert!(ending.messages().iter().any(|m| m.tag == b'Z'), "no ReadyForQuery after the refusal: {ending:?}");
    assert!(!ending.messages().iter().any(|m| m.tag == b'C'), "a statement of the refused batch completed: {ending:?}");
    // Nothing of the batch ran: the UPDATE before the denied DROP did not reach Postgres.
    let log = c.postgres_log();
    assert!(!log.contains("pipelined"), "the UPDATE of a refused batch ran:\n{log}");
    let o = c.psql(1, &token, &["SELECT name FROM customers WHERE id = 1"]);
    assert!(out(&o).contains("Ada Lovelace"), "{}", out(&o));
    assert_still_serves(&c, 1, &token);
}

#[test]
fn a_refused_statement_inside_a_transaction_aborts_it_so_commit_keeps_nothing() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    register_alias(&c, "txn", "strict");
    apply(
        &c,
        "policy",
        "txn.yaml",
        "name: txn\nrules:\n  - match: { groups: [engineers], resources: [txn], kinds: [select, update, transaction] }\n    action: allow\n  - match: { resources: [txn], kinds: [ddl] }\n    action: deny\n    reason: no DDL on txn\n",
    );
    let rt = pg::runtime();
    rt.block_on(async {
        let client = pg::connect(&c, 1, "txn", "alice", &token).await.unwrap();
        // Simple protocol: an allowed UPDATE, then a refused DROP, then COMMIT.
        client.simple_query("BEGIN").await.unwrap();
        client.simple_query("UPDATE customers SET name = 'simple-in-refused-tx' WHERE id = 2").await.unwrap();
        let e = client.simple_query("DROP TABLE customers").await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
        assert!(db_message(&e).contains("no DDL on txn"), "{}", db_message(&e));
        // The backend agrees the block is aborted: its own 25P02 for the next statement.
        let e = client.simple_query("SELECT 1").await.unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION), "{e:?}");
        let done = client.simple_query("COMMIT").await.unwrap();
        let tag = done.iter().find_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        });
        assert!(tag.is_some(), "COMMIT completed: {done:?}");

        // Extended protocol: the refusal comes at Parse, inside the block.
        client.simple_query("BEGIN").await.unwrap();
        client.execute("UPDATE customers SET name = 'extended-in-refused-tx' WHERE id = $1", &[&3i32]).await.unwrap();
        let e = client.execute("DROP TABLE customers", &[]).await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
        let e = client.query("SELECT 1", &[]).await.unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION), "{e:?}");
        client.simple_query("COMMIT").await.unwrap();

        // Outside a block a refusal changes nothing for the backend's session.
        let e = client.simple_query("DROP TABLE customers").await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
        let rows = simple_rows(
            &client.simple_query("SELECT name FROM customers WHERE id IN (2, 3) ORDER BY id").await.unwrap(),
        );
        assert_eq!(
            rows,
            vec![vec![Some("Alan Turing".to_string())], vec![Some("Grace Hopper".to_string())]],
            "an update before the refusal was committed"
        );
    });
    let log = c.postgres_log();
    assert!(log.contains("refused by Portcullis"), "the backend was not told to fail the block:\n{log}");
    assert!(!log.contains("DROP TABLE"), "a denied DROP reached the backend:\n{log}");
    assert_no_panic(&c);
}

/// Every exported audit event of `resource` (JSON lines of `sessions export --json`).
fn audit_events(c: &Cluster, resource: &str) -> Vec<serde_json::Value> {
    let text = c.cli_ok(1, &["sessions", "export", "--json", "--resource", resource]);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .flat_map(|l| {
            let record: serde_json::Value = serde_json::from_str(l).unwrap();
            record["events"].as_array().cloned().unwrap_or_default()
        })
        .collect()
}

/// The one event of `kind` whose SQL contains `marker`.
fn event_with<'a>(events: &'a [serde_json::Value], kind: &str, marker: &str) -> &'a serde_json::Value {
    let found: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == kind && e["detail"]["sql"].as_str().unwrap_or("").contains(marker))
        .collect();
    assert_eq!(found.len(), 1, "one {kind} record for {marker}: {events:#?}");
    found[0]
}

#[test]
fn both_query_protocols_write_the_same_audit_records_and_unparseable_sql_is_refused_on_record() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    register_alias(&c, "shapes", "strict");
    apply(
        &c,
        "policy",
        "shapes.yaml",
        "name: shapes\nrules:\n  - name: engineers-read\n    match: { groups: [engineers], resources: [shapes], kinds: [select] }\n    action: allow\n  - name: no-ddl\n    match: { resources: [shapes], kinds: [ddl] }\n    action: deny\n    reason: no DDL on shapes\n",
    );
    let rt = pg::runtime();
    rt.block_on(async {
        let client = pg::connect(&c, 1, "shapes", "alice", &token).await.unwrap();
        client.simple_query("SELECT 1 AS marker_simple").await.unwrap();
        client.query("SELECT 2 AS marker_extended", &[]).await.unwrap();
        // Unparseable SQL: Postgres's own syntax-error SQLSTATE, in both protocols.
        let e = client.simple_query("SELEC marker_bad_simple").await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42601"), "{e:?}");
        let e = client.prepare("SELEC marker_bad_extended").await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42601"), "{e:?}");
        // With the position, as Postgres reports it (characters, from 1).
        let e = client.simple_query("SELECT 'é' FROM WHERE marker_position").await.unwrap_err();
        let position = e.as_db_error().and_then(|d| d.position()).cloned();
        assert_eq!(position, Some(tokio_postgres::error::ErrorPosition::Original(17)), "{e:?}");
        // Denied in both: strict mode records the refusal before the client hears of it,
        // so it is in the export the moment the error arrives.
        let e = client.simple_query("DROP TABLE marker_deny_simple").await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
        let events = audit_events(&c, "shapes");
        event_with(&events, "refused", "marker_deny_simple");
        let e = client.execute("DROP TABLE marker_deny_extended", &[]).await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
        let events = audit_events(&c, "shapes");
        event_with(&events, "refused", "marker_deny_extended");
    });
    let events = audit_events(&c, "shapes");
    for marker in ["marker_simple", "marker_extended"] {
        let detail = &event_with(&events, "statement", marker)["detail"];
        assert_eq!(detail["rules"], serde_json::json!(["shapes/engineers-read"]), "{marker}: {detail}");
        assert_eq!(detail["kinds"], serde_json::json!(["select"]), "{marker}: {detail}");
        assert_eq!(detail["decision"], "allow", "{marker}: {detail}");
    }
    for marker in ["marker_bad_simple", "marker_bad_extended"] {
        let detail = &event_with(&events, "refused", marker)["detail"];
        assert!(detail["reason"].as_str().unwrap().contains("syntax error"), "{marker}: {detail}");
    }
    for marker in ["marker_deny_simple", "marker_deny_extended"] {
        let detail = &event_with(&events, "refused", marker)["detail"];
        assert_eq!(detail["rules"], serde_json::json!(["shapes/no-ddl"]), "{marker}: {detail}");
        assert_eq!(detail["kinds"], serde_json::json!(["ddl"]), "{marker}: {detail}");
    }
    assert!(!c.postgres_log().contains("SELEC marker_bad"), "unparseable SQL reached the backend");
    assert_no_panic(&c);
}

#[test]
fn executing_a_portal_the_gateway_never_bound_such_as_a_sql_cursor_is_refused_and_leaks_nothing() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    register_alias(&c, "cursor", "strict");
    apply(
        &c,
        "policy",
        "cursor.yaml",
        "name: cursor\nrules:\n  - match: { groups: [engineers], resources: [cursor], kinds: [select, transaction, other] }\n    action: allow\n  - match: { resources: [cursor] }\n    action: mask\n    mask: { columns: [email] }\n",
    );
    let rt = pg::runtime();
    let ending = rt.block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut s = pg::raw_tls_login(&c, 1, "cursor", &token).await;
        let query = |sql: &str| {
            let mut body = sql.as_bytes().to_vec();
            body.push(0);
            pg::message(b'Q', &body)
        };
        let mut bytes = query("BEGIN");
        bytes.extend(query("DECLARE c CURSOR FOR SELECT email FROM customers"));
        // Execute portal "c" (the cursor), no row limit, then Sync.
        bytes.extend(pg::message(b'E', b"c\0\0\0\0\0"));
        bytes.extend(pg::message(b'S', &[]));
        s.write_all(&bytes).await.unwrap();
        s.flush().await.unwrap();
        pg::read_async_until_close(&mut s, Duration::from_secs(5)).await
    });
    let leaked = ending.messages().iter().any(|m| String::from_utf8_lossy(&m.body).contains("@example.com"));
    assert!(!leaked, "a cursor's rows left unmasked: {ending:?}");
    let error = ending.error().unwrap_or_else(|| panic!("no error for the unbound portal: {ending:?}"));
    assert_eq!(error.field(b'C').as_deref(), Some("42501"), "{error:?}");
    assert!(error.field(b'M').unwrap_or_default().contains("portal \"c\""), "{error:?}");
    assert_still_serves(&c, 1, &token);
}

/// Send `bytes` after a login to `resource`, and read until the door is quiet.
fn raw_exchange(c: &Cluster, resource: &str, token: &str, bytes: Vec<u8>) -> Ending {
    pg::runtime().block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut s = pg::raw_tls_login(c, 1, resource, token).await;
        s.write_all(&bytes).await.unwrap();
        s.flush().await.unwrap();
        pg::read_async_until_close(&mut s, Duration::from_secs(5)).await
    })
}

#[test]
fn the_gateways_statements_and_portals_follow_what_postgres_confirmed_not_what_the_client_sent() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    register_alias(&c, "mirror", "strict");
    // Columns only, no detectors: what a decision masks is exactly what comes back masked.
    apply(
        &c,
        "policy",
        "mirror.yaml",
        "name: mirror\nrules:\n  - match: { groups: [engineers], resources: [mirror], kinds: [select, transaction] }\n    action: allow\n  - match: { resources: [mirror] }\n    action: mask\n    mask: { columns: [email] }\n",
    );
    let secret = "SELECT email AS note FROM customers WHERE id = 1 /* marker-old */";
    let harmless = "SELECT 'harmless' AS note /* marker-new */";

    // 1. A Parse of a name that exists is refused by Postgres, which keeps the old
    //    statement; running the name runs the old one, under the old decision.
    let mut bytes = pg::parse("s1", secret);
    bytes.extend(pg::sync());
    bytes.extend(pg::parse("s1", harmless));
    bytes.extend(pg::sync());
    bytes.extend(pg::bind("", "s1"));
    bytes.extend(pg::execute(""));
    bytes.extend(pg::sync());
    let ending = raw_exchange(&c, "mirror", &token, bytes);
    let errors = ending.errors();
    assert_eq!(errors.len(), 1, "only the duplicate Parse fails: {ending:?}");
    assert_eq!(errors[0].field(b'C').as_deref(), Some("42P05"), "{:?}", errors[0]);
    assert_eq!(ending.rows(), vec![vec![Some("***".to_string())]], "the old statement ran unmasked");
    let executed = audit_events(&c, "mirror")
        .into_iter()
        .filter(|e| e["kind"] == "statement")
        .filter_map(|e| e["detail"]["sql"].as_str().map(str::to_string))
        .collect::<Vec<_>>();
    assert!(
        !executed.iter().any(|sql| sql.contains("marker-new")),
        "the audit names a statement that never ran: {executed:?}"
    );

    // 2. A portal runs the statement it was bound from, even when the unnamed statement
    //    is parsed again before it executes.
    let mut bytes = pg::query("BEGIN");
    bytes.extend(pg::parse("", secret));
    bytes.extend(pg::bind("p", ""));
    bytes.extend(pg::parse("", harmless));
    bytes.extend(pg::execute("p"));
    bytes.extend(pg::sync());
    let ending = raw_exchange(&c, "mirror", &token, bytes);
    assert!(ending.errors().is_empty(), "{ending:?}");
    assert_eq!(ending.rows(), vec![vec![Some("***".to_string())]], "the portal's rows left unmasked");
    let leaked = ending.messages().iter().any(|m| String::from_utf8_lossy(&m.body).contains("@example.com"));
    assert!(!leaked, "{ending:?}");

    // 3. A transaction's end drops its portals, in Postgres and in the mirror (which a
    //    client could otherwise grow without bound): executing one after is refused.
    let mut bytes = pg::parse("", harmless);
    bytes.extend(pg::bind("p_gone", ""));
    bytes.extend(pg::sync());
    bytes.extend(pg::execute("p_gone"));
    bytes.extend(pg::sync());
    let ending = raw_exchange(&c, "mirror", &token, bytes);
    let error = ending.error().unwrap_or_else(|| panic!("an ended transaction's portal ran: {ending:?}"));
    assert!(error.field(b'M').unwrap_or_default().contains("p_gone"), "{error:?}");
    assert_still_serves(&c, 1, &token);
}

#[test]
fn ten_refused_15_mib_statements_cost_no_node_its_lease_and_the_session_stays_readable() {
    let c = Cluster::start_with_postgres(3);
    let token = c.engineer_token();
    let lost_before = c.logs_full().matches("quorum lease lost").count();
    let huge = format!("SELECT '{}' AS marker_huge", "x".repeat(15 * 1024 * 1024));
    pg::runtime().block_on(async {
        let client = pg::connect(&c, 1, "demo", "alice", &token).await.unwrap();
        for _ in 0..10 {
            let e = client.simple_query(&huge).await.unwrap_err();
            assert_eq!(sqlstate(&e).as_deref(), Some("54000"), "{}", db_message(&e));
        }
        let rows = simple_rows(&client.simple_query("SELECT 'after-huge'").await.unwrap());
        assert_eq!(rows, vec![vec![Some("after-huge".to_string())]]);
    });
    let lost_after = c.logs_full().matches("quorum lease lost").count();
    assert_eq!(lost_before, lost_after, "a node lost its lease under the flood:\n{}", c.logs());
    let status = c.status(1).unwrap();
    let nodes = status["nodes"].as_array().unwrap();
    assert!(nodes.len() == 3 && nodes.iter().all(|n| n["serving"] == true), "{status}");
    // Every record of the session is readable, cut to a bound, with the whole text's
    // length and digest beside it.
    let events = audit_events(&c, "demo");
    let refused: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "refused" && e["detail"]["sql"].as_str().unwrap_or("").starts_with("SELECT 'xxx"))
        .collect();
    assert_eq!(refused.len(), 10, "one record per refused statement");
    for e in &refused {
        assert!(e["detail"]["sql"].as_str().unwrap().len() <= 32 * 1024, "a record kept the whole statement");
        assert_eq!(e["detail"]["sql_bytes"], huge.len());
        assert_eq!(e["detail"]["sql_sha256"].as_str().map(str::len), Some(64));
    }
    let list = c.cli_ok(2, &["sessions", "list", "--resource", "demo", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let sessions = v.as_array().cloned().or_else(|| v["sessions"].as_array().cloned()).unwrap();
    for s in sessions {
        c.cli_ok(2, &["sessions", "show", s["id"].as_str().unwrap(), "--json"]);
    }
    assert_no_panic(&c);
}

#[test]
fn the_doors_limits_end_idle_transactions_cap_sessions_per_identity_and_bound_pipelines() {
    let mut c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    c.kill9(1);
    c.edit_config(1, |t| {
        let mut limits = toml::Table::new();
        limits.insert("idle_in_transaction_secs".into(), 2.into());
        limits.insert("max_sessions_per_identity".into(), 2.into());
        limits.insert("max_batch_messages".into(), 50.into());
        t.insert("limits".into(), limits.into());
    });
    c.restart(1);
    c.wait_all_serving(&[1], READY);
    let rt = pg::runtime();
    rt.block_on(async {
        // Two sessions of one identity; the third is refused with 53300, others still get in.
        let first = pg::connect(&c, 1, "demo", "alice", &token).await.unwrap();
        let second = pg::connect(&c, 1, "demo", "alice", &token).await.unwrap();
        let Err(third) = pg::connect(&c, 1, "demo", "alice", &token).await else {
            panic!("a third session of one identity was admitted")
        };
        assert_eq!(sqlstate(&third).as_deref(), Some("53300"), "{third:?}");
        assert!(db_message(&third).contains("2 sessions"), "{}", db_message(&third));
        let other = c.token("carol", &["engineers"]);
        let carol = pg::connect(&c, 1, "demo", "carol", &other).await.unwrap();
        carol.simple_query("SELECT 1").await.unwrap();
        drop(carol);

        // Idle inside a transaction past the limit: the session ends with 25P03.
        first.simple_query("BEGIN").await.unwrap();
        first.simple_query("SELECT id FROM customers WHERE id = 1 FOR SHARE").await.unwrap();
        // The gateway ends it on its own (the client sends nothing meanwhile).
        let deadline = Instant::now() + READY;
        while !first.is_closed() {
            assert!(Instant::now() < deadline, "the idle transaction's session was never ended");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(first.simple_query("SELECT 1").await.is_err());
        drop(first);
        // Its slot is free again.
        let again = wait_for_session(&c, &token).await;
        again.simple_query("SELECT 1").await.unwrap();
        second.simple_query("SELECT 1").await.unwrap();
    });
    // A pipeline of more than 50 messages before a Sync ends with 54000.
    let mut bytes = Vec::new();
    for _ in 0..60 {
        bytes.extend(pg::parse("", "SELECT 1"));
    }
    bytes.extend(pg::sync());
    let dave = c.token("dave", &["engineers"]);
    let ending = raw_exchange(&c, "demo", &dave, bytes);
    let error = ending.error().unwrap_or_else(|| panic!("no error for the long pipeline: {ending:?}"));
    assert_eq!(error.field(b'C').as_deref(), Some("54000"), "{error:?}");
    assert!(matches!(ending, Ending::Closed(_)), "{ending:?}");
    assert_still_serves(&c, 1, &dave);
}

/// A new session of alice, once one of her slots is free again.
async fn wait_for_session(c: &Cluster, token: &str) -> tokio_postgres::Client {
    let deadline = Instant::now() + READY;
    loop {
        match pg::connect(c, 1, "demo", "alice", token).await {
            Ok(client) => return client,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(sqlstate(&e).as_deref(), Some("53300"), "{e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no slot came free: {e:?}"),
        }
    }
}

#[test]
fn settings_that_change_how_postgres_reads_text_are_pinned_and_a_change_behind_the_gateways_back_ends_the_session() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    register_alias(&c, "lexer", "strict");
    apply(
        &c,
        "policy",
        "lexer.yaml",
        "name: lexer\nrules:\n  - match: { groups: [engineers], resources: [lexer], kinds: [select, set, do] }\n    action: allow\n",
    );
    // The attack: with backslashes escaping quotes, this is a SELECT and an UPDATE to
    // Postgres but one SELECT to a parser with the defaults.
    let attack = "SELECT 'a\\' , ' ; UPDATE customers SET name = upper(name) WHERE id = 1; --'";
    let rt = pg::runtime();
    rt.block_on(async {
        let client = pg::connect(&c, 1, "lexer", "alice", &token).await.unwrap();
        for sql in [
            "SET standard_conforming_strings = off",
            "SET client_encoding = 'SJIS'",
            "SELECT set_config('standard_conforming_strings', 'off', false)",
        ] {
            let e = client.simple_query(sql).await.unwrap_err();
            assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e:?}");
            assert!(db_message(&e).contains("pinned"), "{sql}: {}", db_message(&e));
        }
        let rows = simple_rows(&client.simple_query(attack).await.unwrap());
        assert_eq!(rows.len(), 1, "{rows:?}");
        // Harmless settings still pass.
        client.simple_query("SET search_path = public").await.unwrap();
        client.simple_query("SET standard_conforming_strings = on").await.unwrap();

        // A change the classifier cannot see (inside a DO block) is caught by the
        // backend's own report, and the session ends before another statement is read.
        let sneaky = "DO $$ BEGIN PERFORM set_config('standard_conforming_strings', 'off', false); END $$";
        let e = client.simple_query(sneaky).await.unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some("55000"), "{e:?}");
        assert!(client.simple_query(attack).await.is_err(), "the session went on after the setting changed");
        assert!(client.is_closed());
    });
    // The hidden UPDATE never ran.
    let o = c.psql(1, &token, &["SELECT name FROM customers WHERE id = 1"]);
    assert!(out(&o).contains("Ada Lovelace"), "{}", out(&o));
}

#[test]
fn a_select_calling_a_function_with_side_effects_is_a_write_per_the_backends_catalog() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    c.backend_psql(
        "CREATE FUNCTION public.bump() RETURNS int LANGUAGE sql AS 'SELECT 1'; \
         CREATE FUNCTION public.pure_add(a int, b int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT a + b'; \
         GRANT EXECUTE ON FUNCTION public.bump(), public.pure_add(int, int) TO demo_app",
    );
    register_alias(&c, "effects", "strict");
    apply(
        &c,
        "policy",
        "effects.yaml",
        "name: effects\nrules:\n  - match: { groups: [engineers], resources: [effects], kinds: [select] }\n    action: allow\n  - name: no-side-effects\n    match: { resources: [effects], writes: true }\n    action: deny\n    reason: reads only\n",
    );
    pg::runtime().block_on(async {
        let client = pg::connect(&c, 1, "effects", "alice", &token).await.unwrap();
        for sql in [
            "SELECT nextval('customers_id_seq')",
            "SELECT pg_notify('marker_channel', 'x')",
            "SELECT id FROM customers WHERE id = bump()",
            "SELECT random() AS marker_random",
        ] {
            let e = client.simple_query(sql).await.unwrap_err();
            assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e:?}");
            assert!(db_message(&e).contains("reads only"), "{sql}: {}", db_message(&e));
            let e = client.query(sql, &[]).await.unwrap_err();
            assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "extended {sql}: {e:?}");
        }
        for sql in
            ["SELECT lower(name), now(), pure_add(1, 2) FROM customers WHERE id = 1", "SELECT count(*) FROM customers"]
        {
            client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        }
    });
    let log = c.postgres_log();
    assert!(!log.contains("nextval('customers_id_seq')"), "a SELECT with side effects ran:\n{log}");
    assert_eq!(c.backend_psql("SELECT last_value FROM customers_id_seq").trim(), "12", "the sequence moved");
}

/// A TLS connection to node 1's door, before any startup message.
async fn raw_tls(c: &Cluster) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (host, port) = c.pg_addr(1);
    let mut tcp = tokio::net::TcpStream::connect(format!("{host}:{port}")).await.unwrap();
    tcp.write_all(&pg::SSL_REQUEST).await.unwrap();
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(pg::client_config(&c.ca()));
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host).unwrap();
    connector.connect(name, tcp).await.unwrap()
}

#[test]
fn protocol_3_2_startups_are_negotiated_down_and_a_cancel_over_tls_ends_with_close_notify() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = Cluster::start_with_postgres(1);
    pg::runtime().block_on(async {
        // Startup asking for 3.2 with a protocol option: NegotiateProtocolVersion (3.0,
        // the option named) comes first, then the password request.
        let mut s = raw_tls(&c).await;
        let mut body = vec![0, 3, 0, 2];
        for (k, v) in [("user", "alice"), ("database", "demo"), ("_pq_.future_thing", "1")] {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut startup = i32::try_from(body.len() + 4).unwrap().to_be_bytes().to_vec();
        startup.extend(body);
        s.write_all(&startup).await.unwrap();
        s.flush().await.unwrap();
        let mut buf = vec![0u8; 256];
        let mut got = Vec::new();
        while got.len() < 9 || !got.contains(&b'R') {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0, "closed: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got[0], b'v', "no NegotiateProtocolVersion first: {got:?}");
        assert_eq!(&got[5..9], &196_608i32.to_be_bytes(), "not protocol 3.0: {got:?}");
        assert!(String::from_utf8_lossy(&got).contains("_pq_.future_thing"), "{got:?}");

        // A cancel request over TLS (for nobody) is answered by a clean TLS close.
        let mut s = raw_tls(&c).await;
        let mut cancel = 16i32.to_be_bytes().to_vec();
        cancel.extend(80_877_102i32.to_be_bytes());
        cancel.extend(1234i32.to_be_bytes());
        cancel.extend(5678i32.to_be_bytes());
        s.write_all(&cancel).await.unwrap();
        s.flush().await.unwrap();
        let mut rest = Vec::new();
        let end = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await.unwrap();
        assert!(end.is_ok(), "the door closed a TLS cancel without close_notify: {end:?}");
    });
    assert_no_panic(&c);
}

#[test]
fn a_listening_client_gets_notifications_while_it_sends_nothing() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    register_alias(&c, "listen", "strict");
    apply(
        &c,
        "policy",
        "listen.yaml",
        "name: listen\nrules:\n  - match: { groups: [engineers], resources: [listen], kinds: [select, listen] }\n    action: allow\n",
    );
    pg::runtime().block_on(async {
        let config = pg::config(&c, 1, "listen", "alice", &token);
        let (client, mut connection) = config.connect(pg::make_tls(&c)).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(m)) = futures_util::StreamExt::next(&mut messages).await {
                let _ = tx.send(m);
            }
        });
        client.simple_query("LISTEN marker_channel").await.unwrap();
        // Another session notifies; the listener sends nothing and still hears it.
        let other = pg::connect(&c, 1, "listen", "bob", &c.token("bob", &["engineers"])).await.unwrap();
        other.simple_query("NOTIFY marker_channel, 'hello-idle'").await.unwrap();
        let heard = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        match heard {
            Ok(Some(tokio_postgres::AsyncMessage::Notification(n))) => {
                assert_eq!((n.channel(), n.payload()), ("marker_channel", "hello-idle"));
            }
            other => panic!("no notification while idle: {other:?}"),
        }
    });
}

#[test]
fn a_function_call_message_is_refused_cleanly_and_the_session_goes_on() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    // FunctionCall of lo_creat (oid 957) with one int4 argument, as psycopg2's large
    // objects send it; then an ordinary query.
    let mut body = 957i32.to_be_bytes().to_vec();
    body.extend(1i16.to_be_bytes());
    body.extend(1i16.to_be_bytes());
    body.extend(1i16.to_be_bytes());
    body.extend(4i32.to_be_bytes());
    body.extend((-1i32).to_be_bytes());
    body.extend(1i16.to_be_bytes());
    let mut bytes = pg::message(b'F', &body);
    bytes.extend(pg::query("SELECT 'after-function-call'"));
    let ending = raw_exchange(&c, "demo", &token, bytes);
    let error = ending.error().unwrap_or_else(|| panic!("no error for the FunctionCall: {ending:?}"));
    assert_eq!(error.field(b'C').as_deref(), Some("0A000"), "{error:?}");
    assert!(error.field(b'M').unwrap_or_default().contains("FunctionCall"), "{error:?}");
    assert_eq!(ending.rows(), vec![vec![Some("after-function-call".to_string())]], "{ending:?}");
    assert!(!c.postgres_log().contains("lo_creat"), "the call reached Postgres");
    assert_no_panic(&c);
}

#[test]
fn members_of_a_group_reach_postgres_as_the_groups_own_login_and_its_secret_stays_sealed() {
    let c = Cluster::start_with_postgres(1);
    c.backend_psql("CREATE ROLE marker_dba LOGIN PASSWORD 'dba-secret-7'; GRANT SELECT ON customers TO marker_dba");
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(c.path().join("postgres.json")).unwrap()).unwrap();
    apply(
        &c,
        "resource",
        "grouped.yaml",
        &format!(
            "name: grouped\nprotocol: postgres\naddress: 127.0.0.1:{}\nusername: demo_app\npassword: {}\noptions: {{ database: demo }}\nlogins:\n  - {{ groups: [dba], username: marker_dba, password: dba-secret-7 }}\n",
            info["port"],
            info["app_password"].as_str().unwrap()
        ),
    );
    apply(
        &c,
        "policy",
        "grouped-policy.yaml",
        "name: grouped\nrules:\n  - match: { groups: [engineers, dba], resources: [grouped], kinds: [select] }\n    action: allow\n",
    );
    let as_user = |token: &str| {
        pg::runtime().block_on(async {
            let client = pg::connect(&c, 1, "grouped", "x", token).await.unwrap();
            let rows = simple_rows(&client.simple_query("SELECT current_user").await.unwrap());
            rows[0][0].clone().unwrap()
        })
    };
    assert_eq!(as_user(&c.token("dora", &["dba"])), "marker_dba");
    assert_eq!(as_user(&c.engineer_token()), "demo_app");
    let listed = c.cli_ok(1, &["resource", "list", "--json"]);
    assert!(listed.contains("marker_dba"), "{listed}");
    assert!(!listed.contains("dba-secret-7"), "a login secret came back from the API: {listed}");
    let node_log = std::fs::read_to_string(c.path().join("node1.log")).unwrap();
    assert!(!node_log.contains("dba-secret-7"), "a login secret was logged");
    let export = c.cli_ok(1, &["sessions", "export", "--json", "--resource", "grouped"]);
    assert!(export.contains("\"backend_user\":\"marker_dba\""), "{export}");
}

#[test]
fn in_one_pipeline_text_whose_reading_depends_on_settings_may_not_follow_code_the_gateway_cannot_see() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    c.backend_psql(
        "CREATE FUNCTION public.flip() RETURNS text LANGUAGE plpgsql AS \
         $$ BEGIN RETURN set_config('standard_conforming_strings', 'off', false); END $$; \
         GRANT EXECUTE ON FUNCTION public.flip() TO demo_app",
    );
    register_alias(&c, "pipeline", "strict");
    apply(
        &c,
        "policy",
        "pipeline.yaml",
        "name: pipeline\nrules:\n  - match: { groups: [engineers], resources: [pipeline], kinds: [select] }\n    action: allow\n",
    );
    // One pipeline: a function that flips standard_conforming_strings (Postgres would
    // report it only at the Sync), then a text Postgres would read as a SELECT and an
    // UPDATE once flipped.
    let mut bytes = pg::parse("", "SELECT flip()");
    bytes.extend(pg::bind("", ""));
    bytes.extend(pg::execute(""));
    bytes.extend(pg::parse("", "SELECT 'a\\' , ' ; UPDATE customers SET name = upper(name) WHERE id = 2; --'"));
    bytes.extend(pg::bind("", ""));
    bytes.extend(pg::execute(""));
    bytes.extend(pg::sync());
    let ending = raw_exchange(&c, "pipeline", &token, bytes);
    let error = ending.error().unwrap_or_else(|| panic!("the pipeline was not refused: {ending:?}"));
    assert_eq!(error.field(b'C').as_deref(), Some("42501"), "{error:?}");
    assert!(error.field(b'M').unwrap_or_default().contains("send a Sync first"), "{error:?}");
    assert_eq!(c.backend_psql("SELECT name FROM customers WHERE id = 2").trim(), "Alan Turing");
    // With a Sync in between, the flip is seen (the session ends) before the text is read.
    let mut bytes = pg::parse("", "SELECT flip()");
    bytes.extend(pg::bind("", ""));
    bytes.extend(pg::execute(""));
    bytes.extend(pg::sync());
    bytes.extend(pg::query("SELECT 'a\\' , ' ; UPDATE customers SET name = upper(name) WHERE id = 2; --'"));
    let ending = raw_exchange(&c, "pipeline", &token, bytes);
    assert!(
        ending.errors().iter().any(|e| e.field(b'C').as_deref() == Some("55000")),
        "the flip went unnoticed: {ending:?}"
    );
    assert_eq!(c.backend_psql("SELECT name FROM customers WHERE id = 2").trim(), "Alan Turing");
}

#[test]
fn a_masked_value_is_type_valid_in_both_formats_so_typed_drivers_decode_it() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    register_alias(&c, "typed", "strict");
    apply(
        &c,
        "policy",
        "typed.yaml",
        "name: typed\nrules:\n  - match: { groups: [engineers], resources: [typed], kinds: [select] }\n    action: allow\n  - match: { resources: [typed] }\n    action: mask\n    mask: { columns: [id, email], detectors: [credit_card] }\n",
    );
    pg::runtime().block_on(async {
        let client = pg::connect(&c, 1, "typed", "alice", &token).await.unwrap();
        // Text format (simple protocol): text types get ***, others NULL.
        let rows =
            simple_rows(&client.simple_query("SELECT id, email, name FROM customers WHERE id = 1").await.unwrap());
        assert_eq!(rows, vec![vec![None, Some("***".to_string()), Some("Ada Lovelace".to_string())]]);
        // Binary format (tokio-postgres's extended protocol): the same, and it decodes.
        let row = client.query_one("SELECT id, email, name FROM customers WHERE id = $1", &[&1i32]).await.unwrap();
        assert_eq!(row.get::<_, Option<i32>>(0), None);
        assert_eq!(row.get::<_, Option<&str>>(1), Some("***"));
        assert_eq!(row.get::<_, &str>(2), "Ada Lovelace");
        // A prepared statement executed many times keeps decoding.
        let stmt = client.prepare("SELECT id, email FROM customers WHERE id <= $1 ORDER BY id").await.unwrap();
        for _ in 0..7 {
            let rows = client.query(&stmt, &[&3i32]).await.unwrap();
            assert!(rows.iter().all(|r| r.get::<_, Option<i32>>(0).is_none() && r.get::<_, &str>(1) == "***"));
        }
        // A detector's find in a non-text value (a card number as bigint): NULL in both.
        let rows = simple_rows(&client.simple_query("SELECT 4111111111111111::int8 AS card").await.unwrap());
        assert_eq!(rows, vec![vec![None]]);
        let row = client.query_one("SELECT $1::int8 AS card", &[&4111111111111111i64]).await.unwrap();
        assert_eq!(row.get::<_, Option<i64>>(0), None);
        let row = client.query_one("SELECT $1::int8 AS n", &[&42i64]).await.unwrap();
        assert_eq!(row.get::<_, Option<i64>>(0), Some(42));
    });
}
