//! Phase "mask" for `COPY ... TO STDOUT`: each row Postgres streams (one CopyData per
//! row, text or CSV format) is split into its fields, masked like result values
//! (`value_mask`), and written back in the same format, so psql's `\copy ... to` and
//! pg_dump get every column, the masked ones masked.
//!
//! [`CopyOut`] is what the classifier reads from the statement (where the rows come
//! from, the format and its options); the door resolves the output columns' names and
//! types from the backend's catalog before the COPY runs ([`CopyColumns`]). The binary
//! format is masked tuple by tuple ([`mask_binary`]), by the columns' types.

use pg_query::NodeEnum;
use pg_query::protobuf;

use super::value_mask::{Masked, mask_value};
use crate::mask::MaskPlan;

/// The wire format of the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
    Binary,
}

/// What a `COPY ... TO STDOUT` streams, as the statement says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOut {
    /// The table, as `(schema, name)`, when it copies a table (not a query).
    pub table: Option<(Option<String>, String)>,
    /// The column list, when the statement names one.
    pub columns: Vec<String>,
    /// The query's text, when it copies a query's rows (`COPY (query) TO STDOUT`).
    pub query: Option<String>,
    pub format: CopyFormat,
    pub delimiter: char,
    /// How NULL is written.
    pub null: String,
    pub quote: char,
    pub escape: char,
    pub header: bool,
}

impl CopyOut {
    /// Read a COPY statement's target and options (`None` for anything but COPY);
    /// `statement` is its text.
    pub fn of(node: &NodeEnum, statement: &str) -> Option<CopyOut> {
        let NodeEnum::CopyStmt(copy) = node else { return None };
        let table = copy.relation.as_ref().map(|r| {
            let schema = Some(r.schemaname.clone()).filter(|s| !s.is_empty());
            (schema, r.relname.clone())
        });
        let columns = copy
            .attlist
            .iter()
            .filter_map(|n| match n.node.as_ref() {
                Some(NodeEnum::String(s)) => Some(s.sval.clone()),
                _ => None,
            })
            .collect();
        let mut out = CopyOut {
            table: if copy.query.is_some() { None } else { table },
            columns,
            query: if copy.query.is_some() { inner_query(statement) } else { None },
            format: CopyFormat::Text,
            delimiter: '\t',
            null: "\\N".into(),
            quote: '"',
            escape: '"',
            header: false,
        };
        let mut delimiter = None;
        let mut null = None;
        let mut escape = None;
        for option in copy.options.iter().filter_map(|o| match o.node.as_ref() {
            Some(NodeEnum::DefElem(d)) => Some(d),
            _ => None,
        }) {
            let text = option_text(option);
            match option.defname.as_str() {
                "format" => {
                    out.format = match text.as_deref().map(str::to_ascii_lowercase).as_deref() {
                        Some("csv") => CopyFormat::Csv,
                        Some("binary") => CopyFormat::Binary,
                        _ => CopyFormat::Text,
                    }
                }
                "delimiter" => delimiter = text.and_then(|t| t.chars().next()),
                "null" => null = text,
                "quote" => out.quote = text.and_then(|t| t.chars().next()).unwrap_or('"'),
                "escape" => escape = text.and_then(|t| t.chars().next()),
                "header" => {
                    out.header =
                        !matches!(text.as_deref().map(str::to_ascii_lowercase).as_deref(), Some("false" | "off" | "0"))
                }
                _ => {}
            }
        }
        if out.format == CopyFormat::Csv {
            out.delimiter = delimiter.unwrap_or(',');
            out.null = null.unwrap_or_default();
            out.escape = escape.unwrap_or(out.quote);
        } else {
            out.delimiter = delimiter.unwrap_or('\t');
            out.null = null.unwrap_or_else(|| "\\N".into());
        }
        Some(out)
    }
}

/// A DefElem's argument as text (`format csv`, `delimiter ';'`, `header true`).
fn option_text(d: &protobuf::DefElem) -> Option<String> {
    match d.arg.as_ref().and_then(|a| a.node.as_ref()) {
        Some(NodeEnum::String(s)) => Some(s.sval.clone()),
        Some(NodeEnum::Boolean(b)) => Some(if b.boolval { "true" } else { "false" }.into()),
        Some(NodeEnum::Integer(i)) => Some(i.ival.to_string()),
        None => Some("true".into()),
        _ => None,
    }
}

