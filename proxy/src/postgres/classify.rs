//! The `classify` phase of the Postgres door: SQL text → one [`Statement`] per statement,
//! using Postgres's own parser ([`pg_query`], libpg_query).
//!
//! ```text
//! "BEGIN; DELETE FROM app.users; COMMIT"
//!    └─ classify ─▶ [Transaction, Delete{tables:[app.users], missing_where}, Transaction]
//! ```
//!
//! What the classifier guarantees (and the policy may rely on):
//! - Every statement of a multi-statement string is classified; an empty query
//!   (whitespace, comments, semicolons) is an empty `Vec`.
//! - A statement that *executes* a write is classified as that write, even when it is
//!   dressed up: `WITH d AS (DELETE ...) SELECT ...` is [`StatementKind::Delete`]
//!   (and `writes_in_cte`), `EXPLAIN ANALYZE DELETE ...` is `Delete`,
//!   `COPY (DELETE ... RETURNING *) TO STDOUT` is `Delete` (with its `copy_direction`),
//!   `SELECT ... INTO t` is [`StatementKind::Ddl`]. Functions called from a `SELECT`
//!   are not inspected: that is still `Select` (the policy can match the text).
//! - `tables` lists every relation the statement names (FROM, JOINs, subqueries, CTE
//!   bodies, INSERT/UPDATE/DELETE/MERGE targets, COPY, TRUNCATE, LOCK, DDL targets and
//!   foreign-key references), minus references to CTEs in scope. A CTE named like a real
//!   table does not hide the real table where the CTE is not in scope (e.g. inside its own
//!   non-recursive body).
//! - Anything that cannot be parsed, is too large, or nests too deeply is an error, never a
//!   guess: the door fails closed.
//!
//! Known limit: libpg_query hands the tree over as protobuf and `prost` refuses to decode
//! messages nested deeper than 100 levels. Expressions nested ~50 levels deep (e.g. 60
//! chained `a || b || ...`, 100 `UNION`s, 40 nested sub-selects) are therefore refused
//! with [`Error::SqlTooComplex`]; Postgres itself refuses a few hundred levels
//! ("stack depth limit exceeded").

use std::collections::BTreeSet;

use pg_query::NodeEnum;
use pg_query::protobuf::{self, ObjectType};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The default cap on the size of one query string handed to [`classify`]: 1 MiB.
pub const DEFAULT_MAX_SQL_BYTES: usize = 1 << 20;

/// The walk over the parse tree gives up (fail closed) beyond this nesting. The protobuf
/// decoder's own limit (100 messages) is reached long before; this is a second fence.
const MAX_WALK_DEPTH: usize = 2_000;

/// What a statement does, coarse enough to write policy rules against.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum StatementKind {
    Select,
    Insert,
    Update,
    Delete,
    Merge,
    /// CREATE / ALTER / DROP / COMMENT / RENAME / REFRESH ..., `SELECT ... INTO`,
    /// `CREATE TABLE AS`, `ALTER SYSTEM`.
    Ddl,
    Truncate,
    Copy,
    /// SET / RESET (also SET CONSTRAINTS); not SET ROLE / SESSION AUTHORIZATION, which
    /// are [`StatementKind::Grant`].
    Set,
    Show,
    /// BEGIN / COMMIT / ROLLBACK / SAVEPOINT / RELEASE.
    Transaction,
    /// PREPARE TRANSACTION / COMMIT PREPARED / ROLLBACK PREPARED: a prepared transaction
    /// outlives its session (holding its locks) until someone finishes it.
    TwoPhase,
    Call,
    /// A plain `EXPLAIN` (not executed). `EXPLAIN ANALYZE` takes the inner statement's kind.
    Explain,
    /// GRANT / REVOKE and role DDL (CREATE/ALTER/DROP ROLE, ALTER DEFAULT PRIVILEGES,
    /// REASSIGN OWNED, DROP OWNED), and switching roles (SET [LOCAL] ROLE, SET SESSION
    /// AUTHORIZATION, RESET ROLE).
    Grant,
    /// VACUUM / ANALYZE / CLUSTER / REINDEX.
    Vacuum,
    /// PREPARE / EXECUTE / DEALLOCATE. `EXECUTE` runs a statement prepared earlier whose
    /// kind is not visible here, so this kind counts as writing.
    Prepare,
    /// LISTEN / NOTIFY / UNLISTEN.
    Listen,
    Lock,
    /// An anonymous code block (`DO $$ ... $$`).
    Do,
    /// Anything else; carries Postgres's node name, e.g. `CheckPointStmt`, `LoadStmt`,
    /// `DiscardStmt`, `DeclareCursorStmt`, `FetchStmt`.
    Other(String),
}

