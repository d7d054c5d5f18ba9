//! Writing results: aligned tables for people, JSON for machines.
//!
//! A closed stdout (`portcullis sessions export | head`) is not an error: writers report
//! it so streaming commands can stop quietly.

use std::io::{ErrorKind, Write};

use super::CliError;

/// An aligned table: columns separated by two spaces, no trailing whitespace.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    push_row(&mut out, &widths, headers.iter().copied());
    for row in rows {
        push_row(&mut out, &widths, row.iter().map(String::as_str));
    }
    out
}

fn push_row<'a>(out: &mut String, widths: &[usize], cells: impl Iterator<Item = &'a str>) {
    let mut line = String::new();
    for (width, cell) in widths.iter().zip(cells) {
        line.push_str(cell);
        let pad = width.saturating_sub(cell.chars().count()) + 2;
        line.extend(std::iter::repeat_n(' ', pad));
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// One line for a table cell: newlines flattened, cut at `max` characters.
pub fn cell(text: &str, max: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// Write `text` (plus a newline if missing) to stdout. `Ok(false)` when the reader is gone.
pub fn write_out(text: &str) -> Result<bool, CliError> {
    let mut out = std::io::stdout().lock();
    let result = out
        .write_all(text.as_bytes())
        .and_then(|()| if text.ends_with('\n') { Ok(()) } else { out.write_all(b"\n") })
        .and_then(|()| out.flush());
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(CliError::Output(e)),
    }
}

pub fn emit(text: &str) -> Result<(), CliError> {
    write_out(text).map(|_| ())
}

pub fn emit_json(value: &serde_json::Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Output(e.into()))?;
    emit(&text)
}
