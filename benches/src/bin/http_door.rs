//! The HTTP door under small GETs, against the API directly and HAProxy in front of it.
//!
//! Run (the release binaries must exist; the bench builds nothing itself):
//!
//! ```sh
//! cargo build --release -p portcullis -p portcullis-benches
//! ./target/release/http_door [--seconds 5] [--clients 32] [--nodes 1] [--only direct,haproxy,fast,strict] [--plain-haproxy]
//! ```
//!
//! One run on loopback: a playground (`portcullis dev --http --detach`, binary from
//! `target/release/portcullis` or `PORTCULLIS_BIN`) whose resource `demo-api` (audit
//! strict) is the playground's own demo API, plus `demo-api-fast` (the same API, audit
//! fast), with a policy that allows GET on both and masks nothing. HAProxy
//! (`haproxy` on PATH or in /usr/sbin; HTTP mode, TLS terminated with the playground's
//! node certificate, keep-alive to the API, the API's key injected and the
//! `X-Forwarded-For/Proto/Host` headers set like the gateway does; `--plain-haproxy`
//! leaves those headers out) listens on a random port, its config in the playground's
//! temp dir.
//!
//! The load generator is in this process (`portcullis_benches::http_load`, hyper's
//! HTTP/1.1 client): `--clients` keep-alive connections each sending `GET /orders/1`
//! back to back for `--seconds`, then one connection alone for `--seconds` (latency).
//! Targets: the API directly (plain HTTP, its key), HAProxy (TLS), the gateway's door
//! with `demo-api-fast` and with `demo-api` (TLS, an engineer's token). Connections are
//! opened and warmed (1 s) before each measurement: no handshake is timed. Printed:
//! requests/s, p50 and p99 per target, CPU per request of each process, and the ratios
//! (gateway fast / HAProxy throughput; gateway p50 minus direct p50 at one client).
//!
//! Everything started is stopped on exit, also on failure (a guard's `Drop`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_benches::http_load::{Clients, Run, Target, tls_connector};
use portcullis_benches::{cpu, ms, quantile};
use rustls::pki_types::ServerName;
use serde_json::Value;

const POLICY: &str =
    "name: bench\nrules:\n  - match: { resources: [demo-api, demo-api-fast], kinds: [get] }\n    action: allow\n";

/// The request every client sends (a small JSON order, about 100 bytes).
const PATH: &str = "/orders/1";

struct Args {
    seconds: u64,
    clients: usize,
    nodes: u64,
    /// Which targets to measure (all by default; the ratios need all four).
    only: Vec<String>,
    /// HAProxy without the `X-Forwarded-*` headers (the peer as measured before
    /// 2026-12-07: less work for HAProxy and for the API behind it).
    plain_haproxy: bool,
}

fn parse_args() -> Args {
    let mut a = Args { seconds: 5, clients: 32, nodes: 1, only: Vec::new(), plain_haproxy: false };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--seconds" => a.seconds = value.parse().expect("--seconds N"),
            "--clients" => a.clients = value.parse().expect("--clients N"),
            "--nodes" => a.nodes = value.parse().expect("--nodes N"),
            "--only" => a.only = value.split(',').map(|t| t.trim().to_string()).collect(),
            "--plain-haproxy" => {
                a.plain_haproxy = true;
                i += 1;
                continue;
            }
            other => panic!(
                "unknown argument {other:?}; usage: http_door [--seconds N] [--clients N] [--nodes N] [--only direct,haproxy,fast,strict] [--plain-haproxy]"
            ),
        }
        i += 2;
    }
    a
}