impl StatementKind {
    /// The lowercase name policies match on: `select`, `insert`, ..., `ddl`, `other`.
    pub fn name(&self) -> &str {
        match self {
            StatementKind::Select => "select",
            StatementKind::Insert => "insert",
            StatementKind::Update => "update",
            StatementKind::Delete => "delete",
            StatementKind::Merge => "merge",
            StatementKind::Ddl => "ddl",
            StatementKind::Truncate => "truncate",
            StatementKind::Copy => "copy",
            StatementKind::Set => "set",
            StatementKind::Show => "show",
            StatementKind::Transaction => "transaction",
            StatementKind::TwoPhase => "two_phase",
            StatementKind::Call => "call",
            StatementKind::Explain => "explain",
            StatementKind::Grant => "grant",
            StatementKind::Vacuum => "vacuum",
            StatementKind::Prepare => "prepare",
            StatementKind::Listen => "listen",
            StatementKind::Lock => "lock",
            StatementKind::Do => "do",
            StatementKind::Other(_) => "other",
        }
    }

    /// Whether a statement of this kind may change the database (data, schema, privileges,
    /// physical state). Conservative: `Copy` (refine with [`Statement::copy_direction`]),
    /// `Call`, `Do`, `Prepare` (EXECUTE) and `Other` count as writing.
    pub fn writes(&self) -> bool {
        match self {
            StatementKind::Select
            | StatementKind::Set
            | StatementKind::Show
            | StatementKind::Transaction
            | StatementKind::Explain
            | StatementKind::Listen
            | StatementKind::Lock => false,
            StatementKind::Insert
            | StatementKind::Update
            | StatementKind::Delete
            | StatementKind::Merge
            | StatementKind::Ddl
            | StatementKind::Truncate
            | StatementKind::Copy
            | StatementKind::Call
            | StatementKind::TwoPhase
            | StatementKind::Grant
            | StatementKind::Vacuum
            | StatementKind::Prepare
            | StatementKind::Do
            | StatementKind::Other(_) => true,
        }
    }
}

impl std::fmt::Display for StatementKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatementKind::Other(node) => write!(f, "other ({node})"),
            kind => f.write_str(kind.name()),
        }
    }
}

/// Where a `COPY` moves data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum CopyDirection {
    /// `COPY ... TO STDOUT`: rows go to the client (a read).
    ToClient,
    /// `COPY ... FROM STDIN`: rows come from the client (a write).
    FromClient,
    /// `COPY ... TO 'file'`: the server writes a file on its host.
    ToFile,
    /// `COPY ... FROM 'file'`: the server reads a file on its host into a table.
    FromFile,
    /// `COPY ... TO/FROM PROGRAM '...'`: the server runs a shell command.
    Program,
}

/// One classified statement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Statement {
    /// This statement's own SQL text as Postgres delimits it (comments before it and its
    /// semicolon are not part of it), trimmed.
    pub text: String,
    pub kind: StatementKind,
    /// Relations touched, `schema.table` when written so, lowercase, deduplicated, sorted.
    pub tables: Vec<String>,
    /// An UPDATE or DELETE (anywhere in the statement, e.g. in a CTE) has no WHERE clause.
    pub missing_where: bool,
    /// A row-locking clause: `FOR UPDATE`, `FOR NO KEY UPDATE`, `FOR SHARE`, `FOR KEY SHARE`.
    pub select_for_update: bool,
    /// A data-modifying CTE (`WITH x AS (DELETE ...) ...`); `kind` is then the write.
    pub writes_in_cte: bool,
    /// Set for `COPY` (also when `kind` is the write a `COPY (query)` executes).
    pub copy_direction: Option<CopyDirection>,
    /// For `COPY ... TO STDOUT`: where its rows come from and their format.
    #[serde(skip)]
    pub copy_out: Option<super::copy_out::CopyOut>,
    /// Functions the statement calls anywhere (select list, FROM, WHERE, CALL, defaults
    /// of an INSERT...), as the parser resolved their names (`U&"..."` escapes and
    /// quoting undone): `schema.name` when written so, lowercase, deduplicated, sorted.
    pub functions: Vec<String>,
    /// Where its result columns come from, for column masking.
    pub lineage: Lineage,
    /// It calls a function that runs SQL it does not show ([`dynamic`]).
    pub dynamic_sql: bool,
    /// Why it would change a setting the gateway pins (how Postgres reads statement
    /// text: see [`settings`]); such a statement is refused whatever policy says.
    pub pinned_change: Option<String>,
}

