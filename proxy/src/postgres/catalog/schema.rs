//! Which columns of the backend's relations hold masked data, whatever they are called.
//!
//! A mask rule names columns (`email`). A view can return such a column under another
//! name (`CREATE VIEW contacts AS SELECT email AS contact ...`), compute from it, or
//! call a function that reads it; a generated column can copy it. [`Schema`] is what the
//! catalog says about every relation (its columns, and for a view where each of its
//! columns comes from, as Postgres itself resolves the view's query), and
//! [`Schema::masked`] follows that graph for one mask plan:
//!
//! - a column whose own name a rule matches is masked, in any relation;
//! - a view column that passes another relation's column through is masked exactly when
//!   that column is;
//! - a view column that computes is masked when its view reads any masked column, the
//!   whole row of a relation with one, or a function that may return one;
//! - a generated column is masked when its expression reads a masked column;
//! - a function (SQL, PL/pgSQL or any procedural language) may return masked data when
//!   its body names a masked column, a relation holding one, another such function, or
//!   runs dynamic SQL (`EXECUTE`): Postgres records no dependencies for function bodies,
//!   so its text is all there is to go on.
//!
//! The result columns of a statement are then judged by where Postgres says they come
//! from (`RowDescription`'s table and column), see `classify::lineage`.

use std::collections::{HashMap, HashSet};

use crate::mask::MaskPlan;

/// Relations with an oid below this are Postgres's own (`FirstNormalObjectId`).
pub const FIRST_USER_OID: u32 = 16384;

/// A column of a relation: its table oid and attribute number, as `RowDescription` and
/// `pg_attribute` give them.
pub type ColumnId = (u32, i16);

/// What the catalog says about the relations and functions of one database.
#[derive(Debug, Default)]
pub struct Schema {
    relations: HashMap<u32, Relation>,
    functions: Vec<Function>,
}

#[derive(Debug, Default)]
struct Relation {
    name: String,
    /// A view or materialized view of the database's users (system views are judged
    /// by their columns' names alone).
    user_view: bool,
    /// By attribute number.
    columns: HashMap<i16, Column>,
    /// For a view: the columns it reads (attribute 0: a whole row of that relation) and
    /// the functions it calls (by oid), from `pg_depend`.
    reads: Vec<ColumnId>,
    calls: Vec<u32>,
}

#[derive(Debug, Default)]
struct Column {
    name: String,
    /// For a view column: the column it passes through, if Postgres resolves it to one
    /// (`None`: computed, or the view's query could not be described).
    origin: Option<ColumnId>,
    /// For a generated column: the columns of its own table its expression reads.
    generated_from: Vec<i16>,
}

#[derive(Debug)]
struct Function {
    oid: u32,
    /// `schema.name` and `name`, lowercase.
    qualified: String,
    name: String,
    /// The identifiers its body mentions, lowercase.
    words: HashSet<String>,
}

/// The masked columns of a [`Schema`] under one mask plan.
#[derive(Debug, Default)]
pub struct MaskedSchema {
    columns: HashSet<ColumnId>,
    /// Names under which masked data can be mentioned in a statement: masked view and
    /// generated columns whose own name no rule matches.
    derived_names: HashSet<String>,
    /// Functions that may return masked data, by `schema.name` and by bare name.
    functions: HashSet<String>,
}

/// What a result column is, for masking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Masked data passed through under any name.
    Masked,
    /// A column of a known relation that holds no masked data.
    Clear,
    /// Not a column of a relation: computed by the statement.
    Computed,
    /// A column of a relation the catalog does not know (created since it was read).
    Unknown,
}

// === impl Schema ===

impl Schema {
    /// Add a column of relation `oid` (called once per `pg_attribute` row).
    pub fn add_column(&mut self, oid: u32, relation: &str, user_view: bool, attnum: i16, name: &str) {
        let rel = self.relations.entry(oid).or_default();
        rel.name = relation.to_lowercase();
        rel.user_view = user_view;
        rel.columns.insert(attnum, Column { name: name.to_lowercase(), ..Column::default() });
    }

    /// Where view `view`'s columns come from, in order, as Postgres described its query.
    pub fn set_view_origins(&mut self, view: u32, origins: &[Option<ColumnId>]) {
        if let Some(rel) = self.relations.get_mut(&view) {
            for (i, origin) in origins.iter().enumerate() {
                let attnum = i16::try_from(i + 1).unwrap_or(i16::MAX);
                if let Some(column) = rel.columns.get_mut(&attnum) {
                    column.origin = *origin;
                }
            }
        }
    }

    /// View `view` reads column `attnum` of relation `oid` (0: its whole row).
    pub fn add_view_read(&mut self, view: u32, read: ColumnId) {
        if let Some(rel) = self.relations.get_mut(&view) {
            rel.reads.push(read);
        }
    }

    /// View `view` calls function `function` (a `pg_proc` oid).
    pub fn add_view_call(&mut self, view: u32, function: u32) {
        if let Some(rel) = self.relations.get_mut(&view) {
            rel.calls.push(function);
        }
    }

    /// Generated column `attnum` of `oid` is computed from column `from` of the same table.
    pub fn add_generated(&mut self, oid: u32, attnum: i16, from: i16) {
        if let Some(column) = self.relations.get_mut(&oid).and_then(|r| r.columns.get_mut(&attnum)) {
            column.generated_from.push(from);
        }
    }

