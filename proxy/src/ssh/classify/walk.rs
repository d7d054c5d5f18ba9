//! Walks brush-parser's syntax tree and collects programs and written files. Script
//! text found inside the line (substitutions, `sh -c` strings) comes back through
//! [`Walker::script`], one level deeper.

use brush_parser::ast;

use super::word::Arg;
use super::{CommandLine, MAX_DEPTH, MAX_PROGRAMS, Opaque, Program};

/// How many openers of nesting (`(`, `${`, a `{` word, backticks, and the keywords that
/// open a compound command) one parsed text may hold. The parser and this walker recurse
/// once per level, and a stack overflow aborts the process, so the bound is on a count
/// that can only overstate the depth (quotes are ignored). A test checks that 1.5 times
/// this much nesting, in every form, parses on a 2 MiB stack (tokio's worker size) in a
/// debug build; a release build needs several times less.
pub(super) const MAX_OPENERS: usize = 64;

/// How many `(` one parsed text may hold, quoted or not. On unbalanced parentheses
/// brush-parser backtracks exponentially (twice the time per `(`; found by the fuzz
/// target), so this bounds the parse time; it still allows ten `$(...)` in a line.
pub(super) const MAX_PARENS: usize = 20;

/// How many texts may be parsed for one line (each substitution, script string and
/// expansion holding one is one), so work stays proportional to the line.
const MAX_PARSES: usize = 512;

#[derive(Default)]
pub(super) struct Walker {
    line: CommandLine,
    /// Texts currently being read (script text and expansions holding script text),
    /// the line itself included.
    depth: usize,
    parses: usize,
}

impl Walker {
    pub(super) fn finish(self) -> CommandLine {
        self.line
    }

    /// Keeps the first reason: later ones are usually its consequences.
    pub(super) fn opaque(&mut self, why: Opaque) {
        if self.line.opaque.is_none() {
            self.line.opaque = Some(why);
        }
    }

    /// Whether walking on can still change the verdict or the audit record.
    fn exhausted(&self) -> bool {
        matches!(self.line.opaque, Some(Opaque::TooDeep | Opaque::TooManyPrograms | Opaque::TooNested))
    }

    pub(super) fn push_program(&mut self, path: String, args: &[Arg]) {
        if self.line.programs.len() >= MAX_PROGRAMS {
            self.opaque(Opaque::TooManyPrograms);
            return;
        }
        let name = path.rsplit('/').next().unwrap_or_default().to_owned();
        let args_known = args.iter().all(|a| a.literal.is_some() && !a.expands);
        let args = args.iter().map(Arg::text).collect();
        self.line.programs.push(Program { name, path, args, args_known });
    }

    pub(super) fn push_write(&mut self, target: String) {
        if target != "/dev/null" {
            self.line.writes.push(target);
        }
    }

    /// Parses `text` as a shell program one level deeper and walks it.
    pub(super) fn script(&mut self, text: &str) {
        if nesting_openers(text) > MAX_OPENERS || text.matches('(').count() > MAX_PARENS {
            self.opaque(Opaque::TooNested);
            return;
        }
        // `<<` without a delimiter word (then a blank and `#`, a `\r` or a form feed) sends
        // brush-parser's tokenizer into an endless, allocating loop (found by the fuzz
        // target); no command needs control characters other than tab and newline.
        if text.chars().any(|c| c.is_ascii_control() && c != '\t' && c != '\n') {
            self.opaque(Opaque::Unsupported { what: "control characters" });
            return;
        }
        if has_here_doc_without_delimiter(text) {
            self.opaque(Opaque::Unparseable { detail: "here-document without a delimiter".to_owned() });
            return;
        }
        if !self.enter() {
            return;
        }
        if let Some(program) = self.parse(text) {
            for list in &program.complete_commands {
                self.compound_list(list);
            }
        }
        self.leave();
    }

    /// Starts reading text one level deeper, unless a bound says not to.
    pub(super) fn enter(&mut self) -> bool {
        if self.exhausted() {
            return false;
        }
        if self.depth >= MAX_DEPTH {
            self.opaque(Opaque::TooDeep);
            return false;
        }
        if self.parses >= MAX_PARSES {
            self.opaque(Opaque::TooNested);
            return false;
        }
        self.parses += 1;
        self.depth += 1;
        true
    }

