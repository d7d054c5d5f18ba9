//! Session settings that change how Postgres reads a statement's text.
//!
//! The gateway parses every statement with Postgres's own parser under Postgres's
//! defaults. Two settings make the backend read the same bytes differently:
//! `standard_conforming_strings` (off: a backslash escapes a quote inside '...') and
//! `client_encoding` (a client-only encoding such as SJIS or BIG5 can swallow a
//! backslash into a multibyte character). The door pins both when it logs in to the
//! backend, checks the backend's reports of them (ParameterStatus) for the whole
//! session, and refuses any statement that would set them to another value or in a
//! way the gateway cannot read. Every other setting passes as `set` for policy to judge
//! (pg_dump's `set_config('search_path', '', false)` among them).

use pg_query::NodeEnum;
use pg_query::protobuf::VariableSetKind;
use serde_json::{Map, Value};

/// The pinned settings and the value each is pinned to (as Postgres reports it).
pub const PINNED: [(&str, &str); 2] = [("standard_conforming_strings", "on"), ("client_encoding", "UTF8")];

/// Whether `value` is the pinned value of `name` (or `name` is not pinned), in any
/// spelling Postgres accepts for it.
pub fn is_pinned_value(name: &str, value: &str) -> bool {
    let value = value.trim().to_ascii_lowercase().replace(['-', '_'], "");
    match name.to_ascii_lowercase().as_str() {
        "standard_conforming_strings" => matches!(value.as_str(), "on" | "true" | "yes" | "1" | "t" | "y"),
        "client_encoding" | "names" => matches!(value.as_str(), "utf8" | "unicode"),
        _ => true,
    }
}

fn is_pinned(name: &str) -> bool {
    matches!(name.to_ascii_lowercase().as_str(), "standard_conforming_strings" | "client_encoding" | "names")
}

/// Why a SET / RESET statement would change a pinned setting, if it would.
pub fn set_statement(node: &NodeEnum) -> Option<String> {
    let NodeEnum::VariableSetStmt(set) = node else { return None };
    if !is_pinned(&set.name) {
        return None;
    }
    // RESET and SET ... TO DEFAULT return to the session's start value: the pinned one.
    let kind = VariableSetKind::try_from(set.kind).unwrap_or(VariableSetKind::Undefined);
    if matches!(kind, VariableSetKind::VarReset | VariableSetKind::VarSetDefault | VariableSetKind::VarResetAll) {
        return None;
    }
    let values: Vec<String> =
        set.args.iter().map(|a| serde_json::to_value(a).ok().and_then(|v| constant(&v)).unwrap_or_default()).collect();
    match values.as_slice() {
        [one] if is_pinned_value(&set.name, one) => None,
        _ => Some(refusal(&set.name, &values.join(", "))),
    }
}

/// Why a `set_config(name, value, is_local)` call (a FuncCall node, serialized) would
/// change a pinned setting, if it would: also when its name or value is not a constant
/// the gateway can read, or when it switches roles (`role`, `session_authorization`).
pub fn set_config_call(funcname: &[&str], call: &Map<String, Value>) -> Option<String> {
    let is_set_config = matches!(funcname, ["set_config"] | ["pg_catalog", "set_config"])
        || funcname.last().is_some_and(|f| f.eq_ignore_ascii_case("set_config"));
    if !is_set_config {
        return None;
    }
    let args = call.get("args").and_then(Value::as_array);
    let arg = |i: usize| args.and_then(|a| a.get(i)).and_then(constant);
    let Some(name) = arg(0) else {
        // The name is computed (pg_dump: `set_config(name, 'view, foreign-table', false)
        // FROM pg_settings WHERE ...`). Harmless if no pinned setting could take the value.
        if arg(1).is_some_and(|v| !could_set_pinned(&v)) {
            return None;
        }
        return Some("set_config with a setting name that is not a constant: the gateway cannot tell whether it changes how statements are read".to_string());
    };
    if matches!(name.to_ascii_lowercase().as_str(), "role" | "session_authorization") {
        // Another role's privileges for the rest of the session: what `SET ROLE` does
        // (kind grant); not through a function call that policy would judge as a read.
        return Some(format!(
            "set_config('{name}', ...) takes on another role's privileges; use SET ROLE, which policy judges as a grant"
        ));
    }
    if !is_pinned(&name) {
        return None;
    }
    match arg(1) {
        Some(value) if is_pinned_value(&name, &value) => None,
        value => Some(refusal(&name, &value.unwrap_or_else(|| "an expression".into()))),
    }
}

/// Whether `value` could be a value of a pinned setting: a boolean word or an encoding
/// name, both made of letters, digits, `_` and `-` only. Anything else Postgres refuses
/// for both, so setting it cannot change how statements are read.
fn could_set_pinned(value: &str) -> bool {
    let v = value.trim();
    !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn refusal(name: &str, value: &str) -> String {
    let name = if name.eq_ignore_ascii_case("names") { "client_encoding" } else { name };
    let pinned = PINNED.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map_or("", |(_, v)| v);
    format!(
        "{name} is pinned to {pinned} by the gateway (it changes how statements are read); setting it to {value} is refused"
    )
}

/// The text of a constant argument (a string, number or boolean literal).
fn constant(node: &Value) -> Option<String> {
    let c = node.pointer("/node/AConst/val")?;
    if let Some(s) = c.pointer("/Sval/sval").and_then(Value::as_str) {
        return Some(s.to_string());
    }
    if let Some(i) = c.pointer("/Ival/ival").and_then(Value::as_i64) {
        return Some(i.to_string());
    }
    if let Some(b) = c.pointer("/Boolval/boolval").and_then(Value::as_bool) {
        return Some(if b { "on" } else { "off" }.to_string());
    }
    c.pointer("/Fval/fval").and_then(Value::as_str).map(str::to_string)
}
