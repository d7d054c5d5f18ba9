//! The workload: `clients` long-lived sessions per node through its Postgres door,
//! each inserting unique operation ids into `ledger` and reading it, plus one more
//! session per node inserting into `gated`, which policy holds for an approver. The
//! gated statements have their own session because each holds it for seconds: in a
//! ledger session they would leave fewer statements to show whether a node cut off
//! keeps relaying.
//!
//! Sessions are long-lived on purpose: a node that lost its quorum cannot record a
//! new session, so only statements in sessions opened before the fault can show
//! whether a node keeps relaying without its lease. Every statement carries its
//! operation id (`chaos-n<node>-c<client>-<seq>`) in its text, so the backend's own
//! statement log says which node relayed it and when it arrived.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::history::{History, Op, OpKind, now_ms};
use crate::rng::Rng;
use portcullis_chaos::tls::MakeRustls;

/// Longer than a node's write deadline (3 s) plus a pause, so an operation that the
/// gateway fails on its own is recorded as failed, not as timed out.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A gated statement waits for a decision (up to the policy's 6 s) before it runs.
const GATED_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Target {
    pub node: u64,
    pub host: String,
    pub port: u16,
}

pub struct Workload {
    pub targets: Vec<Target>,
    pub clients: usize,
    pub token: String,
    pub tls: MakeRustls,
    pub seed: u64,
}

impl Workload {
    /// Start every client; they stop (after their operation in flight) when `stop` fires.
    pub fn spawn(self, history: Arc<History>, stop: CancellationToken) -> JoinSet<()> {
        let mut set = JoinSet::new();
        for t in &self.targets {
            // The last one is the gated session.
            for c in 0..=self.clients {
                let mut config = tokio_postgres::Config::new();
                config
                    .host(&t.host)
                    .port(t.port)
                    .dbname("demo")
                    .user("chaos")
                    .password(&self.token)
                    .ssl_mode(tokio_postgres::config::SslMode::Require)
                    .connect_timeout(CONNECT_TIMEOUT);
                let client = Client {
                    node: t.node,
                    index: c,
                    config,
                    tls: self.tls.clone(),
                    history: history.clone(),
                    gated: c == self.clients,
                    rng: Rng::new(self.seed ^ (t.node << 32) ^ u64::try_from(c).unwrap_or(0)),
                };
                set.spawn(client.run(stop.clone()));
            }
        }
        set
    }
}

struct Client {
    node: u64,
    index: usize,
    config: tokio_postgres::Config,
    tls: MakeRustls,
    history: Arc<History>,
    /// Only approval-gated inserts (else ledger inserts and reads).
    gated: bool,
    rng: Rng,
}

fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

impl Client {
    async fn connect(&self) -> Result<tokio_postgres::Client, String> {
        match tokio::time::timeout(CONNECT_TIMEOUT * 2, self.config.connect(self.tls.clone())).await {
            Ok(Ok((client, connection))) => {
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Ok(client)
            }
            Ok(Err(e)) => Err(error_text(&e)),
            Err(_) => Err("connect timed out".into()),
        }
    }

    async fn run(mut self, stop: CancellationToken) {
        let mut session: Option<tokio_postgres::Client> = None;
        let mut seq = 0u64;
        while !stop.is_cancelled() {
            let conn = match session.take() {
                Some(c) if !c.is_closed() => c,
                _ => match self.connect().await {
                    Ok(c) => c,
                    Err(e) => {
                        self.history.event(
                            json!({"type": "connect-error", "node": self.node, "client": self.index, "error": e}),
                        );
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                        }
                        continue;
                    }
                },
            };
            seq += 1;
            let op = format!("chaos-n{}-c{}-{seq}", self.node, self.index);
            let (f, sql) = if self.gated {
                (OpKind::Gated, format!("INSERT INTO gated (op_id, node) VALUES ('{op}', {})", self.node))
            } else if self.rng.chance(50) {
                (OpKind::Insert, format!("INSERT INTO ledger (op_id, node) VALUES ('{op}', {})", self.node))
            } else {
                (OpKind::Read, format!("SELECT count(*) FROM ledger /* {op} */"))
            };
            let timeout = if f == OpKind::Gated { GATED_TIMEOUT } else { OP_TIMEOUT };
            let invoked_ms = self.history.invoke(&op, self.node, self.index, f);
            let result = tokio::time::timeout(timeout, conn.simple_query(&sql)).await;
            let (ok, indeterminate, error, keep) = match result {
                Ok(Ok(_)) => (true, false, None, true),
                Ok(Err(e)) => (false, false, Some(error_text(&e)), !conn.is_closed()),
                Err(_) => (false, true, Some(format!("no answer within {timeout:?}")), false),
            };
            self.history.complete(Op {
                op,
                node: self.node,
                client: self.index,
                f,
                invoked_ms,
                completed_ms: now_ms(),
                ok,
                indeterminate,
                error,
            });
            if keep {
                session = Some(conn);
            }
            if !ok {
                // A node that fails closed answers at once; do not spin on it.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if self.gated {
                // Approvers are people: a few requests at a time, not a flood.
                let pause = self.rng.millis(200, 1000);
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}
