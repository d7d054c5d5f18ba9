//! Resource and policy files, YAML or JSON, as given to `apply -f FILE`.
//!
//! A resource file holds one resource, or a list under `resources:`:
//!
//! ```yaml
//! name: orders-db
//! protocol: postgres          # postgres | ssh | http
//! address: 10.0.0.5:5432
//! username: gateway
//! password: s3cret            # or `secret:`; sent once, sealed by the node
//! audit: strict               # strict (default) | fast
//! options: { dbname: orders, sslmode: require }
//! logins:                     # optional: backend logins per identity group, first match wins
//!   - { groups: [dba], username: orders_dba, password: s3cret2 }
//! ```
//!
//! A policy file is any YAML or JSON document with a top-level `name:`; its text is sent
//! as is and validated by the node.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use portcullis_api::proto;
use serde::Deserialize;

use super::CliError;

/// One resource as written in a file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceSpec {
    name: String,
    protocol: String,
    address: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default, alias = "secret")]
    password: Option<String>,
    #[serde(default)]
    audit: Option<String>,
    #[serde(default)]
    options: BTreeMap<String, OptionValue>,
    #[serde(default)]
    logins: Vec<LoginSpec>,
}

/// A backend login for identity groups (`logins:` in a resource file).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginSpec {
    groups: Vec<String>,
    username: String,
    #[serde(default, alias = "secret")]
    password: Option<String>,
}

/// Option values may be written as YAML scalars (`port: 5432`); they are sent as text.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OptionValue {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl OptionValue {
    fn into_text(self) -> String {
        match self {
            OptionValue::Text(s) => s,
            OptionValue::Int(i) => i.to_string(),
            OptionValue::Float(f) => f.to_string(),
            OptionValue::Bool(b) => b.to_string(),
        }
    }
}

/// Read a file; `-` reads stdin.
pub fn read(path: &Path) -> Result<String, CliError> {
    let file_error = |detail: String| CliError::File { path: path.display().to_string(), detail };
    if path == Path::new("-") {
        return std::io::read_to_string(std::io::stdin()).map_err(|e| file_error(e.to_string()));
    }
    std::fs::read_to_string(path).map_err(|e| file_error(format!("cannot read: {e}")))
}

/// Parse YAML or JSON into a JSON value (JSON is tried first for its error messages).
fn parse_document(text: &str) -> Result<serde_json::Value, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"));
    }
    serde_yaml_ng::from_str(text).map_err(|e| format!("not valid YAML: {e}"))
}

/// The put requests described by a resource file, in file order.
pub fn parse_resources(text: &str) -> Result<Vec<proto::PutResourceRequest>, String> {
    let doc = parse_document(text)?;
    let specs: Vec<(String, serde_json::Value)> = match doc {
        serde_json::Value::Object(mut map) if map.contains_key("resources") => {
            if map.len() > 1 {
                let others: Vec<&str> = map.keys().filter(|k| *k != "resources").map(String::as_str).collect();
                return Err(format!("unexpected top-level fields next to `resources`: {}", others.join(", ")));
            }
            match map.remove("resources") {
                Some(serde_json::Value::Array(items)) => {
                    items.into_iter().enumerate().map(|(i, v)| (format!("resources[{i}]"), v)).collect()
                }
                _ => return Err("`resources` must be a list".to_string()),
            }
        }
        obj @ serde_json::Value::Object(_) => vec![("resource".to_string(), obj)],
        _ => return Err("expected a resource (name, protocol, address, ...) or a `resources:` list".to_string()),
    };
    if specs.is_empty() {
        return Err("no resources in file".to_string());
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(specs.len());
    for (place, value) in specs {
        let spec: ResourceSpec = serde_json::from_value(value).map_err(|e| format!("{place}: {e}"))?;
        let request = put_request(spec)?;
        if !seen.insert(request.name.clone()) {
            return Err(format!("resource {} is listed twice", request.name));
        }
        out.push(request);
    }
    Ok(out)
}

fn put_request(spec: ResourceSpec) -> Result<proto::PutResourceRequest, String> {
    let name = spec.name.trim().to_string();
    if name.is_empty() {
        return Err("a resource has an empty name".to_string());
    }
    let protocol = proto::Protocol::from_word(&spec.protocol)
        .ok_or_else(|| format!("resource {name}: unknown protocol {:?}: use postgres, ssh or http", spec.protocol))?;
    let audit = match spec.audit.as_deref() {
        None => proto::AuditMode::Strict,
        Some(word) => proto::AuditMode::from_word(word)
            .ok_or_else(|| format!("resource {name}: unknown audit mode {word:?}: use strict or fast"))?,
    };
    if spec.address.trim().is_empty() {
        return Err(format!("resource {name}: address is empty"));
    }
    Ok(proto::PutResourceRequest {
        name,
        protocol: protocol.into(),
        address: spec.address,
        username: spec.username,
        secret: spec.password,
        audit: audit.into(),
        options: spec.options.into_iter().map(|(k, v)| (k, v.into_text())).collect(),
        logins: spec
            .logins
            .into_iter()
            .map(|l| proto::GroupLogin { groups: l.groups, username: l.username, secret: l.password })
            .collect(),
    })
}
