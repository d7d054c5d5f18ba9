//! Convergence after healing: every node must report the same applied index, and
//! then the same replicated state. Each node answers list calls from its own state
//! machine, so the digests of `policy list`, `approvals list` and `sessions list`
//! asked of each node in turn (`--endpoint` = that node) compare the nodes' states,
//! computed client-side (no admin API field is needed).

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::Value;

use crate::cluster::Playground;

const PARTS: [(&str, &[&str]); 3] = [
    ("policies", &["policy", "list", "--json"]),
    ("approvals", &["approvals", "list", "--json"]),
    ("sessions", &["sessions", "list", "--json"]),
];

/// Wait until every node reports the same applied index; returns it.
pub async fn applied(pg: &Playground, timeout: Duration) -> anyhow::Result<u64> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no status");
    loop {
        for via in pg.ids() {
            let Some(s) = pg.status(via).await else { continue };
            let applied: Vec<Option<u64>> = s
                .get("nodes")
                .and_then(Value::as_array)
                .map(|ns| ns.iter().map(|n| n.get("last_applied").and_then(Value::as_u64)).collect())
                .unwrap_or_default();
            if let Some(Some(first)) = applied.first()
                && applied.len() == pg.nodes.len()
                && applied.iter().all(|a| *a == Some(*first))
            {
                return Ok(*first);
            }
            last = format!("last_applied per node: {applied:?}");
            break;
        }
        if Instant::now() > deadline {
            bail!("nodes did not converge within {timeout:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A node's digest of one part: a hash of its canonical JSON (keys sorted), and
/// how many entries it holds.
fn digest(v: &Value) -> (String, usize) {
    let mut h = DefaultHasher::new();
    v.to_string().hash(&mut h);
    (format!("{:016x}", h.finish()), v.as_array().map(Vec::len).unwrap_or(0))
}

/// Digests of each part, per node.
async fn digests(pg: &Playground) -> BTreeMap<&'static str, BTreeMap<u64, String>> {
    let mut out: BTreeMap<&'static str, BTreeMap<u64, String>> = BTreeMap::new();
    for (part, args) in PARTS {
        for id in pg.ids() {
            let d = match pg.cli(id, args, Duration::from_secs(20)).await {
                Ok(o) if o.status.success() => match serde_json::from_slice::<Value>(&o.stdout) {
                    Ok(v) => {
                        let (hash, n) = digest(&v);
                        format!("{hash} ({n})")
                    }
                    Err(e) => format!("unparsable: {e}"),
                },
                Ok(o) => format!("failed: {}", String::from_utf8_lossy(&o.stderr).trim()),
                Err(e) => format!("failed: {e}"),
            };
            out.entry(part).or_default().insert(id, d);
        }
    }
    out
}

/// Wait until the applied indexes and then the digests agree; returns the digests
/// (part → node → digest) or, after `timeout`, the disagreement.
pub async fn states(
    pg: &Playground,
    timeout: Duration,
) -> Result<BTreeMap<&'static str, BTreeMap<u64, String>>, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let index = applied(pg, deadline.saturating_duration_since(Instant::now())).await;
        let d = digests(pg).await;
        let agree = d.values().all(|per_node| {
            let mut values = per_node.values();
            let first = values.next();
            first.is_some_and(|f| !f.starts_with("failed") && values.all(|x| x == f))
        });
        if index.is_ok() && agree {
            return Ok(d);
        }
        if Instant::now() > deadline {
            return Err(match index {
                Err(e) => e.to_string(),
                Ok(i) => format!("applied index {i} everywhere, but the states differ: {d:?}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn equal_documents_have_equal_digests_whatever_their_key_order() {
        let a: Value = serde_json::from_str(r#"[{"id":"x","status":"approved"}]"#).unwrap();
        let b: Value = serde_json::from_str(r#"[{"status":"approved","id":"x"}]"#).unwrap();
        let c: Value = serde_json::from_str(r#"[{"status":"denied","id":"x"}]"#).unwrap();
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a).0, digest(&c).0);
        assert_eq!(digest(&a).1, 1);
    }
}
