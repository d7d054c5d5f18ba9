#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use super::*;

const NOW: u64 = 1_800_000_000;

fn alice(expires_at: u64) -> Identity {
    Identity {
        subject: "alice".into(),
        email: Some("alice@example.com".into()),
        name: Some("Alice Liddell".into()),
        groups: vec!["engineers".into(), "cn=ops,ou=people".into()],
        issuer: "https://issuer.example".into(),
        expires_at,
    }
}

fn key() -> PublicKey {
    generate_ed25519("test").unwrap().public_key().clone()
}

fn refusal(result: Result<Identity>) -> String {
    match result {
        Err(Error::CertificateRefused(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_user_certificate_names_the_identity_and_expires_with_its_token() {
    let ca = generate_ed25519("ca").unwrap();
    let cert = sign_user(&ca, &key(), &alice(NOW + 600), NOW).unwrap();
    assert_eq!(cert.valid_before(), NOW + 600);
    assert_eq!(cert.valid_after(), NOW - SKEW.as_secs());
    // It survives the trip through its OpenSSH text form, as the CLI writes it.
    let cert = Certificate::from_openssh(&cert.to_openssh().unwrap()).unwrap();
    let identity = verify_user(&cert, ca.public_key(), NOW + 1).unwrap();
    assert_eq!(identity, alice(NOW + 600));
}

#[test]
fn a_long_lived_token_gets_a_certificate_of_at_most_twelve_hours() {
    let ca = generate_ed25519("ca").unwrap();
    let cert = sign_user(&ca, &key(), &alice(NOW + 30 * 86_400), NOW).unwrap();
    assert_eq!(cert.valid_before(), NOW + MAX_USER_VALIDITY.as_secs());
}

#[test]
fn an_expired_token_gets_no_certificate() {
    let ca = generate_ed25519("ca").unwrap();
    let err = sign_user(&ca, &key(), &alice(NOW), NOW).unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
}

#[test]
fn an_expired_certificate_is_refused() {
    let ca = generate_ed25519("ca").unwrap();
    let cert = sign_user(&ca, &key(), &alice(NOW + 10), NOW).unwrap();
    assert!(verify_user(&cert, ca.public_key(), NOW + 9).is_ok());
    assert!(refusal(verify_user(&cert, ca.public_key(), NOW + 10)).contains("expired"));
}

#[test]
fn a_certificate_from_the_future_is_refused_beyond_the_skew() {
    let ca = generate_ed25519("ca").unwrap();
    let cert = sign_user(&ca, &key(), &alice(NOW + 3600), NOW).unwrap();
    // Issued by a node whose clock runs ahead: accepted within the skew.
    assert!(verify_user(&cert, ca.public_key(), NOW - SKEW.as_secs() - 30).is_ok());
    assert!(refusal(verify_user(&cert, ca.public_key(), NOW - 3 * SKEW.as_secs())).contains("not valid for"));
}

#[test]
fn a_certificate_of_another_ca_is_refused() {
    let ca = generate_ed25519("ca").unwrap();
    let other = generate_ed25519("other").unwrap();
    let cert = sign_user(&other, &key(), &alice(NOW + 600), NOW).unwrap();
    assert!(refusal(verify_user(&cert, ca.public_key(), NOW)).contains("not by the cluster's SSH CA"));
}

#[test]
fn a_host_certificate_does_not_log_in() {
    let ca = generate_ed25519("ca").unwrap();
    let cert = sign_host(&ca, &key(), NOW).unwrap();
    assert_eq!(cert.cert_type(), CertType::Host);
    assert!(cert.valid_principals().is_empty());
    assert!(cert.valid_before() >= NOW + 300 * 86_400);
    assert!(refusal(verify_user(&cert, ca.public_key(), NOW)).contains("host certificate"));
}

#[test]
fn a_certificate_for_other_principals_or_with_critical_options_is_refused() {
    let ca = generate_ed25519("ca").unwrap();
    let build = |principals: &[&str], force: bool| {
        let mut b = Builder::new([7u8; 16], key().key_data().clone(), NOW - 60, NOW + 600).unwrap();
        b.cert_type(CertType::User).unwrap();
        b.key_id("alice").unwrap();
        if principals.is_empty() {
            b.all_principals_valid().unwrap();
        }
        for p in principals {
            b.valid_principal(*p).unwrap();
        }
        if force {
            b.critical_option("force-command", "true").unwrap();
        }
        b.sign(&ca).unwrap()
    };
    assert!(verify_user(&build(&["alice"], false), ca.public_key(), NOW).is_ok());
    assert!(refusal(verify_user(&build(&[], false), ca.public_key(), NOW)).contains("principals"));
    assert!(refusal(verify_user(&build(&["alice", "root"], false), ca.public_key(), NOW)).contains("principals"));
    assert!(refusal(verify_user(&build(&["alice"], true), ca.public_key(), NOW)).contains("force-command"));
}

#[test]
fn only_ed25519_public_key_lines_are_certified() {
    let line = key().to_openssh().unwrap();
    assert!(parse_user_key(&format!("{line}\n")).is_ok());
    assert!(parse_user_key("ssh-ed25519 not-base64").is_err());
    let p256 = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=";
    let err = parse_user_key(p256).unwrap_err().to_string();
    assert!(err.contains("only ssh-ed25519"), "{err}");
}
