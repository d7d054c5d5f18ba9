#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::time::Duration;

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

use super::StateView;
use crate::TypeConfig;
use crate::command::{Command, Op, Response};
use crate::model::{Approval, ApprovalStatus, Event, Millis, Protocol, Session, SessionFilter, SessionStatus};
use crate::store::StateMachine;

struct Store {
    _dir: tempfile::TempDir,
    sm: StateMachine,
    view: StateView,
    next: u64,
}

impl Store {
    fn open() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (_log, sm, view) = crate::store::open(dir.path()).unwrap();
        Store { _dir: dir, sm, view, next: 1 }
    }

    /// Apply `ops` as consecutive log entries in one apply call.
    async fn apply(&mut self, ops: Vec<Op>) -> Vec<Response> {
        let entries: Vec<Entry<TypeConfig>> = ops
            .into_iter()
            .map(|op| {
                let index = self.next;
                self.next += 1;
                Entry {
                    log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
                    payload: EntryPayload::Normal(std::sync::Arc::new(Command {
                        request_id: format!("r{index}"),
                        at: 0,
                        op,
                    })),
                }
            })
            .collect();
        self.sm.apply(entries).await.unwrap()
    }
}

fn session(id: &str, identity: &str, resource: &str, started_at: Millis) -> Session {
    Session {
        id: id.to_string(),
        identity: identity.to_string(),
        resource: resource.to_string(),
        protocol: Protocol::Postgres,
        node: 1,
        client_addr: "10.0.0.1:5000".into(),
        started_at,
        ended_at: None,
        status: SessionStatus::Open,
        events: 0,
    }
}

fn ids(sessions: &[Session]) -> Vec<&str> {
    sessions.iter().map(|s| s.id.as_str()).collect()
}

/// s1..s5 with start times 100..500; alice on db (s1, s3, s5), bob on db (s2), alice on web (s4).
async fn five_sessions() -> Store {
    let mut store = Store::open();
    let sessions = [
        session("s1", "alice", "db", 100),
        session("s2", "bob", "db", 200),
        session("s3", "alice", "db", 300),
        session("s4", "alice", "web", 400),
        session("s5", "alice", "db", 500),
    ];
    // Out of order on purpose: listing order comes from start time, not apply order.
    let ops = [3, 0, 4, 1, 2].iter().map(|&i| Op::OpenSession { session: sessions[i].clone() }).collect();
    store.apply(ops).await;
    store
}

#[tokio::test]
async fn sessions_are_listed_newest_first() {
    let store = five_sessions().await;
    let all = store.view.sessions(&SessionFilter::default()).unwrap();
    assert_eq!(ids(&all), ["s5", "s4", "s3", "s2", "s1"]);
    assert_eq!(store.view.last_applied(), 5);
}

#[tokio::test]
async fn sessions_filter_by_identity_resource_since_and_limit() {
    let store = five_sessions().await;
    let list = |f: SessionFilter| store.view.sessions(&f).unwrap().into_iter().map(|s| s.id).collect::<Vec<_>>();
    let alice = || Some("alice".to_string());

    assert_eq!(list(SessionFilter { identity: alice(), ..Default::default() }), ["s5", "s4", "s3", "s1"]);
    assert_eq!(list(SessionFilter { identity: Some("bob".into()), ..Default::default() }), ["s2"]);
    assert!(list(SessionFilter { identity: Some("ali".into()), ..Default::default() }).is_empty());
    assert_eq!(list(SessionFilter { resource: Some("db".into()), ..Default::default() }), ["s5", "s3", "s2", "s1"]);
    assert_eq!(
        list(SessionFilter { identity: alice(), resource: Some("db".into()), ..Default::default() }),
        ["s5", "s3", "s1"]
    );
    assert_eq!(list(SessionFilter { since: Some(300), ..Default::default() }), ["s5", "s4", "s3"]);
    // Older pages: started at or before `until`, newest first, by every index.
    assert_eq!(list(SessionFilter { until: Some(300), ..Default::default() }), ["s3", "s2", "s1"]);
    assert_eq!(list(SessionFilter { until: Some(299), limit: Some(1), ..Default::default() }), ["s2"]);
    assert_eq!(list(SessionFilter { identity: alice(), until: Some(300), ..Default::default() }), ["s3", "s1"]);
    assert_eq!(
        list(SessionFilter { resource: Some("db".into()), until: Some(300), ..Default::default() }),
        ["s3", "s2", "s1"]
    );
    assert_eq!(list(SessionFilter { until: Some(u64::MAX), ..Default::default() }).len(), 5);
    assert_eq!(list(SessionFilter { identity: alice(), since: Some(301), ..Default::default() }), ["s5", "s4"]);
    assert_eq!(list(SessionFilter { limit: Some(2), ..Default::default() }), ["s5", "s4"]);
    assert_eq!(
        list(SessionFilter { identity: alice(), resource: Some("db".into()), limit: Some(2), ..Default::default() }),
        ["s5", "s3"]
    );
    assert!(list(SessionFilter { since: Some(501), ..Default::default() }).is_empty());
}

