//! The web console, driven as a browser would: HTTPS with the cluster's CA, a cookie
//! jar, redirects followed by hand (so each hop is checked), forms posted as a browser
//! posts them. The sign-in goes through the playground's dev issuer (authorization code
//! with PKCE); decisions go through the node's admin service, so a Postgres statement
//! held on another node is released by an approval in the console.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Duration;

use portcullis_tests::{Cluster, err, wait_for};
use reqwest::blocking::{Client, Response};
use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE, X_CONTENT_TYPE_OPTIONS};

const READY: Duration = Duration::from_secs(30);

/// One browser signed in to one node's console.
struct Browser {
    http: Client,
    jar: Arc<Jar>,
    base: String,
}

impl Browser {
    fn new(c: &Cluster, node: u64) -> Browser {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(c.ca()).unwrap()).unwrap();
        let jar = Arc::new(Jar::default());
        let http = Client::builder()
            .add_root_certificate(ca)
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Browser { http, jar, base: c.console_url(node) }
    }

    /// Sign in through the whole flow as `sub` in `groups`, starting at `/approvals`.
    fn sign_in(c: &Cluster, node: u64, sub: &str, groups: &str) -> Browser {
        let b = Browser::new(c, node);
        // Not signed in: sent to sign in, and from there to the provider.
        let r = b.get("/approvals");
        assert_eq!(r.status(), 303);
        let to = location(&r);
        assert_eq!(to, "/auth/sign-in?next=%2Fapprovals");
        let r = b.get(&to);
        assert_eq!(r.status(), 303);
        assert!(header_values(&r, SET_COOKIE).iter().any(|v| v.starts_with("__Host-portcullis-signin=")));
        let authorize = location(&r);
        assert!(authorize.contains("/portcullis-dev/authorize?"), "{authorize}");
        assert!(authorize.contains("code_challenge_method=S256"), "{authorize}");
        // The provider's sign-in form, posted with the subject and groups.
        let form = b.http.get(&authorize).send().unwrap();
        assert_eq!(form.status(), 200);
        let html = form.text().unwrap();
        let mut fields = hidden_fields(&html);
        fields.push(("sub".into(), sub.into()));
        fields.push(("groups".into(), groups.into()));
        let post_to = authorize.split('?').next().unwrap();
        let r = b.http.post(post_to).form(&fields).send().unwrap();
        assert_eq!(r.status(), 303, "{}", r.text().unwrap_or_default());
        let callback = location(&r);
        assert!(callback.starts_with(&format!("{}/auth/callback?", b.base)), "{callback}");
        // Back at the console: a session cookie, and a page that moves on to the inbox.
        let r = b.http.get(&callback).send().unwrap();
        let cookies = header_values(&r, SET_COOKIE);
        let status = r.status();
        let page = r.text().unwrap();
        assert_eq!(status, 200, "{page}");
        let session = cookies.iter().find(|v| v.starts_with("__Host-portcullis=")).expect("a session cookie");
        for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(session.contains(attr), "{session}");
        }
        assert!(page.contains(&format!("signed in as {sub}")), "{page}");
        assert!(page.contains(r#"http-equiv="refresh" content="0;url=/approvals""#), "{page}");
        // The token stays on the server: the page and the cookie carry none.
        assert!(!page.contains("eyJ") && !session.contains("eyJ"), "a token reached the browser");
        b
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().unwrap()
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.http.post(self.url(path)).form(form).send().unwrap()
    }

    /// `path` as (status, page).
    fn page(&self, path: &str) -> (u16, String) {
        let r = self.get(path);
        (r.status().as_u16(), r.text().unwrap())
    }

    /// The session cookie's value, as the jar holds it.
    fn session_cookie(&self) -> Option<String> {
        let url: reqwest::Url = self.base.parse().unwrap();
        let header = self.jar.cookies(&url)?;
        header.to_str().unwrap().split("; ").find_map(|kv| kv.strip_prefix("__Host-portcullis=")).map(str::to_string)
    }
}

fn location(r: &Response) -> String {
    r.headers().get(LOCATION).expect("a Location header").to_str().unwrap().to_string()
}

