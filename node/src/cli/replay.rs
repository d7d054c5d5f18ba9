//! `portcullis sessions replay ID [--speed X] [--out FILE]`: a recorded terminal
//! (the SSH door's `recording` events) played in this terminal, or written as an
//! asciicast v2 file that `asciinema play` accepts.

use std::io::Write;
use std::time::Duration;

use super::{CliError, Globals, connect};
use crate::asciicast::{Cast, assemble};

/// Pauses longer than this are shortened when playing (idle time at a prompt).
const MAX_PAUSE: Duration = Duration::from_secs(2);

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// The session id (`portcullis sessions list`).
    pub id: String,
    /// Play faster (2) or slower (0.5).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Write an asciicast v2 file instead of playing (`-` for stdout).
    #[arg(long)]
    pub out: Option<String>,
    /// Which of the session's terminals (0 for its first).
    #[arg(long, default_value_t = 0)]
    pub terminal: u64,
}

pub async fn replay(args: ReplayArgs, g: &Globals) -> Result<(), CliError> {
    if !(args.speed > 0.0 && args.speed.is_finite()) {
        return Err(CliError::Usage(format!("--speed must be a positive number, not {}", args.speed)));
    }
    let record = connect(g).await?.show_session(&args.id).await?;
    let Some(cast) = assemble(&record.events, args.terminal) else {
        return Err(CliError::Usage(format!(
            "session {} has no recorded terminal {} (only SSH sessions with a terminal are recorded)",
            args.id, args.terminal
        )));
    };
    match args.out.as_deref() {
        Some("-") => write_cast(&cast, &mut std::io::stdout().lock()),
        Some(path) => {
            let mut file = std::fs::File::create(path)
                .map_err(|e| CliError::File { path: path.to_string(), detail: e.to_string() })?;
            write_cast(&cast, &mut file)
        }
        None => play(&cast, args.speed).await,
    }
}

/// The asciicast v2 file: the header line, then one JSON array per event.
pub fn write_cast(cast: &Cast, out: &mut impl Write) -> Result<(), CliError> {
    out.write_all(cast.to_text().as_bytes()).map_err(CliError::Output)
}

async fn play(cast: &Cast, speed: f64) -> Result<(), CliError> {
    let mut last = 0.0;
    let mut stdout = std::io::stdout();
    for (t, code, data) in &cast.events {
        let pause = Duration::from_secs_f64(((t - last).max(0.0) / speed).min(MAX_PAUSE.as_secs_f64()));
        last = *t;
        if code != "o" {
            continue;
        }
        tokio::time::sleep(pause).await;
        stdout.write_all(data.as_bytes()).map_err(CliError::Output)?;
        stdout.flush().map_err(CliError::Output)?;
    }
    if cast.truncated {
        eprintln!("\n(the recording was cut at its bound)");
    }
    Ok(())
}
