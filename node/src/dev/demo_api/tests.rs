#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
//! The demo API over real HTTP on a port-0 listener: the key gate, the routes, the
//! streams, and a request log that records everything and never the key.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::credential::find as credential;
use super::log::KEY_MARK;
use super::{Accept, Credential, DemoApi, RequestLog, query_pairs, serve};

const KEY: &str = "demo_0123456789abcdef";

/// A running demo API: its base URL and request log; stopped when dropped.
struct Api {
    base: String,
    log: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Api {
    async fn start(accept: Accept) -> Api {
        static N: AtomicU32 = AtomicU32::new(0);
        let log = std::env::temp_dir().join(format!(
            "portcullis-demo-api-test-{}-{}.log",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let api = DemoApi::new(KEY.into(), RequestLog::open(&log, KEY).unwrap(), accept);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, api, async move {
            let _ = stopped.await;
        }));
        Api { base, log, stop: Some(stop) }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the key as a bearer token.
    fn authed(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new().request(method, self.url(path)).bearer_auth(KEY)
    }

    async fn json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.authed(method, path);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    fn log_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

#[tokio::test]
async fn requests_without_the_key_get_401_and_are_still_on_record() {
    let api = Api::start(Accept::Bearer).await;
    let client = reqwest::Client::new();
    let none = client.get(api.url("/orders")).send().await.unwrap();
    assert_eq!(none.status().as_u16(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    assert_eq!(none.headers()["content-type"], "application/problem+json");
    let wrong = client.get(api.url("/orders")).bearer_auth("someone-elses-token").send().await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    // Accept::Bearer: the key anywhere else does not count.
    let in_query = client.get(api.url(&format!("/orders?api_key={KEY}"))).send().await.unwrap();
    assert_eq!(in_query.status().as_u16(), 401);

    let lines = api.log_lines();
    let credentials: Vec<&str> = lines.iter().map(|l| l["credential"].as_str().unwrap()).collect();
    assert_eq!(credentials, ["none", "other", "query:api_key"]);
    assert!(lines.iter().all(|l| l["path"] == "/orders" && l["method"] == "GET"));
    let text = api.log_text();
    assert!(!text.contains(KEY), "the key is never written: {text}");
    assert!(!text.contains("someone-elses-token"), "another credential shows as a digest only: {text}");
    assert!(text.contains("Bearer [other sha256:"), "{text}");
    assert_eq!(lines[2]["query"], format!("api_key={KEY_MARK}"));
}

#[tokio::test]
async fn orders_can_be_listed_read_created_changed_refunded_and_deleted() {
    let api = Api::start(Accept::Bearer).await;
    use reqwest::Method;
    let (status, list) = api.json(Method::GET, "/orders", None).await;
    assert_eq!(status, 200);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 10);
    for field in ["id", "customer", "email", "amount", "status"] {
        assert!(list.iter().all(|o| o.get(field).is_some()), "every order has {field}");
    }
    let (status, order) = api.json(Method::GET, "/orders/3", None).await;
    assert_eq!((status, order["id"].as_u64()), (200, Some(3)));
    assert_eq!(api.json(Method::GET, "/orders/99", None).await.0, 404);

    let new = json!({"customer": "Radia Perlman", "email": "radia@example.com", "amount": 77.5});
    let (status, created) = api.json(Method::POST, "/orders", Some(new)).await;
    assert_eq!(status, 201);
    assert_eq!(created["id"], 11);
    assert_eq!(created["status"], "pending");
    assert_eq!(created["email"], "radia@example.com");
    let (status, _) = api.json(Method::POST, "/orders", Some(json!({"customer": "x"}))).await;
    assert_eq!(status, 422, "a missing field is refused");
    let (status, _) = api.json(Method::POST, "/orders", Some(json!({"custmer": "x"}))).await;
    assert_eq!(status, 400, "an unknown field is refused");

    let (status, patched) = api.json(Method::PATCH, "/orders/11", Some(json!({"status": "paid"}))).await;
    assert_eq!(
        (status, patched["status"].as_str(), patched["customer"].as_str()),
        (200, Some("paid"), Some("Radia Perlman"))
    );
    let replacement = json!({"customer": "R. Perlman", "email": "rp@example.com", "amount": 80});
    let (status, put) = api.json(Method::PUT, "/orders/11", Some(replacement)).await;
    assert_eq!((status, put["customer"].as_str(), put["amount"].as_f64()), (200, Some("R. Perlman"), Some(80.0)));

    let (status, refund) = api.json(Method::POST, "/orders/11/refund", Some(json!({"amount": 30}))).await;
    assert_eq!(status, 200);
    assert_eq!(refund["order"]["status"], "partially_refunded");
    let (status, _) = api.json(Method::POST, "/orders/11/refund", Some(json!({"amount": 60}))).await;
    assert_eq!(status, 422, "more than is left is refused");
    let (_, refund) = api.json(Method::POST, "/orders/11/refund", Some(json!({"amount": 50}))).await;
    assert_eq!(refund["order"]["status"], "refunded");

    let (status, deleted) = api.json(Method::DELETE, "/orders/11", None).await;
    assert_eq!((status, deleted["deleted"].as_u64()), (200, Some(11)));
    assert_eq!(api.json(Method::GET, "/orders/11", None).await.0, 404);
    assert_eq!(api.json(Method::DELETE, "/orders/11", None).await.0, 404);
}

#[tokio::test]
async fn profile_holds_values_the_detectors_mask() {
    let api = Api::start(Accept::Bearer).await;
    let (status, profile) = api.json(reqwest::Method::GET, "/profile", None).await;
    assert_eq!(status, 200);
    assert!(profile["email"].as_str().unwrap().contains('@'));
    assert!(profile["api_token"].as_str().unwrap().starts_with("sk_live_"));
    assert!(profile["session"].as_str().unwrap().starts_with("eyJ"));
    assert_ne!(profile["api_token"], KEY);
}

#[tokio::test]
async fn echo_returns_what_arrived_and_the_log_records_its_digest() {
    let api = Api::start(Accept::Bearer).await;
    let body = r#"{"amount": 12}"#;
    let response = api
        .authed(reqwest::Method::PUT, "/echo/a/b?x=1&y=two")
        .header("x-trace", "t-1")
        .header("x-trace", "t-2")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let echo: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/echo/a/b");
    assert_eq!(echo["query"], "x=1&y=two");
    assert_eq!(echo["body"], body);
    let headers = echo["headers"].as_array().unwrap();
    let values =
        |name: &str| -> Vec<&str> { headers.iter().filter(|h| h[0] == name).map(|h| h[1].as_str().unwrap()).collect() };
    assert_eq!(values("x-trace"), ["t-1", "t-2"], "duplicates kept, in order");
    assert_eq!(values("authorization"), [format!("Bearer {KEY}")], "the echo is the credential oracle");

    let lines = api.log_lines();
    let line = &lines[0];
    assert_eq!((line["method"].as_str(), line["path"].as_str()), (Some("PUT"), Some("/echo/a/b")));
    assert_eq!(line["credential"], "bearer");
    assert_eq!(line["body_bytes"], body.len());
    assert_eq!(line["body_sha256"], super::log::sha256_hex(body.as_bytes()));
    assert!(line["time_ms"].as_u64().unwrap() > 1_700_000_000_000);
    let logged: Vec<&Value> = line["headers"].as_array().unwrap().iter().filter(|h| h[0] == "authorization").collect();
    assert_eq!(logged[0][1], format!("Bearer {KEY_MARK}"));
    assert!(!api.log_text().contains(KEY));
}

#[tokio::test]
async fn events_are_sent_as_they_are_produced() {
    let api = Api::start(Accept::Bearer).await;
    // The second event is a minute away: the first must arrive on its own.
    let mut response = api.authed(reqwest::Method::GET, "/events?n=2&every_ms=60000").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let first = response.chunk().await.unwrap().unwrap();
    let first = String::from_utf8(first.to_vec()).unwrap();
    assert!(first.starts_with("id: 1\nevent: order\ndata: {"), "{first:?}");
    assert!(first.ends_with("\n\n") && !first.contains("id: 2"), "{first:?}");
    let data: Value = serde_json::from_str(first.lines().nth(2).unwrap().trim_start_matches("data: ")).unwrap();
    assert_eq!((data["seq"].as_u64(), data["of"].as_u64()), (Some(1), Some(2)));

    let all = api.authed(reqwest::Method::GET, "/events?n=3&every_ms=1").send().await.unwrap().text().await.unwrap();
    assert_eq!(all.matches("event: order\n").count(), 3, "{all}");
    let bad = api.authed(reqwest::Method::GET, "/events?n=lots").send().await.unwrap();
    assert_eq!(bad.status().as_u16(), 400);
}

#[tokio::test]
async fn big_bodies_have_exactly_the_bytes_asked_for() {
    let api = Api::start(Accept::Bearer).await;
    for (query, length) in [("bytes=200000", Some("200000")), ("bytes=65536&chunked=1", None), ("bytes=0", Some("0"))] {
        let response = api.authed(reqwest::Method::GET, &format!("/big?{query}")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{query}");
        assert_eq!(response.headers().get("content-length").map(|v| v.to_str().unwrap()), length, "{query}");
        if length.is_none() {
            assert_eq!(response.headers()["transfer-encoding"], "chunked");
        }
        let want: usize = query.trim_start_matches("bytes=").split('&').next().unwrap().parse().unwrap();
        assert_eq!(response.bytes().await.unwrap().len(), want, "{query}");
    }
}

#[tokio::test]
async fn accept_any_takes_the_key_as_basic_password_header_or_query() {
    let api = Api::start(Accept::Any).await;
    let client = reqwest::Client::new();
    let basic = client.get(api.url("/orders/1")).basic_auth("svc", Some(KEY)).send().await.unwrap();
    let header = client.get(api.url("/orders/1")).header("X-Api-Key", KEY).send().await.unwrap();
    let query = client.get(api.url(&format!("/orders/1?token={KEY}"))).send().await.unwrap();
    let none = client.get(api.url("/orders/1")).send().await.unwrap();
    let statuses = [basic.status(), header.status(), query.status(), none.status()].map(|s| s.as_u16());
    assert_eq!(statuses, [200, 200, 200, 401]);
    let credentials: Vec<String> =
        api.log_lines().iter().map(|l| l["credential"].as_str().unwrap().to_string()).collect();
    assert_eq!(credentials, ["basic:svc", "header:x-api-key", "query:token", "none"]);
    let text = api.log_text();
    assert!(!text.contains(KEY) && text.contains("Basic [svc:demo-api key]"), "{text}");
}

#[test]
fn credential_is_found_where_it_is_and_only_whole() {
    let headers = |pairs: &[(&'static str, &str)]| {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    };
    let key = "k3y";
    assert_eq!(credential(key, &headers(&[("authorization", "Bearer k3y")]), None), Credential::Bearer);
    assert_eq!(credential(key, &headers(&[("authorization", "bearer  k3y ")]), None), Credential::Bearer);
    assert_eq!(credential(key, &headers(&[("authorization", "Bearer k3yy")]), None), Credential::Other);
    assert_eq!(credential(key, &headers(&[("x-key", "k3y")]), None), Credential::Header("x-key".into()));
    assert_eq!(credential(key, &headers(&[]), Some("a=1&key=k3y")), Credential::Query("key".into()));
    assert_eq!(credential(key, &headers(&[]), Some("a=k3y2")), Credential::None);
}

#[test]
fn query_pairs_decode_escapes_and_keep_bad_ones() {
    assert_eq!(
        query_pairs("n=5&every_ms=100&x=a%20b+c&bad=%zz&flag"),
        [("n", "5"), ("every_ms", "100"), ("x", "a b c"), ("bad", "%zz"), ("flag", "")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );
}
