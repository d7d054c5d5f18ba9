#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
//! The demo SSH policy parses and decides what the playground's steps promise.

use portcullis_proxy::policy::{Decision, PolicySet, Protocol, Request, Verdict, Who, parse};

use super::{DEMO_SSH_POLICY, public_key_line, render_config};

fn policy() -> PolicySet {
    PolicySet::new(vec![parse(DEMO_SSH_POLICY).unwrap()])
}

fn alice() -> Who {
    Who { subject: "alice".into(), groups: vec!["engineers".into()] }
}

/// `programs` stands in for what the SSH door extracts from `line`.
fn ssh(kind: &str, line: &str, programs: &[&str]) -> Request {
    Request {
        resource: "demo-ssh".into(),
        protocol: Protocol::Ssh,
        kind: kind.into(),
        tables: vec![],
        functions: vec![],
        commands: programs.iter().map(|p| (*p).to_owned()).collect(),
        text: line.into(),
        missing_where: false,
        dynamic_sql: false,
        writes: false,
        locks_rows: false,
    }
}

fn exec(line: &str, programs: &[&str]) -> Decision {
    policy().decide(&alice(), &ssh("exec", line, programs))
}

fn is_review(d: &Decision) -> bool {
    matches!(d.verdict, Verdict::Review { .. })
}

fn is_deny(d: &Decision) -> bool {
    matches!(d.verdict, Verdict::Deny { .. })
}

#[test]
fn demo_ssh_policy_parses() {
    let doc = parse(DEMO_SSH_POLICY).unwrap();
    assert_eq!(doc.name, "demo-ssh");
}

#[test]
fn engineers_run_read_only_pipelines() {
    for (line, programs) in [
        ("ls -la", &["ls"][..]),
        ("cat notes.txt", &["cat"]),
        ("tail -n 2 logs/app.log", &["tail"]),
        ("grep -i 'upstream timed' logs/*.log | wc -l", &["grep", "wc"]),
        ("cat logs/app.log | sort -r | uniq -c", &["cat", "sort", "uniq"]),
        ("echo hi", &["echo"]),
    ] {
        let d = exec(line, programs);
        assert_eq!(d.verdict, Verdict::Allow, "{line}: {d:?}");
    }
}

#[test]
fn a_listed_program_does_not_carry_an_unlisted_one() {
    for (line, programs) in [
        ("ls; python3 x.py", &["ls", "python3"][..]),
        ("ls && curl example.com", &["ls", "curl"]),
        ("ls\npython3 x.py", &["ls", "python3"]),
        ("cat $(python3 x.py)", &["cat", "python3"]),
        ("echo hi > notes.txt", &["echo"]),
        ("ls | sh", &["ls", "sh"]),
        ("cat notes.txt | sort -o out", &["cat", "sort"]),
        ("cat notes.txt | sort --compress-program=sh", &["cat", "sort"]),
        ("env python3 x.py", &["env", "python3"]),
        ("lsblk", &["lsblk"]),
    ] {
        let d = exec(line, programs);
        assert!(is_deny(&d), "{line}: {d:?}");
    }
}

#[test]
fn changes_wait_for_an_approver() {
    for (line, programs) in [
        ("rm notes.txt", &["rm"][..]),
        ("ls && rm -rf logs", &["ls", "rm"]),
        ("find . -delete", &["find"]),
        ("tee out", &["tee"]),
    ] {
        let d = exec(line, programs);
        assert!(is_review(&d), "{line}: {d:?}");
    }
}

#[test]
fn power_and_raw_disk_commands_are_denied_even_behind_a_review() {
    for (line, programs) in [
        ("sudo shutdown -h now", &["sudo", "shutdown"][..]),
        ("rm x; mkfs.ext4 /dev/sda", &["rm", "mkfs.ext4"]),
        ("dd if=/dev/zero of=x", &["dd"]),
    ] {
        let d = exec(line, programs);
        assert!(is_deny(&d), "{line}: {d:?}");
    }
}

#[test]
fn shells_are_reviewed_files_copy_and_forwarding_is_denied() {
    let p = policy();
    assert!(is_review(&p.decide(&alice(), &ssh("shell", "", &[]))));
    assert_eq!(p.decide(&alice(), &ssh("scp", "scp -f notes.txt", &[])).verdict, Verdict::Allow);
    assert_eq!(p.decide(&alice(), &ssh("sftp", "", &[])).verdict, Verdict::Allow);
    assert!(is_deny(&p.decide(&alice(), &ssh("forward", "127.0.0.1:5432", &[]))));
    let stranger = Who { subject: "eve".into(), groups: vec![] };
    assert!(is_deny(&p.decide(&stranger, &ssh("exec", "ls", &["ls"]))));
}

#[test]
fn host_key_line_drops_the_comment() {
    assert_eq!(public_key_line("ssh-ed25519 AAAAC3Nz portcullis-dev\n").unwrap(), "ssh-ed25519 AAAAC3Nz");
    assert!(public_key_line("garbage").is_err());
}

#[test]
fn config_allows_only_the_login_user_by_key() {
    let text = render_config(std::path::Path::new("/tmp/pg play/sshd"), 2222, "portcullis-demo");
    for line in [
        "Port 2222",
        "ListenAddress 127.0.0.1",
        "AuthorizedKeysFile \"/tmp/pg play/sshd/authorized_keys\"",
        "AllowUsers portcullis-demo",
        "PasswordAuthentication no",
        "UsePAM no",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
}