fn header_values(r: &Response, name: reqwest::header::HeaderName) -> Vec<String> {
    r.headers().get_all(name).iter().map(|v| v.to_str().unwrap().to_string()).collect()
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// `name="…" value="…"` of every hidden input of a page.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input")
        .skip(1)
        .filter(|tag| tag.contains(r#"type="hidden""#))
        .map(|tag| (attr(tag, "name"), attr(tag, "value")))
        .collect()
}

fn attr(tag: &str, name: &str) -> String {
    let start = tag.find(&format!(r#"{name}=""#)).unwrap_or_else(|| panic!("no {name} in {tag}")) + name.len() + 2;
    let end = tag[start..].find('"').unwrap() + start;
    unescape(&tag[start..end])
}

/// The CSRF field of a page's forms.
fn csrf(html: &str) -> String {
    hidden_fields(html).into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v).expect("a csrf field")
}

/// Every script of `page` is one of the console's own files (none inline), served from
/// the binary: htmx and its SSE extension (from the npm registry, embedded at build time)
/// for a year under versioned names, the console's own script for an hour.
fn assert_scripts_are_embedded(b: &Browser, page: &str) {
    let sources: Vec<String> = page.split("<script").skip(1).map(|tag| attr(tag, "src")).collect();
    assert!(sources.iter().any(|s| s.starts_with("/assets/vendor/htmx-2.")), "{page}");
    assert!(sources.iter().any(|s| s.starts_with("/assets/vendor/htmx-ext-sse-")), "{page}");
    assert!(sources.iter().any(|s| s == "/assets/console.js"), "{page}");
    for src in &sources {
        let r = b.get(src);
        assert_eq!(r.status(), 200, "{src}: {:?} (run scripts/install-deps.sh, then rebuild)", r.text());
        assert_eq!(r.headers()["content-type"], "text/javascript; charset=utf-8", "{src}");
        let cache = r.headers()[CACHE_CONTROL].to_str().unwrap().to_string();
        if src.starts_with("/assets/vendor/") {
            assert_eq!(cache, "public, max-age=31536000, immutable", "{src}");
        }
        assert!(r.bytes().unwrap().len() > 100, "{src} is empty");
    }
    let r = b.get("/assets/vendor/left-pad-1.0.0.js");
    assert_eq!(r.status(), 404);
}

/// The id of the approval whose action contains `marker`, from the inbox page.
fn approval_id(html: &str, marker: &str) -> Option<String> {
    let at = html.find(marker)?;
    let rest = &html[at..];
    let start = rest.find("/approvals/")? + "/approvals/".len();
    let end = rest[start..].find("/decide")? + start;
    Some(rest[start..end].to_string())
}

#[test]
fn an_approver_signs_in_and_releases_a_delete_held_on_another_node_and_the_console_fails_closed() {
    // --- 1. A cluster with Postgres; alice's DELETE waits on node 2.
    let mut c = Cluster::start_with_postgres(3);
    c.wait_all_serving(&[1, 2, 3], READY);
    let alice = c.engineer_token();
    let held = c.spawn_psql(2, &alice, "DELETE FROM customers WHERE id = 12 /* marker-console-held */");

    // --- 2. bob, an approver, signs in to node 1's console and sees it in the inbox.
    let bob = Browser::sign_in(&c, 1, "bob", "approvers");
    let r = bob.get("/approvals");
    let csp = r.headers().get(CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.headers().get(X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");
    assert_eq!(r.headers().get(CACHE_CONTROL).unwrap(), "no-store");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert_scripts_are_embedded(&bob, &r.text().unwrap());
    let inbox = wait_for("the held DELETE in node 1's inbox", READY, || {
        let (status, page) = bob.page("/approvals");
        assert_eq!(status, 200, "{page}");
        page.contains("marker-console-held").then_some(page)
    });
    let id = approval_id(&inbox, "marker-console-held").unwrap();
    assert!(inbox.contains("<title>Approvals · Portcullis node 1</title>"), "{inbox}");
    assert!(inbox.contains("alice") && inbox.contains("demo") && inbox.contains("node 2"), "{inbox}");
    assert!(inbox.contains(r#"<label for="reason-"#), "{inbox}");
    let token = csrf(&inbox);
    assert!(!c.postgres_log().contains("marker-console-held"), "a held statement reached the backend");

    // A callback with a state this browser did not start is refused.
    let r = bob.get("/auth/callback?code=stolen&state=made-up");
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("unknown or already used"));

    // --- 3. A decision without the CSRF field (or with a wrong one) is refused.
    let path = format!("/approvals/{id}/decide");
    let r = bob.post(&path, &[("decision", "approve"), ("reason", "no csrf")]);
    assert_eq!(r.status(), 403);
    assert!(r.text().unwrap().contains("CSRF"));
    let r = bob.post(&path, &[("decision", "approve"), ("csrf", "forged"), ("reason", "forged")]);
    assert_eq!(r.status(), 403);
    let (_, page) = bob.page("/approvals");
    assert!(page.contains("marker-console-held"), "a refused form decided the approval");

    // --- 4. bob's own held request: the state machine refuses his approval, and says so.
    let bob_engineer = c.token("bob", &["engineers", "approvers"]);
    let mut own = c.spawn_psql(3, &bob_engineer, "DELETE FROM customers WHERE id = 11 /* marker-console-own */");
    let page = wait_for("bob's own DELETE in the inbox", READY, || {
        let (_, page) = bob.page("/approvals");
        page.contains("marker-console-own").then_some(page)
    });
    assert!(page.contains("This is your own request"), "{page}");
    let own_id = approval_id(&page, "marker-console-own").unwrap();
    let r = bob.post(&format!("/approvals/{own_id}/decide"), &[("decision", "approve"), ("csrf", &token)]);
    assert_eq!(r.status(), 409);
    let text = r.text().unwrap();
    assert!(text.contains("may not decide their own request"), "{text}");

    // --- 5. Approving alice's DELETE through node 1 releases it on node 2.
    let r = bob.post(&path, &[("decision", "approve"), ("csrf", &token), ("reason", "checked in the console")]);
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), format!("/approvals?decided={id}&outcome=approved"));
    let o = held.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(c.postgres_log().matches("marker-console-held").count(), 1, "the approved DELETE runs exactly once");
    let (_, page) = bob.page(&location(&r));
    assert!(page.contains(&format!("Approved {id}")), "{page}");
    assert!(!page.contains("marker-console-held"), "a decided approval is still listed");

    // --- 6. An engineer may not open the inbox or the cluster page; each names the role.
    let eve = Browser::sign_in(&c, 3, "eve", "engineers");
    let (status, page) = eve.page("/approvals");
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("needs the approver role") && page.contains("approvers"), "{page}");
    let (status, page) = eve.page("/cluster");
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("needs the admin or auditor role"), "{page}");
    assert!(page.contains("one of groups admin, auditor required"), "{page}");

    // --- 7. An auditor sees the cluster: every member, the leader, the term.
    let dana = Browser::sign_in(&c, 1, "dana", "auditor");
    let (status, page) = dana.page("/cluster");
    assert_eq!(status, 200, "{page}");
    for needle in ["node 1", "node 2", "node 3", "leader", "Last applied", "<title>Cluster · Portcullis node 1</title>"]
    {
        assert!(page.contains(needle), "{needle} missing: {page}");
    }
    assert!(!page.contains("No quorum"), "{page}");

    // --- 8. Sign-out is a POST with the CSRF field; afterwards the old cookie is worthless.
    let (_, page) = bob.page("/approvals");
    let old = bob.session_cookie().expect("bob's session cookie");
    let r = bob.post("/auth/sign-out", &[]);
    assert_eq!(r.status(), 403, "a sign-out without the CSRF field is refused");
    let r = bob.post("/auth/sign-out", &[("csrf", &csrf(&page))]);
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().contains("Signed out"));
    let r = bob.get("/approvals");
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with("/auth/sign-in"));
    let replay = Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(c.ca()).unwrap()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = replay.get(bob.url("/approvals")).header("cookie", format!("__Host-portcullis={old}")).send().unwrap();
    assert_eq!(r.status(), 303, "the signed-out session still works");

    // --- 9. Node 1 alone: a banner on every page, and decisions are refused.
    let (_, page) = dana.page("/cluster");
    let dana_csrf = csrf(&page);
    own.kill().unwrap();
    let _ = own.wait();
    c.kill9(2);
    c.kill9(3);
    let page = wait_for("node 1's console to show the no-quorum banner", READY, || {
        let (_, page) = dana.page("/cluster");
        page.contains("No quorum").then_some(page)
    });
    assert!(page.contains("does not hold the quorum lease"), "{page}");
    let r = dana.post(&format!("/approvals/{own_id}/decide"), &[("decision", "deny"), ("csrf", &dana_csrf)]);
    assert_eq!(r.status(), 503);
    assert!(r.text().unwrap().contains("refuses decisions"));
}

