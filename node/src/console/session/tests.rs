#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use axum::http::HeaderValue;

use super::*;

fn create(sessions: &Sessions, subject: &str, expires_at: u64, now: u64) -> (String, Arc<BrowserSession>) {
    sessions
        .create(Token::new(format!("token-of-{subject}")), subject.into(), vec!["approvers".into()], expires_at, now)
        .unwrap()
}

#[test]
fn a_session_is_found_by_its_cookie_id_until_its_token_expires() {
    let sessions = Sessions::new(8);
    let (id, session) = create(&sessions, "bob", 1_000, 100);
    assert_eq!(sessions.get(&id, 999).unwrap().subject, "bob");
    assert!(sessions.get("someone-elses-id", 500).is_none());
    assert!(sessions.get(&id, 1_000).is_none(), "a session ends with its token");
    assert!(sessions.get(&id, 500).is_none(), "an expired session is removed, not kept");
    assert_eq!(session.expires_at, 1_000);
}

#[test]
fn ids_and_csrf_tokens_are_random_and_distinct() {
    let sessions = Sessions::new(8);
    let (a, sa) = create(&sessions, "a", 1_000, 0);
    let (b, sb) = create(&sessions, "b", 1_000, 0);
    assert_ne!(a, b);
    assert_ne!(sa.csrf, sb.csrf);
    assert_ne!(a, sa.csrf, "the CSRF token is not the cookie");
    assert_eq!(a.len(), 43, "32 random bytes, base64url");
}

#[test]
fn sessions_are_bounded_and_expired_ones_make_room() {
    let sessions = Sessions::new(2);
    create(&sessions, "a", 100, 0);
    create(&sessions, "b", 1_000, 0);
    let refused = sessions.create(Token::new("t".into()), "c".into(), vec![], 1_000, 50);
    assert!(matches!(refused, Err(NodeError::SignIn(m)) if m.contains("limit")));
    // At 200, a's token has expired: its place is free.
    create(&sessions, "c", 1_000, 200);
    assert_eq!(sessions.len(), 2);
}

#[test]
fn removing_a_session_ends_it() {
    let sessions = Sessions::new(8);
    let (id, _) = create(&sessions, "bob", 1_000, 0);
    sessions.remove(&id);
    assert!(sessions.get(&id, 1).is_none());
}

#[test]
fn csrf_must_be_present_and_equal() {
    let sessions = Sessions::new(8);
    let (_, s) = create(&sessions, "bob", 1_000, 0);
    let csrf = s.csrf.clone();
    assert!(s.csrf_matches(Some(&csrf)));
    assert!(!s.csrf_matches(None));
    assert!(!s.csrf_matches(Some("")));
    assert!(!s.csrf_matches(Some(&csrf[..42])));
    assert!(!s.csrf_matches(Some(&format!("{csrf}x"))));
}

#[test]
fn constant_time_eq_compares_whole_slices() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
    assert!(constant_time_eq(b"", b""));
}

#[test]
fn the_token_never_shows_in_debug_output() {
    let sessions = Sessions::new(8);
    let (_, s) = create(&sessions, "bob", 1_000, 0);
    let printed = format!("{s:?}");
    assert!(!printed.contains("token-of-bob"), "{printed}");
    assert!(printed.contains("<redacted>"));
}

#[test]
fn the_session_cookie_is_host_only_secure_http_only_and_strict() {
    let cookie = session_cookie("abc", 3600);
    assert!(cookie.starts_with("__Host-portcullis=abc;"));
    for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict", "Max-Age=3600"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Domain"), "a __Host- cookie has no Domain");
    assert!(clear_cookie(COOKIE_NAME).contains("Max-Age=0"));
}

#[test]
fn cookies_are_read_by_exact_name_across_headers() {
    let mut headers = HeaderMap::new();
    headers.append(COOKIE, HeaderValue::from_static("other=1; __Host-portcullis-signin=bind"));
    headers.append(COOKIE, HeaderValue::from_static("__Host-portcullis=sess"));
    assert_eq!(cookie(&headers, COOKIE_NAME), Some("sess"));
    assert_eq!(cookie(&headers, "__Host-portcullis-signin"), Some("bind"));
    assert_eq!(cookie(&headers, "missing"), None);
}

#[test]
fn a_session_holds_a_few_live_streams_and_ending_it_closes_them() {
    let sessions = Sessions::new(8);
    let (id, session) = create(&sessions, "bob", 1_000, 0);
    let permits: Vec<_> = (0..3).map(|_| StreamPermit::take(&session, 3).unwrap()).collect();
    assert!(StreamPermit::take(&session, 3).is_none(), "a fourth stream past the bound");
    drop(permits);
    let _again = StreamPermit::take(&session, 3).expect("closed streams free their places");
    assert!(!session.ended.is_cancelled());
    sessions.remove(&id);
    assert!(session.ended.is_cancelled(), "sign-out ends the session's streams");
}
