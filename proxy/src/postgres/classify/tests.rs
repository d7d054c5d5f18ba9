#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use super::*;
use crate::mask::MaskPlan;
use crate::policy::Glob;
use StatementKind as K;

/// (sql, kind of each statement, tables of each statement, missing_where of each statement)
type Case = (&'static str, &'static [K], &'static [&'static [&'static str]], &'static [bool]);

const CASES: &[Case] = &[
    // Reads.
    ("SELECT 1", &[K::Select], &[&[]], &[false]),
    ("select * from users where id = 1", &[K::Select], &[&["users"]], &[false]),
    (
        "SELECT * FROM app.Users u JOIN app.orders o ON o.uid = u.id",
        &[K::Select],
        &[&["app.orders", "app.users"]],
        &[false],
    ),
    (r#"SELECT * FROM "MyTable" JOIN s."Other" o ON true"#, &[K::Select], &[&["mytable", "s.other"]], &[false]),
    (
        "SELECT * FROM a WHERE id IN (SELECT aid FROM b WHERE EXISTS (SELECT 1 FROM c))",
        &[K::Select],
        &[&["a", "b", "c"]],
        &[false],
    ),
    ("SELECT x FROM (SELECT x FROM inner_t) sub", &[K::Select], &[&["inner_t"]], &[false]),
    ("SELECT * FROM a UNION ALL SELECT * FROM b", &[K::Select], &[&["a", "b"]], &[false]),
    ("WITH t AS (SELECT * FROM src) SELECT * FROM t", &[K::Select], &[&["src"]], &[false]),
    ("WITH users AS (SELECT * FROM users) SELECT * FROM users", &[K::Select], &[&["users"]], &[false]),
    (
        "WITH RECURSIVE r AS (SELECT 1 UNION SELECT n FROM r, edges) SELECT * FROM r",
        &[K::Select],
        &[&["edges"]],
        &[false],
    ),
    ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity", &[K::Select], &[&["pg_stat_activity"]], &[false]),
    ("SELECT * FROM public.a FOR UPDATE", &[K::Select], &[&["public.a"]], &[false]),
    ("VALUES (1), (2)", &[K::Select], &[&[]], &[false]),
    // Writes.
    ("INSERT INTO logs (msg) VALUES ('x')", &[K::Insert], &[&["logs"]], &[false]),
    ("INSERT INTO archive SELECT * FROM live ON CONFLICT DO NOTHING", &[K::Insert], &[&["archive", "live"]], &[false]),
    ("UPDATE accounts SET balance = 0", &[K::Update], &[&["accounts"]], &[true]),
    (
        "UPDATE accounts a SET balance = 0 FROM owners o WHERE o.id = a.owner",
        &[K::Update],
        &[&["accounts", "owners"]],
        &[false],
    ),
    ("DELETE FROM sessions", &[K::Delete], &[&["sessions"]], &[true]),
    ("DELETE FROM sessions WHERE expires < now()", &[K::Delete], &[&["sessions"]], &[false]),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", &[K::Merge], &[&["s", "t"]], &[false]),
    ("WITH d AS (DELETE FROM queue RETURNING *) SELECT * FROM d", &[K::Delete], &[&["queue"]], &[true]),
    (
        "WITH u AS (UPDATE t SET x = 1 WHERE id = 2 RETURNING *) SELECT count(*) FROM u",
        &[K::Update],
        &[&["t"]],
        &[false],
    ),
    ("EXPLAIN ANALYZE DELETE FROM big_table", &[K::Delete], &[&["big_table"]], &[true]),
    ("EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET x = 1 WHERE y = 2", &[K::Update], &[&["t"]], &[false]),
    ("EXPLAIN DELETE FROM big_table", &[K::Explain], &[&["big_table"]], &[false]),
    ("EXPLAIN (ANALYZE false) DELETE FROM big_table", &[K::Explain], &[&["big_table"]], &[false]),
    ("SELECT * INTO new_t FROM old_t", &[K::Ddl], &[&["new_t", "old_t"]], &[false]),
    // COPY.
    ("COPY users TO STDOUT", &[K::Copy], &[&["users"]], &[false]),
    ("COPY staging.users (id, name) FROM STDIN WITH (FORMAT csv)", &[K::Copy], &[&["staging.users"]], &[false]),
    ("COPY (SELECT * FROM a JOIN b USING (id)) TO STDOUT", &[K::Copy], &[&["a", "b"]], &[false]),
    ("COPY (DELETE FROM a RETURNING *) TO STDOUT", &[K::Delete], &[&["a"]], &[true]),
    // DDL, privileges, maintenance.
    ("CREATE TABLE a (id int PRIMARY KEY, b_id int REFERENCES b (id))", &[K::Ddl], &[&["a", "b"]], &[false]),
    ("ALTER TABLE s.a ADD COLUMN c text", &[K::Ddl], &[&["s.a"]], &[false]),
    ("ALTER TABLE a RENAME TO z", &[K::Ddl], &[&["a"]], &[false]),
    ("DROP TABLE IF EXISTS a, s.b CASCADE", &[K::Ddl], &[&["a", "s.b"]], &[false]),
    ("COMMENT ON TABLE s.x IS 'hello'", &[K::Ddl], &[&["s.x"]], &[false]),
    ("CREATE INDEX CONCURRENTLY i ON t (c)", &[K::Ddl], &[&["t"]], &[false]),
    ("CREATE VIEW v AS SELECT * FROM t", &[K::Ddl], &[&["t", "v"]], &[false]),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", &[K::Ddl], &[&[]], &[false]),
    ("TRUNCATE a, b RESTART IDENTITY", &[K::Truncate], &[&["a", "b"]], &[false]),
    ("GRANT SELECT ON a TO bob", &[K::Grant], &[&["a"]], &[false]),
    ("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM bob", &[K::Grant], &[&[]], &[false]),
    ("CREATE ROLE agent LOGIN", &[K::Grant], &[&[]], &[false]),
    ("VACUUM ANALYZE a", &[K::Vacuum], &[&["a"]], &[false]),
    ("ANALYZE a", &[K::Vacuum], &[&["a"]], &[false]),
    ("REINDEX TABLE a", &[K::Vacuum], &[&["a"]], &[false]),
    ("LOCK TABLE a IN ACCESS EXCLUSIVE MODE", &[K::Lock], &[&["a"]], &[false]),
    // Session and control.
    ("SET search_path = app, public", &[K::Set], &[&[]], &[false]),
    ("RESET ALL", &[K::Set], &[&[]], &[false]),
    ("SHOW work_mem", &[K::Show], &[&[]], &[false]),
    (
        "BEGIN; SAVEPOINT s; ROLLBACK TO s; COMMIT",
        &[K::Transaction, K::Transaction, K::Transaction, K::Transaction],
        &[&[], &[], &[], &[]],
        &[false; 4],
    ),
    ("PREPARE TRANSACTION 'x'", &[K::TwoPhase], &[&[]], &[false]),
    ("COMMIT PREPARED 'x'", &[K::TwoPhase], &[&[]], &[false]),
    ("ROLLBACK PREPARED 'x'", &[K::TwoPhase], &[&[]], &[false]),
    ("ROLLBACK", &[K::Transaction], &[&[]], &[false]),
    ("CALL do_things(1)", &[K::Call], &[&[]], &[false]),
    (
        "PREPARE p AS DELETE FROM a WHERE id = $1; EXECUTE p(1); DEALLOCATE p",
        &[K::Prepare, K::Prepare, K::Prepare],
        &[&["a"], &[], &[]],
        &[false; 3],
    ),
    ("LISTEN ch; NOTIFY ch, 'x'; UNLISTEN *", &[K::Listen, K::Listen, K::Listen], &[&[], &[], &[]], &[false; 3]),
    ("DO $$ BEGIN DELETE FROM a; END $$", &[K::Do], &[&[]], &[false]),
    // Splitting, comments.
    (
        "SELECT 1; DELETE FROM t; UPDATE u SET x = 1 WHERE y",
        &[K::Select, K::Delete, K::Update],
        &[&[], &["t"], &["u"]],
        &[false, true, false],
    ),
    ("-- leading\nSELECT /* ; */ ';' FROM a; /* trailing */", &[K::Select], &[&["a"]], &[false]),
];

#[test]
fn statement_table_classifies_kind_tables_and_missing_where() {
    for (sql, kinds, tables, missing) in CASES {
        let got = classify(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let got_kinds: Vec<K> = got.iter().map(|s| s.kind.clone()).collect();
        assert_eq!(&got_kinds, kinds, "kinds of {sql}");
        let got_tables: Vec<Vec<&str>> = got.iter().map(|s| s.tables.iter().map(String::as_str).collect()).collect();
        let want_tables: Vec<Vec<&str>> = tables.iter().map(|t| t.to_vec()).collect();
        assert_eq!(got_tables, want_tables, "tables of {sql}");
        let got_missing: Vec<bool> = got.iter().map(|s| s.missing_where).collect();
        assert_eq!(&got_missing, missing, "missing_where of {sql}");
    }
}

#[test]
fn multi_statement_strings_are_split_into_their_own_trimmed_texts() {
    let got = classify("  SELECT 1 ;\n\n  DELETE FROM t WHERE a = ';' ;  ").unwrap();
    let texts: Vec<&str> = got.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts, ["SELECT 1", "DELETE FROM t WHERE a = ';'"]);
}

#[test]
fn empty_queries_classify_to_no_statements() {
    for sql in ["", "   ", ";", " ;; ; ", "-- only a comment", "/* block */ ; -- and line\n"] {
        assert_eq!(classify(sql).unwrap(), Vec::new(), "{sql:?}");
    }
}

#[test]
fn data_modifying_cte_sets_writes_in_cte_and_takes_the_write_kind() {
    let s = &classify("WITH x AS (INSERT INTO t VALUES (1) RETURNING id) SELECT * FROM x").unwrap()[0];
    assert_eq!(s.kind, K::Insert);
    assert!(s.writes_in_cte);
    assert!(s.kind.writes());
    let plain = &classify("WITH x AS (SELECT 1) SELECT * FROM x").unwrap()[0];
    assert!(!plain.writes_in_cte);
    assert_eq!(plain.kind, K::Select);
}

#[test]
fn cte_name_does_not_hide_the_real_table_in_its_own_body() {
    let s = &classify("WITH secrets AS (SELECT * FROM secrets) SELECT * FROM secrets").unwrap()[0];
    assert_eq!(s.tables, ["secrets"]);
    // ...but it does hide it where it is in scope.
    let s = &classify("WITH secrets AS (SELECT 1) SELECT * FROM secrets").unwrap()[0];
    assert!(s.tables.is_empty());
    // A schema-qualified name is never a CTE.
    let s = &classify("WITH secrets AS (SELECT 1) SELECT * FROM public.secrets").unwrap()[0];
    assert_eq!(s.tables, ["public.secrets"]);
}

#[test]
fn select_for_update_and_share_are_flagged() {
    assert!(classify("SELECT * FROM a FOR UPDATE SKIP LOCKED").unwrap()[0].select_for_update);
    assert!(classify("SELECT * FROM (SELECT * FROM a FOR SHARE) s").unwrap()[0].select_for_update);
    assert!(!classify("SELECT * FROM a").unwrap()[0].select_for_update);
}

#[test]
fn functions_called_anywhere_are_listed_as_the_parser_resolved_them() {
    let f = |sql: &str| classify(sql).unwrap()[0].functions.clone();
    assert_eq!(f("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"), ["pg_terminate_backend"]);
    // Quoting, case and Unicode escapes do not hide a name from the parser.
    assert_eq!(f(r#"SELECT "pg_terminate_backend"(1)"#), ["pg_terminate_backend"]);
    assert_eq!(f(r#"SELECT U&"pg_terminate\005fbackend"(1)"#), ["pg_terminate_backend"]);
    assert_eq!(f("SELECT PG_CATALOG.Set_Config('role', 'x', false)"), ["pg_catalog.set_config"]);
    // In FROM, WHERE, nested calls, INSERT values, CALL, and inside a CTE.
    assert_eq!(f("SELECT * FROM dblink('conn', 'DELETE FROM t') AS x(a int)"), ["dblink"]);
    assert_eq!(f("SELECT 1 FROM t WHERE lower(name) = upper('x')"), ["lower", "upper"]);
    assert_eq!(f("INSERT INTO t VALUES (now())"), ["now"]);
    assert_eq!(f("CALL app.cleanup(1)"), ["app.cleanup"]);
    assert_eq!(f("WITH x AS (SELECT query_to_xml('DELETE FROM t', true, true, '')) SELECT * FROM x"), ["query_to_xml"]);
    assert!(f("SELECT a FROM t").is_empty());
    // Defining a function is not calling it.
    assert!(f("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'").is_empty());
}

/// Which result columns a `columns: [email, ssn]` mask hides, for `sql` returning `names`.
fn masked(sql: &str, names: &[&str]) -> Vec<bool> {
    let plan = MaskPlan::new(vec![Glob::new("email"), Glob::new("ssn")], vec![]);
    let lineages: Vec<Lineage> = classify(sql).unwrap().into_iter().map(|s| s.lineage).collect();
    let names: Vec<String> = names.iter().map(|n| (*n).to_string()).collect();
    masked_columns(&plan, &lineages, &names, &[], None)
}

#[test]
fn a_masked_column_is_masked_under_any_name_it_flows_into() {
    let (t, f) = (true, false);
    let cases: &[(&str, &[&str], &[bool])] = &[
        ("SELECT name, email FROM customers", &["name", "email"], &[f, t]),
        ("SELECT name FROM customers WHERE email = 'x'", &["name"], &[f]),
        ("SELECT c.name, o.total FROM customers c JOIN orders o ON o.cid = c.id", &["name", "total"], &[f, f]),
        ("SELECT * FROM customers", &["id", "name", "email", "ssn"], &[f, f, t, t]),
        ("SELECT * FROM customers WHERE email LIKE 'a%'", &["id", "name", "email", "ssn"], &[f, f, t, t]),
        ("SELECT id, count(*) FROM orders GROUP BY id", &["id", "count"], &[f, f]),
        // Computed from, renamed, or hidden behind a subquery, a whole row or a set operation.
        ("SELECT reverse(email) FROM customers", &["reverse"], &[t]),
        ("SELECT name(email) FROM customers", &["name"], &[t]),
        ("SELECT email AS contact FROM customers", &["contact"], &[t]),
        ("SELECT (email)::text AS e, name FROM customers", &["e", "name"], &[t, f]),
        ("SELECT name AS email2, email AS name FROM customers", &["email2", "name"], &[t, t]),
        ("SELECT x FROM (SELECT email AS x FROM customers) s", &["x"], &[t]),
        ("WITH w AS (SELECT ssn AS x FROM customers) SELECT x FROM w", &["x"], &[t]),
        ("SELECT c FROM customers c", &["c"], &[t]),
        ("SELECT to_json(c) FROM customers c", &["to_json"], &[t]),
        ("SELECT row_to_json(c.*) FROM customers c", &["row_to_json"], &[t]),
        ("SELECT name FROM customers AS c(i, x, name)", &["name"], &[t]),
        ("SELECT *, upper(email) AS u FROM customers", &["id", "name", "email", "ssn", "u"], &[t, t, t, t, t]),
        ("SELECT name FROM customers UNION SELECT email FROM customers", &["name"], &[t]),
        ("SELECT name FROM customers; SELECT email FROM customers", &["name"], &[t]),
    ];
    for (sql, names, expected) in cases {
        assert_eq!(masked(sql, names), *expected, "{sql}");
    }
}

#[test]
fn without_column_masks_nothing_is_masked_whatever_the_shape() {
    let plan = MaskPlan::new(vec![], vec![crate::mask::Detector::Email]);
    let lineages: Vec<Lineage> =
        classify("SELECT reverse(email) FROM customers").unwrap().into_iter().map(|s| s.lineage).collect();
    assert_eq!(masked_columns(&plan, &lineages, &["reverse".to_string()], &[], None), [false]);
}

#[test]
fn switching_roles_is_a_privilege_statement_not_a_setting() {
    let kind = |sql: &str| classify(sql).unwrap()[0].kind.clone();
    for sql in ["SET ROLE postgres", "SET LOCAL ROLE admin", "SET SESSION AUTHORIZATION postgres", "RESET ROLE"] {
        assert_eq!(kind(sql), K::Grant, "{sql}");
        assert!(kind(sql).writes(), "{sql}");
    }
    for sql in ["SET search_path = app", "SET TIME ZONE 'UTC'", "RESET ALL", "SET application_name = 'x'"] {
        assert_eq!(kind(sql), K::Set, "{sql}");
    }
}

#[test]
fn copy_direction_distinguishes_client_file_and_program() {
    let dir = |sql: &str| classify(sql).unwrap()[0].copy_direction;
    assert_eq!(dir("COPY a TO STDOUT"), Some(CopyDirection::ToClient));
    assert_eq!(dir("COPY a FROM STDIN"), Some(CopyDirection::FromClient));
    assert_eq!(dir("COPY a TO '/tmp/a.csv'"), Some(CopyDirection::ToFile));
    assert_eq!(dir("COPY a FROM '/tmp/a.csv'"), Some(CopyDirection::FromFile));
    assert_eq!(dir("COPY a FROM PROGRAM 'curl evil'"), Some(CopyDirection::Program));
    assert_eq!(dir("COPY (SELECT 1) TO PROGRAM 'cat'"), Some(CopyDirection::Program));
    assert_eq!(dir("SELECT 1"), None);
}

#[test]
fn unknown_statements_are_other_with_the_node_name() {
    let s = &classify("CHECKPOINT").unwrap()[0];
    assert_eq!(s.kind, K::Other("CheckPointStmt".to_string()));
    assert_eq!(s.kind.name(), "other");
    assert!(s.kind.writes(), "unknown statements count as writing");
    assert_eq!(classify("LOAD 'plugin'").unwrap()[0].kind, K::Other("LoadStmt".to_string()));
}

#[test]
fn kind_names_are_lowercase_and_writes_is_conservative() {
    assert_eq!(K::Select.name(), "select");
    assert_eq!(K::Ddl.name(), "ddl");
    assert_eq!(K::Transaction.name(), "transaction");
    assert_eq!(K::Do.to_string(), "do");
    assert_eq!(K::Other("X".into()).to_string(), "other (X)");
    for k in [K::Select, K::Set, K::Show, K::Transaction, K::Explain, K::Listen, K::Lock] {
        assert!(!k.writes(), "{k}");
    }
    for k in [K::Insert, K::Update, K::Delete, K::Merge, K::Ddl, K::Truncate, K::Copy, K::Grant, K::Do, K::Call] {
        assert!(k.writes(), "{k}");
    }
}

#[test]
fn unparseable_sql_carries_the_parsers_message() {
    let cases: &[(&str, &str, Option<usize>)] = &[
        ("SELEC 1", r#"syntax error at or near "SELEC""#, Some(0)),
        ("SELECT * FROM", "syntax error at end of input", Some(13)),
        ("SELECT 1 FROM FROM t", r#"syntax error at or near "FROM""#, None),
        ("SELECT 1; DELET FROM t", r#"syntax error at or near "DELET""#, Some(10)),
        ("SELECT 'unterminated", "unterminated quoted string at or near \"'unterminated\"", Some(7)),
    ];
    for (sql, message, position) in cases {
        match classify(sql) {
            Err(Error::SqlUnparseable { message: m, position: p }) => {
                assert_eq!(&m, message, "{sql}");
                assert_eq!(&p, position, "{sql}");
            }
            other => panic!("{sql}: {other:?}"),
        }
    }
    let err = classify("SELEC 1").unwrap_err();
    assert_eq!(err.to_string(), r#"cannot parse SQL: syntax error at or near "SELEC""#);
}

#[test]
fn nul_bytes_are_refused_not_truncated() {
    let err = classify("SELECT 1;\0 DROP TABLE a").unwrap_err();
    assert!(matches!(err, Error::SqlUnparseable { position: Some(9), .. }), "{err:?}");
}

#[test]
fn sql_over_the_limit_is_refused() {
    let sql = "SELECT 1".to_string() + &" ".repeat(100);
    assert_eq!(classify_with_limit(&sql, 200).unwrap().len(), 1);
    let err = classify_with_limit(&sql, 50).unwrap_err();
    assert!(matches!(err, Error::SqlTooLarge { len: 108, max: 50 }), "{err:?}");
    assert_eq!(err.to_string(), "SQL too large: 108 bytes exceeds the limit of 50 bytes");
    let huge = format!("SELECT '{}'", "x".repeat(DEFAULT_MAX_SQL_BYTES));
    assert!(matches!(classify(&huge), Err(Error::SqlTooLarge { .. })));
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let shapes = [
        format!("SELECT {}1", "1+".repeat(200)),
        format!("SELECT {}1", "1+".repeat(100_000)),
        format!("SELECT {}1{}", "(".repeat(100_000), ")".repeat(100_000)),
        format!("SELECT {}1{}", "(SELECT ".repeat(1_000), ")".repeat(1_000)),
        format!("SELECT 1{}", " UNION SELECT 1".repeat(1_000)),
        format!("SELECT {}true", "NOT ".repeat(10_000)),
        format!("SELECT {}1{}", "ARRAY[".repeat(500), "]".repeat(500)),
    ];
    for sql in &shapes {
        match classify(sql) {
            Err(Error::SqlTooComplex { .. }) => {}
            other => panic!("{}...: {other:?}", &sql[..40]),
        }
    }
    // Moderate nesting still classifies.
    let ok = format!("SELECT {}1 FROM t", "1+".repeat(30));
    assert_eq!(classify(&ok).unwrap()[0].tables, ["t"]);
    let wide = format!("SELECT 1 FROM t WHERE {}true", "a = 1 AND ".repeat(5_000));
    assert_eq!(classify(&wide).unwrap()[0].kind, K::Select);
}

/// A tiny deterministic PRNG so the test needs no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn never_panics_on_garbage_or_mutated_sql() {
    let seeds: Vec<&str> = CASES.iter().map(|c| c.0).collect();
    let alphabet = b"();,'\"$\\ -*/\n\t:[]{}.=<>|&%0123456789abcdefghijklmnopqrstuvwxyzSELCTFROMWHEUPDAIN";
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut checked = 0;
    for round in 0..600 {
        let input = match round % 3 {
            // Random bytes, made UTF-8 the way a caller would.
            0 => {
                let bytes: Vec<u8> = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            // Random SQL-ish characters.
            1 => (0..rng.below(120)).map(|_| alphabet[rng.below(alphabet.len())] as char).collect(),
            // A real statement with bytes inserted, deleted and replaced.
            _ => {
                let mut bytes = seeds[rng.below(seeds.len())].as_bytes().to_vec();
                for _ in 0..=rng.below(6) {
                    let at = rng.below(bytes.len() + 1);
                    match rng.below(3) {
                        0 => bytes.insert(at, alphabet[rng.below(alphabet.len())]),
                        1 if at < bytes.len() => {
                            bytes.remove(at);
                        }
                        _ if at < bytes.len() => bytes[at] = rng.next() as u8,
                        _ => {}
                    }
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
        };
        let result = std::panic::catch_unwind(|| classify(&input));
        assert!(result.is_ok(), "classify panicked on {input:?}");
        if let Ok(Ok(statements)) = result {
            for s in statements {
                assert!(input.contains(&s.text), "{:?} is not part of {input:?}", s.text);
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 600);
}

fn pinned(sql: &str) -> Option<String> {
    classify(sql).unwrap().into_iter().find_map(|s| s.pinned_change)
}

#[test]
fn changing_how_postgres_reads_statement_text_is_refused_in_every_spelling() {
    for sql in [
        "SET standard_conforming_strings = off",
        "SET standard_conforming_strings TO false",
        "SET LOCAL standard_conforming_strings = 0",
        "SET SESSION standard_conforming_strings = 'off'",
        "SET client_encoding = 'SJIS'",
        "SET NAMES 'BIG5'",
        "SELECT set_config('standard_conforming_strings', 'off', false)",
        "SELECT pg_catalog.set_config('client_encoding', 'GBK', true)",
        "SELECT 1 WHERE set_config('STANDARD_CONFORMING_STRINGS', 'off', false) IS NOT NULL",
        // The gateway cannot read what these set.
        "SELECT set_config(current_setting('my.name'), 'off', false)",
        "SELECT set_config(name, 'SJIS', false) FROM pg_settings",
        "SELECT set_config('role', 'postgres', false)",
        "SELECT set_config('client_encoding', lower('SJIS'), false)",
    ] {
        let why = pinned(sql).unwrap_or_else(|| panic!("not refused: {sql}"));
        assert!(why.contains("pinned") || why.contains("cannot tell") || why.contains("role"), "{sql}: {why}");
    }
}

#[test]
fn pinned_values_resets_and_other_settings_pass_as_ordinary_statements() {
    for sql in [
        "SET standard_conforming_strings = on",
        "SET client_encoding = 'UTF8'",
        "SET NAMES 'utf-8'",
        "RESET standard_conforming_strings",
        "RESET ALL",
        "SET client_encoding TO DEFAULT",
        "SET search_path = public",
        "SELECT set_config('search_path', '', false)",
        "SELECT set_config('standard_conforming_strings', 'on', false)",
        // pg_dump's: a computed name, with a value no pinned setting would take.
        "SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind'",
        "SELECT current_setting('standard_conforming_strings')",
    ] {
        assert_eq!(pinned(sql), None, "{sql}");
    }
}

#[test]
fn functions_that_run_sql_the_statement_does_not_show_are_a_fact() {
    for sql in [
        "SELECT query_to_xml('SELECT email FROM customers', true, false, '')",
        "SELECT table_to_xml('customers', true, false, '')",
        "SELECT pg_catalog.schema_to_xml('public', true, false, '')",
        "SELECT * FROM ts_stat('SELECT to_tsvector(email) FROM customers')",
        "SELECT 1 WHERE EXISTS (SELECT database_to_xmlschema(true, false, ''))",
        "SELECT * FROM public.dblink('dbname=demo', 'DELETE FROM customers') AS t(x int)",
    ] {
        assert!(classify(sql).unwrap().iter().any(|s| s.dynamic_sql), "{sql}");
    }
    for sql in ["SELECT xmlelement(name a, 'b')", "SELECT to_tsvector('a b')", "SELECT lower(email) FROM customers"] {
        assert!(!classify(sql).unwrap().iter().any(|s| s.dynamic_sql), "{sql}");
    }
}

#[test]
fn column_aliases_of_functions_and_values_do_not_make_a_statement_read_whole_rows() {
    let plan = MaskPlan::new(vec![Glob::new("email")], vec![]);
    for sql in [
        "SELECT x FROM unnest(ARRAY[1,2]) AS t(x)",
        "INSERT INTO customers (name) SELECT p0 FROM (VALUES ('a'), ('b')) AS imp(p0) RETURNING id",
    ] {
        let st = classify(sql).unwrap().remove(0);
        assert!(!st.lineage.whole_rows, "{sql}");
        let names: Vec<String> = vec!["x".into(), "id".into()];
        assert_eq!(masked_columns(&plan, &[st.lineage], &names, &[], None), vec![false, false], "{sql}");
    }
    let st = classify("SELECT a FROM customers AS c(a, b, x)").unwrap().remove(0);
    assert!(st.lineage.whole_rows, "a table's columns renamed");
}

#[test]
fn an_explain_plan_is_not_masked_whole_even_when_its_statement_mentions_masked_columns() {
    let plan = MaskPlan::new(vec![Glob::new("email")], vec![]);
    for sql in ["EXPLAIN SELECT email FROM customers WHERE id = 1", "EXPLAIN ANALYZE SELECT email FROM customers"] {
        let st = classify(sql).unwrap().remove(0);
        assert_eq!(masked_columns(&plan, &[st.lineage], &["QUERY PLAN".to_string()], &[], None), vec![false], "{sql}");
    }
}

#[test]
fn every_spelling_of_a_whole_row_read_masks_what_it_returns() {
    let plan = MaskPlan::new(vec![Glob::new("email")], vec![]);
    for sql in [
        "SELECT c FROM customers c",
        "SELECT customers FROM customers",
        "SELECT ROW(c.*) AS x FROM customers c",
        "SELECT to_json(c) AS x FROM customers c",
        "SELECT row_to_json(customers) AS x FROM customers",
        "SELECT (c)::text AS x FROM customers c",
        "SELECT json_agg(t) AS x FROM (SELECT * FROM customers) t",
        "SELECT x FROM (SELECT c AS x FROM customers c) s",
        "SELECT hstore(c) AS x FROM customers c",
        "SELECT (SELECT c FROM customers c LIMIT 1) AS x",
        "SELECT customers FROM public.customers",
        "SELECT \"C\" FROM customers AS \"C\"",
    ] {
        let statements = classify(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let lineages: Vec<_> = statements.into_iter().map(|s| s.lineage).collect();
        let masked = masked_columns(&plan, &lineages, &["x".to_string()], &[], None);
        assert_eq!(masked, vec![true], "{sql}");
    }
}
