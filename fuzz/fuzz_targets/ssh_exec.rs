//! Arbitrary bytes (as UTF-8, lossily, as an `exec` request's command is read) into the
//! SSH door's command-line classifier: it must return, never panic, abort or overflow its
//! stack, and what it reports must hold together.
//!
//! brush-parser has `unwrap`s that hostile input reaches; the classifier catches those
//! panics (`catch_unwind`) and calls the line opaque. libfuzzer-sys aborts on every panic,
//! caught or not, so this target lets panics located in brush-parser unwind to that catch
//! and still aborts on any other.
#![no_main]

use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use portcullis_proxy::ssh::classify::{MAX_PROGRAMS, classify_command, scp_invocation};

static HOOK: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let in_parser = info.location().is_some_and(|l| l.file().contains("brush-parser"));
            if !in_parser {
                eprintln!("{info}");
                std::process::abort();
            }
        }));
    });
    let line = String::from_utf8_lossy(data);
    let classified = classify_command(&line);
    assert!(classified.programs.len() <= MAX_PROGRAMS);
    for program in &classified.programs {
        // The name is the last path segment of the path.
        assert!(program.path.ends_with(program.name.as_str()));
        assert!(!program.name.contains('/'));
    }
    if scp_invocation(&line).is_some() {
        // The scp kind is only ever a fully seen single program.
        assert!(classified.opaque.is_none());
        assert_eq!(classified.programs.len(), 1);
    }
});
