//! The recorded history: every operation's invocation and completion and every
//! nemesis event, as JSON lines in `RUN_DIR/history.jsonl`, and in memory for the
//! checker.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};

/// Wall-clock milliseconds since the epoch: the same clock Postgres stamps its log with.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Insert,
    Read,
    /// An insert into `gated`: held until an approver decides (or it expires).
    Gated,
    /// A command through an SSH door (appends its op id to the host's log).
    Ssh,
    /// A POST through an HTTP door (the demo API logs its path, which names the op).
    Http,
}

/// One completed operation.
#[derive(Debug, Clone, Serialize)]
pub struct Op {
    pub op: String,
    pub node: u64,
    pub client: usize,
    pub f: OpKind,
    pub invoked_ms: u64,
    pub completed_ms: u64,
    pub ok: bool,
    /// Timed out: the outcome is unknown (it may or may not have run).
    pub indeterminate: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    Kill,
    Pause,
    /// A random minority cut off from the rest (iptables DROP).
    Partition,
    /// The leader cut off from every peer.
    #[serde(rename = "leader-isolation")]
    LeaderIsolation,
    /// Random packet loss on node links (iptables `statistic`).
    Flaky,
    /// Added latency on node links (delaying relays).
    Slow,
}

impl FaultKind {
    /// The words of the nemesis events (`action`, `heal`).
    pub fn words(self) -> (&'static str, &'static str) {
        match self {
            FaultKind::Kill => ("kill", "restart"),
            FaultKind::Pause => ("pause", "resume"),
            FaultKind::Partition => ("partition", "heal"),
            FaultKind::LeaderIsolation => ("isolate-leader", "heal"),
            FaultKind::Flaky => ("flaky", "heal"),
            FaultKind::Slow => ("slow", "heal"),
        }
    }
}

/// One fault, from the moment every target was hit to the moment healing began.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub kind: FaultKind,
    pub nodes: Vec<u64>,
    /// Nodes the fault left without a quorum (they must stop relaying within a
    /// lease): the survivors of a majority kill or pause, the minority of a
    /// partition, the isolated leader. Empty for flaky and slow links.
    pub isolated: Vec<u64>,
    /// Loss percentage (flaky) or added one-way delay in ms (slow); 0 otherwise.
    pub intensity: u64,
    /// The leader just before the fault, as the cluster reported it.
    pub leader_before: Option<u64>,
    pub start_ms: u64,
    pub end_ms: u64,
}

struct Inner {
    out: BufWriter<File>,
    ops: Vec<Op>,
    faults: Vec<Fault>,
}

/// Shared by the workload clients and the nemesis; a std mutex because no lock is
/// held across an await.
pub struct History {
    inner: Mutex<Inner>,
}

impl History {
    pub fn create(path: &Path) -> anyhow::Result<History> {
        let file = File::create(path).map_err(|e| anyhow::anyhow!("create {}: {e}", path.display()))?;
        Ok(History { inner: Mutex::new(Inner { out: BufWriter::new(file), ops: vec![], faults: vec![] }) })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn line(inner: &mut Inner, v: &Value) {
        // A full disk must not stop the run; the in-memory history is what is checked.
        let _ = writeln!(inner.out, "{v}");
    }

    pub fn invoke(&self, op: &str, node: u64, client: usize, f: OpKind) -> u64 {
        let at = now_ms();
        let v = json!({"type": "invoke", "op": op, "node": node, "client": client, "f": f, "at_ms": at});
        Self::line(&mut self.lock(), &v);
        at
    }

    pub fn complete(&self, op: Op) {
        self.complete_with(op, json!({}));
    }

    /// As [`History::complete`], with more of what the client saw in the line (e.g. an
    /// HTTP status): `extra`'s fields are added to it.
    pub fn complete_with(&self, op: Op, extra: Value) {
        let mut inner = self.lock();
        let mut v = json!(op);
        if let Some(m) = v.as_object_mut() {
            m.insert("type".into(), json!("complete"));
            if let Value::Object(extra) = extra {
                m.extend(extra);
            }
        }
        Self::line(&mut inner, &v);
        inner.ops.push(op);
    }

    /// A free-form event (nemesis actions, connection failures).
    pub fn event(&self, mut v: Value) {
        if let Some(m) = v.as_object_mut() {
            m.entry("at_ms").or_insert(json!(now_ms()));
        }
        Self::line(&mut self.lock(), &v);
    }

    pub fn fault(&self, fault: Fault) {
        let mut inner = self.lock();
        let mut v = json!(fault);
        if let Some(m) = v.as_object_mut() {
            m.insert("type".into(), json!("fault"));
        }
        Self::line(&mut inner, &v);
        inner.faults.push(fault);
    }

    pub fn ops(&self) -> Vec<Op> {
        self.lock().ops.clone()
    }

    pub fn faults(&self) -> Vec<Fault> {
        self.lock().faults.clone()
    }

    pub fn flush(&self) {
        let _ = self.lock().out.flush();
    }
}
