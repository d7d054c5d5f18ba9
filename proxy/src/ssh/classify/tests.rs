#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use super::walk::{MAX_OPENERS, MAX_PARENS, nesting_openers};
use super::*;

fn names(line: &str) -> Vec<String> {
    let classified = classify_command(line);
    assert_eq!(classified.opaque, None, "{line:?} should be fully seen");
    classified.programs.into_iter().map(|p| p.name).collect()
}

#[track_caller]
fn runs(line: &str, expected: &[&str]) {
    assert_eq!(names(line), expected, "programs of {line:?}");
}

fn opaque(line: &str) -> Opaque {
    classify_command(line).opaque.unwrap_or_else(|| panic!("{line:?} should be opaque"))
}

// === hidden commands ===

#[test]
fn pipeline_runs_every_stage() {
    runs("cat /etc/passwd | grep root | rm -f x", &["cat", "grep", "rm"]);
}

#[test]
fn lists_run_every_command() {
    runs("ls; rm -rf /", &["ls", "rm"]);
    runs("true && rm x", &["true", "rm"]);
    runs("false || rm x & echo", &["false", "rm", "echo"]);
    runs("ls\nrm x", &["ls", "rm"]);
}

#[test]
fn subshells_and_groups_are_entered() {
    runs("(cd /tmp && rm x)", &["cd", "rm"]);
    runs("{ echo; rm x; }", &["echo", "rm"]);
}

#[test]
fn command_substitution_is_entered() {
    runs("echo $(rm -rf /)", &["rm", "echo"]);
    runs("echo \"today: $(date) and $(rm x)\"", &["date", "rm", "echo"]);
    runs("X=$(rm x)", &["rm"]);
    runs("cat > \"$(rm x)\"", &["rm", "cat"]);
    runs("echo ${X:-$(rm x)}", &["rm", "echo"]);
    runs("echo $(( $(rm x) + 1 ))", &["rm", "echo"]);
    runs("diff <(rm a) <(ls b)", &["rm", "ls", "diff"]);
}

#[test]
fn backticks_are_entered() {
    runs("echo `rm -rf /`", &["rm", "echo"]);
    runs("echo \"`rm x`\"", &["rm", "echo"]);
}

#[test]
fn compound_commands_are_entered() {
    runs("if test -f x; then rm x; else touch x; fi", &["test", "rm", "touch"]);
    runs("while read l; do rm \"$l\"; done", &["read", "rm"]);
    runs("for f in $(ls); do rm $f; done", &["ls", "rm"]);
    runs("case $x in a) rm x;; *) ls;; esac", &["rm", "ls"]);
    runs("f() { rm x; }; f", &["rm", "f"]);
    runs("[[ -n $(rm x) ]]", &["rm"]);
}

#[test]
fn shell_script_strings_are_parsed_again() {
    runs("bash -c 'rm -rf /'", &["bash", "rm"]);
    runs("sh -c \"sh -c 'rm x'\"", &["sh", "sh", "rm"]);
    runs("bash -lc 'ls | rm x'", &["bash", "ls", "rm"]);
    runs("bash -o pipefail -c 'rm x'", &["bash", "rm"]);
    runs("su -c 'rm x' root", &["su", "rm"]);
    runs("su root --command='rm x'", &["su", "rm"]);
    runs("eval rm x", &["eval", "rm"]);
    runs("eval 'ls; rm x'", &["eval", "ls", "rm"]);
    runs("watch 'ls; rm x'", &["watch", "ls", "rm"]);
    runs("watch -x rm x", &["watch", "rm"]);
}

#[test]
fn shell_without_script_string_is_only_the_shell() {
    runs("bash deploy.sh", &["bash"]);
}

// === wrappers ===

