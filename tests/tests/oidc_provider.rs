//! The real third-party OIDC provider harness works: JWT access tokens with the claims
//! Portcullis checks, and key rotation by restart on the same port.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use portcullis_tests::oidc::{AUDIENCE, OTHER_RESOURCE, OidcProvider, decode_jwt};
use serde_json::Value;

fn kids_of(jwks: &Value) -> Vec<String> {
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
}

fn aud_contains(payload: &Value, aud: &str) -> bool {
    match &payload["aud"] {
        Value::String(s) => s == aud,
        Value::Array(a) => a.iter().any(|v| v.as_str() == Some(aud)),
        _ => false,
    }
}

#[test]
fn provider_issues_jwt_access_tokens_and_rotates_keys() {
    let Some(mut idp) = OidcProvider::start() else {
        println!("SKIPPED provider_issues_jwt_access_tokens_and_rotates_keys: oidc-provider cannot start here");
        return;
    };

    let disco = idp.discovery();
    assert_eq!(disco["issuer"].as_str(), Some(idp.issuer.as_str()));
    assert_eq!(kids_of(&idp.jwks()), ["k1"]);

    let token = idp.client_credentials_token("agent", "agent-secret");
    let (header, payload) = decode_jwt(&token);
    println!("header:  {header}\npayload: {payload}");
    assert_eq!(header["kid"], "k1", "{header}");
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(header["alg"], "ES256", "{header}");
    assert_eq!(payload["iss"].as_str(), Some(idp.issuer.as_str()), "{payload}");
    assert!(aud_contains(&payload, AUDIENCE), "{payload}");
    let groups: Vec<&str> = payload["groups"].as_array().unwrap().iter().map(|g| g.as_str().unwrap()).collect();
    assert_eq!(groups, ["engineers", "agents"], "{payload}");
    assert_eq!(payload["sub"], "agent", "{payload}");
    assert_eq!(payload["client_id"], "agent", "{payload}");
    assert!(payload["exp"].as_u64().unwrap() > payload["iat"].as_u64().unwrap(), "{payload}");

    // Another client, another group set; another resource, another audience.
    let (_, p2) = decode_jwt(&idp.client_credentials_token("agent2", "agent2-secret"));
    assert_eq!(p2["groups"], serde_json::json!(["agents"]), "{p2}");
    let (_, other) = decode_jwt(&idp.client_credentials_token_for("agent", "agent-secret", OTHER_RESOURCE));
    assert!(!aud_contains(&other, AUDIENCE) && aud_contains(&other, "other"), "{other}");

    // A wrong secret is refused by the provider.
    let (status, body) = idp.token_request("agent", "wrong", portcullis_tests::oidc::RESOURCE);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client", "{body}");

    // Rotation: the new key signs, both are published; then the old one is retired.
    let port = idp.port();
    idp.rotate_to(&["k2", "k1"]);
    assert_eq!(idp.port(), port);
    let (h2, p2) = decode_jwt(&idp.client_credentials_token("agent", "agent-secret"));
    assert_eq!(h2["kid"], "k2", "{h2}");
    assert_eq!(p2["iss"].as_str(), Some(idp.issuer.as_str()), "{p2}");
    let mut kids = kids_of(&idp.jwks());
    kids.sort();
    assert_eq!(kids, ["k1", "k2"]);
    // The same k1 key material survives the restart (a k1 token stays verifiable).
    let k1_pub = idp.jwks()["keys"].as_array().unwrap().iter().find(|k| k["kid"] == "k1").unwrap().clone();
    assert_eq!(k1_pub["x"], idp.key("k1")["x"]);
    assert!(k1_pub.get("d").is_none(), "private key material published: {k1_pub}");

    idp.rotate_to(&["k2"]);
    assert_eq!(kids_of(&idp.jwks()), ["k2"]);
    let (h3, _) = decode_jwt(&idp.client_credentials_token("agent", "agent-secret"));
    assert_eq!(h3["kid"], "k2", "{h3}");
}