/// Classify every statement of `sql` (at most [`DEFAULT_MAX_SQL_BYTES`]).
pub fn classify(sql: &str) -> Result<Vec<Statement>> {
    classify_with_limit(sql, DEFAULT_MAX_SQL_BYTES)
}

/// Classify every statement of `sql`, refusing strings longer than `max_bytes`.
pub fn classify_with_limit(sql: &str, max_bytes: usize) -> Result<Vec<Statement>> {
    if sql.len() > max_bytes {
        return Err(Error::SqlTooLarge { len: sql.len(), max: max_bytes });
    }
    if let Some(position) = sql.find('\0') {
        return Err(Error::SqlUnparseable { message: "SQL contains a NUL byte".to_string(), position: Some(position) });
    }
    // pg_query's Rust half indexes and casts the tree it gets back; it never fails on a tree
    // the parser built, but a bug there must become an error here, not a dead worker.
    let parsed = std::panic::catch_unwind(|| pg_query::parse(sql, 0)).map_err(|_| Error::SqlUnparseable {
        message: "the SQL parser failed unexpectedly on this input".to_string(),
        position: None,
    })?;
    let parsed = parsed.map_err(|e| parse_error(sql, e))?;
    parsed.protobuf.stmts.iter().map(|raw| classify_raw(sql, raw)).collect()
}

fn parse_error(sql: &str, error: pg_query::Error) -> Error {
    match error {
        pg_query::Error::Parse(message) | pg_query::Error::Split(message) | pg_query::Error::Scan(message) => {
            if message.contains("stack depth limit exceeded") || message.starts_with("memory exhausted") {
                Error::SqlTooComplex { detail: message }
            } else {
                let position = error_position(sql, &message);
                Error::SqlUnparseable { message, position }
            }
        }
        pg_query::Error::Decode(e) if e.to_string().contains("recursion limit") => {
            Error::SqlTooComplex { detail: "the parse tree nests deeper than 100 levels".to_string() }
        }
        other => Error::SqlUnparseable { message: other.to_string(), position: None },
    }
}

/// libpg_query knows the cursor position but the `pg_query` crate drops it. Recover it
/// where that is unambiguous: "at end of input", or a token that occurs exactly once.
fn error_position(sql: &str, message: &str) -> Option<usize> {
    if message.ends_with("at end of input") {
        return Some(sql.trim_end().len());
    }
    let (_, rest) = message.split_once("at or near \"")?;
    let token = rest.strip_suffix('"')?;
    let mut hits = sql.match_indices(token);
    match (hits.next(), hits.next()) {
        (Some((at, _)), None) if !token.is_empty() => Some(at),
        _ => None,
    }
}

