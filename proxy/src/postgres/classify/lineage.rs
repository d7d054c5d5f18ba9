//! Where a statement's result columns come from, as far as column masking needs to know.
//!
//! A mask rule names columns (`email`, `ssn`). Masking result columns by their name alone
//! is easy to walk around: `SELECT reverse(email)`, `SELECT email AS contact`,
//! `SELECT x FROM (SELECT email AS x ...)`, `SELECT c FROM customers c` (the whole row)
//! all return the data under another name. So a statement that mentions a masked column
//! anywhere, or reads whole rows, is *sensitive*, and in a sensitive statement only the
//! result columns that provably pass one real table column through under its own name
//! stay unmasked (they are then masked, or not, by their name). Everything else is
//! masked: computed values, renamed columns, and every column of a statement whose shape
//! hides where its columns come from (subqueries or functions in FROM, WITH, set
//! operations, column aliases on tables, RETURNING).
//!
//! With the backend's catalog at hand ([`masked_columns`] given a [`MaskedSchema`]), the
//! rule is exact where Postgres can say where a result column comes from: a column of a
//! plain read that `RowDescription` names as a table column is masked exactly when that
//! column holds masked data (through views and generated columns: see
//! `catalog::schema`), under whatever name it comes back. Computed columns are masked
//! when the statement is sensitive, now also when it names a column that holds masked
//! data under another name or calls a function that may return some. Without the
//! catalog, the rule above is the rule.

use std::collections::BTreeSet;

use pg_query::NodeEnum;
use pg_query::protobuf::{self, SetOperation};

use crate::mask::MaskPlan;
use crate::postgres::catalog::schema::{ColumnId, MaskedSchema, Origin, Schema};

/// What masking needs to know about one statement's result columns.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Lineage {
    /// Column names the statement mentions anywhere (last name part, lowercase).
    pub mentions: BTreeSet<String>,
    /// It reads whole rows (`SELECT c FROM customers c`, `row_to_json(c.*)`) or renames a
    /// table's columns (`FROM customers AS c(a, b, x)`): any column, masked ones included,
    /// may flow into a result under another name.
    pub whole_rows: bool,
    pub columns: ResultColumns,
    /// Functions the statement calls (as `Statement::functions`).
    pub calls: Vec<String>,
    /// A plain read (a SELECT without data-modifying CTEs): Postgres's word on where a
    /// result column comes from holds. A write's RETURNING reports the written row's
    /// columns, which the write itself may have filled with masked data.
    pub plain_read: bool,
}

/// The result columns of a statement, when each is known to be one real table column.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub enum ResultColumns {
    /// Per select-list item, in order: the table column it passes through under its own
    /// name, or `None` when it computes or renames something.
    Listed(Vec<Option<String>>),
    /// `*` over plain tables, every other item passing a column through.
    Star,
    /// Anything else: no result column is known to be a table column.
    #[default]
    Unknown,
}

/// The catalog's view of a resource's schema under one mask plan.
pub struct SchemaView<'a> {
    pub schema: &'a Schema,
    pub masked: &'a MaskedSchema,
    /// False inside a transaction that ran DDL the catalog does not show yet: a view or
    /// function may have been redefined, so only base-table columns are judged by it
    /// and everything else is masked.
    pub settled: bool,
}

/// Per result column (`names`, in order, with `origins`, the table and column
/// `RowDescription` gives each): whether its whole value is masked, given the lineage
/// of the statements that produce it (several for a multi-statement query, whose
/// results cannot be told apart here) and, when known, the schema.
pub fn masked_columns(
    plan: &MaskPlan,
    lineages: &[Lineage],
    names: &[String],
    origins: &[ColumnId],
    schema: Option<SchemaView<'_>>,
) -> Vec<bool> {
    if plan.columns.is_empty() {
        return vec![false; names.len()];
    }
    let Some(SchemaView { schema, masked, settled }) = schema else {
        return masked_by_statement(plan, lineages, names);
    };
    let sensitive = lineages.iter().any(|l| {
        l.whole_rows
            || l.mentions.iter().any(|c| plan.masks_column(c) || masked.is_derived_name(c))
            || l.calls.iter().any(|f| masked.function_reads_masked(f))
    });
    let plain_read = lineages.iter().all(|l| l.plain_read);
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let computed = plan.masks_column(name) || sensitive || !settled;
            let origin = origins.get(i).copied().unwrap_or((0, 0));
            match masked.origin(schema, origin) {
                Origin::Masked => true,
                Origin::Clear if !settled && schema.is_user_view(origin.0) => true,
                Origin::Clear if plain_read => plan.masks_column(name),
                Origin::Unknown => true,
                Origin::Clear | Origin::Computed => computed,
            }
        })
        .collect()
}

