//! WebSockets through the HTTP door end to end: real node processes, the demo API's
//! `/ws/echo` as the backend (its request log is the oracle of which upgrades reached
//! it), a raw client (`tests/python/ws_client.py`, standard library only) so that bad
//! frames can be sent on purpose.
//! The demo-api policy allows engineers the WebSocket `/ws/echo` and masks emails; the
//! gateway injects the demo API's key (a credential to hide), so the backend's messages
//! are always masked on the wire here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use portcullis_tests::{Cluster, err, wait_for};
use serde_json::Value;

fn python() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap();
    let python = cache.join("portcullis-ci/drivers/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/install-deps.sh", python.display());
    python
}

/// Run the raw client against node 1: `mode` and its messages; returns what it printed.
fn ws(c: &Cluster, token: &str, path: &str, mode: &str, messages: &[&str]) -> Value {
    let o = spawn_ws(c, token, path, mode, messages).wait_with_output().unwrap();
    assert!(o.status.success(), "ws_client.py failed: {}", err(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

fn spawn_ws(c: &Cluster, token: &str, path: &str, mode: &str, messages: &[&str]) -> std::process::Child {
    let addr = c.http_addr(1);
    let (host, port) = addr.rsplit_once(':').unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/ws_client.py");
    let mut child = Command::new(python())
        .arg(&script)
        .args([host, port, c.path().join("ca.pem").to_str().unwrap(), path, mode])
        .args(messages)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
    child
}

/// Upgrades the demo API received on `path`.
fn upgrades(c: &Cluster, path: &str) -> Vec<Value> {
    c.api_log().into_iter().filter(|l| l["method"] == "GET" && l["path"] == path).collect()
}

/// The session records of demo-api, as exported.
fn export(c: &Cluster) -> String {
    c.cli_ok(1, &["sessions", "export", "--json", "--resource", "demo-api"])
}

/// The `websocket` records of demo-api's sessions (one JSON document a line), in order.
fn websocket_records(records: &str) -> Vec<Value> {
    records
        .lines()
        .filter(|l| !l.trim().is_empty())
        .flat_map(|l| {
            let session: Value = serde_json::from_str(l).unwrap();
            session["events"].as_array().cloned().unwrap_or_default()
        })
        .filter(|e| e["kind"] == "websocket")
        .map(|e| e["detail"].clone())
        .collect()
}

/// Waits for a WebSocket's `closed` record; the export.
fn closed_records(c: &Cluster) -> String {
    wait_for("the websocket's records", Duration::from_secs(20), || {
        let e = export(c);
        e.contains("\"closed\"").then_some(e)
    })
}

#[test]
fn an_allowed_upgrade_echoes_through_the_gateway_masked_as_its_records_show() {
    let c = Cluster::start_with_http(1);
    let token = c.engineer_token();
    let marker = format!("ws-{}", std::process::id());
    let first = format!("hello {marker} from ada@example.com");
    let out = ws(&c, &token, "/r/demo-api/ws/echo", "echo", &[&first, "second message"]);
    assert_eq!(out["status"], 101, "{out}");
    // The backend echoed the email; the client got it masked, each message in one frame
    // (the first went out in two fragments and came back in two).
    let masked = format!("hello {marker} from a***@example.com");
    assert_eq!(out["echoes"], serde_json::json!([masked, "second message"]), "{out}");
    assert_eq!(out["echo_frames"], serde_json::json!([1, 1]), "{out}");
    // Binary cannot be masked: while the email detector applies, the gateway refuses it.
    assert_eq!(out["binary_echo"], -1, "{out}");
    assert_eq!(out["close"][0], 1008, "Close 1008 from the gateway: {out}");
    assert!(out["headers"].get("sec-websocket-extensions").is_none(), "no extension negotiated: {out}");
    // The backend got the upgrade with its own key, not the client's token, and no
    // extension offer.
    let seen = upgrades(&c, "/ws/echo");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["credential"], "bearer", "{}", seen[0]);
    let headers = seen[0]["headers"].to_string().to_lowercase();
    assert!(!headers.contains("permessage-deflate") && headers.contains("websocket"), "{headers}");
    // Recorded: the upgrade, each message (text masked, binary by size), the totals.
    let records = closed_records(&c);
    assert!(records.contains("GET /ws/echo (websocket)"), "{records}");
    assert!(!records.contains("ada@example.com"), "an email in a message was recorded unmasked: {records}");
    let ws = websocket_records(&records);
    let texts = |from: &str| -> Vec<Value> {
        ws.iter().filter(|d| d["event"] == "message" && d["from"] == from && d["type"] == "text").cloned().collect()
    };
    // The client's messages as sent (masked in the record only), the backend's exactly as
    // the client got them.
    let previews = |from: &str| texts(from).iter().map(|d| d["preview"].clone()).collect::<Vec<_>>();
    assert_eq!(previews("client"), vec![Value::from(masked.clone()), Value::from("second message")], "{ws:?}");
    assert_eq!(previews("backend"), vec![Value::from(masked.clone()), Value::from("second message")], "{ws:?}");
    let from_backend = texts("backend");
    assert_eq!(from_backend[0]["sent_bytes"], masked.len(), "{ws:?}");
    assert_eq!(from_backend[0]["bytes"], first.len(), "{ws:?}");
    assert_eq!(from_backend[0]["frames"], 2, "{ws:?}");
    let d = ws.iter().find(|d| d["event"] == "closed").unwrap();
    assert_eq!(d["ended_by"], "gateway", "{d}");
    assert!(d["error"].as_str().unwrap().contains("binary message from the backend"), "{d}");
    assert_eq!((d["from_client"]["messages"].as_u64(), d["from_client"]["pings"].as_u64()), (Some(3), Some(1)), "{d}");
    assert_eq!((d["from_backend"]["text"].as_u64(), d["from_backend"]["binary"].as_u64()), (Some(2), Some(1)), "{d}");
}

#[test]
fn with_no_detector_binary_passes_and_the_backends_close_comes_through() {
    let c = Cluster::start_with_http(1);
    let token = c.engineer_token();
    let policy = c.path().join("no-masks.yaml");
    std::fs::write(
        &policy,
        "name: demo-api\nrules:\n  - name: engineers-echo-socket\n    match: { groups: [engineers], resources: [demo-api], kinds: [websocket] }\n    action: allow\n",
    )
    .unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", policy.to_str().unwrap()]);
    let out = ws(&c, &token, "/r/demo-api/ws/echo", "echo", &["mail ada@example.com", "second"]);
    assert_eq!(out["status"], 101, "{out}");
    // Nothing detects emails now; the demo API's key is still hidden (re-framed: one
    // frame per message), and binary without it passes unchanged.
    assert_eq!(out["echoes"], serde_json::json!(["mail ada@example.com", "second"]), "{out}");
    assert_eq!(out["echo_frames"], serde_json::json!([1, 1]), "{out}");
    assert_eq!(out["binary_echo"], 1024, "{out}");
    assert_eq!(out["close"][0], 1000, "the backend's Close came through: {out}");
    let records = closed_records(&c);
    let ws = websocket_records(&records);
    let d = ws.iter().find(|d| d["event"] == "closed").unwrap();
    assert_eq!(d["ended_by"], "backend", "the echo server closed first: {d}");
    assert_eq!(d["from_backend"]["binary"], 1, "{d}");
}

#[test]
fn a_backend_message_too_big_to_mask_or_not_utf8_closes_the_connection_and_is_recorded() {
    let c = Cluster::start_with_http(1);
    let token = c.engineer_token();
    let out = ws(&c, &token, "/r/demo-api/ws/echo", "big", &[]);
    assert_eq!(out["status"], 101, "{out}");
    assert_eq!(out["close"][0], 1009, "Close 1009 from the gateway: {out}");
    assert_eq!(out["eof"], true, "{out}");
    let out = ws(&c, &token, "/r/demo-api/ws/echo", "badutf8", &[]);
    assert_eq!(out["status"], 101, "{out}");
    assert_eq!(out["close"][0], 1007, "Close 1007 from the gateway: {out}");
    let records = wait_for("both cuts recorded", Duration::from_secs(20), || {
        let e = export(&c);
        (e.contains("http_max_masked_websocket_message_bytes") && e.contains("not UTF-8")).then_some(e)
    });
    let cuts: Vec<Value> = websocket_records(&records).into_iter().filter(|d| d["event"] == "closed").collect();
    assert_eq!(cuts.len(), 2, "{cuts:?}");
    assert!(cuts.iter().all(|d| d["ended_by"] == "gateway"), "{cuts:?}");
}

#[test]
fn a_denied_upgrade_gets_403_and_never_reaches_the_backend() {
    let c = Cluster::start_with_http(1);
    let token = c.engineer_token();
    // No rule allows a WebSocket elsewhere: denied by default.
    let out = ws(&c, &token, "/r/demo-api/ws/other", "echo", &["x"]);
    assert_eq!(out["status"], 403, "{out}");
    // A deny rule can name the kind.
    let policy = c.path().join("no-sockets.yaml");
    std::fs::write(
        &policy,
        "name: demo-api\nrules:\n  - name: engineers-read\n    match: { groups: [engineers], resources: [demo-api], kinds: [get] }\n    action: allow\n  - name: no-sockets\n    match: { resources: [demo-api], kinds: [websocket] }\n    action: deny\n    reason: no websockets today\n",
    )
    .unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", policy.to_str().unwrap()]);
    let out = ws(&c, &token, "/r/demo-api/ws/echo", "echo", &["x"]);
    assert_eq!(out["status"], 403, "{out}");
    assert!(out["body"].as_str().unwrap().contains("no websockets today"), "{out}");
    assert!(
        upgrades(&c, "/ws/echo").is_empty() && upgrades(&c, "/ws/other").is_empty(),
        "a denied upgrade reached the backend"
    );
}

#[test]
fn an_oversize_or_unmasked_frame_closes_the_connection_and_is_recorded() {
    let c = Cluster::start_with_http(1);
    let token = c.engineer_token();
    let out = ws(&c, &token, "/r/demo-api/ws/echo", "oversize", &[]);
    assert_eq!(out["status"], 101, "{out}");
    assert_eq!(out["close"][0], 1009, "Close 1009 from the gateway: {out}");
    assert_eq!(out["eof"], true, "{out}");
    let out = ws(&c, &token, "/r/demo-api/ws/echo", "unmasked", &[]);
    assert_eq!(out["status"], 101, "{out}");
    assert_eq!(out["close"][0], 1002, "Close 1002 from the gateway: {out}");
    let records = wait_for("both cuts recorded", Duration::from_secs(20), || {
        let e = export(&c);
        (e.contains("a frame of 33554432 bytes") && e.contains("an unmasked frame from the client")).then_some(e)
    });
    assert!(records.contains("\"gateway\""), "ended by the gateway: {records}");
    // Both upgrades reached the backend; the frames did not (the gateway refused them).
    assert_eq!(upgrades(&c, "/ws/echo").len(), 2);
}

#[test]
fn a_reviewed_upgrade_waits_for_its_approval_before_reaching_the_backend() {
    let c = Cluster::start_with_http(1);
    let token = c.engineer_token();
    let bob = c.token("bob", &["approvers"]);
    let policy = c.path().join("review-sockets.yaml");
    std::fs::write(
        &policy,
        "name: demo-api\nrules:\n  - name: sockets-need-approval\n    match: { groups: [engineers], resources: [demo-api], kinds: [websocket] }\n    action: review\n    approvers: { groups: [approvers], count: 1 }\n",
    )
    .unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", policy.to_str().unwrap()]);
    let child = spawn_ws(&c, &token, "/r/demo-api/ws/echo?held=1", "echo", &["after approval"]);
    let id = wait_for("the upgrade to be held", Duration::from_secs(30), || {
        let o = c.cli_as(1, Some(&bob), &["approvals", "list", "--pending", "--json"]);
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        let list = v.as_array().cloned().or_else(|| v["approvals"].as_array().cloned()).unwrap_or_default();
        list.into_iter()
            .find(|a| a["action"].as_str().is_some_and(|t| t.contains("(websocket)")))
            .map(|a| a["id"].as_str().unwrap().to_string())
    });
    assert!(upgrades(&c, "/ws/echo").is_empty(), "the upgrade reached the backend before its approval");
    let o = c.cli_as(1, Some(&bob), &["approvals", "approve", &id]);
    assert!(o.status.success(), "{}", err(&o));
    let o = child.wait_with_output().unwrap();
    let out: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", err(&o)));
    assert_eq!(out["status"], 101, "{out}");
    assert_eq!(out["headers"]["portcullis-approval"], id.as_str(), "{out}");
    assert_eq!(out["echoes"], serde_json::json!(["after approval"]), "{out}");
    assert_eq!(upgrades(&c, "/ws/echo").len(), 1);
}

#[test]
fn a_websocket_silent_past_the_idle_limit_is_closed_by_the_gateway_and_recorded() {
    let mut c = Cluster::start_with_http(1);
    let token = c.engineer_token();
    c.edit_config(1, |t| {
        let limits = t.get_mut("limits").and_then(|l| l.as_table_mut()).unwrap();
        assert_eq!(limits["http_websocket_idle_secs"].as_integer(), Some(3600), "the default");
        limits.insert("http_websocket_idle_secs".into(), 2.into());
    });
    c.kill9(1);
    c.restart(1);
    wait_for("node 1 to serve again", Duration::from_secs(30), || (c.readyz(1) == Some(200)).then_some(()));
    let out = ws(&c, &token, "/r/demo-api/ws/echo", "idle", &["still there?"]);
    assert_eq!(out["status"], 101, "{out}");
    assert_eq!(out["echoes"], serde_json::json!(["still there?"]), "it worked until it went quiet: {out}");
    assert_eq!(out["close"][0], 1001, "the gateway said it goes away: {out}");
    let silent = out["silent_secs"].as_f64().unwrap();
    assert!((1.5..10.0).contains(&silent), "closed after about 2 s of silence, not {silent}: {out}");
    let records = closed_records(&c);
    let ws = websocket_records(&records);
    let d = ws.iter().find(|d| d["event"] == "closed").unwrap();
    assert_eq!(d["ended_by"], "gateway", "{d}");
    assert!(d["error"].as_str().unwrap().contains("idle limit"), "{d}");
}