fn classify_raw(sql: &str, raw: &protobuf::RawStmt) -> Result<Statement> {
    let text = statement_text(sql, raw);
    let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
        return Ok(Statement {
            text,
            kind: StatementKind::Other("Empty".to_string()),
            tables: Vec::new(),
            missing_where: false,
            select_for_update: false,
            writes_in_cte: false,
            copy_direction: None,
            copy_out: None,
            functions: Vec::new(),
            lineage: Lineage::default(),
            dynamic_sql: false,
            pinned_change: None,
        });
    };
    let tree = serde_json::to_value(node).map_err(|e| Error::SqlUnparseable {
        message: format!("cannot inspect the parse tree: {e}"),
        position: None,
    })?;
    let mut walk = Walk::default();
    walk.value(&tree, &[], 0)?;
    walk.typed_extras(node);

    let executed = executed_node(node);
    let name = match (&tree, std::ptr::eq(executed, node)) {
        // The tree is already serialized: its one key is the statement's node name.
        (Value::Object(map), true) => map.keys().next().cloned().unwrap_or_default(),
        _ => tree_name(executed),
    };
    let kind = kind_of(executed, &name, &walk);
    let missing_where = walk.missing_where && !matches!(kind, StatementKind::Explain);
    let copy_direction = match executed {
        NodeEnum::CopyStmt(copy) => Some(copy_direction(copy)),
        _ => None,
    };
    // EXPLAIN (also ANALYZE) returns a plan, not the statement's rows: its text holds the
    // statement's own literals, never table data, so no column of it derives from a
    // masked one (the detectors still read it).
    let mut lineage = if matches!(node, NodeEnum::ExplainStmt(_)) { Lineage::default() } else { walk.lineage(node) };
    let pinned_change = settings::set_statement(executed).or(walk.pinned_change.take());
    let functions: Vec<String> = walk.functions.into_iter().collect();
    lineage.calls = functions.clone();
    // `COPY (SELECT ...) TO` reads like its SELECT (a COPY of a write takes the write's kind).
    lineage.plain_read = matches!(kind, StatementKind::Select | StatementKind::Copy) && walk.cte_write.is_none();
    // `EXECUTE name` runs a statement prepared earlier, out of sight: its results may
    // hold anything.
    lineage.whole_rows |= matches!(executed, NodeEnum::ExecuteStmt(_));
    let copy_out = (copy_direction == Some(CopyDirection::ToClient))
        .then(|| super::copy_out::CopyOut::of(executed, &text))
        .flatten();
    Ok(Statement {
        text,
        kind,
        tables: walk.tables.into_iter().collect(),
        missing_where,
        select_for_update: walk.locking,
        writes_in_cte: walk.cte_write.is_some(),
        copy_out,
        copy_direction,
        lineage,
        dynamic_sql: dynamic::runs_dynamic_sql(&functions),
        functions,
        pinned_change,
    })
}

fn statement_text(sql: &str, raw: &protobuf::RawStmt) -> String {
    let start = usize::try_from(raw.stmt_location).unwrap_or(0);
    let end = match usize::try_from(raw.stmt_len) {
        Ok(0) | Err(_) => sql.len(),
        Ok(len) => start.saturating_add(len).min(sql.len()),
    };
    let text = sql.get(start..end).unwrap_or(sql).trim();
    text.trim_end_matches(';').trim_end().to_string()
}

/// The statement that actually runs: the inner one of `EXPLAIN ANALYZE`.
fn executed_node(node: &NodeEnum) -> &NodeEnum {
    if let NodeEnum::ExplainStmt(explain) = node
        && explain_analyzes(explain)
        && let Some(inner) = explain.query.as_ref().and_then(|n| n.node.as_ref())
    {
        return inner;
    }
    node
}

/// `EXPLAIN ANALYZE x` / `EXPLAIN (ANALYZE [true|on|1]) x`. Anything but an explicit
/// false counts as analyzing (fail closed: it would execute the statement).
fn explain_analyzes(explain: &protobuf::ExplainStmt) -> bool {
    explain.options.iter().filter_map(|o| o.node.as_ref()).any(|o| match o {
        NodeEnum::DefElem(def) if def.defname.eq_ignore_ascii_case("analyze") => {
            match def.arg.as_ref().and_then(|a| a.node.as_ref()) {
                Some(NodeEnum::Boolean(b)) => b.boolval,
                Some(NodeEnum::Integer(i)) => i.ival != 0,
                Some(NodeEnum::String(s)) => {
                    !matches!(s.sval.to_ascii_lowercase().as_str(), "false" | "off" | "0" | "no" | "f" | "n")
                }
                _ => true,
            }
        }
        _ => false,
    })
}

fn copy_direction(copy: &protobuf::CopyStmt) -> CopyDirection {
    match (copy.is_program, copy.is_from, copy.filename.is_empty()) {
        (true, _, _) => CopyDirection::Program,
        (false, true, true) => CopyDirection::FromClient,
        (false, false, true) => CopyDirection::ToClient,
        (false, true, false) => CopyDirection::FromFile,
        (false, false, false) => CopyDirection::ToFile,
    }
}

