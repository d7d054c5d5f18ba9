#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use super::*;

/// An unsigned JWT with `claims` (only the claims matter to the nonce check).
fn jwt(claims: serde_json::Value) -> String {
    format!("{}.{}.sig", B64URL.encode(r#"{"alg":"ES256"}"#), B64URL.encode(claims.to_string()))
}

#[test]
fn the_id_token_must_carry_this_sign_ins_nonce() {
    check_nonce(&jwt(serde_json::json!({"nonce": "n-1"})), "n-1").unwrap();
    let other = check_nonce(&jwt(serde_json::json!({"nonce": "n-2"})), "n-1").unwrap_err().to_string();
    assert!(other.contains("another sign-in"), "{other}");
    let none = check_nonce(&jwt(serde_json::json!({"sub": "bob"})), "n-1").unwrap_err().to_string();
    assert!(none.contains("no nonce"), "{none}");
    for garbage in ["", "abc", "a.!!!.c", &format!("a.{}.c", B64URL.encode("[1]"))] {
        assert!(check_nonce(garbage, "n-1").is_err(), "{garbage:?}");
    }
}

#[test]
fn the_redirect_uri_is_the_public_url_plus_the_callback_path() {
    let identity = IdentityConfig { issuer: "http://127.0.0.1:1/portcullis-dev".into(), ..Default::default() };
    let client = OidcClient::new(&identity, "portcullis-console", "https://127.0.0.1:8443/", "openid").unwrap();
    assert_eq!(client.redirect_uri(), "https://127.0.0.1:8443/auth/callback");
}

#[tokio::test]
async fn an_unreachable_provider_is_named_in_the_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let identity = IdentityConfig { issuer: format!("http://127.0.0.1:{port}/idp"), ..Default::default() };
    let client = OidcClient::new(&identity, "portcullis-console", "https://127.0.0.1:8443", "openid").unwrap();
    let login = StartedLogin { state: "s".into(), nonce: "n".into(), challenge: "c".into(), binding: "b".into() };
    let e = client.authorize_url(&login).await.unwrap_err().to_string();
    assert!(e.contains("cannot reach the identity provider") && e.contains(&port.to_string()), "{e}");
}
