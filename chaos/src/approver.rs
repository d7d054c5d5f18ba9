//! The approvers: a subject in group `approvers` (not the requester) who keeps
//! asking a random node for pending approvals of workload statements and decides
//! each once, through another random node: approve (50 %), deny (25 %), or leave it
//! to expire (25 %). Every decision and its outcome goes into the history.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::checker::op_id_in;
use crate::cluster::Playground;
use crate::history::History;
use crate::rng::Rng;

const CLI_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Approver {
    pub pg: Arc<Playground>,
    /// A token of `chaos-approver` in group `approvers`.
    pub token: String,
    pub history: Arc<History>,
    pub rng: Rng,
}

impl Approver {
    fn any_node(&mut self) -> u64 {
        let ids = self.pg.ids();
        let n = u64::try_from(ids.len()).unwrap_or(1);
        ids.get(usize::try_from(self.rng.below(n)).unwrap_or(0)).copied().unwrap_or(1)
    }

    pub async fn run(mut self, stop: CancellationToken) {
        let mut handled: BTreeSet<String> = BTreeSet::new();
        while !stop.is_cancelled() {
            let pause = self.rng.millis(200, 700);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            let via = self.any_node();
            let args = ["approvals", "list", "--pending", "--json"];
            let Ok(out) = self.pg.cli_as(via, &self.token, &args, CLI_TIMEOUT).await else { continue };
            let Ok(list) = serde_json::from_slice::<Value>(&out.stdout) else { continue };
            for a in list.as_array().into_iter().flatten() {
                let id = a.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
                let action = a.get("action").and_then(Value::as_str).unwrap_or_default();
                let Some((op, _)) = op_id_in(action) else { continue };
                if id.is_empty() || handled.contains(&id) {
                    continue;
                }
                let roll = self.rng.below(100);
                let verb = match roll {
                    0..50 => "approve",
                    50..75 => "deny",
                    _ => "leave",
                };
                if verb == "leave" {
                    handled.insert(id.clone());
                    self.history.event(json!({"type": "decision", "approval": id, "op": op, "decision": "leave"}));
                    continue;
                }
                let via = self.any_node();
                let result = self.pg.cli_as(via, &self.token, &["approvals", verb, &id], CLI_TIMEOUT).await;
                let (ok, error) = match result {
                    Ok(o) if o.status.success() => (true, None),
                    Ok(o) => (false, Some(String::from_utf8_lossy(&o.stderr).trim().to_string())),
                    Err(e) => (false, Some(e.to_string())),
                };
                // A refusal because it is already final (or expired) is final too;
                // a node that could not answer is retried in a later round.
                let settled = ok || error.as_deref().is_some_and(|e| e.contains("already") || e.contains("expired"));
                if settled {
                    handled.insert(id.clone());
                }
                self.history.event(json!({"type": "decision", "approval": id, "op": op, "decision": verb,
                    "via": via, "ok": ok, "error": error}));
            }
        }
    }
}
