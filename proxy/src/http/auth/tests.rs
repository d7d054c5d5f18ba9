#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::cell::Cell;

use super::LastToken;
use crate::identity::Identity;

fn who(subject: &str, expires_at: u64) -> Identity {
    Identity {
        subject: subject.into(),
        email: None,
        name: None,
        groups: vec!["engineers".into()],
        issuer: "https://issuer".into(),
        expires_at,
    }
}

#[tokio::test]
async fn the_same_token_is_verified_once_until_it_expires() {
    let last = LastToken::default();
    let calls = Cell::new(0);
    // Like `Verifier::verify`, the work happens when the future is polled.
    let verify = |id: Identity| {
        let calls = &calls;
        async move {
            calls.set(calls.get() + 1);
            Ok::<_, String>(id)
        }
    };
    for now in [100, 150, 200] {
        let id = last.identity("t1", now, verify(who("alice", 200))).await.unwrap();
        assert_eq!(id.subject, "alice");
    }
    assert_eq!(calls.get(), 1, "verified once while not expired");
    // Past exp: verified again, and the verifier's refusal stands.
    let e = last.identity("t1", 201, async { Err::<Identity, _>("expired".to_string()) }).await.unwrap_err();
    assert_eq!(e, "expired");
}

#[tokio::test]
async fn another_token_is_verified_in_full_and_a_refused_one_is_not_remembered() {
    let last = LastToken::default();
    last.identity("t1", 100, async { Ok::<_, String>(who("alice", 500)) }).await.unwrap();
    let e = last.identity("forged", 100, async { Err::<Identity, _>("bad signature".to_string()) }).await;
    assert_eq!(e.unwrap_err(), "bad signature");
    // alice's token is still the one remembered; bob's replaces it once valid.
    let id = last.identity("t1", 101, async { panic!("t1 is remembered") }).await;
    assert_eq!(id.map(|i| i.subject), Ok::<_, String>("alice".into()));
    let id = last.identity("t2", 102, async { Ok::<_, String>(who("bob", 500)) }).await.unwrap();
    assert_eq!(id.subject, "bob");
    let e = last.identity("t1", 103, async { Err::<Identity, _>("checked again".to_string()) }).await;
    assert_eq!(e.unwrap_err(), "checked again");
}