/// One live inbox (`/approvals/events`) read as a browser's EventSource reads it: each
/// event (name, data) and each keep-alive comment, in order, from a reader thread.
struct EventStream {
    events: std::sync::mpsc::Receiver<Option<(String, String)>>,
}

impl EventStream {
    /// Open `path` on `b`'s console with its session cookie (no overall timeout: it streams).
    fn open(c: &Cluster, b: &Browser, path: &str) -> Result<EventStream, (u16, String)> {
        let http = Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(c.ca()).unwrap()).unwrap())
            .cookie_provider(b.jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = http.get(b.url(path)).header("accept", "text/event-stream").send().unwrap();
        let status = r.status().as_u16();
        if status != 200 {
            return Err((status, r.text().unwrap()));
        }
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        let (tx, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let (mut name, mut data) = (String::new(), Vec::<String>::new());
            for line in std::io::BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if line.is_empty() {
                    if !data.is_empty() && tx.send(Some((std::mem::take(&mut name), data.join("\n")))).is_err() {
                        return;
                    }
                    data.clear();
                } else if line.starts_with(':') {
                    let _ = tx.send(Some(("(comment)".into(), line)));
                } else if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                }
            }
            // The server ended the stream.
            let _ = tx.send(None);
        });
        Ok(EventStream { events })
    }

    /// The next `inbox` event whose list satisfies `cond`, within `timeout`.
    fn wait_inbox(&self, what: &str, timeout: Duration, cond: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Some((name, data))) if name == "inbox" && cond(&data) => return data,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended while waiting for {what}"),
                Err(_) => panic!("no inbox event with {what} within {timeout:?}"),
            }
        }
    }

    /// Whether the server ends the stream within `timeout`.
    fn ends_within(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Some(_)) => continue,
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }
}

