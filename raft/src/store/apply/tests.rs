#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use super::{Changes, apply_command};
use crate::command::{Command, Op, Response};
use crate::model::{
    Approval, ApprovalStatus, AuditMode, Event, Millis, Policy, Protocol, Resource, Session, SessionStatus,
};
use crate::store::keys;
use crate::store::overlay::Overlay;

fn tree() -> sled::Tree {
    let db = sled::Config::new().temporary(true).open().unwrap();
    db.open_tree("sm").unwrap()
}

fn cmd(request_id: &str, op: Op) -> Command {
    cmd_at(request_id, 0, op)
}

/// A remembered request id or its time index entry.
fn is_request_record(key: &[u8]) -> bool {
    key.starts_with(keys::REQUEST) || key.starts_with(keys::REQUEST_BY_TIME)
}

fn cmd_at(request_id: &str, at: Millis, op: Op) -> Command {
    Command { request_id: request_id.to_string(), at, op }
}

/// Apply one command in its own batch and commit it.
fn apply(tree: &sled::Tree, command: Command) -> Response {
    apply_all(tree, vec![command]).pop().unwrap()
}

/// Apply several commands in one batch (one overlay) and commit it.
fn apply_all(tree: &sled::Tree, commands: Vec<Command>) -> Vec<Response> {
    let mut tx = Overlay::new(tree);
    let mut changes = Changes::default();
    let responses = commands.into_iter().map(|c| apply_command(&mut tx, c, &mut changes).unwrap()).collect();
    tx.write_to(tree, &Default::default()).unwrap();
    responses
}

fn get<T: serde::de::DeserializeOwned>(tree: &sled::Tree, key: &[u8]) -> Option<T> {
    tree.get(key).unwrap().map(|b| serde_json::from_slice(&b).unwrap())
}

fn approval_in(tree: &sled::Tree, id: &str) -> Approval {
    get(tree, &keys::named(keys::APPROVAL, id)).expect("approval stored")
}

/// The session as readers see it: its event count comes from the events table.
fn session_in(tree: &sled::Tree, id: &str) -> Option<Session> {
    let mut session: Session = get(tree, &keys::named(keys::SESSION, id))?;
    session.events = events_in(tree, id).len() as u64;
    Some(session)
}

fn events_in(tree: &sled::Tree, session: &str) -> Vec<Event> {
    tree.scan_prefix(keys::event_prefix(session))
        .values()
        .flat_map(|v| serde_json::from_slice::<Vec<Event>>(&v.unwrap()).unwrap())
        .collect()
}

