//! Audit-event commit throughput and latency on a 3-node loopback cluster, and
//! leader-kill failover time.
//!
//! Run: `cargo run --release -p portcullis-benches --bin cluster_commit [-- --seconds 5]`
//!
//! Peer measured in the same run: the local disk alone (a sled insert + fdatasync per
//! commit, grouped like ours), i.e. what one machine's durable log can do without any
//! replication. Ratios print as cluster / disk-alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use portcullis_benches::{ms, quantile, start_cluster, wait_serving};
use portcullis_raft::audit_batch::EventBatcher;
use portcullis_raft::command::Op;
use portcullis_raft::model::{Event, Protocol, Session, SessionStatus, now_millis};
use portcullis_raft::store::Durability;
use tokio_util::sync::CancellationToken;

struct Run {
    events_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

#[tokio::main]
async fn main() {
    let seconds: u64 =
        std::env::args().skip_while(|a| a != "--seconds").nth(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let window = Duration::from_secs(seconds);
    println!(
        "# cluster_commit: {seconds}s per measurement, {} cores",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );

    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), 3).await;
    let leader = wait_serving(&nodes, None).await;
    // Write through a follower too: forwarding is part of the real path.
    let follower = nodes.keys().copied().find(|id| *id != leader).unwrap();

    println!("\n## audit events committed by a quorum (batched, via leader node {leader} / follower node {follower})");
    println!(
        "{:>8} {:>10} {:>14} {:>10} {:>10} {:>14} {:>8}",
        "writers", "entry", "events/s", "p50 ms", "p99 ms", "disk events/s", "ratio"
    );
    for writers in [1usize, 16, 256] {
        let disk = disk_alone(writers, window).await;
        for (label, id) in [("leader", leader), ("follower", follower)] {
            let node = nodes[&id].node.clone();
            let r = batched(node, writers, window).await;
            println!(
                "{writers:>8} {label:>10} {:>14.0} {:>10.2} {:>10.2} {:>14.0} {:>8.2}",
                r.events_per_sec,
                ms(r.p50),
                ms(r.p99),
                disk.events_per_sec,
                r.events_per_sec / disk.events_per_sec
            );
        }
    }
    drop(nodes);

    println!("\n## leader kill -> every survivor serving again (fresh cluster per round)");
    let mut samples = Vec::new();
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = start_cluster(dir.path(), 3).await;
        let leader = wait_serving(&nodes, None).await;
        let killed = nodes.remove(&leader).unwrap();
        let t = Instant::now();
        killed.stop.cancel();
        let _ = killed.node.raft().shutdown().await;
        wait_serving(&nodes, Some(leader)).await;
        let took = t.elapsed();
        println!("round {round}: {:.0} ms", ms(took));
        samples.push(took);
        for n in nodes.values() {
            n.stop.cancel();
        }
    }
    samples.sort();
    println!(
        "failover p50 {:.0} ms, max {:.0} ms (target <= 1500 ms)",
        ms(quantile(&samples, 0.5)),
        ms(samples[samples.len() - 1])
    );
}

/// `writers` concurrent tasks each appending events through one batcher for `window`.
async fn batched(node: portcullis_raft::node::ClusterNode, writers: usize, window: Duration) -> Run {
    let stop = CancellationToken::new();
    let batcher = EventBatcher::spawn(node.clone(), 4096, stop.clone());
    let sessions: Vec<String> = (0..writers).map(|i| format!("bench-{}-{i}-{}", now_millis(), writers)).collect();
    for id in &sessions {
        node.write(Op::OpenSession {
            session: Session {
                id: id.clone(),
                identity: "bench".into(),
                resource: "bench".into(),
                protocol: Protocol::Postgres,
                node: node.id(),
                client_addr: "127.0.0.1:1".into(),
                started_at: now_millis(),
                ended_at: None,
                status: SessionStatus::Open,
                events: 0,
            },
        })
        .await
        .unwrap();
    }
    let running = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for id in sessions {
        let batcher = batcher.clone();
        let running = running.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while running.load(Ordering::Relaxed) {
                let t = Instant::now();
                batcher
                    .append(Event {
                        session_id: id.clone(),
                        seq: 0,
                        at: now_millis(),
                        kind: "statement".into(),
                        detail: serde_json::json!({"sql": "SELECT 1", "decision": "allow"}).into(),
                    })
                    .await
                    .unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    tokio::time::sleep(window).await;
    running.store(false, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    stop.cancel();
    all.sort();
    Run {
        events_per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: quantile(&all, 0.5),
        p99: quantile(&all, 0.99),
    }
}

/// The peer: one sled database, each writer inserts a record and waits for a grouped
/// fdatasync (the same durability as our log, without replication).
async fn disk_alone(writers: usize, window: Duration) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path().join("db")).mode(sled::Mode::HighThroughput).open().unwrap();
    let durability = Durability::start(db.clone(), &dir.path().join("db")).unwrap();
    let tree = db.open_tree("log").unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (tree, durability, running) = (tree.clone(), durability.clone(), running.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i: u64 = 0;
            while running.load(Ordering::Relaxed) {
                let t = Instant::now();
                let key = [(w as u64).to_be_bytes(), i.to_be_bytes()].concat();
                tree.insert(key, &br#"{"sql":"SELECT 1","decision":"allow"}"#[..]).unwrap();
                durability.sync_now().await.unwrap();
                latencies.push(t.elapsed());
                i += 1;
            }
            latencies
        }));
    }
    tokio::time::sleep(window).await;
    running.store(false, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    Run {
        events_per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: quantile(&all, 0.5),
        p99: quantile(&all, 0.99),
    }
}
