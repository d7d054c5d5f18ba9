//! Keep-alive connections to the backends: a bounded pool per resource.
//!
//! A request takes an idle connection of its resource if there is one, or opens a new
//! one ([`upstream::connect`](super::upstream::connect)); it alone uses that connection
//! until its response has been read to the end. Only then, when hyper says the
//! connection is ready for the next request, does the connection go back to the pool
//! ([`Lease`]: at once when the caller read the body itself, else a task waits for it;
//! a response dropped half-read, a backend that closes, or any error ends the
//! connection instead). At most `max_idle` connections wait per
//! resource, each for at most `idle_timeout`; the rest are closed.
//!
//! A connection that was idle may have been closed by the backend meanwhile. If
//! sending fails before any of the request was written (hyper hands the request back),
//! the request goes out on another connection. If it was written and the connection
//! closed before any response came, an idempotent request (GET, HEAD, OPTIONS, TRACE,
//! PUT, DELETE) is sent once more on a new connection; any other is answered 502:
//! the backend may have acted on it, and it is never sent twice.
//!
//! Connections are keyed by resource name and remember the address and pinned CA they
//! were opened for: a resource changed to another backend or CA never reuses them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use super::upstream::{self, Base};
use crate::error::{Error, Result};

/// The backend side of a request, as the pool sends it.
pub type Sender = SendRequest<Full<Bytes>>;

/// Idle backend connections of every resource; shared by the door's connections.
pub struct Pool {
    /// std, not tokio: held for a pop or a push, never across an await.
    slots: Mutex<HashMap<String, Slot>>,
    max_idle: usize,
    idle_timeout: Duration,
}

/// One resource's idle connections, for the backend they were opened to.
struct Slot {
    origin: Origin,
    /// Most recently used last (reused first: the likeliest to be still open).
    idle: Vec<Idle>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    address: String,
    ca_pem: Option<String>,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// Where a request goes: the resource, its backend, its pinned CA.
pub struct Destination<'a> {
    pub resource: &'a str,
    /// The resource's address as registered (identifies the backend).
    pub address: &'a str,
    pub base: &'a Base,
    pub ca_pem: Option<&'a str>,
}

// === impl Pool ===

impl Pool {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Pool { slots: Mutex::default(), max_idle, idle_timeout })
    }

    /// Send `request` (URI: path and query) to the destination's backend, on an idle
    /// connection of the resource or a new one; `timeout` bounds connecting. The
    /// connection goes back to the pool once the response's body has been read (a task
    /// waits for that).
    pub async fn send(
        self: &Arc<Self>,
        to: &Destination<'_>,
        request: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<http::Response<Incoming>> {
        let (response, lease) = self.send_leased(to, request, timeout).await?;
        lease.release_when_ready();
        Ok(response)
    }

    /// [`send`](Self::send), with the connection handed to the caller until it has read
    /// the response's body: then [`Lease::release`] puts it back without a task.
    pub async fn send_leased(
        self: &Arc<Self>,
        to: &Destination<'_>,
        mut request: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<(http::Response<Incoming>, Lease)> {
        let origin = Origin { address: to.address.to_string(), ca_pem: to.ca_pem.map(str::to_string) };
        while let Some(mut sender) = self.take(to.resource, &origin) {
            let again = idempotent(request.method()).then(|| copy(&request));
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, self.lease(to.resource, origin, sender))),
                Err(mut e) => match (e.take_message(), again) {
                    // Not written: the backend closed this idle connection; another.
                    (Some(unsent), _) => {
                        tracing::debug!(resource = to.resource, error = %e.error(), "idle backend connection unusable");
                        request = unsent;
                    }
                    // Written, and the connection closed without a response (the
                    // backend's idle close crossed it): an idempotent request goes
                    // once more, on a new connection.
                    (None, Some(copy)) => {
                        tracing::debug!(resource = to.resource, error = %e.error(), "retrying on a new connection");
                        request = copy;
                        break;
                    }
                    (None, None) => return Err(backend_error(to.base, e.into_error())),
                },
            }
        }
        let mut sender = upstream::connect(to.base, to.ca_pem, timeout).await?;
        let response = sender.send_request(request).await.map_err(|e| backend_error(to.base, e))?;
        Ok((response, self.lease(to.resource, origin, sender)))
    }

    fn lease(self: &Arc<Self>, resource: &str, origin: Origin, sender: Sender) -> Lease {
        Lease { pool: self.clone(), resource: resource.to_string(), origin, sender }
    }

    /// An idle connection of `resource` to `origin` that is still open, if any.
    fn take(&self, resource: &str, origin: &Origin) -> Option<Sender> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots.get_mut(resource)?;
        if slot.origin != *origin {
            slots.remove(resource);
            return None;
        }
        while let Some(idle) = slot.idle.pop() {
            if idle.since.elapsed() < self.idle_timeout && idle.sender.is_ready() {
                return Some(idle.sender);
            }
        }
        None
    }

    fn put(&self, resource: String, origin: Origin, sender: Sender) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots.entry(resource).or_insert_with(|| Slot { origin: origin.clone(), idle: Vec::new() });
        if slot.origin != origin {
            // The resource changed while this request ran: the old backend's
            // connections go.
            *slot = Slot { origin, idle: Vec::new() };
        }
        let (timeout, now) = (self.idle_timeout, Instant::now());
        slot.idle.retain(|i| now.duration_since(i.since) < timeout && !i.sender.is_closed());
        if slot.idle.len() < self.max_idle {
            slot.idle.push(Idle { sender, since: now });
        }
    }

    /// Idle connections kept for `resource` (tests).
    pub fn idle(&self, resource: &str) -> usize {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.get(resource).map_or(0, |s| s.idle.len())
    }
}

/// A backend connection lent to one request until its response has been read. Dropped
/// without being released, the connection closes.
pub struct Lease {
    pool: Arc<Pool>,
    resource: String,
    origin: Origin,
    sender: Sender,
}

impl Lease {
    /// The response's body has been read to the end: the connection goes back to the
    /// pool now if hyper already says it is ready, else once it does.
    pub fn release(self) {
        if self.sender.is_ready() {
            if self.pool.max_idle > 0 {
                self.pool.put(self.resource, self.origin, self.sender);
            }
        } else {
            self.release_when_ready();
        }
    }

    /// Once the response has been read to the end (by whoever reads it), the connection
    /// waits in the pool (unless the pool is full or the connection ended).
    pub fn release_when_ready(self) {
        let Lease { pool, resource, origin, mut sender } = self;
        if pool.max_idle == 0 {
            return;
        }
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                pool.put(resource, origin, sender);
            }
        });
    }
}

/// Methods whose request may be sent twice with the effect of once (RFC 9110 §9.2.2).
fn idempotent(method: &http::Method) -> bool {
    use http::Method;
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE)
}

fn copy(request: &http::Request<Full<Bytes>>) -> http::Request<Full<Bytes>> {
    let mut again = http::Request::new(request.body().clone());
    *again.method_mut() = request.method().clone();
    *again.uri_mut() = request.uri().clone();
    *again.headers_mut() = request.headers().clone();
    again
}

fn backend_error(base: &Base, e: hyper::Error) -> Error {
    Error::Backend { addr: base.addr(), detail: e.to_string() }
}

#[cfg(test)]
mod tests;
