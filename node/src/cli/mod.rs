//! The operator CLI: client subcommands on top of the admin API (DESIGN §6).
//!
//! Each command connects to one node with [`AdminClient`], makes one or a few calls and
//! prints either an aligned table or, with `--json`, JSON. Failures come back as a
//! [`CliError`] that carries the process exit code: 2 for usage problems (bad file,
//! missing endpoint), 1 when the cluster refused or failed the operation.
//!
//! ## Layout
//! - [`cluster`], [`resource`], [`policy`], [`approvals`], [`sessions`]: one file per
//!   command group, each with its clap subcommand enum and its output.
//! - `backup`: `portcullis backup` / `restore` (files checked on both sides).
//! - `ssh`: `portcullis ssh login` (a key pair and a certificate of the cluster's SSH CA).
//! - [`login`]: `portcullis login` (device flow) and the token cache the other commands
//!   fall back on when no `--token` is given.
//! - `files`: resource and policy files (YAML or JSON).
//! - `time`: `--since` parsing and timestamp display.
//! - `output`: tables and writing to stdout.
//! - `error`: [`CliError`].

mod approvals;
mod backup;
mod cluster;
mod error;
mod files;
mod login;
mod output;
mod policy;
mod replay;
mod resource;
mod sessions;
mod ssh;
mod time;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use portcullis_api::AdminClient;

pub use approvals::{ApprovalsCmd, approvals};
pub use backup::{BackupArgs, RestoreArgs, backup, restore};
pub use cluster::{ClusterCmd, cluster};
pub use error::CliError;
pub use files::HttpCredential;
pub use login::{LoginArgs, login};
pub use policy::{PolicyCmd, policy};
pub use resource::{ResourceCmd, resource};
pub use sessions::{SessionsCmd, sessions};
pub use ssh::{SshCmd, ssh};

/// Flags every client subcommand understands.
#[derive(clap::Args, Debug, Clone)]
pub struct Globals {
    /// Admin API of a node, e.g. https://127.0.0.1:7101.
    #[arg(long, env = "PORTCULLIS_ENDPOINT", global = true)]
    pub endpoint: Option<String>,
    /// Bearer token sent with every call; without it, the one cached by `portcullis login`.
    #[arg(long, env = "PORTCULLIS_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of the CA that issued the nodes' certificates (`login`: also trusted for the provider).
    #[arg(long, env = "PORTCULLIS_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Connect to the node named by `--endpoint`, checking the flags first so a usage
/// problem is reported as one (exit 2) rather than as a failed connection.
async fn connect(g: &Globals) -> Result<AdminClient, CliError> {
    let endpoint = g.endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty()).ok_or(CliError::NoEndpoint)?;
    let ca = match &g.ca {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| CliError::Ca { path: path.display().to_string(), detail: e.to_string() })?,
        ),
        None if endpoint.starts_with("https://") => {
            return Err(CliError::NoCa { endpoint: endpoint.to_string() });
        }
        None => None,
    };
    let token = match &g.token {
        Some(token) => Some(token.clone()),
        None => login::cached_token()?,
    };
    Ok(AdminClient::connect(endpoint, ca.as_deref(), token).await?)
}
