//! The HTTP door end to end: real node processes, the playground's demo API as the
//! backend (its own request log is the oracle of what reached it), real clients (curl
//! over HTTP/1.1 and HTTP/2, Python's requests and httpx, raw bytes over TLS).
//! The demo-api policy: engineers may GET; POST/PUT/PATCH wait for an approver; DELETE
//! is denied; emails, API keys and JWTs in responses are masked.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use portcullis_tests::{Cluster, err, wait_for};
use serde_json::Value;

const READY: Duration = Duration::from_secs(30);

/// curl through node `id`'s door; the token goes in a header file, never on a command
/// line. Returns (status, body).
fn curl(c: &Cluster, id: u64, token: &str, args: &[&str], path: &str) -> (u16, String) {
    let o = curl_cmd(c, id, token, args, path).stdin(Stdio::null()).output().unwrap();
    assert!(o.status.success(), "curl failed: {}", err(&o));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_string())
}

fn curl_cmd(c: &Cluster, id: u64, token: &str, args: &[&str], path: &str) -> Command {
    let header = c.path().join(format!("auth-{}.header", std::process::id()));
    std::fs::write(&header, format!("Authorization: Bearer {token}\n")).unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "60", "-w", "\n%{http_code}", "--cacert"])
        .arg(c.path().join("ca.pem"))
        .arg("-H")
        .arg(format!("@{}", header.display()))
        .args(args)
        .arg(format!("https://{}{path}", c.http_addr(id)));
    cmd
}