    pub(super) fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn parse(&mut self, text: &str) -> Option<ast::Program> {
        if has_huge_fd_number(text) {
            self.opaque(Opaque::Unparseable { detail: "file descriptor number too large".to_owned() });
            return None;
        }
        let options = parser_options();
        let source = brush_parser::SourceInfo::default();
        // brush-parser has `unwrap`s inside; a panic there is hostile input, not a bug here.
        // (Known ones are kept away from it first: the fuzz target counts a caught panic.)
        let parsed =
            std::panic::catch_unwind(|| brush_parser::Parser::new(text.as_bytes(), &options, &source).parse_program());
        match parsed {
            Ok(Ok(program)) => Some(program),
            Ok(Err(e)) => {
                self.opaque(Opaque::Unparseable { detail: e.to_string() });
                None
            }
            Err(_) => {
                self.opaque(Opaque::Unparseable { detail: "the shell parser failed".to_owned() });
                None
            }
        }
    }

    fn compound_list(&mut self, list: &ast::CompoundList) {
        for ast::CompoundListItem(and_or, _) in &list.0 {
            self.pipeline(&and_or.first);
            for next in &and_or.additional {
                let (ast::AndOr::And(p) | ast::AndOr::Or(p)) = next;
                self.pipeline(p);
            }
        }
    }

    fn pipeline(&mut self, pipeline: &ast::Pipeline) {
        for command in &pipeline.seq {
            if self.exhausted() {
                return;
            }
            match command {
                ast::Command::Simple(simple) => self.simple(simple),
                ast::Command::Compound(compound, redirects) => {
                    self.compound(compound);
                    self.redirect_list(redirects.as_ref());
                }
                ast::Command::Function(function) => {
                    self.compound(&function.body.0);
                    self.redirect_list(function.body.1.as_ref());
                }
                ast::Command::ExtendedTest(test) => self.extended_test(&test.expr),
            }
        }
    }

    fn compound(&mut self, compound: &ast::CompoundCommand) {
        use ast::CompoundCommand as C;
        match compound {
            C::Arithmetic(a) => self.embedded(&a.expr.value),
            C::ArithmeticForClause(f) => {
                for e in [&f.initializer, &f.condition, &f.updater].into_iter().flatten() {
                    self.embedded(&e.value);
                }
                self.compound_list(&f.body.list);
            }
            C::BraceGroup(b) => self.compound_list(&b.list),
            C::Subshell(s) => self.compound_list(&s.list),
            C::ForClause(f) => {
                for w in f.values.iter().flatten() {
                    self.word(&w.value);
                }
                self.compound_list(&f.body.list);
            }
            C::CaseClause(c) => {
                self.word(&c.value.value);
                for item in &c.cases {
                    for w in &item.patterns {
                        self.word(&w.value);
                    }
                    if let Some(list) = &item.cmd {
                        self.compound_list(list);
                    }
                }
            }
            C::IfClause(i) => {
                self.compound_list(&i.condition);
                self.compound_list(&i.then);
                for clause in i.elses.iter().flatten() {
                    if let Some(condition) = &clause.condition {
                        self.compound_list(condition);
                    }
                    self.compound_list(&clause.body);
                }
            }
            C::WhileClause(w) | C::UntilClause(w) => {
                self.compound_list(&w.0);
                self.compound_list(&w.1.list);
            }
        }
    }

    fn extended_test(&mut self, expr: &ast::ExtendedTestExpr) {
        use ast::ExtendedTestExpr as E;
        match expr {
            E::And(a, b) | E::Or(a, b) => {
                self.extended_test(a);
                self.extended_test(b);
            }
            E::Not(a) | E::Parenthesized(a) => self.extended_test(a),
            E::UnaryTest(_, w) => {
                self.word(&w.value);
            }
            E::BinaryTest(_, a, b) => {
                self.word(&a.value);
                self.word(&b.value);
            }
        }
    }

    fn simple(&mut self, simple: &ast::SimpleCommand) {
        let mut words = Vec::new();
        let items = simple.prefix.iter().flat_map(|p| &p.0);
        let items = items.chain(simple.suffix.iter().flat_map(|s| &s.0));
        // The prefix holds no plain words, so the command word goes first either way.
        if let Some(w) = &simple.word_or_name {
            words.push(self.word(&w.value));
        }
        for item in items {
            use ast::CommandPrefixOrSuffixItem as I;
            match item {
                I::IoRedirect(r) => self.redirect(r),
                I::Word(w) => words.push(self.word(&w.value)),
                I::AssignmentWord(assignment, w) => {
                    self.assignment(assignment);
                    // `declare x=1`, `export PATH=...`: still an argument of the command.
                    if simple.word_or_name.is_some() {
                        words.push(self.word_without_substitutions(&w.value));
                    }
                }
                I::ProcessSubstitution(_, subshell) => self.compound_list(&subshell.list),
            }
        }
        if !words.is_empty() {
            self.invocation(&words);
        }
    }

