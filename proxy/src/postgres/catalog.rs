//! What the backend's own catalog says about the functions a statement calls: whether
//! each can change state (`provolatile = 'v'`).
//!
//! A statement is a read only if every function it calls is immutable or stable. A
//! SELECT calling `nextval`, `pg_notify`, `lo_from_bytea` or any volatile function of
//! the database's users has effects, so strict audit commits its record before it runs
//! (like a write), and policy sees it as writing (`match.writes`). A function the
//! catalog does not know (created after the last look) counts as volatile.
//!
//! The door reads the catalog once per resource, with the resource's credentials on a
//! session's backend connection, and keeps it for [`MAX_AGE`]; a DDL statement through
//! the door drops the resource's copy, so the next session reads it again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgwire::messages::PgWireBackendMessage as B;
use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::simplequery::Query;

use super::conn::BackendConn;
use super::copy_out::{CopyColumns, CopyOut};
use super::relay::split_row;
use crate::error::{Error, Result};
use crate::mask::MaskPlan;

/// How long a resource's catalog is trusted.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// Per function name, whether every overload of it is immutable or stable.
const QUERY: &str = "/* portcullis: function volatility */ SELECT n.nspname, p.proname, bool_and(p.provolatile <> 'v') \
     FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace GROUP BY 1, 2";

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
    by_resource: Mutex<HashMap<String, (Instant, Arc<Volatility>)>>,
}

impl CatalogCache {
    /// The catalog of `resource`, read through `backend` (idle, logged in) if the
    /// copy kept is missing or old.
    pub(crate) async fn get(&self, resource: &str, backend: &mut BackendConn) -> Result<Arc<Volatility>> {
        let kept = self.by_resource.lock().unwrap_or_else(|p| p.into_inner()).get(resource).cloned();
        if let Some((at, v)) = kept
            && at.elapsed() < MAX_AGE
        {
            return Ok(v);
        }
        let fresh = Arc::new(read(backend).await?);
        self.by_resource
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(resource.to_string(), (Instant::now(), fresh.clone()));
        Ok(fresh)
    }

    /// Drop `resource`'s copy (its functions may have changed).
    pub(crate) fn forget(&self, resource: &str) {
        self.by_resource.lock().unwrap_or_else(|p| p.into_inner()).remove(resource);
    }
}

async fn read(backend: &mut BackendConn) -> Result<Volatility> {
    let rows = read_rows(backend, QUERY.into()).await.map_err(|e| match e {
        Error::Backend { addr, detail } => {
            Error::Backend { addr, detail: format!("cannot read the function catalog: {detail}") }
        }
        other => other,
    })?;
    if rows.is_empty() {
        return Err(Error::Backend {
            addr: backend.addr.clone(),
            detail: "the function catalog read back empty".into(),
        });
    }
    let text = |r: &Vec<String>, i: usize| r.get(i).cloned().unwrap_or_default();
    Ok(Volatility::from_rows(rows.iter().map(|r| (text(r, 0), text(r, 1), text(r, 2) == "t"))))
}

/// The output columns of a `COPY ... TO STDOUT` under `masks`, read from the catalog
/// through `backend` (idle). A COPY of a query, or one whose table the catalog does not
/// answer for, has its fields masked whole when a column mask applies.
pub(crate) async fn copy_columns(backend: &mut BackendConn, out: &CopyOut, masks: &MaskPlan) -> CopyColumns {
    let unresolved = CopyColumns { columns: Vec::new(), all: !masks.columns.is_empty() };
    let Some((schema, table)) = &out.table else { return unresolved };
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

/// Run `query` on the idle backend and read its rows as text (an error is an error).
async fn read_rows(backend: &mut BackendConn, query: String) -> Result<Vec<Vec<String>>> {
    backend.send(&F::Query(Query::new(query))).await?;
    let mut rows = Vec::new();
    let mut failed = None;
    loop {
        match backend.read().await? {
            B::DataRow(row) => {
                let values = split_row(&row).unwrap_or_default();
                rows.push(
                    values
                        .iter()
                        .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default())
                        .collect(),
                );
            }
            B::ErrorResponse(e) => {
                failed = Some(e.fields.iter().find(|(c, _)| *c == b'M').map(|(_, m)| m.clone()).unwrap_or_default());
            }
            B::ReadyForQuery(_) => break,
            _ => {}
        }
    }
    match failed {
        Some(detail) => Err(Error::Backend { addr: backend.addr.clone(), detail }),
        None => Ok(rows),
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
