//! Programs that run another program given in their arguments, and shells that run a
//! script string: each is reported, and so is what it runs.

use super::Opaque;
use super::walk::Walker;
use super::word::Arg;

/// `find -exec find -exec ...` recurses once per level; the words bound the count,
/// this bounds the stack.
const MAX_NESTED_INVOCATIONS: usize = 16;

/// What a program runs in turn.
enum Next {
    /// Nothing this classifier can name (or nothing at all).
    Done,
    /// The program at this index of its arguments, with the rest as its arguments.
    Run(usize),
    /// This script text.
    Script(String),
    /// `xargs` with no command runs `echo`.
    Echo,
    Opaque(Opaque),
}

/// How a wrapper's options read: short options that take a value (`-u root` or
/// `-uroot`), long ones that do (`--user root`; `--user=root` always reads).
#[derive(Default)]
struct Spec {
    valued: &'static str,
    long_valued: &'static [&'static str],
    /// Short options whose value can only be attached (`xargs -i{}`).
    attached: &'static str,
    /// Short options that mean no program follows.
    stop: &'static str,
    /// Short options this reader cannot tell apart (`sudo -h`: help, or a host).
    ambiguous: &'static str,
    /// `NAME=value` words may precede the program (`sudo`, `env`).
    assignments: bool,
}

/// The options read before the program, and where it is.
struct Scan {
    command: Option<usize>,
    /// Short option letters and long option names seen, with their values if any.
    seen: Vec<(String, Option<String>)>,
}

impl Scan {
    fn has(&self, option: &str) -> bool {
        self.seen.iter().any(|(o, _)| o == option)
    }

    fn value(&self, options: &[&str]) -> Option<String> {
        self.seen.iter().find(|(o, _)| options.contains(&o.as_str())).and_then(|(_, v)| v.clone())
    }
}

impl Walker {
    /// Reports the program of a simple command and whatever it runs in turn.
    pub(super) fn invocation(&mut self, words: &[Arg]) {
        self.invocation_at(words, 0);
    }

    fn invocation_at(&mut self, mut words: &[Arg], nested: usize) {
        if nested > MAX_NESTED_INVOCATIONS {
            self.opaque(Opaque::TooDeep);
            return;
        }
        // Each turn consumes at least the program word, so the loop is bounded by the words.
        while let Some((program, args)) = words.split_first() {
            let path = match &program.literal {
                Some(path) if !program.expands => path.clone(),
                _ => {
                    self.opaque(Opaque::DynamicProgram { word: program.raw.clone() });
                    return;
                }
            };
            self.push_program(path.clone(), args);
            let name = path.rsplit('/').next().unwrap_or_default();
            let next = match name {
                "find" => {
                    self.find(args, nested);
                    Next::Done
                }
                _ => self.wrapped(name, args),
            };
            match next {
                Next::Done => return,
                Next::Run(i) => words = args.get(i..).unwrap_or_default(),
                Next::Script(text) => {
                    self.script(&text);
                    return;
                }
                Next::Echo => {
                    self.push_program("echo".to_owned(), &[]);
                    return;
                }
                Next::Opaque(why) => {
                    self.opaque(why);
                    return;
                }
            }
        }
    }

