#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
//! The gate's phases on tokio's paused clock, against the in-memory store.

use std::sync::Arc;
use std::time::Duration;

use portcullis_raft::model::{ApprovalStatus, AuditMode, Protocol, Resource};
use tokio::sync::oneshot;

use super::*;
use crate::identity::Identity;
use crate::policy::Request;
use crate::store::memory::MemoryStore;

const POLICY: &str = "name: t
rules:
  - name: read
    match: { kinds: [select] }
    action: allow
  - name: hold-updates
    match: { kinds: [update] }
    action: review
    approvers: { groups: [dba] }
    timeout: 2s
  - name: no-ddl
    match: { kinds: [ddl] }
    action: deny
    reason: no DDL here
";

/// A door that remembers what it was told and gives up when the test says so.
#[derive(Default)]
struct TestDoor {
    told: Vec<String>,
    give_up: Option<oneshot::Receiver<GaveUp>>,
}

impl Door for TestDoor {
    async fn tell_waiting(&mut self, waiting: &Waiting<'_>) -> crate::Result<()> {
        self.told.push(waiting.message());
        Ok(())
    }

    async fn gave_up(&mut self) -> GaveUp {
        match self.give_up.as_mut() {
            Some(rx) => rx.await.unwrap_or(GaveUp::Gone),
            None => std::future::pending().await,
        }
    }
}

fn resource(audit: AuditMode) -> Resource {
    Resource {
        name: "db".into(),
        protocol: Protocol::Postgres,
        address: "127.0.0.1:1".into(),
        username: None,
        secret: None,
        audit,
        options: Default::default(),
        updated_at: 0,
        logins: vec![],
    }
}

async fn session(audit: AuditMode) -> (Arc<MemoryStore>, GateSession<MemoryStore>) {
    let store = Arc::new(MemoryStore::default());
    store.put_policy("t", POLICY);
    let gate = Arc::new(Gate::new(store.clone(), GateSettings::default()));
    let identity = Identity {
        subject: "alice".into(),
        email: None,
        name: None,
        groups: vec!["engineers".into()],
        issuer: "test".into(),
        expires_at: u64::MAX,
    };
    let opening = Opening {
        identity,
        resource: resource(audit),
        protocol: Protocol::Postgres,
        client_addr: "c".into(),
        flushes_when_idle: false,
    };
    let slot = gate.reserve("alice").unwrap();
    let session = gate.open(opening, slot).await.unwrap();
    (store, session)
}

fn work(sql: &str) -> Work {
    Work::query(sql)
}

fn request(kind: &str) -> Vec<Request> {
    vec![Request {
        resource: "db".into(),
        protocol: Protocol::Postgres,
        kind: kind.into(),
        tables: vec![],
        functions: vec![],
        commands: vec![],
        text: String::new(),
        missing_where: false,
        dynamic_sql: false,
        writes: false,
        locks_rows: false,
        json: Default::default(),
        path: None,
    }]
}

/// Clear `kind` work in the background, the way a door would.
fn spawn_clear(
    session: GateSession<MemoryStore>,
    mut door: TestDoor,
    kind: &'static str,
) -> tokio::task::JoinHandle<(GateSession<MemoryStore>, TestDoor, Result<Cleared, Refusal>)> {
    tokio::spawn(async move {
        let judgement = session.decide(&request(kind)).unwrap();
        let outcome = session.clear(&mut door, &work(kind), judgement).await.unwrap();
        (session, door, outcome)
    })
}

