//! CPU time by process, from `/proc`, to say where a benchmark's CPU went per operation.
//!
//! On a machine where the load generator, the database and the thing under test share
//! the cores, throughput is set by CPU per operation; these numbers show whose.

use std::process::Command;

/// Clock ticks per second of `/proc/*/stat` times.
pub fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds used by `pid` itself (user + system) and by its children it has waited
/// for (a Postgres postmaster's exited backends), or None if the process is gone.
pub fn seconds(pid: u32, ticks: f64) -> Option<f64> {
    stat_times(&format!("/proc/{pid}/stat")).map(|t| t / ticks)
}

/// CPU seconds of this process's children that have been waited for (a finished pgbench).
pub fn waited_children_seconds(ticks: f64) -> f64 {
    let Some(text) = std::fs::read_to_string("/proc/self/stat").ok() else {
        return 0.0;
    };
    fields_after_comm(&text).map(|f| (field(&f, 16) + field(&f, 17)) / ticks).unwrap_or(0.0)
}

fn stat_times(path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let f = fields_after_comm(&text)?;
    // utime, stime, cutime, cstime: fields 14-17 of proc(5).
    Some(field(&f, 14) + field(&f, 15) + field(&f, 16) + field(&f, 17))
}

/// The fields after `comm` (which may hold spaces), numbered from 3 like proc(5).
fn fields_after_comm(text: &str) -> Option<Vec<&str>> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    Some(rest.split_whitespace().collect())
}

fn field(after_comm: &[&str], number: usize) -> f64 {
    after_comm.get(number - 3).and_then(|s| s.parse().ok()).unwrap_or(0.0)
}
