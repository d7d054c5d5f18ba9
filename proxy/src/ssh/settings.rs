//! The SSH door's tunables (node config `[limits]` and `[ssh]` feed them).

use std::time::Duration;

/// How the SSH door bounds what one client can cost.
#[derive(Debug, Clone)]
pub struct SshSettings {
    /// The whole login (key exchange and authentication) must end within this.
    pub login_timeout: Duration,
    /// Open connections per node.
    pub max_connections: usize,
    /// Open channels per connection.
    pub max_channels: usize,
    /// Keepalive probes to a silent client, and how long one may stay silent.
    pub keepalive: Duration,
    pub inactivity_timeout: Duration,
    /// Connecting and logging in to the host.
    pub upstream_timeout: Duration,
    /// Bytes of a command's output kept (masked) in its audit record.
    pub preview_bytes: usize,
    /// Bytes a client may send to a command while it is held for approval (replayed to
    /// it once approved); past this the door stops reading until the hold ends.
    pub held_input_max: usize,
    /// Bytes of one terminal's recording (asciicast events, masked); past it a strict
    /// resource ends the channel, a fast one marks the recording truncated.
    pub recording_max_bytes: usize,
}

impl Default for SshSettings {
    fn default() -> Self {
        SshSettings {
            login_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_channels: 16,
            keepalive: Duration::from_secs(15),
            inactivity_timeout: Duration::from_secs(3600),
            upstream_timeout: Duration::from_secs(10),
            preview_bytes: 4096,
            held_input_max: 1 << 20,
            recording_max_bytes: 16 << 20,
        }
    }
}