fn spawn_curl(c: &Cluster, id: u64, token: &str, args: &[&str], path: &str) -> Child {
    curl_cmd(c, id, token, args, path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn status_of(o: &Output) -> u16 {
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    text.rsplit_once('\n').map(|(_, s)| s.trim().parse().unwrap_or(0)).unwrap_or(0)
}

/// Requests the demo API received whose path and method match.
fn reached(c: &Cluster, method: &str, path_start: &str) -> Vec<Value> {
    c.api_log()
        .into_iter()
        .filter(|l| l["method"] == method && l["path"].as_str().unwrap().starts_with(path_start))
        .collect()
}

fn pending(c: &Cluster, via: u64, token: &str) -> Vec<Value> {
    let o = c.cli_as(via, Some(token), &["approvals", "list", "--pending", "--json"]);
    if !o.status.success() {
        return vec![];
    }
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array().cloned().or_else(|| v["approvals"].as_array().cloned()).unwrap_or_default()
}

fn held(c: &Cluster, via: u64, token: &str, marker: &str) -> String {
    let a = wait_for(&format!("{marker} to be held"), READY, || {
        pending(c, via, token).into_iter().find(|a| a["action"].as_str().is_some_and(|t| t.contains(marker)))
    });
    a["id"].as_str().unwrap().to_string()
}

/// Every event of `resource`'s sessions, as `sessions export --json` gives them.
fn recorded_events(c: &Cluster, resource: &str) -> Vec<Value> {
    let export = c.cli_ok(1, &["sessions", "export", "--json", "--resource", resource]);
    export
        .lines()
        .filter(|l| !l.trim().is_empty())
        .flat_map(|l| serde_json::from_str::<Value>(l).unwrap()["events"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn python() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap();
    let python = cache.join("portcullis-ci/drivers/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/install-deps.sh", python.display());
    python
}

#[test]
fn clients_read_through_every_node_with_the_credential_injected_and_the_token_kept_back() {
    let c = Cluster::start_with_http(3);
    let token = c.engineer_token();
    for node in 1..=3 {
        let (status, body) = curl(&c, node, &token, &[], "/r/demo-api/orders");
        assert_eq!(status, 200, "node {node}: {body}");
        let orders: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(orders.as_array().map(Vec::len), Some(10), "{body}");
        assert!(!body.contains("@example.com") || body.contains("***@"), "emails come back masked: {body}");
    }
    let o = curl_cmd(
        &c,
        2,
        &token,
        &["--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}"],
        "/r/demo-api/orders",
    )
    .output()
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "2 200", "HTTP/2 by ALPN: {}", err(&o));
    // The backend saw its own key, never the client's token; the client never sees the key.
    let (status, body) = curl(&c, 1, &token, &[], "/r/demo-api/echo/hello?x=1");
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains(&c.api_key()), "the backend's credential came back to the client: {body}");
    let echo = reached(&c, "GET", "/echo/hello");
    assert_eq!(echo.len(), 1, "{echo:?}");
    assert_eq!(echo[0]["credential"], "bearer", "the injected credential: {}", echo[0]);
    let log = std::fs::read_to_string(c.path().join("demo-api-requests.log")).unwrap_or_default();
    assert!(!log.contains(&token), "the client's token reached the backend");
    let headers = echo[0]["headers"].to_string();
    assert!(headers.contains("x-forwarded-for") && headers.contains("x-forwarded-proto"), "{headers}");
    // Python clients, HTTP/1.1 (requests) and HTTP/2 (httpx).
    let script = format!(
        "import requests, httpx, sys\n\
         url = 'https://{addr}/r/demo-api/orders/3'\n\
         h = {{'Authorization': 'Bearer ' + sys.stdin.read().strip()}}\n\
         r = requests.get(url, headers=h, verify='{ca}')\n\
         x = httpx.Client(http2=True, verify='{ca}').get(url, headers=h)\n\
         print(r.status_code, r.json()['id'], x.status_code, x.http_version, x.json()['id'])\n",
        addr = c.http_addr(3),
        ca = c.path().join("ca.pem").display()
    );
    let mut child = Command::new(python())
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "200 3 200 HTTP/2 3", "{}", err(&o));
    // Every request is on record.
    let export = c.cli_ok(1, &["sessions", "export", "--json", "--resource", "demo-api"]);
    assert!(export.contains("GET /orders") && export.contains("GET /echo/hello?x=1"), "{export}");
    // Request and response heads are on record too, credentials hidden: never the
    // client's token, never the backend's key.
    assert!(!export.contains(&token) && !export.contains(&c.api_key()), "a credential in the record");
    assert!(export.contains(r#"["authorization","***"]"#), "the request's headers: {export}");
    assert!(export.contains(r#"["content-type","application/json"]"#), "the response's headers: {export}");
}

#[test]
fn haproxy_in_front_carries_https_to_a_serving_node() {
    let c = Cluster::start_with(3, &["--http", "--lb"]);
    let token = c.engineer_token();
    let cluster: Value =
        serde_json::from_str(&std::fs::read_to_string(c.path().join("cluster.json")).unwrap()).unwrap();
    let lb = cluster["lb"]["http"].as_str().unwrap_or_else(|| panic!("no lb.http in {cluster}")).to_string();
    let header = c.path().join("lb-auth.header");
    std::fs::write(&header, format!("Authorization: Bearer {token}\n")).unwrap();
    // TLS passes through HAProxy: the client checks the node's certificate.
    for round in 0..3 {
        let o = Command::new("curl")
            .args(["-sS", "--max-time", "30", "-w", "\n%{http_code}", "--cacert"])
            .arg(c.path().join("ca.pem"))
            .arg("-H")
            .arg(format!("@{}", header.display()))
            .arg(format!("https://{lb}/r/demo-api/orders"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let (body, status) = text.rsplit_once('\n').unwrap_or_else(|| panic!("round {round}: {}", err(&o)));
        assert_eq!(status.trim(), "200", "round {round}: {body} {}", err(&o));
        let orders: Value = serde_json::from_str(body).unwrap();
        assert_eq!(orders.as_array().map(Vec::len), Some(10), "{body}");
    }
    assert_eq!(reached(&c, "GET", "/orders").len(), 3, "every request through the LB reached the API");
}

#[test]
fn a_held_request_approved_through_another_node_is_relayed_exactly_once() {
    let c = Cluster::start_with_http(3);
    let token = c.engineer_token();
    let bob = c.token("bob", &["approvers"]);
    let marker = format!("held-{}", std::process::id());
    let body = format!(r#"{{"customer":"{marker}","email":"x@example.com","amount":5}}"#);
    let child = spawn_curl(
        &c,
        1,
        &token,
        &["-X", "POST", "-H", "content-type: application/json", "-d", &body],
        "/r/demo-api/orders",
    );
    let id = held(&c, 2, &bob, &marker);
    assert!(reached(&c, "POST", "/orders").is_empty(), "it reached the backend before the approval");
    let o = c.cli_as(3, Some(&bob), &["approvals", "approve", &id]);
    assert!(o.status.success(), "{}", err(&o));
    let o = child.wait_with_output().unwrap();
    assert_eq!(status_of(&o), 201, "{} {}", String::from_utf8_lossy(&o.stdout), err(&o));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(reached(&c, "POST", "/orders").len(), 1, "relayed exactly once");
}

#[test]
fn deny_expiry_and_a_client_gone_while_held_never_reach_the_backend() {
    let c = Cluster::start_with_http(1);
    let token = c.engineer_token();
    let bob = c.token("bob", &["approvers"]);
    let (status, body) = curl(&c, 1, &token, &["-X", "DELETE"], "/r/demo-api/orders/2");
    assert_eq!(status, 403, "{body}");
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["status"], 403);
    assert!(problem["detail"].as_str().unwrap().contains("demo-api/"), "names the rule: {problem}");
    assert!(reached(&c, "DELETE", "/orders").is_empty());
    // Nobody decides within a short review's timeout: 403 naming the expiry.
    let policy = c.path().join("short.yaml");
    std::fs::write(
        &policy,
        "name: short\nrules:\n  - match: { resources: [demo-api], kinds: [put], paths: [\"/orders/9\"] }\n    \
         action: review\n    approvers: { groups: [approvers] }\n    timeout: 2s\n",
    )
    .unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", policy.to_str().unwrap()]);
    let started = Instant::now();
    let (status, body) = curl(
        &c,
        1,
        &token,
        &["-X", "PUT", "-H", "content-type: application/json", "-d", r#"{"status":"late"}"#],
        "/r/demo-api/orders/9",
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("expired"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    assert!(reached(&c, "PUT", "/orders").is_empty(), "the expired request reached the backend");
    // A client that goes away while held withdraws the approval.
    let marker = format!("gone-{}", std::process::id());
    let mut child = spawn_curl(
        &c,
        1,
        &token,
        &["-X", "PATCH", "-H", "content-type: application/json", "-d", &format!(r#"{{"status":"{marker}"}}"#)],
        "/r/demo-api/orders/4",
    );
    let id = held(&c, 1, &bob, &marker);
    child.kill().unwrap();
    let _ = child.wait();
    wait_for("the approval to be withdrawn", READY, || {
        let o = c.cli_as(1, Some(&bob), &["approvals", "list", "--json"]);
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        (text.contains(&id) && !pending(&c, 1, &bob).iter().any(|a| a["id"] == id.as_str())).then_some(())
    });
    let o = c.cli_as(1, Some(&bob), &["approvals", "approve", &id]);
    assert!(!o.status.success(), "a withdrawn approval was approved");
    assert!(reached(&c, "PATCH", "/orders").is_empty(), "the abandoned request reached the backend");
    // The abandoned request is on record as refused, naming its approval.
    let export = wait_for("the refusal of the abandoned request", READY, || {
        let text = c.cli_ok(1, &["sessions", "export", "--json", "--resource", "demo-api"]);
        text.contains("client went away").then_some(text)
    });
    assert!(export.contains(&id), "{export}");
}

#[test]
fn a_request_that_will_not_wait_gets_202_and_its_approval_releases_exactly_that_request_once() {
    let c = Cluster::start_with_http(3);
    let token = c.engineer_token();
    let bob = c.token("bob", &["approvers"]);
    let marker = format!("async-{}", std::process::id());
    let body = format!(r#"{{"customer":"{marker}","email":"a@example.com","amount":7}}"#);
    let post = |via: u64, who: &str, extra: &[&str], body: &str| {
        let mut args = vec!["-X", "POST", "-H", "content-type: application/json", "-d", body];
        args.extend_from_slice(extra);
        curl(&c, via, who, &args, "/r/demo-api/orders")
    };
    // The demo API logs each body's digest.
    let digest = sha256_hex(body.as_bytes());
    let ours = || reached(&c, "POST", "/orders").into_iter().filter(|l| l["body_sha256"] == digest.as_str()).count();
    // It will not wait: 202 names the approval and where to see it; nothing runs.
    let (status, text) = post(1, &token, &["-H", "Prefer: respond-async"], &body);
    assert_eq!(status, 202, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    let id = answer["approval"].as_str().unwrap().to_string();
    assert_eq!(answer["status_url"], format!("/approvals/{id}"));
    assert_eq!(answer["retry"]["header"], "Portcullis-Approval");
    let with_approval = format!("Portcullis-Approval: {id}");
    // Repeated before a decision: refused, and still nothing reached the backend.
    let (status, text) = post(2, &token, &["-H", &with_approval], &body);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("not decided yet"), "{text}");
    let (status, text) = curl(&c, 3, &token, &[], &format!("/approvals/{id}"));
    assert_eq!((status, serde_json::from_str::<Value>(&text).unwrap()["status"].clone()), (200, "pending".into()));
    assert_eq!(ours(), 0);
    // Its node need not be there: approved through node 2, used through node 3.
    let o = c.cli_as(2, Some(&bob), &["approvals", "approve", &id]);
    assert!(o.status.success(), "{}", err(&o));
    let (_, text) = curl(&c, 3, &token, &[], &format!("/approvals/{id}?wait=10"));
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["status"], "approved", "{text}");
    // It covers exactly that request: another body is refused.
    let other = body.replace(":7}", ":7000}");
    let (status, text) = post(3, &token, &["-H", &with_approval], &other);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("covers another request"), "{text}");
    // Somebody else cannot use it.
    let carol = c.token("carol", &["engineers"]);
    let (status, text) = post(3, &carol, &["-H", &with_approval], &body);
    assert_eq!(status, 403, "{text}");
    // The same request is relayed once, then the approval is used up.
    let (status, text) = post(3, &token, &["-H", &with_approval], &body);
    assert_eq!(status, 201, "{text}");
    let (status, text) = post(1, &token, &["-H", &with_approval], &body);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("already used"), "{text}");
    assert_eq!(ours(), 1, "relayed exactly once");
    let (_, text) = curl(&c, 1, &token, &[], &format!("/approvals/{id}"));
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["status"], "used", "{text}");
    // Nobody else learns of it.
    let (status, _) = curl(&c, 1, &carol, &[], &format!("/approvals/{id}"));
    assert_eq!(status, 404);
    // The record says what happened: deferred, then relayed with the approval.
    let export = c.cli_ok(1, &["sessions", "export", "--json", "--resource", "demo-api"]);
    assert!(export.contains(&format!("waiting for approval {id}")), "{export}");
    assert!(export.contains("\"approved\""), "{export}");
}

#[test]
fn smuggling_and_oversized_requests_are_refused_and_reach_no_backend() {
    let c = Cluster::start_with_http(1);
    let token = c.engineer_token();
    let (host, port) = {
        let addr = c.http_addr(1);
        let (h, p) = addr.rsplit_once(':').unwrap();
        (h.to_string(), p.to_string())
    };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/raw_http.py");
    let raw = |request: String| -> String {
        let mut child = Command::new(python())
            .arg(&script)
            .args([&host, &port, c.path().join("ca.pem").to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(request.as_bytes()).unwrap();
        let o = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let head = |extra: &str| {
        format!("POST /r/demo-api/echo/smuggle HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n{extra}")
    };
    for attempt in [
        head("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        head("Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"),
        head("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"),
        head("Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        head("X-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
        head("Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
        head("Content-Length: -1\r\n\r\n"),
    ] {
        let status = raw(attempt.clone());
        assert!(status.contains(" 400") || status == "(closed)", "{attempt:?} got {status}");
    }
    assert!(reached(&c, "POST", "/echo/smuggle").is_empty(), "a smuggling attempt reached the backend");
    // Too many or too large headers: 431; too large a body: 413.
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let status =
        raw(format!("GET /r/demo-api/orders HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n{many}\r\n"));
    assert!(status.contains(" 431"), "{status}");
    let status = raw(head(&format!("Content-Length: {}\r\n\r\nabc", 11 << 20)).replace("echo/smuggle", "echo/big"));
    assert!(status.contains(" 413"), "{status}");
    assert!(reached(&c, "POST", "/echo/big").is_empty());
}

#[test]
fn server_sent_events_stream_through_as_they_are_produced() {
    let c = Cluster::start_with_http(1);
    let token = c.engineer_token();
    let started = Instant::now();
    let mut child = spawn_curl(&c, 1, &token, &["-N"], "/r/demo-api/events?n=4&every_ms=700");
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    use std::io::Read;
    stdout.read_exact(&mut first).unwrap();
    let first_at = started.elapsed();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let _ = child.wait();
    let all_at = started.elapsed();
    assert!(all_at >= Duration::from_millis(2000), "the stream took {all_at:?}");
    assert!(
        first_at + Duration::from_millis(1500) < all_at,
        "the first event waited for the rest: {first_at:?} of {all_at:?}"
    );
    assert!(rest.contains("data:"), "{rest}");
}

#[test]
fn with_the_quorum_gone_every_request_gets_503_and_nothing_reaches_the_backend() {
    let mut c = Cluster::start_with_http(3);
    let token = c.engineer_token();
    assert_eq!(curl(&c, 1, &token, &[], "/r/demo-api/orders/1").0, 200);
    c.kill9(2);
    c.kill9(3);
    wait_for("node 1 to stop serving", Duration::from_secs(10), || (c.readyz(1) == Some(503)).then_some(()));
    let before = c.api_log().len();
    let (status, body) = curl(&c, 1, &token, &["-i"], "/r/demo-api/orders/1");
    assert_eq!(status, 503, "{body}");
    assert!(body.to_lowercase().contains("retry-after") && body.contains("quorum lease"), "{body}");
    assert_eq!(c.api_log().len(), before, "a request reached the backend without the quorum");
}

/// SHA-256 of `bytes` in hex, by `sha256sum` (what the demo API logs as `body_sha256`).
fn sha256_hex(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let o = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap().to_string()
}

#[test]
fn json_body_conditions_decide_on_the_bytes_relayed_and_duplicate_keys_never_pass() {
    let c = Cluster::start_with_http(1);
    let token = c.engineer_token();
    // Replace the demo policy: small orders are allowed, large ones denied.
    let policy = c.path().join("orders-json.yaml");
    std::fs::write(
        &policy,
        r#"name: demo-api
rules:
  - name: small-orders
    match: { groups: [engineers], resources: [demo-api], kinds: [post], paths: [/orders], json: { "/amount": "<=1000" } }
    action: allow
  - name: large-orders
    match: { resources: [demo-api], kinds: [post], json: { "/amount": ">1000" } }
    action: deny
    reason: orders over 1000 need finance
"#,
    )
    .unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", policy.to_str().unwrap()]);
    let post = |body: &str| {
        curl(
            &c,
            1,
            &token,
            &["-X", "POST", "-H", "content-type: application/json", "--data-binary", body],
            "/r/demo-api/orders",
        )
    };
    // Amount 10: allowed, and the backend got exactly the bytes policy read.
    let small = r#"{"customer":"json-small","email":"s@example.com","amount":10}"#;
    let (status, body) = post(small);
    assert_eq!(status, 201, "{body}");
    let orders = reached(&c, "POST", "/orders");
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert_eq!(orders[0]["body_sha256"], sha256_hex(small.as_bytes()), "{}", orders[0]);
    // Amount 5000, a duplicate key hiding it, a numeric string, a form body, trailing
    // data: denied (the last three are unreadable as one JSON document: in doubt, the
    // deny rule matches and the allow rule does not).
    for attempt in [
        r#"{"customer":"json-large","email":"l@example.com","amount":5000}"#,
        r#"{"customer":"json-dup","email":"d@example.com","amount":10,"amount":5000}"#,
        r#"{"customer":"json-dup2","email":"d@example.com","amount":5000,"am\u006funt":10}"#,
        r#"{"customer":"json-str","email":"t@example.com","amount":"5000"}"#,
        "customer=json-form&amount=5000",
        r#"{"customer":"json-two","email":"w@example.com","amount":10} {"amount":5000}"#,
    ] {
        let (status, body) = post(attempt);
        assert_eq!(status, 403, "{attempt}: {body}");
        let problem: Value = serde_json::from_str(&body).unwrap();
        assert!(problem["detail"].as_str().unwrap().contains("need finance"), "{attempt}: {problem}");
    }
    // Without an amount neither rule matches: denied by default.
    let (status, body) = post(r#"{"customer":"json-none","email":"n@example.com"}"#);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("no policy rule allows"), "{body}");
    assert_eq!(reached(&c, "POST", "/orders").len(), 1, "only the small order reached the backend");
    let export = c.cli_ok(1, &["sessions", "export", "--json", "--resource", "demo-api"]);
    assert!(export.contains("demo-api/small-orders") && export.contains("demo-api/large-orders"), "{export}");
}

#[test]
fn a_host_under_the_base_domain_names_the_resource_and_http_limits_come_from_the_config() {
    let mut c = Cluster::start_with_http(1);
    let token = c.engineer_token();
    c.edit_config(1, |t| {
        let mut http = toml::Table::new();
        http.insert("base_domain".into(), "gw.example".into());
        t.insert("http".into(), http.into());
        let limits = t.get_mut("limits").and_then(|l| l.as_table_mut()).unwrap();
        assert_eq!(limits["http_max_body_bytes"].as_integer(), Some(10 << 20), "the default");
        limits.insert("http_max_body_bytes".into(), 1000.into());
    });
    c.kill9(1);
    c.restart(1);
    wait_for("node 1 to serve again", READY, || (c.readyz(1) == Some(200)).then_some(()));
    // By Host: the path goes to the backend as it is.
    let host = ["--http1.1", "-H", "Host: demo-api.gw.example"];
    let (status, body) = curl(&c, 1, &token, &host, "/orders/3");
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["id"], 3, "{body}");
    let (status, body) = curl(&c, 1, &token, &host, "/echo/by-host?x=1");
    assert_eq!(status, 200, "{body}");
    let echo = reached(&c, "GET", "/echo/by-host");
    assert_eq!(echo.len(), 1, "{echo:?}");
    assert_eq!(echo[0]["query"], "x=1", "{echo:?}");
    // HTTP/2 (:authority from --resolve) and an unknown resource under the domain.
    let addr = c.http_addr(1);
    let port = addr.rsplit_once(':').unwrap().1;
    let resolve = format!("demo-api.gw.example:{port}:127.0.0.1");
    // (-k: the node's certificate does not name gw.example; the token goes in a file.)
    let header = c.path().join("auth-resolve.header");
    std::fs::write(&header, format!("Authorization: Bearer {token}\n")).unwrap();
    let o = Command::new("curl")
        .args(["-sS", "--http2", "-k", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", "--resolve", &resolve])
        .arg("-H")
        .arg(format!("@{}", header.display()))
        .arg(format!("https://demo-api.gw.example:{port}/orders/4"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "2 200", "{}", err(&o));
    let (status, body) = curl(&c, 1, &token, &["--http1.1", "-H", "Host: nothing.gw.example"], "/orders");
    assert_eq!(status, 404, "{body}");
    // The path prefix still works; a host outside the domain needs it.
    assert_eq!(curl(&c, 1, &token, &[], "/r/demo-api/orders/5").0, 200);
    assert_eq!(curl(&c, 1, &token, &["--http1.1", "-H", "Host: demo-api.other.example"], "/orders/5").0, 404);
    // [limits] http_max_body_bytes = 1000: a larger body is refused before any decision.
    let big = format!(r#"{{"customer":"{}","email":"b@example.com","amount":1}}"#, "x".repeat(1200));
    let (status, body) = curl(
        &c,
        1,
        &token,
        &["-X", "POST", "-H", "content-type: application/json", "--data-binary", &big],
        "/r/demo-api/orders",
    );
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("1000 bytes"), "{body}");
    assert!(reached(&c, "POST", "/orders").is_empty());
}

#[test]
fn small_responses_keep_a_true_length_and_fast_mode_records_every_request_once_quiet() {
    let c = Cluster::start_with_http(1);
    let token = c.engineer_token();
    // A masked response read whole: its Content-Length is the masked body's, no chunks.
    let o = curl_cmd(&c, 1, &token, &["--http1.1", "-i"], "/r/demo-api/orders").output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let body = rest.rsplit_once('\n').unwrap().0;
    assert!(body.contains("***@example.com"), "emails masked: {body}");
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("no Content-Length: {head}"));
    assert_eq!(length, body.len().to_string(), "{head}");
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding"), "{head}");
    // HTTP/2 has no Host header: the backend still learns the host the client asked.
    let (status, _) = curl(&c, 1, &token, &["--http2"], "/r/demo-api/echo/h2-host");
    assert_eq!(status, 200);
    let echo = reached(&c, "GET", "/echo/h2-host");
    let forwarded = echo[0]["headers"].to_string();
    assert!(forwarded.contains(&format!(r#"["x-forwarded-host","{}"]"#, c.http_addr(1))), "{forwarded}");
    // Fast mode: records wait in the session to go in batches; five requests on one
    // connection, then quiet: every one is on record, each statement before its result.
    let fast = c.path().join("demo-api-fast.yaml");
    std::fs::write(
        &fast,
        format!(
            "name: demo-api-fast\nprotocol: http\naddress: http://{}\naudit: fast\ncredential: {{ bearer: \"{}\" }}\n",
            c.api_addr(),
            c.api_key()
        ),
    )
    .unwrap();
    c.cli_ok(1, &["resource", "apply", "-f", fast.to_str().unwrap()]);
    let policy = c.path().join("fast-policy.yaml");
    std::fs::write(
        &policy,
        "name: fast\nrules:\n  - match: { groups: [engineers], resources: [demo-api-fast], kinds: [get] }\n    action: allow\n",
    )
    .unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", policy.to_str().unwrap()]);
    let urls: Vec<String> =
        (1..=5).map(|i| format!("https://{}/r/demo-api-fast/echo/fast-{i}", c.http_addr(1))).collect();
    let header = c.path().join("auth-fast.header");
    std::fs::write(&header, format!("Authorization: Bearer {token}\n")).unwrap();
    let o = Command::new("curl")
        .args(["-sS", "--http1.1", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null"])
        .args(["-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n", "--cacert"])
        .arg(c.path().join("ca.pem"))
        .arg("-H")
        .arg(format!("@{}", header.display()))
        .args(&urls)
        .output()
        .unwrap();
    let codes = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(codes.lines().filter(|l| l.starts_with("200")).count(), 5, "{codes}{}", err(&o));
    assert_eq!(codes.lines().filter(|l| l.ends_with(" 1")).count(), 1, "one connection: {codes}");
    let events = wait_for("the fast session's ten records", READY, || {
        let events: Vec<Value> = recorded_events(&c, "demo-api-fast")
            .into_iter()
            .filter(|e| e["kind"] == "statement" || e["kind"] == "result")
            .collect();
        (events.len() == 10).then_some(events)
    });
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["statement", "result"].repeat(5), "in order");
    for (i, pair) in events.chunks(2).enumerate() {
        assert_eq!(pair[0]["detail"]["request"], format!("GET /echo/fast-{}", i + 1), "{}", pair[0]);
        assert_eq!(pair[1]["detail"]["tags"][0], "200", "{}", pair[1]);
    }
}

#[test]
fn an_unreachable_backend_gets_502_naming_it_and_the_attempt_is_on_record() {
    let c = Cluster::start_with_http(1);
    let token = c.engineer_token();
    // A port nothing listens on (bound, then let go).
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let resource = c.path().join("dead-api.yaml");
    std::fs::write(&resource, format!("name: dead-api\nprotocol: http\naddress: http://{dead}\naudit: strict\n"))
        .unwrap();
    c.cli_ok(1, &["resource", "apply", "-f", resource.to_str().unwrap()]);
    let policy = c.path().join("dead-policy.yaml");
    std::fs::write(
        &policy,
        "name: dead\nrules:\n  - match: { groups: [engineers], resources: [dead-api], kinds: [get] }\n    action: allow\n",
    )
    .unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", policy.to_str().unwrap()]);
    let (status, body) = curl(&c, 1, &token, &[], "/r/dead-api/orders");
    assert_eq!(status, 502, "{body}");
    let problem: Value = serde_json::from_str(&body).unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("could not be reached") && detail.contains(&dead.to_string()), "{problem}");
    // The request and its failure are on record (the result once the connection is quiet).
    let result = wait_for("the 502 on record", READY, || {
        let events = recorded_events(&c, "dead-api");
        let statement = events.iter().any(|e| e["kind"] == "statement" && e["detail"]["request"] == "GET /orders");
        let result = events.iter().find(|e| e["kind"] == "result").cloned();
        result.filter(|_| statement)
    });
    assert_eq!(result["detail"]["tags"][0], "502", "{result}");
    assert!(result["detail"]["error"].as_str().unwrap().contains(&dead.to_string()), "{result}");
}
