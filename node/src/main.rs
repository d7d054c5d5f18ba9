//! # portcullis
//!
//! The one binary: a gateway node (`run`), the local playground (`dev`) and the
//! operator CLI on top of the admin API.
//!
//! ## Layout
//! - `config`: node TOML + environment overrides.
//! - `run`: one node process (cluster node, admin API, ops port).
//! - `ops`: /healthz, /readyz, /metrics.
//! - `console`: the web console (HTTPS pages calling the admin service in-process).
//! - `dev`: the playground.
//! - `cli`: client subcommands (cluster, resource, policy, approvals, sessions).

mod admin_auth;
mod asciicast;
mod cli;
mod config;
mod console;
mod dev;
mod door_store;
mod error;
mod ops;
mod records;
mod run;
mod ssh_issuer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Many small, short-lived allocations per request and per statement: glibc's malloc
/// spent a quarter of the HTTP door's CPU in them (BENCHMARKS.md, session 13).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "portcullis", version, about = "Clustered access gateway for AI agents and people")]
struct Cli {
    #[command(flatten)]
    globals: cli::Globals,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run one gateway node.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// TEST ONLY: keep serving without the quorum lease (the chaos harness's planted
        /// fault). Refused unless PORTCULLIS_I_UNDERSTAND_UNSAFE_NO_LEASE=yes.
        #[arg(long, hide = true)]
        unsafe_no_lease: bool,
    },
    /// Start a local playground cluster.
    Dev(dev::DevArgs),
    /// Cluster membership and status.
    #[command(subcommand)]
    Cluster(cli::ClusterCmd),
    /// Backends the gateway guards.
    #[command(subcommand)]
    Resource(cli::ResourceCmd),
    /// Policies.
    #[command(subcommand)]
    Policy(cli::PolicyCmd),
    /// Held statements waiting for a human.
    #[command(subcommand)]
    Approvals(cli::ApprovalsCmd),
    /// The session index and recordings.
    #[command(subcommand)]
    Sessions(cli::SessionsCmd),
    /// Sign in at the organisation's OIDC provider (device flow) and cache the token.
    Login(cli::LoginArgs),
    /// Write a consistent backup of the replicated state to a file (admin).
    Backup(cli::BackupArgs),
    /// Restore a backup into a new, empty cluster: all of it or nothing (admin).
    Restore(cli::RestoreArgs),
    /// SSH with a certificate of the cluster's SSH CA instead of a token.
    #[command(subcommand)]
    Ssh(cli::SshCmd),
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn,sled=warn,h2=warn,tower=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn main() -> ExitCode {
    let args = Cli::parse();
    // One crypto provider in the whole binary.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let g = &args.globals;
        let result = match args.command {
            Cmd::Run { config, unsafe_no_lease } => {
                init_logging();
                run::run(&config, unsafe_no_lease).await.map_err(|e| (e.exit_code(), e.to_string()))
            }
            Cmd::Dev(d) => {
                init_logging();
                dev::dev(d).await.map_err(|e| (e.exit_code(), e.to_string()))
            }
            Cmd::Cluster(c) => cli::cluster(c, g).await.map_err(|e| (e.exit_code(), e.to_string())),
            Cmd::Resource(c) => cli::resource(c, g).await.map_err(|e| (e.exit_code(), e.to_string())),
            Cmd::Policy(c) => cli::policy(c, g).await.map_err(|e| (e.exit_code(), e.to_string())),
            Cmd::Approvals(c) => cli::approvals(c, g).await.map_err(|e| (e.exit_code(), e.to_string())),
            Cmd::Sessions(c) => cli::sessions(c, g).await.map_err(|e| (e.exit_code(), e.to_string())),
            Cmd::Login(a) => cli::login(a, g).await.map_err(|e| (e.exit_code(), e.to_string())),
            Cmd::Backup(a) => cli::backup(a, g).await.map_err(|e| (e.exit_code(), e.to_string())),
            Cmd::Restore(a) => cli::restore(a, g).await.map_err(|e| (e.exit_code(), e.to_string())),
            Cmd::Ssh(c) => cli::ssh(c, g).await.map_err(|e| (e.exit_code(), e.to_string())),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err((code, message)) => {
                eprintln!("error: {message}");
                ExitCode::from(code)
            }
        }
    })
}
