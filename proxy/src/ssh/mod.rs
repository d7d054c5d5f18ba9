//! The SSH door. For now only its classifier of `exec` command lines ([`classify`]):
//! the door itself (russh server, sessions, relaying) comes later.
//!
//! An `exec` request carries one string that the user's login shell on the host runs
//! with `-c`. The door decides over what that string runs, read the way a POSIX/bash
//! shell reads it, with every program judged as if it were run alone.

pub mod classify;

pub mod authority;
pub mod certs;
pub mod channel;
pub mod client;
pub mod connection;
pub mod door;
pub mod login;
pub mod output;
pub mod recording;
pub mod settings;
pub mod sftp;
pub mod upstream;

pub use door::{SshDoor, serve};
pub use settings::SshSettings;
