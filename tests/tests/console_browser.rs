//! The web console in a real browser: headless Chromium from Debian's packages, driven
//! through WebDriver (chromium-driver) by Selenium from `tests/python/console_browser.py`.
//!
//! bob (approvers) signs in through the dev issuer's sign-in page, keeps the inbox open
//! while alice's DELETE is held on another node, approves it with the keyboard (and a
//! reason), and psql finishes; his own held DELETE is refused; eve (engineers) gets the
//! 403 page naming the role; dana (auditor) sees the cluster and the policies. Every
//! page is checked at 1280 and 800 px for a horizontal scrollbar and screenshotted. In a
//! second test, dana opens an SSH session's page and the asciinema-player replays its
//! terminal there (WebAssembly under that page's CSP). The
//! screenshots stay in the cluster's temp dir while it lives and are copied to
//! `target/console-screenshots/`.
//!
//! The browser trusts the cluster CA through a throwaway NSS database (see the script),
//! not `--ignore-certificate-errors`. Without Chromium, chromium-driver, certutil or the
//! drivers venv with Selenium (scripts/install-deps.sh installs them all; CI runs it), the
//! test says why and skips.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use portcullis_tests::{Cluster, err};

const READY: Duration = Duration::from_secs(30);

/// The drivers venv's Python with Selenium, and the browser's parts; or why not.
fn browser_python() -> Result<PathBuf, String> {
    for (bin, package) in
        [("/usr/bin/chromium", "chromium"), ("/usr/bin/chromedriver", "chromium-driver"), ("certutil", "libnss3-tools")]
    {
        let found = if bin.starts_with('/') {
            Path::new(bin).exists()
        } else {
            Command::new("sh").args(["-c", &format!("command -v {bin}")]).output().is_ok_and(|o| o.status.success())
        };
        if !found {
            return Err(format!("{bin} is missing (Debian package {package}): run scripts/install-deps.sh (CI does)"));
        }
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or("neither XDG_CACHE_HOME nor HOME is set")?;
    let python = cache.join("portcullis-ci/drivers/bin/python");
    let has_selenium = Command::new(&python).args(["-c", "import selenium"]).output().is_ok_and(|o| o.status.success());
    if !has_selenium {
        return Err(format!("{} has no selenium: run scripts/install-deps.sh (CI does)", python.display()));
    }
    Ok(python)
}

/// Where the screenshots are kept after the cluster's temp dir is gone.
fn artefacts() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    target.join("console-screenshots")
}

/// Copy the screenshots in `shots` to [`artefacts`] (beside those of the other browser
/// tests: both tests write there, so neither clears it).
fn keep_screenshots(shots: &Path) -> PathBuf {
    let kept = artefacts();
    std::fs::create_dir_all(&kept).unwrap();
    for entry in std::fs::read_dir(shots).into_iter().flatten().flatten() {
        std::fs::copy(entry.path(), kept.join(entry.file_name())).unwrap();
    }
    println!("console screenshots: {}", kept.display());
    kept
}

