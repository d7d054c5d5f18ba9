//! `portcullis login` against a real third-party provider (node `oidc-provider`): the device
//! authorization grant (RFC 8628) with the person's part played by curl at the provider's
//! own pages, the token cache it writes, and the client commands' use of that cache.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portcullis_tests::oidc::{AUDIENCE, DeviceDecision, OidcProvider, decode_jwt};
use portcullis_tests::portcullis_bin;
use serde_json::Value;

/// A running `portcullis login` with its stderr read line by line.
struct Login {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Vec<String>,
    stdout: std::thread::JoinHandle<String>,
    started: Instant,
}

impl Login {
    fn start(config_dir: &Path, args: &[&str]) -> Login {
        let mut child = Command::new(portcullis_bin())
            .arg("login")
            .args(args)
            .env("PORTCULLIS_CONFIG_DIR", config_dir)
            .env_remove("PORTCULLIS_TOKEN")
            .env_remove("PORTCULLIS_CA")
            .env_remove("PORTCULLIS_CLIENT_SECRET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut out, &mut s);
            s
        });
        Login { child, lines, stderr: vec![], stdout, started: Instant::now() }
    }

    /// Read stderr until the sign-in prompt; returns (URL, user code).
    fn prompt(&mut self) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no sign-in prompt on stderr; so far: {:?}", self.stderr));
            self.stderr.push(line.clone());
            if let Some(rest) = line.strip_prefix("To sign in, open ") {
                let (url, code) = rest.split_once(" and enter code ").unwrap_or_else(|| panic!("odd prompt: {line}"));
                return (url.to_string(), code.trim().to_string());
            }
        }
    }

    /// Wait for the process to exit (at most `timeout`); returns status, stdout, whole stderr.
    fn finish(mut self, timeout: Duration) -> (ExitStatus, String, String, Duration) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("portcullis login did not exit within {timeout:?}; stderr: {:?}", self.stderr);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let elapsed = self.started.elapsed();
        // The reader thread ends at EOF, i.e. once the process has exited.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.stderr.push(line);
        }
        let stdout = self.stdout.join().unwrap();
        (status, stdout, self.stderr.join("\n"), elapsed)
    }
}

fn start_provider(test: &str, env: &[(&str, &str)]) -> Option<OidcProvider> {
    let idp = OidcProvider::start_with_env(env);
    if idp.is_none() {
        println!("SKIPPED {test}: oidc-provider cannot start here");
    }
    idp
}

fn cache_file(dir: &Path) -> PathBuf {
    dir.join("token")
}

/// Check the cache file: mode 0600, JSON {issuer, access_token, expires_at}, the token a JWT
/// for alice with aud portcullis. Returns the token.
fn check_cache(dir: &Path, idp: &OidcProvider, client_id: &str) -> String {
    let path = cache_file(dir);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "token cache mode is {mode:o}");
    }
    let cached: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(cached["issuer"].as_str(), Some(idp.issuer.as_str()));
    let token = cached["access_token"].as_str().unwrap().to_string();
    let (header, payload) = decode_jwt(&token);
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(payload["sub"], "alice", "{payload}");
    assert_eq!(payload["aud"], AUDIENCE, "{payload}");
    assert_eq!(payload["iss"].as_str(), Some(idp.issuer.as_str()), "{payload}");
    assert_eq!(payload["client_id"], client_id, "{payload}");
    assert_eq!(payload["groups"], serde_json::json!(["engineers"]), "{payload}");
    assert_eq!(cached["expires_at"], payload["exp"], "expires_at should be the token's exp");
    token
}

/// Nothing secret may reach the terminal: not the token, nor any of its three parts.
fn assert_not_leaked(token: &str, output: &str) {
    assert!(!output.contains(token), "the token appeared in the CLI output:\n{output}");
    for part in token.split('.') {
        assert!(!output.contains(part), "part of the token appeared in the CLI output:\n{output}");
    }
}

#[test]
fn login_with_device_flow_caches_a_private_jwt_for_the_person() {
    let Some(idp) = start_provider("login_with_device_flow", &[("OIDC_DEVICE_INTERVAL", "1")]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");

    let mut login = Login::start(&config, &["--issuer", &idp.issuer, "--client-id", "cli"]);
    let (url, code) = login.prompt();
    assert_eq!(url, format!("{}/device?user_code={code}", idp.issuer), "verification_uri_complete is shown");
    let page = idp.complete_device_flow(&code, "alice", DeviceDecision::Approve);
    assert!(page.contains("Sign-in Success"), "{page}");

    let (status, stdout, stderr, _) = login.finish(Duration::from_secs(30));
    println!("stderr:\n{stderr}");
    assert!(status.success(), "login failed ({status}):\n{stderr}\n{}", idp.logs());
    assert!(stderr.contains("as alice"), "{stderr}");
    let token = check_cache(&config, &idp, "cli");
    assert_not_leaked(&token, &stdout);
    assert_not_leaked(&token, &stderr);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "config dir created with mode {mode:o}");
    }
}

