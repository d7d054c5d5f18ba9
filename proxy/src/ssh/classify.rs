//! The `classify` phase of the SSH door for `exec` requests: which programs a command
//! line runs and which files its redirections write, read the way bash reads it
//! (`brush-parser`), without running anything.
//!
//! Every program counts, wherever the shell would start it: in pipelines and lists,
//! subshells and brace groups, `$(...)` and backticks (also inside quoted words,
//! arguments, assignments and redirect targets), process substitutions, `if`, `while`,
//! `for` and `case` conditions and bodies, function bodies, and behind wrappers that
//! run another program: `sudo`, `doas`, `env`, `nice`, `nohup`, `timeout`, `time`,
//! `exec`, `command`, `builtin`, `stdbuf`, `ionice`, `setsid`, `xargs`, `find -exec`,
//! `watch`, and shells given a script string (`sh -c`, `su -c`, `eval`), which is
//! parsed again, to a bounded depth.
//!
//! When the line cannot be fully seen, [`CommandLine::opaque`] says why, and the door
//! treats the line as the kind `unknown` (denied by default). That covers lines that do
//! not parse, a program name that is only known at run time (`$CMD`, `"$(...)"`,
//! globs, brace expansions, ANSI-C escapes), a script string that is not a literal, and
//! lines past the bounds (length, nesting, programs, re-parse depth).
//!
//! # What a command-line decision cannot see
//!
//! - **What an allowed program does.** A script file (`bash deploy.sh`, `./run`), a
//!   shell or `sudo -s` reading commands from standard input, and interpreters given
//!   code (`python -c`, `perl -e`, `ruby -e`, `node -e`, `awk '{system(...)}'`) are
//!   reported as programs (`bash`, `python3`, `awk`, ...) so policy can deny them; their
//!   code is not read. Allowing an interpreter allows everything it can do.
//! - **The user's shell environment on the host.** Functions and aliases defined in
//!   rc files (`BASH_ENV`, `.bashrc` for non-interactive SSH shells on some systems),
//!   and a login shell that is not a POSIX shell.
//! - **PATH lookups.** A program is judged by the name written (`name` is the basename,
//!   `path` is as written); which binary `PATH` resolves it to, or what a symlink points
//!   at, is the host's business. Policy that allows `rm` allows whatever `rm` is there.
//! - **Run-time values.** Variables expanded in arguments, `$((...))` arithmetic that
//!   indexes arrays with variable contents, and the output of a command substitution used
//!   as an argument are not known; only a program *name* that depends on them makes the
//!   line opaque. `Program::args` holds such words as written.
//! - **Wrappers not listed above** (`chroot`, `flock`, `parallel`, `ssh host cmd`,
//!   `script -c`, ...) are reported as programs, not unwrapped.

mod scp;
mod walk;
mod word;
mod wrappers;

#[cfg(test)]
mod tests;

use std::fmt;

pub use scp::{Scp, ScpDirection, scp_invocation};

/// Longer lines are opaque: OpenSSH itself caps a command at 256 KiB, and no command an
/// operator types or an agent sends for review needs more.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// More programs than this make the line opaque; past it a line is not something a
/// reviewer can read anyway, and the bound caps the work.
pub const MAX_PROGRAMS: usize = 256;

/// How many times script text may be parsed again inside itself (`$(...)`, backticks,
/// `sh -c`, `eval`, `watch`), counting the line itself as 1.
pub const MAX_DEPTH: usize = 8;

/// What an `exec` command line runs, as far as the line itself shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandLine {
    /// Every program the line runs, in order of appearance (the wrapper before what it
    /// wraps; a substitution before the command whose words contain it is not
    /// guaranteed). Policy `match.commands` globs match these by `name`.
    pub programs: Vec<Program>,
    /// Files written by redirections (`>`, `>>`, `>|`, `&>`, `&>>`, `<>`, `>&FILE`) and by
    /// `time -o` / `find -fprint`, as written (words that are not literal keep their
    /// source text). `/dev/null` is left out.
    pub writes: Vec<String>,
    /// Why the line cannot be fully seen; `None` when it can. The door treats a line
    /// with a reason as the kind `unknown`.
    pub opaque: Option<Opaque>,
}

/// One program the line runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// The basename after quote removal: `rm` for `/bin/rm`, `\rm` and `'rm'`.
    pub name: String,
    /// The program word after quote removal, as written (`/bin/rm`, `./run`, `rm`).
    pub path: String,
    /// The words after the program, quote-removed where they are literal, as written
    /// where they are not (`$HOME`, `$(date)`).
    pub args: Vec<String>,
    /// Every argument is known before run time: no expansions, globs or substitutions.
    pub args_known: bool,
}

/// Why a command line cannot be fully seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opaque {
    /// Longer than [`MAX_LINE_BYTES`].
    TooLong { bytes: usize },
    /// More nesting than the parser is allowed to recurse through.
    TooNested,
    /// Script text inside script text deeper than [`MAX_DEPTH`].
    TooDeep,
    /// More than [`MAX_PROGRAMS`] programs.
    TooManyPrograms,
    /// Not valid shell syntax (or a construct the parser does not support).
    Unparseable { detail: String },
    /// The program to run is only known at run time (an expansion, a glob, ...).
    DynamicProgram { word: String },
    /// A script string (`sh -c`, `su -c`, `eval`, `watch`) or a wrapper's option is only
    /// known at run time.
    DynamicScript { word: String },
    /// A construct whose commands are not followed (a command substitution inside a
    /// here-document, `env -S`).
    Unsupported { what: &'static str },
}

impl fmt::Display for Opaque {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong { bytes } => {
                write!(f, "command line of {bytes} bytes is longer than {MAX_LINE_BYTES}")
            }
            Self::TooNested => f.write_str("command line nests too deeply"),
            Self::TooDeep => write!(f, "script text nested more than {MAX_DEPTH} levels deep"),
            Self::TooManyPrograms => write!(f, "more than {MAX_PROGRAMS} programs"),
            Self::Unparseable { detail } => write!(f, "unparseable command line: {detail}"),
            Self::DynamicProgram { word } => write!(f, "program name known only at run time: {word}"),
            Self::DynamicScript { word } => write!(f, "script text known only at run time: {word}"),
            Self::Unsupported { what } => write!(f, "not followed: {what}"),
        }
    }
}

/// Reads an `exec` command line. Pure, never panics, and bounded: by [`MAX_LINE_BYTES`],
/// [`MAX_DEPTH`], [`MAX_PROGRAMS`] and a nesting bound checked before each parse.
pub fn classify_command(line: &str) -> CommandLine {
    if line.len() > MAX_LINE_BYTES {
        return CommandLine { opaque: Some(Opaque::TooLong { bytes: line.len() }), ..CommandLine::default() };
    }
    let mut walker = walk::Walker::default();
    walker.script(line);
    walker.finish()
}
