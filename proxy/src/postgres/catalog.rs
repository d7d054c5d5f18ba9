//! What the backend's own catalog says, read once per resource and shared by the door's
//! sessions:
//!
//! - whether each function can change state (`provolatile = 'v'`): a statement is a read
//!   only if every function it calls is immutable or stable. A SELECT calling `nextval`,
//!   `pg_notify`, `lo_from_bytea` or any volatile function of the database's users has
//!   effects, so strict audit commits its record before it runs (like a write), and
//!   policy sees it as writing (`match.writes`). A function the catalog does not know
//!   (created after the last look) counts as volatile;
//! - every relation's columns, where each view column comes from, and what each view,
//!   generated column and function reads ([`schema`]): which result columns hold masked
//!   data, whatever they are called.
//!
//! The door reads the catalog with the resource's credentials, on a connection of its
//! own, once for all the node's sessions of the resource. A copy is trusted for
//! [`MAX_AGE`]; a DDL statement through the door drops the resource's copy once it has
//! run, and every session of the node reads the new one before its next statement.

pub mod schema;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgwire::messages::PgWireBackendMessage as B;
use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::extendedquery::{Describe, Parse, Sync as SyncMsg};
use pgwire::messages::simplequery::Query;

use self::schema::{ColumnId, MaskedSchema, Schema};
use super::backend::{self, BackendTarget};
use super::classify::{Lineage, SchemaView, masked_columns};
use super::conn::BackendConn;
use super::copy_out::{CopyColumns, CopyOut};
use super::relay::{Columns, MaskingCatalog, split_row};
use crate::error::{Error, Result};
use crate::mask::MaskPlan;
use crate::policy::Glob;

/// How long a resource's catalog is trusted.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// The least time a catalog read is given (large schemas take a while).
const MIN_READ_TIME: Duration = Duration::from_secs(30);

/// Views whose queries are described per round trip.
const VIEWS_PER_ROUND: usize = 64;

/// One simple query, one result set per statement, in this order.
const QUERIES: &str = concat!(
    "/* portcullis: catalog */ ",
    // Per function name, whether every overload of it is immutable or stable.
    "SELECT n.nspname, p.proname, bool_and(p.provolatile <> 'v') \
     FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace GROUP BY 1, 2;",
    // Every relation's live columns; whether it is a view of the database's users.
    "SELECT c.oid, c.relname, c.relkind IN ('v', 'm') AND c.oid >= 16384, a.attnum, a.attname \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
     WHERE c.relkind NOT IN ('i', 'I') AND a.attnum > 0 AND NOT a.attisdropped;",
    // The query of every user view, as Postgres prints it back.
    "SELECT c.oid, pg_catalog.pg_get_viewdef(c.oid) FROM pg_catalog.pg_class c \
     WHERE c.relkind IN ('v', 'm') AND c.oid >= 16384;",
    // What each user view reads: columns (0: a whole row) and functions.
    "SELECT r.ev_class, d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass, d.refobjid, d.refobjsubid \
     FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_depend d \
       ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid \
     WHERE r.ev_class >= 16384 AND d.refobjid <> r.ev_class \
       AND d.refclassid IN ('pg_catalog.pg_class'::pg_catalog.regclass, 'pg_catalog.pg_proc'::pg_catalog.regclass);",
    // What each generated column is computed from.
    "SELECT ad.adrelid, ad.adnum, d.refobjsubid FROM pg_catalog.pg_attrdef ad \
     JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum \
     JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid = ad.oid \
       AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = ad.adrelid \
     WHERE a.attgenerated <> '';",
    // The body of every function of the database's users written in a language with a
    // text body (SQL, PL/pgSQL, ...).
    "SELECT p.oid, n.nspname, p.proname, p.prosrc FROM pg_catalog.pg_proc p \
     JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
     JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
     WHERE p.oid >= 16384 AND l.lanname NOT IN ('internal', 'c');",
);

/// What one database's catalog says (see the module docs).
#[derive(Debug, Default)]
pub struct Catalog {
    pub volatility: Volatility,
    pub schema: Schema,
    /// [`Schema::masked`] per column-rule set seen, computed once each.
    masked: Mutex<Vec<(Vec<Glob>, Arc<MaskedSchema>)>>,
}

impl Catalog {
    /// The columns masked under `plan`.
    pub fn masked(&self, plan: &MaskPlan) -> Arc<MaskedSchema> {
        let mut memo = self.masked.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, m)) = memo.iter().find(|(rules, _)| *rules == plan.columns) {
            return m.clone();
        }
        let m = Arc::new(self.schema.masked(plan));
        // Policies have few distinct column-rule sets; bound it anyway.
        if memo.len() >= 32 {
            memo.remove(0);
        }
        memo.push((plan.columns.clone(), m.clone()));
        m
    }
}