    fn wrapped(&mut self, name: &str, args: &[Arg]) -> Next {
        let scan = |spec: &Spec| scan(args, spec);
        let run = |scan: Result<Scan, Opaque>| match scan {
            Ok(Scan { command: Some(i), .. }) => Next::Run(i),
            Ok(_) => Next::Done,
            Err(why) => Next::Opaque(why),
        };
        match name {
            "sudo" => run(scan(&Spec {
                valued: "ugpCDrtURTc",
                long_valued: &[
                    "user",
                    "group",
                    "host",
                    "prompt",
                    "close-from",
                    "chdir",
                    "role",
                    "type",
                    "other-user",
                    "command-timeout",
                    "chroot",
                    "login-class",
                ],
                stop: "eVlK",
                ambiguous: "h",
                assignments: true,
                ..Spec::default()
            })),
            "doas" => run(scan(&Spec { valued: "uC", ..Spec::default() })),
            "env" => match scan(&Spec {
                valued: "uCP",
                long_valued: &["unset", "chdir"],
                assignments: true,
                ..Spec::default()
            }) {
                Ok(s) if s.has("S") || s.has("split-string") => Next::Opaque(Opaque::Unsupported { what: "env -S" }),
                other => run(other),
            },
            "nice" => run(scan(&Spec { valued: "n", long_valued: &["adjustment"], ..Spec::default() })),
            "nohup" | "builtin" | "busybox" => run(scan(&Spec::default())),
            "setsid" | "command" => run(scan(&Spec::default())),
            "exec" => run(scan(&Spec { valued: "a", ..Spec::default() })),
            "stdbuf" => {
                run(scan(&Spec { valued: "ioe", long_valued: &["input", "output", "error"], ..Spec::default() }))
            }
            "ionice" => match scan(&Spec {
                valued: "cnpPu",
                long_valued: &["class", "classdata", "pid", "pgid", "uid"],
                ..Spec::default()
            }) {
                // Changes running processes; runs nothing.
                Ok(s) if ["p", "P", "u", "pid", "pgid", "uid"].iter().any(|o| s.has(o)) => Next::Done,
                other => run(other),
            },
            // The first word after the options is the duration.
            "timeout" => {
                match scan(&Spec { valued: "ks", long_valued: &["kill-after", "signal"], ..Spec::default() }) {
                    Ok(Scan { command: Some(i), .. }) => Next::Run(i.saturating_add(1)),
                    other => run(other),
                }
            }
            "time" => {
                let scanned = scan(&Spec { valued: "fo", long_valued: &["format", "output"], ..Spec::default() });
                if let Ok(s) = &scanned
                    && let Some(file) = s.value(&["o", "output"])
                {
                    self.push_write(file);
                }
                run(scanned)
            }
            "xargs" => match scan(&Spec {
                valued: "adEILnPs",
                long_valued: &["arg-file", "delimiter", "max-lines", "max-args", "max-procs", "max-chars"],
                attached: "eil",
                ..Spec::default()
            }) {
                Ok(Scan { command: None, .. }) => Next::Echo,
                other => run(other),
            },
            // Without `-x`, watch hands its words, joined, to `sh -c`.
            "watch" => match scan(&Spec { valued: "nq", long_valued: &["interval", "equexit"], ..Spec::default() }) {
                Ok(s) if s.has("x") || s.has("exec") => run(Ok(s)),
                Ok(Scan { command: Some(i), .. }) => joined(args.get(i..).unwrap_or_default()),
                other => run(other),
            },
            "sh" | "bash" | "dash" | "zsh" | "ksh" | "ash" | "mksh" | "yash" => shell(args),
            "su" | "runuser" => su(args),
            "eval" => joined(args),
            _ => Next::Done,
        }
    }

    /// `find ... -exec PROG ARGS ;` (also `+`, `-execdir`, `-ok`, `-okdir`), any number
    /// of times; `-fprint FILE` and its kin write files.
    fn find(&mut self, args: &[Arg], nested: usize) {
        let mut i = 0;
        while let Some(arg) = args.get(i) {
            i += 1;
            match arg.literal.as_deref() {
                Some("-exec" | "-execdir" | "-ok" | "-okdir") => {
                    let rest = args.get(i..).unwrap_or_default();
                    let end =
                        rest.iter().position(|a| matches!(a.literal.as_deref(), Some(";" | "+"))).unwrap_or(rest.len());
                    self.invocation_at(rest.get(..end).unwrap_or_default(), nested + 1);
                    i += end;
                }
                Some("-fprint" | "-fprint0" | "-fprintf" | "-fls") => {
                    if let Some(file) = args.get(i) {
                        self.push_write(file.text());
                    }
                }
                _ => {}
            }
        }
    }
}

