//! The web console signs people in through a real third-party provider (panva's
//! `oidc-provider`, tests/oidc): authorization code with PKCE, the provider's own login
//! and consent pages, its JWT access token (asked for by resource indicator) verified by
//! the node as the doors verify tokens. The dev issuer's flow is in `console.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Duration;

use portcullis_tests::Cluster;
use portcullis_tests::oidc::OidcProvider;
use reqwest::blocking::{Client, Response};
use reqwest::cookie::Jar;
use reqwest::header::LOCATION;

const READY: Duration = Duration::from_secs(30);

fn location(r: &Response, base: &reqwest::Url) -> reqwest::Url {
    let to = r.headers().get(LOCATION).expect("a Location header").to_str().unwrap();
    base.join(to).unwrap()
}

/// The value of attribute `attr` in the first tag after `marker`.
fn attr_after(html: &str, marker: &str, attr: &str) -> Option<String> {
    let rest = &html[html.find(marker)?..];
    let rest = &rest[rest.find(&format!("{attr}=\""))? + attr.len() + 2..];
    Some(rest[..rest.find('"')?].replace("&amp;", "&"))
}

#[test]
fn an_approver_signs_in_to_the_console_through_a_real_provider_with_pkce() {
    let mut c = Cluster::start(1);
    let console = c.console_url(1);
    let redirect = format!("{console}/auth/callback");
    let Some(provider) = OidcProvider::start_with_env(&[("OIDC_CONSOLE_REDIRECTS", &redirect)]) else {
        println!("SKIPPED: oidc-provider is not installed (run `npm ci` in tests/oidc); CI installs it");
        return;
    };
    // A policy that names `approvers`: they may open the inbox (applied while the
    // playground's own issuer is still the one trusted).
    let policy = c.path().join("reviews.yaml");
    std::fs::write(
        &policy,
        "name: reviews\nrules:\n  - match: { kinds: [delete] }\n    action: review\n    approvers: { groups: [approvers] }\n",
    )
    .unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", policy.to_str().unwrap()]);
    // The node trusts the provider, and its console signs in there as client `console`,
    // asking for the gateway's resource so the access token is a JWT for the nodes.
    c.kill9(1);
    c.edit_config(1, |t| {
        let identity = t.get_mut("identity").unwrap().as_table_mut().unwrap();
        identity.insert("issuer".into(), provider.issuer.clone().into());
        identity.insert("insecure_dev_issuer".into(), false.into());
        let mut console = toml::Table::new();
        console.insert("client_id".into(), "console".into());
        console.insert("scopes".into(), "openid groups email".into());
        console.insert("resource".into(), portcullis_tests::oidc::RESOURCE.into());
        t.insert("console".into(), console.into());
    });
    c.restart(1);
    portcullis_tests::wait_for("node 1 to serve", READY, || (c.readyz(1) == Some(200)).then_some(()));

    let ca = reqwest::Certificate::from_pem(&std::fs::read(c.ca()).unwrap()).unwrap();
    let browser = Client::builder()
        .add_root_certificate(ca)
        .cookie_provider(Arc::new(Jar::default()))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // Console → sign-in → the provider's authorization endpoint, with PKCE.
    let mut url = reqwest::Url::parse(&format!("{console}/approvals")).unwrap();
    let mut authorize = None;
    for _ in 0..3 {
        let r = browser.get(url.clone()).send().unwrap();
        assert_eq!(r.status(), 303, "{url}");
        url = location(&r, &url);
        if url.as_str().starts_with(&provider.issuer) {
            authorize = Some(url.clone());
            break;
        }
    }
    let authorize = authorize.expect("sent to the provider");
    let query: std::collections::HashMap<_, _> = authorize.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["resource"], portcullis_tests::oidc::RESOURCE);
    // The provider's own pages: login as bob, then consent; back to the console.
    let mut page = browser.get(authorize).send().unwrap();
    let mut here = page.url().clone();
    let mut callback = None;
    for _ in 0..12 {
        let status = page.status().as_u16();
        if (300..400).contains(&status) {
            let to = location(&page, &here);
            if to.as_str().starts_with(&format!("{console}/auth/callback")) {
                callback = Some(to);
                break;
            }
            here = to.clone();
            page = browser.get(to).send().unwrap();
            continue;
        }
        let html = page.text().unwrap();
        assert_eq!(status, 200, "{here}: {html}");
        let action = here.join(&attr_after(&html, "<form", "action").expect("a form")).unwrap();
        let form: Vec<(&str, &str)> = if html.contains(r#"name="prompt" value="login""#) {
            vec![("prompt", "login"), ("login", "bob"), ("password", "any")]
        } else if html.contains(r#"name="prompt" value="consent""#) {
            vec![("prompt", "consent")]
        } else {
            panic!("an unexpected page at {here}: {html}\n{}", provider.logs());
        };
        here = action.clone();
        page = browser.post(action).form(&form).send().unwrap();
    }
    let callback = callback.unwrap_or_else(|| panic!("never sent back to the console\n{}", provider.logs()));
    // The console trades the code (with its verifier) and signs bob in.
    let r = browser.get(callback).send().unwrap();
    let status = r.status();
    let landing = r.text().unwrap();
    assert_eq!(status, 200, "{landing}\n{}", c.logs_full());
    assert!(landing.contains("signed in as bob"), "{landing}");
    // bob's groups came with the provider's token: he may open the inbox (approvers).
    let r = browser.get(format!("{console}/approvals")).send().unwrap();
    let status = r.status();
    let inbox = r.text().unwrap();
    assert_eq!(status, 200, "{inbox}");
    assert!(inbox.contains("Approvals") && inbox.contains("bob"), "{inbox}");
    // No token in the node's log.
    assert!(!c.logs_full().contains("eyJ"), "a token reached the node's log");
}