/// The text of a `COPY (query) TO` statement's query: between its first parenthesis
/// and the matching one, as Postgres's own scanner reads the statement (strings,
/// comments and dollar quotes included).
fn inner_query(statement: &str) -> Option<String> {
    let tokens = pg_query::scan(statement).ok()?.tokens;
    let (open, close) = (protobuf::Token::Ascii40 as i32, protobuf::Token::Ascii41 as i32);
    let mut depth = 0usize;
    let mut start = None;
    for token in tokens {
        if token.token == open {
            if depth == 0 {
                start = Some(usize::try_from(token.end).ok()?);
            }
            depth += 1;
        } else if token.token == close {
            depth = depth.checked_sub(1)?;
            if depth == 0 {
                let end = usize::try_from(token.start).ok()?;
                return statement.get(start?..end).map(str::to_string);
            }
        }
    }
    None
}

/// The output columns of a COPY, resolved from the catalog, and how to mask them.
#[derive(Debug, Clone)]
pub struct CopyColumns {
    /// Per column: masked whole, and its type oid (None: unknown).
    pub columns: Vec<(bool, Option<u32>)>,
    /// Mask every field whole (the columns could not be resolved, e.g. `COPY (query)`
    /// of a statement that touches masked data).
    pub all: bool,
}

/// The binary format's signature, at the start of its first message.
const BINARY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Mask one CopyData message of the binary format: the header (first message only,
/// `first`), then tuples (int16 field count, then int32 length and bytes per field, -1
/// for NULL) or the trailer (-1). `None`: the message cannot be read.
pub fn mask_binary(data: &[u8], first: bool, columns: &CopyColumns, masks: &MaskPlan) -> Option<Vec<u8>> {
    let mut rest = data;
    let mut out = Vec::with_capacity(data.len());
    let take = |rest: &mut &[u8], n: usize| -> Option<Vec<u8>> {
        let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
        *rest = tail;
        Some(head.to_vec())
    };
    if first {
        let signature = take(&mut rest, BINARY_SIGNATURE.len())?;
        if signature != BINARY_SIGNATURE {
            return None;
        }
        out.extend(signature);
        let flags = take(&mut rest, 4)?;
        out.extend(flags);
        let ext_len = take(&mut rest, 4)?;
        let n = usize::try_from(i32::from_be_bytes(ext_len.as_slice().try_into().ok()?)).ok()?;
        out.extend(ext_len);
        out.extend(take(&mut rest, n)?);
    }
    while !rest.is_empty() {
        let count = i16::from_be_bytes(take(&mut rest, 2)?.as_slice().try_into().ok()?);
        out.extend(count.to_be_bytes());
        if count < 0 {
            continue; // the trailer
        }
        for i in 0..usize::try_from(count).ok()? {
            let len = i32::from_be_bytes(take(&mut rest, 4)?.as_slice().try_into().ok()?);
            if len < 0 {
                out.extend((-1i32).to_be_bytes());
                continue;
            }
            let value = take(&mut rest, usize::try_from(len).ok()?)?;
            let (whole, oid) =
                if columns.all { (true, None) } else { columns.columns.get(i).copied().unwrap_or((false, None)) };
            let masked = match mask_value(&value, true, oid, whole, masks) {
                Masked::Unchanged => Some(value),
                Masked::Replaced(v) => v,
            };
            match masked {
                Some(v) => {
                    out.extend(i32::try_from(v.len()).ok()?.to_be_bytes());
                    out.extend(v);
                }
                None => out.extend((-1i32).to_be_bytes()),
            }
        }
    }
    Some(out)
}

/// Mask one CopyData row (without its trailing newline handling: the row ends with
/// `\n`, kept). `None`: the row cannot be read (the caller masks it whole).
pub fn mask_row(row: &[u8], out: &CopyOut, columns: &CopyColumns, masks: &MaskPlan) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(row).ok()?;
    let (body, newline) = match text.strip_suffix('\n') {
        Some(b) => (b, "\n"),
        None => (text, ""),
    };
    let fields = match out.format {
        CopyFormat::Text => split_text(body, out.delimiter, &out.null),
        CopyFormat::Csv => split_csv(body, out.delimiter, out.quote, out.escape, &out.null)?,
        CopyFormat::Binary => return None,
    };
    let masked: Vec<Option<String>> = fields
        .into_iter()
        .enumerate()
        .map(|(i, field)| {
            let (whole, oid) =
                if columns.all { (true, None) } else { columns.columns.get(i).copied().unwrap_or((false, None)) };
            let value = field?;
            match mask_value(value.as_bytes(), false, oid, whole, masks) {
                Masked::Unchanged => Some(value),
                Masked::Replaced(v) => v.map(|b| String::from_utf8_lossy(&b).into_owned()),
            }
        })
        .collect();
    let line = match out.format {
        CopyFormat::Text => join_text(&masked, out.delimiter, &out.null),
        _ => join_csv(&masked, out.delimiter, out.quote, out.escape, &out.null),
    };
    Some(format!("{line}{newline}").into_bytes())
}

