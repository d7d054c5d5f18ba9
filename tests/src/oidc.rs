//! A real third-party OIDC provider for black-box tests: node `oidc-provider` (major 9),
//! run from `tests/oidc/provider.mjs` on loopback plain http.
//!
//! [`OidcProvider::start`] returns `None` (with the reason printed) when `node` or
//! `tests/oidc/node_modules` is missing; CI installs both (`.ci/run`), so there it runs.
//! Tokens come from the client-credentials grant and are RFC 9068 JWT access tokens
//! (`typ: at+jwt`, ES256, `aud: "portcullis"`); client `agent` gets
//! `groups: ["engineers","agents"]`, client `agent2` gets `groups: ["agents"]`.
//! Key rotation restarts the provider on the same port with another JWKS
//! ([`OidcProvider::rotate_to`]). The process is killed on drop.
//!
//! The device authorization grant (RFC 8628) is enabled for clients `cli` (public) and
//! `cli2` / `cli2-secret` (confidential); [`OidcProvider::complete_device_flow`] plays the
//! person at the provider's pages with curl and a cookie jar.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The default resource indicator; tokens for it have `aud: "portcullis"`.
pub const RESOURCE: &str = "urn:portcullis";
/// Another resource the provider knows; tokens for it have `aud: "other"`.
pub const OTHER_RESOURCE: &str = "urn:other";
/// Audience of tokens for [`RESOURCE`].
pub const AUDIENCE: &str = "portcullis";

/// Directory holding `provider.mjs`, `package.json` and (once installed) `node_modules`.
pub fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// Why the provider cannot run here, or `None` if it can.
pub fn unavailable_reason() -> Option<String> {
    match Command::new("node").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => {}
        _ => return Some("`node` is not installed (.ci/run installs nodejs and npm)".to_string()),
    }
    let pkg = oidc_dir().join("node_modules").join("oidc-provider").join("package.json");
    if !pkg.exists() {
        return Some(format!("{} is missing: run `npm ci` in {}", pkg.display(), oidc_dir().display()));
    }
    None
}

pub struct OidcProvider {
    /// `http://127.0.0.1:<port>`, the `iss` of every token.
    pub issuer: String,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Kids of the JWKS currently served; the first one signs.
    kids: Vec<String>,
    /// Lifetime of access tokens in seconds.
    token_ttl: u64,
    /// Number of starts so far (names the JWKS file of each start).
    starts: u32,
    /// Extra environment for provider.mjs (e.g. `OIDC_DEVICE_INTERVAL`).
    env: Vec<(String, String)>,
}

/// What the person does at the provider's device pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceDecision {
    /// Confirm the code, sign in, grant consent.
    Approve,
    /// Click "[ Abort ]" on the code confirmation page.
    AbortAtCode,
    /// Confirm the code, sign in, then click "[ Cancel ]" on the consent page.
    CancelAtConsent,
}

impl OidcProvider {
    /// Start with one key (kid `k1`) on a free port; `None` (reason printed) if node or
    /// node_modules is missing.
    pub fn start() -> Option<OidcProvider> {
        Self::start_with_token_ttl(600)
    }

    /// As [`start`](Self::start), with access tokens living `secs` seconds.
    pub fn start_with_token_ttl(secs: u64) -> Option<OidcProvider> {
        Self::start_with(secs, &[])
    }

    /// As [`start`](Self::start), with extra provider.mjs environment, e.g.
    /// `[("OIDC_DEVICE_INTERVAL", "1")]` for a 1 s device-flow polling interval or
    /// `[("OIDC_DEVICE_SLOW_DOWN", "1")]` to answer the first poll of each code `slow_down`.
    pub fn start_with_env(env: &[(&str, &str)]) -> Option<OidcProvider> {
        Self::start_with(600, env)
    }

