//! The detectors' patterns and replacements. Each regex is compiled once; each detector
//! first runs a cheap byte-level check so values that cannot match cost no regex at all.
//!
//! A pattern that failed to compile (impossible for these literals; a test compiles them
//! all) fails closed: the whole value is masked.

use std::sync::LazyLock;

use regex::{Captures, Regex};

use super::{COLUMN_MASK, Detector};

type Compiled = LazyLock<Result<Regex, regex::Error>>;

// `(?-u:\b)` is an ASCII word boundary: cheaper than the Unicode one and enough here.
static EMAIL: Compiled = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)([a-z0-9._%+-])[a-z0-9._%+-]*@([a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,})(?-u:\b)")
});
static CARD: Compiled = LazyLock::new(|| Regex::new(r"(?-u:\b)\d(?:[ -]?\d){12,18}(?-u:\b)"));
static SSN: Compiled = LazyLock::new(|| Regex::new(r"(?-u:\b)(\d{3})-(\d{2})-(\d{4})(?-u:\b)"));
static JWT: Compiled = LazyLock::new(|| Regex::new(r"(?-u:\b)eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"));
/// Named secrets: the name (and separator) is kept, the value masked. A quoted value
/// keeps its quotes.
static NAMED_SECRET: Compiled = LazyLock::new(|| {
    Regex::new(r#"(?i)((?:api[_-]?key|secret|token|passw(?:or)?d)["']?\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s"',;&}]+)"#)
});
/// Well-known key shapes: the vendor prefix (group 1) is kept.
static KEY_SHAPES: LazyLock<[Result<Regex, regex::Error>; 4]> = LazyLock::new(|| {
    [
        Regex::new(r"(?-u:\b)([sr]k_(?:live|test)_)[A-Za-z0-9]{8,}"),
        Regex::new(r"(?-u:\b)(AKIA)[0-9A-Z]{16}(?-u:\b)"),
        Regex::new(r"(?-u:\b)(gh[pousr]_)[A-Za-z0-9]{36}(?-u:\b)"),
        Regex::new(r"(?-u:\b)(xox[baprs]-)[A-Za-z0-9-]{10,}"),
    ]
});

/// Masks every match of `detector` in `value`; `None` when nothing changed.
pub(super) fn apply(detector: Detector, value: &str) -> Option<String> {
    let masked = match detector {
        Detector::Email => email(value)?,
        Detector::CreditCard => card(value)?,
        Detector::Ssn => ssn(value)?,
        Detector::ApiKey => api_key(value)?,
        Detector::Jwt => jwt(value)?,
    };
    (masked != value).then_some(masked)
}

/// Runs `regex` over `value` with `replace`; a regex that failed to compile masks all.
fn replace(regex: &Result<Regex, regex::Error>, value: &str, replace: impl FnMut(&Captures<'_>) -> String) -> String {
    match regex {
        Ok(regex) => regex.replace_all(value, replace).into_owned(),
        Err(_) => COLUMN_MASK.to_owned(),
    }
}

fn group<'h>(caps: &Captures<'h>, i: usize) -> &'h str {
    caps.get(i).map_or("", |m| m.as_str())
}

fn whole<'h>(caps: &Captures<'h>) -> &'h str {
    group(caps, 0)
}

fn digit_count(value: &str) -> usize {
    value.bytes().filter(u8::is_ascii_digit).count()
}

fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    haystack.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

// === email ===

fn email(value: &str) -> Option<String> {
    if !value.contains('@') {
        return None;
    }
    Some(replace(&EMAIL, value, |caps| format!("{}***@{}", group(caps, 1), group(caps, 2))))
}

// === credit cards ===

fn card(value: &str) -> Option<String> {
    if digit_count(value) < 13 {
        return None;
    }
    Some(replace(&CARD, value, |caps| mask_cards_in_run(whole(caps))))
}

