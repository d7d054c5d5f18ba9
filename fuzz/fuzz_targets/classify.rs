//! Arbitrary bytes (as UTF-8, lossily, the way the Postgres door hands SQL over) into the
//! SQL classifier: it must return `Ok` or `Err`, never panic, abort or overflow its stack.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_proxy::postgres::classify::{classify, classify_with_limit};

fuzz_target!(|data: &[u8]| {
    let sql = String::from_utf8_lossy(data);
    if let Ok(statements) = classify(&sql) {
        for statement in statements {
            // Every statement's text is a piece of the input.
            assert!(sql.contains(statement.text.as_str()));
        }
    }
    // A small limit must refuse, not truncate.
    let _ = classify_with_limit(&sql, 64);
});
