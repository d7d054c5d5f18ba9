//! Functions that run SQL the statement does not show: given as text (`query_to_xml`),
//! or reading whole tables, schemas or the database named by an argument
//! (`table_to_xml('customers', ...)`). The tables they read and the statements they run
//! are invisible to the classifier, so column masks, `match.tables` and deny rules
//! cannot see them; policy sees the fact instead (`match.dynamic_sql: true`).
//!
//! The list was surveyed from Postgres 15's `pg_catalog`: every function with a
//! `query text` argument (`pg_get_function_arguments(oid) ~* 'query text'`), the
//! `*_to_xml*` family that reads relations, schemas, the database or a cursor, and
//! `ts_rewrite(tsquery, text)` whose text argument is a query; plus the `dblink`
//! extension's functions that run SQL on another connection. A function defined by the
//! database's users (PL/pgSQL `EXECUTE`) can run SQL too: deny `call`, `do` or the
//! functions themselves (`match.functions`) where that matters.

/// Function names (last name part, lowercase) that run SQL the statement does not show.
pub const DYNAMIC_SQL_FUNCTIONS: &[&str] = &[
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "query_to_xmlschema",
    "table_to_xml",
    "table_to_xml_and_xmlschema",
    "table_to_xmlschema",
    "schema_to_xml",
    "schema_to_xml_and_xmlschema",
    "schema_to_xmlschema",
    "database_to_xml",
    "database_to_xml_and_xmlschema",
    "database_to_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "ts_stat",
    "ts_rewrite",
    "dblink",
    "dblink_exec",
    "dblink_open",
    "dblink_fetch",
    "dblink_send_query",
];

/// Whether any of `functions` (as the classifier lists them: `name` or
/// `schema.name`, lowercase) runs SQL the statement does not show.
pub fn runs_dynamic_sql(functions: &[String]) -> bool {
    functions.iter().any(|f| {
        let name = f.rsplit('.').next().unwrap_or(f);
        DYNAMIC_SQL_FUNCTIONS.contains(&name)
    })
}
