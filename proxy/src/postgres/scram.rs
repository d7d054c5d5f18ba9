//! SCRAM-SHA-256 client (RFC 5802, RFC 7677): how the gateway logs in to a backend.
//!
//! The gateway holds the backend password; clients never see it. Channel binding is
//! not used (`n,,`), as with libpq over a plain or unverified connection.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::SecureRandom;
use ring::{digest, hmac, pbkdf2};

use crate::error::{Error, Result};

fn backend_auth(detail: impl Into<String>) -> Error {
    Error::BackendAuth(detail.into())
}

/// One SCRAM exchange in progress.
pub struct ScramClient {
    password: String,
    client_nonce: String,
    /// Server key and auth message, set after the server's first message.
    server_check: Option<(hmac::Key, String)>,
}

impl ScramClient {
    pub fn new(password: &str) -> Result<Self> {
        let mut raw = [0u8; 18];
        ring::rand::SystemRandom::new().fill(&mut raw).map_err(|_| backend_auth("no randomness for SCRAM"))?;
        Ok(ScramClient { password: password.to_string(), client_nonce: B64.encode(raw), server_check: None })
    }

    fn client_first_bare(&self) -> String {
        format!("n=,r={}", self.client_nonce)
    }

    /// The SASLInitialResponse payload.
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare())
    }

    /// Answer the server's first message with the client proof.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<String> {
        let server_first =
            std::str::from_utf8(server_first).map_err(|_| backend_auth("SCRAM server-first is not UTF-8"))?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            match part.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(B64.decode(v).map_err(|_| backend_auth("SCRAM salt is not base64"))?),
                Some(("i", v)) => iterations = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(backend_auth("SCRAM server-first lacks nonce, salt or iteration count"));
        };
        if !nonce.starts_with(&self.client_nonce) {
            return Err(backend_auth("SCRAM server nonce does not extend ours"));
        }
        let iterations =
            std::num::NonZeroU32::new(iterations).ok_or_else(|| backend_auth("SCRAM iteration count 0"))?;
        let mut salted = [0u8; 32];
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, &salt, self.password.as_bytes(), &mut salted);
        let salted_key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
        let client_key = hmac::sign(&salted_key, b"Client Key");
        let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare());
        let client_signature =
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, stored_key.as_ref()), auth_message.as_bytes());
        let proof: Vec<u8> = client_key.as_ref().iter().zip(client_signature.as_ref()).map(|(k, s)| k ^ s).collect();
        let server_key = hmac::sign(&salted_key, b"Server Key");
        self.server_check = Some((hmac::Key::new(hmac::HMAC_SHA256, server_key.as_ref()), auth_message));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Check the server's final message: it proves the server knew the password too.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<()> {
        let text = std::str::from_utf8(server_final).map_err(|_| backend_auth("SCRAM server-final is not UTF-8"))?;
        let Some(v) = text.strip_prefix("v=") else {
            return Err(backend_auth(format!("SCRAM server-final: {text}")));
        };
        let got = B64.decode(v.trim()).map_err(|_| backend_auth("SCRAM server signature is not base64"))?;
        match &self.server_check {
            // hmac::verify compares in constant time.
            Some((key, auth_message)) if hmac::verify(key, auth_message.as_bytes(), &got).is_ok() => Ok(()),
            _ => Err(backend_auth("SCRAM server signature mismatch: the backend is not who it claims")),
        }
    }
}

/// Postgres md5 password hash: `md5` + md5(md5(password + user) + salt).
pub fn md5_password(user: &str, password: &str, salt: &[u8]) -> String {
    use md5::{Digest, Md5};
    let inner = Md5::digest([password.as_bytes(), user.as_bytes()].concat());
    let inner_hex: String = inner.iter().map(|b| format!("{b:02x}")).collect();
    let outer = Md5::digest([inner_hex.as_bytes(), salt].concat());
    format!("md5{}", outer.iter().map(|b| format!("{b:02x}")).collect::<String>())
}