#[test]
fn wrappers_report_what_they_run() {
    runs("sudo -u root rm x", &["sudo", "rm"]);
    runs("sudo -uroot -- rm x", &["sudo", "rm"]);
    runs("sudo --user=root A=1 rm x", &["sudo", "rm"]);
    runs("env A=1 rm x", &["env", "rm"]);
    runs("env -i -u HOME A=1 rm x", &["env", "rm"]);
    runs("nice -n 5 rm x", &["nice", "rm"]);
    runs("nice -10 rm x", &["nice", "rm"]);
    runs("nohup rm x", &["nohup", "rm"]);
    runs("timeout 5 rm x", &["timeout", "rm"]);
    runs("timeout -s KILL 5s rm x", &["timeout", "rm"]);
    runs("exec rm x", &["exec", "rm"]);
    runs("command rm x", &["command", "rm"]);
    runs("builtin echo x", &["builtin", "echo"]);
    runs("stdbuf -oL rm x", &["stdbuf", "rm"]);
    runs("ionice -c 3 rm x", &["ionice", "rm"]);
    runs("sudo env A=1 nice nohup rm x", &["sudo", "env", "nice", "nohup", "rm"]);
    runs("sudo bash -c 'rm x'", &["sudo", "bash", "rm"]);
}

#[test]
fn time_reports_its_program_and_output_file() {
    let line = classify_command("/usr/bin/time -o t.log rm x");
    assert_eq!(line.opaque, None);
    assert_eq!(line.programs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["time", "rm"]);
    assert_eq!(line.writes, ["t.log"]);
    runs("time rm x", &["rm"]);
}

#[test]
fn xargs_reports_its_program_or_echo() {
    runs("ls | xargs rm", &["ls", "xargs", "rm"]);
    runs("ls | xargs -0 -n 1 -I{} rm {}", &["ls", "xargs", "rm"]);
    runs("ls | xargs", &["ls", "xargs", "echo"]);
}

#[test]
fn find_exec_reports_its_programs() {
    runs("find . -exec rm {} \\;", &["find", "rm"]);
    runs("find . -name '*.log' -execdir gzip {} + -ok rm {} ';'", &["find", "gzip", "rm"]);
    let line = classify_command("find . -fprint out.txt");
    assert_eq!(line.writes, ["out.txt"]);
}

#[test]
fn unknown_wrapper_option_before_the_program_is_opaque() {
    assert!(matches!(opaque("sudo $OPTS rm x"), Opaque::DynamicScript { .. }));
    assert!(matches!(opaque("sudo -h host rm x"), Opaque::DynamicScript { .. }));
    assert!(matches!(opaque("bash -c \"$SCRIPT\""), Opaque::DynamicScript { .. }));
    assert!(matches!(opaque("eval $X"), Opaque::DynamicScript { .. }));
    assert!(matches!(opaque("env -S 'rm x'"), Opaque::Unsupported { .. }));
}

#[test]
fn interpreters_are_reported_not_read() {
    runs("python3 -c 'import os; os.system(\"rm x\")'", &["python3"]);
    runs("perl -e 'system(\"rm x\")'", &["perl"]);
    runs("awk 'BEGIN { system(\"rm x\") }'", &["awk"]);
}

// === names ===

#[test]
fn names_are_basenames_after_quote_removal() {
    let line = classify_command("/bin/rm -rf /tmp/x");
    assert_eq!(line.programs[0].name, "rm");
    assert_eq!(line.programs[0].path, "/bin/rm");
    assert_eq!(line.programs[0].args, ["-rf", "/tmp/x"]);
    runs("\\rm x", &["rm"]);
    runs("'rm' x", &["rm"]);
    runs("\"r\"m x", &["rm"]);
    runs("r\\\nm x", &["rm"]);
    runs("$'rm' x", &["rm"]);
}

#[test]
fn args_keep_unknown_words_as_written() {
    let line = classify_command("rm \"$HOME/x\" 'a b'");
    assert_eq!(line.programs[0].args, ["\"$HOME/x\"", "a b"]);
    assert!(!line.programs[0].args_known);
    assert!(classify_command("rm 'a b' c").programs[0].args_known);
    assert!(!classify_command("rm *.log").programs[0].args_known);
}

#[test]
fn program_known_only_at_run_time_is_opaque() {
    for line in ["$X args", "\"$(echo rm)\" x", "`echo rm` x", "/bin/r? x", "/bin/{rm,ls} x", "$'\\x72m' x", "${CMD} x"]
    {
        assert!(matches!(opaque(line), Opaque::DynamicProgram { .. }), "{line:?}");
    }
}

// === writes ===

#[test]
fn redirect_writes_are_recorded() {
    let line = classify_command("echo a > out.txt 2>>err.log; cat <> rw >| clob &> both 2>/dev/null >&stolen");
    assert_eq!(line.opaque, None);
    assert_eq!(line.writes, ["out.txt", "err.log", "rw", "clob", "both", "stolen"]);
    assert!(classify_command("echo a 2>&1 <in").writes.is_empty());
    assert_eq!(classify_command("{ echo; } > '/etc/x y'").writes, ["/etc/x y"]);
}

