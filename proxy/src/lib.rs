//! # portcullis-proxy
//!
//! The front doors (Postgres, SSH, HTTP) and what they share. Every door walks the
//! same phases: authenticate, classify, decide, hold, audit, relay, mask, record.
//!
//! ## Layout
//! - [`identity`]: OIDC token verification (discovery, cached JWKS, claim checks).
//!   The first phase of every door and of the admin API.
//! - [`error`]: the crate's one error type.

pub mod error;
pub mod identity;

pub use error::{Error, Result};