#[test]
fn in_a_browser_an_approver_releases_a_delete_held_on_another_node_and_every_page_fits_800_px() {
    let python = match browser_python() {
        Ok(p) => p,
        Err(why) => {
            println!("SKIPPED: the console's browser test cannot run: {why}");
            return;
        }
    };
    // --- 1. Three nodes with Postgres; bob's own DELETE waits on node 3.
    let c = Cluster::start_with_postgres(3);
    c.wait_all_serving(&[1, 2, 3], READY);
    let bob = c.token("bob", &["engineers", "approvers"]);
    let mut own = c.spawn_psql(3, &bob, "DELETE FROM customers WHERE id = 11 /* marker-browser-own */");
    let alice = c.engineer_token();
    let shots = c.path().join("screenshots");

    // --- 2. The browser: bob on node 1, eve on node 3, dana on node 2.
    let config = serde_json::json!({
        "ca": c.ca(),
        "approver": c.console_url(1),
        "engineer": c.console_url(3),
        "auditor": c.console_url(2),
        "held": "marker-browser-held",
        "own": "marker-browser-own",
        "out": shots,
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/console_browser.py");
    let mut browser = Command::new(&python)
        .arg(&script)
        .arg(config.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut held = None;
    let mut report = None;
    for line in BufReader::new(browser.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        match line.as_str() {
            // The inbox is open: alice's DELETE is held now, on node 2.
            "STEP inbox-open" => {
                held = Some(c.spawn_psql(2, &alice, "DELETE FROM customers WHERE id = 12 /* marker-browser-held */"));
                assert!(!c.postgres_log().contains("marker-browser-held"), "a held statement reached the backend");
            }
            // --- 3. Approved in the browser on node 1: psql on node 2 finishes.
            "STEP approved" => {
                let o = held.take().expect("approved before it was held").wait_with_output().unwrap();
                assert!(o.status.success(), "{}", err(&o));
                assert_eq!(c.postgres_log().matches("marker-browser-held").count(), 1, "the DELETE runs exactly once");
            }
            l if l.starts_with('{') => report = Some(serde_json::from_str::<serde_json::Value>(l).unwrap()),
            l => println!("browser: {l}"),
        }
    }
    let status = browser.wait().unwrap();
    own.kill().unwrap();
    let _ = own.wait();

    // --- 4. Screenshots: kept beside the cluster and copied out for people to look at.
    let kept = keep_screenshots(&shots);
    assert!(status.success(), "the browser script failed (its message is above); screenshots in {}", kept.display());
    assert!(held.is_none(), "the browser never approved alice's DELETE");
    let report = report.expect("the browser script's report");
    println!("browser saw: {}", report["seen"]);
    let taken: Vec<&str> = report["screenshots"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    for page in ["inbox", "forbidden", "cluster", "policies", "policies-tested"] {
        for width in [1280, 800] {
            let name = format!("{page}-{width}.png");
            assert!(taken.iter().any(|t| t.ends_with(&name)), "no screenshot {name}: {taken:?}");
            assert!(kept.join(&name).exists(), "{name} was not copied");
        }
    }
    assert!(report["seen"]["own_refusal"].as_str().unwrap().contains("may not decide their own request"));
    assert!(report["seen"]["engineer_refusal"].as_str().unwrap().contains("approver role"));
}

#[test]
fn in_a_browser_an_auditor_replays_an_ssh_terminal_in_the_session_page() {
    let python = match browser_python() {
        Ok(p) => p,
        Err(why) => {
            println!("SKIPPED: the console's browser test cannot run: {why}");
            return;
        }
    };
    // --- 1. One node with sshd; shells allowed for engineers, SSNs masked; alice's
    // terminal session prints a marker and an SSN.
    let c = Cluster::start_with_ssh(1);
    c.wait_all_serving(&[1], READY);
    let policy = c.path().join("shells.yaml");
    std::fs::write(
        &policy,
        "name: shells\nrules:\n  - match: { groups: [engineers], resources: [demo-ssh], kinds: [shell] }\n    action: allow\n  \
         - match: { resources: [demo-ssh] }\n    action: mask\n    mask: { detectors: [ssn] }\n",
    )
    .unwrap();
    c.cli_ok(1, &["policy", "apply", "-f", policy.to_str().unwrap()]);
    c.cli_ok(1, &["policy", "delete", "demo-ssh"]);
    let alice = c.engineer_token();
    let o = c.ssh_via(1, &alice, "demo-ssh", &["-tt"], &[], b"echo replay-$((40+2)) 123-45-6789\nsleep 1\nexit\n");
    assert!(o.status.success(), "{}", err(&o));

    // --- 2. dana (auditor) opens it in the browser, and the player replays it.
    let shots = c.path().join("screenshots");
    let config = serde_json::json!({
        "mode": "replay",
        "ca": c.ca(),
        "auditor": c.console_url(1),
        "recorded": "replay-42",
        "out": shots,
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/console_browser.py");
    let o = Command::new(&python).arg(&script).arg(config.to_string()).stdin(Stdio::null()).output().unwrap();
    let kept = keep_screenshots(&shots);
    assert!(o.status.success(), "the browser script failed: {}; screenshots in {}", err(&o), kept.display());
    let stdout = String::from_utf8_lossy(&o.stdout);
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().rfind(|l| l.starts_with('{')).expect("the script's report")).unwrap();
    println!("browser saw: {}", report["seen"]);
    for page in ["sessions", "session"] {
        for width in [1280, 800] {
            assert!(kept.join(format!("{page}-{width}.png")).exists(), "no screenshot {page}-{width}.png");
        }
    }
    assert!(report["seen"]["terminal"].as_str().unwrap().contains("replay-42"), "{report}");
}
