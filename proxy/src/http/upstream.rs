//! The gateway's connections to a backend: HTTP/1.1, over TLS when the resource's
//! address is `https://` (checked against the resource's pinned CA, option `ca_pem`, or
//! the public web roots). [`pool`](super::pool) keeps them alive between requests.

use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::pool::Sender;
use crate::error::{Error, Result};

/// Where a resource's requests go: its address split up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// The path prefix, without a trailing `/` (`""` for none).
    pub prefix: String,
}

impl Base {
    /// From a resource address `http(s)://host:port[/base]`.
    pub fn parse(address: &str) -> Result<Base> {
        let bad = |why: &str| Error::BackendAuth(format!("resource address {address:?}: {why}"));
        let uri: Uri = address.parse().map_err(|_| bad("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let host = uri.host().ok_or_else(|| bad("no host"))?.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let prefix = uri.path().trim_end_matches('/').to_string();
        Ok(Base { https, host, port, prefix })
    }

    /// The `Host` header for it.
    pub fn authority(&self) -> String {
        match (self.https, self.port) {
            (true, 443) | (false, 80) => self.host.clone(),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    /// `host:port` to connect to.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A new HTTP/1.1 connection to `base` (TLS for `https://`), ready for a request;
/// `timeout` bounds the TCP connect and the TLS handshake each. Its driver runs as a
/// task until the connection closes (when the last sender is dropped, or on error).
pub async fn connect(base: &Base, ca_pem: Option<&str>, timeout: Duration) -> Result<Sender> {
    let addr = base.addr();
    let err = |detail: String| Error::Backend { addr: addr.clone(), detail };
    let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| err(format!("no connection within {timeout:?}")))?
        .map_err(|e| err(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    if base.https {
        let tls = tls_connector(ca_pem).map_err(err)?;
        let name = ServerName::try_from(base.host.clone()).map_err(|e| err(format!("server name: {e}")))?;
        let stream = tokio::time::timeout(timeout, tls.connect(name, tcp))
            .await
            .map_err(|_| err(format!("no TLS handshake within {timeout:?}")))?
            .map_err(|e| err(format!("TLS: {e}")))?;
        handshake(TokioIo::new(stream), &addr).await
    } else {
        handshake(TokioIo::new(tcp), &addr).await
    }
}

async fn handshake<T>(io: T, addr: &str) -> Result<Sender>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| Error::Backend { addr: addr.to_string(), detail: format!("handshake: {e}") })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "http backend connection ended");
        }
    });
    Ok(sender)
}

pub(super) fn tls_connector(ca_pem: Option<&str>) -> std::result::Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("the resource's ca_pem: {e}"))?;
                roots.add(cert).map_err(|e| format!("the resource's ca_pem: {e}"))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::Base;

    #[test]
    fn a_resource_address_gives_scheme_host_port_and_base_path() {
        let b = Base::parse("http://127.0.0.1:8080/api/").unwrap();
        assert_eq!((b.https, b.host.as_str(), b.port, b.prefix.as_str()), (false, "127.0.0.1", 8080, "/api"));
        assert_eq!(b.authority(), "127.0.0.1:8080");
        let b = Base::parse("https://api.example.com").unwrap();
        assert_eq!((b.https, b.port, b.prefix.as_str(), b.authority()), (true, 443, "", "api.example.com".into()));
        assert!(Base::parse("ftp://x").is_err());
    }
}
