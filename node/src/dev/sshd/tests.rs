#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
//! The demo SSH policy parses and decides what the playground's steps promise.

use portcullis_proxy::policy::{Decision, PolicySet, Request, Verdict, Who, parse};
use portcullis_proxy::ssh::channel::{Ask, classify};

use super::{DEMO_SSH_POLICY, public_key_line, render_config};

fn policy() -> PolicySet {
    PolicySet::new(vec![parse(DEMO_SSH_POLICY).unwrap()])
}

fn alice() -> Who {
    Who { subject: "alice".into(), groups: vec!["engineers".into()] }
}

/// A request of `kind` as the SSH door reads it (its own classifier).
fn ssh(ask: Ask) -> Request {
    classify("demo-ssh", &ask).1
}

fn exec(line: &str) -> Decision {
    policy().decide(&alice(), &ssh(Ask::Exec(line.into())))
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
    for line in [
        "ls -la",
        "cat notes.txt",
        "tail -n 2 logs/app.log",
        "grep -i 'upstream timed' logs/*.log | wc -l",
        "echo hi",
        "wc -c",
        "grep no-such-text notes.txt",
        "tty",
    ] {
        let d = exec(line);
        assert_eq!(d.verdict, Verdict::Allow, "{line}: {d:?}");
    }
}

#[test]
fn a_listed_program_does_not_carry_an_unlisted_one() {
    for line in [
        "$X notes.txt",
        "/tmp/ls",
        "ls; python3 x.py",
        "ls && curl example.com",
        "ls\npython3 x.py",
        "cat $(python3 x.py)",
        "echo hi > notes.txt",
        "ls | sh",
        "cat notes.txt | sort -o out",
        "cat notes.txt | sort --compress-program=sh",
        "env python3 x.py",
        "lsblk",
    ] {
        let d = exec(line);
        assert!(is_deny(&d), "{line}: {d:?}");
    }
}

#[test]
fn changes_wait_for_an_approver() {
    for line in ["rm notes.txt", "ls && rm -rf logs", "find . -delete", "tee out"] {
        let d = exec(line);
        assert!(is_review(&d), "{line}: {d:?}");
    }
}

#[test]
fn power_and_raw_disk_commands_are_denied_even_behind_a_review() {
    for line in ["sudo shutdown -h now", "rm x; mkfs.ext4 /dev/sda", "dd if=/dev/zero of=x"] {
        let d = exec(line);
        assert!(is_deny(&d), "{line}: {d:?}");
    }
}

#[test]
fn shells_are_reviewed_files_copy_and_forwarding_is_denied() {
    let p = policy();
    assert!(is_review(&p.decide(&alice(), &ssh(Ask::Shell))));
    assert_eq!(p.decide(&alice(), &ssh(Ask::Exec("scp -f notes.txt".into()))).verdict, Verdict::Allow);
    assert_eq!(p.decide(&alice(), &ssh(Ask::Subsystem("sftp".into()))).verdict, Verdict::Allow);
    let stranger = Who { subject: "eve".into(), groups: vec![] };
    assert!(is_deny(&p.decide(&stranger, &ssh(Ask::Exec("ls".into())))));
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
