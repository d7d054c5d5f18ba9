//! Best-effort source positions for errors found after deserialization: a line scan that
//! finds where each block-style rule (`- ` item under `rules:`) starts and ends, and then a
//! key path or value inside it. Flow-style rules fall back to the `rules:` line.

/// 1-based line and column.
pub(super) type Position = (usize, usize);

pub(super) struct SourceMap<'a> {
    lines: Vec<&'a str>,
    /// 0-based line of the top-level `rules:` key.
    rules_key: Option<usize>,
    /// 0-based first line of each rule item, in order.
    rule_starts: Vec<usize>,
    /// 0-based line just past the last rule.
    rules_end: usize,
}

// === impl SourceMap ===

impl<'a> SourceMap<'a> {
    pub(super) fn new(source: &'a str) -> Self {
        let lines: Vec<&str> = source.lines().collect();
        let rules_key = lines.iter().position(|l| indent(l) == 0 && key_column(l, "rules").is_some());
        let mut rule_starts = Vec::new();
        let mut rules_end = lines.len();
        if let Some(key) = rules_key {
            let mut item_indent: Option<usize> = None;
            for (i, line) in lines.iter().enumerate().skip(key + 1) {
                let trimmed = line.trim_start();
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                let is_item = trimmed == "-" || trimmed.starts_with("- ");
                let at = *item_indent.get_or_insert(indent(line));
                if indent(line) < at || (indent(line) == at && !is_item) {
                    rules_end = i;
                    break;
                }
                if indent(line) == at {
                    rule_starts.push(i);
                }
            }
        }
        SourceMap { lines, rules_key, rule_starts, rules_end }
    }

    /// A top-level key (`name:`), else line 1.
    pub(super) fn doc_key(&self, key: &str) -> Position {
        self.lines
            .iter()
            .enumerate()
            .find_map(|(i, l)| if indent(l) == 0 { key_column(l, key).map(|c| (i + 1, c)) } else { None })
            .unwrap_or((1, 1))
    }

    /// Inside rule `index`: follow `path` (each key searched from the previous one's line),
    /// then, if given, the first later occurrence of the value `needle`.
    pub(super) fn rule(&self, index: usize, path: &[&str], needle: Option<&str>) -> Position {
        let Some(&start) = self.rule_starts.get(index) else {
            return self.rules_key.map_or((1, 1), |k| (k + 1, 1));
        };
        let end = self.rule_starts.get(index + 1).copied().unwrap_or(self.rules_end);
        let first_column = self.lines.get(start).map_or(1, |l| content_column(l));
        let (mut line, mut column) = (start, first_column);
        for key in path {
            let found = (line..end).find_map(|i| self.lines.get(i).and_then(|l| key_column(l, key)).map(|c| (i, c)));
            if let Some(found) = found {
                (line, column) = found;
            }
        }
        if let Some(needle) = needle {
            let found =
                (line..end).find_map(|i| self.lines.get(i).and_then(|l| token_column(l, needle)).map(|c| (i, c)));
            if let Some(found) = found {
                (line, column) = found;
            }
        }
        (line + 1, column)
    }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Column (1-based, in chars) of the first character after indentation and `- ` markers.
fn content_column(line: &str) -> usize {
    let mut rest = line.trim_start();
    while let Some(after) = rest.strip_prefix('-') {
        if !(after.is_empty() || after.starts_with(' ')) {
            break;
        }
        rest = after.trim_start();
    }
    char_column(line, line.len() - rest.len())
}

/// If `line` holds the mapping key `key` (after indentation and `- ` markers), its column.
fn key_column(line: &str, key: &str) -> Option<usize> {
    let column = content_column(line);
    let rest = line.chars().skip(column - 1).collect::<String>();
    let after = rest.strip_prefix(key)?;
    after.trim_start().starts_with(':').then_some(column)
}

/// Column of `needle` standing as its own token (not inside a longer word).
fn token_column(line: &str, needle: &str) -> Option<usize> {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    line.match_indices(needle).find_map(|(at, _)| {
        let before = line.get(..at).and_then(|s| s.chars().next_back());
        let after = line.get(at + needle.len()..).and_then(|s| s.chars().next());
        let standalone = !before.is_some_and(word) && !after.is_some_and(word);
        standalone.then(|| char_column(line, at))
    })
}

fn char_column(line: &str, byte: usize) -> usize {
    line.get(..byte).map_or(0, |s| s.chars().count()) + 1
}