/// Mask every card number inside one run of digits, spaces and dashes. The run may be
/// longer than a card (`4111 1111 1111 1111 123-45-6789`): any part of it that starts
/// and ends at a group boundary, holds 13 to 19 digits and passes Luhn is a card; the
/// longest such part from the left wins, and the search goes on after it.
fn mask_cards_in_run(text: &str) -> String {
    let bytes = text.as_bytes();
    // Byte offsets of the digits, and whether a group starts / ends at each digit.
    let digits: Vec<usize> = (0..bytes.len()).filter(|&i| bytes.get(i).is_some_and(u8::is_ascii_digit)).collect();
    let is_digit = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
    let starts_group = |at: usize| at == 0 || !is_digit(at - 1);
    let ends_group = |at: usize| !is_digit(at + 1);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut first = 0;
    while first < digits.len() {
        let found = (13..=19).rev().find_map(|n| {
            let last = first + n - 1;
            let (&start, &end) = (digits.get(first)?, digits.get(last)?);
            if !starts_group(start) || !ends_group(end) {
                return None;
            }
            let values: Vec<u8> =
                digits.get(first..=last)?.iter().filter_map(|&i| bytes.get(i)).map(|b| b - b'0').collect();
            luhn_valid(&values).then_some((start, end, last))
        });
        match found {
            Some((start, end, last)) => {
                let last4: String = digits
                    .get(last - 3..=last)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|&i| bytes.get(i).map(|b| char::from(*b)))
                    .collect();
                out.push_str(text.get(copied..start).unwrap_or_default());
                out.push_str(&format!("****-****-****-{last4}"));
                copied = end + 1;
                first = last + 1;
            }
            None => first += 1,
        }
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    out
}

/// The Luhn checksum over decimal digits (0–9 each).
pub(super) fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

// === US social security numbers ===

fn ssn(value: &str) -> Option<String> {
    if digit_count(value) < 9 || !value.contains('-') {
        return None;
    }
    Some(replace(&SSN, value, |caps| {
        let text = whole(caps);
        let (area, group_no, serial) = (group(caps, 1), group(caps, 2), group(caps, 3));
        let valid = area != "000" && area != "666" && !area.starts_with('9') && group_no != "00" && serial != "0000";
        // `1-123-45-6789` or `123-45-6789-0` are longer dashed numbers, not SSNs.
        let (start, end) = caps.get(0).map_or((0, 0), |m| (m.start(), m.end()));
        let dashed_before = value.get(..start).is_some_and(|s| s.ends_with('-'));
        let dashed_after = value.get(end..).is_some_and(|s| s.starts_with('-'));
        if valid && !dashed_before && !dashed_after { format!("***-**-{serial}") } else { text.to_owned() }
    }))
}

// === API keys and named secrets ===

fn api_key(value: &str) -> Option<String> {
    let named = (value.contains(':') || value.contains('='))
        && ["key", "secret", "token", "passw"].iter().any(|n| contains_ignore_ascii_case(value, n));
    let shaped = ["k_live_", "k_test_", "AKIA", "gh", "xox"].iter().any(|p| value.contains(p));
    if !named && !shaped {
        return None;
    }
    let mut out = value.to_owned();
    if named {
        out = replace(&NAMED_SECRET, &out, |caps| {
            let secret = group(caps, 2);
            let masked = match secret.chars().next() {
                Some(q @ ('"' | '\'')) => format!("{q}***{q}"),
                _ => COLUMN_MASK.to_owned(),
            };
            format!("{}{masked}", group(caps, 1))
        });
    }
    if shaped {
        for shape in KEY_SHAPES.iter() {
            out = replace(shape, &out, |caps| format!("{}***", group(caps, 1)));
        }
    }
    Some(out)
}

// === JWTs ===

fn jwt(value: &str) -> Option<String> {
    if !value.contains("eyJ") {
        return None;
    }
    Some(replace(&JWT, value, |_| "[jwt masked]".to_owned()))
}

#[cfg(test)]
pub(super) fn all_patterns_compile() -> bool {
    [&*EMAIL, &*CARD, &*SSN, &*JWT, &*NAMED_SECRET].iter().all(|r| r.is_ok()) && KEY_SHAPES.iter().all(|r| r.is_ok())
}
