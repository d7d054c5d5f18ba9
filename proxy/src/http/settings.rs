//! The HTTP door's tunables.

use std::time::Duration;

/// How the HTTP door bounds what one client can cost.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Open connections per node.
    pub max_connections: usize,
    /// The TLS handshake and a request's head must arrive within this.
    pub header_timeout: Duration,
    /// Request headers: how many, and their bytes in all (431 past either).
    pub max_headers: usize,
    pub max_header_bytes: usize,
    /// A request body larger than this is refused with 413 (a resource may lower it
    /// with the option `max_body_bytes`).
    pub max_body_bytes: usize,
    /// A request body must have arrived whole this long after its head (408 past it).
    pub body_timeout: Duration,
    /// Request bodies up to this size are read as JSON for `match.json`; a larger one is
    /// unreadable to policy (only restricting rules match it).
    pub max_json_inspect_bytes: usize,
    /// A response body masked as a whole (JSON) is read up to this; a larger one is
    /// masked line by line instead.
    pub max_masked_json_bytes: usize,
    /// Bytes of request and response bodies kept (masked) in the records.
    pub preview_bytes: usize,
    /// Connecting to the backend, and reading a small response of declared length
    /// (read whole before it is sent).
    pub upstream_timeout: Duration,
    /// WebSocket frames and messages (fragments in all) larger than these close the
    /// connection (Close 1009), recorded; a frame is refused from its header.
    pub max_websocket_frame_bytes: u64,
    pub max_websocket_message_bytes: u64,
    /// A backend's WebSocket message that is masked on the wire (the judgement has
    /// detectors, or the resource a credential) is kept whole up to this; a larger one
    /// closes the connection (Close 1009), recorded, and is not sent.
    pub max_masked_websocket_message_bytes: u64,
    /// A WebSocket with no bytes either way for this long is closed by the gateway
    /// (Close 1001), recorded; zero: never.
    pub websocket_idle_timeout: Duration,
    /// With a base domain `gw.example`, `Host: <resource>.gw.example` also names the
    /// resource (the path is then relayed as it is); `None`: only `/r/<resource>/`.
    pub base_domain: Option<String>,
    /// Keep-alive connections to the backend kept idle per resource, and for how long
    /// (a backend that closes sooner is noticed and the connection dropped).
    pub upstream_max_idle: usize,
    pub upstream_idle_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            max_body_bytes: 10 << 20,
            body_timeout: Duration::from_secs(60),
            max_json_inspect_bytes: 1 << 20,
            max_masked_json_bytes: 16 << 20,
            preview_bytes: 4096,
            upstream_timeout: Duration::from_secs(10),
            max_websocket_frame_bytes: 16 << 20,
            max_websocket_message_bytes: 64 << 20,
            max_masked_websocket_message_bytes: 1 << 20,
            websocket_idle_timeout: Duration::from_secs(3600),
            base_domain: None,
            upstream_max_idle: 64,
            upstream_idle_timeout: Duration::from_secs(30),
        }
    }
}
