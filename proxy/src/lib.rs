//! # portcullis-proxy
//!
//! The front doors (Postgres, SSH, HTTP) and what they share. Every door walks the
//! same phases: authenticate, classify, decide, hold, audit, relay, mask, record.
//!
//! ## Layout
//! - [`gate`]: the door-independent phases, walked in this order by every door
//!   (its docs draw the flow): authenticate → classify (door) → decide → hold →
//!   audit → relay (door, with the gate's permit) → mask → record.
//! - [`identity`]: OIDC token verification (discovery, cached JWKS, claim checks).
//!   The first phase of every door and of the admin API.
//! - [`store`]: the [`store::Store`] seam to the replicated state (with an in-memory
//!   store for tests behind the `test-util` feature).
//! - [`postgres`]: the Postgres door.
//! - [`ssh`]: the SSH door.
//! - [`http`]: the HTTP door.
//! - [`policy`]: YAML policy documents and the `decide` phase: every door's request,
//!   described protocol-agnostically, gets allow / deny / review and a mask plan.
//! - [`explain`]: "what would happen": a statement, command line or HTTP request line
//!   classified by its door's own classifier and decided by policy, without running it
//!   (the web console's policy tester).
//! - [`mask`]: the `mask` phase: column and detector masking of result values.
//! - [`listen`]: the bounded accept loop every door serves its listener with.
//! - [`error`]: the crate's one error type.

pub mod error;
pub mod explain;
pub mod gate;
pub mod http;
pub mod identity;
pub mod listen;
pub mod mask;
pub mod policy;
pub mod postgres;
pub mod ssh;
pub mod store;

pub use error::{Error, Result};
