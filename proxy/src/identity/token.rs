//! Checking one token against a key set: a pure function of token, keys, config and time.
//!
//! Every refusal names its cause ("token expired 12 s ago", "signed with HS256, an
//! HMAC algorithm that is never accepted"), because the person or agent holding the
//! token needs to know what to fix.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreJsonWebKey, CoreJwsSigningAlgorithm};
use openidconnect::{JsonWebKey, JsonWebKeyAlgorithm, JsonWebKeyUse};
use serde_json::Value;

use super::keys::KeySet;
use super::{Identity, IdentityConfig};
use crate::error::{Error, Result};

/// The result of a check that got as far as choosing a key.
#[derive(Debug)]
pub enum Checked {
    Valid(Identity),
    /// No cached key has the token's `kid`: refresh the keys, then check again.
    UnknownKey {
        kid: Option<String>,
    },
}

fn reject<T>(reason: impl Into<String>) -> Result<T> {
    Err(Error::rejected(reason))
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>> {
    // Tolerate padding some issuers add; reject anything else that is not base64url.
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| Error::rejected(format!("malformed token: {what} is not base64url")))
}

fn json_object(bytes: &[u8], what: &str) -> Result<serde_json::Map<String, Value>> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => reject(format!("malformed token: {what} is not a JSON object")),
        Err(_) => reject(format!("malformed token: {what} is not JSON")),
    }
}

/// Check `token` at time `now` (seconds since the epoch).
pub fn check(keys: &KeySet, config: &IdentityConfig, token: &str, now: u64) -> Result<Checked> {
    let token = token.trim();
    if token.is_empty() {
        return reject("empty token");
    }
    if token.len() > config.max_token_bytes {
        return reject(format!("token is {} bytes, more than the {} allowed", token.len(), config.max_token_bytes));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts.as_slice() else {
        return reject(format!("malformed token: expected 3 dot-separated parts, found {}", parts.len()));
    };
    let header = json_object(&b64(header_b64, "header")?, "header")?;

    // --- algorithm: decided before any key is touched.
    let alg_name = match header.get("alg") {
        Some(Value::String(a)) => a.clone(),
        _ => return reject("malformed token: header has no alg"),
    };
    if alg_name.eq_ignore_ascii_case("none") {
        return reject("unsigned token (alg none) is never accepted");
    }
    if alg_name.to_ascii_uppercase().starts_with("HS") {
        return reject(format!(
            "signed with {alg_name}, an HMAC algorithm that is never accepted (only the provider's public keys count)"
        ));
    }
    let alg: CoreJwsSigningAlgorithm = serde_json::from_value(Value::String(alg_name.clone()))
        .map_err(|_| Error::rejected(format!("unknown signing algorithm {alg_name}")))?;
    if !keys.allowed_algs.contains(&alg) {
        return reject(format!(
            "signing algorithm {alg_name} is not one the provider offers (allowed: {})",
            keys.allowed_alg_names().join(", ")
        ));
    }
    if let Some(typ) = header.get("typ") {
        let Some(typ) = typ.as_str().map(str::to_ascii_lowercase) else {
            return reject("malformed token: header typ is not a string");
        };
        if !matches!(typ.as_str(), "jwt" | "at+jwt" | "application/at+jwt" | "application/jwt") {
            return reject(format!("token type {typ:?} is not a JWT or JWT access token"));
        }
    }
    // RFC 7515 §4.1.11: extensions listed in crit must be understood; we understand none.
    if let Some(crit) = header.get("crit") {
        return reject(format!("header marks extensions {crit} as critical (crit); none are supported"));
    }

    // --- key and signature.
    let kid = header.get("kid").and_then(Value::as_str).map(str::to_string);
    let Some((index, key)) = select_key(keys, kid.as_deref(), &alg) else {
        return Ok(Checked::UnknownKey { kid });
    };
    let signature = b64(signature_b64, "signature")?;
    let signed = token.get(..header_b64.len() + 1 + claims_b64.len()).unwrap_or_default();
    let prepared = keys.prepared.get(index).and_then(Option::as_ref);
    if !super::signature::verify(prepared, key, &alg, signed.as_bytes(), &signature) {
        return reject(format!("bad signature (key {})", kid.as_deref().unwrap_or("without kid")));
    }

    // --- claims.
    let claims = json_object(&b64(claims_b64, "claims")?, "claims")?;
    check_claims(&claims, keys, config, now).map(Checked::Valid)
}

/// The key that must have signed the token, with its position in the set.
fn select_key<'k>(
    keys: &'k KeySet,
    kid: Option<&str>,
    alg: &CoreJwsSigningAlgorithm,
) -> Option<(usize, &'k CoreJsonWebKey)> {
    let usable = |(_, k): &(usize, &CoreJsonWebKey)| {
        k.key_use().is_none_or(|u| u.allows_signature())
            && match k.signing_alg() {
                JsonWebKeyAlgorithm::Algorithm(a) => a == alg,
                JsonWebKeyAlgorithm::Unspecified => true,
                JsonWebKeyAlgorithm::Unsupported => false,
            }
    };
    let mut candidates = keys.keys.iter().enumerate().filter(usable);
    match kid {
        Some(kid) => candidates.find(|(_, k)| k.key_id().is_some_and(|id| id.as_str() == kid)),
        // Without a kid, only an unambiguous key will do.
        None => {
            let first = candidates.next()?;
            candidates.next().is_none().then_some(first)
        }
    }
}