#[tokio::test]
async fn pruned_sessions_disappear_from_every_listing() {
    let mut store = five_sessions().await;
    let responses = store
        .apply(vec![
            Op::CloseSession { id: "s1".into(), at: 150, status: SessionStatus::Closed },
            Op::PruneSessions { before: 1_000 },
        ])
        .await;
    assert_eq!(responses[1], Response::Pruned { sessions: 1 });
    assert!(store.view.session("s1").unwrap().is_none());
    for filter in [
        SessionFilter::default(),
        SessionFilter { identity: Some("alice".into()), ..Default::default() },
        SessionFilter { resource: Some("db".into()), ..Default::default() },
    ] {
        assert!(!ids(&store.view.sessions(&filter).unwrap()).contains(&"s1"), "{filter:?}");
    }
}

#[tokio::test]
async fn events_are_read_back_in_seq_order() {
    let mut store = Store::open();
    let ev = |at: Millis, kind: &str| Event {
        session_id: "s1".into(),
        seq: 0,
        at,
        kind: kind.into(),
        detail: Default::default(),
    };
    // More than 255 events, so a little-endian or textual seq would sort wrongly.
    let first: Vec<Event> = (0..200).map(|i| ev(i, "a")).collect();
    let second: Vec<Event> = (200..300).map(|i| ev(i, "b")).collect();
    store.apply(vec![Op::OpenSession { session: session("s1", "alice", "db", 1) }]).await;
    store.apply(vec![Op::AppendEvents { events: first }, Op::AppendEvents { events: second }]).await;
    let events = store.view.events("s1").unwrap();
    assert_eq!(events.len(), 300);
    assert!(events.iter().enumerate().all(|(i, e)| e.seq == i as u64 && e.at == i as u64));
    assert_eq!(store.view.session("s1").unwrap().unwrap().events, 300);
}

fn approval(id: &str, created_at: Millis) -> Approval {
    Approval {
        id: id.into(),
        requester: "alice".into(),
        resource: "db".into(),
        session_id: "s1".into(),
        action: "DROP TABLE t".into(),
        approver_groups: vec!["dba".into()],
        approvals_needed: 1,
        votes: vec![],
        status: ApprovalStatus::Pending,
        reason: String::new(),
        created_at,
        expires_at: created_at + 60_000,
        node: 1,
        request_digest: None,
        used_at: None,
    }
}

fn decide(id: &str, at: Millis) -> Op {
    Op::DecideApproval {
        id: id.into(),
        approver: "bob".into(),
        approver_groups: vec!["dba".into()],
        approve: true,
        reason: "ok".into(),
        at,
    }
}

#[tokio::test]
async fn approvals_are_listed_oldest_first_and_filter_pending() {
    let mut store = Store::open();
    store
        .apply(vec![
            Op::RequestApproval { approval: approval("zz", 100) },
            Op::RequestApproval { approval: approval("aa", 300) },
            Op::RequestApproval { approval: approval("mm", 200) },
        ])
        .await;
    store.apply(vec![decide("mm", 250)]).await;
    let all: Vec<String> = store.view.approvals(false).unwrap().into_iter().map(|a| a.id).collect();
    assert_eq!(all, ["zz", "mm", "aa"]);
    let pending: Vec<String> = store.view.approvals(true).unwrap().into_iter().map(|a| a.id).collect();
    assert_eq!(pending, ["zz", "aa"]);
}

#[tokio::test]
async fn waiting_for_a_decision_wakes_when_it_is_applied() {
    let mut store = Store::open();
    store.apply(vec![Op::RequestApproval { approval: approval("a1", 100) }]).await;
    let view = store.view.clone();
    let waiter = tokio::spawn(async move { view.wait_approval_decided("a1", Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    store.apply(vec![decide("a1", 200)]).await;
    let decided = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap().unwrap().unwrap();
    assert_eq!(decided.status, ApprovalStatus::Approved);
}

#[tokio::test]
async fn waiting_for_an_undecided_approval_times_out_with_it_pending() {
    let mut store = Store::open();
    store.apply(vec![Op::RequestApproval { approval: approval("a1", 100) }]).await;
    let seen = store.view.wait_approval_decided("a1", Duration::from_millis(50)).await.unwrap().unwrap();
    assert_eq!(seen.status, ApprovalStatus::Pending);
    assert!(store.view.wait_approval_decided("ghost", Duration::from_millis(10)).await.unwrap().is_none());
}