#[test]
fn confidential_client_logs_in_and_backs_off_on_slow_down() {
    let env = [("OIDC_DEVICE_INTERVAL", "1"), ("OIDC_DEVICE_SLOW_DOWN", "1")];
    let Some(idp) = start_provider("confidential_client_logs_in", &env) else { return };
    let dir = tempfile::tempdir().unwrap();

    let mut login = Login::start(
        dir.path(),
        &["--issuer", &idp.issuer, "--client-id", "cli2", "--client-secret", "cli2-secret", "--scope", "openid groups"],
    );
    let (_, code) = login.prompt();
    idp.complete_device_flow(&code, "alice", DeviceDecision::Approve);
    let (status, stdout, stderr, elapsed) = login.finish(Duration::from_secs(40));
    assert!(status.success(), "login failed ({status}):\n{stderr}\n{}", idp.logs());
    // First poll after 1 s gets slow_down, so the next waits 1 + 5 s.
    assert!(elapsed >= Duration::from_secs(6), "slow_down was not honoured: done after {elapsed:?}");
    let token = check_cache(dir.path(), &idp, "cli2");
    assert_not_leaked(&token, &stdout);
    assert_not_leaked(&token, &stderr);
    assert!(!stderr.contains("cli2-secret") && !stdout.contains("cli2-secret"), "client secret printed:\n{stderr}");
}

#[test]
fn login_denied_by_the_person_fails_with_access_denied() {
    let Some(idp) = start_provider("login_denied", &[("OIDC_DEVICE_INTERVAL", "1")]) else { return };
    for decision in [DeviceDecision::AbortAtCode, DeviceDecision::CancelAtConsent] {
        let dir = tempfile::tempdir().unwrap();
        let mut login = Login::start(dir.path(), &["--issuer", &idp.issuer, "--client-id", "cli"]);
        let (_, code) = login.prompt();
        idp.complete_device_flow(&code, "alice", decision);
        let (status, _, stderr, _) = login.finish(Duration::from_secs(30));
        println!("{decision:?}: {stderr}");
        assert_eq!(status.code(), Some(1), "{decision:?}: {stderr}");
        assert!(stderr.contains("error: ") && stderr.contains("access_denied"), "{decision:?}: {stderr}");
        assert!(!cache_file(dir.path()).exists(), "{decision:?}: a token was cached after a denial");
    }
}

#[test]
fn login_with_an_unknown_client_names_the_client_and_the_fix() {
    let Some(idp) = start_provider("login_with_an_unknown_client", &[]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let login = Login::start(dir.path(), &["--issuer", &idp.issuer, "--client-id", "nobody"]);
    let (status, stdout, stderr, _) = login.finish(Duration::from_secs(20));
    println!("{stderr}");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("\"nobody\"") && stderr.contains("invalid_client"), "{stderr}");
    assert!(stderr.contains("--client-id"), "the fix is named: {stderr}");
    assert!(!cache_file(dir.path()).exists());
}

/// A one-request HTTP server answering with `body` as JSON; returns its base URL.
fn serve_once(body: String) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let body = body.replace("{url}", &url);
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else { return };
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = conn.write_all(reply.as_bytes());
    });
    url
}

#[test]
fn login_is_refused_without_device_flow_over_plain_http_or_when_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    // A provider whose discovery document offers no device authorization endpoint.
    let issuer = serve_once(r#"{"issuer":"{url}","token_endpoint":"{url}/token"}"#.to_string());
    let login = Login::start(dir.path(), &["--issuer", &issuer, "--client-id", "cli"]);
    let (status, _, stderr, _) = login.finish(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not offer the device authorization grant"), "{stderr}");

    // Plain http to a non-loopback host is a usage error, before anything is sent.
    let login = Login::start(dir.path(), &["--issuer", "http://idp.example.invalid", "--client-id", "cli"]);
    let (status, _, stderr, _) = login.finish(Duration::from_secs(20));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("use https"), "{stderr}");

    // Nothing listening: a clear connection error, exit 1.
    let port = portcullis_tests::free_port();
    let login = Login::start(dir.path(), &["--issuer", &format!("http://127.0.0.1:{port}"), "--client-id", "cli"]);
    let (status, _, stderr, _) = login.finish(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach") && stderr.contains("openid-configuration"), "{stderr}");
}

/// Run a client command with only the cache (no --token, no PORTCULLIS_TOKEN).
fn client(config_dir: &Path, endpoint: &str, token: Option<&str>) -> (Option<i32>, String) {
    let mut cmd = Command::new(portcullis_bin());
    cmd.args(["cluster", "status", "--endpoint", endpoint])
        .env("PORTCULLIS_CONFIG_DIR", config_dir)
        .env_remove("PORTCULLIS_TOKEN")
        .env_remove("PORTCULLIS_CA")
        .stdin(Stdio::null());
    if let Some(t) = token {
        cmd.env("PORTCULLIS_TOKEN", t);
    }
    let out = cmd.output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn client_commands_refuse_an_expired_cached_token_unless_a_token_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", portcullis_tests::free_port());
    let cache = serde_json::json!({"issuer": "http://127.0.0.1:1", "access_token": "e30.e30.sig", "expires_at": 1});
    std::fs::write(cache_file(dir.path()), cache.to_string()).unwrap();

    let (code, stderr) = client(dir.path(), &endpoint, None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cached token expired; run portcullis login again"), "{stderr}");

    // An explicit token wins over the cache: the command gets as far as connecting.
    let (code, stderr) = client(dir.path(), &endpoint, Some("e30.e30.sig"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains("cached token"), "{stderr}");

    // A valid cached token is used (the command gets as far as connecting).
    let cache = serde_json::json!({"issuer": "http://127.0.0.1:1", "access_token": "e30.e30.sig", "expires_at": null});
    std::fs::write(cache_file(dir.path()), cache.to_string()).unwrap();
    let (code, stderr) = client(dir.path(), &endpoint, None);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains("cached token"), "{stderr}");
}
