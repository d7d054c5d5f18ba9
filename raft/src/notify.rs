//! Apply notifications: wake tasks that wait for something to be applied.
//!
//! A waiter subscribes first, then reads the state, then waits for a change. Because
//! the watch remembers that a change happened after the subscription, a decision that
//! lands between the read and the wait is never missed, and nobody polls.

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone)]
pub struct Notifier {
    applied: Arc<watch::Sender<u64>>,
    approvals: Arc<watch::Sender<u64>>,
    config: Arc<watch::Sender<u64>>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            applied: Arc::new(watch::channel(0).0),
            approvals: Arc::new(watch::channel(0).0),
            config: Arc::new(watch::channel(0).0),
        }
    }
}

impl Notifier {
    pub fn applied(&self, index: u64) {
        self.applied.send_replace(index);
    }

    pub fn approvals_changed(&self) {
        self.approvals.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Resources or policies changed (applied, restored, or a snapshot installed).
    pub fn config_changed(&self) {
        self.config.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Bumped whenever resources or policies may have changed: a reader that takes the
    /// generation BEFORE reading them may keep what it read for as long as the
    /// generation stays the same (a change landing in between bumps it after the write,
    /// so the next reader reads again).
    pub fn config_generation(&self) -> u64 {
        *self.config.borrow()
    }

    /// Last applied log index, updated after every apply batch.
    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Bumped whenever any approval was created or changed state.
    pub fn subscribe_approvals(&self) -> watch::Receiver<u64> {
        self.approvals.subscribe()
    }
}
