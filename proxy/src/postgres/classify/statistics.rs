//! Catalog views that hold copies of table data or other sessions' statements.
//!
//! The planner's statistics keep sample values of every column (`pg_stats`'s
//! `most_common_vals`, `histogram_bounds`; `pg_statistic`'s `stavalues1..5`; the extended
//! statistics' views), and the activity views keep the statement texts of every session
//! (`pg_stat_activity.query`, `pg_stat_statements.query`), literals included. On a
//! resource with column masks those columns are masked too ([`masks_for`]): a masked
//! column's values must not come back through the statistics about it.

use crate::mask::MaskPlan;
use crate::policy::Glob;

/// Relations (last name part) whose columns below copy data.
const RELATIONS: &[&str] = &[
    "pg_stats",
    "pg_statistic",
    "pg_stats_ext",
    "pg_stats_ext_exprs",
    "pg_statistic_ext_data",
    "pg_stat_activity",
    "pg_stat_statements",
];

/// Their columns that hold values or statement texts.
const COLUMNS: &[&str] = &[
    "most_common_vals",
    "histogram_bounds",
    "most_common_elems",
    "most_common_base_freqs",
    "stavalues*",
    "stxdmcv",
    "stxdexpr",
    "exprs",
    "query",
];

/// The extra mask plan for a statement reading `tables` under `masks`: none unless a
/// column mask applies and a statistics or activity view is read.
pub fn masks_for<'a>(mut tables: impl Iterator<Item = &'a String>, masks: &MaskPlan) -> Option<MaskPlan> {
    if masks.columns.is_empty() {
        return None;
    }
    let reads = tables.any(|t| RELATIONS.contains(&t.rsplit('.').next().unwrap_or(t)));
    reads.then(|| MaskPlan::new(COLUMNS.iter().map(|c| Glob::new(*c)).collect(), vec![]))
}