/// The functions without side effects, by `schema.name` and by bare name (a bare name
/// only if no schema has a volatile function of that name).
#[derive(Debug, Default)]
pub struct Volatility {
    qualified: HashSet<String>,
    bare: HashSet<String>,
}

impl Volatility {
    /// Whether calling `function` (as the classifier names it: `name` or `schema.name`,
    /// lowercase) cannot change state.
    pub fn is_side_effect_free(&self, function: &str) -> bool {
        if function.contains('.') { self.qualified.contains(function) } else { self.bare.contains(function) }
    }

    /// Whether `function` is a built-in (`pg_catalog`) without side effects: code the
    /// gateway knows cannot change session settings behind its back.
    pub fn is_builtin_side_effect_free(&self, function: &str) -> bool {
        let name = function.strip_prefix("pg_catalog.").unwrap_or(function);
        !name.contains('.') && self.qualified.contains(&format!("pg_catalog.{name}"))
    }

    fn from_rows(rows: impl IntoIterator<Item = (String, String, bool)>) -> Self {
        let mut qualified = HashSet::new();
        let mut bare: HashMap<String, bool> = HashMap::new();
        for (schema, name, safe) in rows {
            if safe {
                qualified.insert(format!("{schema}.{name}"));
            }
            let entry = bare.entry(name).or_insert(true);
            *entry &= safe;
        }
        Volatility { qualified, bare: bare.into_iter().filter(|(_, safe)| *safe).map(|(n, _)| n).collect() }
    }

    #[cfg(test)]
    pub fn for_test(rows: &[(&str, &str, bool)]) -> Self {
        Volatility::from_rows(rows.iter().map(|(s, n, v)| (s.to_string(), n.to_string(), *v)))
    }
}

/// Each resource's catalog, shared by the door's sessions.
#[derive(Default)]
pub(crate) struct CatalogCache {
    /// std mutex: never held across an await.
    by_resource: Mutex<HashMap<String, Kept>>,
    /// Held while a catalog is read, so that sessions finding theirs expired at once
    /// read it once, not once each.
    reading: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Kept {
    read_at: Instant,
    catalog: Arc<Catalog>,
}

impl CatalogCache {
    /// The catalog of `resource`, read on a connection of its own to `target` if the
    /// copy kept is missing or old (never on a session's: a read cut short by a timeout
    /// would leave answers in it, and later it carries its client's state).
    pub(crate) async fn get(&self, resource: &str, target: &BackendTarget, timeout: Duration) -> Result<Arc<Catalog>> {
        if let Some(kept) = self.current(resource) {
            return Ok(kept);
        }
        let _reading = self.reading.lock().await;
        if let Some(kept) = self.current(resource) {
            return Ok(kept);
        }
        // Without the client's startup settings: the copy is shared by every client.
        let target = BackendTarget { settings: Vec::new(), ..target.clone() };
        let mut own = backend::connect(&target, timeout).await?;
        let fresh = Arc::new(read_within(&mut own.conn, timeout).await?);
        own.conn.terminate().await;
        self.keep(resource, fresh.clone());
        Ok(fresh)
    }

    /// Whether `catalog` is still the copy to use for `resource`.
    pub(crate) fn is_current(&self, resource: &str, catalog: &Arc<Catalog>) -> bool {
        self.current(resource).is_some_and(|kept| Arc::ptr_eq(&kept, catalog))
    }

    /// Drop `resource`'s copy (its schema or functions may have changed).
    pub(crate) fn forget(&self, resource: &str) {
        self.by_resource.lock().unwrap_or_else(|p| p.into_inner()).remove(resource);
    }

    fn current(&self, resource: &str) -> Option<Arc<Catalog>> {
        let kept = self.by_resource.lock().unwrap_or_else(|p| p.into_inner()).get(resource).cloned()?;
        (kept.read_at.elapsed() < MAX_AGE).then_some(kept.catalog)
    }

