//! Times on the command line: `--since` in, readable timestamps out.

use std::time::{Duration, UNIX_EPOCH};

use super::CliError;

/// `--since` as milliseconds since the Unix epoch: an RFC 3339 time
/// (`2024-05-01T12:00:00Z`) or an age before `now_ms` (`90s`, `30m`, `1h`, `7d`, `1h ago`).
pub fn parse_since(text: &str, now_ms: u64) -> Result<u64, CliError> {
    let text = text.trim();
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        let ms = at.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        return Ok(u64::try_from(ms).unwrap_or(u64::MAX));
    }
    let age = text.strip_suffix("ago").map(str::trim_end).unwrap_or(text);
    if let Ok(d) = humantime::parse_duration(age) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        return Ok(now_ms.saturating_sub(ms));
    }
    Err(CliError::Usage(format!(
        "--since {text:?}: give a time like 2024-05-01T12:00:00Z or an age like 30m, 1h or 7d"
    )))
}

/// Milliseconds since the epoch as UTC RFC 3339 to the second; `-` for 0 (unset).
pub fn format_ms(ms: u64) -> String {
    if ms == 0 {
        return "-".to_string();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}