    fn assignment(&mut self, assignment: &ast::Assignment) {
        if let ast::AssignmentName::ArrayElementName(_, index) = &assignment.name {
            self.embedded(index);
        }
        match &assignment.value {
            ast::AssignmentValue::Scalar(w) => {
                self.word(&w.value);
            }
            ast::AssignmentValue::Array(items) => {
                for (key, value) in items {
                    if let Some(key) = key {
                        self.word(&key.value);
                    }
                    self.word(&value.value);
                }
            }
        }
    }

    fn redirect_list(&mut self, list: Option<&ast::RedirectList>) {
        for r in list.iter().flat_map(|l| &l.0) {
            self.redirect(r);
        }
    }

    fn redirect(&mut self, redirect: &ast::IoRedirect) {
        use ast::{IoFileRedirectKind as K, IoFileRedirectTarget as T};
        match redirect {
            ast::IoRedirect::File(_, kind, target) => {
                let writes = matches!(kind, K::Write | K::Append | K::ReadAndWrite | K::Clobber);
                match target {
                    T::Filename(w) => {
                        let arg = self.word(&w.value);
                        if writes {
                            self.push_write(arg.text());
                        }
                    }
                    // `>&word` with a word that is not a descriptor writes stdout and
                    // stderr to the file `word`.
                    T::Duplicate(w) => {
                        let arg = self.word(&w.value);
                        let text = arg.text();
                        let is_fd = text == "-" || text.trim_end_matches('-').bytes().all(|b| b.is_ascii_digit());
                        if matches!(kind, K::DuplicateOutput) && !(arg.literal.is_some() && is_fd) {
                            self.push_write(text);
                        }
                    }
                    T::Fd(_) => {}
                    T::ProcessSubstitution(_, subshell) => self.compound_list(&subshell.list),
                }
            }
            ast::IoRedirect::OutputAndError(w, _) => {
                let arg = self.word(&w.value);
                self.push_write(arg.text());
            }
            ast::IoRedirect::HereString(_, w) => {
                self.word(&w.value);
            }
            ast::IoRedirect::HereDocument(_, doc) => {
                // In a here-document quotes are literal, so `'$(cmd)'` still runs `cmd`;
                // the word parser would read those quotes, so such bodies are not read.
                let body = &doc.doc.value;
                if doc.requires_expansion && (body.contains("$(") || body.contains('`')) {
                    self.opaque(Opaque::Unsupported { what: "command substitution in a here-document" });
                }
            }
        }
    }
}

pub(super) fn parser_options() -> brush_parser::ParserOptions {
    // Bash is what most hosts run for SSH; its extensions only add syntax, so what a
    // POSIX `sh` would run is seen too.
    brush_parser::ParserOptions::default()
}

/// `99999999999>file`: brush-parser reads a descriptor number into an `i32` with
/// `unwrap`. Ten digits are already past any descriptor a shell opens.
fn has_huge_fd_number(text: &str) -> bool {
    let mut digits = 0;
    for b in text.bytes() {
        if b.is_ascii_digit() {
            digits += 1;
        } else {
            if digits >= 10 && (b == b'<' || b == b'>') {
                return true;
            }
            digits = 0;
        }
    }
    false
}

/// `<<` or `<<-` (not `<<<`) not followed, after blanks, by the start of a delimiter
/// word. Quotes are ignored: a quoted `<< #` is refused too.
fn has_here_doc_without_delimiter(text: &str) -> bool {
    let mut rest = text;
    while let Some(at) = rest.find("<<") {
        let after = rest.get(at + 2..).unwrap_or_default();
        if let Some(more) = after.strip_prefix('<') {
            rest = more;
            continue;
        }
        let word = after.strip_prefix('-').unwrap_or(after).trim_start_matches([' ', '\t']);
        if word.is_empty() || word.starts_with(['#', '\n']) {
            return true;
        }
        rest = after;
    }
    false
}

/// An upper bound on how deeply `text` can nest, quoted or not. A `{` counts after `$`
/// and where it can be a word of its own (a brace group), not in `{"json":1}`.
pub(super) fn nesting_openers(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut count = 0;
    for (i, b) in bytes.iter().enumerate() {
        count += usize::from(match b {
            b'(' | b'`' => true,
            b'{' => {
                let before = i.checked_sub(1).and_then(|j| bytes.get(j));
                let after = bytes.get(i + 1);
                before == Some(&b'$') || after.is_none_or(|a| a.is_ascii_whitespace() || b"(){};&|<>".contains(a))
            }
            _ => false,
        });
    }
    let keywords = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| matches!(*w, "if" | "while" | "until" | "case" | "for" | "select" | "function"))
        .count();
    count + keywords
}

#[cfg(test)]
impl Walker {
    /// Parses and walks without the nesting bound, to check what the bound protects.
    pub(super) fn script_unbounded_for_test(&mut self, text: &str) {
        if let Some(program) = self.parse(text) {
            for list in &program.complete_commands {
                self.compound_list(list);
            }
        }
    }
}
