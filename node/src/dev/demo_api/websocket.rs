//! `GET /ws/echo`: a WebSocket (RFC 6455) that echoes every data frame back as it came
//! (same opcode and FIN bit, so fragments come back as fragments), answers a Ping with
//! a Pong and a Close with a Close. Hand-rolled and small: frames up to 1 MiB, a
//! larger one ends the connection with Close 1009.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Problem;

/// RFC 6455 §1.3.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The largest frame echoed.
const MAX_FRAME: u64 = 1 << 20;

/// Answer the handshake with 101 and echo on the upgraded connection.
pub async fn echo(mut request: Request) -> Result<Response, Problem> {
    let headers = request.headers();
    let wants = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !wants(header::CONNECTION, "upgrade") || !wants(header::UPGRADE, "websocket") {
        return Err(Problem::new(StatusCode::UPGRADE_REQUIRED, "/ws/echo is a WebSocket: send Upgrade: websocket"));
    }
    let key = headers
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Problem::new(StatusCode::BAD_REQUEST, "no Sec-WebSocket-Key"))?;
    let digest =
        ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, format!("{}{GUID}", key.trim()).as_bytes());
    let accept = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                if let Err(e) = run(TokioIo::new(upgraded)).await {
                    tracing::debug!(error = %e, "demo API: websocket ended");
                }
            }
            Err(e) => tracing::debug!(error = %e, "demo API: websocket upgrade failed"),
        }
    });
    let mut response = (StatusCode::SWITCHING_PROTOCOLS, Body::empty()).into_response();
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    Ok(response)
}

/// Echo frames until a Close (answered) or the end of the stream.
async fn run<T: AsyncRead + AsyncWrite + Unpin>(mut io: T) -> std::io::Result<()> {
    loop {
        let mut head = [0u8; 2];
        if io.read_exact(&mut head).await.is_err() {
            return Ok(());
        }
        let [b0, b1] = head;
        let length = match b1 & 0x7f {
            126 => u64::from(io.read_u16().await?),
            127 => io.read_u64().await?,
            n => u64::from(n),
        };
        let mut key = [0u8; 4];
        if b1 & 0x80 != 0 {
            io.read_exact(&mut key).await?;
        }
        if length > MAX_FRAME {
            io.write_all(&frame(0x88, &[0x03, 0xf1])).await?;
            return Ok(());
        }
        let mut payload = vec![0u8; usize::try_from(length).unwrap_or(0)];
        io.read_exact(&mut payload).await?;
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key.get(i % 4).copied().unwrap_or(0);
        }
        match b0 & 0x0f {
            0x8 => {
                io.write_all(&frame(0x88, payload.get(..2).unwrap_or_default())).await?;
                let _ = io.shutdown().await;
                return Ok(());
            }
            0x9 => io.write_all(&frame(0x8a, &payload)).await?,
            0xa => {}
            _ => io.write_all(&frame(b0, &payload)).await?,
        }
    }
}

/// A server frame (unmasked) with the first byte `b0`.
fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n < 65536 => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}
