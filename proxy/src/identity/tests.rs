#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
//! Token verification against keys made here with ring: one trusted ES256 key (a second
//! one for ambiguity), an intruder's key and another provider's key, neither trusted.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use ring::hmac;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use super::token::{Checked, check};
use super::{Identity, IdentityConfig, KeySet, Verifier};
use crate::error::Error;

const ISSUER: &str = "https://idp.invalid/realms/main";
const OTHER_ISSUER: &str = "https://other-idp.invalid/realms/main";
/// The fixed "now" of every [`check`] here (seconds since the epoch).
const NOW: u64 = 1_700_000_000;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_json(value: &Value) -> String {
    b64(&serde_json::to_vec(value).unwrap())
}

/// An ES256 key pair with a `kid`.
struct Signer {
    kid: &'static str,
    pkcs8: Vec<u8>,
    pair: EcdsaKeyPair,
}

impl Signer {
    fn new(kid: &'static str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap().as_ref().to_vec();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).unwrap();
        Signer { kid, pkcs8, pair }
    }

    /// The 65-byte uncompressed public point (0x04 || x || y).
    fn public_point(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    fn jwk(&self) -> Value {
        let point = self.public_point();
        assert_eq!((point.len(), point[0]), (65, 0x04));
        json!({
            "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65]),
            "kid": self.kid, "alg": "ES256", "use": "sig",
        })
    }

    /// JWS ES256 signature: fixed-size r || s.
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(&SystemRandom::new(), message).unwrap().as_ref().to_vec()
    }

    /// The same key's signature in ASN.1 DER, which JWS does not use.
    fn sign_der(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        let der = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &self.pkcs8, &rng).unwrap();
        der.sign(&rng, message).unwrap().as_ref().to_vec()
    }

    /// A compact JWS over already-encoded header and claims parts.
    fn seal(&self, header_b64: &str, claims_b64: &str) -> String {
        let signed = format!("{header_b64}.{claims_b64}");
        let signature = self.sign(signed.as_bytes());
        format!("{signed}.{}", b64(&signature))
    }

    fn token_with(&self, header: &Value, claims: &Value) -> String {
        self.seal(&b64_json(header), &b64_json(claims))
    }

    fn header(&self) -> Value {
        json!({"alg": "ES256", "typ": "JWT", "kid": self.kid})
    }

    fn token(&self, claims: &Value) -> String {
        self.token_with(&self.header(), claims)
    }
}

/// An HMAC-signed token (the classic key-confusion forgery).
fn hmac_token(algorithm: hmac::Algorithm, secret: &[u8], header: &Value, claims: &Value) -> String {
    let signed = format!("{}.{}", b64_json(header), b64_json(claims));
    let tag = hmac::sign(&hmac::Key::new(algorithm, secret), signed.as_bytes());
    format!("{signed}.{}", b64(tag.as_ref()))
}

/// Claims of a good token at `now`.
fn claims_at(now: u64) -> Value {
    json!({
        "iss": ISSUER, "aud": "portcullis", "sub": "alice",
        "exp": now + 300, "iat": now - 10, "nbf": now - 10,
        "email": "alice@example.test", "name": "Alice Liddell", "groups": ["dba", "ops"],
    })
}

fn claims() -> Value {
    claims_at(NOW)
}

fn with(mut value: Value, key: &str, field: Value) -> Value {
    value[key] = field;
    value
}

fn without(mut value: Value, key: &str) -> Value {
    value.as_object_mut().unwrap().remove(key);
    value
}

fn config() -> IdentityConfig {
    // A day between refetches: a Verifier built with_keys never goes to the network here.
    IdentityConfig { issuer: ISSUER.into(), refresh_min_interval_secs: 86_400, ..IdentityConfig::default() }
}

fn jwks(keys: &[Value]) -> CoreJsonWebKeySet {
    serde_json::from_value(json!({ "keys": keys })).unwrap()
}

fn key_set(signers: &[&Signer], config: &IdentityConfig) -> KeySet {
    let keys: Vec<Value> = signers.iter().map(|s| s.jwk()).collect();
    KeySet::new(ISSUER.into(), jwks(&keys), &[CoreJwsSigningAlgorithm::EcdsaP256Sha256], config)
}