// === bounds ===

#[test]
fn unparseable_is_opaque() {
    assert!(matches!(opaque("echo 'unterminated"), Opaque::Unparseable { .. }));
    assert!(matches!(opaque("if true; then"), Opaque::Unparseable { .. }));
    assert!(matches!(opaque("ls )"), Opaque::Unparseable { .. }));
    // Found by the fuzz target: brush-parser panics on a descriptor past `i32`.
    assert!(matches!(opaque("11111111111<1<<<1<<"), Opaque::Unparseable { .. }));
    runs("echo 2>x 9>y", &["echo"]);
}

#[test]
fn heredoc_with_substitution_is_opaque() {
    assert!(matches!(opaque("cat <<EOF\n'$(rm x)'\nEOF\n"), Opaque::Unsupported { .. }));
    runs("cat <<'EOF'\n$(rm x)\nEOF\n", &["cat"]);
}

#[test]
fn huge_input_is_opaque_quickly() {
    let line = "a".repeat(MAX_LINE_BYTES + 1);
    let start = Instant::now();
    assert!(matches!(opaque(&line), Opaque::TooLong { .. }));
    assert!(start.elapsed() < Duration::from_millis(100));
}

#[test]
fn long_flat_input_within_the_bound_is_read_in_bounded_time() {
    let line = "echo a b c && ".repeat((MAX_LINE_BYTES - 4) / 14) + "true";
    let start = Instant::now();
    let classified = classify_command(&line);
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
    assert_eq!(classified.opaque, Some(Opaque::TooManyPrograms));
    assert_eq!(classified.programs.len(), MAX_PROGRAMS);
}

#[test]
fn deep_substitution_nesting_is_opaque() {
    let line = format!("{}rm{}", "echo $(".repeat(MAX_DEPTH + 2), ")".repeat(MAX_DEPTH + 2));
    assert_eq!(opaque(&line), Opaque::TooDeep);
    let line = format!("{}rm x", "eval ".repeat(MAX_DEPTH + 2));
    assert_eq!(opaque(&line), Opaque::TooDeep);
    runs(&format!("{}rm x", "eval ".repeat(MAX_DEPTH - 2)), &[&["eval"; MAX_DEPTH - 2][..], &["rm"]].concat());
}

#[test]
fn deep_nesting_is_opaque_before_parsing() {
    let line = format!("{}rm{}", "(".repeat(MAX_OPENERS + 1), ")".repeat(MAX_OPENERS + 1));
    assert_eq!(opaque(&line), Opaque::TooNested);
    let line = "if true; then ".repeat(MAX_OPENERS + 1);
    assert_eq!(opaque(&line), Opaque::TooNested);
}