fn seconds(claims: &serde_json::Map<String, Value>, name: &str) -> Result<Option<u64>> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or_else(|| Error::rejected(format!("claim {name} is not a time in seconds"))),
        Some(_) => reject(format!("claim {name} is not a number")),
    }
}

fn check_claims(
    claims: &serde_json::Map<String, Value>,
    keys: &KeySet,
    config: &IdentityConfig,
    now: u64,
) -> Result<Identity> {
    let skew = config.skew_secs;
    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == keys.issuer => {}
        Some(iss) => return reject(format!("issued by {iss}, not the trusted issuer {}", keys.issuer)),
        None => return reject("token has no iss"),
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => return reject("token has no aud"),
    };
    if !audiences.iter().any(|a| config.audiences.iter().any(|c| c == a)) {
        return reject(format!("audience {audiences:?} does not include any of {:?}", config.audiences));
    }
    let Some(exp) = seconds(claims, "exp")? else {
        return reject("token has no exp: tokens without expiry are refused");
    };
    if now > exp.saturating_add(skew) {
        return reject(format!("token expired {} s ago", now - exp));
    }
    if let Some(nbf) = seconds(claims, "nbf")?
        && now.saturating_add(skew) < nbf
    {
        return reject(format!("token not valid for another {} s (nbf)", nbf - now));
    }
    if let Some(iat) = seconds(claims, "iat")?
        && iat > now.saturating_add(skew)
    {
        return reject(format!("token issued {} s in the future (iat)", iat - now));
    }
    let subject = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) => return reject("token's sub is empty"),
        None | Some(Value::Null) => return reject("token has no sub"),
        Some(_) => return reject("claim sub is not a string"),
    };
    let groups = groups(claims, &config.groups_claim)?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
    Ok(Identity {
        subject,
        email: text("email"),
        name: text("name"),
        groups,
        issuer: keys.issuer.clone(),
        expires_at: exp,
    })
}

/// Groups from `path` (dots walk into objects): absent = none; a string = one group;
/// a list of strings = those groups; anything else is refused.
fn groups(claims: &serde_json::Map<String, Value>, path: &str) -> Result<Vec<String>> {
    let mut segments = path.split('.');
    let Some(first) = segments.next() else { return Ok(vec![]) };
    let mut value = match claims.get(first) {
        Some(v) => v,
        None => return Ok(vec![]),
    };
    for seg in segments {
        value = match value.get(seg) {
            Some(v) => v,
            None => return Ok(vec![]),
        };
    }
    match value {
        Value::Null => Ok(vec![]),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Error::rejected(format!("groups claim {path} must hold strings, found {}", kind(v))))
            })
            .collect(),
        other => reject(format!("groups claim {path} must be a string or a list of strings, found {}", kind(other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
