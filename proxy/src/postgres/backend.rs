//! Logging in to the backend with the resource's stored credentials.
//!
//! Supports the methods Postgres servers ask for: trust, cleartext, md5 and
//! SCRAM-SHA-256 (the default since Postgres 14). The client never sees these
//! credentials; it authenticated to the gateway with its token.

use std::time::Duration;

use pgwire::messages::PgWireBackendMessage as B;
use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::startup::{
    Authentication, BackendKeyData, Password, PasswordMessageFamily, SASLInitialResponse, SASLResponse, Startup,
};

use super::conn::BackendConn;
use super::scram::{ScramClient, md5_password};
use crate::error::{Error, Result};

/// Where and as whom to log in.
#[derive(Clone)]
pub struct BackendTarget {
    pub addr: String,
    pub user: String,
    /// Never logged.
    pub password: Option<String>,
    pub database: String,
    pub tls: super::backend_tls::BackendTls,
    /// The client's session settings to pass on (`startup_params::sort`).
    pub settings: Vec<(String, String)>,
}

/// A logged-in backend connection, ready for queries.
pub struct BackendSession {
    pub conn: BackendConn,
    /// ParameterStatus values the backend reported (relayed to the client).
    pub parameters: Vec<(String, String)>,
    /// The backend's cancel key, to forward a client's cancel request.
    pub key: Option<BackendKeyData>,
}

pub async fn connect(target: &BackendTarget, timeout: Duration) -> Result<BackendSession> {
    let err = |detail: String| Error::Backend { addr: target.addr.clone(), detail };
    let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&target.addr))
        .await
        .map_err(|_| err(format!("no answer within {timeout:?}")))?
        .map_err(|e| err(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let stream = match &target.tls {
        super::backend_tls::BackendTls::Disable => Box::new(tcp),
        mode => tokio::time::timeout(timeout, super::backend_tls::upgrade(tcp, &target.addr, mode))
            .await
            .map_err(|_| err(format!("TLS handshake did not finish within {timeout:?}")))??,
    };
    let mut conn = BackendConn::new(stream, target.addr.clone());

    let mut startup = Startup::new();
    startup.parameters.insert("user".into(), target.user.clone());
    startup.parameters.insert("database".into(), target.database.clone());
    startup.parameters.insert("application_name".into(), "portcullis".into());
    for (name, value) in &target.settings {
        startup.parameters.insert(name.clone(), value.clone());
    }
    // Pin what changes how the backend reads statement text, whatever the role's or
    // database's defaults say (see `classify::settings`).
    startup.parameters.insert("client_encoding".into(), "UTF8".into());
    startup.parameters.insert("options".into(), "-c standard_conforming_strings=on".into());
    conn.send(&F::Startup(startup)).await?;

    let login = async {
        let mut scram: Option<ScramClient> = None;
        let mut parameters = Vec::new();
        let mut key = None;
        loop {
            match conn.read().await? {
                B::Authentication(auth) => match auth {
                    Authentication::Ok => {}
                    Authentication::CleartextPassword => {
                        let pw = password(target)?;
                        conn.send(&F::PasswordMessageFamily(PasswordMessageFamily::Password(Password::new(pw))))
                            .await?;
                    }
                    Authentication::MD5Password(salt) => {
                        let hashed = md5_password(&target.user, &password(target)?, &salt);
                        conn.send(&F::PasswordMessageFamily(PasswordMessageFamily::Password(Password::new(hashed))))
                            .await?;
                    }
                    Authentication::SASL(mechanisms) => {
                        if !mechanisms.iter().any(|m| m == "SCRAM-SHA-256") {
                            return Err(Error::BackendAuth(format!(
                                "backend offers SASL {mechanisms:?}, not SCRAM-SHA-256"
                            )));
                        }
                        let client = ScramClient::new(&password(target)?)?;
                        let first = client.client_first();
                        scram = Some(client);
                        let msg = SASLInitialResponse::new("SCRAM-SHA-256".into(), Some(first.into_bytes().into()));
                        conn.send(&F::PasswordMessageFamily(PasswordMessageFamily::SASLInitialResponse(msg))).await?;
                    }
                    Authentication::SASLContinue(data) => {
                        let client =
                            scram.as_mut().ok_or_else(|| Error::BackendAuth("SASL continue without start".into()))?;
                        let reply = client.client_final(&data)?;
                        let msg = SASLResponse::new(reply.into_bytes().into());
                        conn.send(&F::PasswordMessageFamily(PasswordMessageFamily::SASLResponse(msg))).await?;
                    }
                    Authentication::SASLFinal(data) => {
                        scram
                            .as_ref()
                            .ok_or_else(|| Error::BackendAuth("SASL final without start".into()))?
                            .verify_server_final(&data)?;
                    }
                    other => {
                        return Err(Error::BackendAuth(format!(
                            "backend asks for unsupported authentication {other:?}"
                        )));
                    }
                },
                B::ParameterStatus(p) => {
                    check_pinned(&p.name, &p.value)?;
                    parameters.push((p.name, p.value));
                }
                B::BackendKeyData(k) => key = Some(k),
                B::ReadyForQuery(_) => return Ok((parameters, key)),
                B::ErrorResponse(e) => {
                    let text = e.fields.iter().find(|(c, _)| *c == b'M').map(|(_, m)| m.clone()).unwrap_or_default();
                    return Err(Error::BackendAuth(text));
                }
                B::NoticeResponse(_) | B::NegotiateProtocolVersion(_) => {}
                other => return Err(Error::BackendAuth(format!("unexpected message during login: {other:?}"))),
            }
        }
    };
    let (parameters, key) = tokio::time::timeout(timeout, login)
        .await
        .map_err(|_| Error::BackendAuth(format!("login did not finish within {timeout:?}")))??;
    Ok(BackendSession { conn, parameters, key })
}

fn password(target: &BackendTarget) -> Result<String> {
    target.password.clone().ok_or_else(|| {
        Error::BackendAuth(format!("backend asks for a password but resource user {} has none stored", target.user))
    })
}

/// A backend report of a pinned setting must show its pinned value (fail closed).
pub fn check_pinned(name: &str, value: &str) -> Result<()> {
    let pinned = super::classify::settings::PINNED.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if pinned && !super::classify::settings::is_pinned_value(name, value) {
        return Err(Error::PinnedSettingChanged { name: name.to_string(), value: value.to_string() });
    }
    Ok(())
}
