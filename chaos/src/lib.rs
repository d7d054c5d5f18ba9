//! # portcullis-chaos
//!
//! The chaos harness is mainly a binary (`src/main.rs`); this library part holds what
//! the black-box tests share with it: a TLS connector for tokio-postgres that trusts
//! only the playground CA, and how to stop the playground's Postgres.

pub mod postgres;
pub mod tls;
