//! One shell word: its value after quote removal when that is known before run time,
//! and the script text hidden in it (`$(...)`, backticks, `${x:-$(...)}`, `$((...))`).

use brush_parser::word::{WordPiece, WordPieceWithSource};

use super::Opaque;
use super::walk::{Walker, parser_options};

/// A word of a simple command.
pub(super) struct Arg {
    /// As written.
    pub(super) raw: String,
    /// After quote removal; `None` when expansions make it known only at run time.
    pub(super) literal: Option<String>,
    /// Unquoted glob or brace-expansion characters: the shell may turn the word into
    /// other words.
    pub(super) expands: bool,
}

impl Arg {
    /// The value for the audit record: literal where known, as written otherwise.
    pub(super) fn text(&self) -> String {
        self.literal.clone().unwrap_or_else(|| self.raw.clone())
    }
}

impl Walker {
    /// Reads a word and walks the script text inside it.
    pub(super) fn word(&mut self, raw: &str) -> Arg {
        self.read_word(raw, true)
    }

    /// Reads a word whose script text has already been walked.
    pub(super) fn word_without_substitutions(&mut self, raw: &str) -> Arg {
        self.read_word(raw, false)
    }

    fn read_word(&mut self, raw: &str, walk: bool) -> Arg {
        let mut arg = Arg { raw: raw.to_owned(), literal: Some(String::new()), expands: false };
        match parse_word(raw) {
            Some(pieces) => self.pieces(raw, &pieces, false, walk, &mut arg),
            None => {
                arg.literal = None;
                self.opaque(Opaque::Unparseable { detail: format!("word {raw:?}") });
            }
        }
        arg
    }

    /// Walks the script text in text that the shell expands like an unquoted word before
    /// using it (`$((...))` bodies, `${...}` operands, array indices).
    pub(super) fn embedded(&mut self, text: &str) {
        if !["$(", "`", "<(", ">("].iter().any(|s| text.contains(s)) {
            return;
        }
        if !self.enter() {
            return;
        }
        match parse_word(text) {
            Some(pieces) => {
                let mut ignored = Arg { raw: String::new(), literal: None, expands: false };
                self.pieces(text, &pieces, false, true, &mut ignored);
            }
            None => self.opaque(Opaque::Unparseable { detail: format!("expansion {text:?}") }),
        }
        self.leave();
    }

    fn pieces(&mut self, raw: &str, pieces: &[WordPieceWithSource], quoted: bool, walk: bool, arg: &mut Arg) {
        for piece in pieces {
            let push = |arg: &mut Arg, s: &str| {
                if let Some(literal) = &mut arg.literal {
                    literal.push_str(s);
                }
            };
            match &piece.piece {
                WordPiece::Text(s) => {
                    if !quoted && s.contains(['*', '?', '[', '{', '(']) {
                        arg.expands = true;
                    }
                    push(arg, s);
                }
                WordPiece::SingleQuotedText(s) => push(arg, s),
                WordPiece::AnsiCQuotedText(s) => {
                    // Escapes such as `\x72` could spell any name; decoding them is not
                    // worth a difference from bash.
                    if s.contains('\\') {
                        arg.literal = None;
                    } else {
                        push(arg, s);
                    }
                }
                WordPiece::DoubleQuotedSequence(inner) => self.pieces(raw, inner, true, walk, arg),
                // `$"..."` may be translated by the host's locale.
                WordPiece::GettextDoubleQuotedSequence(inner) => {
                    self.pieces(raw, inner, true, walk, arg);
                    arg.literal = None;
                }
                WordPiece::TildePrefix(s) => push(arg, &format!("~{s}")),
                WordPiece::EscapeSequence(s) => push(arg, &unescape(s, quoted)),
                WordPiece::ParameterExpansion(_) => {
                    arg.literal = None;
                    if walk {
                        match raw.get(piece.start_index..piece.end_index) {
                            Some(source) => self.embedded(parameter_body(source)),
                            None => self.opaque(Opaque::Unparseable { detail: format!("word {raw:?}") }),
                        }
                    }
                }
                WordPiece::CommandSubstitution(script) | WordPiece::BackquotedCommandSubstitution(script) => {
                    arg.literal = None;
                    if walk {
                        self.script(script);
                    }
                }
                WordPiece::ArithmeticExpression(expr) => {
                    arg.literal = None;
                    if walk {
                        self.embedded(&expr.value);
                    }
                }
            }
        }
    }
}

fn parse_word(raw: &str) -> Option<Vec<WordPieceWithSource>> {
    let options = parser_options();
    // As for the program parser: a panic inside brush-parser is hostile input.
    std::panic::catch_unwind(|| brush_parser::word::parse(raw, &options)).ok()?.ok()
}

/// `${name...}` without its braces; `$name` as is.
fn parameter_body(source: &str) -> &str {
    source.strip_prefix("${").and_then(|s| s.strip_suffix('}')).unwrap_or(source)
}

/// Quote removal of one backslash escape. Unquoted, a backslash quotes the next
/// character (and a backslash-newline disappears); in double quotes only before
/// `$`, `` ` ``, `"`, `\` and newline.
fn unescape(sequence: &str, quoted: bool) -> String {
    let Some(rest) = sequence.strip_prefix('\\') else { return sequence.to_owned() };
    if rest == "\n" {
        return String::new();
    }
    if !quoted || rest.starts_with(['$', '`', '"', '\\']) { rest.to_owned() } else { sequence.to_owned() }
}