/// [`masked_columns`] from the statement text alone (the rule in the module docs).
fn masked_by_statement(plan: &MaskPlan, lineages: &[Lineage], names: &[String]) -> Vec<bool> {
    let sensitive = lineages.iter().any(|l| l.whole_rows || l.mentions.iter().any(|c| plan.masks_column(c)));
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let passes_through = match lineages {
                [one] => match &one.columns {
                    ResultColumns::Listed(items) => {
                        items.len() == names.len() && items.get(i).is_some_and(Option::is_some)
                    }
                    ResultColumns::Star => true,
                    ResultColumns::Unknown => false,
                },
                _ => false,
            };
            plan.masks_column(name) || (sensitive && !passes_through)
        })
        .collect()
}

/// The result columns of `node` (the statement as parsed). `relations` are the names and
/// aliases of every relation the statement reads, to tell a whole-row reference (`c`)
/// from a column.
pub(super) fn result_columns(node: &NodeEnum, relations: &BTreeSet<String>) -> (ResultColumns, usize) {
    let NodeEnum::SelectStmt(select) = node else {
        return (ResultColumns::Unknown, 0);
    };
    let plain_shape = select.op == SetOperation::SetopNone as i32
        && select.with_clause.is_none()
        && select.into_clause.is_none()
        && select.values_lists.is_empty()
        && select.from_clause.iter().all(plain_relation);
    let mut items = Vec::with_capacity(select.target_list.len());
    let mut stars = 0;
    for target in &select.target_list {
        match target_item(target, relations) {
            Item::Star => stars += 1,
            Item::Column(name) => items.push(Some(name)),
            Item::Computed => items.push(None),
        }
    }
    let columns = match (plain_shape, stars) {
        (false, _) => ResultColumns::Unknown,
        (true, 0) => ResultColumns::Listed(items),
        (true, _) if items.iter().all(Option::is_some) => ResultColumns::Star,
        (true, _) => ResultColumns::Unknown,
    };
    (columns, stars)
}

enum Item {
    Star,
    /// A column passed through under its own name.
    Column(String),
    Computed,
}

fn target_item(target: &protobuf::Node, relations: &BTreeSet<String>) -> Item {
    let Some(NodeEnum::ResTarget(res)) = target.node.as_ref() else {
        return Item::Computed;
    };
    let Some(NodeEnum::ColumnRef(column)) = res.val.as_ref().and_then(|v| v.node.as_ref()) else {
        return Item::Computed;
    };
    let mut names = Vec::with_capacity(column.fields.len());
    for field in &column.fields {
        match field.node.as_ref() {
            Some(NodeEnum::String(s)) => names.push(s.sval.as_str()),
            Some(NodeEnum::AStar(_)) => return Item::Star,
            _ => return Item::Computed,
        }
    }
    match names.as_slice() {
        // A name that is a relation (`c`, `public.customers`) is the whole row, not a
        // column.
        [.., last] if relations.contains(&last.to_lowercase()) => Item::Computed,
        [.., last] if res.name.is_empty() || res.name == *last => Item::Column(last.to_lowercase()),
        _ => Item::Computed,
    }
}

/// A table, or a join of tables, whose columns keep their names.
fn plain_relation(node: &protobuf::Node) -> bool {
    match node.node.as_ref() {
        Some(NodeEnum::RangeVar(table)) => table.alias.as_ref().is_none_or(|a| a.colnames.is_empty()),
        Some(NodeEnum::JoinExpr(join)) => {
            join.alias.as_ref().is_none_or(|a| a.colnames.is_empty())
                && join.join_using_alias.is_none()
                && join.larg.as_deref().is_some_and(plain_relation)
                && join.rarg.as_deref().is_some_and(plain_relation)
        }
        _ => false,
    }
}