/// Text format: fields split on the delimiter, backslash escapes decoded, `null` is NULL.
fn split_text(line: &str, delimiter: char, null: &str) -> Vec<Option<String>> {
    line.split(delimiter)
        .map(|raw| {
            if raw == null {
                return None;
            }
            let mut out = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some('b') => out.push('\u{8}'),
                    Some('f') => out.push('\u{c}'),
                    Some('v') => out.push('\u{b}'),
                    Some(other) => out.push(other),
                    None => out.push('\\'),
                }
            }
            Some(out)
        })
        .collect()
}

fn join_text(fields: &[Option<String>], delimiter: char, null: &str) -> String {
    let escaped: Vec<String> = fields
        .iter()
        .map(|f| match f {
            None => null.to_string(),
            Some(v) => {
                let mut out = String::with_capacity(v.len());
                for c in v.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        '\t' => out.push_str("\\t"),
                        c if c == delimiter => {
                            out.push('\\');
                            out.push(c);
                        }
                        c => out.push(c),
                    }
                }
                out
            }
        })
        .collect();
    escaped.join(&delimiter.to_string())
}

/// CSV: quoted fields may hold the delimiter, the quote (escaped) and newlines; an
/// unquoted field equal to `null` is NULL.
fn split_csv(line: &str, delimiter: char, quote: char, escape: char, null: &str) -> Option<Vec<Option<String>>> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut value = String::new();
        let mut quoted = false;
        if chars.peek() == Some(&quote) {
            quoted = true;
            chars.next();
            loop {
                let c = chars.next()?;
                let next = chars.peek().copied();
                if escape != quote && c == escape && (next == Some(quote) || next == Some(escape)) {
                    // `\"` or `\\` with ESCAPE '\\'.
                    value.push(chars.next()?);
                    continue;
                }
                if c == quote {
                    if escape == quote && next == Some(quote) {
                        // `""`: a quote inside the field.
                        chars.next();
                        value.push(quote);
                        continue;
                    }
                    break;
                }
                value.push(c);
            }
        }
        while let Some(&c) = chars.peek() {
            if c == delimiter {
                break;
            }
            value.push(c);
            chars.next();
        }
        fields.push(if !quoted && value == null { None } else { Some(value) });
        if chars.next().is_none() {
            return Some(fields);
        }
    }
}

fn join_csv(fields: &[Option<String>], delimiter: char, quote: char, escape: char, null: &str) -> String {
    let written: Vec<String> = fields
        .iter()
        .map(|f| match f {
            None => null.to_string(),
            Some(v) => {
                let needs = v.is_empty() && null.is_empty() || v.contains([delimiter, quote, '\n', '\r']) || v == null;
                if !needs {
                    return v.clone();
                }
                let mut out = String::with_capacity(v.len() + 2);
                out.push(quote);
                for c in v.chars() {
                    if c == quote || (c == escape && escape != quote) {
                        out.push(escape);
                    }
                    out.push(c);
                }
                out.push(quote);
                out
            }
        })
        .collect();
    written.join(&delimiter.to_string())
}

#[cfg(test)]
mod tests;