/// Postgres's node name of a statement (`SelectStmt`, `CheckPointStmt`, ...).
fn tree_name(node: &NodeEnum) -> String {
    match serde_json::to_value(node) {
        Ok(Value::Object(map)) => map.keys().next().cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

fn kind_of(node: &NodeEnum, name: &str, walk: &Walk) -> StatementKind {
    match node {
        NodeEnum::SelectStmt(select) if select.into_clause.is_some() => return StatementKind::Ddl,
        // `SET [LOCAL] ROLE` and `SET SESSION AUTHORIZATION` change whose privileges the
        // rest of the session runs with: a privilege statement, not a session setting a
        // rule allowing `set` (timezone, search_path...) means to let through.
        NodeEnum::VariableSetStmt(set)
            if matches!(set.name.to_ascii_lowercase().as_str(), "role" | "session_authorization") =>
        {
            return StatementKind::Grant;
        }
        NodeEnum::TransactionStmt(t)
            if matches!(
                protobuf::TransactionStmtKind::try_from(t.kind),
                Ok(protobuf::TransactionStmtKind::TransStmtPrepare
                    | protobuf::TransactionStmtKind::TransStmtCommitPrepared
                    | protobuf::TransactionStmtKind::TransStmtRollbackPrepared)
            ) =>
        {
            return StatementKind::TwoPhase;
        }
        NodeEnum::CopyStmt(copy) => {
            // COPY (DELETE ... RETURNING *) TO STDOUT executes the write.
            let inner = copy.query.as_ref().and_then(|q| q.node.as_ref());
            return match inner {
                Some(query) => match kind_of(query, &tree_name(query), walk) {
                    kind if kind.writes() => kind,
                    _ => StatementKind::Copy,
                },
                None => StatementKind::Copy,
            };
        }
        _ => {}
    }
    match name {
        "SelectStmt" => walk.cte_write.clone().unwrap_or(StatementKind::Select),
        "InsertStmt" => StatementKind::Insert,
        "UpdateStmt" => StatementKind::Update,
        "DeleteStmt" => StatementKind::Delete,
        "MergeStmt" => StatementKind::Merge,
        "TruncateStmt" => StatementKind::Truncate,
        "CopyStmt" => StatementKind::Copy,
        "VariableSetStmt" | "ConstraintsSetStmt" => StatementKind::Set,
        "VariableShowStmt" => StatementKind::Show,
        "TransactionStmt" => StatementKind::Transaction,
        "CallStmt" => StatementKind::Call,
        "ExplainStmt" => StatementKind::Explain,
        "GrantStmt"
        | "GrantRoleStmt"
        | "CreateRoleStmt"
        | "AlterRoleStmt"
        | "AlterRoleSetStmt"
        | "DropRoleStmt"
        | "AlterDefaultPrivilegesStmt"
        | "ReassignOwnedStmt"
        | "DropOwnedStmt" => StatementKind::Grant,
        "VacuumStmt" | "ClusterStmt" | "ReindexStmt" => StatementKind::Vacuum,
        "PrepareStmt" | "ExecuteStmt" | "DeallocateStmt" => StatementKind::Prepare,
        "ListenStmt" | "NotifyStmt" | "UnlistenStmt" => StatementKind::Listen,
        "LockStmt" => StatementKind::Lock,
        "DoStmt" => StatementKind::Do,
        "CommentStmt"
        | "RenameStmt"
        | "IndexStmt"
        | "ViewStmt"
        | "RuleStmt"
        | "CompositeTypeStmt"
        | "SecLabelStmt"
        | "ImportForeignSchemaStmt"
        | "RefreshMatViewStmt"
        | "CreatedbStmt"
        | "DropdbStmt" => StatementKind::Ddl,
        other if ["Create", "Alter", "Drop", "Define"].iter().any(|p| other.starts_with(p)) => StatementKind::Ddl,
        other => StatementKind::Other(other.to_string()),
    }
}

/// What one pass over a statement's tree finds.
#[derive(Default)]
struct Walk {
    tables: BTreeSet<String>,
    /// The kind of the first data-modifying CTE.
    cte_write: Option<StatementKind>,
    missing_where: bool,
    locking: bool,
    functions: BTreeSet<String>,
    /// Last name part of every column reference (lowercase).
    mentions: BTreeSet<String>,
    /// Column references of one name only (`c`), which may be a whole row.
    lone_mentions: BTreeSet<String>,
    /// Column references ending in `*` (`*`, `c.*`).
    star_refs: usize,
    /// Names and aliases of every relation read (lowercase).
    relations: BTreeSet<String>,
    /// An alias renames columns (`FROM customers AS c(a, b, x)`).
    renames_columns: bool,
    /// A `set_config` call that would change a pinned setting (see [`settings`]).
    pinned_change: Option<String>,
}

impl Walk {
    /// Generic walk over the serialized tree. `ctes` are the CTE names in scope.
    fn value(&mut self, value: &Value, ctes: &[String], depth: usize) -> Result<()> {
        if depth > MAX_WALK_DEPTH {
            return Err(Error::SqlTooComplex { detail: format!("the parse tree nests deeper than {MAX_WALK_DEPTH}") });
        }
        match value {
            Value::Array(items) => items.iter().try_for_each(|v| self.value(v, ctes, depth + 1)),
            Value::Object(map) => self.object(map, ctes, depth),
            _ => Ok(()),
        }
    }

    fn object(&mut self, map: &Map<String, Value>, ctes: &[String], depth: usize) -> Result<()> {
        if let Some(Value::String(relname)) = map.get("relname")
            && map.contains_key("relpersistence")
        {
            self.range_var(map, relname, ctes);
        }
        for tag in ["UpdateStmt", "DeleteStmt"] {
            if let Some(Value::Object(stmt)) = map.get(tag)
                && stmt.get("where_clause").is_none_or(Value::is_null)
            {
                self.missing_where = true;
            }
        }
        // A function call (a FuncCall node, also CALL's own `funccall`); `funcformat`
        // tells it from definitions that also carry a `funcname` (CREATE FUNCTION).
        if let Some(Value::Array(name)) = map.get("funcname")
            && map.contains_key("funcformat")
        {
            let parts: Vec<&str> =
                name.iter().filter_map(|part| part.pointer("/node/String/sval").and_then(Value::as_str)).collect();
            if !parts.is_empty() {
                self.functions.insert(parts.join(".").to_lowercase());
            }
            if self.pinned_change.is_none() {
                self.pinned_change = settings::set_config_call(&parts, map);
            }
        }
        if let Some(Value::Array(fields)) = map.get("ColumnRef").and_then(|c| c.get("fields")) {
            let names: Vec<&str> =
                fields.iter().filter_map(|f| f.pointer("/node/String/sval").and_then(Value::as_str)).collect();
            if fields.iter().any(|f| f.pointer("/node/AStar").is_some()) {
                self.star_refs += 1;
            }
            if let Some(last) = names.last() {
                self.mentions.insert(last.to_lowercase());
            }
            if let [one] = names.as_slice()
                && fields.len() == 1
            {
                self.lone_mentions.insert(one.to_lowercase());
            }
        }
        // A table read under other column names (`FROM customers AS c(a, b, x)`). Column
        // aliases of a function (`unnest(...) AS t(x)`) or of VALUES rename no table
        // column; those of a subquery or CTE rename what its text shows, which the
        // lineage rules already follow.
        if map.contains_key("relname")
            && map.contains_key("relpersistence")
            && let Some(Value::Array(colnames)) = map.get("alias").and_then(|a| a.get("colnames"))
            && !colnames.is_empty()
        {
            self.renames_columns = true;
        }
        if let Some(Value::Array(clauses)) = map.get("locking_clause")
            && !clauses.is_empty()
        {
            self.locking = true;
        }

        let Some(Value::Object(with)) = map.get("with_clause") else {
            return map.values().try_for_each(|v| self.value(v, ctes, depth + 1));
        };
        // A WITH clause opens a scope: its CTE names hide tables of the same name in the
        // statement body; in each CTE body only the earlier CTEs (all, if RECURSIVE) do.
        let recursive = matches!(with.get("recursive"), Some(Value::Bool(true)));
        let defs: Vec<&Map<String, Value>> = match with.get("ctes") {
            Some(Value::Array(ctes)) => ctes
                .iter()
                .filter_map(|c| c.get("node").and_then(|n| n.get("CommonTableExpr")).and_then(Value::as_object))
                .collect(),
            _ => Vec::new(),
        };
        let names: Vec<String> =
            defs.iter().filter_map(|d| d.get("ctename").and_then(Value::as_str)).map(str::to_string).collect();
        for (i, def) in defs.iter().enumerate() {
            let visible = if recursive { names.len() } else { i };
            let scope: Vec<String> = ctes.iter().chain(names.iter().take(visible)).cloned().collect();
            if self.cte_write.is_none()
                && let Some(Value::Object(query)) = def.get("ctequery").and_then(|q| q.get("node"))
            {
                self.cte_write = match query.keys().next().map(String::as_str) {
                    Some("InsertStmt") => Some(StatementKind::Insert),
                    Some("UpdateStmt") => Some(StatementKind::Update),
                    Some("DeleteStmt") => Some(StatementKind::Delete),
                    Some("MergeStmt") => Some(StatementKind::Merge),
                    _ => None,
                };
            }
            def.iter()
                .filter(|(k, _)| k.as_str() != "ctename")
                .try_for_each(|(_, v)| self.value(v, &scope, depth + 1))?;
        }
        let scope: Vec<String> = ctes.iter().chain(names.iter()).cloned().collect();
        map.iter().filter(|(k, _)| k.as_str() != "with_clause").try_for_each(|(_, v)| self.value(v, &scope, depth + 1))
    }

    /// The lineage of `node`'s result columns, from what the walk found.
    fn lineage(&self, node: &NodeEnum) -> Lineage {
        let (columns, top_level_stars) = lineage::result_columns(node, &self.relations);
        Lineage {
            mentions: self.mentions.clone(),
            whole_rows: self.star_refs > top_level_stars
                || self.renames_columns
                || self.lone_mentions.iter().any(|m| self.relations.contains(m))
                // `schema.table` or `alias.alias` as a column: the whole row again (a
                // column that shares a relation's name is over-masked, never leaked).
                || self.mentions.iter().any(|m| self.relations.contains(m)),
            columns,
            ..Lineage::default()
        }
    }

    fn range_var(&mut self, map: &Map<String, Value>, relname: &str, ctes: &[String]) {
        let part = |key: &str| map.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
        let (catalog, schema) = (part("catalogname"), part("schemaname"));
        if relname.is_empty() || (schema.is_none() && ctes.iter().any(|c| c == relname)) {
            return;
        }
        let name: Vec<&str> = catalog.into_iter().chain(schema).chain(std::iter::once(relname)).collect();
        self.tables.insert(name.join(".").to_lowercase());
        self.relations.insert(relname.to_lowercase());
        if let Some(alias) = map.get("alias").and_then(|a| a.get("aliasname")).and_then(Value::as_str) {
            self.relations.insert(alias.to_lowercase());
        }
    }

    /// Targets the parser names as plain string lists rather than relations.
    fn typed_extras(&mut self, node: &NodeEnum) {
        let tableish = |t: i32| {
            matches!(
                ObjectType::try_from(t),
                Ok(ObjectType::ObjectTable
                    | ObjectType::ObjectView
                    | ObjectType::ObjectMatview
                    | ObjectType::ObjectForeignTable
                    | ObjectType::ObjectSequence
                    | ObjectType::ObjectIndex)
            )
        };
        match node {
            NodeEnum::DropStmt(drop) if tableish(drop.remove_type) => {
                for object in &drop.objects {
                    self.name_list(object);
                }
            }
            NodeEnum::CommentStmt(comment) if tableish(comment.objtype) => {
                if let Some(object) = comment.object.as_deref() {
                    self.name_list(object);
                }
            }
            _ => {}
        }
    }

    fn name_list(&mut self, node: &protobuf::Node) {
        if let Some(NodeEnum::List(list)) = node.node.as_ref() {
            let parts: Vec<&str> = list
                .items
                .iter()
                .filter_map(|i| match i.node.as_ref() {
                    Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                    _ => None,
                })
                .collect();
            if !parts.is_empty() {
                self.tables.insert(parts.join(".").to_lowercase());
            }
        }
    }
}

pub mod dynamic;
mod lineage;
pub mod settings;
pub mod statistics;

pub use lineage::{Lineage, ResultColumns, SchemaView, masked_columns};

#[cfg(test)]
mod tests;
