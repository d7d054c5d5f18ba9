//! `portcullis ssh login --out FILE [--known-hosts]`: exchange a token for an SSH key
//! pair and a certificate of the cluster's SSH CA.
//!
//! The key pair is made here (Ed25519) and its private half never leaves this machine:
//! only the public key goes to the admin API, which answers with a certificate naming
//! the caller and expiring with the token. The files follow OpenSSH's naming (`FILE`,
//! `FILE-cert.pub`), so `ssh -i FILE` presents the certificate on its own. The same CA
//! certifies the gateway's host key, hence the `@cert-authority` line for known_hosts.

use std::io::Write;
use std::path::{Path, PathBuf};

use portcullis_proxy::ssh::certs::{self, LineEnding};
use serde_json::json;

use super::output::{emit, emit_json};
use super::time::format_ms;
use super::{CliError, Globals, connect};

#[derive(clap::Subcommand, Debug)]
pub enum SshCmd {
    /// Exchange your token for an SSH key pair and a certificate of the cluster's SSH CA
    /// that names you and expires with the token: `ssh -i FILE <resource>@<node>`.
    Login(SshLoginArgs),
}

#[derive(clap::Args, Debug)]
pub struct SshLoginArgs {
    /// Where to write the private key (mode 0600); the certificate goes to FILE-cert.pub.
    /// Both are replaced if they exist.
    #[arg(long)]
    pub out: PathBuf,
    /// Also print the known_hosts line that trusts the gateway's host keys
    /// (`@cert-authority * ssh-ed25519 ...`) on stdout, alone (append it to a known_hosts file).
    #[arg(long)]
    pub known_hosts: bool,
}

pub async fn ssh(cmd: SshCmd, g: &Globals) -> Result<(), CliError> {
    match cmd {
        SshCmd::Login(args) => login(args, g).await,
    }
}

async fn login(args: SshLoginArgs, g: &Globals) -> Result<(), CliError> {
    let cert_path = certificate_path(&args.out)?;
    let client = connect(g).await?;
    let key = certs::generate_ed25519("portcullis ssh login").map_err(|e| CliError::Local(e.to_string()))?;
    let public = key.public_key().to_openssh().map_err(|e| CliError::Local(format!("encode public key: {e}")))?;
    let reply = client.issue_ssh_certificate(&public).await?;
    let file_err =
        |path: &Path, e: std::io::Error| CliError::File { path: path.display().to_string(), detail: e.to_string() };
    let pem = key.to_openssh(LineEnding::LF).map_err(|e| CliError::Local(format!("encode private key: {e}")))?;
    write_replacing(&args.out, pem.as_bytes(), 0o600).map_err(|e| file_err(&args.out, e))?;
    write_replacing(&cert_path, format!("{}\n", reply.certificate.trim()).as_bytes(), 0o644)
        .map_err(|e| file_err(&cert_path, e))?;
    let known_hosts = format!("@cert-authority * {}", reply.ca_public_key.trim());
    let expires = format_ms(reply.valid_before.saturating_mul(1000));
    if g.json {
        return emit_json(&json!({
            "private_key_file": args.out,
            "certificate_file": cert_path,
            "expires_at": expires,
            "known_hosts": known_hosts,
        }));
    }
    let summary = format!(
        "wrote {} (private key) and {} (certificate, valid until {expires}); use: ssh -i {} <resource>@<gateway>",
        args.out.display(),
        cert_path.display(),
        args.out.display()
    );
    if args.known_hosts {
        // stdout holds the line alone, ready for `>> ~/.ssh/known_hosts`.
        eprintln!("{summary}");
        return emit(&known_hosts);
    }
    emit(&summary)
}

/// `FILE-cert.pub`: where OpenSSH looks for the certificate of the key in `FILE`.
fn certificate_path(out: &Path) -> Result<PathBuf, CliError> {
    if out.as_os_str().is_empty() || out.is_dir() {
        return Err(CliError::Usage(format!("--out {}: give a file name for the private key", out.display())));
    }
    let mut name = out.as_os_str().to_owned();
    name.push("-cert.pub");
    Ok(PathBuf::from(name))
}

/// Write `FILE.partial` with `mode`, then rename it over `FILE`: a reader never sees a
/// half-written key, and a private key is never readable by others, not even briefly.
fn write_replacing(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&partial, path)
}
