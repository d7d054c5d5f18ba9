#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use super::*;

fn logins() -> PendingLogins {
    PendingLogins::new(4, Duration::from_secs(600))
}

#[test]
fn the_challenge_is_s256_of_the_verifier() {
    // BASE64URL(SHA256(verifier)) without padding, as computed by Python's hashlib.
    assert_eq!(challenge("dBjftJeZ4CVP-mJ0kxXObdjVx0ixvCqCeNyA1lRqJRo"), "GuWtMHPa6jOTvoG223o2B2JgwDBps_YQDkkhjtOcj84");
}

#[test]
fn a_sign_in_finishes_once_in_the_browser_that_started_it() {
    let logins = logins();
    let now = Instant::now();
    let started = logins.start("/cluster", now).unwrap();
    assert_eq!(started.challenge.len(), 43);
    let pending = logins.finish(&started.state, Some(&started.binding), now).unwrap();
    assert_eq!(pending.nonce, started.nonce);
    assert_eq!(challenge(&pending.verifier), started.challenge);
    assert_eq!(pending.next, "/cluster");
    let again = logins.finish(&started.state, Some(&started.binding), now);
    assert!(matches!(again, Err(NodeError::SignIn(m)) if m.contains("already used")));
}

#[test]
fn a_callback_from_another_browser_is_refused_and_uses_up_the_state() {
    let logins = logins();
    let now = Instant::now();
    let started = logins.start("/approvals", now).unwrap();
    let refused = logins.finish(&started.state, Some("someone-elses-binding"), now);
    assert!(matches!(refused, Err(NodeError::SignIn(m)) if m.contains("another browser")));
    assert!(logins.finish(&started.state, Some(&started.binding), now).is_err(), "a state is good for one try");
    let other = logins.start("/approvals", now).unwrap();
    assert!(logins.finish(&other.state, None, now).is_err(), "no binding cookie, no sign-in");
}

#[test]
fn an_unknown_state_is_refused() {
    let logins = logins();
    let refused = logins.finish("made-up", Some("x"), Instant::now());
    assert!(matches!(refused, Err(NodeError::SignIn(m)) if m.contains("unknown")));
}

#[test]
fn a_sign_in_expires() {
    let logins = PendingLogins::new(4, Duration::from_secs(10));
    let now = Instant::now();
    let started = logins.start("/approvals", now).unwrap();
    let late = logins.finish(&started.state, Some(&started.binding), now + Duration::from_secs(10));
    assert!(matches!(late, Err(NodeError::SignIn(m)) if m.contains("too long")));
}

#[test]
fn sign_ins_in_flight_are_bounded_the_oldest_giving_way_and_stale_ones_make_room() {
    let logins = PendingLogins::new(2, Duration::from_secs(10));
    let now = Instant::now();
    let oldest = logins.start("/", now).unwrap();
    let second = logins.start("/", now + Duration::from_secs(1)).unwrap();
    // A flood of new sign-ins never locks out: the oldest gives way.
    let third = logins.start("/", now + Duration::from_secs(2)).unwrap();
    assert_eq!(logins.len(), 2);
    let at = now + Duration::from_secs(3);
    assert!(logins.finish(&oldest.state, Some(&oldest.binding), at).is_err(), "the oldest gave way");
    assert!(logins.finish(&second.state, Some(&second.binding), at).is_ok());
    assert!(logins.finish(&third.state, Some(&third.binding), at).is_ok());
    logins.start("/", now).unwrap();
    logins.start("/", now + Duration::from_secs(11)).unwrap();
    assert_eq!(logins.len(), 1, "the stale one was dropped");
}

#[test]
fn state_nonce_and_verifier_are_distinct_and_random() {
    let logins = logins();
    let now = Instant::now();
    let a = logins.start("/", now).unwrap();
    let b = logins.start("/", now).unwrap();
    assert_ne!(a.state, b.state);
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.binding, b.binding);
    assert_ne!(a.state, a.nonce);
}

#[test]
fn sign_in_returns_only_to_local_paths() {
    assert_eq!(safe_next("/cluster?x=1"), "/cluster?x=1");
    for bad in ["https://evil.example/", "//evil.example/", "/\\evil.example", "evil", "", "/a\nb"] {
        assert_eq!(safe_next(bad), "/approvals", "{bad:?}");
    }
}

#[test]
fn the_binding_cookie_is_lax_so_it_survives_the_providers_redirect() {
    let cookie = binding_cookie("b");
    assert!(cookie.starts_with("__Host-portcullis-signin=b;"));
    for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax", "Max-Age=600"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
}