fn portcullis_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PORTCULLIS_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    let bin = target.join("release").join("portcullis");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --release -p portcullis` first (or set PORTCULLIS_BIN)",
        bin.display()
    );
    bin
}

fn haproxy_bin() -> PathBuf {
    ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy", "/usr/bin/haproxy"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("haproxy not found (Debian: apt-get install haproxy)")
}

/// Everything this run started; stopped on drop, whatever happened.
struct Guard {
    dir: tempfile::TempDir,
    pids: Vec<u32>,
    haproxy: Option<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.haproxy {
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in &self.pids {
            let _ = Command::new("kill").arg(pid.to_string()).stderr(Stdio::null()).status();
        }
        if std::thread::panicking() {
            for e in std::fs::read_dir(self.dir.path()).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.ends_with(".log") && !name.contains("requests") {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    eprintln!("--- {name} (last 15 lines)");
                    for l in &lines[lines.len().saturating_sub(15)..] {
                        eprintln!("{l}");
                    }
                }
            }
        }
        eprintln!("# stopped everything started in {}", self.dir.path().display());
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// HAProxy in HTTP mode in front of the API: TLS with node 1's certificate, the
/// client's `Authorization` replaced by the API's key (as the gateway injects it), and
/// the `X-Forwarded-For/Proto/Host` headers the gateway sets (the API logs every header
/// it gets, so a peer sending fewer would make the API's side cheaper, not the proxy).
fn start_haproxy(dir: &Path, api: &str, key: &str, plain: bool, guard: &mut Guard) -> SocketAddr {
    let port = free_port();
    let pem = [std::fs::read(dir.join("node1.pem")).unwrap(), std::fs::read(dir.join("node1.key")).unwrap()].concat();
    std::fs::write(dir.join("haproxy-bench.pem"), pem).unwrap();
    let config = format!(
        "global\n\
         \x20   maxconn 4096\n\
         defaults\n\
         \x20   mode http\n\
         \x20   timeout connect 2s\n\
         \x20   timeout client 60s\n\
         \x20   timeout server 60s\n\
         \x20   option http-keep-alive\n\
         frontend bench\n\
         \x20   bind 127.0.0.1:{port} ssl crt {dir}/haproxy-bench.pem alpn http/1.1\n\
         \x20   http-request set-header Authorization \"Bearer {key}\"\n\
         {forwarded}\
         \x20   default_backend api\n\
         backend api\n\
         \x20   http-reuse always\n\
         \x20   server api {api}\n",
        dir = dir.display(),
        forwarded = if plain {
            ""
        } else {
            "    option forwardfor\n    http-request set-header X-Forwarded-Proto https\n    \
             http-request set-header X-Forwarded-Host %[req.hdr(host)]\n"
        },
    );
    let path = dir.join("haproxy-bench.cfg");
    std::fs::write(&path, config).unwrap();
    let haproxy = haproxy_bin();
    let check = Command::new(&haproxy).args(["-c", "-q", "-f"]).arg(&path).output().unwrap();
    assert!(check.status.success(), "haproxy -c: {}", text(&check));
    let log = std::fs::File::create(dir.join("haproxy-bench.log")).unwrap();
    let child = Command::new(&haproxy)
        .args(["-db", "-f"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    guard.haproxy = Some(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "haproxy does not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    format!("127.0.0.1:{port}").parse().unwrap()
}

/// Processes whose CPU a target's requests cost (name, pid).
type Procs = Vec<(&'static str, u32)>;

struct Measured {
    load: Run,
    one: Run,
    /// CPU µs per request in the load run, per process (the load generator last).
    cpu: Vec<(&'static str, f64)>,
}

async fn measure(target: Arc<Target>, clients: usize, seconds: u64, procs: &Procs) -> Measured {
    let ticks = cpu::ticks_per_second();
    let me = std::process::id();
    let mut many = Clients::open(target.clone(), clients).await;
    let warm = many.run_for(Duration::from_secs(1)).await;
    assert!(warm.ok > 0, "{}: no request succeeded: {:?}", target.name, warm.first_error);
    let before: Vec<f64> = procs
        .iter()
        .map(|(_, pid)| cpu::seconds(*pid, ticks).unwrap())
        .chain([cpu::seconds(me, ticks).unwrap()])
        .collect();
    let load = many.run_for(Duration::from_secs(seconds)).await;
    let after: Vec<f64> = procs
        .iter()
        .map(|(_, pid)| cpu::seconds(*pid, ticks).unwrap())
        .chain([cpu::seconds(me, ticks).unwrap()])
        .collect();
    drop(many);
    let names = procs.iter().map(|(n, _)| *n).chain(["load generator"]);
    let cpu =
        names.zip(before.iter().zip(&after)).map(|(n, (b, a))| (n, (a - b) * 1e6 / load.ok.max(1) as f64)).collect();
    let mut single = Clients::open(target.clone(), 1).await;
    single.run_for(Duration::from_secs(1)).await;
    let one = single.run_for(Duration::from_secs(seconds)).await;
    for run in [&load, &one] {
        if let Some(e) = &run.first_error {
            eprintln!("# {}: {} failed requests, the first: {e}", target.name, run.errors);
        }
    }
    Measured { load, one, cpu }
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let bin = portcullis_bin();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut guard = Guard { dir: tempfile::tempdir().unwrap(), pids: Vec::new(), haproxy: None };
    let dir = guard.dir.path().to_path_buf();

    // --- the playground
    let o = Command::new(&bin)
        .args(["dev", "--http", "--detach", "--nodes", &args.nodes.to_string(), "--dir"])
        .arg(&dir)
        // Every client is the same identity: lift the per-identity session cap.
        .env("PORTCULLIS_LIMITS__MAX_SESSIONS_PER_IDENTITY", "10000")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let cluster: Option<Value> =
        std::fs::read_to_string(dir.join("cluster.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    if let Some(c) = &cluster {
        guard.pids.extend(c["nodes"].as_array().unwrap().iter().filter_map(|n| n["pid"].as_u64()).map(|p| p as u32));
        guard.pids.extend(c["issuer_pid"].as_u64().map(|p| p as u32));
        guard.pids.extend(c["http_api"]["pid"].as_u64().map(|p| p as u32));
    }
    assert!(o.status.success(), "portcullis dev --http --detach failed: {}", text(&o));
    let cluster = cluster.expect("cluster.json");
    let api = cluster["http_api"]["addr"].as_str().unwrap().to_string();
    let api_pid = cluster["http_api"]["pid"].as_u64().unwrap() as u32;
    let node = &cluster["nodes"][0];
    let node_pid = node["pid"].as_u64().unwrap() as u32;
    let door: SocketAddr = node["http"].as_str().unwrap().parse().unwrap();
    let key = std::fs::read_to_string(cluster["http_api"]["key_file"].as_str().unwrap()).unwrap().trim().to_string();

    let token = |sub: &str, groups: &str| {
        let o = Command::new(&bin)
            .args(["dev", "token", "--dir"])
            .arg(&dir)
            .args(["--sub", sub, "--groups", groups, "--ttl", "4h"])
            .output()
            .unwrap();
        assert!(o.status.success(), "dev token: {}", text(&o));
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    let admin = token("bench-admin", "admin");
    let cli = |argv: &[&str]| {
        let o = Command::new(&bin)
            .args(argv)
            .env("PORTCULLIS_ENDPOINT", node["admin"].as_str().unwrap())
            .env("PORTCULLIS_CA", dir.join("ca.pem"))
            .env("PORTCULLIS_TOKEN", &admin)
            .env("PORTCULLIS_CONFIG_DIR", dir.join("cli-config"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "portcullis {argv:?}: {}", text(&o));
    };
    let fast = dir.join("demo-api-fast.yaml");
    std::fs::write(
        &fast,
        format!(
            "name: demo-api-fast\nprotocol: http\naddress: http://{api}\naudit: fast\ncredential: {{ bearer: \"{key}\" }}\n"
        ),
    )
    .unwrap();
    cli(&["resource", "apply", "-f", fast.to_str().unwrap()]);
    let policy = dir.join("bench-policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    cli(&["policy", "delete", "demo-api"]);
    cli(&["policy", "apply", "-f", policy.to_str().unwrap()]);

    let haproxy = start_haproxy(&dir, &api, &key, args.plain_haproxy, &mut guard);
    let haproxy_pid = guard.haproxy.as_ref().unwrap().id();

    // --- the targets
    let tls = tls_connector(&std::fs::read(dir.join("ca.pem")).unwrap());
    let ip = ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
    let engineer = format!("Bearer {}", token("bench", "engineers"));
    let targets: Vec<(Target, Procs)> = vec![
        (
            Target {
                name: "direct",
                addr: api.parse().unwrap(),
                tls: None,
                path: PATH.into(),
                authorization: format!("Bearer {key}"),
            },
            vec![("api", api_pid)],
        ),
        (
            Target {
                name: "haproxy",
                addr: haproxy,
                tls: Some((ip.clone(), tls.clone())),
                path: PATH.into(),
                authorization: engineer.clone(),
            },
            vec![("haproxy", haproxy_pid), ("api", api_pid)],
        ),
        (
            Target {
                name: "gateway fast",
                addr: door,
                tls: Some((ip.clone(), tls.clone())),
                path: format!("/r/demo-api-fast{PATH}"),
                authorization: engineer.clone(),
            },
            vec![("node", node_pid), ("api", api_pid)],
        ),
        (
            Target {
                name: "gateway strict",
                addr: door,
                tls: Some((ip, tls)),
                path: format!("/r/demo-api{PATH}"),
                authorization: engineer,
            },
            vec![("node", node_pid), ("api", api_pid)],
        ),
    ];

    println!(
        "http_door: {} node(s), loopback; GET {PATH} (small JSON); {} keep-alive clients and 1 client, {} s each",
        args.nodes, args.clients, args.seconds
    );
    println!();
    println!(
        "{:<15} {:>10} {:>9} {:>9}   {:>10} {:>9} {:>9}   CPU µs/request ({} clients)",
        "target",
        format!("{}c req/s", args.clients),
        "p50 ms",
        "p99 ms",
        "1c req/s",
        "p50 ms",
        "p99 ms",
        args.clients
    );
    let mut results = Vec::new();
    for (target, procs) in targets {
        let name = target.name;
        let short = name.trim_start_matches("gateway ");
        if !args.only.is_empty() && !args.only.iter().any(|o| o == short) {
            continue;
        }
        let m = measure(Arc::new(target), args.clients, args.seconds, &procs).await;
        let cpu: Vec<String> = m.cpu.iter().map(|(n, us)| format!("{n} {us:.0}")).collect();
        println!(
            "{:<15} {:>10.0} {:>9.3} {:>9.3}   {:>10.0} {:>9.3} {:>9.3}   {}",
            name,
            m.load.rate(),
            ms(quantile(&m.load.latencies, 0.5)),
            ms(quantile(&m.load.latencies, 0.99)),
            m.one.rate(),
            ms(quantile(&m.one.latencies, 0.5)),
            ms(quantile(&m.one.latencies, 0.99)),
            cpu.join(", ")
        );
        results.push(m);
    }
    let [direct, haproxy, fast, strict] = &results[..] else {
        return;
    };
    let p50 = |m: &Measured| ms(quantile(&m.one.latencies, 0.5));
    println!();
    println!(
        "ratio gateway fast / haproxy throughput ({} clients): {:.2}   (strict / haproxy: {:.2})",
        args.clients,
        fast.load.rate() / haproxy.load.rate(),
        strict.load.rate() / haproxy.load.rate()
    );
    println!(
        "added p50 latency at 1 client vs direct: haproxy {:+.3} ms, gateway fast {:+.3} ms, gateway strict {:+.3} ms",
        p50(haproxy) - p50(direct),
        p50(fast) - p50(direct),
        p50(strict) - p50(direct)
    );
}
