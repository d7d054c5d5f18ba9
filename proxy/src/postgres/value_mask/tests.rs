#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
//! One masking rule for both wire formats.

use super::{Masked, mask_message_fields, mask_value};
use crate::mask::{Detector, MaskPlan};

const TEXT: Option<u32> = Some(25);
const INT8: Option<u32> = Some(20);
const JSONB: Option<u32> = Some(3802);
const DATE: Option<u32> = Some(1082);

fn detectors() -> MaskPlan {
    MaskPlan::new(vec![], vec![Detector::Email, Detector::CreditCard, Detector::Ssn])
}

#[test]
fn a_masked_column_is_three_stars_for_text_types_and_null_for_the_rest_in_both_formats() {
    for binary in [false, true] {
        assert_eq!(
            mask_value(b"ada@example.com", binary, TEXT, true, &detectors()),
            Masked::Replaced(Some(b"***".to_vec()))
        );
        assert_eq!(mask_value(&42i64.to_be_bytes(), binary, INT8, true, &detectors()), Masked::Replaced(None));
        assert_eq!(mask_value(b"2024-01-01", binary, DATE, true, &detectors()), Masked::Replaced(None));
        assert_eq!(mask_value(b"x", binary, None, true, &detectors()), Masked::Replaced(None), "unknown type");
    }
}

#[test]
fn detectors_read_binary_text_json_and_integers_and_keep_the_value_decodable() {
    assert_eq!(
        mask_value(b"write to ada@example.com", true, TEXT, false, &detectors()),
        Masked::Replaced(Some(b"write to a***@example.com".to_vec()))
    );
    let jsonb = [&[1u8][..], br#"{"e": "ada@example.com"}"#].concat();
    assert_eq!(
        mask_value(&jsonb, true, JSONB, false, &detectors()),
        Masked::Replaced(Some([&[1u8][..], br#"{"e": "a***@example.com"}"#].concat()))
    );
    // A card number stored as a bigint: found in both formats, NULL (a masked text
    // would not parse as a bigint).
    assert_eq!(mask_value(&4111111111111111i64.to_be_bytes(), true, INT8, false, &detectors()), Masked::Replaced(None));
    assert_eq!(mask_value(b"4111111111111111", false, INT8, false, &detectors()), Masked::Replaced(None));
    assert_eq!(mask_value(&42i64.to_be_bytes(), true, INT8, false, &detectors()), Masked::Unchanged);
    assert_eq!(mask_value(b"plain", false, TEXT, false, &MaskPlan::default()), Masked::Unchanged);
}

#[test]
fn error_texts_of_a_statement_under_column_masks_lose_every_quoted_and_parenthesized_value() {
    let masks = MaskPlan::new(vec![crate::policy::Glob::new("email")], vec![Detector::Email, Detector::Ssn]);
    let mut fields = vec![
        (b'S', "ERROR".to_string()),
        (b'C', "22P02".to_string()),
        (b'M', "invalid input syntax for type integer: \"ada@example.com123-45-6789,alan@example.com\"".to_string()),
        (b'D', "Key (email)=(ada@example.com) already exists.".to_string()),
        (b'W', "unclosed \"grace@example.com".to_string()),
    ];
    mask_message_fields(&mut fields, &masks);
    let all: String = fields.iter().map(|(_, t)| t.as_str()).collect();
    assert!(!all.contains("example.com") && !all.contains("6789"), "{fields:?}");
    assert_eq!(fields[2].1, "invalid input syntax for type integer: \"***\"");
    assert_eq!(fields[3].1, "Key (***)=(***) already exists.");
    // Without column masks only the detectors apply.
    let mut fields = vec![(b'M', "mail ada@example.com".to_string())];
    mask_message_fields(&mut fields, &MaskPlan::new(vec![], vec![Detector::Email]));
    assert_eq!(fields[0].1, "mail a***@example.com");
}
