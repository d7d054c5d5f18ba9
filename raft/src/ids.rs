//! Random identifiers for request ids, approvals and sessions.

use ring::rand::{SecureRandom, SystemRandom};

/// 16 random bytes as 32 hex characters.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    // SystemRandom reads the OS generator; if that ever fails we still want a unique
    // id rather than a panic, so fall back to time + counter.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let t = crate::model::now_millis();
        for (slot, b) in bytes.iter_mut().zip(t.to_be_bytes().into_iter().chain(n.to_be_bytes())) {
            *slot = b;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
