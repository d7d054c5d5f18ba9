#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use super::*;
use crate::model::{ApprovalStatus, Protocol};

fn approval(id: &str, node: u64, expires_at: Millis) -> Approval {
    Approval {
        id: id.into(),
        requester: "alice".into(),
        resource: "demo".into(),
        session_id: format!("s-{id}"),
        action: "DELETE FROM t".into(),
        approver_groups: vec!["approvers".into()],
        approvals_needed: 1,
        votes: vec![],
        status: ApprovalStatus::Pending,
        reason: String::new(),
        created_at: 1_000,
        expires_at,
        node,
        request_digest: None,
        used_at: None,
    }
}

fn session(id: &str, node: u64, started_at: Millis) -> Session {
    Session {
        id: id.into(),
        identity: "alice".into(),
        resource: "demo".into(),
        protocol: Protocol::Postgres,
        node,
        client_addr: "127.0.0.1:5000".into(),
        started_at,
        ended_at: None,
        status: SessionStatus::Open,
        events: 0,
    }
}

fn set(ids: &[u64]) -> BTreeSet<u64> {
    ids.iter().copied().collect()
}

/// (approval id, "expire" | the withdraw reason)
fn ended(pending: &[Approval], now: Millis, me: u64, members: &[u64], silent: &[u64]) -> Vec<(String, String)> {
    approvals_to_end(pending, now, me, &set(members), &set(silent))
        .into_iter()
        .map(|(a, op)| {
            let what = match op {
                Op::ExpireApproval { id, at } => {
                    assert_eq!((id.as_str(), at), (a.id.as_str(), now));
                    "expire".to_string()
                }
                Op::WithdrawApproval { id, reason, .. } => {
                    assert_eq!(id, a.id);
                    reason.unwrap()
                }
                other => panic!("unexpected {other:?}"),
            };
            (a.id.clone(), what)
        })
        .collect()
}

#[test]
fn approvals_held_on_a_silent_or_removed_node_are_withdrawn_naming_the_node_and_overdue_ones_expire() {
    let pending = [
        approval("on-leader", 1, 9_000),
        approval("on-live-node", 2, 9_000),
        approval("on-silent-node", 3, 9_000),
        approval("on-removed-node", 4, 9_000),
        approval("overdue-on-live-node", 2, 5_000),
        approval("overdue-on-leader", 1, 5_000),
    ];
    let got = ended(&pending, 5_000, 1, &[1, 2, 3], &[3]);
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[0].0, "on-silent-node");
    assert!(got[0].1.contains("node 3") && got[0].1.contains("unreachable"), "{}", got[0].1);
    assert_eq!(got[1].0, "on-removed-node");
    assert!(got[1].1.contains("node 4") && got[1].1.contains("left the cluster"), "{}", got[1].1);
    assert_eq!(got[2], ("overdue-on-live-node".to_string(), "expire".to_string()));
    assert_eq!(got[3], ("overdue-on-leader".to_string(), "expire".to_string()));
}

#[test]
fn with_every_node_answering_only_overdue_approvals_end() {
    let pending = [approval("a", 2, 9_000), approval("b", 3, 9_000)];
    assert!(ended(&pending, 5_000, 1, &[1, 2, 3], &[]).is_empty());
}

#[test]
fn a_restarted_node_closes_only_its_own_sessions_from_before_its_start() {
    let open = vec![session("old-mine", 2, 100), session("new-mine", 2, 500), session("old-other", 3, 100)];
    let stale: Vec<String> = own_sessions_from_before(open, 2, 500).into_iter().map(|s| s.id).collect();
    assert_eq!(stale, ["old-mine"]);
}

#[test]
fn sessions_of_nodes_outside_the_membership_are_the_removed_ones() {
    let open = vec![session("on-1", 1, 100), session("on-4", 4, 100), session("on-3", 3, 100)];
    let removed: Vec<String> = sessions_of_removed_nodes(open, &set(&[1, 2, 3])).into_iter().map(|s| s.id).collect();
    assert_eq!(removed, ["on-4"]);
}

#[test]
fn the_silence_limit_is_five_leases_and_at_least_five_seconds() {
    assert_eq!(unreachable_after(Duration::from_millis(1000)), Duration::from_secs(5));
    assert_eq!(unreachable_after(Duration::from_secs(2)), Duration::from_secs(10));
    assert_eq!(unreachable_after(Duration::from_millis(200)), Duration::from_secs(5));
}

#[test]
fn a_deferred_request_is_not_withdrawn_with_its_node_but_still_expires() {
    let deferred = |id: &str, expires_at| Approval { request_digest: Some("d".into()), ..approval(id, 3, expires_at) };
    let pending = [deferred("deferred", 9_000), deferred("deferred-overdue", 5_000)];
    let got = ended(&pending, 5_000, 1, &[1, 2], &[3]);
    assert_eq!(got, vec![("deferred-overdue".to_string(), "expire".to_string())]);
}