fn accept(keys: &KeySet, config: &IdentityConfig, token: &str) -> Identity {
    match check(keys, config, token, NOW) {
        Ok(Checked::Valid(identity)) => identity,
        other => panic!("expected the token to be accepted, got {other:?}"),
    }
}

fn reason(err: Error) -> String {
    match err {
        Error::TokenRejected { reason } => reason,
        other => panic!("expected a token rejection, got: {other}"),
    }
}

/// Why `token` is refused: by [`check`], or, when `check` wants fresher keys, by a
/// [`Verifier`] holding the same keys that may not refetch them.
async fn refusal(keys: &KeySet, config: &IdentityConfig, token: &str) -> String {
    match check(keys, config, token, NOW) {
        Ok(Checked::Valid(identity)) => panic!("accepted as {identity:?}"),
        Err(err) => reason(err),
        Ok(Checked::UnknownKey { .. }) => {
            let verifier = Verifier::with_keys(config.clone(), keys.clone());
            reason(verifier.verify(token).await.expect_err("the verifier accepted a token check could not place"))
        }
    }
}

#[tokio::test]
async fn every_forged_or_broken_token_is_refused_with_its_own_reason() {
    let config = config();
    let trusted = Signer::new("main-2024");
    let second = Signer::new("main-2025");
    let intruder = Signer::new("intruder");
    let other_provider = Signer::new("other-1");
    let one_key = key_set(&[&trusted], &config);
    let two_keys = key_set(&[&trusted, &second], &config);
    let good = trusted.token(&claims());
    let [good_header, good_claims, good_signature] = good.split('.').collect::<Vec<_>>()[..] else { unreachable!() };
    let header_with = |field: &str, value: Value| with(trusted.header(), field, value);
    let no_typ = |alg: &str| json!({"alg": alg, "kid": "main-2024"});

    let cases: Vec<(&str, &KeySet, String, String)> = vec![
        // --- algorithm
        (
            "alg none, no signature",
            &one_key,
            format!("{}.{}.", b64_json(&json!({"alg": "none", "typ": "JWT"})), b64_json(&claims())),
            "unsigned token (alg none) is never accepted".into(),
        ),
        (
            "HS256 keyed with the provider's public key",
            &one_key,
            hmac_token(hmac::HMAC_SHA256, trusted.public_point(), &header_with("alg", json!("HS256")), &claims()),
            "signed with HS256, an HMAC algorithm that is never accepted".into(),
        ),
        (
            "HS512 keyed with the provider's public JWK",
            &one_key,
            hmac_token(
                hmac::HMAC_SHA512,
                &serde_json::to_vec(&trusted.jwk()).unwrap(),
                &header_with("alg", json!("HS512")),
                &claims(),
            ),
            "signed with HS512, an HMAC algorithm".into(),
        ),
        (
            "lower-case hs256",
            &one_key,
            hmac_token(hmac::HMAC_SHA256, trusted.public_point(), &header_with("alg", json!("hs256")), &claims()),
            "signed with hs256, an HMAC algorithm".into(),
        ),
        (
            "RS256, not offered by the provider",
            &one_key,
            format!("{}.{good_claims}.{good_signature}", b64_json(&no_typ("RS256"))),
            "signing algorithm RS256 is not one the provider offers (allowed: ES256)".into(),
        ),
        (
            "ES384, not offered by the provider",
            &one_key,
            format!("{}.{good_claims}.{good_signature}", b64_json(&no_typ("ES384"))),
            "signing algorithm ES384 is not one the provider offers".into(),
        ),
        (
            "EdDSA, not offered by the provider",
            &one_key,
            format!("{}.{good_claims}.{good_signature}", b64_json(&no_typ("EdDSA"))),
            "signing algorithm EdDSA is not one the provider offers".into(),
        ),
        (
            "unknown algorithm",
            &one_key,
            format!("{}.{good_claims}.{good_signature}", b64_json(&no_typ("XYZ"))),
            "unknown signing algorithm XYZ".into(),
        ),
        (
            "header without alg",
            &one_key,
            trusted.token_with(&json!({"typ": "JWT", "kid": "main-2024"}), &claims()),
            "malformed token: header has no alg".into(),
        ),
        // --- other header fields
        (
            "typ JWE",
            &one_key,
            trusted.token_with(&header_with("typ", json!("JWE")), &claims()),
            r#"token type "jwe" is not a JWT or JWT access token"#.into(),
        ),
        (
            "typ not a string",
            &one_key,
            trusted.token_with(&header_with("typ", json!(7)), &claims()),
            "malformed token: header typ is not a string".into(),
        ),
        (
            "critical header extension",
            &one_key,
            trusted.token_with(&with(header_with("crit", json!(["b64"])), "b64", json!(false)), &claims()),
            r#"header marks extensions ["b64"] as critical (crit); none are supported"#.into(),
        ),
        // --- keys and signatures
        (
            "another provider's token, its own key and kid",
            &one_key,
            other_provider.token(&with(claims(), "iss", json!(OTHER_ISSUER))),
            "signed by unknown key other-1 (not among the provider's current keys)".into(),
        ),
        (
            "intruder's key, jku pointing at the intruder's key set",
            &one_key,
            intruder.token_with(&with(intruder.header(), "jku", json!("https://evil.invalid/jwks.json")), &claims()),
            "signed by unknown key intruder".into(),
        ),
        (
            "intruder's key embedded as jwk, no kid",
            &one_key,
            intruder.token_with(&json!({"alg": "ES256", "typ": "JWT", "jwk": intruder.jwk()}), &claims()),
            "bad signature (key without kid)".into(),
        ),
        (
            "intruder's key under the trusted kid",
            &one_key,
            intruder.token_with(&trusted.header(), &claims()),
            "bad signature (key main-2024)".into(),
        ),
        (
            "no kid while the provider has two keys",
            &two_keys,
            trusted.token_with(&json!({"alg": "ES256", "typ": "JWT"}), &claims()),
            "token has no kid and no single one of the provider's keys fits it".into(),
        ),
        // --- shape and encoding
        ("empty token", &one_key, "  ".into(), "empty token".into()),
        (
            "oversized token",
            &one_key,
            trusted.token(&with(claims(), "padding", json!("a".repeat(16 * 1024)))),
            "bytes, more than the 16384 allowed".into(),
        ),
        (
            "two segments",
            &one_key,
            format!("{good_header}.{good_claims}"),
            "malformed token: expected 3 dot-separated parts, found 2".into(),
        ),
        (
            "four segments",
            &one_key,
            format!("{good}.{good_signature}"),
            "malformed token: expected 3 dot-separated parts, found 4".into(),
        ),
        (
            "five segments (JWE compact form)",
            &one_key,
            format!("{good_header}..{good_claims}.{good_signature}.tag"),
            "malformed token: expected 3 dot-separated parts, found 5".into(),
        ),
        (
            "header not base64url",
            &one_key,
            format!("eyJ*bad*.{good_claims}.{good_signature}"),
            "malformed token: header is not base64url".into(),
        ),
        (
            "header not JSON",
            &one_key,
            format!("{}.{good_claims}.{good_signature}", b64(b"{alg: ES256")),
            "malformed token: header is not JSON".into(),
        ),
        (
            "header a JSON array",
            &one_key,
            format!("{}.{good_claims}.{good_signature}", b64_json(&json!(["ES256"]))),
            "malformed token: header is not a JSON object".into(),
        ),
        (
            "signature not base64url",
            &one_key,
            format!("{good_header}.{good_claims}.c2ln+bmF/0dXJl"),
            "malformed token: signature is not base64url".into(),
        ),
        (
            "claims not base64url, yet signed",
            &one_key,
            trusted.seal(good_header, "eyJzdWIiOiJhbGljZSJ9*"),
            "malformed token: claims is not base64url".into(),
        ),
        (
            "claims not JSON, yet signed",
            &one_key,
            trusted.seal(good_header, &b64(b"sub=alice")),
            "malformed token: claims is not JSON".into(),
        ),
        (
            "claims a JSON array, yet signed",
            &one_key,
            trusted.seal(good_header, &b64_json(&json!([claims()]))),
            "malformed token: claims is not a JSON object".into(),
        ),
        // --- claims
        ("no iss", &one_key, trusted.token(&without(claims(), "iss")), "token has no iss".into()),
        (
            "another issuer's iss",
            &one_key,
            trusted.token(&with(claims(), "iss", json!(OTHER_ISSUER))),
            format!("issued by {OTHER_ISSUER}, not the trusted issuer {ISSUER}"),
        ),
        ("no aud", &one_key, trusted.token(&without(claims(), "aud")), "token has no aud".into()),
        (
            "aud for another service",
            &one_key,
            trusted.token(&with(claims(), "aud", json!("billing"))),
            r#"audience ["billing"] does not include any of ["portcullis"]"#.into(),
        ),
        (
            "aud list without ours",
            &one_key,
            trusted.token(&with(claims(), "aud", json!(["billing", "reports"]))),
            r#"audience ["billing", "reports"] does not include any of ["portcullis"]"#.into(),
        ),
        (
            "no exp",
            &one_key,
            trusted.token(&without(claims(), "exp")),
            "token has no exp: tokens without expiry are refused".into(),
        ),
        (
            "exp not a number",
            &one_key,
            trusted.token(&with(claims(), "exp", json!((NOW + 300).to_string()))),
            "claim exp is not a number".into(),
        ),
        (
            "exp negative",
            &one_key,
            trusted.token(&with(claims(), "exp", json!(-1))),
            "claim exp is not a time in seconds".into(),
        ),
        (
            "expired",
            &one_key,
            trusted.token(&with(claims(), "exp", json!(NOW - 100))),
            "token expired 100 s ago".into(),
        ),
        (
            "not yet valid",
            &one_key,
            trusted.token(&with(claims(), "nbf", json!(NOW + 120))),
            "token not valid for another 120 s (nbf)".into(),
        ),
        (
            "nbf not a number",
            &one_key,
            trusted.token(&with(claims(), "nbf", json!("yesterday"))),
            "claim nbf is not a number".into(),
        ),
        (
            "issued in the future",
            &one_key,
            trusted.token(&with(claims(), "iat", json!(NOW + 3600))),
            "token issued 3600 s in the future (iat)".into(),
        ),
        ("no sub", &one_key, trusted.token(&without(claims(), "sub")), "token has no sub".into()),
        ("empty sub", &one_key, trusted.token(&with(claims(), "sub", json!(""))), "token's sub is empty".into()),
        (
            "sub not a string",
            &one_key,
            trusted.token(&with(claims(), "sub", json!(42))),
            "claim sub is not a string".into(),
        ),
        (
            "groups a number",
            &one_key,
            trusted.token(&with(claims(), "groups", json!(7))),
            "groups claim groups must be a string or a list of strings, found a number".into(),
        ),
        (
            "groups an object",
            &one_key,
            trusted.token(&with(claims(), "groups", json!({"dba": true}))),
            "groups claim groups must be a string or a list of strings, found an object".into(),
        ),
        (
            "groups a list of numbers",
            &one_key,
            trusted.token(&with(claims(), "groups", json!([1, 2]))),
            "groups claim groups must hold strings, found a number".into(),
        ),
        (
            "groups a list with a null",
            &one_key,
            trusted.token(&with(claims(), "groups", json!(["dba", null]))),
            "groups claim groups must hold strings, found null".into(),
        ),
    ];
    assert!(cases.len() >= 22, "only {} cases", cases.len());

    let mut reasons = HashSet::new();
    let mut failures = Vec::new();
    for (name, keys, token, expected) in &cases {
        let reason = refusal(keys, &config, token).await;
        if !reason.contains(expected.as_str()) {
            failures.push(format!("{name}: expected {expected:?} in {reason:?}"));
        }
        if !reasons.insert(reason.clone()) {
            failures.push(format!("{name}: reason {reason:?} is not its own"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[tokio::test]
async fn changing_any_signed_byte_or_the_signature_encoding_breaks_the_signature() {
    let config = config();
    let trusted = Signer::new("main-2024");
    let keys = key_set(&[&trusted], &config);
    let good = trusted.token(&claims());
    let [header, claims_b64, signature] = good.split('.').collect::<Vec<_>>()[..] else { unreachable!() };
    let signed = format!("{header}.{claims_b64}");

    let mut flipped = URL_SAFE_NO_PAD.decode(signature).unwrap();
    flipped[10] ^= 0x01;
    let mut truncated = URL_SAFE_NO_PAD.decode(signature).unwrap();
    truncated.truncate(48);
    let tampered = [
        ("one signature bit flipped", format!("{signed}.{}", b64(&flipped))),
        ("signature truncated", format!("{signed}.{}", b64(&truncated))),
        ("signature empty", format!("{signed}.")),
        ("signature in DER", format!("{signed}.{}", b64(&trusted.sign_der(signed.as_bytes())))),
        ("sub changed", format!("{header}.{}.{signature}", b64_json(&with(claims(), "sub", json!("root"))))),
        ("groups widened", format!("{header}.{}.{signature}", b64_json(&with(claims(), "groups", json!(["admin"]))))),
        (
            "header changed",
            format!("{}.{claims_b64}.{signature}", b64_json(&with(trusted.header(), "cty", json!("x")))),
        ),
    ];
    for (name, token) in &tampered {
        assert_eq!(refusal(&keys, &config, token).await, "bad signature (key main-2024)", "{name}");
    }
    // The DER encoding of the same key really is a valid signature, just not JWS's encoding.
    let der = trusted.sign_der(signed.as_bytes());
    let public =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, trusted.public_point());
    assert!(public.verify(signed.as_bytes(), &der).is_ok());
}

#[test]
fn a_well_signed_token_names_its_caller() {
    let config = config();
    let trusted = Signer::new("main-2024");
    let keys = key_set(&[&trusted], &config);
    let identity = accept(&keys, &config, &trusted.token(&claims()));
    assert_eq!(
        identity,
        Identity {
            subject: "alice".into(),
            email: Some("alice@example.test".into()),
            name: Some("Alice Liddell".into()),
            groups: vec!["dba".into(), "ops".into()],
            issuer: ISSUER.into(),
            expires_at: NOW + 300,
        }
    );
    assert!(identity.in_any(&["ops".into()]));
    assert!(!identity.in_any(&["admin".into()]));

    // Only sub, iss, aud and exp are required; an aud list that includes ours will do.
    let minimal = json!({"iss": ISSUER, "aud": ["billing", "portcullis"], "sub": "svc-report", "exp": NOW + 60});
    let identity = accept(&keys, &config, &trusted.token(&minimal));
    assert_eq!((identity.subject.as_str(), identity.email, identity.name), ("svc-report", None, None));
    assert!(identity.groups.is_empty());
    // Whitespace around the token (a sloppy header value) is tolerated.
    assert_eq!(accept(&keys, &config, &format!(" {}\n", trusted.token(&claims()))).subject, "alice");
}

#[test]
fn groups_may_be_a_list_one_string_a_nested_claim_or_absent() {
    let trusted = Signer::new("main-2024");
    let config = config();
    let keys = key_set(&[&trusted], &config);
    let groups = |config: &IdentityConfig, claims: Value| accept(&keys, config, &trusted.token(&claims)).groups;

    assert_eq!(groups(&config, with(claims(), "groups", json!("dba"))), ["dba"]);
    assert_eq!(groups(&config, with(claims(), "groups", json!([]))), Vec::<String>::new());
    assert_eq!(groups(&config, with(claims(), "groups", Value::Null)), Vec::<String>::new());
    assert_eq!(groups(&config, without(claims(), "groups")), Vec::<String>::new());

    let nested = IdentityConfig { groups_claim: "realm_access.roles".into(), ..config.clone() };
    let keycloak = with(claims(), "realm_access", json!({"roles": ["offline_access", "dba"]}));
    assert_eq!(groups(&nested, keycloak), ["offline_access", "dba"]);
    assert_eq!(groups(&nested, with(claims(), "realm_access", json!({}))), Vec::<String>::new());
    // The top-level "groups" claim is not consulted when another claim is configured.
    assert_eq!(groups(&nested, claims()), Vec::<String>::new());
    let reason = reason(
        check(&keys, &nested, &trusted.token(&with(claims(), "realm_access", json!({"roles": 3}))), NOW).unwrap_err(),
    );
    assert_eq!(reason, "groups claim realm_access.roles must be a string or a list of strings, found a number");
}

#[test]
fn jwt_access_token_types_and_padded_segments_are_accepted() {
    let trusted = Signer::new("main-2024");
    let config = config();
    let keys = key_set(&[&trusted], &config);
    for typ in ["JWT", "jwt", "at+jwt", "application/at+jwt", "application/jwt"] {
        let token = trusted.token_with(&with(trusted.header(), "typ", json!(typ)), &claims());
        assert_eq!(accept(&keys, &config, &token).subject, "alice", "typ {typ}");
    }
    let untyped = trusted.token_with(&without(trusted.header(), "typ"), &claims());
    assert_eq!(accept(&keys, &config, &untyped).subject, "alice");

    // Some issuers pad their base64url; the padding is part of what they signed.
    let padded = |part: String| {
        let pad = (4 - part.len() % 4) % 4;
        format!("{part}{}", "=".repeat(pad))
    };
    // Filler of the right length makes each part's encoding need padding.
    let needs_padding = |value: &dyn Fn(&str) -> Value| {
        (0..3).map(|n| b64_json(&value(&"x".repeat(n)))).find(|part| part.len() % 4 != 0).map(padded).unwrap()
    };
    let header = needs_padding(&|x| with(trusted.header(), "x", json!(x)));
    let body = needs_padding(&|x| with(claims(), "x", json!(x)));
    assert!(header.ends_with('=') && body.ends_with('='), "{header} {body}");
    assert_eq!(accept(&keys, &config, &trusted.seal(&header, &body)).subject, "alice");
}

#[test]
fn clock_skew_is_tolerated_and_no_more() {
    let trusted = Signer::new("main-2024");
    let config = config();
    assert_eq!(config.skew_secs, 30);
    let keys = key_set(&[&trusted], &config);
    let at = |claims: Value| check(&keys, &config, &trusted.token(&claims), NOW).map(|_| ()).map_err(reason);

    assert_eq!(at(with(claims(), "exp", json!(NOW - 10))), Ok(()));
    assert_eq!(at(with(claims(), "exp", json!(NOW - 30))), Ok(()));
    assert_eq!(at(with(claims(), "exp", json!(NOW - 31))), Err("token expired 31 s ago".into()));
    assert_eq!(at(with(claims(), "nbf", json!(NOW + 30))), Ok(()));
    assert_eq!(at(with(claims(), "nbf", json!(NOW + 31))), Err("token not valid for another 31 s (nbf)".into()));
    assert_eq!(at(with(claims(), "iat", json!(NOW + 30))), Ok(()));
    assert_eq!(at(with(claims(), "iat", json!(NOW + 31))), Err("token issued 31 s in the future (iat)".into()));
    // Fractional seconds (some issuers send them) are times too.
    assert_eq!(at(with(claims(), "exp", json!(NOW as f64 + 60.5))), Ok(()));

    let strict = IdentityConfig { skew_secs: 0, ..config.clone() };
    let token = trusted.token(&with(claims(), "exp", json!(NOW - 1)));
    assert_eq!(reason(check(&keys, &strict, &token, NOW).unwrap_err()), "token expired 1 s ago");
    assert!(matches!(check(&keys, &strict, &token, NOW - 1), Ok(Checked::Valid(_))));
}

#[test]
fn without_kid_only_a_single_key_is_used() {
    let trusted = Signer::new("main-2024");
    let second = Signer::new("main-2025");
    let config = config();
    let no_kid = json!({"alg": "ES256", "typ": "JWT"});

    let one_key = key_set(&[&trusted], &config);
    assert_eq!(accept(&one_key, &config, &trusted.token_with(&no_kid, &claims())).subject, "alice");

    let two_keys = key_set(&[&trusted, &second], &config);
    assert!(matches!(
        check(&two_keys, &config, &second.token_with(&no_kid, &claims()), NOW),
        Ok(Checked::UnknownKey { kid: None })
    ));
    // With a kid, either trusted key is fine.
    assert_eq!(accept(&two_keys, &config, &trusted.token(&claims())).subject, "alice");
    assert_eq!(accept(&two_keys, &config, &second.token(&claims())).subject, "alice");
}

#[test]
fn key_set_keeps_only_public_keys_and_asymmetric_algorithms() {
    let trusted = Signer::new("main-2024");
    let secret = b"a shared secret the provider should never have published";
    let oct = json!({"kty": "oct", "k": b64(secret), "kid": "hmac-1", "alg": "HS256"});
    let advertised = [
        CoreJwsSigningAlgorithm::HmacSha256,
        CoreJwsSigningAlgorithm::None,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    ];
    let config = config();
    let keys = KeySet::new(ISSUER.into(), jwks(&[oct, trusted.jwk()]), &advertised, &config);
    assert_eq!(keys.keys.len(), 1, "the symmetric key is dropped");
    assert_eq!(keys.allowed_alg_names(), ["RS256", "ES256"]);

    let forged = hmac_token(hmac::HMAC_SHA256, secret, &json!({"alg": "HS256", "kid": "hmac-1"}), &claims());
    assert!(reason(check(&keys, &config, &forged, NOW).unwrap_err()).starts_with("signed with HS256, an HMAC"));

    // Configured algorithms narrow the offer (case-insensitively) and never widen it.
    let narrow = IdentityConfig { allowed_algs: vec!["es256".into(), "PS512".into()], ..config.clone() };
    let keys = KeySet::new(ISSUER.into(), jwks(&[trusted.jwk()]), &advertised, &narrow);
    assert_eq!(keys.allowed_alg_names(), ["ES256"]);
    assert_eq!(accept(&keys, &narrow, &trusted.token(&claims())).subject, "alice");

    let rsa_only = IdentityConfig { allowed_algs: vec!["RS256".into()], ..config.clone() };
    let keys = KeySet::new(ISSUER.into(), jwks(&[trusted.jwk()]), &advertised, &rsa_only);
    assert_eq!(
        reason(check(&keys, &rsa_only, &trusted.token(&claims()), NOW).unwrap_err()),
        "signing algorithm ES256 is not one the provider offers (allowed: RS256)"
    );
}

#[tokio::test]
async fn verifier_accepts_current_tokens_and_refuses_unknown_keys_without_refetching() {
    let trusted = Signer::new("main-2024");
    let intruder = Signer::new("intruder");
    let config = config();
    let verifier = Verifier::with_keys(config.clone(), key_set(&[&trusted], &config));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();

    let identity = verifier.verify(&trusted.token(&claims_at(now))).await.unwrap();
    assert_eq!((identity.subject.as_str(), identity.expires_at), ("alice", now + 300));

    // An unknown kid would normally trigger a refetch; with_keys counts as a fresh fetch and
    // refresh_min_interval is a day, so the verifier answers at once from its cached keys.
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let err = verifier.verify(&intruder.token(&claims_at(now))).await.unwrap_err();
        assert_eq!(reason(err), "signed by unknown key intruder (not among the provider's current keys)");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "took {:?}", started.elapsed());
    // The cached keys still work afterwards.
    assert!(verifier.verify(&trusted.token(&claims_at(now))).await.is_ok());
}

#[tokio::test]
async fn a_verifier_without_keys_fails_closed_and_bad_config_is_refused() {
    // Nothing listens on port 9 of localhost: discovery fails and no token is accepted.
    let config = IdentityConfig { issuer: "http://127.0.0.1:9/realms/main".into(), ..IdentityConfig::default() };
    let verifier = Verifier::new(config).unwrap();
    let trusted = Signer::new("main-2024");
    match verifier.verify(&trusted.token(&claims())).await {
        Err(Error::IdentityUnavailable { detail, .. }) => assert!(detail.contains("no signing keys"), "{detail}"),
        other => panic!("expected fail-closed, got {other:?}"),
    }

    match Verifier::new(IdentityConfig::default()) {
        Err(Error::IdentityConfig(message)) => assert!(message.contains("identity.issuer is empty"), "{message}"),
        other => panic!("expected a config error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn config_check_refuses_unsafe_settings() {
    let good = config();
    assert_eq!(good.check(), Ok(()));
    let refused = |config: IdentityConfig| config.check().expect_err("unsafe config accepted");

    let dev = IdentityConfig { issuer: "http://127.0.0.1:8400/portcullis-dev/".into(), ..good.clone() };
    assert!(dev.is_dev_issuer());
    assert!(refused(dev.clone()).contains("built-in development issuer; set identity.insecure_dev_issuer = true"));
    assert_eq!(IdentityConfig { insecure_dev_issuer: true, ..dev }.check(), Ok(()));

    for alg in ["HS256", "hs512", "none", "NONE"] {
        let message = refused(IdentityConfig { allowed_algs: vec!["ES256".into(), alg.into()], ..good.clone() });
        assert_eq!(message, format!("identity.allowed_algs: {alg} is never accepted"));
    }
    assert_eq!(IdentityConfig { allowed_algs: vec!["ES256".into(), "RS256".into()], ..good.clone() }.check(), Ok(()));

    assert!(refused(IdentityConfig { audiences: vec![], ..good.clone() }).contains("identity.audiences is empty"));
    assert!(refused(IdentityConfig { issuer: String::new(), ..good.clone() }).contains("identity.issuer is empty"));
    assert!(refused(IdentityConfig { issuer: "idp.example.test".into(), ..good }).contains("is not an http(s) URL"));
}
