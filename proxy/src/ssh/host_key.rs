//! The key a node's SSH door proves itself with: kept in the node's data directory
//! (mode 0600), made on first start.

use std::path::Path;

use russh::keys::PrivateKey;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};

use crate::error::{Error, Result};

/// The host key at `path`, made (Ed25519) if the file does not exist.
pub fn load_or_create(path: &Path) -> Result<PrivateKey> {
    let fail = |what: &str, e: String| Error::Ssh(format!("host key {}: {what}: {e}", path.display()));
    if path.exists() {
        let pem = std::fs::read_to_string(path).map_err(|e| fail("read", e.to_string()))?;
        return russh::keys::decode_secret_key(&pem, None).map_err(|e| fail("decode", e.to_string()));
    }
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
        .map_err(|_| fail("generate", "no randomness".into()))?;
    let key = PrivateKey::new(KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed)), "portcullis host key")
        .map_err(|e| fail("generate", e.to_string()))?;
    let pem = key.to_openssh(LineEnding::LF).map_err(|e| fail("encode", e.to_string()))?;
    write_private(path, pem.as_bytes()).map_err(|e| fail("write", e.to_string()))?;
    Ok(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn a_host_key_is_made_once_and_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh_host_ed25519_key");
        let made = super::load_or_create(&path).unwrap();
        let read = super::load_or_create(&path).unwrap();
        assert_eq!(made.public_key().key_data(), read.public_key().key_data());
    }
}
