//! The HTTP playground (`portcullis dev --http`): the demo API registered as resource
//! `demo-api` with its key as the injected credential, and the harness's direct line to
//! it (curl with the key, and the API's own request log) that HTTP door tests use as
//! their oracle.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::process::{Command, Output, Stdio};

use portcullis_tests::Cluster;
use serde_json::Value;

/// curl straight at the demo API (no gateway); `auth` is an `Authorization` header
/// value, passed through a file so it never shows on a command line.
fn curl_api(cluster: &Cluster, auth: Option<&str>, args: &[&str], path: &str) -> Output {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"]).args(args);
    if let Some(auth) = auth {
        let header = cluster.path().join("curl-auth.header");
        std::fs::write(&header, format!("Authorization: {auth}\n")).unwrap();
        cmd.arg("-H").arg(format!("@{}", header.display()));
    }
    cmd.arg(format!("http://{}{path}", cluster.api_addr())).stdin(Stdio::null()).output().unwrap()
}

/// (status, body) of a curl run with `-w '\n%{http_code}'`.
fn status_and_body(out: &Output) -> (u16, String) {
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_string())
}

#[test]
fn http_playground_registers_demo_api_and_the_api_answers_only_with_its_key() {
    // --- 1. A one-node playground with only the demo API.
    let cluster = Cluster::start_with_http(1);
    let key = cluster.api_key();
    assert!(key.len() >= 32, "a generated key of some length");

    // --- 2. cluster.json lists the resource, the API and the node's HTTP door, never the key.
    let text = std::fs::read_to_string(cluster.path().join("cluster.json")).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    let resources: Vec<&str> = file["resources"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(resources, ["demo-api"], "{file}");
    assert!(cluster.api_addr().starts_with("127.0.0.1:"), "{file}");
    assert!(file["http_api"]["pid"].as_u64().is_some(), "{file}");
    assert!(cluster.http_addr(1).starts_with("127.0.0.1:"), "{file}");
    assert!(!text.contains(&key), "cluster.json must not hold the API key");

    // --- 3. The admin API has it as an http resource with a sealed bearer credential.
    let listing = cluster.cli_ok(1, &["resource", "list", "--json"]);
    assert!(!listing.contains(&key), "resource list leaks the API key");
    let list: Value = serde_json::from_str(&listing).unwrap();
    let demo = list.as_array().unwrap().iter().find(|r| r["name"] == "demo-api").unwrap_or_else(|| panic!("{list}"));
    assert_eq!(demo["protocol"], "http", "{demo}");
    assert_eq!(demo["address"].as_str(), Some(format!("http://{}", cluster.api_addr()).as_str()), "{demo}");
    assert_eq!(demo["options"]["credential"], "bearer", "{demo}");
    assert_eq!(demo["has_secret"], true, "{demo}");
    assert_eq!(demo["username"], Value::Null, "{demo}");
    assert_eq!(demo["audit"], "strict", "{demo}");
    let policies = cluster.cli_ok(1, &["policy", "list"]);
    assert!(policies.contains("demo-api"), "{policies}");

    // --- 4. The API answers with the key, and refuses without it or with another token.
    let before = cluster.api_log().len();
    let (status, body) = status_and_body(&curl_api(&cluster, Some(&format!("Bearer {key}")), &[], "/orders"));
    assert_eq!(status, 200, "{body}");
    let orders: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(orders.as_array().map(Vec::len), Some(10), "{orders}");
    assert!(orders[0]["email"].as_str().unwrap().contains('@'), "{orders}");
    let (status, _) = status_and_body(&curl_api(&cluster, None, &[], "/orders"));
    assert_eq!(status, 401);
    let client_token = cluster.engineer_token();
    let (status, _) = status_and_body(&curl_api(&cluster, Some(&format!("Bearer {client_token}")), &[], "/orders"));
    assert_eq!(status, 401, "a client's own token is not the API's key");
    let sent = r#"{"amount": 42}"#;
    let out = curl_api(&cluster, Some(&format!("Bearer {key}")), &["-X", "POST", "--data-binary", sent], "/echo/x?y=1");
    let (status, body) = status_and_body(&out);
    assert_eq!(status, 200);
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (echo["method"].as_str(), echo["path"].as_str(), echo["body"].as_str()),
        (Some("POST"), Some("/echo/x"), Some(sent))
    );

    // --- 5. Its log records those requests, in order, with where the key was, never the key.
    let log = cluster.api_log();
    let ours = &log[before..];
    let seen: Vec<(&str, &str, &str)> = ours
        .iter()
        .map(|l| (l["method"].as_str().unwrap(), l["path"].as_str().unwrap(), l["credential"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("GET", "/orders", "bearer"),
            ("GET", "/orders", "none"),
            ("GET", "/orders", "other"),
            ("POST", "/echo/x", "bearer")
        ],
        "{ours:?}"
    );
    assert_eq!(ours[3]["query"], "y=1");
    assert_eq!(ours[3]["body_bytes"], sent.len());
    assert_eq!(ours[3]["body_sha256"].as_str().map(str::len), Some(64));
    let logs = cluster.logs_full();
    assert!(!logs.contains(&key), "the API key is in a playground log");
    assert!(!logs.contains(&client_token), "a client token is in a playground log");
}
