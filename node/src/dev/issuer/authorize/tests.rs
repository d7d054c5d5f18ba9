#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::Value;

use super::super::{IssuerInfo, ensure_key, router};
use super::origin_of;

const VERIFIER: &str = "a-verifier-of-forty-three-or-more-characters-0123456789";

/// A dev issuer on a random loopback port; its base URL (with the issuer path).
async fn issuer() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let info = IssuerInfo::for_port(listener.local_addr().unwrap().port());
    info.save(dir.path()).unwrap();
    ensure_key(dir.path()).unwrap();
    let app = router(dir.path(), &info).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (dir, info.issuer)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn challenge(verifier: &str) -> String {
    B64URL.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref())
}

fn request_fields(redirect: &str, method: &str) -> Vec<(&'static str, String)> {
    vec![
        ("response_type", "code".into()),
        ("client_id", "console".into()),
        ("redirect_uri", redirect.into()),
        ("state", "s t&ate".into()),
        ("code_challenge", challenge(VERIFIER)),
        ("code_challenge_method", method.into()),
        ("nonce", "n-0S6".into()),
    ]
}

const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// Sign in as `sub` in `groups`: the code the redirect carries.
async fn sign_in(base: &str, sub: &str, groups: &str) -> String {
    let mut form = request_fields(REDIRECT, "S256");
    form.push(("sub", sub.into()));
    form.push(("groups", groups.into()));
    let r = client().post(format!("{base}/authorize")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(to.starts_with(&format!("{REDIRECT}?code=")), "{to}");
    assert!(to.ends_with("&state=s%20t%26ate"), "the state comes back as sent: {to}");
    to.split("code=").nth(1).unwrap().split('&').next().unwrap().to_string()
}

async fn trade(base: &str, code: &str, verifier: &str) -> (u16, Value) {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("client_id", "console"),
        ("code_verifier", verifier),
    ];
    let r = client().post(format!("{base}/token")).form(&form).send().await.unwrap();
    (r.status().as_u16(), serde_json::from_slice(&r.bytes().await.unwrap()).unwrap())
}

fn claims(token: &str) -> Value {
    serde_json::from_slice(&B64URL.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

#[test]
fn only_plain_origins_reach_the_csp() {
    assert_eq!(origin_of("https://127.0.0.1:8443/auth/callback?x=1").as_deref(), Some("https://127.0.0.1:8443"));
    assert_eq!(origin_of("http://[::1]:80/cb").as_deref(), Some("http://[::1]:80"));
    assert_eq!(origin_of("https://127.0.0.1:1;script-src */x"), None);
    assert_eq!(origin_of("javascript://x"), None);
}

#[tokio::test]
async fn a_browser_signs_in_with_pkce_and_gets_tokens_naming_who_it_said() {
    let (_dir, base) = issuer().await;
    let discovery = client().get(format!("{base}/.well-known/openid-configuration")).send().await.unwrap();
    let discovery: Value = serde_json::from_slice(&discovery.bytes().await.unwrap()).unwrap();
    assert_eq!(discovery["token_endpoint"], format!("{base}/token"));
    assert_eq!(discovery["code_challenge_methods_supported"][0], "S256");
    let query: Vec<(&str, String)> = request_fields(REDIRECT, "S256");
    let page = client().get(format!("{base}/authorize")).query(&query).send().await.unwrap();
    assert_eq!(page.status(), 200);
    // Browsers hold the form's redirect to the console to form-action as well.
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert_eq!(csp, "default-src 'none'; form-action 'self' http://127.0.0.1:9");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"name="sub""#) && html.contains(r#"name="groups""#), "{html}");
    assert!(html.contains("s t&amp;ate"), "the request's fields are carried along, escaped: {html}");
    let code = sign_in(&base, "bob", "approvers, auditors").await;
    let (status, tokens) = trade(&base, &code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    let access = claims(tokens["access_token"].as_str().unwrap());
    assert_eq!((access["sub"].as_str(), access["aud"].as_str()), (Some("bob"), Some("portcullis")));
    assert_eq!(access["groups"], serde_json::json!(["approvers", "auditors"]));
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!((id["aud"].as_str(), id["nonce"].as_str()), (Some("console"), Some("n-0S6")));
    // A code is good once.
    let (status, again) = trade(&base, &code, VERIFIER).await;
    assert_eq!((status, again["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test]
async fn a_wrong_verifier_spends_the_code_and_gets_nothing() {
    let (_dir, base) = issuer().await;
    let code = sign_in(&base, "mallory", "admin").await;
    let (status, body) = trade(&base, &code, "another-verifier-of-forty-three-or-more-characters-xx").await;
    assert_eq!(status, 400);
    assert!(body["error_description"].as_str().unwrap().contains("code_verifier"), "{body}");
    let (status, _) = trade(&base, &code, VERIFIER).await;
    assert_eq!(status, 400, "the code was spent by the failed try");
}

#[tokio::test]
async fn codes_go_only_to_loopback_and_only_with_s256() {
    let (_dir, base) = issuer().await;
    for (redirect, method, why) in [
        ("https://evil.example/cb", "S256", "loopback"),
        ("http://127.0.0.1.evil.example/cb", "S256", "loopback"),
        ("http://user@127.0.0.1/cb", "S256", "loopback"),
        (REDIRECT, "plain", "S256"),
    ] {
        let mut form = request_fields(redirect, method);
        form.push(("sub", "alice".into()));
        let r = client().post(format!("{base}/authorize")).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 400, "{redirect} {method}");
        let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert!(body["error_description"].as_str().unwrap().contains(why), "{body}");
    }
}
