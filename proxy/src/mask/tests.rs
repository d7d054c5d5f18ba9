#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
//! Column masks and each detector: what is masked, how, and what is left alone.

use super::detect::{all_patterns_compile, luhn_valid};
use super::{Detector, MaskPlan};
use crate::policy::Glob;

fn plan(columns: &[&str], detectors: &[Detector]) -> MaskPlan {
    MaskPlan::new(columns.iter().map(|c| Glob::new(*c)).collect(), detectors.to_vec())
}

fn detect(detector: Detector, value: &str) -> Option<String> {
    plan(&[], &[detector]).mask_value("col", value)
}

fn digits(s: &str) -> Vec<u8> {
    s.bytes().map(|b| b - b'0').collect()
}

#[test]
fn every_pattern_compiles() {
    assert!(all_patterns_compile());
}

// === plan ===

#[test]
fn empty_plan_changes_nothing() {
    let p = MaskPlan::default();
    assert!(p.is_empty());
    assert_eq!(p.mask_value("email", "a@b.com"), None);
}

#[test]
fn column_glob_masks_whole_value_ignoring_case() {
    let p = plan(&["email", "*password*"], &[]);
    assert!(!p.is_empty());
    assert_eq!(p.mask_value("EMAIL", "anything").as_deref(), Some("***"));
    assert_eq!(p.mask_value("user_password_hash", "x").as_deref(), Some("***"));
    assert_eq!(p.mask_value("emails", "a@b.com"), None);
}

#[test]
fn column_mask_wins_over_detectors() {
    let p = plan(&["ssn"], &[Detector::Ssn]);
    assert_eq!(p.mask_value("ssn", "123-45-6789").as_deref(), Some("***"));
    assert_eq!(p.mask_value("note", "ssn 123-45-6789").as_deref(), Some("ssn ***-**-6789"));
}

#[test]
fn merge_deduplicates_and_orders_detectors() {
    let mut p = plan(&["a"], &[Detector::Ssn, Detector::Email]);
    p.merge(&plan(&["a", "b"], &[Detector::ApiKey, Detector::Email]));
    let columns: Vec<&str> = p.columns.iter().map(Glob::as_str).collect();
    assert_eq!(columns, ["a", "b"]);
    assert_eq!(p.detectors, [Detector::ApiKey, Detector::Email, Detector::Ssn]);
}

#[test]
fn detector_names_round_trip() {
    for d in Detector::ALL {
        assert_eq!(Detector::from_name(d.as_str()), Some(d));
        assert_eq!(d.to_string(), d.as_str());
    }
    assert_eq!(Detector::from_name("iban"), None);
}

#[test]
fn all_detectors_mask_a_mixed_string() {
    let p = plan(&[], &Detector::ALL);
    let text = "alice@example.com paid with 4111 1111 1111 1111, ssn 123-45-6789, key AKIAIOSFODNN7EXAMPLE";
    assert_eq!(
        p.mask_value("note", text).as_deref(),
        Some("a***@example.com paid with ****-****-****-1111, ssn ***-**-6789, key AKIA***")
    );
}

#[test]
fn ordinary_text_is_unchanged_by_every_detector() {
    let p = plan(&[], &Detector::ALL);
    for text in [
        "",
        "hello world",
        "order 12345 shipped on 2024-01-05 at 12:30:00",
        "call +1 555-123-4567 or 555 123 4567",
        "total: 1234567.89 EUR",
        "the token is valid",
        "monkey: banana",
        "secretary: Bob",
        "uuid 550e8400-e29b-41d4-a716-446655440000",
        "version 1.2.3-rc.4 @ noon",
        "ISBN 978-3-16-148410-0",
        "Ünïcödé text with @ sign and 123",
    ] {
        assert_eq!(p.mask_value("note", text), None, "{text}");
    }
}

// === email ===

#[test]
fn email_keeps_first_char_and_domain() {
    assert_eq!(detect(Detector::Email, "alice.smith+x@mail.example.co.uk").as_deref(), Some("a***@mail.example.co.uk"));
    assert_eq!(detect(Detector::Email, "to: a@b.io, bob@c.org").as_deref(), Some("to: a***@b.io, b***@c.org"));
}

#[test]
fn email_needs_a_domain() {
    assert_eq!(detect(Detector::Email, "@handle"), None);
    assert_eq!(detect(Detector::Email, "user@localhost"), None);
    assert_eq!(detect(Detector::Email, "no at sign here"), None);
}

// === credit cards ===

#[test]
fn luhn_accepts_valid_and_rejects_invalid_numbers() {
    for valid in ["4111111111111111", "5555555555554444", "378282246310005", "6011111111111117", "4222222222222"] {
        assert!(luhn_valid(&digits(valid)), "{valid}");
    }
    for invalid in ["4111111111111112", "5555555555554445", "1234567812345678"] {
        assert!(!luhn_valid(&digits(invalid)), "{invalid}");
    }
}

#[test]
fn card_with_valid_luhn_is_masked_keeping_last_four() {
    for card in ["4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111"] {
        assert_eq!(detect(Detector::CreditCard, card).as_deref(), Some("****-****-****-1111"), "{card}");
    }
    assert_eq!(detect(Detector::CreditCard, "amex 378282246310005.").as_deref(), Some("amex ****-****-****-0005."));
}

