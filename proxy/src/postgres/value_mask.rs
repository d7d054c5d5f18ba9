//! Phase "mask" for one result value, by its column's type and wire format.
//!
//! One rule for both formats (docs/policy.md, "Masking"), so every driver can decode
//! what it gets: a masked column of a text type (`text`, `varchar`, `char`, `name`)
//! becomes `***`; of any other type (numbers, dates, JSON, types the gateway does not
//! know) it becomes NULL. Detectors read text-typed values in both formats, JSON and
//! integers too; where a detector finds something in a value that is not text, the
//! value becomes NULL (a masked text would not parse as its type).

use std::borrow::Cow;

use crate::mask::{COLUMN_MASK, MaskPlan};

/// How the gateway reads values of a column type (by Postgres type oid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// text, varchar, bpchar, name, unknown: the same bytes in both formats.
    Text,
    /// json: text in both formats.
    Json,
    /// jsonb: text, after a version byte in binary.
    Jsonb,
    /// int2, int4, int8: decimal text, big-endian in binary.
    Int,
    Other,
}

fn kind(oid: Option<u32>) -> Kind {
    match oid {
        Some(25 | 1043 | 1042 | 19 | 705) => Kind::Text,
        Some(114) => Kind::Json,
        Some(3802) => Kind::Jsonb,
        Some(20 | 21 | 23) => Kind::Int,
        _ => Kind::Other,
    }
}

/// What becomes of one value.
#[derive(Debug, PartialEq, Eq)]
pub enum Masked {
    Unchanged,
    Replaced(Option<Vec<u8>>),
}

/// Mask one non-NULL value of a column of type `oid` (None: unknown) in `binary` or
/// text format. `whole`: the column is masked whole (by name or lineage).
pub fn mask_value(value: &[u8], binary: bool, oid: Option<u32>, whole: bool, masks: &MaskPlan) -> Masked {
    let kind = kind(oid);
    if whole {
        return Masked::Replaced(match kind {
            Kind::Text => Some(COLUMN_MASK.as_bytes().to_vec()),
            _ => None,
        });
    }
    if !masks.has_detectors() {
        return Masked::Unchanged;
    }
    // The value as text, if the gateway can read it (borrowed where it already is text:
    // this runs for every value of every row).
    let text: Option<Cow<'_, str>> = match (kind, binary) {
        (_, false) | (Kind::Text | Kind::Json, true) => std::str::from_utf8(value).ok().map(Cow::Borrowed),
        (Kind::Jsonb, true) => value.split_first().and_then(|(_, t)| std::str::from_utf8(t).ok()).map(Cow::Borrowed),
        (Kind::Int, true) => int(value).map(|i| Cow::Owned(i.to_string())),
        (Kind::Other, true) => None,
    };
    let Some(found) = text.as_deref().and_then(|t| masks.detect(t)) else { return Masked::Unchanged };
    Masked::Replaced(match (kind, binary) {
        (Kind::Text | Kind::Json, _) | (Kind::Jsonb, false) => Some(found.into_bytes()),
        (Kind::Jsonb, true) => Some([&[1u8][..], found.as_bytes()].concat()),
        // A masked number or other value would not parse as its type.
        _ => None,
    })
}

/// Fields of an ErrorResponse or NoticeResponse that can quote data: the message, its
/// detail, hint, context, and the internal query.
const DATA_FIELDS: &[u8] = b"MDHWq";

/// Mask the data an ErrorResponse or NoticeResponse of a statement under `masks` can
/// carry (`invalid input syntax for type integer: "ada@example.com,123-45-6789"`,
/// `Key (email)=(ada@example.com) already exists`). Under column masks the statement
/// may touch masked data, so every quoted ("...") and parenthesized value in those
/// fields becomes `***`; the detectors run over them in any case.
pub fn mask_message_fields(fields: &mut [(u8, String)], masks: &MaskPlan) {
    if masks.is_empty() {
        return;
    }
    for (code, text) in fields.iter_mut() {
        if !DATA_FIELDS.contains(code) {
            continue;
        }
        if !masks.columns.is_empty() {
            *text = mask_quoted(text);
        }
        if let Some(found) = masks.detect(text) {
            *text = found;
        }
    }
}

/// Replace the contents of every "..." and (...) in `text` with `***`.
fn mask_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(['"', '(']) {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        let close = if tail.starts_with('"') { '"' } else { ')' };
        let open = tail.chars().next().unwrap_or('"');
        match tail.get(1..).and_then(|t| t.find(close).map(|end| (t, end))) {
            Some((inner, end)) => {
                out.push(open);
                out.push_str(COLUMN_MASK);
                out.push(close);
                rest = inner.get(end + 1..).unwrap_or_default();
            }
            None => {
                // An unclosed quote: everything after it may be data.
                out.push(open);
                out.push_str(COLUMN_MASK);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn int(value: &[u8]) -> Option<i64> {
    Some(match value.len() {
        2 => i64::from(i16::from_be_bytes(value.try_into().ok()?)),
        4 => i64::from(i32::from_be_bytes(value.try_into().ok()?)),
        8 => i64::from_be_bytes(value.try_into().ok()?),
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
