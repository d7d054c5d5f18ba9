//! The differential oracle: Postgres's own log says what it ran; the gateway's audit
//! says what it decided. A corpus of hostile texts (quotes, backslashes, E-strings,
//! dollar quotes, nested comments, Unicode escapes, several statements per string,
//! every setting that changes how text is read, extended-protocol name games), plus a
//! bounded generator mixing them, goes through the gateway in both query protocols.
//! Then:
//! - every statement Postgres logged (`statement:` / `execute`) is one the gateway
//!   audited as allowed, with exactly the same text;
//! - every audited statement that completed has one command tag per classified
//!   statement, of the classified kind (a text Postgres read as more statements, or as
//!   other statements, than the gateway did shows up here);
//! - nothing the policy denies (writes) ran: the table is unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::time::Duration;

use portcullis_tests::{Cluster, pg};

/// Texts an attacker would try, each alone and as material for the generator.
const CORPUS: &[&str] = &[
    "SELECT 1",
    "SELECT 'a''b'",
    "SELECT E'a\\'b'",
    "SELECT 'a\\' , ' ; UPDATE customers SET name = upper(name) WHERE id = 2; --'",
    "SELECT 'ー\\' , ' ; DELETE FROM customers WHERE id = 3; --'",
    "SELECT E'\\\\' , ' ; UPDATE customers SET name = upper(name) WHERE id = 4; --'",
    "SELECT $$ ' ; UPDATE customers SET name = 'x' WHERE id = 5 -- $$",
    "SELECT $t$ $$ ' $t$ AS dollar",
    "/* a /* nested */ comment ; UPDATE customers SET name = 'y' */ SELECT 2",
    "SELECT 1 -- ; DELETE FROM customers",
    "SELECT 3 /* ; */ ; SELECT 4",
    "SELECT ';' AS semi, '--' AS dash, '/*' AS open",
    "SELECT U&\"\\0061\" FROM (SELECT 1 AS a) s",
    "SELECT U&'\\0027' AS quote",
    "SELECT 'a' 'b' AS continued",
    "SELECT 'a'\n'b' AS continued_line",
    "SHOW standard_conforming_strings",
    "SHOW client_encoding",
    "SET standard_conforming_strings = off",
    "SET standard_conforming_strings TO 'false'",
    "SET LOCAL standard_conforming_strings = 0",
    "SET client_encoding = 'SJIS'",
    "SET client_encoding = 'BIG5'",
    "SET client_encoding = 'GBK'",
    "SET client_encoding = 'GB18030'",
    "SET NAMES 'UHC'",
    "SET backslash_quote = on",
    "SET escape_string_warning = off",
    "SELECT set_config('standard_conforming_strings', 'off', false)",
    "SELECT set_config('client_encoding', 'SJIS', false)",
    "RESET ALL",
    "RESET standard_conforming_strings",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SELECT 5; UPDATE customers SET name = 'z' WHERE id = 6",
    "UPDATE customers SET name = 'w' WHERE id = 7",
    "DELETE FROM customers WHERE id = 8",
    "SELECT E'\\x27' AS hex_quote",
    "SELECT E'\\u0027' AS unicode_quote",
    "SELECT '\\'",
];

/// Joins between fragments for the generator.
const JOINS: &[&str] = &["; ", " ", ";\n", " -- x\n", " /* ; */ ", ";;"];

/// A small deterministic generator (xorshift), so a failure reproduces.
struct Generator(u64);

impl Generator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }

    /// One to three fragments, joined.
    fn text(&mut self) -> String {
        let n = 1 + self.next() % 3;
        let mut out = String::new();
        for i in 0..n {
            if i > 0 {
                out.push_str(self.pick(JOINS));
            }
            out.push_str(self.pick(CORPUS));
        }
        out
    }
}

/// (statement text) of every `statement:` / `execute ...:` record of a Postgres log.
fn executed(log: &str) -> Vec<String> {
    let mut records: Vec<String> = Vec::new();
    for line in log.lines() {
        if let Some(cont) = line.strip_prefix('\t') {
            if let Some(last) = records.last_mut() {
                last.push('\n');
                last.push_str(cont);
            }
            continue;
        }
        match line.split_once("LOG:  ") {
            Some((_, rest)) => records.push(rest.to_string()),
            None => records.push(String::new()),
        }
    }
    records
        .into_iter()
        .filter_map(|r| {
            if let Some(text) = r.strip_prefix("statement: ") {
                return Some(text.to_string());
            }
            let rest = r.strip_prefix("execute ")?;
            let (_, text) = rest.split_once(": ")?;
            Some(text.to_string())
        })
        .collect()
}

/// The command word of a completion tag (`SELECT 1` → `select`).
fn tag_kind(tag: &str) -> String {
    let word = tag.split_whitespace().next().unwrap_or_default().to_ascii_lowercase();
    match word.as_str() {
        "begin" | "commit" | "rollback" | "start" | "savepoint" | "release" => "transaction".into(),
        "reset" => "set".into(),
        other => other.into(),
    }
}