/// Finds the program among a wrapper's arguments. A word that is not literal before it
/// makes the line opaque: it could be an option that takes the next word.
fn scan(args: &[Arg], spec: &Spec) -> Result<Scan, Opaque> {
    let mut seen = Vec::new();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        let Some(word) = arg.literal.as_deref() else {
            return Err(Opaque::DynamicScript { word: arg.raw.clone() });
        };
        let next = args.get(i + 1).map(Arg::text);
        if word == "--" {
            let command = (i + 1 < args.len()).then_some(i + 1);
            return Ok(Scan { command, seen });
        } else if let Some(long) = word.strip_prefix("--") {
            match long.split_once('=') {
                Some((name, value)) => seen.push((name.to_owned(), Some(value.to_owned()))),
                None if spec.long_valued.contains(&long) => {
                    seen.push((long.to_owned(), next));
                    i += 1;
                }
                None => seen.push((long.to_owned(), None)),
            }
        } else if let Some(cluster) = word.strip_prefix('-').filter(|c| !c.is_empty()) {
            for (at, c) in cluster.char_indices() {
                let attached = cluster.get(at + c.len_utf8()..).unwrap_or_default();
                if spec.ambiguous.contains(c) {
                    return Err(Opaque::DynamicScript { word: word.to_owned() });
                }
                if spec.stop.contains(c) {
                    seen.push((c.to_string(), None));
                    return Ok(Scan { command: None, seen });
                }
                if spec.attached.contains(c) {
                    seen.push((c.to_string(), Some(attached.to_owned())));
                    break;
                }
                if spec.valued.contains(c) {
                    if attached.is_empty() {
                        seen.push((c.to_string(), next.clone()));
                        i += 1;
                    } else {
                        seen.push((c.to_string(), Some(attached.to_owned())));
                    }
                    break;
                }
                seen.push((c.to_string(), None));
            }
        } else if !(spec.assignments && is_assignment(word)) {
            return Ok(Scan { command: Some(i), seen });
        }
        i += 1;
    }
    Ok(Scan { command: None, seen })
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// `sh -c 'SCRIPT' [NAME [ARGS]]`, with options before it (`-ec`, `-o pipefail`,
/// `+x`, `--norc`). Without `-c` a shell runs a file or standard input: only the shell
/// itself is reported.
fn shell(args: &[Arg]) -> Next {
    let mut command_string = false;
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        let Some(word) = arg.literal.as_deref() else {
            return Next::Opaque(Opaque::DynamicScript { word: arg.raw.clone() });
        };
        i += 1;
        if word == "--" || word == "-" {
            break;
        }
        if let Some(long) = word.strip_prefix("--") {
            if matches!(long, "rcfile" | "init-file") {
                i += 1;
            }
        } else if let Some(cluster) = word.strip_prefix(['-', '+']).filter(|c| !c.is_empty()) {
            command_string |= cluster.contains('c');
            // `-o NAME` / `+o NAME` (and `-O` shopt names in bash) take the next word.
            i += cluster.matches(['o', 'O']).count();
        } else {
            i -= 1;
            break;
        }
    }
    if !command_string {
        return Next::Done;
    }
    match args.get(i) {
        Some(Arg { literal: Some(script), .. }) => Next::Script(script.clone()),
        Some(arg) => Next::Opaque(Opaque::DynamicScript { word: arg.raw.clone() }),
        None => Next::Done,
    }
}

/// `su [options] [-] [user]` with `-c CMD` / `--command=CMD` anywhere among the words
/// (util-linux permutes them).
fn su(args: &[Arg]) -> Next {
    let mut words = args.iter();
    while let Some(arg) = words.next() {
        let Some(word) = arg.literal.as_deref() else {
            return Next::Opaque(Opaque::DynamicScript { word: arg.raw.clone() });
        };
        let script = if let Some(s) = word.strip_prefix("--command=").or(word.strip_prefix("--session-command=")) {
            Some(s.to_owned())
        } else if word == "--command"
            || word == "--session-command"
            || (word.starts_with('-') && !word.starts_with("--") && word.contains('c'))
        {
            match words.next() {
                Some(Arg { literal: Some(s), .. }) => Some(s.clone()),
                Some(arg) => return Next::Opaque(Opaque::DynamicScript { word: arg.raw.clone() }),
                None => None,
            }
        } else {
            None
        };
        if let Some(script) = script {
            return Next::Script(script);
        }
    }
    Next::Done
}

/// `eval ARGS` and `watch ARGS`: the words joined with spaces are script text.
fn joined(args: &[Arg]) -> Next {
    let mut script = Vec::with_capacity(args.len());
    for arg in args {
        match &arg.literal {
            Some(word) => script.push(word.as_str()),
            None => return Next::Opaque(Opaque::DynamicScript { word: arg.raw.clone() }),
        }
    }
    Next::Script(script.join(" "))
}
