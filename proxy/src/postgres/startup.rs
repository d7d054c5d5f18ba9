//! Phase "authenticate": TLS, the startup message, and the token as password.
//!
//! TLS is required: the password is an OIDC token and never crosses the network in
//! clear. `dbname` names the resource. A cancel request (on a fresh connection, before
//! or after TLS) is answered here too.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use pgwire::messages::PgWireBackendMessage as B;
use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::SslNegotiationMetaMessage;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::{Authentication, NegotiateProtocolVersion};
use portcullis_raft::model::{Protocol as ResourceProtocol, Resource};
use tokio_rustls::TlsAcceptor;

use super::conn::ClientConn;
use super::reply;
use crate::error::{Error, Result};
use crate::identity::{Identity, Verifier};
use crate::store::Store;

/// Protocol 3.0 as a full version number (major << 16 | minor), as Postgres reports it.
const PROTOCOL_3_0: i32 = 3 << 16;

/// A client that proved who it is and named a resource it may try.
pub struct Admitted {
    pub identity: Identity,
    pub resource: Resource,
    pub params: BTreeMap<String, String>,
}

pub enum Admission {
    Session(Box<Admitted>),
    Cancel(CancelRequest),
    /// The client went away, or was refused (the refusal was already sent).
    Closed,
}

/// Run the handshake. Refusals are sent to the client here (FATAL), then `Closed`.
pub async fn admit<S: Store>(
    client: &mut ClientConn,
    tls: &TlsAcceptor,
    verifier: &Verifier,
    store: &S,
    peer: SocketAddr,
) -> Result<Admission> {
    // --- SSLRequest / GSSENCRequest / Startup / CancelRequest
    loop {
        let Some(first) = client.read().await? else { return Ok(Admission::Closed) };
        match first {
            F::SslNegotiation(SslNegotiationMetaMessage::PostgresSsl(_)) => {
                if client.buffered() > 0 {
                    return Err(Error::Protocol("data sent before the TLS handshake".into()));
                }
                client.write_raw_now(b"S").await?;
                let plain = client.take_stream();
                let tls_stream = tls
                    .accept(plain)
                    .await
                    .map_err(|e| Error::ClientIo(format!("TLS handshake with {peer} failed: {e}")))?;
                client.put_stream(Box::new(tls_stream));
                client.ctx.awaiting_frontend_ssl = false;
                break;
            }
            F::SslNegotiation(SslNegotiationMetaMessage::PostgresGss(_)) => {
                // No GSS encryption; the client may go on with SSLRequest.
                client.write_raw_now(b"N").await?;
            }
            F::SslNegotiation(SslNegotiationMetaMessage::None) => {
                // A startup or cancel request without TLS.
                client.ctx.awaiting_frontend_ssl = false;
                match client.read().await? {
                    Some(F::CancelRequest(c)) => return Ok(Admission::Cancel(c)),
                    Some(_) => {
                        client
                            .send(reply::fatal(
                                reply::INVALID_AUTHORIZATION,
                                "TLS required: Portcullis takes an OIDC token as the password and never over plaintext; connect with sslmode=require",
                            ))
                            .await?;
                        return Ok(Admission::Closed);
                    }
                    None => return Ok(Admission::Closed),
                }
            }
            other => return Err(Error::Protocol(format!("unexpected first message {other:?}"))),
        }
    }

    // --- Startup (or a cancel request sent over TLS)
    let startup = match client.read().await? {
        Some(F::Startup(s)) => s,
        Some(F::CancelRequest(c)) => return Ok(Admission::Cancel(c)),
        Some(other) => return Err(Error::Protocol(format!("expected a startup message, got {other:?}"))),
        None => return Ok(Admission::Closed),
    };
    client.ctx.awaiting_frontend_startup = false;
    let mut params = startup.parameters;
    // The door speaks protocol 3.0. A client asking for a newer minor version (3.2) or
    // for protocol options (`_pq_.*`) is told so, as Postgres does, and goes on in 3.0.
    let options: Vec<String> = params.keys().filter(|k| k.starts_with("_pq_.")).cloned().collect();
    if startup.protocol_number_minor > 0 || !options.is_empty() {
        params.retain(|k, _| !k.starts_with("_pq_."));
        client.queue(B::NegotiateProtocolVersion(NegotiateProtocolVersion::new(PROTOCOL_3_0, options)))?;
    }
    let Some(resource_name) = params.get("database").cloned().filter(|d| !d.is_empty()) else {
        client
            .send(reply::fatal(reply::UNKNOWN_DATABASE, "no database given: use the resource name as dbname"))
            .await?;
        return Ok(Admission::Closed);
    };

    // --- The token, as a cleartext password inside TLS.
    client.send(B::Authentication(Authentication::CleartextPassword)).await?;
    let token = match client.read().await? {
        Some(F::PasswordMessageFamily(p)) => {
            p.into_password().map_err(|e| Error::Protocol(format!("bad password message: {e}")))?.password
        }
        Some(other) => return Err(Error::Protocol(format!("expected a password message, got {other:?}"))),
        None => return Ok(Admission::Closed),
    };
    let identity = match verifier.verify(&token).await {
        Ok(i) => i,
        Err(e) => {
            tracing::info!(%peer, reason = %e, "postgres login refused");
            client.send(reply::fatal(reply::code_for(&e), &e.to_string())).await?;
            return Ok(Admission::Closed);
        }
    };
    if !store.is_serving() {
        client
            .send(reply::fatal(
                reply::CANNOT_CONNECT_NOW,
                "this Portcullis node does not hold the quorum lease and refuses new sessions; retry another node",
            ))
            .await?;
        return Ok(Admission::Closed);
    }
    let resource = match store.resource(&resource_name)? {
        Some(r) if r.protocol == ResourceProtocol::Postgres => std::sync::Arc::unwrap_or_clone(r),
        _ => {
            client
                .send(reply::fatal(reply::UNKNOWN_DATABASE, &format!("no Postgres resource named {resource_name}")))
                .await?;
            return Ok(Admission::Closed);
        }
    };
    Ok(Admission::Session(Box::new(Admitted { identity, resource, params })))
}
