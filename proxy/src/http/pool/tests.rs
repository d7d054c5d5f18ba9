#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::Semaphore;

use super::{Destination, Pool};
use crate::http::upstream::Base;

/// A keep-alive HTTP/1.1 backend that counts the connections it accepted. `/close`
/// answers with `Connection: close`; `/hold` answers once a permit is added to `hold`.
struct Backend {
    address: String,
    accepted: Arc<AtomicUsize>,
    hold: Arc<Semaphore>,
}

async fn backend() -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let hold = Arc::new(Semaphore::new(0));
    let (count, gate) = (accepted.clone(), hold.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let gate = gate.clone();
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let gate = gate.clone();
                async move {
                    let mut response = http::Response::new(Full::new(Bytes::from_static(b"hello")));
                    match req.uri().path() {
                        "/close" => {
                            response.headers_mut().insert("connection", http::HeaderValue::from_static("close"));
                        }
                        "/hold" => gate.acquire().await.unwrap().forget(),
                        _ => {}
                    }
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service));
        }
    });
    Backend { address, accepted, hold }
}

fn get(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(path).header("host", "backend").body(Full::new(Bytes::new())).unwrap()
}

async fn call(pool: &Arc<Pool>, address: &str, path: &str) -> String {
    let base = Base::parse(address).unwrap();
    let to = Destination { resource: "api", address, base: &base, ca_pem: None };
    let response = pool.send(&to, get(path), Duration::from_secs(5)).await.unwrap();
    String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

async fn idle_becomes(pool: &Pool, n: usize) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while pool.idle("api") != n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("idle connections stayed {} (want {n})", pool.idle("api")));
}

#[tokio::test]
async fn requests_one_after_another_share_one_connection() {
    let b = backend().await;
    let pool = Pool::new(8, Duration::from_secs(30));
    for _ in 0..5 {
        assert_eq!(call(&pool, &b.address, "/").await, "hello");
        idle_becomes(&pool, 1).await;
    }
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn requests_in_flight_together_never_share_a_connection() {
    let b = backend().await;
    let pool = Pool::new(8, Duration::from_secs(30));
    let (p1, p2, a) = (pool.clone(), pool.clone(), b.address.clone());
    let first = tokio::spawn(async move { call(&p1, &a, "/hold").await });
    let a = b.address.clone();
    let second = tokio::spawn(async move { call(&p2, &a, "/hold").await });
    tokio::time::timeout(Duration::from_secs(5), async {
        while b.accepted.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap();
    b.hold.add_permits(2);
    assert_eq!(first.await.unwrap(), "hello");
    assert_eq!(second.await.unwrap(), "hello");
    idle_becomes(&pool, 2).await;
    assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_the_backend_closes_is_not_kept() {
    let b = backend().await;
    let pool = Pool::new(8, Duration::from_secs(30));
    for _ in 0..3 {
        assert_eq!(call(&pool, &b.address, "/close").await, "hello");
    }
    assert_eq!(b.accepted.load(Ordering::SeqCst), 3);
    assert_eq!(pool.idle("api"), 0);
}

#[tokio::test]
async fn a_response_dropped_half_read_takes_its_connection_along() {
    let b = backend().await;
    let pool = Pool::new(8, Duration::from_secs(30));
    let base = Base::parse(&b.address).unwrap();
    let to = Destination { resource: "api", address: &b.address, base: &base, ca_pem: None };
    let response = pool.send(&to, get("/"), Duration::from_secs(5)).await.unwrap();
    drop(response);
    assert_eq!(call(&pool, &b.address, "/").await, "hello");
    assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn idle_connections_are_capped_per_resource() {
    let b = backend().await;
    let pool = Pool::new(1, Duration::from_secs(30));
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let (p, a) = (pool.clone(), b.address.clone());
            tokio::spawn(async move { call(&p, &a, "/hold").await })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(5), async {
        while b.accepted.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap();
    b.hold.add_permits(3);
    for c in calls {
        assert_eq!(c.await.unwrap(), "hello");
    }
    idle_becomes(&pool, 1).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(pool.idle("api"), 1);
}

#[tokio::test]
async fn a_resource_moved_to_another_backend_does_not_reuse_the_old_ones_connections() {
    let (old, new) = (backend().await, backend().await);
    let pool = Pool::new(8, Duration::from_secs(30));
    assert_eq!(call(&pool, &old.address, "/").await, "hello");
    idle_becomes(&pool, 1).await;
    assert_eq!(call(&pool, &new.address, "/").await, "hello");
    assert_eq!((old.accepted.load(Ordering::SeqCst), new.accepted.load(Ordering::SeqCst)), (1, 1));
}

#[tokio::test]
async fn a_backend_that_closes_without_saying_so_costs_no_request() {
    // Each connection answers one request (keep-alive implied) and is then closed by
    // the backend: the pool may hold it when the close arrives; the next request
    // must still succeed, on a new connection.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = tcp.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            });
        }
    });
    let pool = Pool::new(8, Duration::from_secs(30));
    for _ in 0..20 {
        assert_eq!(call(&pool, &address, "/").await, "hello");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A backend that answers the first request of each connection and closes the
/// connection on the second without answering it; returns its address and the
/// methods of the requests it received.
async fn answers_once_per_connection() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = received.clone();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                for answer in [true, false] {
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = tcp.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                    let method = String::from_utf8_lossy(&got).split(' ').next().unwrap_or_default().to_string();
                    log.lock().unwrap().push(method);
                    if answer {
                        tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await.unwrap();
                    }
                }
            });
        }
    });
    (address, received)
}

