//! The playground's Postgres, as the harnesses (chaos and the black-box tests) stop it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Stop a playground Postgres at once (`pg_ctl stop -m immediate`), as the `postgres`
/// user when we are root, the way `portcullis dev` started it. Errors are ignored: it
/// may already be gone.
pub fn stop(data_dir: &Path) {
    let pg_ctl = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|rd| rd.flatten().map(|e| e.path().join("bin/pg_ctl")).find(|p| p.exists()))
        .unwrap_or_else(|| PathBuf::from("pg_ctl"));
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
        c
    } else {
        Command::new(&pg_ctl)
    };
    let _ =
        cmd.args(["stop", "-m", "immediate", "-D"]).arg(data_dir).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}
