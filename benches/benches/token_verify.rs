//! Token verification cost per call with cached keys (target <= 50 µs).
//!
//! Run: `cargo bench -p portcullis-benches --bench token_verify`
//!
//! Peer measured in the same run: the bare ES256 signature check with ring on the same
//! token, the cryptographic floor that any verifier pays. After criterion's report, a
//! summary prints our cost per call and its ratio to the peer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use criterion::Criterion;
use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use portcullis_proxy::identity::{IdentityConfig, KeySet, Verifier, token};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, UnparsedPublicKey,
};

const ISSUER: &str = "https://issuer.example";

struct Fixture {
    token: String,
    config: IdentityConfig,
    keys: KeySet,
    public: Vec<u8>,
}

fn fixture() -> Fixture {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let public = key.public_key().as_ref().to_vec();
    let jwks: CoreJsonWebKeySet = serde_json::from_value(serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
        "x": B64.encode(&public[1..33]), "y": B64.encode(&public[33..65]),
    }]}))
    .unwrap();
    let config = IdentityConfig { issuer: ISSUER.into(), ..Default::default() };
    let keys = KeySet::new(ISSUER.into(), jwks, &[CoreJwsSigningAlgorithm::EcdsaP256Sha256], &config);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1"});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": "agent-7", "aud": "portcullis", "exp": now + 3600, "iat": now,
        "groups": ["engineers", "agents"], "email": "agent7@example.com",
    });
    let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
    let sig = key.sign(&rng, input.as_bytes()).unwrap();
    Fixture { token: format!("{input}.{}", B64.encode(sig.as_ref())), config, keys, public }
}

/// The peer: decode the signature and check it with ring, nothing else.
fn bare_signature_check(f: &Fixture) {
    let (input, sig) = f.token.rsplit_once('.').unwrap();
    let sig = B64.decode(sig).unwrap();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &f.public).verify(input.as_bytes(), &sig).unwrap();
}

fn per_call(iterations: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..iterations / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..iterations {
        f();
    }
    t.elapsed() / iterations
}

fn main() {
    let f = fixture();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let verifier = Verifier::with_keys(f.config.clone(), f.keys.clone());

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("token_verify");
    group.bench_function("portcullis_verify_cached_keys", |b| {
        b.iter(|| runtime.block_on(verifier.verify(black_box(&f.token))).unwrap())
    });
    group.bench_function("portcullis_check_pure", |b| {
        b.iter(|| token::check(&f.keys, &f.config, black_box(&f.token), now).unwrap())
    });
    group.bench_function("peer_ring_es256_signature_only", |b| b.iter(|| bare_signature_check(black_box(&f))));
    group.finish();
    c.final_summary();

    let ours = per_call(20_000, || {
        runtime.block_on(verifier.verify(&f.token)).unwrap();
    });
    let peer = per_call(20_000, || bare_signature_check(&f));
    println!(
        "\nsummary: verify (cached keys) {:.1} µs/call; ring ES256 signature alone {:.1} µs/call; ratio {:.2}x (target <= 50 µs)",
        ours.as_secs_f64() * 1e6,
        peer.as_secs_f64() * 1e6,
        ours.as_secs_f64() / peer.as_secs_f64()
    );
}