#[test]
fn a_card_followed_or_preceded_by_more_digits_is_still_found() {
    assert_eq!(
        detect(Detector::CreditCard, "4111 1111 1111 1111 123-45-6789").as_deref(),
        Some("****-****-****-1111 123-45-6789")
    );
    assert_eq!(detect(Detector::CreditCard, "77 4111-1111-1111-1111").as_deref(), Some("77 ****-****-****-1111"));
    let both = MaskPlan::new(vec![], vec![Detector::CreditCard, Detector::Ssn]);
    assert_eq!(both.detect("4111 1111 1111 1111 123-45-6789").as_deref(), Some("****-****-****-1111 ***-**-6789"));
}

#[test]
fn card_with_invalid_luhn_is_left_alone() {
    assert_eq!(detect(Detector::CreditCard, "4111111111111112"), None);
    assert_eq!(detect(Detector::CreditCard, "4111 1111 1111 1112"), None);
}

#[test]
fn card_length_is_bounded() {
    // 12 digits (Luhn-valid) is too short; a 20+ digit run is not a card.
    assert_eq!(detect(Detector::CreditCard, "411111111113"), None);
    assert_eq!(detect(Detector::CreditCard, "41111111111111111111111"), None);
    assert_eq!(detect(Detector::CreditCard, "id4111111111111111"), None, "glued to a word");
}

#[test]
fn several_cards_in_one_value_are_all_masked() {
    assert_eq!(
        detect(Detector::CreditCard, "a 4111111111111111 b 5555555555554444 c 4111111111111112").as_deref(),
        Some("a ****-****-****-1111 b ****-****-****-4444 c 4111111111111112")
    );
}

// === SSN ===

#[test]
fn ssn_is_masked_keeping_serial() {
    assert_eq!(detect(Detector::Ssn, "SSN: 123-45-6789").as_deref(), Some("SSN: ***-**-6789"));
    assert_eq!(detect(Detector::Ssn, "078-05-1120 and 219-09-9999").as_deref(), Some("***-**-1120 and ***-**-9999"));
}

#[test]
fn ssn_exclusions_are_left_alone() {
    for not_ssn in ["000-12-3456", "666-12-3456", "900-12-3456", "999-12-3456", "123-00-4567", "123-45-0000"] {
        assert_eq!(detect(Detector::Ssn, not_ssn), None, "{not_ssn}");
    }
}

#[test]
fn ssn_inside_longer_numbers_is_left_alone() {
    for not_ssn in ["1-123-45-6789", "123-45-6789-0", "1123-45-6789", "123-45-67890", "123456789"] {
        assert_eq!(detect(Detector::Ssn, not_ssn), None, "{not_ssn}");
    }
}

// === API keys ===

#[test]
fn vendor_key_shapes_keep_their_prefix() {
    let gh = format!("ghp_{}", "a1B2".repeat(9));
    for (input, want) in [
        ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_***"),
        ("key=AKIAIOSFODNN7EXAMPLE;", "key=AKIA***;"),
        (gh.as_str(), "ghp_***"),
        ("xoxb-1234567890-abcdefghij", "xoxb-***"),
    ] {
        assert_eq!(detect(Detector::ApiKey, input).as_deref(), Some(want), "{input}");
    }
}

#[test]
fn named_secrets_keep_the_name() {
    for (input, want) in [
        ("api_key=abc123", "api_key=***"),
        ("API-KEY: abc123 rest", "API-KEY: *** rest"),
        ("client_secret = s3cr3t&x=1", "client_secret = ***&x=1"),
        ("{\"token\": \"abc.def\", \"n\": 1}", "{\"token\": \"***\", \"n\": 1}"),
        ("password='hunter2'", "password='***'"),
        ("apikey=a secret:b", "apikey=*** secret:***"),
    ] {
        assert_eq!(detect(Detector::ApiKey, input).as_deref(), Some(want), "{input}");
    }
}

#[test]
fn key_lookalikes_are_left_alone() {
    for text in ["AKIA is a prefix", "ghp_short", "sk_live_", "the api key is rotated", "xoxb-short"] {
        assert_eq!(detect(Detector::ApiKey, text), None, "{text}");
    }
}

// === JWTs ===

const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";

#[test]
fn jwt_is_replaced() {
    assert_eq!(detect(Detector::Jwt, &format!("Bearer {JWT}")).as_deref(), Some("Bearer [jwt masked]"));
    assert_eq!(detect(Detector::Jwt, &format!("{JWT},{JWT}")).as_deref(), Some("[jwt masked],[jwt masked]"));
}

#[test]
fn jwt_lookalikes_are_left_alone() {
    assert_eq!(detect(Detector::Jwt, "eyJhbGciOiJIUzI1NiJ9 only a header"), None);
    assert_eq!(detect(Detector::Jwt, "eyJa.notjwt.x"), None);
}

#[test]
fn named_jwt_is_masked_once_by_api_key_first() {
    let p = plan(&[], &[Detector::Jwt, Detector::ApiKey]);
    assert_eq!(p.mask_value("c", &format!("token={JWT}")).as_deref(), Some("token=***"));
}