/// The id of the one pending approval, once it exists.
async fn pending_approval(store: &MemoryStore) -> String {
    for _ in 0..100 {
        if let Some(a) = store.approvals().into_iter().find(|a| a.status == ApprovalStatus::Pending) {
            return a.id;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no approval was requested");
}

fn kinds_of(store: &MemoryStore) -> Vec<String> {
    store.events().iter().map(|e| e.kind.clone()).collect()
}

#[tokio::test(start_paused = true)]
async fn held_work_is_cleared_by_an_approval_and_the_client_is_told_what_it_waits_for() {
    let (store, session) = session(AuditMode::Strict).await;
    let task = spawn_clear(session, TestDoor::default(), "update");
    let id = pending_approval(&store).await;
    store.decide(&id, "bob", true, "ok").unwrap();
    let (_, door, outcome) = task.await.unwrap();
    let cleared = outcome.unwrap();
    assert_eq!(cleared.approval.as_deref(), Some(id.as_str()));
    assert_eq!(cleared.judgement.rules, vec!["t/hold-updates".to_string()]);
    assert_eq!(door.told.len(), 1);
    assert!(door.told[0].contains(&id), "{:?}", door.told);
}

#[tokio::test(start_paused = true)]
async fn a_denied_approval_refuses_the_work_with_the_approvers_reason_and_records_it() {
    let (store, session) = session(AuditMode::Strict).await;
    let task = spawn_clear(session, TestDoor::default(), "update");
    let id = pending_approval(&store).await;
    store.decide(&id, "bob", false, "not today").unwrap();
    let (_, _, outcome) = task.await.unwrap();
    let refusal = outcome.unwrap_err();
    assert_eq!(refusal, Refusal::ApprovalDenied { approval: id.clone(), by: "bob".into(), reason: "not today".into() });
    let events = store.events();
    assert_eq!(kinds_of(&store), vec!["refused"]);
    let detail: serde_json::Value = serde_json::from_str(events[0].detail.as_json()).unwrap();
    assert_eq!(detail["approval"], id);
    assert_eq!(detail["rules"], serde_json::json!(["t/hold-updates"]));
}

#[tokio::test(start_paused = true)]
async fn policy_deny_is_refused_without_a_hold_and_recorded_with_its_rule() {
    let (store, session) = session(AuditMode::Strict).await;
    let judgement = session.decide(&request("ddl")).unwrap();
    let mut door = TestDoor::default();
    let refusal = session.clear(&mut door, &work("DROP TABLE x"), judgement).await.unwrap().unwrap_err();
    assert!(matches!(&refusal, Refusal::Denied { reason } if reason.contains("no DDL here")), "{refusal:?}");
    assert!(door.told.is_empty());
    assert!(store.approvals().is_empty());
    let detail: serde_json::Value = serde_json::from_str(store.events()[0].detail.as_json()).unwrap();
    assert_eq!(detail["sql"], "DROP TABLE x");
    assert_eq!(detail["kinds"], serde_json::json!(["ddl"]));
    assert_eq!(detail["rules"], serde_json::json!(["t/no-ddl"]));
}

#[tokio::test(start_paused = true)]
async fn an_undecided_hold_expires_at_the_rules_timeout_and_is_made_final() {
    let (store, session) = session(AuditMode::Strict).await;
    let started = tokio::time::Instant::now();
    let task = spawn_clear(session, TestDoor::default(), "update");
    let (_, _, outcome) = task.await.unwrap();
    let refusal = outcome.unwrap_err();
    assert!(matches!(refusal, Refusal::ApprovalExpired { after, .. } if after == Duration::from_secs(2)));
    assert!(started.elapsed() >= Duration::from_secs(2), "expired early: {:?}", started.elapsed());
    let approval = store.approvals().pop().unwrap();
    assert_eq!(approval.status, ApprovalStatus::Expired, "a late approval could still release it");
}

#[tokio::test(start_paused = true)]
async fn losing_the_lease_while_held_refuses_the_work_at_once() {
    let (store, session) = session(AuditMode::Strict).await;
    let task = spawn_clear(session, TestDoor::default(), "update");
    let id = pending_approval(&store).await;
    let lost_at = tokio::time::Instant::now();
    store.set_serving(false);
    let (_, _, outcome) = task.await.unwrap();
    assert_eq!(outcome.unwrap_err(), Refusal::LeaseLostWhileHeld { approval: id });
    assert!(lost_at.elapsed() < Duration::from_secs(1), "the hold outlived the lease by {:?}", lost_at.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_client_that_goes_away_while_held_withdraws_the_approval() {
    let (store, session) = session(AuditMode::Strict).await;
    let (tx, rx) = oneshot::channel();
    let door = TestDoor { give_up: Some(rx), ..Default::default() };
    let task = spawn_clear(session, door, "update");
    let id = pending_approval(&store).await;
    tx.send(GaveUp::Gone).unwrap();
    let (_, _, outcome) = task.await.unwrap();
    assert_eq!(outcome.unwrap_err(), Refusal::ClientGoneWhileHeld { approval: id.clone() });
    let approval = store.approvals().pop().unwrap();
    assert_eq!(approval.status, ApprovalStatus::Expired);
    assert!(store.decide(&id, "bob", true, "late").is_err(), "a withdrawn approval must not be approvable");
}

#[tokio::test(start_paused = true)]
async fn strict_writes_get_their_permit_only_after_the_record_is_committed() {
    let (store, session) = session(AuditMode::Strict).await;
    let judgement = session.decide(&request("select")).unwrap();
    let cleared = Cleared { judgement, approval: None };
    let w = work("UPDATE t SET x = 1");
    store.let_commits_flow(false);
    let batch = [(&w, &cleared)];
    let audit = session.audit(&batch, Effect::Writes);
    let mut audit = std::pin::pin!(audit);
    assert!(
        tokio::time::timeout(Duration::from_secs(5), &mut audit).await.is_err(),
        "a strict write got its permit before its record was committed"
    );
    assert!(store.events().is_empty());
    store.let_commits_flow(true);
    let permit = audit.await.unwrap();
    assert_eq!(permit.covers(), 1);
    assert_eq!(kinds_of(&store), vec!["statement"]);
}

#[tokio::test(start_paused = true)]
async fn strict_reads_run_at_once_but_their_results_wait_for_the_record() {
    let (store, session) = session(AuditMode::Strict).await;
    let judgement = session.decide(&request("select")).unwrap();
    let cleared = Cleared { judgement, approval: None };
    let w = work("SELECT 1");
    store.let_commits_flow(false);
    let mut permit = session.audit(&[(&w, &cleared)], Effect::Reads).await.unwrap();
    {
        let results = permit.results_may_leave();
        let mut results = std::pin::pin!(results);
        assert!(
            tokio::time::timeout(Duration::from_secs(5), &mut results).await.is_err(),
            "results of a strict read left before its record was committed"
        );
        store.let_commits_flow(true);
        results.await.unwrap();
    }
    assert_eq!(kinds_of(&store), vec!["statement"]);
}

#[tokio::test(start_paused = true)]
async fn fast_mode_permits_do_not_wait_for_the_cluster() {
    let (store, session) = session(AuditMode::Fast).await;
    let judgement = session.decide(&request("select")).unwrap();
    let cleared = Cleared { judgement, approval: None };
    let w = work("UPDATE t SET x = 1");
    store.let_commits_flow(false);
    let mut permit = session.audit(&[(&w, &cleared)], Effect::Writes).await.unwrap();
    permit.results_may_leave().await.unwrap();
    store.let_commits_flow(true);
}

#[tokio::test(start_paused = true)]
async fn in_strict_mode_a_refusal_is_told_only_once_its_record_is_committed() {
    let (store, session) = session(AuditMode::Strict).await;
    let refusal =
        Refusal::Unclassifiable { cause: Unclassified::Syntax, detail: "cannot parse SQL".into(), position: None };
    store.let_commits_flow(false);
    let w = work("SELEC 1");
    let refused = session.refused(&w, None, &refusal);
    let mut refused = std::pin::pin!(refused);
    assert!(
        tokio::time::timeout(Duration::from_secs(5), &mut refused).await.is_err(),
        "the refusal returned before its record was committed"
    );
    store.let_commits_flow(true);
    refused.await;
    assert_eq!(kinds_of(&store), vec!["refused"]);
}

#[tokio::test(start_paused = true)]
async fn a_result_record_rides_along_with_the_next_statement_and_keeps_its_order() {
    let (store, session) = session(AuditMode::Strict).await;
    let judgement = session.decide(&request("select")).unwrap();
    let cleared = Cleared { judgement, approval: None };
    let w = work("SELECT 1");
    let mut p = session.audit(&[(&w, &cleared)], Effect::Reads).await.unwrap();
    p.results_may_leave().await.unwrap();
    session.record(ResultRecord { rows: 1, ..Default::default() }).await;
    assert!(session.has_pending());
    let mut p = session.audit(&[(&w, &cleared)], Effect::Reads).await.unwrap();
    p.results_may_leave().await.unwrap();
    assert_eq!(kinds_of(&store), vec!["statement", "result", "statement"]);
    let records: Vec<serde_json::Value> =
        store.events().iter().map(|e| serde_json::from_str(e.detail.as_json()).unwrap()).collect();
    assert_eq!(records[0]["rules"], serde_json::json!(["t/read"]), "rules are a list");
    assert_eq!(records[0]["kinds"], serde_json::json!(["select"]), "kinds are a list");
    session.close(portcullis_raft::model::SessionStatus::Closed).await;
    assert_eq!(store.sessions()[0].status, portcullis_raft::model::SessionStatus::Closed);
}

#[tokio::test(start_paused = true)]
async fn huge_texts_are_recorded_cut_with_their_length_and_digest_and_so_are_held_ones() {
    let (store, session) = session(AuditMode::Strict).await;
    let huge = format!("SELECT '{}' /* é */", "x".repeat(200_000));
    let refusal = Refusal::Unclassifiable { cause: Unclassified::TooLarge, detail: "too large".into(), position: None };
    session.refused(&work(&huge), None, &refusal).await;
    let detail: serde_json::Value = serde_json::from_str(store.events()[0].detail.as_json()).unwrap();
    let kept = detail["sql"].as_str().unwrap();
    assert!(kept.len() <= record::DEFAULT_RECORD_TEXT_MAX && huge.starts_with(kept), "{}", kept.len());
    assert_eq!(detail["sql_bytes"], huge.len());
    assert_eq!(detail["sql_sha256"], record::sha256_hex(&huge));
    assert!(store.events()[0].detail.as_json().len() < 2 * record::DEFAULT_RECORD_TEXT_MAX);

    // A held statement's approval shows the cut text, its length and digest.
    let task = tokio::spawn(async move {
        let judgement = session.decide(&request("update")).unwrap();
        let mut door = TestDoor::default();
        session.clear(&mut door, &work(&format!("UPDATE t SET x = '{}'", "y".repeat(100_000))), judgement).await
    });
    let id = pending_approval(&store).await;
    let approval = store.approvals().into_iter().find(|a| a.id == id).unwrap();
    assert!(approval.action.len() < record::DEFAULT_RECORD_TEXT_MAX + 200, "{}", approval.action.len());
    assert!(approval.action.contains("bytes in all, sha256 "), "{}", &approval.action[approval.action.len() - 120..]);
    store.decide(&id, "bob", false, "no").unwrap();
    assert!(task.await.unwrap().unwrap().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_sessions_records_commit_in_the_order_it_handed_them_over_however_their_commits_go() {
    let (store, session) = session(AuditMode::Fast).await;
    let judgement = session.decide(&request("select")).unwrap();
    let cleared = Cleared { judgement, approval: None };
    store.let_commits_flow(false);
    let (a, b) = (work("SELECT 'a'"), work("SELECT 'b'"));
    let _ = session.audit(&[(&a, &cleared)], Effect::Reads).await.unwrap();
    session.record(ResultRecord { rows: 1, ..Default::default() }).await;
    let flushed = session.flush_pending().await.unwrap();
    let _ = session.audit(&[(&b, &cleared)], Effect::Reads).await.unwrap();
    store.let_commits_flow(true);
    flushed.await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let order: Vec<String> = store
        .events()
        .iter()
        .map(|e| {
            let d: serde_json::Value = serde_json::from_str(e.detail.as_json()).unwrap();
            format!("{} {}", e.kind, d["sql"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(order, vec!["statement SELECT 'a'", "result ", "statement SELECT 'b'"]);
}