#[test]
fn every_statement_postgres_ran_was_decided_and_audited_with_the_same_text() {
    let c = Cluster::start_with_postgres(1);
    let token = c.engineer_token();
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(c.path().join("postgres.json")).unwrap()).unwrap();
    let yaml = format!(
        "name: oracle\nprotocol: postgres\naddress: 127.0.0.1:{}\nusername: demo_app\npassword: {}\naudit: strict\noptions: {{ database: demo }}\n",
        info["port"],
        info["app_password"].as_str().unwrap()
    );
    let file = c.path().join("oracle.yaml");
    std::fs::write(&file, yaml).unwrap();
    c.cli_ok(1, &["resource", "apply", "-f", file.to_str().unwrap()]);
    let policy = "name: oracle\nrules:\n  - match: { groups: [engineers], resources: [oracle], kinds: [select, show, set, transaction] }\n    action: allow\n";
    let file = c.path().join("oracle-policy.yaml");
    std::fs::write(&file, policy).unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", file.to_str().unwrap()]);
    let before = c.backend_psql("SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM customers");
    // Only what Postgres logs from here on is the corpus's doing.
    let mark = c.postgres_log().len();

    let mut texts: Vec<String> = CORPUS.iter().map(|s| s.to_string()).collect();
    let mut generator = Generator(0x05ee_d0f0_ac1e);
    texts.extend((0..150).map(|_| generator.text()));

    pg::runtime().block_on(async {
        // A new session now and then: a session ended by a pinned-setting change (or
        // an error) must not stop the corpus.
        let mut client = pg::connect(&c, 1, "oracle", "alice", &token).await.unwrap();
        for (i, text) in texts.iter().enumerate() {
            if client.is_closed() || i % 40 == 0 {
                client = pg::connect(&c, 1, "oracle", "alice", &token).await.unwrap();
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), client.simple_query(text)).await;
            if client.is_closed() {
                client = pg::connect(&c, 1, "oracle", "alice", &token).await.unwrap();
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), client.query(text.as_str(), &[])).await;
        }
    });
    // Extended-protocol name games, raw: a statement name parsed twice, a portal bound
    // before its statement is parsed again.
    let mut bytes = pg::parse("n1", "SELECT 'first' AS name_game");
    bytes.extend(pg::sync());
    bytes.extend(pg::parse("n1", "UPDATE customers SET name = 'name-game' WHERE id = 9"));
    bytes.extend(pg::sync());
    bytes.extend(pg::bind("", "n1"));
    bytes.extend(pg::execute(""));
    bytes.extend(pg::sync());
    bytes.extend(pg::query("BEGIN"));
    bytes.extend(pg::parse("", "SELECT 'bound' AS portal_game"));
    bytes.extend(pg::bind("p", ""));
    bytes.extend(pg::parse("", "DELETE FROM customers WHERE id = 10"));
    bytes.extend(pg::execute("p"));
    bytes.extend(pg::sync());
    bytes.extend(pg::query("COMMIT"));
    pg::runtime().block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut s = pg::raw_tls_login(&c, 1, "oracle", &token).await;
        s.write_all(&bytes).await.unwrap();
        s.flush().await.unwrap();
        pg::read_async_until_close(&mut s, Duration::from_secs(5)).await
    });

    // --- what the gateway audited
    let export = c.cli_ok(1, &["sessions", "export", "--json", "--resource", "oracle"]);
    let mut audited: BTreeSet<String> = BTreeSet::new();
    let mut mismatches = Vec::new();
    for line in export.lines().filter(|l| !l.trim().is_empty()) {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let events = record["events"].as_array().cloned().unwrap_or_default();
        for (i, e) in events.iter().enumerate() {
            if e["kind"] != "statement" {
                continue;
            }
            let sql = e["detail"]["sql"].as_str().unwrap_or_default().to_string();
            audited.insert(sql.clone());
            // Its result, if the next record is one and nothing failed.
            let Some(result) = events.get(i + 1).filter(|r| r["kind"] == "result") else { continue };
            if !result["detail"]["error"].is_null() || e["detail"]["extended"] == true {
                continue;
            }
            let kinds: Vec<String> = e["detail"]["kinds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_string())
                .filter(|k| k != "other")
                .collect();
            let tags: Vec<String> =
                result["detail"]["tags"].as_array().unwrap().iter().map(|t| tag_kind(t.as_str().unwrap())).collect();
            if kinds != tags {
                mismatches.push(format!(
                    "{sql:?}: gateway read {kinds:?}, Postgres ran {tags:?}\n  {}\n  {}",
                    e["detail"], result["detail"]
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "Postgres ran other statements than the gateway decided:\n{}",
        mismatches.join("\n")
    );

    // --- what Postgres ran
    // The gateway's own reads of the catalog, and its own DO blocks.
    let internal = ["/* portcullis: ", "DO $portcullis$"];
    let ran: Vec<String> = executed(c.postgres_log().get(mark..).unwrap_or_default())
        .into_iter()
        .filter(|t| !internal.iter().any(|i| t.starts_with(i)))
        .collect();
    assert!(ran.len() > 100, "the corpus barely reached Postgres: {} statements", ran.len());
    let unaudited: Vec<&String> = ran.iter().filter(|t| !audited.contains(t.as_str())).collect();
    assert!(unaudited.is_empty(), "Postgres ran statements the gateway did not audit as allowed:\n{unaudited:#?}");
    let after = c.backend_psql("SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM customers");
    assert_eq!(before, after, "a write the policy denies changed the table");
}