    fn keep(&self, resource: &str, catalog: Arc<Catalog>) {
        self.by_resource
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(resource.to_string(), Kept { read_at: Instant::now(), catalog });
    }
}

/// [`read`], given at least [`MIN_READ_TIME`] (or `timeout` if longer): a backend that
/// stops answering must not hold every session of the node waiting for the catalog.
async fn read_within(backend: &mut BackendConn, timeout: Duration) -> Result<Catalog> {
    let addr = backend.addr.clone();
    let limit = timeout.max(MIN_READ_TIME);
    tokio::time::timeout(limit, read(backend))
        .await
        .map_err(|_| Error::Backend { addr, detail: format!("the catalog was not read within {limit:?}") })?
}

async fn read(backend: &mut BackendConn) -> Result<Catalog> {
    let addr = backend.addr.clone();
    let failed = |detail: String| Error::Backend { addr: addr.clone(), detail };
    let sets = read_result_sets(backend, QUERIES.into()).await.map_err(|e| match e {
        Error::Backend { addr, detail } => {
            Error::Backend { addr, detail: format!("cannot read the catalog: {detail}") }
        }
        other => other,
    })?;
    let [functions, columns, views, view_reads, generated, bodies] = <[Vec<Row>; 6]>::try_from(sets)
        .map_err(|sets| failed(format!("the catalog query returned {} result sets, not 6", sets.len())))?;
    if functions.is_empty() || columns.is_empty() {
        return Err(failed("the catalog read back empty".into()));
    }
    let volatility = Volatility::from_rows(functions.iter().map(|r| (r.text(0), r.text(1), r.text(2) == "t")));
    let mut schema = Schema::default();
    for r in &columns {
        schema.add_column(r.oid(0), &r.text(1), r.text(2) == "t", r.int(3), &r.text(4));
    }
    for r in &view_reads {
        match r.text(1).as_str() {
            "t" => schema.add_view_call(r.oid(0), r.oid(2)),
            _ => schema.add_view_read(r.oid(0), (r.oid(2), r.int(3))),
        }
    }
    for r in &generated {
        schema.add_generated(r.oid(0), r.int(1), r.int(2));
    }
    for r in &bodies {
        schema.add_function(r.oid(0), &r.text(1), &r.text(2), &r.text(3));
    }
    let views: Vec<(u32, String)> = views.iter().map(|r| (r.oid(0), r.text(1))).collect();
    for round in views.chunks(VIEWS_PER_ROUND) {
        let queries: Vec<&str> = round.iter().map(|(_, q)| q.as_str()).collect();
        for ((view, _), columns) in round.iter().zip(describe(backend, &queries).await?) {
            let Some(columns) = columns else { continue };
            let origins: Vec<Option<ColumnId>> = columns
                .origins
                .iter()
                .map(|&(table, column)| (table != 0 && column > 0).then_some((table, column)))
                .collect();
            schema.set_view_origins(*view, &origins);
        }
    }
    Ok(Catalog { volatility, schema, masked: Mutex::default() })
}

/// The result columns of each of `queries` as Postgres describes them (names, types,
/// and the table column each passes through), without running them; `None` for a
/// query that cannot be described or returns no rows. Uses the unnamed statement: only
/// on a connection whose client has none to lose.
async fn describe(backend: &mut BackendConn, queries: &[&str]) -> Result<Vec<Option<Columns>>> {
    for query in queries {
        backend.queue(&F::Parse(Parse::new(None, (*query).to_string(), Vec::new())))?;
        backend.queue(&F::Describe(Describe::new(b'S', None)))?;
        backend.queue(&F::Sync(SyncMsg::new()))?;
    }
    backend.flush().await?;
    let mut described = Vec::with_capacity(queries.len());
    for _ in queries {
        let mut columns = None;
        loop {
            match backend.read().await? {
                B::RowDescription(rows) => columns = Some(Columns::from_fields(&rows.fields)),
                B::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        described.push(columns);
    }
    Ok(described)
}

/// The output columns of a `COPY ... TO STDOUT` under `masks`, read from the catalog
/// through `backend` (idle, its client's unnamed statement already gone: a simple
/// query drops it). A table's columns are masked by name; a query's are described by
/// Postgres and judged like any result's (`lineages`: the COPY's, `catalog`: the
/// session's). A COPY whose columns cannot be resolved has its fields masked whole when
/// a column mask applies.
pub(crate) async fn copy_columns(
    backend: &mut BackendConn,
    out: &CopyOut,
    masks: &MaskPlan,
    lineages: &[Lineage],
    catalog: Option<&MaskingCatalog>,
) -> CopyColumns {
    let unresolved = CopyColumns { columns: Vec::new(), all: !masks.columns.is_empty() };
    let Some((schema, table)) = &out.table else {
        let (Some(query), Some(catalog)) = (&out.query, catalog) else { return unresolved };
        let Ok(described) = describe(backend, &[query.as_str()]).await else { return unresolved };
        let Some(Some(columns)) = described.into_iter().next() else { return unresolved };
        let masked = catalog.catalog.masked(masks);
        let view = SchemaView { schema: &catalog.catalog.schema, masked: &masked, settled: catalog.settled };
        let whole = masked_columns(masks, lineages, &columns.names, &columns.origins, Some(view));
        return CopyColumns {
            columns: whole.into_iter().zip(columns.types).map(|(whole, oid)| (whole, Some(oid))).collect(),
            all: false,
        };
    };
    let quote_ident = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let name = match schema {
        Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(table)),
        None => quote_ident(table),
    };
    let query = format!(
        "/* portcullis: copy columns */ SELECT a.attname, a.atttypid FROM pg_catalog.pg_attribute a \
         WHERE a.attrelid = '{}'::pg_catalog.regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        name.replace('\'', "''")
    );
    let Ok(rows) = read_rows(backend, query).await else { return unresolved };
    let all: Vec<(String, u32)> =
        rows.into_iter().filter_map(|r| Some((r.first()?.clone(), r.get(1)?.parse().ok()?))).collect();
    if all.is_empty() {
        return unresolved;
    }
    let listed: Vec<(String, u32)> = if out.columns.is_empty() {
        all
    } else {
        let mut picked = Vec::with_capacity(out.columns.len());
        for c in &out.columns {
            match all.iter().find(|(n, _)| n == c) {
                Some(found) => picked.push(found.clone()),
                None => return unresolved,
            }
        }
        picked
    };
    CopyColumns {
        columns: listed.into_iter().map(|(n, oid)| (masks.masks_column(&n), Some(oid))).collect(),
        all: false,
    }
}

/// One row of a catalog answer, as text.
struct Row(Vec<Option<String>>);

impl Row {
    fn text(&self, i: usize) -> String {
        self.0.get(i).cloned().flatten().unwrap_or_default()
    }

    fn oid(&self, i: usize) -> u32 {
        self.text(i).parse().unwrap_or(0)
    }

    fn int(&self, i: usize) -> i16 {
        self.text(i).parse().unwrap_or(0)
    }
}

/// Run `query` on the idle backend and read its rows as text (an error is an error).
async fn read_rows(backend: &mut BackendConn, query: String) -> Result<Vec<Vec<String>>> {
    let sets = read_result_sets(backend, query).await?;
    Ok(sets.into_iter().flatten().map(|row| row.0.into_iter().map(Option::unwrap_or_default).collect()).collect())
}

/// Run `query` (one or more statements) on the idle backend: the rows of each statement.
async fn read_result_sets(backend: &mut BackendConn, query: String) -> Result<Vec<Vec<Row>>> {
    backend.send(&F::Query(Query::new(query))).await?;
    let mut sets = Vec::new();
    let mut rows = Vec::new();
    let mut failed = None;
    loop {
        match backend.read().await? {
            B::DataRow(row) => {
                let values = split_row(&row).unwrap_or_default();
                rows.push(Row(values.iter().map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned())).collect()));
            }
            B::CommandComplete(_) => sets.push(std::mem::take(&mut rows)),
            B::ErrorResponse(e) => {
                failed = Some(e.fields.iter().find(|(c, _)| *c == b'M').map(|(_, m)| m.clone()).unwrap_or_default());
            }
            B::ReadyForQuery(_) => break,
            _ => {}
        }
    }
    match failed {
        Some(detail) => Err(Error::Backend { addr: backend.addr.clone(), detail }),
        None => Ok(sets),
    }
}

#[cfg(test)]
mod tests {
    use super::Volatility;

    #[test]
    fn a_name_is_side_effect_free_only_if_no_overload_anywhere_is_volatile() {
        let v = Volatility::for_test(&[
            ("pg_catalog", "lower", true),
            ("pg_catalog", "nextval", false),
            ("pg_catalog", "now", true),
            ("public", "now", false),
            ("public", "total", true),
        ]);
        assert!(v.is_side_effect_free("lower"));
        assert!(v.is_side_effect_free("pg_catalog.lower"));
        assert!(!v.is_side_effect_free("nextval"));
        assert!(!v.is_side_effect_free("now"), "a volatile public.now shadows nothing but makes the bare name unsafe");
        assert!(v.is_side_effect_free("pg_catalog.now"));
        assert!(!v.is_side_effect_free("public.now"));
        assert!(v.is_side_effect_free("total"));
        assert!(!v.is_side_effect_free("made_up_later"), "unknown functions count as volatile");
    }
}
