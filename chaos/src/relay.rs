//! A TCP relay inside the harness: every connection accepted on its listener is
//! forwarded to one target, and each chunk can be held back for a delay before it is
//! passed on. It stands in for `tc netem` (missing from these machines' kernels) on
//! node-to-node raft links (the `slow` nemesis) and, with no delay, forwards the
//! backend Postgres onto the bridge where nodes in namespaces can reach it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A running relay; dropping it closes the listener and every relayed connection.
pub struct Relay {
    pub addr: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Listen on `listen` (port 0 picks one) and forward to `target`.
    pub async fn start(listen: SocketAddr, target: SocketAddr) -> std::io::Result<Relay> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let delay_ms = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(serve(listener, target, delay_ms.clone()));
        Ok(Relay { addr, delay_ms, task })
    }

    /// Delay every chunk (both directions) by `d` from now on; zero relays at once.
    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(u64::try_from(d.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, target: SocketAddr, delay_ms: Arc<AtomicU64>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((inbound, _)) = accepted else { continue };
                conns.spawn(relay_one(inbound, target, delay_ms.clone()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn relay_one(inbound: TcpStream, target: SocketAddr, delay_ms: Arc<AtomicU64>) {
    let Ok(Ok(outbound)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (ir, iw) = inbound.into_split();
    let (or, ow) = outbound.into_split();
    // Either direction ending closes both: half-open links would keep peers waiting.
    tokio::select! {
        _ = delayed_copy(ir, ow, delay_ms.clone()) => {}
        _ = delayed_copy(or, iw, delay_ms) => {}
    }
}

/// Copy `r` to `w`, each chunk written no earlier than its arrival plus the delay in
/// force when it arrived; order is kept.
async fn delayed_copy<R, W>(mut r: R, mut w: W, delay_ms: Arc<AtomicU64>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let due = Instant::now() + Duration::from_millis(delay_ms.load(Ordering::Relaxed));
                    if tx.send((due, buf.get(..n).unwrap_or_default().to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    while let Some((due, chunk)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        if w.write_all(&chunk).await.is_err() {
            break;
        }
    }
    reader.abort();
    let _ = w.shutdown().await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_relay_forwards_both_ways_and_holds_chunks_for_its_delay() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let relay = Relay::start("127.0.0.1:0".parse().unwrap(), target).await.unwrap();
        let mut c = TcpStream::connect(relay.addr).await.unwrap();
        let mut buf = [0u8; 4];
        c.write_all(b"ping").await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        relay.set_delay(Duration::from_millis(150));
        let start = std::time::Instant::now();
        c.write_all(b"pong").await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        // Held once on the way in and once on the way back.
        assert!(start.elapsed() >= Duration::from_millis(300), "{:?}", start.elapsed());
    }
}
