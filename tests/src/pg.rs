//! Postgres clients for black-box tests of the Postgres door: tokio-postgres over
//! tokio-rustls (trusting the playground CA), and raw wire-protocol helpers for
//! feeding the door bytes a well-behaved driver never sends.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::Cluster;

pub use portcullis_chaos::tls::MakeRustls;

/// A rustls client config trusting only the playground CA (ring provider).
pub fn client_config(ca: &Path) -> Arc<ClientConfig> {
    portcullis_chaos::tls::client_config(ca).unwrap()
}

/// tokio-postgres TLS trusting the playground CA of `c`.
pub fn make_tls(c: &Cluster) -> MakeRustls {
    MakeRustls::trusting(&c.ca()).unwrap()
}

/// A tokio runtime for a synchronous test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// tokio-postgres config for node `id`'s door: resource `dbname`, `token` as password.
pub fn config(c: &Cluster, id: u64, dbname: &str, user: &str, token: &str) -> tokio_postgres::Config {
    let (host, port) = c.pg_addr(id);
    let mut config = tokio_postgres::Config::new();
    config
        .host(&host)
        .port(port.parse().unwrap())
        .dbname(dbname)
        .user(user)
        .password(token)
        .ssl_mode(tokio_postgres::config::SslMode::Require)
        .connect_timeout(Duration::from_secs(10));
    config
}

/// Connect with tokio-postgres to resource `dbname` through node `id`; the connection
/// task runs on the current runtime.
pub async fn connect(
    c: &Cluster,
    id: u64,
    dbname: &str,
    user: &str,
    token: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config(c, id, dbname, user, token).connect(make_tls(c)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

// --- raw wire protocol

/// A startup message (protocol 3.0) with `params`.
pub fn startup_message(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = i32::try_from(body.len() + 4).unwrap().to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    msg
}

/// The 8-byte SSLRequest.
pub const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// A typed frontend message: tag, length, body.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut msg = vec![tag];
    msg.extend_from_slice(&i32::try_from(body.len() + 4).unwrap().to_be_bytes());
    msg.extend_from_slice(body);
    msg
}

/// NUL-terminated, as the protocol writes strings.
fn cstr(s: &str) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    b.push(0);
    b
}

/// Query (simple protocol).
pub fn query(sql: &str) -> Vec<u8> {
    message(b'Q', &cstr(sql))
}

/// Parse of `sql` as statement `name` ("" for the unnamed one), no parameter types.
pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut body = cstr(name);
    body.extend(cstr(sql));
    body.extend_from_slice(&[0, 0]);
    message(b'P', &body)
}

/// Bind of statement `statement` to portal `portal`, no parameters, text results.
pub fn bind(portal: &str, statement: &str) -> Vec<u8> {
    let mut body = cstr(portal);
    body.extend(cstr(statement));
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    message(b'B', &body)
}

/// Execute of `portal`, all rows.
pub fn execute(portal: &str) -> Vec<u8> {
    let mut body = cstr(portal);
    body.extend_from_slice(&[0, 0, 0, 0]);
    message(b'E', &body)
}

/// Close of a statement (`b'S'`) or portal (`b'P'`).
pub fn close(what: u8, name: &str) -> Vec<u8> {
    let mut body = vec![what];
    body.extend(cstr(name));
    message(b'C', &body)
}

pub fn sync() -> Vec<u8> {
    message(b'S', &[])
}

/// A backend message as read off the wire.
#[derive(Debug, Clone)]
pub struct BackendMsg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl BackendMsg {
    /// The fields of an ErrorResponse / NoticeResponse by code (`C`, `M`, `S`, ...).
    pub fn field(&self, code: u8) -> Option<String> {
        let mut rest: &[u8] = &self.body;
        while let Some((&c, tail)) = rest.split_first() {
            if c == 0 {
                break;
            }
            let end = tail.iter().position(|b| *b == 0)?;
            if c == code {
                return Some(String::from_utf8_lossy(&tail[..end]).to_string());
            }
            rest = &tail[end + 1..];
        }
        None
    }
}

/// What a raw connection ended with.
#[derive(Debug)]
pub enum Ending {
    /// The server closed the connection after these messages.
    Closed(Vec<BackendMsg>),
    /// Nothing more within the timeout; the connection is still open.
    Silent(Vec<BackendMsg>),
}

impl Ending {
    pub fn messages(&self) -> &[BackendMsg] {
        match self {
            Ending::Closed(m) | Ending::Silent(m) => m,
        }
    }

    pub fn error(&self) -> Option<&BackendMsg> {
        self.messages().iter().find(|m| m.tag == b'E')
    }

