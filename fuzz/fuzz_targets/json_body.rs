//! Arbitrary bytes as an HTTP request body into what policy reads of it
//! (`proxy/src/http/inspect.rs`, strict JSON) and a `match.json` rule: never a panic
//! or a stack overflow, and a body read as JSON is what a lenient parser reads too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_proxy::http::inspect::json_body;
use portcullis_proxy::policy::{JsonBody, parse};

const RULE: &str = r#"
name: fuzz
rules:
  - match: { json: { "/amount": ">1000", "/a/0/b": { exists: true }, "/c~1d": "x", "": { exists: true } } }
    action: deny
"#;

fuzz_target!(|data: &[u8]| {
    let body = json_body(data, 1 << 20);
    if let JsonBody::Parsed(value) = &body {
        // No duplicate keys, so serde_json's own reading (the last key wins) agrees.
        let lenient: serde_json::Value = serde_json::from_slice(data).expect("strict accepted what serde_json refuses");
        assert_eq!(**value, lenient);
    }
    if let Ok(doc) = parse(RULE)
        && let Some(rule) = doc.rules.first()
        && let Some(json) = &rule.matcher.json
    {
        let _ = json.matches(&body);
    }
});
