//! The Postgres door: native clients (psql, libpq, JDBC-style drivers) through the
//! gateway, one decision per statement (DESIGN §3).
//!
//! ```text
//! client ──TLS──▶ startup: authenticate (password = OIDC token, dbname = resource)
//!                 backend login with the resource's stored credentials
//!   per statement:  classify ─▶ decide ─▶ hold (review) ─▶ audit ─▶ relay ─▶ mask ─▶ record
//! ```
//!
//! - [`conn`], [`wire_check`]: framing of both sides (pgwire codecs, each client
//!   message walked with a bounds-checked cursor first); bytes stop there.
//! - [`door`]: the listener; [`settings`]: its tunables; [`cancel`]: cancel keys.
//! - [`catalog`]: which functions the backend's catalog says have side effects.
//! - [`startup`]: TLS, startup, token verification (phase "authenticate").
//! - [`backend`], [`scram`], [`backend_tls`]: logging in to the backend (optionally over TLS).
//! - [`classify`]: SQL → statements (Postgres's own parser).
//! - [`requests`]: classified statements as policy requests, and the door's own rules.
//! - [`session`]: the per-statement phases, walked through the gate (`crate::gate`).
//! - [`relay`]: backend responses to the client, masked and counted.
//! - [`reply`]: errors and notices the gateway itself sends (SQLSTATEs), and the one
//!   mapping of the gate's refusals to Postgres errors.

pub mod backend;
pub mod backend_tls;
pub mod cancel;
pub mod catalog;
pub mod classify;
pub mod conn;
pub mod copy_out;
pub mod door;
pub mod params;
pub mod relay;
pub mod reply;
pub mod requests;
pub mod scram;
pub mod session;
pub mod settings;
pub mod startup;
pub mod startup_params;
pub mod value_mask;
pub mod wire_check;

pub use door::{PgDoor, serve};
pub use settings::PgSettings;
