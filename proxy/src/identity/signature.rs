//! Signature checks with ring, the binary's one crypto provider.
//!
//! openidconnect fetches and parses the keys; checking signatures through ring is
//! several times faster than the generic JWK path (see BENCHMARKS.md), and each key
//! is decoded once per key set, not once per token. Key types ring lacks (P-521) fall
//! back to openidconnect's own check.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::JsonWebKey;
use openidconnect::core::{CoreJsonWebKey, CoreJwsSigningAlgorithm as Alg};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

/// A public key decoded for ring.
#[derive(Debug, Clone)]
pub enum RingKey {
    P256 { point: Vec<u8> },
    P384 { point: Vec<u8> },
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ed25519 { public: Vec<u8> },
}

fn field(jwk: &serde_json::Value, name: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(jwk.get(name)?.as_str()?.trim_end_matches('=')).ok()
}

/// Decode `key` for ring, if ring supports its type.
pub fn prepare(key: &CoreJsonWebKey) -> Option<RingKey> {
    let jwk = serde_json::to_value(key).ok()?;
    match (jwk.get("kty")?.as_str()?, jwk.get("crv").and_then(|c| c.as_str())) {
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (x, y) = (field(&jwk, "x")?, field(&jwk, "y")?);
            let point = [vec![0x04], x, y].concat();
            Some(if crv == "P-256" { RingKey::P256 { point } } else { RingKey::P384 { point } })
        }
        ("RSA", _) => Some(RingKey::Rsa { n: field(&jwk, "n")?, e: field(&jwk, "e")? }),
        ("OKP", Some("Ed25519")) => Some(RingKey::Ed25519 { public: field(&jwk, "x")? }),
        _ => None,
    }
}

/// Whether `sig` is a valid `alg` signature of `message` by `key`.
pub fn verify(prepared: Option<&RingKey>, key: &CoreJsonWebKey, alg: &Alg, message: &[u8], sig: &[u8]) -> bool {
    let Some(prepared) = prepared else {
        return key.verify_signature(alg, message, sig).is_ok();
    };
    match (prepared, alg) {
        (RingKey::P256 { point }, Alg::EcdsaP256Sha256) => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).verify(message, sig).is_ok()
        }
        (RingKey::P384 { point }, Alg::EcdsaP384Sha384) => {
            UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point).verify(message, sig).is_ok()
        }
        (RingKey::Ed25519 { public }, Alg::EdDsa) => {
            UnparsedPublicKey::new(&signature::ED25519, public).verify(message, sig).is_ok()
        }
        (RingKey::Rsa { n, e }, alg) => {
            let params = match alg {
                Alg::RsaSsaPkcs1V15Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                Alg::RsaSsaPkcs1V15Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                Alg::RsaSsaPkcs1V15Sha512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                Alg::RsaSsaPssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
                Alg::RsaSsaPssSha384 => &signature::RSA_PSS_2048_8192_SHA384,
                Alg::RsaSsaPssSha512 => &signature::RSA_PSS_2048_8192_SHA512,
                _ => return false,
            };
            RsaPublicKeyComponents { n, e }.verify(params, message, sig).is_ok()
        }
        // The key's type does not match the token's algorithm.
        _ => false,
    }
}
