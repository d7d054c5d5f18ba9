//! OpenSSH certificates of the cluster's SSH CA: pure functions over keys and time.
//!
//! Two kinds are made here:
//! - **user certificates** ([`sign_user`]), issued by the admin API's
//!   `IssueSshCertificate` to a caller who proved a valid token: the certificate names
//!   the token's identity and expires with it, so an SSH client logs in with a key pair
//!   instead of a token (OpenSSH reads at most 1023 bytes of password; tokens from real
//!   providers are often longer). The door turns one back into an [`Identity`] with
//!   [`verify_user`], the "authenticate" phase for certificate logins.
//! - **host certificates** ([`sign_host`]) for the cluster's host key, so one
//!   `@cert-authority` line in a client's known_hosts trusts every node.
//!
//! What a user certificate carries (and the door requires):
//! - type `user`, signed by the cluster CA, no critical options (none are understood);
//! - key id = the identity's subject, and exactly that one principal (a certificate
//!   with no principals would be valid for anyone, so it is refused);
//! - valid from 60 s before issue until the token's `exp`, at most [`MAX_USER_VALIDITY`];
//! - extensions [`EXT_GROUPS`] (the groups as a JSON list: group names may hold commas),
//!   [`EXT_EMAIL`], [`EXT_NAME`], [`EXT_ISSUER`] (the OIDC issuer of the token).

use std::time::Duration;

pub use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::ssh_key::{Algorithm, HashAlg};
use russh::keys::{Certificate, PrivateKey, PublicKey};

use crate::error::{Error, Result};
use crate::identity::Identity;

/// The identity's groups, as a JSON list of strings.
pub const EXT_GROUPS: &str = "groups@portcullis.dev";
pub const EXT_EMAIL: &str = "email@portcullis.dev";
pub const EXT_NAME: &str = "name@portcullis.dev";
/// The OIDC issuer that vouched for the identity when the certificate was issued.
pub const EXT_ISSUER: &str = "issuer@portcullis.dev";

/// How long before "now" a certificate becomes valid: clocks of clients and nodes differ.
pub const SKEW: Duration = Duration::from_secs(60);
/// The longest a user certificate lives, whatever its token's `exp`.
pub const MAX_USER_VALIDITY: Duration = Duration::from_secs(12 * 3600);
/// How long a host certificate lives; nodes re-issue it well before (see `authority`).
pub const HOST_VALIDITY: Duration = Duration::from_secs(365 * 86_400);

fn refused<T>(reason: impl Into<String>) -> Result<T> {
    Err(Error::CertificateRefused(reason.into()))
}

fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Ssh(format!("{what}: {e}"))
}

/// `N` random bytes from the system's generator (ring, the one crypto provider).
fn random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| Error::Ssh("no system randomness".into()))?;
    Ok(bytes)
}

/// A fresh Ed25519 key pair.
pub fn generate_ed25519(comment: &str) -> Result<PrivateKey> {
    let seed = random::<32>()?;
    PrivateKey::new(KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed)), comment)
        .map_err(|e| failed("generate key", e))
}

/// `SHA256:...`, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// A public key sent for certification: one OpenSSH line, Ed25519 only (the key type
/// `portcullis ssh login` makes; every OpenSSH since 6.5 has it).
pub fn parse_user_key(line: &str) -> Result<PublicKey> {
    let key = PublicKey::from_openssh(line.trim())
        .map_err(|e| Error::CertificateRefused(format!("public key is not an OpenSSH public key line: {e}")))?;
    if key.algorithm() != Algorithm::Ed25519 {
        return refused(format!("public key is {}; only ssh-ed25519 keys are certified", key.algorithm()));
    }
    Ok(key)
}

