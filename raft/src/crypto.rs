//! The cluster data key: seals backend secrets before they enter the log.
//!
//! Every node gets the same 32-byte key in a key file (base64). Secrets are sealed with
//! AES-256-GCM on the node that receives them from the admin API, so only ciphertext is
//! replicated, snapshotted and backed up; a door opens a secret only to log in to a backend.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};
use crate::model::SealedSecret;

/// The cluster data key. Deliberately not `Debug`, so it cannot end up in a log line.
pub struct DataKey {
    key: LessSafeKey,
}

impl DataKey {
    /// Read a key file holding 32 bytes as base64 (whitespace ignored).
    pub fn load(path: &Path) -> Result<Self> {
        let err = |detail: String| Error::DataKey { path: path.display().to_string(), detail };
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                err("file not found; create one with `head -c 32 /dev/urandom | base64 > FILE` and give every node the same file".into())
            } else {
                err(e.to_string())
            }
        })?;
        let cleaned: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = B64.decode(cleaned).map_err(|e| err(format!("not base64: {e}")))?;
        Self::from_bytes(&bytes).map_err(|_| err(format!("expected 32 bytes, found {}", bytes.len())))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 32 {
            return Err(Error::DataKey { path: "<memory>".into(), detail: "expected 32 bytes".into() });
        }
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| Error::DataKey { path: "<memory>".into(), detail: "rejected by AES-256-GCM".into() })?;
        Ok(DataKey { key: LessSafeKey::new(unbound) })
    }

    /// A fresh random key, base64-encoded as a key file holds it.
    pub fn generate_base64() -> Result<String> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| Error::DataKey { path: "<new>".into(), detail: "no system randomness".into() })?;
        Ok(B64.encode(bytes))
    }

    pub fn seal(&self, plaintext: &str) -> Result<SealedSecret> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| Error::SecretOpen)?;
        let mut buf = plaintext.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
            .map_err(|_| Error::SecretOpen)?;
        Ok(SealedSecret { nonce: B64.encode(nonce), ciphertext: B64.encode(buf) })
    }

    pub fn open(&self, sealed: &SealedSecret) -> Result<String> {
        let nonce: [u8; NONCE_LEN] =
            B64.decode(&sealed.nonce).ok().and_then(|n| n.try_into().ok()).ok_or(Error::SecretOpen)?;
        let mut buf = B64.decode(&sealed.ciphertext).map_err(|_| Error::SecretOpen)?;
        let plain = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
            .map_err(|_| Error::SecretOpen)?;
        String::from_utf8(plain.to_vec()).map_err(|_| Error::SecretOpen)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sealed_secret_opens_with_same_key_only() {
        let k1 = DataKey::from_bytes(&[7u8; 32]).unwrap();
        let k2 = DataKey::from_bytes(&[8u8; 32]).unwrap();
        let sealed = k1.seal("s3cret").unwrap();
        assert!(!sealed.ciphertext.contains("s3cret"));
        assert_eq!(k1.open(&sealed).unwrap(), "s3cret");
        assert!(matches!(k2.open(&sealed), Err(Error::SecretOpen)));
    }

    #[test]
    fn missing_key_file_names_path_and_fix() {
        let err = DataKey::load(Path::new("/nonexistent/key")).err().unwrap().to_string();
        assert!(err.contains("/nonexistent/key") && err.contains("not found"), "{err}");
    }
}
