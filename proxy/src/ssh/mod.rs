//! The SSH door: OpenSSH clients through the gateway, a decision per command.
//!
//! - [`door`] accepts connections; [`connection`] is the russh handler: it logs the
//!   client in ([`login`]: a token as password or keyboard-interactive answer, or a
//!   certificate of the cluster CA, [`certs`], [`authority`]) and hands every channel
//!   request to its own task, never awaiting anything slow in a callback (one bounded
//!   exception: a remote forward, a global request russh answers when its callback
//!   returns; see [`forward`]).
//! - [`channel`] walks one request through the gate's phases: classify ([`classify`]:
//!   an `exec` line is read the way a POSIX/bash shell reads it, every program judged
//!   as if it were run alone), decide, hold ([`client`] tells the client on stderr),
//!   audit, relay to the host ([`upstream`], its key pinned by the resource), mask
//!   ([`output`]), record ([`recording`] for terminals, [`sftp`] for file transfers).
//! - [`forward`] decides every kind of forwarding (local, remote, agent, X11);
//!   [`inbound`] serves the channels the host opens back, only as granted.

pub mod classify;

pub mod authority;
pub mod certs;
pub mod channel;
pub mod client;
pub mod connection;
pub mod door;
pub mod forward;
pub mod inbound;
pub mod login;
pub mod output;
pub mod recording;
pub mod settings;
pub mod sftp;
pub mod upstream;

pub use door::{SshDoor, serve};
pub use settings::SshSettings;