    /// A function of the database's users and its body.
    pub fn add_function(&mut self, oid: u32, schema: &str, name: &str, body: &str) {
        let name = name.to_lowercase();
        self.functions.push(Function {
            oid,
            qualified: format!("{}.{name}", schema.to_lowercase()),
            name,
            words: identifiers(body),
        });
    }

    /// The user views, for describing their queries.
    pub fn user_views(&self) -> impl Iterator<Item = u32> + '_ {
        self.relations.iter().filter(|(_, r)| r.user_view).map(|(oid, _)| *oid)
    }

    /// Whether `relation` is a view or materialized view of the database's users.
    pub fn is_user_view(&self, relation: u32) -> bool {
        self.relations.get(&relation).is_some_and(|r| r.user_view)
    }

    pub fn knows(&self, relation: u32) -> bool {
        self.relations.contains_key(&relation)
    }

    /// Follow masked data through views, generated columns and functions under `plan`.
    pub fn masked(&self, plan: &MaskPlan) -> MaskedSchema {
        let mut masked = MaskedSchema::default();
        if plan.columns.is_empty() {
            return masked;
        }
        for (oid, rel) in &self.relations {
            for (attnum, column) in &rel.columns {
                if plan.masks_column(&column.name) {
                    masked.columns.insert((*oid, *attnum));
                }
            }
        }
        // Each round can only add; every item is added at most once, so this ends.
        let bound = self.relations.values().map(|r| r.columns.len()).sum::<usize>() + self.functions.len() + 1;
        for _ in 0..bound {
            let grew = self.grow_functions(&mut masked) | self.grow_columns(&mut masked);
            if !grew {
                break;
            }
        }
        masked
    }

    fn grow_functions(&self, masked: &mut MaskedSchema) -> bool {
        let mut grew = false;
        // Words that point at masked data: masked columns' names, names of relations
        // holding one, and functions already found.
        let mut pointers: HashSet<&str> = HashSet::new();
        for (oid, attnum) in &masked.columns {
            if let Some(rel) = self.relations.get(oid) {
                pointers.insert(&rel.name);
                if let Some(column) = rel.columns.get(attnum) {
                    pointers.insert(&column.name);
                }
            }
        }
        for function in &self.functions {
            if masked.functions.contains(&function.qualified) {
                continue;
            }
            let reads = function.words.contains("execute")
                || function.words.iter().any(|w| pointers.contains(w.as_str()) || masked.functions.contains(w));
            if reads {
                masked.functions.insert(function.qualified.clone());
                masked.functions.insert(function.name.clone());
                grew = true;
            }
        }
        grew
    }

    fn grow_columns(&self, masked: &mut MaskedSchema) -> bool {
        let mut found = Vec::new();
        for (oid, rel) in &self.relations {
            let view_reads_masked = rel.user_view
                && (rel.reads.iter().any(|read| match read {
                    (relation, 0) => masked.columns.iter().any(|(r, _)| r == relation),
                    column => masked.columns.contains(column),
                }) || rel.calls.iter().any(|f| self.function_masked(*f, masked)));
            for (attnum, column) in &rel.columns {
                if masked.columns.contains(&(*oid, *attnum)) {
                    continue;
                }
                let derives = match column.origin {
                    Some(origin) if rel.user_view => masked.columns.contains(&origin) || !self.knows(origin.0),
                    None if rel.user_view => view_reads_masked,
                    _ => column.generated_from.iter().any(|from| masked.columns.contains(&(*oid, *from))),
                };
                if derives {
                    found.push(((*oid, *attnum), column.name.clone()));
                }
            }
        }
        let grew = !found.is_empty();
        for (id, name) in found {
            masked.columns.insert(id);
            masked.derived_names.insert(name);
        }
        grew
    }

    fn function_masked(&self, oid: u32, masked: &MaskedSchema) -> bool {
        self.functions.iter().any(|f| f.oid == oid && masked.functions.contains(&f.qualified))
    }
}

// === impl MaskedSchema ===

impl MaskedSchema {
    /// What result column `column` (a `RowDescription` origin; table 0 when computed) is.
    pub fn origin(&self, schema: &Schema, column: ColumnId) -> Origin {
        match column {
            (0, _) | (_, 0) => Origin::Computed,
            id if self.columns.contains(&id) => Origin::Masked,
            (relation, attnum) => match schema.relations.get(&relation) {
                // A system column (`tableoid`, `ctid`, `xmin`, ...) holds no data of the row.
                Some(rel) if attnum < 0 || rel.columns.contains_key(&attnum) => Origin::Clear,
                _ => Origin::Unknown,
            },
        }
    }

    /// Whether a statement mentioning `name` (a column name, lowercase) mentions data
    /// masked under another name.
    pub fn is_derived_name(&self, name: &str) -> bool {
        self.derived_names.contains(name)
    }

    /// Whether calling `function` (`name` or `schema.name`, lowercase) may return masked data.
    pub fn function_reads_masked(&self, function: &str) -> bool {
        self.functions.contains(function)
    }
}

/// The identifiers a function body mentions, lowercase (quoted ones unquoted: a body is
/// matched generously, a false match only masks more).
fn identifiers(body: &str) -> HashSet<String> {
    body.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests;
