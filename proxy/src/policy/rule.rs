//! A parsed, validated policy document and how one rule matches one request.

use std::time::Duration;

use regex::Regex;

use super::json::JsonMatch;
use super::{Glob, MaskPlan, Protocol, Request, Who};

/// One policy file, validated: every regex compiled, every name known.
#[derive(Debug, Clone)]
pub struct PolicyDoc {
    pub name: String,
    pub rules: Vec<Rule>,
}

/// One rule: when it matches, and what it then contributes.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Label for reasons and audit: `doc/name`, or `doc/#n` (1-based) when unnamed.
    pub label: String,
    pub matcher: Match,
    pub action: Action,
}

/// The `match` block; `None` fields match anything.
#[derive(Debug, Clone, Default)]
pub struct Match {
    pub groups: Option<Vec<String>>,
    pub resources: Option<Vec<Glob>>,
    pub protocols: Option<Vec<Protocol>>,
    /// Lower-case kind names.
    pub kinds: Option<Vec<String>>,
    pub tables: Option<Vec<Glob>>,
    pub functions: Option<Vec<Glob>>,
    pub commands: Option<Vec<Glob>>,
    pub only_commands: Option<Vec<Glob>>,
    pub paths: Option<Vec<Glob>>,
    pub text: Option<Regex>,
    /// Conditions on the JSON body (HTTP).
    pub json: Option<JsonMatch>,
    pub missing_where: Option<bool>,
    pub dynamic_sql: Option<bool>,
    pub writes: Option<bool>,
    pub locks_rows: Option<bool>,
}

/// What a matching rule contributes to the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny { reason: String },
    Review { approvers: Approvers, timeout: Duration, reason: Option<String>, covers: ApprovalCovers },
    Mask(MaskPlan),
}

/// What one approval releases (a review rule's `approval_covers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApprovalCovers {
    /// One execution with the parameters the approver saw (the default): a prepared
    /// statement is held again at every execution.
    #[default]
    Execution,
    /// Every execution of the statement, whatever its parameters.
    Statement,
}

/// Who may approve a held request, and how many of them must.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approvers {
    pub groups: Vec<String>,
    /// At least 1.
    pub count: u32,
}

// === impl Match ===

impl Match {
    /// Whether this block fits `who` making `req`. Cheap checks first, the regex last.
    pub fn matches(&self, who: &Who, req: &Request) -> bool {
        fn fits<T>(field: &Option<T>, test: impl FnOnce(&T) -> bool) -> bool {
            field.as_ref().is_none_or(test)
        }
        fits(&self.protocols, |ps| ps.contains(&req.protocol))
            && fits(&self.kinds, |ks| ks.iter().any(|k| k.eq_ignore_ascii_case(&req.kind)))
            && fits(&self.missing_where, |mw| *mw == req.missing_where)
            && fits(&self.dynamic_sql, |d| *d == req.dynamic_sql)
            && fits(&self.writes, |w| *w == req.writes)
            && fits(&self.locks_rows, |l| *l == req.locks_rows)
            && fits(&self.resources, |rs| rs.iter().any(|g| g.matches(&req.resource)))
            && fits(&self.groups, |gs| gs.iter().any(|g| who.groups.contains(g)))
            && fits(&self.tables, |ts| req.tables.iter().any(|t| ts.iter().any(|g| table_matches(g, t))))
            && fits(&self.functions, |fs| req.functions.iter().any(|f| fs.iter().any(|g| function_matches(g, f))))
            && fits(&self.commands, |gs| req.commands.iter().any(|c| gs.iter().any(|g| c.matches(g))))
            && fits(&self.paths, |gs| req.path.as_deref().is_some_and(|p| gs.iter().any(|g| g.matches(p))))
            && fits(&self.only_commands, |gs| {
                !req.commands.is_empty() && req.commands.iter().all(|c| gs.iter().any(|g| c.is_the_listed(g)))
            })
            && fits(&self.json, |j| j.matches(&req.json))
            && fits(&self.text, |re| re.is_match(&req.text))
    }
}

/// As for tables, with the schema a bare call resolves to first: Postgres searches
/// `pg_catalog` before the search path, so `pg_catalog.set_config` also matches a call
/// written `set_config(...)`.
fn function_matches(pattern: &Glob, function: &str) -> bool {
    if pattern.matches_ignore_ascii_case(function) {
        return true;
    }
    match function.rsplit_once('.') {
        Some((_, bare)) => !pattern.as_str().contains('.') && pattern.matches_ignore_ascii_case(bare),
        None => ["pg_catalog", "public"].iter().any(|s| pattern.matches_ignore_ascii_case(&format!("{s}.{function}"))),
    }
}

/// A pattern without a schema matches the bare table name in any schema; a table
/// without a schema is also tried as `public.<name>` (the default search path).
fn table_matches(pattern: &Glob, table: &str) -> bool {
    if pattern.matches_ignore_ascii_case(table) {
        return true;
    }
    match table.rsplit_once('.') {
        Some((_, bare)) => !pattern.as_str().contains('.') && pattern.matches_ignore_ascii_case(bare),
        None => pattern.matches_ignore_ascii_case(&format!("public.{table}")),
    }
}
