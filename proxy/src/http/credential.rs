//! The resource's own credential, injected into every request the backend gets
//! (resource options `credential` = `bearer | basic | header | query`,
//! `credential_name` for header and query; the secret sealed in the store).

use base64::Engine;
use http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use portcullis_raft::model::Resource;

use crate::error::{Error, Result};

/// How the backend expects to be authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    None,
    Bearer(String),
    Basic { username: String, password: String },
    Header { name: String, value: String },
    Query { name: String, value: String },
}

impl Credential {
    /// From `resource`'s options and its opened secret.
    pub fn of(resource: &Resource, secret: Option<String>) -> Result<Credential> {
        let kind = resource.options.get("credential").map(String::as_str);
        let need =
            |what: &str| Error::BackendAuth(format!("resource {}: credential {what} has no secret", resource.name));
        let name = || {
            resource.options.get("credential_name").cloned().ok_or_else(|| {
                Error::BackendAuth(format!("resource {}: credential needs credential_name", resource.name))
            })
        };
        Ok(match kind {
            None => Credential::None,
            Some("bearer") => Credential::Bearer(secret.ok_or_else(|| need("bearer"))?),
            Some("basic") => Credential::Basic {
                username: resource.username.clone().unwrap_or_default(),
                password: secret.ok_or_else(|| need("basic"))?,
            },
            Some("header") => Credential::Header { name: name()?, value: secret.ok_or_else(|| need("header"))? },
            Some("query") => Credential::Query { name: name()?, value: secret.ok_or_else(|| need("query"))? },
            Some(other) => {
                return Err(Error::BackendAuth(format!(
                    "resource {}: unknown credential {other:?} (bearer, basic, header or query)",
                    resource.name
                )));
            }
        })
    }

    /// Put it on a request to the backend (`query`: the query string, without `?`).
    pub fn apply(&self, headers: &mut HeaderMap, query: &mut String) -> Result<()> {
        let bad = |_| Error::BackendAuth("the resource's credential is not a valid header value".into());
        match self {
            Credential::None => {}
            Credential::Bearer(token) => {
                headers.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).map_err(bad)?);
            }
            Credential::Basic { username, password } => {
                let pair = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
                headers.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Basic {pair}")).map_err(bad)?);
            }
            Credential::Header { name, value } => {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| Error::BackendAuth(format!("credential_name {name:?} is not a header name")))?;
                headers.insert(name, HeaderValue::from_str(value).map_err(bad)?);
            }
            Credential::Query { name, value } => {
                let pair = format!("{}={}", encode(name), encode(value));
                *query = if query.is_empty() { pair } else { format!("{query}&{pair}") };
            }
        }
        Ok(())
    }

    /// The secret as it could come back in a response (an echoing API): masked there.
    pub fn secrets(&self) -> Vec<String> {
        match self {
            Credential::None => vec![],
            Credential::Bearer(s) | Credential::Header { value: s, .. } | Credential::Query { value: s, .. } => {
                vec![s.clone()]
            }
            Credential::Basic { username, password } => {
                let pair = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
                vec![password.clone(), pair]
            }
        }
    }
}

/// Percent-encoding for a query component.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