    /// Every ErrorResponse, in order.
    pub fn errors(&self) -> Vec<&BackendMsg> {
        self.messages().iter().filter(|m| m.tag == b'E').collect()
    }

    /// The text values of every DataRow, in order (NULL as None).
    pub fn rows(&self) -> Vec<Vec<Option<String>>> {
        self.messages().iter().filter(|m| m.tag == b'D').map(|m| data_row(&m.body)).collect()
    }
}

/// Split complete backend messages off the front of `buf`.
fn split_messages(buf: &mut Vec<u8>, out: &mut Vec<BackendMsg>) {
    loop {
        if buf.len() < 5 {
            return;
        }
        let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        let Ok(len) = usize::try_from(len) else { return };
        if buf.len() < len + 1 {
            return;
        }
        let body = buf[5..len + 1].to_vec();
        out.push(BackendMsg { tag: buf[0], body });
        buf.drain(..len + 1);
    }
}

/// Read backend messages from a blocking socket until the server closes it or says
/// nothing for `quiet` (overall at most `limit`).
pub fn read_until_close(s: &mut TcpStream, quiet: Duration, limit: Duration) -> Ending {
    let deadline = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut msgs = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            split_messages(&mut buf, &mut msgs);
            return Ending::Silent(msgs);
        }
        s.set_read_timeout(Some(quiet.min(left))).unwrap();
        match s.read(&mut chunk) {
            Ok(0) => {
                split_messages(&mut buf, &mut msgs);
                return Ending::Closed(msgs);
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                split_messages(&mut buf, &mut msgs);
                return Ending::Silent(msgs);
            }
            // A reset after the server gave up on us counts as a close.
            Err(_) => {
                split_messages(&mut buf, &mut msgs);
                return Ending::Closed(msgs);
            }
        }
    }
}

/// Connect a plain TCP socket to node `id`'s door.
pub fn raw_connect(c: &Cluster, id: u64) -> TcpStream {
    let (host, port) = c.pg_addr(id);
    let s = TcpStream::connect(format!("{host}:{port}")).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Send `bytes` (ignoring a write error: the server may already have hung up).
pub fn send(s: &mut TcpStream, bytes: &[u8]) {
    let _ = s.write_all(bytes);
    let _ = s.flush();
}

/// A logged-in session over TLS on raw bytes: SSLRequest, handshake, startup,
/// password, up to the first ReadyForQuery. Returns the stream.
pub async fn raw_tls_login(
    c: &Cluster,
    id: u64,
    dbname: &str,
    token: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let (host, port) = c.pg_addr(id);
    let mut tcp = tokio::net::TcpStream::connect(format!("{host}:{port}")).await.unwrap();
    tcp.write_all(&SSL_REQUEST).await.unwrap();
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"S", "the door must accept TLS");
    let connector = tokio_rustls::TlsConnector::from(client_config(&c.ca()));
    let name = ServerName::try_from(host).unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(&startup_message(&[("user", "raw"), ("database", dbname)])).await.unwrap();
    let mut password = token.as_bytes().to_vec();
    password.push(0);
    let mut sent_password = false;
    let mut buf = Vec::new();
    let mut msgs = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(20), tls.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "the door closed during login: {msgs:?}");
        buf.extend_from_slice(&chunk[..n]);
        split_messages(&mut buf, &mut msgs);
        for m in msgs.drain(..) {
            match m.tag {
                b'R' if m.body.get(..4) == Some(&[0, 0, 0, 3]) && !sent_password => {
                    tls.write_all(&message(b'p', &password)).await.unwrap();
                    sent_password = true;
                }
                b'E' => panic!("login refused: {:?}", m.field(b'M')),
                b'Z' => return tls,
                _ => {}
            }
        }
    }
}

/// Read backend messages from an async stream until it closes or `limit` passes.
pub async fn read_async_until_close<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> Ending {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = Vec::new();
    let mut msgs = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) => {
                split_messages(&mut buf, &mut msgs);
                return Ending::Silent(msgs);
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                split_messages(&mut buf, &mut msgs);
                return Ending::Closed(msgs);
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The values of a DataRow body (text format).
fn data_row(body: &[u8]) -> Vec<Option<String>> {
    let mut values = Vec::new();
    let Some(count) = body.get(..2) else { return values };
    let mut at = 2;
    for _ in 0..u16::from_be_bytes([count[0], count[1]]) {
        let Some(len) = body.get(at..at + 4) else { break };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        at += 4;
        if len < 0 {
            values.push(None);
            continue;
        }
        let end = at + len as usize;
        values.push(body.get(at..end).map(|v| String::from_utf8_lossy(v).into_owned()));
        at = end;
    }
    values
}