#[tokio::test]
async fn a_get_lost_on_a_reused_connection_is_sent_again_and_a_post_never_is() {
    let (address, received) = answers_once_per_connection().await;
    let pool = Pool::new(8, Duration::from_secs(30));
    let base = Base::parse(&address).unwrap();
    let to = Destination { resource: "api", address: &address, base: &base, ca_pem: None };
    assert_eq!(call(&pool, &address, "/").await, "hello");
    idle_becomes(&pool, 1).await;
    // Reused, lost, sent again on a new connection.
    assert_eq!(call(&pool, &address, "/").await, "hello");
    assert_eq!(*received.lock().unwrap(), ["GET", "GET", "GET"]);
    idle_becomes(&pool, 1).await;
    let post = http::Request::post("/").header("host", "backend").body(Full::new(Bytes::from_static(b"x"))).unwrap();
    let e = pool.send(&to, post, Duration::from_secs(5)).await.unwrap_err();
    assert!(e.to_string().contains("127.0.0.1"), "{e}");
    assert_eq!(*received.lock().unwrap(), ["GET", "GET", "GET", "POST"], "the POST went out once");
}

#[tokio::test]
async fn a_tls_backend_is_checked_against_the_pinned_ca_and_its_connection_kept() {
    use portcullis_raft::network::dev_ca;
    use portcullis_raft::network::tls::{TlsMaterial, TlsPaths};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    dev_ca::ensure_ca(dir.path()).unwrap();
    dev_ca::issue_node_cert(dir.path(), 1).unwrap();
    dev_ca::ensure_ca(other.path()).unwrap();
    let tls = TlsMaterial::load(&TlsPaths {
        ca: dir.path().join("ca.pem"),
        cert: dir.path().join("node1.pem"),
        key: dir.path().join("node1.key"),
    })
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.rustls_server_config().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("https://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else { return };
                let service = service_fn(|_req: http::Request<hyper::body::Incoming>| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(b"secure"))))
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    let pinned = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let stranger = std::fs::read_to_string(other.path().join("ca.pem")).unwrap();
    let base = Base::parse(&address).unwrap();
    let pool = Pool::new(8, Duration::from_secs(30));
    let to = Destination { resource: "api", address: &address, base: &base, ca_pem: Some(&stranger) };
    let e = pool.send(&to, get("/"), Duration::from_secs(5)).await.unwrap_err();
    assert!(e.to_string().contains("TLS"), "{e}");
    let to = Destination { resource: "api", address: &address, base: &base, ca_pem: Some(&pinned) };
    for _ in 0..3 {
        let response = pool.send(&to, get("/"), Duration::from_secs(5)).await.unwrap();
        assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "secure");
        idle_becomes(&pool, 1).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "one refused, one kept for three requests");
}
