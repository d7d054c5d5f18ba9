//! A throwaway certificate authority for the playground and benchmarks: a CA and one
//! certificate per node. Behind the `dev-ca` feature; production nodes get their
//! certificates from the operator.
//!
//! Node certificates name `localhost` and `127.0.0.1`: they serve both the mutual-TLS
//! node-to-node port and the admin API. The CA key stays in the playground dir so a
//! node added later can get a certificate too.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use crate::error::Error;

fn err(e: rcgen::Error) -> Error {
    Error::Tls(format!("certificate generation: {e}"))
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(|e| Error::io(format!("write {}", path.display()), e))
}

/// The CA's parameters. Deterministic, so an issuer rebuilt from them and the stored CA
/// key signs certificates that chain to the stored CA certificate.
fn ca_params() -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params.distinguished_name.push(DnType::CommonName, "Portcullis playground CA (insecure, development only)");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

/// Create `ca.pem` and `ca.key` in `dir` unless they exist.
pub fn ensure_ca(dir: &Path) -> Result<(), Error> {
    if dir.join("ca.pem").exists() && dir.join("ca.key").exists() {
        return Ok(());
    }
    let key = KeyPair::generate().map_err(err)?;
    let cert = ca_params()?.self_signed(&key).map_err(err)?;
    write(&dir.join("ca.pem"), &cert.pem())?;
    write(&dir.join("ca.key"), &key.serialize_pem())?;
    restrict(&dir.join("ca.key"))
}

/// Issue `node<ID>.pem` / `node<ID>.key` signed by the CA in `dir`.
pub fn issue_node_cert(dir: &Path, id: u64) -> Result<(), Error> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).map_err(|e| Error::io(format!("read {}", dir.join(name).display()), e))
    };
    let ca_key = KeyPair::from_pem(&read("ca.key")?).map_err(err)?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).map_err(err)?;
    params.distinguished_name.push(DnType::CommonName, format!("portcullis node {id}"));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    write(&dir.join(format!("node{id}.pem")), &cert.pem())?;
    let key_path = dir.join(format!("node{id}.key"));
    write(&key_path, &key.serialize_pem())?;
    restrict(&key_path)
}

/// Keys are readable by their owner only.
fn restrict(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("chmod {}", path.display()), e))
}
