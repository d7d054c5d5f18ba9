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
//! An `http` resource names the credential the gateway injects instead of `password:`,
//! and optionally a CA to pin for an `https://` backend:
//!
//! ```yaml
//! name: billing-api
//! protocol: http
//! address: https://billing.internal:8443/v1
//! credential: { bearer: s3cret }   # or { basic: { username: u, password: s3cret } },
//!                                  # { header: X-Api-Key, value: s3cret },
//!                                  # { query: api_key, value: s3cret }
//! ca: ./billing-ca.pem             # a PEM file (relative to this file) or the PEM text
//! ```
//!
//! [`HttpCredential`] maps it onto the resource model unchanged: the secret part goes
//! to `secret` (sealed by the node), the basic username to `username`, and the rest to
//! options: `credential` (`bearer|basic|header|query`), `credential_name` (the header
//! or query parameter) and `ca_pem` (the PEM text).
//!
//! A policy file is any YAML or JSON document with a top-level `name:`; its text is sent
//! as is and validated by the node.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

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
    /// HTTP only: the credential the gateway injects; read by [`HttpCredential::parse`].
    #[serde(default)]
    credential: Option<serde_json::Value>,
    /// HTTP only: the CA an `https://` backend's certificate must chain to (a PEM file
    /// or the PEM text).
    #[serde(default)]
    ca: Option<String>,
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

/// The put requests described by a resource file, in file order; relative `ca:` paths
/// are read from the current directory.
#[cfg(test)]
pub fn parse_resources(text: &str) -> Result<Vec<proto::PutResourceRequest>, String> {
    parse_resources_at(text, Path::new("."))
}

/// The put requests described by a resource file, in file order; relative `ca:` paths
/// are read from `base` (the file's directory).
pub fn parse_resources_at(text: &str, base: &Path) -> Result<Vec<proto::PutResourceRequest>, String> {
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
        let request = put_request(spec, base)?;
        if !seen.insert(request.name.clone()) {
            return Err(format!("resource {} is listed twice", request.name));
        }
        out.push(request);
    }
    Ok(out)
}

fn put_request(spec: ResourceSpec, base: &Path) -> Result<proto::PutResourceRequest, String> {
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
    let is_http = protocol == proto::Protocol::Http;
    if is_http && !(spec.address.starts_with("http://") || spec.address.starts_with("https://")) {
        return Err(format!(
            "resource {name}: address {:?}: an http resource's address is a URL, http(s)://host:port[/base]",
            spec.address
        ));
    }
    for (field, given) in [("credential", spec.credential.is_some()), ("ca", spec.ca.is_some())] {
        if given && !is_http {
            return Err(format!(
                "resource {name}: `{field}` is for protocol http only; a {} resource takes `username` and `password`",
                protocol.word()
            ));
        }
    }
    let mut request = proto::PutResourceRequest {
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
    };
    let name = request.name.clone();
    let place = |detail: String| format!("resource {name}: {detail}");
    if let Some(value) = spec.credential {
        if request.secret.is_some() {
            return Err(place(
                "give either `credential` or `password` (`secret`), not both: an http resource's secret goes in `credential`"
                    .into(),
            ));
        }
        if request.username.is_some() {
            return Err(place(
                "`username` with `credential`: put it in `credential: { basic: { username: U, password: S } }`".into(),
            ));
        }
        HttpCredential::parse(&value).map_err(place)?.apply(&mut request).map_err(place)?;
    }
    if let Some(ca) = spec.ca {
        if request.options.contains_key(CA_PEM) {
            return Err(place(format!("`ca` and `options.{CA_PEM}` both given: keep one")));
        }
        let pem = read_ca(&ca, base).map_err(place)?;
        request.options.insert(CA_PEM.into(), pem);
    }
    Ok(request)
}

// === HTTP credentials ===

/// Option keys an http resource's credential is kept under (the replicated model has
/// `username`, `secret` and free-form options; the HTTP door reads these).
pub const CREDENTIAL: &str = "credential";
pub const CREDENTIAL_NAME: &str = "credential_name";
pub const CA_PEM: &str = "ca_pem";

/// The credential the gateway injects into requests to an http resource, replacing the
/// client's own `Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpCredential {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: String },
    /// `<name>: <value>`.
    Header { name: String, value: String },
    /// `?<name>=<value>` added to the query.
    Query { name: String, value: String },
}

