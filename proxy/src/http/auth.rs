//! The caller's token, verified once per connection.
//!
//! A keep-alive client sends the same `Authorization` on every request, and checking
//! its signature (ES256 or RS256) costs more than everything else the door does for a
//! small request. So a connection remembers the last token it verified and who it
//! names, and takes the same token as that identity again until the token's `exp`
//! (without the verifier's clock-skew allowance: past `exp` it is verified afresh, and
//! refused once the allowance is over). This is what the Postgres and SSH doors do by
//! design: they authenticate a session once. Any other token is verified in full, and
//! becomes the one remembered if it is valid.

use std::future::Future;
use std::sync::Mutex;

use crate::identity::Identity;

/// The last token a connection verified.
#[derive(Default)]
pub struct LastToken {
    /// std, not tokio: held to compare or replace, never across an await.
    last: Mutex<Option<(String, Identity)>>,
}

impl LastToken {
    /// Who `token` names: the remembered identity if `token` is the token remembered
    /// and `now` (seconds since the epoch) is not past its `exp`; else what `verify`
    /// says, remembered when valid.
    pub async fn identity<E, F>(&self, token: &str, now: u64, verify: F) -> Result<Identity, E>
    where
        F: Future<Output = Result<Identity, E>>,
    {
        {
            let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((known, identity)) = last.as_ref()
                && known == token
                && now <= identity.expires_at
            {
                return Ok(identity.clone());
            }
        }
        let identity = verify.await?;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((token.to_string(), identity.clone()));
        Ok(identity)
    }
}

/// Seconds since the epoch, as token times are.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests;
