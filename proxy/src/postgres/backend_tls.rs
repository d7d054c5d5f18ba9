//! Optional TLS from the gateway to the backend, chosen per resource with libpq's
//! words: `sslmode = disable | require | verify-full` and `sslrootcert = FILE`.
//!
//! `require` encrypts but, as in libpq, does not verify the server's certificate;
//! `verify-full` checks it against `sslrootcert` and the host name of the address.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::conn::BoxStream;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendTls {
    Disable,
    Require,
    VerifyFull { root_cert: std::path::PathBuf },
}

impl BackendTls {
    /// From a resource's options; unknown modes are refused rather than guessed.
    pub fn from_options(options: &std::collections::BTreeMap<String, String>) -> Result<Self> {
        match options.get("sslmode").map(String::as_str) {
            None | Some("disable") => Ok(BackendTls::Disable),
            Some("require") => Ok(BackendTls::Require),
            Some("verify-full") => match options.get("sslrootcert") {
                Some(path) => Ok(BackendTls::VerifyFull { root_cert: path.into() }),
                None => Err(Error::BackendAuth("sslmode=verify-full needs the option sslrootcert".into())),
            },
            Some(other) => {
                Err(Error::BackendAuth(format!("unsupported sslmode {other:?} (use disable, require or verify-full)")))
            }
        }
    }
}

/// Ask the backend for TLS on `tcp` and run the handshake.
pub async fn upgrade(tcp: TcpStream, addr: &str, mode: &BackendTls) -> Result<BoxStream> {
    let mut tcp = tcp;
    let err = |detail: String| Error::Backend { addr: addr.to_string(), detail };
    // SSLRequest: length 8, code 80877103.
    let [a, b, c, d] = 8i32.to_be_bytes();
    let [e, f, g, h] = 80_877_103i32.to_be_bytes();
    let request = [a, b, c, d, e, f, g, h];
    tcp.write_all(&request).await.map_err(|e| err(e.to_string()))?;
    let answer = tcp.read_u8().await.map_err(|e| err(e.to_string()))?;
    if answer != b'S' {
        return Err(err("the backend does not accept TLS but the resource requires it (sslmode)".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?;
    let config = match mode {
        BackendTls::Disable => return Ok(Box::new(tcp)),
        BackendTls::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly { provider }))
            .with_no_client_auth(),
        BackendTls::VerifyFull { root_cert } => {
            let pem = std::fs::read(root_cert).map_err(|e| err(format!("sslrootcert {}: {e}", root_cert.display())))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| err(format!("sslrootcert {}: {e}", root_cert.display())))?;
                roots.add(cert).map_err(|e| err(format!("sslrootcert {}: {e}", root_cert.display())))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr).trim_matches(|c| c == '[' || c == ']');
    let name = ServerName::try_from(host.to_string()).map_err(|e| err(format!("server name {host}: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| err(format!("TLS handshake: {e}")))?;
    Ok(Box::new(tls))
}

/// libpq's `sslmode=require`: encrypt, but accept any certificate.
#[derive(Debug)]
struct EncryptOnly {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