fn records(tree: &sled::Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
    tree.iter().map(|r| r.unwrap()).map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

fn rejection(response: &Response) -> &str {
    response.rejection().unwrap_or_else(|| panic!("expected a rejection, got {response:?}"))
}

fn approval_of(response: Response) -> Approval {
    match response {
        Response::Approval { approval } => *approval,
        other => panic!("expected an approval, got {other:?}"),
    }
}

// --- fixtures ---

const CREATED: Millis = 1_000;
const EXPIRES: Millis = 10_000;

fn approval(id: &str, needed: u32) -> Approval {
    Approval {
        id: id.to_string(),
        requester: "alice".into(),
        resource: "db".into(),
        session_id: "s1".into(),
        action: "DROP TABLE users".into(),
        approver_groups: vec!["dba".into(), "sre".into()],
        approvals_needed: needed,
        votes: vec![],
        status: ApprovalStatus::Pending,
        reason: String::new(),
        created_at: CREATED,
        expires_at: EXPIRES,
        node: 1,
        request_digest: None,
        used_at: None,
    }
}

fn request(tree: &sled::Tree, id: &str, needed: u32) {
    let r = apply(tree, cmd(&format!("req-{id}"), Op::RequestApproval { approval: approval(id, needed) }));
    assert_eq!(approval_of(r).status, ApprovalStatus::Pending);
}

fn decide_op(id: &str, approver: &str, groups: &[&str], approve: bool, at: Millis) -> Op {
    Op::DecideApproval {
        id: id.to_string(),
        approver: approver.to_string(),
        approver_groups: groups.iter().map(|g| g.to_string()).collect(),
        approve,
        reason: format!("{approver} says {approve}"),
        at,
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

fn event(session_id: &str, at: Millis, kind: &str) -> Event {
    Event {
        session_id: session_id.to_string(),
        seq: 999,
        at,
        kind: kind.to_string(),
        detail: serde_json::json!({"k": kind}).into(),
    }
}

fn open(tree: &sled::Tree, s: Session) {
    let id = s.id.clone();
    assert_eq!(apply(tree, cmd(&format!("open-{id}"), Op::OpenSession { session: s })), Response::Done);
}

fn resource(name: &str) -> Resource {
    Resource {
        name: name.to_string(),
        protocol: Protocol::Postgres,
        address: "db.internal:5432".into(),
        username: Some("app".into()),
        secret: None,
        audit: AuditMode::Strict,
        options: Default::default(),
        updated_at: 5,
        logins: vec![],
    }
}

// --- approvals ---

#[test]
fn first_final_decision_wins() {
    let t = tree();
    request(&t, "a1", 1);
    let first = approval_of(apply(&t, cmd("d1", decide_op("a1", "bob", &["dba"], true, 2_000))));
    assert_eq!(first.status, ApprovalStatus::Approved);

    let second = apply(&t, cmd("d2", decide_op("a1", "carol", &["dba"], false, 3_000)));
    assert!(rejection(&second).contains("already approved"), "{second:?}");
    let stored = approval_in(&t, "a1");
    assert_eq!(stored.status, ApprovalStatus::Approved);
    assert_eq!(stored.votes.len(), 1);
    assert_eq!(stored.votes[0].approver, "bob");
}

#[test]
fn denial_is_final_too() {
    let t = tree();
    request(&t, "a1", 2);
    let denied = approval_of(apply(&t, cmd("d1", decide_op("a1", "bob", &["dba"], false, 2_000))));
    assert_eq!(denied.status, ApprovalStatus::Denied);
    assert_eq!(denied.reason, "bob says false");
    let late = apply(&t, cmd("d2", decide_op("a1", "carol", &["dba"], true, 2_500)));
    assert!(rejection(&late).contains("already denied"));
    assert_eq!(approval_in(&t, "a1").status, ApprovalStatus::Denied);
}

#[test]
fn requester_may_not_decide_own_request() {
    let t = tree();
    request(&t, "a1", 1);
    let r = apply(&t, cmd("d1", decide_op("a1", "alice", &["dba"], true, 2_000)));
    assert!(rejection(&r).contains("may not decide their own request"), "{r:?}");
    let stored = approval_in(&t, "a1");
    assert_eq!(stored.status, ApprovalStatus::Pending);
    assert!(stored.votes.is_empty());
}

#[test]
fn approver_outside_approver_groups_is_rejected_naming_the_groups() {
    let t = tree();
    request(&t, "a1", 1);
    let r = apply(&t, cmd("d1", decide_op("a1", "mallory", &["dev", "qa"], true, 2_000)));
    let reason = rejection(&r);
    assert!(reason.contains("mallory"), "{reason}");
    assert!(reason.contains("[dba, sre]"), "{reason}");
    let r = apply(&t, cmd("d2", decide_op("a1", "nobody", &[], false, 2_000)));
    assert!(rejection(&r).contains("[dba, sre]"));
    assert_eq!(approval_in(&t, "a1").status, ApprovalStatus::Pending);
}

#[test]
fn membership_in_any_one_approver_group_suffices() {
    let t = tree();
    request(&t, "a1", 1);
    let r = approval_of(apply(&t, cmd("d1", decide_op("a1", "bob", &["dev", "sre"], true, 2_000))));
    assert_eq!(r.status, ApprovalStatus::Approved);
}

#[test]
fn same_approver_cannot_vote_twice() {
    let t = tree();
    request(&t, "a1", 2);
    let r = approval_of(apply(&t, cmd("d1", decide_op("a1", "bob", &["dba"], true, 2_000))));
    assert_eq!(r.status, ApprovalStatus::Pending);
    let again = apply(&t, cmd("d2", decide_op("a1", "bob", &["dba"], true, 2_100)));
    assert!(rejection(&again).contains("already voted"), "{again:?}");
    let stored = approval_in(&t, "a1");
    assert_eq!(stored.status, ApprovalStatus::Pending);
    assert_eq!(stored.votes.len(), 1);
}

#[test]
fn two_approvals_needed_means_two_distinct_approvers() {
    let t = tree();
    request(&t, "a1", 2);
    let one = approval_of(apply(&t, cmd("d1", decide_op("a1", "bob", &["dba"], true, 2_000))));
    assert_eq!(one.status, ApprovalStatus::Pending);
    assert_eq!(one.votes.len(), 1);
    let two = approval_of(apply(&t, cmd("d2", decide_op("a1", "carol", &["sre"], true, 2_500))));
    assert_eq!(two.status, ApprovalStatus::Approved);
    assert_eq!(two.votes.iter().map(|v| v.approver.as_str()).collect::<Vec<_>>(), ["bob", "carol"]);
    assert_eq!(approval_in(&t, "a1"), two);
}

#[test]
fn zero_approvals_needed_still_needs_one_approver() {
    let t = tree();
    request(&t, "a1", 0);
    assert_eq!(approval_in(&t, "a1").status, ApprovalStatus::Pending);
    let r = approval_of(apply(&t, cmd("d1", decide_op("a1", "bob", &["dba"], true, 2_000))));
    assert_eq!(r.status, ApprovalStatus::Approved);
}

#[test]
fn decision_at_the_deadline_marks_the_approval_expired() {
    let t = tree();
    request(&t, "a1", 1);
    let r = apply(&t, cmd("d1", decide_op("a1", "bob", &["dba"], true, EXPIRES)));
    assert!(rejection(&r).contains("expired"), "{r:?}");
    let stored = approval_in(&t, "a1");
    assert_eq!(stored.status, ApprovalStatus::Expired);
    assert!(stored.votes.is_empty());
    // And once expired, it stays that way.
    let r = apply(&t, cmd("d2", decide_op("a1", "carol", &["dba"], true, EXPIRES - 1)));
    assert!(rejection(&r).contains("already expired"), "{r:?}");
}

#[test]
fn decision_after_the_deadline_marks_the_approval_expired() {
    let t = tree();
    request(&t, "a1", 1);
    let r = apply(&t, cmd("d1", decide_op("a1", "bob", &["dba"], false, EXPIRES + 5_000)));
    assert!(rejection(&r).contains("expired"));
    assert_eq!(approval_in(&t, "a1").status, ApprovalStatus::Expired);
}

#[test]
fn expire_before_the_deadline_does_nothing() {
    let t = tree();
    request(&t, "a1", 1);
    let before = records(&t);
    let r = approval_of(apply(&t, cmd("x1", Op::ExpireApproval { id: "a1".into(), at: EXPIRES - 1 })));
    assert_eq!(r.status, ApprovalStatus::Pending);
    assert_eq!(approval_in(&t, "a1"), approval("a1", 1));
    // Only the remembered request id (and its time index entry) was added.
    let after = records(&t);
    assert_eq!(after.len(), before.len() + 2);
    assert!(after.iter().all(|(k, v)| is_request_record(k) || before.contains(&(k.clone(), v.clone()))));
}

#[test]
fn expire_after_the_deadline_expires() {
    let t = tree();
    request(&t, "a1", 1);
    let r = approval_of(apply(&t, cmd("x1", Op::ExpireApproval { id: "a1".into(), at: EXPIRES })));
    assert_eq!(r.status, ApprovalStatus::Expired);
    assert_eq!(approval_in(&t, "a1").status, ApprovalStatus::Expired);
}

#[test]
fn expire_leaves_a_decided_approval_alone() {
    let t = tree();
    request(&t, "a1", 1);
    apply(&t, cmd("d1", decide_op("a1", "bob", &["dba"], true, 2_000)));
    let r = approval_of(apply(&t, cmd("x1", Op::ExpireApproval { id: "a1".into(), at: EXPIRES + 1 })));
    assert_eq!(r.status, ApprovalStatus::Approved);
    assert_eq!(approval_in(&t, "a1").status, ApprovalStatus::Approved);
}

#[test]
fn withdrawing_makes_a_pending_approval_final_and_leaves_a_decided_one_alone() {
    let t = tree();
    request(&t, "a1", 1);
    let r = approval_of(apply(&t, cmd("w1", Op::WithdrawApproval { id: "a1".into(), at: 1_500, reason: None })));
    assert_eq!(r.status, ApprovalStatus::Expired);
    assert!(r.reason.contains("withdrawn"), "{}", r.reason);
    let late = apply(&t, cmd("d1", decide_op("a1", "bob", &["dba"], true, 2_000)));
    assert_eq!(rejection(&late), "approval a1 is already expired");

    request(&t, "a2", 1);
    apply(&t, cmd("d2", decide_op("a2", "bob", &["dba"], true, 2_000)));
    let r = approval_of(apply(&t, cmd("w2", Op::WithdrawApproval { id: "a2".into(), at: 2_001, reason: None })));
    assert_eq!(r.status, ApprovalStatus::Approved, "a decision that came first stands");
}

#[test]
fn deciding_or_expiring_an_unknown_approval_is_rejected() {
    let t = tree();
    let r = apply(&t, cmd("d1", decide_op("nope", "bob", &["dba"], true, 2_000)));
    assert_eq!(rejection(&r), "no approval nope");
    let r = apply(&t, cmd("x1", Op::ExpireApproval { id: "nope".into(), at: 2_000 }));
    assert_eq!(rejection(&r), "no approval nope");
    assert!(t.scan_prefix(keys::APPROVAL).next().is_none());
}

#[test]
fn request_approval_starts_pending_with_no_votes_and_keeps_the_first_registration() {
    let t = tree();
    let mut forged = approval("a1", 1);
    forged.status = ApprovalStatus::Approved;
    forged.votes.push(crate::model::ApprovalVote {
        approver: "bob".into(),
        approve: true,
        reason: String::new(),
        at: 1,
    });
    let r = approval_of(apply(&t, cmd("r1", Op::RequestApproval { approval: forged })));
    assert_eq!(r.status, ApprovalStatus::Pending);
    assert!(r.votes.is_empty());
    // A second registration under a new request id does not overwrite the first.
    let mut other = approval("a1", 1);
    other.action = "something else".into();
    let r = approval_of(apply(&t, cmd("r2", Op::RequestApproval { approval: other })));
    assert_eq!(r.action, "DROP TABLE users");
    assert_eq!(approval_in(&t, "a1").action, "DROP TABLE users");
}

#[test]
fn changes_flag_approvals_only_when_an_approval_changed() {
    let t = tree();
    let mut tx = Overlay::new(&t);
    let mut changes = Changes::default();
    apply_command(&mut tx, cmd("p", Op::PutResource { resource: resource("db") }), &mut changes).unwrap();
    assert!(!changes.approvals);
    apply_command(&mut tx, cmd("r", Op::RequestApproval { approval: approval("a1", 1) }), &mut changes).unwrap();
    assert!(changes.approvals);
}

#[test]
fn changes_flag_config_for_resources_and_policies_and_nothing_else() {
    let t = tree();
    let flagged = |op: Op| {
        let mut tx = Overlay::new(&t);
        let mut changes = Changes::default();
        apply_command(&mut tx, cmd(&crate::ids::random_id(), op), &mut changes).unwrap();
        tx.write_to(&t, &Default::default()).unwrap();
        changes.config
    };
    assert!(!flagged(Op::OpenSession { session: session("s1", "alice", "db", 100) }));
    assert!(!flagged(Op::AppendEvents { events: vec![event("s1", 200, "statement")] }));
    assert!(!flagged(Op::RequestApproval { approval: approval("a1", 1) }));
    assert!(flagged(Op::PutResource { resource: resource("db") }));
    assert!(flagged(Op::DeleteResource { name: "db".into() }));
    let policy = crate::model::Policy {
        name: "p".into(),
        source: "name: p\nrules: []\n".into(),
        updated_at: 1,
        updated_by: "a".into(),
    };
    assert!(flagged(Op::PutPolicy { policy }));
    assert!(flagged(Op::DeletePolicy { name: "p".into() }));
    // Deleting what is not there changes nothing.
    assert!(!flagged(Op::DeletePolicy { name: "p".into() }));
}

#[test]
fn the_seq_cache_carried_between_applies_agrees_with_the_events_table() {
    let t = tree();
    apply(&t, cmd("o1", Op::OpenSession { session: session("s1", "alice", "db", 100) }));
    let mut carried = Changes::default();
    for (i, kinds) in [vec!["a", "b"], vec!["c"], vec!["d", "e", "f"]].into_iter().enumerate() {
        let mut tx = Overlay::new(&t);
        let events = kinds.iter().map(|k| event("s1", 200, k)).collect();
        let mut changes = Changes { next_seqs: std::mem::take(&mut carried.next_seqs), ..Changes::default() };
        apply_command(&mut tx, cmd(&format!("e{i}"), Op::AppendEvents { events }), &mut changes).unwrap();
        tx.write_to(&t, &Default::default()).unwrap();
        carried.next_seqs = changes.next_seqs;
    }
    let seqs: Vec<u64> = events_in(&t, "s1").iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(carried.next_seqs.get("s1"), Some(&6));
    // Without the cache (a fresh start) the next seq comes from the table: the same.
    apply(&t, cmd("e9", Op::AppendEvents { events: vec![event("s1", 300, "g")] }));
    assert_eq!(events_in(&t, "s1").last().map(|e| e.seq), Some(6));

    // Closing forgets the session; pruning forgets everything.
    let mut tx = Overlay::new(&t);
    let mut changes = Changes { next_seqs: carried.next_seqs, ..Changes::default() };
    changes.next_seqs.insert("s2".into(), 3);
    let close = Op::CloseSession { id: "s1".into(), at: 400, status: SessionStatus::Closed };
    apply_command(&mut tx, cmd("c1", close), &mut changes).unwrap();
    assert_eq!(changes.next_seqs.get("s1"), None);
    apply_command(&mut tx, cmd("p1", Op::PruneSessions { before: 1 }), &mut changes).unwrap();
    assert!(changes.next_seqs.is_empty());
}

// --- idempotency ---

#[test]
fn replayed_append_events_answers_the_same_and_appends_once() {
    let t = tree();
    open(&t, session("s1", "alice", "db", 100));
    let command = cmd("ev-1", Op::AppendEvents { events: vec![event("s1", 200, "query")] });
    let first = apply(&t, command.clone());
    assert_eq!(first, Response::Appended { seqs: vec![0] });
    let state = records(&t);
    let second = apply(&t, command);
    assert_eq!(second, first);
    assert_eq!(records(&t), state, "a replay changes nothing");
    assert_eq!(events_in(&t, "s1").len(), 1);
    assert_eq!(session_in(&t, "s1").unwrap().events, 1);
}

#[test]
fn replay_within_one_batch_applies_once() {
    let t = tree();
    open(&t, session("s1", "alice", "db", 100));
    let command = cmd("ev-1", Op::AppendEvents { events: vec![event("s1", 200, "query")] });
    let responses = apply_all(&t, vec![command.clone(), command]);
    assert_eq!(responses[0], responses[1]);
    assert_eq!(events_in(&t, "s1").len(), 1);
}

#[test]
fn replayed_decision_returns_the_original_approval_not_already_voted() {
    let t = tree();
    request(&t, "a1", 2);
    let command = cmd("d1", decide_op("a1", "bob", &["dba"], true, 2_000));
    let first = apply(&t, command.clone());
    assert_eq!(approval_of(first.clone()).votes.len(), 1);
    let second = apply(&t, command);
    assert_eq!(second, first);
    assert_eq!(approval_in(&t, "a1").votes.len(), 1);
}

#[test]
fn replayed_rejection_stays_a_rejection() {
    let t = tree();
    let command = cmd("ev-1", Op::AppendEvents { events: vec![event("s1", 200, "query")] });
    let first = apply(&t, command.clone());
    assert_eq!(rejection(&first), "no session s1");
    // The session appears later, but the retried request keeps its original answer.
    open(&t, session("s1", "alice", "db", 100));
    assert_eq!(apply(&t, command), first);
    assert!(events_in(&t, "s1").is_empty());
}

// --- sessions ---

#[test]
fn events_get_consecutive_seqs_across_batches() {
    let t = tree();
    open(&t, session("s1", "alice", "db", 100));
    let r = apply(&t, cmd("e1", Op::AppendEvents { events: vec![event("s1", 200, "a"), event("s1", 201, "b")] }));
    assert_eq!(r, Response::Appended { seqs: vec![0, 1] });
    let r = apply(&t, cmd("e2", Op::AppendEvents { events: vec![event("s1", 300, "c")] }));
    assert_eq!(r, Response::Appended { seqs: vec![2] });
    let events = events_in(&t, "s1");
    assert_eq!(events.iter().map(|e| (e.seq, e.kind.as_str())).collect::<Vec<_>>(), [(0, "a"), (1, "b"), (2, "c")]);
    assert_eq!(session_in(&t, "s1").unwrap().events, 3);
}

#[test]
fn events_of_several_sessions_in_one_command_each_count_from_zero() {
    let t = tree();
    open(&t, session("s1", "alice", "db", 100));
    open(&t, session("s2", "bob", "db", 110));
    let r = apply(
        &t,
        cmd(
            "e1",
            Op::AppendEvents { events: vec![event("s1", 200, "a"), event("s2", 201, "b"), event("s1", 202, "c")] },
        ),
    );
    assert_eq!(r, Response::Appended { seqs: vec![0, 0, 1] });
    assert_eq!(events_in(&t, "s1").len(), 2);
    assert_eq!(events_in(&t, "s2").len(), 1);
}

#[test]
fn open_and_append_in_one_batch_see_each_other() {
    let t = tree();
    let responses = apply_all(
        &t,
        vec![
            cmd("o1", Op::OpenSession { session: session("s1", "alice", "db", 100) }),
            cmd("e1", Op::AppendEvents { events: vec![event("s1", 200, "a")] }),
            cmd("e2", Op::AppendEvents { events: vec![event("s1", 201, "b"), event("s1", 202, "c")] }),
        ],
    );
    assert_eq!(responses[1], Response::Appended { seqs: vec![0] });
    assert_eq!(responses[2], Response::Appended { seqs: vec![1, 2] });
    assert_eq!(session_in(&t, "s1").unwrap().events, 3);
}

#[test]
fn append_with_an_unknown_session_is_rejected_and_writes_nothing() {
    let t = tree();
    open(&t, session("s1", "alice", "db", 100));
    let state = |t: &sled::Tree| -> Vec<_> { records(t).into_iter().filter(|(k, _)| !is_request_record(k)).collect() };
    let before = state(&t);
    let r = apply(&t, cmd("e1", Op::AppendEvents { events: vec![event("s1", 200, "a"), event("ghost", 201, "b")] }));
    assert_eq!(rejection(&r), "no session ghost");
    assert!(events_in(&t, "s1").is_empty());
    assert_eq!(session_in(&t, "s1").unwrap().events, 0);
    assert_eq!(state(&t), before);
}

#[test]
fn reopening_a_session_changes_nothing() {
    let t = tree();
    open(&t, session("s1", "alice", "db", 100));
    apply(&t, cmd("e1", Op::AppendEvents { events: vec![event("s1", 200, "a")] }));
    let r = apply(&t, cmd("o2", Op::OpenSession { session: session("s1", "mallory", "other", 500) }));
    assert_eq!(r, Response::Done);
    let s = session_in(&t, "s1").unwrap();
    assert_eq!((s.identity.as_str(), s.started_at, s.events), ("alice", 100, 1));
    assert!(t.get(keys::index(keys::BY_IDENTITY, "mallory", 500, "s1")).unwrap().is_none());
}

#[test]
fn close_session_sets_end_time_and_status_once() {
    let t = tree();
    open(&t, session("s1", "alice", "db", 100));
    let r = apply(&t, cmd("c1", Op::CloseSession { id: "s1".into(), at: 900, status: SessionStatus::Failed }));
    assert_eq!(r, Response::Done);
    let s = session_in(&t, "s1").unwrap();
    assert_eq!(s.status, SessionStatus::Failed);
    assert_eq!(s.ended_at, Some(900));
    // A later close does not rewrite the outcome.
    apply(&t, cmd("c2", Op::CloseSession { id: "s1".into(), at: 950, status: SessionStatus::Closed }));
    let s = session_in(&t, "s1").unwrap();
    assert_eq!((s.status, s.ended_at), (SessionStatus::Failed, Some(900)));
}

#[test]
fn closing_an_unknown_session_is_rejected() {
    let t = tree();
    let r = apply(&t, cmd("c1", Op::CloseSession { id: "ghost".into(), at: 900, status: SessionStatus::Closed }));
    assert_eq!(rejection(&r), "no session ghost");
}

fn index_keys(tree: &sled::Tree, id: &str) -> usize {
    [keys::BY_IDENTITY, keys::BY_RESOURCE, keys::BY_TIME]
        .iter()
        .flat_map(|p| tree.scan_prefix(p).keys().map(|k| k.unwrap()))
        .filter(|k| k.ends_with(id.as_bytes()))
        .count()
}

#[test]
fn prune_removes_old_closed_sessions_with_events_and_index_entries() {
    let t = tree();
    // old: closed before the horizon -> pruned
    open(&t, session("old", "alice", "db", 100));
    apply(&t, cmd("e-old", Op::AppendEvents { events: vec![event("old", 110, "a"), event("old", 120, "b")] }));
    apply(&t, cmd("c-old", Op::CloseSession { id: "old".into(), at: 200, status: SessionStatus::Closed }));
    // failed: also closed (failed) before the horizon -> pruned
    open(&t, session("failed", "bob", "db", 150));
    apply(&t, cmd("c-failed", Op::CloseSession { id: "failed".into(), at: 160, status: SessionStatus::Failed }));
    // running: started long ago, still open -> kept
    open(&t, session("running", "alice", "db", 50));
    apply(&t, cmd("e-running", Op::AppendEvents { events: vec![event("running", 60, "a")] }));
    // late: started before the horizon but ended after it -> kept
    open(&t, session("late", "carol", "db", 300));
    apply(&t, cmd("c-late", Op::CloseSession { id: "late".into(), at: 2_000, status: SessionStatus::Closed }));
    // new: started and ended after the horizon -> kept
    open(&t, session("new", "alice", "db", 1_500));
    apply(&t, cmd("c-new", Op::CloseSession { id: "new".into(), at: 1_600, status: SessionStatus::Closed }));

    let r = apply(&t, cmd("prune", Op::PruneSessions { before: 1_000 }));
    assert_eq!(r, Response::Pruned { sessions: 2 });

    for gone in ["old", "failed"] {
        assert!(session_in(&t, gone).is_none(), "{gone}");
        assert!(events_in(&t, gone).is_empty(), "{gone}");
        assert_eq!(index_keys(&t, gone), 0, "{gone}");
    }
    for kept in ["running", "late", "new"] {
        assert!(session_in(&t, kept).is_some(), "{kept}");
        assert_eq!(index_keys(&t, kept), 3, "{kept}");
    }
    assert_eq!(events_in(&t, "running").len(), 1);
}

#[test]
fn old_request_ids_are_forgotten_with_their_time_index_and_recent_ones_stay_remembered() {
    let t = tree();
    let put = |id: &str, at: Millis| {
        let policy =
            crate::model::Policy { name: id.into(), source: String::new(), updated_at: at, updated_by: "ops".into() };
        apply(&t, cmd_at(id, at, Op::PutPolicy { policy }))
    };
    put("old", 100);
    put("older", 50);
    put("recent", 5_000);
    assert_eq!(apply(&t, cmd_at("forget", 6_000, Op::ForgetRequests { before: 1_000 })), Response::Done);
    let remembered = |id: &str| t.get(keys::named(keys::REQUEST, id)).unwrap().is_some();
    assert!(!remembered("old") && !remembered("older"));
    assert!(remembered("recent") && remembered("forget"));
    let index: Vec<Vec<u8>> = t.scan_prefix(keys::REQUEST_BY_TIME).keys().map(|k| k.unwrap().to_vec()).collect();
    assert_eq!(index, [keys::request_by_time(5_000, "recent"), keys::request_by_time(6_000, "forget")]);
    // A forgotten id applies again if it ever came back; a remembered one answers as before.
    let again = Policy { name: "old".into(), source: "again".into(), updated_at: 100, updated_by: "ops".into() };
    apply(&t, cmd_at("old", 100, Op::PutPolicy { policy: again }));
    let stored: Policy = serde_json::from_slice(&t.get(keys::named(keys::POLICY, "old")).unwrap().unwrap()).unwrap();
    assert_eq!(stored.source, "again");
}

/// Apply batches differ between nodes (the leader and a follower group committed entries
/// differently, a restart re-applies in one batch), so the resulting state must not
/// depend on where the batch boundaries fall.
#[test]
fn prune_result_does_not_depend_on_batch_boundaries() {
    let commands = vec![
        cmd("open-a", Op::OpenSession { session: session("a", "alice", "db", 100) }),
        cmd("ev-a", Op::AppendEvents { events: vec![event("a", 110, "q")] }),
        cmd("close-a", Op::CloseSession { id: "a".into(), at: 200, status: SessionStatus::Closed }),
        cmd("open-b", Op::OpenSession { session: session("b", "bob", "db", 300) }),
        cmd("prune", Op::PruneSessions { before: 1_000 }),
    ];
    let one_by_one = tree();
    let one_by_one_responses: Vec<_> = commands.iter().map(|c| apply(&one_by_one, c.clone())).collect();
    let all_at_once = tree();
    let all_at_once_responses = apply_all(&all_at_once, commands);
    assert_eq!(one_by_one_responses, all_at_once_responses);
    assert_eq!(records(&one_by_one), records(&all_at_once));
    assert_eq!(one_by_one_responses[4], Response::Pruned { sessions: 1 });
}

// --- resources and policies ---

#[test]
fn put_and_delete_resource() {
    let t = tree();
    assert_eq!(apply(&t, cmd("p1", Op::PutResource { resource: resource("db") })), Response::Done);
    let stored: Resource = get(&t, &keys::named(keys::RESOURCE, "db")).unwrap();
    assert_eq!(stored, resource("db"));
    let mut changed = resource("db");
    changed.address = "db2.internal:5432".into();
    apply(&t, cmd("p2", Op::PutResource { resource: changed.clone() }));
    assert_eq!(get::<Resource>(&t, &keys::named(keys::RESOURCE, "db")).unwrap(), changed);
    assert_eq!(apply(&t, cmd("d1", Op::DeleteResource { name: "db".into() })), Response::Done);
    assert!(t.get(keys::named(keys::RESOURCE, "db")).unwrap().is_none());
}

#[test]
fn deleting_a_missing_resource_is_rejected() {
    let t = tree();
    let r = apply(&t, cmd("d1", Op::DeleteResource { name: "ghost".into() }));
    assert_eq!(rejection(&r), "no resource named ghost");
    // deleted twice under different request ids: the second is refused
    apply(&t, cmd("p1", Op::PutResource { resource: resource("db") }));
    assert_eq!(apply(&t, cmd("d2", Op::DeleteResource { name: "db".into() })), Response::Done);
    let r = apply(&t, cmd("d3", Op::DeleteResource { name: "db".into() }));
    assert_eq!(rejection(&r), "no resource named db");
}

#[test]
fn put_and_delete_policy() {
    let t = tree();
    let policy = crate::model::Policy {
        name: "p".into(),
        source: "rules: []".into(),
        updated_at: 7,
        updated_by: "alice".into(),
    };
    assert_eq!(apply(&t, cmd("p1", Op::PutPolicy { policy: policy.clone() })), Response::Done);
    assert_eq!(get::<Policy>(&t, &keys::named(keys::POLICY, "p")).unwrap(), policy);
    assert_eq!(apply(&t, cmd("d1", Op::DeletePolicy { name: "p".into() })), Response::Done);
    assert!(t.get(keys::named(keys::POLICY, "p")).unwrap().is_none());
    let r = apply(&t, cmd("d2", Op::DeletePolicy { name: "p".into() }));
    assert_eq!(rejection(&r), "no policy named p");
}

#[test]
fn prune_in_the_same_batch_as_late_events_removes_them_too() {
    let t = tree();
    open(&t, session("a", "alice", "db", 100));
    apply_all(
        &t,
        vec![
            cmd("ev-a", Op::AppendEvents { events: vec![event("a", 110, "q")] }),
            cmd("close-a", Op::CloseSession { id: "a".into(), at: 200, status: SessionStatus::Closed }),
            cmd("prune", Op::PruneSessions { before: 1_000 }),
        ],
    );
    assert!(session_in(&t, "a").is_none());
    assert!(events_in(&t, "a").is_empty(), "no orphaned events");
    // Nothing of the session is left; remembered request ids go their own way.
    let left: Vec<_> = records(&t).into_iter().map(|(k, _)| k).filter(|k| !is_request_record(k)).collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn overlay_scan_merges_batch_writes_with_committed_keys() {
    let t = tree();
    for k in ["x/a", "x/c", "x/e", "y/z"] {
        t.insert(k, b"1").unwrap();
    }
    let mut tx = Overlay::new(&t);
    tx.put_raw(b"x/b".to_vec(), vec![]);
    tx.remove(b"x/c".to_vec());
    tx.put_raw(b"x/e".to_vec(), b"2".to_vec());
    tx.put_raw(b"x/f".to_vec(), vec![]);
    tx.remove(b"x/g".to_vec());
    tx.put_raw(b"w/0".to_vec(), vec![]);
    tx.put_raw(b"y/0".to_vec(), vec![]);
    let seen: Vec<Vec<u8>> = tx.keys(b"x/").map(|k| k.unwrap()).collect();
    let expected: Vec<Vec<u8>> = ["x/a", "x/b", "x/e", "x/f"].iter().map(|k| k.as_bytes().to_vec()).collect();
    assert_eq!(seen, expected);
}

#[test]
fn overlay_last_key_sees_this_batchs_writes_and_skips_its_removals() {
    let t = tree();
    for k in ["x/a", "x/c", "x/e", "y/z"] {
        t.insert(k, b"1").unwrap();
    }
    let mut tx = Overlay::new(&t);
    assert_eq!(tx.last_key(b"x/").unwrap(), Some(b"x/e".to_vec()));
    tx.remove(b"x/e".to_vec());
    assert_eq!(tx.last_key(b"x/").unwrap(), Some(b"x/c".to_vec()), "a removal uncovers the key before it");
    tx.put_raw(b"x/d".to_vec(), vec![]);
    assert_eq!(tx.last_key(b"x/").unwrap(), Some(b"x/d".to_vec()));
    tx.remove(b"x/a".to_vec());
    tx.remove(b"x/c".to_vec());
    tx.remove(b"x/d".to_vec());
    assert_eq!(tx.last_key(b"x/").unwrap(), None);
    assert_eq!(tx.last_key(b"w/").unwrap(), None);
}

#[test]
fn appending_writes_one_record_per_session_and_never_rewrites_the_session_record() {
    let t = tree();
    apply(&t, cmd("o1", Op::OpenSession { session: session("s1", "alice", "db", 100) }));
    let stored = t.get(keys::named(keys::SESSION, "s1")).unwrap().unwrap();
    apply(&t, cmd("e1", Op::AppendEvents { events: vec![event("s1", 200, "a"), event("s1", 201, "b")] }));
    assert_eq!(t.get(keys::named(keys::SESSION, "s1")).unwrap().unwrap(), stored);
    assert_eq!(session_in(&t, "s1").unwrap().events, 2);
    // The command's two events of s1 are one record.
    let runs: Vec<_> = t.scan_prefix(keys::event_prefix("s1")).keys().map(|k| k.unwrap()).collect();
    assert_eq!(runs.len(), 1);
    assert_eq!(keys::event_run_seqs(&runs[0]), Some((0, 1)));
}

// === restore ===

fn restore_parts(records: &[(&[u8], &[u8])]) -> (Vec<String>, String) {
    use base64::Engine as _;
    let mut w = crate::backup::BackupWriter::new(&crate::backup::BackupWriter::header(1, 1)).unwrap();
    for (k, v) in records {
        w.record(k, v).unwrap();
    }
    let backup = crate::backup::Backup::parse(&w.finish()).unwrap();
    let (parts, sha) = backup.parts().unwrap();
    (parts.iter().map(|p| base64::engine::general_purpose::STANDARD.encode(p)).collect(), sha)
}

fn stage_all(tree: &sled::Tree, restore: &str, parts: &[String]) {
    for (i, records) in parts.iter().enumerate() {
        let op = Op::RestoreStage { restore_id: restore.into(), part: i as u64, records: records.clone() };
        assert_eq!(apply(tree, cmd(&format!("{restore}-stage-{i}"), op)), Response::Done);
    }
}

#[test]
fn a_restore_installs_all_staged_records_at_commit_and_nothing_before() {
    let tree = tree();
    let (parts, sha) = restore_parts(&[(b"p/demo", b"{}"), (b"s/x", b"{}")]);
    stage_all(&tree, "r1", &parts);
    assert!(tree.get(b"p/demo").unwrap().is_none(), "a staged record is visible before the commit");
    let op = Op::RestoreCommit { restore_id: "r1".into(), parts: parts.len() as u64, sha256: sha };
    assert_eq!(apply(&tree, cmd("r1-commit", op)), Response::Restored { records: 2 });
    assert!(tree.get(b"p/demo").unwrap().is_some());
    assert!(tree.get(b"s/x").unwrap().is_some());
    assert!(tree.scan_prefix(keys::RESTORE_PART).next().is_none(), "staged parts left behind");
}

#[test]
fn a_restore_with_a_missing_part_a_wrong_digest_or_a_non_empty_target_changes_nothing() {
    let tree = tree();
    let (parts, sha) = restore_parts(&[(b"p/demo", b"{}")]);
    stage_all(&tree, "r1", &parts);
    // One part more than staged.
    let op = Op::RestoreCommit { restore_id: "r1".into(), parts: parts.len() as u64 + 1, sha256: sha.clone() };
    assert!(rejection(&apply(&tree, cmd("c1", op))).contains("missing"));
    assert!(tree.get(b"p/demo").unwrap().is_none());
    // Staged again, committed with another digest.
    stage_all(&tree, "r2", &parts);
    let op = Op::RestoreCommit { restore_id: "r2".into(), parts: parts.len() as u64, sha256: "00".repeat(32) };
    assert!(rejection(&apply(&tree, cmd("c2", op))).contains("checksum"));
    assert!(tree.get(b"p/demo").unwrap().is_none());
    // A cluster that already holds a policy is never merged into.
    let policy = crate::model::Policy {
        name: "live".into(),
        source: "name: live".into(),
        updated_at: 1,
        updated_by: "t".into(),
    };
    apply(&tree, cmd("live", Op::PutPolicy { policy }));
    stage_all(&tree, "r3", &parts);
    let op = Op::RestoreCommit { restore_id: "r3".into(), parts: parts.len() as u64, sha256: sha };
    assert!(rejection(&apply(&tree, cmd("c3", op))).contains("already holds"));
    assert!(tree.get(b"p/demo").unwrap().is_none());
    assert!(tree.get(keys::named(keys::POLICY, "live")).unwrap().is_some(), "the live policy is gone");
}

#[test]
fn the_pending_index_holds_exactly_the_pending_approvals_through_every_ending() {
    let t = tree();
    for id in ["approved", "denied", "expired", "withdrawn", "still"] {
        request(&t, id, 1);
    }
    apply(&t, cmd("d1", decide_op("approved", "bob", &["dba"], true, CREATED + 1)));
    apply(&t, cmd("d2", decide_op("denied", "bob", &["dba"], false, CREATED + 1)));
    apply(&t, cmd("x1", Op::ExpireApproval { id: "expired".into(), at: EXPIRES }));
    apply(&t, cmd("w1", Op::WithdrawApproval { id: "withdrawn".into(), at: CREATED + 1, reason: None }));
    let index: Vec<String> = t
        .scan_prefix(keys::PENDING_APPROVAL)
        .keys()
        .map(|k| String::from_utf8(k.unwrap()[keys::PENDING_APPROVAL.len()..].to_vec()).unwrap())
        .collect();
    assert_eq!(index, ["still"]);
}

#[test]
fn a_restore_rebuilds_the_pending_index_of_the_approvals_it_brings() {
    let tree = tree();
    let pending = serde_json::to_vec(&approval("open", 1)).unwrap();
    let decided = serde_json::to_vec(&Approval { status: ApprovalStatus::Denied, ..approval("done", 1) }).unwrap();
    let (parts, sha) = restore_parts(&[(b"a/open", &pending), (b"a/done", &decided)]);
    stage_all(&tree, "r1", &parts);
    let op = Op::RestoreCommit { restore_id: "r1".into(), parts: parts.len() as u64, sha256: sha };
    assert_eq!(apply(&tree, cmd("r1-commit", op)), Response::Restored { records: 2 });
    let index: Vec<Vec<u8>> = tree.scan_prefix(keys::PENDING_APPROVAL).keys().map(|k| k.unwrap().to_vec()).collect();
    assert_eq!(index, [keys::named(keys::PENDING_APPROVAL, "open")]);
}

#[test]
fn retention_drops_decided_approvals_created_before_the_horizon_and_keeps_pending_ones() {
    let t = tree();
    let make = |id: &str, created: Millis| {
        let a = Approval { created_at: created, expires_at: created + 10_000, ..approval(id, 1) };
        apply(&t, cmd(&format!("req-{id}"), Op::RequestApproval { approval: a }));
    };
    make("old-decided", 100);
    make("old-pending", 200);
    make("new-decided", 5_000);
    apply(&t, cmd("d1", decide_op("old-decided", "bob", &["dba"], true, 150)));
    apply(&t, cmd("d2", decide_op("new-decided", "bob", &["dba"], false, 5_100)));
    apply(&t, cmd("prune", Op::PruneSessions { before: 1_000 }));
    let kept: Vec<String> = t
        .scan_prefix(keys::APPROVAL)
        .values()
        .map(|v| serde_json::from_slice::<Approval>(&v.unwrap()).unwrap().id)
        .collect();
    assert_eq!(kept, ["new-decided", "old-pending"]);
    let index: Vec<Vec<u8>> = t.scan_prefix(keys::APPROVAL_BY_TIME).keys().map(|k| k.unwrap().to_vec()).collect();
    assert_eq!(index, [keys::approval_by_time(200, "old-pending"), keys::approval_by_time(5_000, "new-decided")]);
}

fn ssh_authority(tag: &str) -> crate::model::SshAuthority {
    let sealed = |s: &str| crate::model::SealedSecret { nonce: format!("n-{s}"), ciphertext: format!("c-{s}") };
    crate::model::SshAuthority {
        ca_key: sealed(&format!("ca-{tag}")),
        ca_public_key: format!("ssh-ed25519 CA{tag}"),
        host_key: sealed(&format!("host-{tag}")),
        host_public_key: format!("ssh-ed25519 HOST{tag}"),
        created_at: 1,
        created_by: 1,
    }
}

#[test]
fn the_first_ssh_authority_wins_and_later_ones_change_nothing() {
    let tree = tree();
    let first = ssh_authority("one");
    assert_eq!(apply(&tree, cmd("a1", Op::SetSshAuthority { authority: first.clone() })), Response::Done);
    assert_eq!(apply(&tree, cmd("a2", Op::SetSshAuthority { authority: ssh_authority("two") })), Response::Done);
    let stored: crate::model::SshAuthority = get(&tree, keys::SSH_AUTHORITY).unwrap();
    assert_eq!(stored, first);
    // It belongs to the cluster: not in a backup, so a restore never replaces it.
    assert!(!crate::backup::is_backed_up(keys::SSH_AUTHORITY));
}

// --- deferred requests (HTTP `Prefer: respond-async`) ---

fn use_op(id: &str, requester: &str, digest: &str, at: Millis) -> Op {
    Op::UseApproval { id: id.into(), requester: requester.into(), request_digest: digest.into(), at }
}

fn request_deferred(tree: &sled::Tree, id: &str) {
    let deferred = Approval { request_digest: Some("digest-1".into()), ..approval(id, 1) };
    approval_of(apply(tree, cmd(&format!("req-{id}"), Op::RequestApproval { approval: deferred })));
}

#[test]
fn a_deferred_approval_is_used_once_by_its_requester_for_the_same_request() {
    let t = tree();
    request_deferred(&t, "a1");
    let early = apply(&t, cmd("u0", use_op("a1", "alice", "digest-1", 1_500)));
    assert!(rejection(&early).contains("not decided yet"), "{early:?}");
    approval_of(apply(&t, cmd("d1", decide_op("a1", "bob", &["dba"], true, 2_000))));
    let other_request = apply(&t, cmd("u1", use_op("a1", "alice", "digest-2", 2_100)));
    assert!(rejection(&other_request).contains("covers another request"), "{other_request:?}");
    let other_person = apply(&t, cmd("u2", use_op("a1", "mallory", "digest-1", 2_100)));
    assert!(rejection(&other_person).contains("someone else"), "{other_person:?}");
    let used = approval_of(apply(&t, cmd("u3", use_op("a1", "alice", "digest-1", 2_200))));
    assert_eq!(used.used_at, Some(2_200));
    let again = apply(&t, cmd("u4", use_op("a1", "alice", "digest-1", 2_300)));
    assert!(rejection(&again).contains("already used"), "{again:?}");
    assert_eq!(approval_in(&t, "a1").used_at, Some(2_200));
}

#[test]
fn a_deferred_approval_must_be_used_within_its_wait_after_the_decision_and_never_when_denied() {
    let t = tree();
    request_deferred(&t, "late");
    approval_of(apply(&t, cmd("d1", decide_op("late", "bob", &["dba"], true, 2_000))));
    // Created at 1 000, expiring at 10 000: usable until 2 000 + 9 000.
    let late = apply(&t, cmd("u1", use_op("late", "alice", "digest-1", 11_001)));
    assert!(rejection(&late).contains("not used in time"), "{late:?}");
    request_deferred(&t, "denied");
    approval_of(apply(&t, cmd("d2", decide_op("denied", "bob", &["dba"], false, 2_000))));
    let denied = apply(&t, cmd("u2", use_op("denied", "alice", "digest-1", 2_100)));
    assert!(rejection(&denied).contains("denied"), "{denied:?}");
    // A held (not deferred) approval cannot be used this way.
    request(&t, "held", 1);
    approval_of(apply(&t, cmd("d3", decide_op("held", "bob", &["dba"], true, 2_000))));
    let held = apply(&t, cmd("u3", use_op("held", "alice", "digest-1", 2_100)));
    assert!(rejection(&held).contains("covers another request"), "{held:?}");
}
