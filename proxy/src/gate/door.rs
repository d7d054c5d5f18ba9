//! What the gate needs from a door while work is held: the protocol-specific half of
//! phase "hold".
//!
//! The rest of what differs per door stays in the door, in fixed places the gate's
//! types force: it classifies its input into policy [`Request`](crate::policy::Request)s
//! (phase "classify"), relays only with a [`Permit`](super::Permit) (phase "relay"),
//! masks what it relays with the judgement's [`MaskPlan`](crate::mask::MaskPlan)
//! (phase "mask"), and says a [`Refusal`](super::Refusal) in its protocol's words in one
//! exhaustive function.

use std::future::Future;
use std::time::Duration;

use crate::error::Result;

/// A client's work is held; what to tell it.
#[derive(Debug, Clone)]
pub struct Waiting<'a> {
    pub approval: &'a str,
    pub needed: u32,
    pub groups: &'a [String],
    pub timeout: Duration,
    /// The review rule's reason.
    pub reason: &'a str,
}

impl Waiting<'_> {
    /// One line a person can act on; doors that speak text use it as is.
    pub fn message(&self) -> String {
        format!(
            "waiting for approval {} (needs {} from [{}], up to {:?}): {}",
            self.approval,
            self.needed,
            self.groups.join(", "),
            self.timeout,
            self.reason
        )
    }

    /// The command that releases it.
    pub fn hint(&self) -> String {
        format!("approve with: portcullis approvals approve {}", self.approval)
    }
}

/// How a client gave up on held work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaveUp {
    /// It asked to cancel (psql's Ctrl-C, an SSH signal, ...).
    Canceled,
    /// Its connection ended.
    Gone,
}

/// The client side of a door, as the gate sees it during a hold.
pub trait Door: Send {
    /// Tell the client that its work waits for a human (Postgres: a NoticeResponse).
    /// An error ends the session.
    fn tell_waiting(&mut self, waiting: &Waiting<'_>) -> impl Future<Output = Result<()>> + Send;

    /// Resolves when the client gives up on the held work. Must be cancel-safe: the
    /// gate drops it when the hold ends otherwise, and anything the client sent in the
    /// meantime must stay buffered for the door's next read.
    fn gave_up(&mut self) -> impl Future<Output = GaveUp> + Send;
}
