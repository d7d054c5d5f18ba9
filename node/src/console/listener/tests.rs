#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use super::*;

/// A self-signed certificate for 127.0.0.1: the acceptor and a connector trusting it.
fn tls_pair() -> (TlsAcceptor, TlsConnector) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (TlsAcceptor::from(Arc::new(server)), TlsConnector::from(Arc::new(client)))
}

#[tokio::test]
async fn a_silent_client_does_not_stop_others_from_being_accepted() {
    let (acceptor, connector) = tls_pair();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let mut listener = TlsListener::spawn(tcp, acceptor, Duration::from_secs(60), shutdown.clone()).unwrap();
    assert_eq!(listener.local_addr().unwrap(), addr);

    // Connects and never says a word: its handshake waits in its own task.
    let _silent = TcpStream::connect(addr).await.unwrap();
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.unwrap();
        tls.write_all(b"ping").await.unwrap();
        let mut pong = [0u8; 4];
        tls.read_exact(&mut pong).await.unwrap();
        pong
    });
    let (mut accepted, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await.unwrap();
    let mut ping = [0u8; 4];
    accepted.read_exact(&mut ping).await.unwrap();
    assert_eq!(&ping, b"ping");
    accepted.write_all(b"pong").await.unwrap();
    assert_eq!(&client.await.unwrap(), b"pong");
    shutdown.cancel();
}

#[tokio::test]
async fn a_handshake_that_takes_too_long_is_dropped() {
    let (acceptor, _) = tls_pair();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let _listener = TlsListener::spawn(tcp, acceptor, Duration::from_millis(200), CancellationToken::new()).unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // The server gives up on the handshake and closes the connection.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}