/// A user certificate for `key`, naming `identity`, valid from [`SKEW`] before `now`
/// until the identity's token expires (at most [`MAX_USER_VALIDITY`]).
pub fn sign_user(ca: &PrivateKey, key: &PublicKey, identity: &Identity, now: u64) -> Result<Certificate> {
    if identity.subject.is_empty() {
        return refused("the identity has no subject");
    }
    if identity.expires_at <= now {
        return refused("the token has expired");
    }
    let valid_before = identity.expires_at.min(now.saturating_add(MAX_USER_VALIDITY.as_secs()));
    let mut builder =
        Builder::new(random::<32>()?, key.key_data().clone(), now.saturating_sub(SKEW.as_secs()), valid_before)
            .map_err(|e| failed("certificate", e))?;
    let groups = serde_json::to_string(&identity.groups).map_err(|e| failed("certificate groups", e))?;
    let cert_err = |e| failed("certificate", e);
    builder.serial(u64::from_be_bytes(random::<8>()?)).map_err(cert_err)?;
    builder.cert_type(CertType::User).map_err(cert_err)?;
    builder.key_id(identity.subject.clone()).map_err(cert_err)?;
    builder.valid_principal(identity.subject.clone()).map_err(cert_err)?;
    builder.extension(EXT_GROUPS, groups).map_err(cert_err)?;
    builder.extension(EXT_ISSUER, identity.issuer.clone()).map_err(cert_err)?;
    if let Some(email) = identity.email.as_ref().filter(|e| !e.is_empty()) {
        builder.extension(EXT_EMAIL, email.clone()).map_err(cert_err)?;
    }
    if let Some(name) = identity.name.as_ref().filter(|n| !n.is_empty()) {
        builder.extension(EXT_NAME, name.clone()).map_err(cert_err)?;
    }
    builder.comment(identity.subject.clone()).map_err(cert_err)?;
    builder.sign(ca).map_err(|e| failed("sign certificate", e))
}

/// A host certificate for `host`, valid for any host name (the principals are empty:
/// clients reach the nodes by address, by DNS name or through a load balancer, and the
/// `@cert-authority` line's host pattern already says where the CA is trusted).
pub fn sign_host(ca: &PrivateKey, host: &PublicKey, now: u64) -> Result<Certificate> {
    let valid_after = now.saturating_sub(86_400);
    let valid_before = now.saturating_add(HOST_VALIDITY.as_secs());
    let cert_err = |e| failed("host certificate", e);
    let mut builder =
        Builder::new(random::<32>()?, host.key_data().clone(), valid_after, valid_before).map_err(cert_err)?;
    builder.serial(u64::from_be_bytes(random::<8>()?)).map_err(cert_err)?;
    builder.cert_type(CertType::Host).map_err(cert_err)?;
    builder.key_id("portcullis gateway").map_err(cert_err)?;
    builder.all_principals_valid().map_err(cert_err)?;
    builder.sign(ca).map_err(|e| failed("sign host certificate", e))
}

/// Phase "authenticate" for a certificate login: the identity `cert` names, if it is a
/// user certificate of the CA `ca`, valid at `now` (its start may be up to [`SKEW`]
/// ahead of this node's clock), for its subject only.
pub fn verify_user(cert: &Certificate, ca: &PublicKey, now: u64) -> Result<Identity> {
    if cert.cert_type() != CertType::User {
        return refused("a host certificate is not a user certificate");
    }
    if cert.signature_key() != ca.key_data() {
        return refused(format!(
            "signed by {}, not by the cluster's SSH CA {} (get one with `portcullis ssh login`)",
            cert.signature_key().fingerprint(HashAlg::Sha256),
            fingerprint(ca)
        ));
    }
    if cert.verify_signature().is_err() {
        return refused("bad signature");
    }
    if cert.valid_after() > now.saturating_add(SKEW.as_secs()) {
        return refused(format!("not valid for another {} s", cert.valid_after() - now));
    }
    if now >= cert.valid_before() {
        return refused(format!(
            "expired {} s ago (it expires with the token it was issued for; run `portcullis ssh login` again)",
            now - cert.valid_before()
        ));
    }
    if let Some(option) = cert.critical_options().keys().next() {
        return refused(format!("critical option {option} is not understood"));
    }
    let subject = cert.key_id();
    if subject.is_empty() {
        return refused("no key id (the identity's subject)");
    }
    if cert.valid_principals() != [subject.to_string()] {
        return refused(format!("its principals are not exactly its subject {subject}"));
    }
    let ext = |name: &str| cert.extensions().get(name).filter(|v| !v.is_empty()).cloned();
    let groups = match ext(EXT_GROUPS) {
        Some(json) => serde_json::from_str::<Vec<String>>(&json)
            .map_err(|_| Error::CertificateRefused(format!("extension {EXT_GROUPS} is not a JSON list of strings")))?,
        None => Vec::new(),
    };
    Ok(Identity {
        subject: subject.to_string(),
        email: ext(EXT_EMAIL),
        name: ext(EXT_NAME),
        groups,
        issuer: ext(EXT_ISSUER).unwrap_or_default(),
        expires_at: cert.valid_before(),
    })
}

#[cfg(test)]
mod tests;