    fn start_with(secs: u64, env: &[(&str, &str)]) -> Option<OidcProvider> {
        if let Some(reason) = unavailable_reason() {
            println!("oidc-provider unavailable: {reason}");
            return None;
        }
        let port = crate::free_port();
        let mut p = OidcProvider {
            issuer: format!("http://127.0.0.1:{port}"),
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
            kids: vec![],
            token_ttl: secs,
            starts: 0,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        p.rotate_to(&["k1"]);
        Some(p)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temp dir holding keys (`keys/<kid>.json`), JWKS files and `provider.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kids currently served, the signing one first.
    pub fn kids(&self) -> &[String] {
        &self.kids
    }

    /// The private JWK for `kid`, generated (by `provider.mjs gen-key`) on first use.
    pub fn key(&self, kid: &str) -> Value {
        let keys = self.dir.path().join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let path = keys.join(format!("{kid}.json"));
        if !path.exists() {
            let out = Command::new("node")
                .arg(oidc_dir().join("provider.mjs"))
                .args(["gen-key", kid])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(out.status.success(), "gen-key {kid} failed: {}", String::from_utf8_lossy(&out.stderr));
            std::fs::write(&path, &out.stdout).unwrap();
        }
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    /// Restart on the same port serving the keys `kids` (missing ones are generated); the
    /// first kid signs new tokens. Tokens signed earlier stay valid wherever their key is
    /// still published.
    pub fn rotate_to(&mut self, kids: &[&str]) {
        assert!(!kids.is_empty(), "rotate_to needs at least one kid");
        let keys: Vec<Value> = kids.iter().map(|k| self.key(k)).collect();
        self.starts += 1;
        let jwks_file = self.dir.path().join(format!("jwks-{}.json", self.starts));
        std::fs::write(&jwks_file, serde_json::json!({ "keys": keys }).to_string()).unwrap();
        self.kids = kids.iter().map(|k| k.to_string()).collect();
        self.stop();
        self.spawn(&jwks_file);
    }

    /// Restart with the same keys (in-memory provider state is lost; JWTs stay valid).
    pub fn restart(&mut self) {
        let kids = self.kids.clone();
        let kids: Vec<&str> = kids.iter().map(String::as_str).collect();
        self.rotate_to(&kids);
    }

    /// Kill the provider process (e.g. to test behaviour while the IdP is down).
    /// [`restart`](Self::restart) or [`rotate_to`](Self::rotate_to) brings it back.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn spawn(&mut self, jwks_file: &Path) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(oidc_dir())
            .env("OIDC_PORT", self.port.to_string())
            .env("OIDC_JWKS_FILE", jwks_file)
            .env("OIDC_TOKEN_TTL", self.token_ttl.to_string())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn node provider.mjs");
        let stdout = child.stdout.take().unwrap();
        self.child = Some(child);
        // Forward stdout lines; the thread keeps draining the pipe after READY.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(issuer) = line.strip_prefix("READY ") {
                        assert_eq!(issuer, self.issuer, "provider announced an unexpected issuer");
                        return;
                    }
                }
                Err(_) => {
                    panic!("oidc-provider did not print READY on port {}:\n{}", self.port, self.logs());
                }
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("provider.log")
    }

    /// The provider's stderr so far, for failure messages.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `/.well-known/openid-configuration`.
    pub fn discovery(&self) -> Value {
        let (status, v) = self.get("/.well-known/openid-configuration");
        assert_eq!(status, 200, "discovery: {v}");
        v
    }

    /// The published JWKS (from the discovery document's `jwks_uri`).
    pub fn jwks(&self) -> Value {
        let uri = self.discovery()["jwks_uri"].as_str().unwrap().to_string();
        let path = uri.strip_prefix(&self.issuer).unwrap_or(&uri).to_string();
        let (status, v) = self.get(&path);
        assert_eq!(status, 200, "jwks: {v}");
        v
    }

    /// A client-credentials access token (a JWT) for [`RESOURCE`], scope `openid groups`.
    pub fn client_credentials_token(&self, client_id: &str, secret: &str) -> String {
        self.client_credentials_token_for(client_id, secret, RESOURCE)
    }

    /// As [`client_credentials_token`](Self::client_credentials_token) for another resource.
    pub fn client_credentials_token_for(&self, client_id: &str, secret: &str, resource: &str) -> String {
        let (status, v) = self.token_request(client_id, secret, resource);
        assert_eq!(status, 200, "token request for {client_id} failed: {v}\n{}", self.logs());
        let token = v["access_token"].as_str().unwrap_or_else(|| panic!("no access_token in {v}")).to_string();
        assert_eq!(token.split('.').count(), 3, "access token is not a JWT: {token}");
        token
    }

    /// The raw token endpoint exchange: HTTP status and JSON body (for negative tests).
    pub fn token_request(&self, client_id: &str, secret: &str, resource: &str) -> (u16, Value) {
        self.curl(&[
            "-u",
            &format!("{client_id}:{secret}"),
            "--data-urlencode",
            "grant_type=client_credentials",
            "--data-urlencode",
            &format!("resource={resource}"),
            "--data-urlencode",
            "scope=openid groups",
            &format!("{}/token", self.issuer),
        ])
    }

    /// Play the person at the device-flow pages (oidc-provider's devInteractions) for
    /// `user_code`, signing in as `sub`: GET /device for the form's xsrf, POST the code, then
    /// the login and consent forms, following redirects with a cookie jar like a browser.
    /// Returns the last page's HTML; panics if the provider's pages are not as expected.
    pub fn complete_device_flow(&self, user_code: &str, sub: &str, decision: DeviceDecision) -> String {
        let jar = self.dir.path().join(format!("cookies-{user_code}.txt"));
        let page = self.browse(&jar, &[&format!("{}/device", self.issuer)]);
        let xsrf = html_attr_after(&page.body, "name=\"xsrf\"", "value")
            .unwrap_or_else(|| panic!("no xsrf field on the device page:\n{}", page.body));
        let action = match decision {
            DeviceDecision::AbortAtCode => "abort=yes",
            _ => "confirm=yes",
        };
        let mut page = self.browse(
            &jar,
            &[
                "--data-urlencode",
                &format!("xsrf={xsrf}"),
                "--data-urlencode",
                &format!("user_code={user_code}"),
                "--data-urlencode",
                action,
                &format!("{}/device", self.issuer),
            ],
        );
        for _ in 0..6 {
            if decision == DeviceDecision::AbortAtCode || page.body.contains("Sign-in Success") {
                return page.body;
            }
            let submit = html_attr_after(&page.body, "<form", "action")
                .unwrap_or_else(|| panic!("no form on {}:\n{}\n{}", page.url, page.body, self.logs()));
            page = if page.body.contains("name=\"prompt\" value=\"login\"") {
                self.browse(
                    &jar,
                    &[
                        "--data-urlencode",
                        "prompt=login",
                        "--data-urlencode",
                        &format!("login={sub}"),
                        "--data-urlencode",
                        "password=any",
                        &submit,
                    ],
                )
            } else if page.body.contains("name=\"prompt\" value=\"consent\"") {
                if decision == DeviceDecision::CancelAtConsent {
                    return self.browse(&jar, &[&format!("{submit}/abort")]).body;
                }
                self.browse(&jar, &["--data-urlencode", "prompt=consent", &submit])
            } else {
                panic!("unexpected page {}:\n{}\n{}", page.url, page.body, self.logs());
            };
        }
        panic!("device flow did not finish after 6 pages; last {}:\n{}", page.url, page.body);
    }

    /// curl as a browser: follow redirects, keep cookies in `jar`.
    fn browse(&self, jar: &Path, args: &[&str]) -> Page {
        let out = Command::new("curl")
            .args(["-sS", "-L", "--max-time", "10", "-w", "\n%{http_code} %{url_effective}"])
            .arg("-c")
            .arg(jar)
            .arg("-b")
            .arg(jar)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "curl {args:?} failed: {}{text}", String::from_utf8_lossy(&out.stderr));
        let (body, last) = text.rsplit_once('\n').unwrap();
        let (code, url) = last.split_once(' ').unwrap();
        let status: u16 = code.parse().unwrap();
        assert!(status < 500, "{url} answered {status}:\n{body}\n{}", self.logs());
        Page { url: url.to_string(), body: body.to_string() }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.curl(&[&format!("{}{path}", self.issuer)])
    }

    /// Run curl (a real HTTP client) and return status and JSON body.
    fn curl(&self, args: &[&str]) -> (u16, Value) {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "curl {args:?} failed: {}{text}", String::from_utf8_lossy(&out.stderr));
        let (body, code) = text.rsplit_once('\n').unwrap();
        let status: u16 = code.trim().parse().unwrap();
        let v = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()));
        (status, v)
    }
}

/// A page fetched by [`OidcProvider::browse`].
struct Page {
    url: String,
    body: String,
}

/// The value of attribute `attr` in the first tag after `marker` (HTML-unescaped `&amp;`).
fn html_attr_after(html: &str, marker: &str, attr: &str) -> Option<String> {
    let rest = &html[html.find(marker)?..];
    let rest = &rest[rest.find(&format!("{attr}=\""))? + attr.len() + 2..];
    Some(rest[..rest.find('"')?].replace("&amp;", "&"))
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Decode a compact JWS without verifying it: (header, payload).
pub fn decode_jwt(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS: {token}");
    let part = |s: &str| -> Value {
        serde_json::from_slice(&base64url_decode(s).unwrap_or_else(|| panic!("bad base64url in {token}"))).unwrap()
    };
    (part(parts[0]), part(parts[1]))
}

/// Unpadded base64url (RFC 4648 §5) to bytes; `None` on a bad character or length.
pub fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = s.trim_end_matches('=').as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c)? << (18 - 6 * i);
        }
        let n = chunk.len() - 1;
        out.extend_from_slice(&acc.to_be_bytes()[1..=n]);
    }
    Some(out)
}

/// Encode bytes as unpadded base64url (e.g. to forge a header or payload in a test).
pub fn base64url_encode(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut acc = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            acc |= u32::from(*b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(char::from(ABC[((acc >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips() {
        for len in 0..20 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 250) as u8).collect();
            let enc = base64url_encode(&data);
            assert!(!enc.contains('='));
            assert_eq!(base64url_decode(&enc).unwrap(), data, "{enc}");
        }
        assert_eq!(base64url_encode(b"{\"a\":1}"), "eyJhIjoxfQ");
        assert_eq!(base64url_decode("a"), None);
        assert_eq!(base64url_decode("a+b/"), None);
    }
}
