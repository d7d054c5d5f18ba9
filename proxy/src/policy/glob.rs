//! A tiny glob: `*` matches any run of characters (including none, including `.`), `?`
//! matches exactly one character, everything else matches itself. No character classes,
//! no escapes: resource, table and column names do not need them.

use std::fmt;

/// A compiled glob pattern (resource names, table names, result column names).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Glob {
    pattern: String,
    /// The pattern split into chars once, so matching never re-decodes UTF-8.
    chars: Vec<char>,
}

// === impl Glob ===

impl Glob {
    pub fn new(pattern: impl Into<String>) -> Self {
        let pattern = pattern.into();
        let chars = pattern.chars().collect();
        Glob { pattern, chars }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the pattern contains `*` or `?`.
    pub fn is_literal(&self) -> bool {
        !self.chars.iter().any(|c| matches!(c, '*' | '?'))
    }

    /// Exact match (resource names).
    pub fn matches(&self, text: &str) -> bool {
        glob_match(&self.chars, text, false)
    }

    /// Match ignoring ASCII case (SQL identifiers: tables and columns).
    pub fn matches_ignore_ascii_case(&self, text: &str) -> bool {
        glob_match(&self.chars, text, true)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// Iterative matcher with one backtrack point (the last `*`): linear in practice,
/// O(pattern × text) at worst, never recursive.
fn glob_match(pattern: &[char], text: &str, ignore_case: bool) -> bool {
    let text: Vec<char> = text.chars().collect();
    let same = |p: char, t: char| if ignore_case { p.eq_ignore_ascii_case(&t) } else { p == t };
    let (mut p, mut t) = (0usize, 0usize);
    // (index of the last `*` in the pattern, text position it currently absorbs up to)
    let mut star: Option<(usize, usize)> = None;
    while let Some(&tc) = text.get(t) {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&pc) if pc == '?' || same(pc, tc) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                // Let the last `*` absorb one more character and retry after it.
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern.get(p..).unwrap_or_default().iter().all(|&c| c == '*')
}