impl HttpCredential {
    /// Read the `credential:` field of a resource file: exactly one of
    /// `{ bearer: S }`, `{ basic: { username: U, password: S } }`,
    /// `{ header: NAME, value: S }`, `{ query: NAME, value: S }`.
    pub fn parse(value: &serde_json::Value) -> Result<Self, String> {
        const FORMS: &str = "`credential` is one of { bearer: S }, { basic: { username: U, password: S } }, \
                             { header: NAME, value: S }, { query: NAME, value: S }";
        let serde_json::Value::Object(map) = value else {
            return Err(FORMS.to_string());
        };
        let text = |field: &str, v: Option<&serde_json::Value>| -> Result<String, String> {
            match v {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(format!("credential.{field} must be a string")),
                None => Err(format!("credential.{field} is missing; {FORMS}")),
            }
        };
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        let only = |allowed: &[&str]| -> Result<(), String> {
            match keys.iter().find(|k| !allowed.contains(k)) {
                Some(k) => Err(format!("credential.{k} is not expected here; {FORMS}")),
                None => Ok(()),
            }
        };
        let credential = if map.contains_key("bearer") {
            only(&["bearer"])?;
            HttpCredential::Bearer(text("bearer", map.get("bearer"))?)
        } else if let Some(basic) = map.get("basic") {
            only(&["basic"])?;
            let serde_json::Value::Object(basic) = basic else {
                return Err("credential.basic is { username: U, password: S }".into());
            };
            if let Some(k) = basic.keys().find(|k| !["username", "password"].contains(&k.as_str())) {
                return Err(format!(
                    "credential.basic.{k} is not expected; credential.basic is {{ username: U, password: S }}"
                ));
            }
            HttpCredential::Basic {
                username: text("basic.username", basic.get("username"))?,
                password: text("basic.password", basic.get("password"))?,
            }
        } else if map.contains_key("header") {
            only(&["header", "value"])?;
            HttpCredential::Header { name: text("header", map.get("header"))?, value: text("value", map.get("value"))? }
        } else if map.contains_key("query") {
            only(&["query", "value"])?;
            HttpCredential::Query { name: text("query", map.get("query"))?, value: text("value", map.get("value"))? }
        } else {
            return Err(FORMS.to_string());
        };
        credential.check()?;
        Ok(credential)
    }

    /// The option word (`options.credential`).
    pub fn word(&self) -> &'static str {
        match self {
            HttpCredential::Bearer(_) => "bearer",
            HttpCredential::Basic { .. } => "basic",
            HttpCredential::Header { .. } => "header",
            HttpCredential::Query { .. } => "query",
        }
    }

    /// Refuse what could not be sent as written: a secret that would split a header
    /// (CR, LF, NUL), a header name that is not an HTTP token or is one the gateway
    /// owns (framing, routing, hop-by-hop), an empty name or secret.
    fn check(&self) -> Result<(), String> {
        let clean = |field: &str, s: &str| -> Result<(), String> {
            if s.is_empty() {
                return Err(format!("credential.{field} is empty"));
            }
            if s.chars().any(|c| c.is_control()) {
                return Err(format!("credential.{field} holds a control character (CR, LF, tab, ...)"));
            }
            Ok(())
        };
        match self {
            HttpCredential::Bearer(token) => {
                clean("bearer", token)?;
                if token.contains(' ') {
                    return Err("credential.bearer holds a space: a bearer token is one word".into());
                }
            }
            HttpCredential::Basic { username, password } => {
                clean("basic.username", username)?;
                clean("basic.password", password)?;
                if username.contains(':') {
                    return Err("credential.basic.username holds ':', which Basic uses as the separator".into());
                }
            }
            HttpCredential::Header { name, value } => {
                clean("value", value)?;
                let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
                if name.is_empty() || !name.chars().all(token) {
                    return Err(format!("credential.header {name:?} is not a header name"));
                }
                const OWNED: [&str; 9] = [
                    "host",
                    "content-length",
                    "transfer-encoding",
                    "connection",
                    "upgrade",
                    "te",
                    "trailer",
                    "keep-alive",
                    "proxy-connection",
                ];
                if OWNED.contains(&name.to_ascii_lowercase().as_str()) {
                    return Err(format!("credential.header {name:?} is set by the gateway itself; use another header"));
                }
            }
            HttpCredential::Query { name, value } => {
                clean("query", name)?;
                clean("value", value)?;
            }
        }
        Ok(())
    }

    /// Put the credential into a resource request: the secret part in `secret`, the
    /// basic username in `username`, the kind (and header or parameter name) in
    /// options. Refuses options that already say something else.
    pub fn apply(self, request: &mut proto::PutResourceRequest) -> Result<(), String> {
        for key in [CREDENTIAL, CREDENTIAL_NAME] {
            if request.options.contains_key(key) {
                return Err(format!("`options.{key}` is set from `credential`: remove it from options"));
            }
        }
        request.options.insert(CREDENTIAL.into(), self.word().into());
        let secret = match self {
            HttpCredential::Bearer(token) => token,
            HttpCredential::Basic { username, password } => {
                request.username = Some(username);
                password
            }
            HttpCredential::Header { name, value } | HttpCredential::Query { name, value } => {
                request.options.insert(CREDENTIAL_NAME.into(), name);
                value
            }
        };
        request.secret = Some(secret);
        Ok(())
    }
}

/// `ca:` is the PEM text itself, or the path of a PEM file (relative to `base`); either
/// way it must hold at least one certificate, and only certificates.
fn read_ca(ca: &str, base: &Path) -> Result<String, String> {
    let pem = if ca.contains("-----BEGIN") {
        ca.to_string()
    } else {
        let path = PathBuf::from(ca);
        let path = if path.is_absolute() { path } else { base.join(path) };
        std::fs::read_to_string(&path).map_err(|e| format!("ca: cannot read {}: {e}", path.display()))?
    };
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        cert.map_err(|e| format!("ca: not a PEM certificate: {e}"))?;
        count += 1;
    }
    if count == 0 {
        return Err("ca: no certificate in it (expected -----BEGIN CERTIFICATE-----)".into());
    }
    Ok(pem)
}
