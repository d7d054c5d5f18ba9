//! TLS material of a node: loaded once, checked at startup, turned into tonic configs.
//!
//! Node-to-node traffic is mutual TLS with certificates issued by the cluster CA. A
//! certificate that the CA did not sign is refused at startup with a message naming
//! both files, rather than surfacing later as failed handshakes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::error::{Error, Result};

/// Paths of a node's TLS files.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct TlsPaths {
    /// Cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// This node's certificate (PEM), signed by the CA.
    pub cert: PathBuf,
    /// This node's private key (PEM).
    pub key: PathBuf,
}

/// Loaded and verified TLS material.
#[derive(Clone)]
pub struct TlsMaterial {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Tls(format!("{what} {}: {e}", path.display())))
}

impl TlsMaterial {
    /// Load the files and check that the certificate chains to the CA.
    pub fn load(paths: &TlsPaths) -> Result<Self> {
        let ca_pem = read(&paths.ca, "CA certificate")?;
        let cert_pem = read(&paths.cert, "node certificate")?;
        let key_pem = read(&paths.key, "node key")?;
        let ca_certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&ca_pem)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Tls(format!("CA certificate {}: {e}", paths.ca.display())))?;
        if ca_certs.is_empty() {
            return Err(Error::Tls(format!("CA certificate {}: no PEM certificate found", paths.ca.display())));
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Tls(format!("node certificate {}: {e}", paths.cert.display())))?;
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(Error::Tls(format!("node certificate {}: no PEM certificate found", paths.cert.display())));
        };
        PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| Error::Tls(format!("node key {}: {e}", paths.key.display())))?;

        let mut roots = rustls::RootCertStore::empty();
        for ca in ca_certs {
            roots.add(ca).map_err(|e| Error::Tls(format!("CA certificate {}: {e}", paths.ca.display())))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| Error::Tls(format!("CA certificate {}: {e}", paths.ca.display())))?;
        let name = ServerName::try_from("localhost").map_err(|e| Error::Tls(e.to_string()))?;
        verifier.verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now()).map_err(|e| {
            Error::Tls(format!(
                "node certificate {} is not valid for CA {}: {e}",
                paths.cert.display(),
                paths.ca.display()
            ))
        })?;
        Ok(TlsMaterial { ca_pem, cert_pem, key_pem })
    }

    /// Server side of node-to-node traffic: client certificates required.
    pub fn mutual_server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
    }

    /// Server side of the admin API: clients verify us; they authenticate with tokens.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new().identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
    }

    /// Client side of node-to-node traffic: present our certificate, trust only the CA.
    pub fn mutual_client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name("localhost")
    }

    /// A rustls server config with this node's certificate, for the client-facing
    /// doors (Postgres TLS): clients verify us, and authenticate with tokens.
    pub fn rustls_server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Tls(format!("node certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem).map_err(|e| Error::Tls(format!("node key: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| Error::Tls(format!("node certificate and key: {e}")))?;
        Ok(Arc::new(config))
    }

    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }
}