/// The nesting bound must leave the parser room on a small stack (tokio's workers have
/// 2 MiB): half as much again as the bound, in every nesting form, parses there.
#[test]
fn nesting_within_the_bound_fits_a_small_stack() {
    let limit = MAX_OPENERS * 3 / 2;
    for form in 0..forms(1).len() {
        let deepest =
            (1..).map(|depth| forms(depth).swap_remove(form)).take_while(|line| nesting_openers(line) <= limit);
        let line = deepest.last().unwrap();
        assert!(nesting_openers(&line) > limit - 3, "form {form} grows by at most 3 openers a level");
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                // The parser alone, without the bound in front of it.
                super::walk::Walker::default().script_unbounded_for_test(&line);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}

/// Found by the fuzz target (the bytes it wrote, read lossily as it reads them): on
/// unbalanced parentheses brush-parser backtracks exponentially, twice the time per `(`
/// (this one took 325 s), so the count of `(` is bounded before parsing.
#[test]
fn unbalanced_parentheses_are_bounded_before_parsing() {
    let data = b"\xe8\n\xcb|(\n(\xe8\n\xcb|(\n((((((((((((((((((((((((\x01|\x98\xfe(\xe8\n\xcb|(\n\xc3(\n\n||\n\n|\n(\n(\n\n||]";
    let line = String::from_utf8_lossy(data);
    let start = Instant::now();
    assert_eq!(opaque(&line), Opaque::TooNested);
    assert!(start.elapsed() < Duration::from_secs(1));
    // At the bound the worst case found so far stays quick.
    let line = format!("|(\n(|(\n{}|x(x|(\n", "( ".repeat(MAX_PARENS - 6));
    let start = Instant::now();
    let _ = classify_command(&line);
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    runs(&"echo $(date); ".repeat(MAX_PARENS), &["date", "echo"].repeat(MAX_PARENS));
}

/// Found by the fuzz target: `<<` then a carriage return or form feed and a blank makes
/// brush-parser's tokenizer loop, allocating without end.
#[test]
fn control_characters_are_opaque_before_parsing() {
    for line in ["cat <<\r\t", "cat <<-\r\t\t", "cat <<\x0c ", "echo a\rb", "echo '\x1b[31m'"] {
        assert!(matches!(opaque(line), Opaque::Unsupported { .. }), "{line:?}");
    }
    runs("echo\ta\nls", &["echo", "ls"]);
    // Also found by it: `<<` with no delimiter word after it.
    for line in ["(\n$(i <<  #x", "cat << #", "cat <<-", "cat <<\n"] {
        assert!(matches!(opaque(line), Opaque::Unparseable { .. }), "{line:?}");
    }
    runs("cat <<< x; cat <<-EOF\n\tx\n\tEOF\n", &["cat", "cat"]);
}

#[test]
fn json_braces_do_not_count_as_nesting() {
    let payload = format!("curl -d '{}' http://x", r#"{"a":{"b":[1,2]}}"#.repeat(100));
    runs(&payload, &["curl"]);
}

fn forms(depth: usize) -> Vec<String> {
    vec![
        format!("{}rm{}", "( ".repeat(depth), " )".repeat(depth)),
        format!("{}rm;{}", "{ ".repeat(depth), " }".repeat(depth)),
        format!("{}rm{}", "$(".repeat(depth), ")".repeat(depth)),
        format!("echo \"{}rm{}\"", "$(".repeat(depth), ")".repeat(depth)),
        format!("echo {}x{}", "${a:-".repeat(depth), "}".repeat(depth)),
        format!("{}rm; fi", "if true; then ".repeat(depth)).replace("; fi", &"; fi".repeat(depth)),
        format!("{}rm{}", "while true; do ".repeat(depth), "; done".repeat(depth)),
        format!("[[ {}a{} ]]", "( ".repeat(depth), " )".repeat(depth)),
        format!("(( {}1{} ))", "(".repeat(depth), ")".repeat(depth)),
        format!("echo $(( {}1{} ))", "(".repeat(depth), ")".repeat(depth)),
        format!("{}rm{}", "{ (".repeat(depth), ") }".repeat(depth)),
        format!("{}rm x{}", "case a in a) ".repeat(depth), ";; esac".repeat(depth)),
        format!("{}rm{}", "f() { ".repeat(depth), "; }".repeat(depth)),
        format!("{}rm x; done", "for a in b; do ".repeat(depth)).replace("; done", &"; done".repeat(depth)),
    ]
}

// === scp ===

#[test]
fn scp_server_invocations_are_recognized() {
    assert_eq!(
        scp_invocation("scp -t -- /srv/in"),
        Some(Scp { direction: ScpDirection::Upload, path: "/srv/in".into(), recursive: false })
    );
    assert_eq!(
        scp_invocation("scp -r -d -p -f /srv/out"),
        Some(Scp { direction: ScpDirection::Download, path: "/srv/out".into(), recursive: true })
    );
    for line in ["scp a b", "scp -t a b", "scp -t -f x", "scp -t x; rm y", "scp -t $X", "scp -t x > y", "sudo scp -t x"]
    {
        assert_eq!(scp_invocation(line), None, "{line:?}");
    }
}

// === never panics ===

#[test]
fn odd_inputs_never_panic() {
    for line in [
        "",
        " ",
        ";",
        "&&",
        "|",
        "$(",
        "`",
        "${",
        "$((",
        "<<",
        "cat <<EOF",
        "'",
        "\"",
        "\\",
        "((",
        "[[",
        "}",
        "a=(",
        "for",
        "case x in",
        "\0",
        "é$(ü)",
        "$'\\",
        "!",
    ] {
        let _ = classify_command(line);
        let _ = scp_invocation(line);
    }
}
