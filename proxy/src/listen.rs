//! What every door does with its listener: accept connections up to a bound, run each
//! in its own task, and on shutdown stop accepting and wait for the running ones.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Accept on `listener` until `shutdown`; each connection runs `serve(tcp, peer, stop)`
/// in a task (`stop` fires with `shutdown`). Past `max` connections at once new ones
/// are closed at once. Returns when every connection has ended.
pub async fn accept_until<F, Fut>(
    door: &'static str,
    listener: TcpListener,
    max: usize,
    shutdown: CancellationToken,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(max));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "{door} door: accept failed");
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "{door} door: connection limit reached; refusing");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let connection = serve(tcp, peer, shutdown.child_token());
        tokio::spawn(async move {
            connection.await;
            drop(permit);
        });
    }
    // Draining: no new connections; the running ones end at their next boundary.
    drop(listener);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = limit.acquire_many(all).await;
}