#[test]
fn the_inbox_streams_a_new_hold_and_drops_it_once_decided_on_another_node() {
    // --- 1. A cluster with Postgres; bob (approver) opens node 1's inbox.
    let c = Cluster::start_with_postgres(3);
    c.wait_all_serving(&[1, 2, 3], READY);
    let bob = Browser::sign_in(&c, 1, "bob", "approvers");
    let (status, page) = bob.page("/approvals");
    assert_eq!(status, 200, "{page}");
    // The page asks htmx's SSE extension to swap the list; without JavaScript it is a plain list.
    assert!(page.contains(r#"hx-ext="sse" sse-connect="/approvals/events" sse-swap="inbox""#), "{page}");
    assert!(page.contains("Nothing waits for your decision"), "{page}");
    assert_scripts_are_embedded(&bob, &page);

    // --- 2. The stream sends the current list at once.
    let live = EventStream::open(&c, &bob, "/approvals/events").unwrap();
    live.wait_inbox("the current (empty) list", READY, |list| list.contains("Nothing waits"));

    // --- 3. alice's DELETE, held on node 2, appears in node 1's stream, with its form.
    let alice = c.engineer_token();
    let held = c.spawn_psql(2, &alice, "DELETE FROM customers WHERE id = 13 /* marker-console-live */");
    let list = live.wait_inbox("the DELETE held on node 2", READY, |list| list.contains("marker-console-live"));
    let id = approval_id(&list, "marker-console-live").unwrap();
    assert!(list.contains("alice") && list.contains("node 2"), "{list}");
    assert!(
        list.contains(&format!(r#"name="csrf" value="{}""#, csrf(&page))),
        "the swapped-in form keeps the CSRF field"
    );
    assert!(!list.contains("<html") && !list.contains("<script"), "a fragment, not a page: {list}");

    // --- 4. carol approves it through the CLI on node 3: it leaves node 1's stream, psql finishes.
    let carol = c.token("carol", &["approvers"]);
    let o = c.cli_as(3, Some(&carol), &["approvals", "approve", &id, "--reason", "seen live"]);
    assert!(o.status.success(), "{}", err(&o));
    live.wait_inbox("the decided DELETE gone", READY, |list| !list.contains("marker-console-live"));
    let o = held.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", err(&o));

    // --- 5. Bounded: a session holds a few streams, not more; an engineer holds none.
    let more: Vec<_> = (0..3).map(|_| EventStream::open(&c, &bob, "/approvals/events").unwrap()).collect();
    let (status, text) = EventStream::open(&c, &bob, "/approvals/events").err().expect("a fifth stream is refused");
    assert_eq!(status, 429, "{text}");
    drop(more);
    let eve = Browser::sign_in(&c, 1, "eve", "engineers");
    let (status, text) =
        EventStream::open(&c, &eve, "/approvals/events").err().expect("an engineer's stream is refused");
    assert_eq!(status, 403, "{text}");

    // --- 6. An idle stream carries a keep-alive comment every 15 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(25);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match live.events.recv_timeout(left) {
            Ok(Some((name, _))) if name == "(comment)" => break,
            Ok(Some(_)) => continue,
            other => panic!("no keep-alive comment within 25 s: {other:?}"),
        }
    }

    // --- 7. Signing out ends the stream at once; the browser cannot reopen it.
    let (_, page) = bob.page("/approvals");
    let r = bob.post("/auth/sign-out", &[("csrf", &csrf(&page))]);
    assert_eq!(r.status(), 200);
    assert!(live.ends_within(Duration::from_secs(5)), "the stream outlived the sign-out");
    let (status, _) = EventStream::open(&c, &bob, "/approvals/events").err().expect("signed out, no stream");
    assert_eq!(status, 401);
}

/// The tester's answer for `input` on `resource` as `groups`, posted with `csrf`.
fn try_policy(b: &Browser, csrf: &str, groups: &str, resource: &str, input: &str) -> String {
    let r = b.post(
        "/policies/test",
        &[("csrf", csrf), ("subject", "alice"), ("groups", groups), ("resource", resource), ("input", input)],
    );
    let status = r.status();
    let page = r.text().unwrap();
    assert_eq!(status, 200, "{page}");
    page
}

fn decision(page: &str) -> &str {
    let start = page.find(r#"<span class="decision">"#).unwrap_or_else(|| panic!("no decision: {page}")) + 23;
    &page[start..start + page[start..].find('<').unwrap()]
}

#[test]
fn the_policies_page_shows_the_documents_in_force_and_tells_what_would_happen_at_each_door() {
    // --- 1. One node with all three doors' demo resources and policies.
    let c = Cluster::start_with(1, &["--postgres", "--ssh", "--http"]);
    c.wait_all_serving(&[1], READY);

    // --- 2. An auditor reads the documents in force: who applied each, when, the source.
    let dana = Browser::sign_in(&c, 1, "dana", "auditor");
    let (status, page) = dana.page("/policies");
    assert_eq!(status, 200, "{page}");
    for needle in [
        "<title>Policies · Portcullis node 1</title>",
        r#"<h3 id="p-demo">demo</h3>"#,
        r#"<h3 id="p-demo-ssh">demo-ssh</h3>"#,
        r#"<h3 id="p-demo-api">demo-api</h3>"#,
        "Applied by",
        "writes to demo need a second pair of eyes",
        r#"<option value="demo-api">demo-api (http)</option>"#,
    ] {
        assert!(page.contains(needle), "{needle} missing: {page}");
    }
    // The source is shown escaped, as applied (its quotes are entities, not markup).
    assert!(page.contains("&#34;") || page.contains("&quot;"), "{page}");
    let token = csrf(&page);

    // --- 3. The tester refuses a form without the CSRF field.
    let r = dana.post("/policies/test", &[("resource", "demo"), ("input", "SELECT 1")]);
    assert_eq!(r.status(), 403);

    // --- 4. Postgres: a DELETE is held for the approvers; DROP TABLE is denied by its rule.
    let page = try_policy(&dana, &token, "engineers", "demo", "DELETE FROM customers WHERE id = 1");
    assert_eq!(decision(&page), "review", "{page}");
    assert!(page.contains("<dt>Approvers</dt><dd>approvers (1 needed)</dd>"), "{page}");
    assert!(page.contains("<dd>10m</dd>") && page.contains("demo/writes-need-approval"), "{page}");
    assert!(page.contains("detectors"), "the masks of the demo policy: {page}");
    let page = try_policy(&dana, &token, "engineers", "demo", "DROP TABLE customers");
    assert_eq!(decision(&page), "deny", "{page}");
    assert!(page.contains("rule demo/no-truncate-or-ddl"), "{page}");
    let page = try_policy(&dana, &token, "engineers", "demo", "SELECT email FROM customers");
    assert_eq!(decision(&page), "mask", "{page}");
    assert!(page.contains("What this test cannot know") && page.contains("lineage"), "{page}");

    // --- 5. SSH: `rm x` is held; HTTP: DELETE /orders/1 on demo-api is denied.
    let page = try_policy(&dana, &token, "engineers", "demo-ssh", "rm x");
    assert_eq!(decision(&page), "review", "{page}");
    assert!(page.contains("demo-ssh/changes-need-approval") && page.contains("programs rm"), "{page}");
    let page = try_policy(&dana, &token, "engineers", "demo-api", "DELETE /orders/1");
    assert_eq!(decision(&page), "deny", "{page}");
    assert!(page.contains("demo-api/no-deletes"), "{page}");

    // --- 6. What the tester cannot read is said, not guessed.
    let r = dana.post("/policies/test", &[("csrf", &token), ("resource", "demo-api"), ("input", "orders please")]);
    assert_eq!(r.status(), 422);
    assert!(r.text().unwrap().contains("cannot test this"));
    let r = dana.post("/policies/test", &[("csrf", &token), ("resource", "nope"), ("input", "SELECT 1")]);
    assert_eq!(r.status(), 422);
    assert!(r.text().unwrap().contains("There is no resource named"));

    // --- 7. An engineer may not read the policies; the page names the role.
    let eve = Browser::sign_in(&c, 1, "eve", "engineers");
    let (status, page) = eve.page("/policies");
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("needs the admin or auditor role"), "{page}");
}

/// The first session linked from a search results page.
fn first_session(page: &str) -> Option<String> {
    let table = &page[page.find("<tbody>")?..];
    let start = table.find(r#"<a href="/sessions/"#)? + r#"<a href="/sessions/"#.len();
    let end = table[start..].find('"')? + start;
    Some(table[start..end].to_string())
}

/// Allow shells on `demo-ssh` for engineers, masking SSNs (the demo document reviews
/// shells, and review beats allow: it goes).
fn allow_shells(c: &Cluster) {
    let policy = c.path().join("shells.yaml");
    std::fs::write(
        &policy,
        "name: shells\nrules:\n  - match: { groups: [engineers], resources: [demo-ssh], kinds: [shell] }\n    action: allow\n  \
         - match: { resources: [demo-ssh] }\n    action: mask\n    mask: { detectors: [ssn] }\n",
    )
    .unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", policy.to_str().unwrap()]);
    c.cli_ok(1, &["policy", "delete", "demo-ssh"]);
}

#[test]
fn an_auditor_finds_a_session_reads_its_decisions_exports_it_and_gets_its_terminal_as_asciicast() {
    // --- 1. One node with Postgres and sshd. alice's psql session: a SELECT (allowed),
    // then a DELETE held until bob approves it in the console.
    let c = Cluster::start_with(1, &["--postgres", "--ssh"]);
    c.wait_all_serving(&[1], READY);
    allow_shells(&c);
    let alice = c.engineer_token();
    let psql = std::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .arg(c.pg_conninfo(1, "agent"))
        .args(["-c", "SELECT name FROM customers WHERE id = 1 /* marker-sessions-select */"])
        .args(["-c", "DELETE FROM customers WHERE id = 13 /* marker-sessions-delete */"])
        .env("PGPASSWORD", &alice)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let bob = Browser::sign_in(&c, 1, "bob", "approvers");
    let inbox = wait_for("the held DELETE in the inbox", READY, || {
        let (_, page) = bob.page("/approvals");
        page.contains("marker-sessions-delete").then_some(page)
    });
    let approval = approval_id(&inbox, "marker-sessions-delete").unwrap();
    let r = bob.post(
        &format!("/approvals/{approval}/decide"),
        &[("decision", "approve"), ("csrf", &csrf(&inbox)), ("reason", "looked fine")],
    );
    assert_eq!(r.status(), 303);
    let o = psql.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", err(&o));

    // --- 2. alice's terminal through the SSH door, with an SSN on screen (masked).
    let o = c.ssh_via(1, &alice, "demo-ssh", &["-tt"], &[], b"echo rec-$((40+2)) 123-45-6789\nexit\n");
    assert!(o.status.success(), "{}", err(&o));

    // --- 3. dana (auditor) searches: by identity and door, then by text.
    let dana = Browser::sign_in(&c, 1, "dana", "auditor");
    let r = dana.get("/sessions");
    let csp = r.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self';") && !csp.contains("wasm"), "the search page keeps the strict CSP: {csp}");
    let page = r.text().unwrap();
    for label in ["Identity", "Resource", "Door", "Status", "Started from", "Started until", "Text", "Searched all"] {
        assert!(page.contains(label), "{label} missing: {page}");
    }
    let (status, page) = dana.page("/sessions?identity=alice&door=postgres");
    assert_eq!(status, 200, "{page}");
    let pg = first_session(&page).expect("alice's psql session listed");
    assert!(page.contains("<title>Sessions · Portcullis node 1</title>"), "{page}");
    assert!(page.contains("postgres") && page.contains("demo"), "{page}");
    let page = wait_for("the session found by text", READY, || {
        let (_, page) = dana.page("/sessions?text=MARKER-SESSIONS-DELETE");
        first_session(&page).is_some().then_some(page)
    });
    assert_eq!(first_session(&page).as_deref(), Some(pg.as_str()), "{page}");
    assert!(page.contains("the text was looked for in the events of the newest"), "{page}");
    let (_, page) = dana.page("/sessions?text=no-such-text-anywhere");
    assert!(page.contains("No session matches"), "{page}");
    let (_, page) = dana.page("/sessions?door=ssh&identity=alice");
    let ssh = first_session(&page).expect("alice's ssh session listed");
    assert_ne!(ssh, pg);
    let (status, page) = dana.page("/sessions?from=yesterday");
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("is not a time"), "{page}");

    // --- 4. The psql session's page: both statements, their decisions, the approval.
    let page = wait_for("both statements with their results", READY, || {
        let (status, page) = dana.page(&format!("/sessions/{pg}"));
        assert_eq!(status, 200, "{page}");
        (page.matches("<dt>Result</dt>").count() >= 2).then_some(page)
    });
    let select = page.find("marker-sessions-select").expect("the SELECT is listed");
    let delete = page.find("marker-sessions-delete").expect("the DELETE is listed");
    assert!(select < delete, "statements are in order");
    let unit = |at: usize| {
        let start = page[..at].rfind("<li").unwrap();
        &page[start..start + page[start..].find("</li>").unwrap()]
    };
    assert!(unit(select).contains("decision-allow") && unit(select).contains("<code>SELECT 1</code>"), "{page}");
    let deleted = unit(delete);
    assert!(
        deleted.contains("decision-approved") && deleted.contains(&format!("<code>{approval}</code>")),
        "{deleted}"
    );
    assert!(deleted.contains("<code>DELETE "), "{deleted}");
    assert!(page.contains("<dt>Rule</dt><dd><code>"), "the rule that decided is named: {page}");
    for fact in
        ["<dt>Who</dt><dd>alice</dd>", "<dt>Door</dt><dd>postgres</dd>", "<dt>Backend login</dt>", "Export JSONL"]
    {
        assert!(page.contains(fact), "{fact} missing: {page}");
    }
    // --- 5. Its JSONL export is the CLI's record.
    let r = dana.get(&format!("/sessions/{pg}/export.jsonl"));
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-disposition"].to_str().unwrap().starts_with("attachment;"));
    let text = r.text().unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let record: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(record["session"]["id"], pg.as_str());
    let cli: serde_json::Value = serde_json::from_str(&c.cli_ok(1, &["sessions", "show", &pg, "--json"])).unwrap();
    assert_eq!(record, cli, "the console's export differs from the CLI's");
    assert!(
        record["events"].as_array().unwrap().iter().any(|e| e["kind"] == "statement"
            && e["detail"]["decision"] == "approved"
            && e["detail"]["approval"] == approval.as_str()),
        "{record}"
    );

    // --- 6. The SSH session's page replays its terminal; the .cast is asciicast v2, masked.
    let r = dana.get(&format!("/sessions/{ssh}"));
    let csp = r.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self' 'wasm-unsafe-eval';"), "{csp}");
    let page = r.text().unwrap();
    let cast_url = attr(&page[page.find("data-cast=").unwrap() - 1..], "data-cast");
    assert!(cast_url.starts_with(&format!("/sessions/{ssh}/recording/")) && cast_url.ends_with(".cast"), "{cast_url}");
    assert!(page.contains("/assets/vendor/asciinema-player-3.18.0.css"), "{page}");
    assert!(page.contains("/assets/vendor/asciinema-player-3.18.0.min.js"), "{page}");
    let cast = wait_for("the recording on record", READY, || {
        let r = dana.get(&cast_url);
        let text = r.text().unwrap();
        text.contains("rec-42").then_some(text)
    });
    let header: serde_json::Value = serde_json::from_str(cast.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2, "{header}");
    assert!(header["width"].as_u64().unwrap() > 0, "{header}");
    assert!(!cast.contains("123-45-6789") && cast.contains("***-**-6789"), "{cast}");
    assert_eq!(dana.get(&format!("/sessions/{pg}/recording/0.cast")).status(), 404, "psql has no terminal");

    // --- 7. An engineer may not read sessions; the page names the role.
    let eve = Browser::sign_in(&c, 1, "eve", "engineers");
    for path in ["/sessions".to_string(), format!("/sessions/{pg}"), format!("/sessions/{pg}/export.jsonl")] {
        let (status, page) = eve.page(&path);
        assert_eq!(status, 403, "{path}: {page}");
        assert!(page.contains("needs the admin or auditor role") && page.contains("auditor"), "{page}");
    }
}

#[test]
fn an_http_session_page_tells_each_request_with_its_headers_and_masked_response() {
    // alice, on one connection to the HTTP door: GET /profile (allowed; its email, API
    // token and JWT masked), then DELETE /orders/3 (denied by the demo policy).
    let c = Cluster::start_with_http(1);
    c.wait_all_serving(&[1], READY);
    let alice = c.engineer_token();
    let header = c.path().join("auth-console-http.header");
    std::fs::write(&header, format!("Authorization: Bearer {alice}\n")).unwrap();
    let ca = c.path().join("ca.pem");
    let url = |path: &str| format!("https://{}{path}", c.http_addr(1));
    let o = std::process::Command::new("curl")
        .args(["-sS", "--http1.1", "-o", "/dev/null", "-w", "%{http_code}\n", "--cacert"])
        .arg(&ca)
        .arg("-H")
        .arg(format!("@{}", header.display()))
        .arg(url("/r/demo-api/profile"))
        .args(["--next", "-sS", "--http1.1", "-o", "/dev/null", "-w", "%{http_code}\n", "-X", "DELETE", "--cacert"])
        .arg(&ca)
        .arg("-H")
        .arg(format!("@{}", header.display()))
        .arg(url("/r/demo-api/orders/3"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "200\n403\n", "{}", err(&o));

    // dana (auditor) finds the session and reads it.
    let dana = Browser::sign_in(&c, 1, "dana", "auditor");
    let (status, page) = dana.page("/sessions?identity=alice&door=http");
    assert_eq!(status, 200, "{page}");
    let id = first_session(&page).expect("alice's HTTP session listed");
    let page = wait_for("the request, its response and the refusal", READY, || {
        let (status, page) = dana.page(&format!("/sessions/{id}"));
        assert_eq!(status, 200, "{page}");
        (page.contains("<dt>Result</dt>") && page.contains("DELETE /orders/3")).then_some(page)
    });
    let unit = |marker: &str| {
        let at = page.find(marker).unwrap_or_else(|| panic!("{marker} missing: {page}"));
        let start = page[..at].rfind("<li").unwrap();
        page[start..start + page[start..].find("</li>").unwrap()].to_string()
    };
    let get = unit("GET /profile");
    assert!(get.contains("decision-allow"), "{get}");
    assert!(get.contains("Request headers (masked)") && get.contains("authorization: ***"), "{get}");
    assert!(get.contains("Response headers (masked)") && get.contains("content-type: application/json"), "{get}");
    assert!(get.contains("<code>200</code>"), "the status is the result: {get}");
    assert!(get.contains("Output (masked preview)") && get.contains("***"), "{get}");
    let delete = unit("DELETE /orders/3");
    assert!(delete.contains("decision-refused") && delete.contains("never allowed"), "{delete}");
    assert!(!delete.contains("<dt>Result</dt>"), "a refused request has no response: {delete}");
    // No credential on the page: neither alice's token nor the key the gateway injected.
    assert!(!page.contains(&alice) && !page.contains(&c.api_key()), "a credential on the session page");
    let o = c.cli_ok(1, &["sessions", "show", &id, "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&o).unwrap();
    let preview = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "result")
        .map(|e| e["detail"]["output"]["preview"].as_str().unwrap().to_string())
        .unwrap();
    let raw_email = preview.split('"').find(|s| s.contains('@') && !s.contains("***"));
    assert!(raw_email.is_none(), "an unmasked email in the recorded preview: {preview}");
}

/// Session ids in a sessions page's table, in order.
fn session_ids(page: &str) -> Vec<String> {
    let Some(at) = page.find("<tbody>") else { return Vec::new() };
    page[at..]
        .split(r#"<a href="/sessions/"#)
        .skip(1)
        .filter_map(|rest| rest.split('"').next().map(str::to_string))
        .collect()
}

#[test]
fn a_search_cut_at_its_bound_links_the_older_sessions() {
    // 501 HTTP sessions of alice (one connection each): one more than a page reads.
    let c = Cluster::start_with_http(1);
    c.wait_all_serving(&[1], READY);
    let alice = c.engineer_token();
    let (host, port) = c.http_addr(1).rsplit_once(':').map(|(h, p)| (h.to_string(), p.to_string())).unwrap();
    let script = format!(
        "import http.client, ssl, sys\n\
         token = sys.stdin.read().strip()\n\
         ctx = ssl.create_default_context(cafile='{ca}')\n\
         for i in range(501):\n\
         \x20   conn = http.client.HTTPSConnection('{host}', {port}, context=ctx)\n\
         \x20   conn.request('GET', '/r/demo-api/orders/1', headers={{'Authorization': 'Bearer ' + token}})\n\
         \x20   assert conn.getresponse().read() and True\n\
         \x20   conn.close()\n",
        ca = c.path().join("ca.pem").display()
    );
    let mut child = std::process::Command::new("python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(alice.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", err(&o));

    let dana = Browser::sign_in(&c, 1, "dana", "auditor");
    let (status, first) = dana.page("/sessions?identity=alice&door=http");
    assert_eq!(status, 200, "{first}");
    let newest = session_ids(&first);
    assert_eq!(newest.len(), 500, "a page reads 500");
    assert!(first.contains("Searched the newest 500"), "the bound is said: {first}");
    let link = first.find("Older sessions").map(|at| &first[first[..at].rfind("href=\"").unwrap() + 6..at]).unwrap();
    let href = unescape(&link[..link.find('"').unwrap()]);
    assert!(href.starts_with("/sessions?identity=alice&") && href.contains("door=http"), "{href}");
    let (status, second) = dana.page(&href);
    assert_eq!(status, 200, "{second}");
    let older = session_ids(&second);
    assert_eq!(older.len(), 1, "the one session the first page could not read: {second}");
    assert!(!newest.contains(&older[0]), "the older page repeats none of the first");
    assert!(!second.contains("Older sessions"), "nothing older is left: {second}");
}
