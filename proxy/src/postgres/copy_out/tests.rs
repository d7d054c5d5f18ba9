#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
//! COPY rows are read and written back in their own format, masked like values.

use super::{CopyColumns, CopyFormat, CopyOut, mask_row};
use crate::mask::{Detector, MaskPlan};
use crate::postgres::classify::classify;

fn copy_out(sql: &str) -> CopyOut {
    let parsed = pg_query::parse(sql, 0).unwrap();
    let node = parsed.protobuf.stmts[0].stmt.as_ref().unwrap().node.as_ref().unwrap().clone();
    CopyOut::of(&node, sql).unwrap()
}

/// id int, name text (plain), email text (masked), ssn text (masked).
fn columns() -> CopyColumns {
    CopyColumns { columns: vec![(false, Some(23)), (false, Some(25)), (true, Some(25)), (true, Some(25))], all: false }
}

fn masks() -> MaskPlan {
    MaskPlan::new(vec![], vec![Detector::Email])
}

#[test]
fn a_query_copy_knows_its_querys_text_as_postgres_scans_it() {
    let c = copy_out("COPY (SELECT ')', $$(()$$ /* ) */, f(x) FROM t) TO STDOUT");
    assert_eq!(c.table, None);
    assert_eq!(c.query.as_deref(), Some("SELECT ')', $$(()$$ /* ) */, f(x) FROM t"));
    assert_eq!(copy_out("COPY t TO STDOUT").query, None);
}

#[test]
fn the_statement_says_where_rows_come_from_and_in_which_format() {
    let c = copy_out("COPY public.customers (id, email) TO STDOUT");
    assert_eq!(c.table, Some((Some("public".into()), "customers".into())));
    assert_eq!(c.columns, vec!["id".to_string(), "email".to_string()]);
    assert_eq!((c.format, c.delimiter, c.null.as_str()), (CopyFormat::Text, '\t', "\\N"));
    let c = copy_out("COPY customers TO STDOUT WITH (FORMAT csv, HEADER, DELIMITER ';')");
    assert_eq!((c.format, c.delimiter, c.null.as_str(), c.header), (CopyFormat::Csv, ';', "", true));
    let c = copy_out("COPY (SELECT email FROM customers) TO STDOUT (FORMAT binary)");
    assert_eq!((c.table.clone(), c.format), (None, CopyFormat::Binary));
    assert!(classify("COPY customers TO STDOUT").is_ok());
}

#[test]
fn text_rows_keep_their_escapes_and_lose_the_masked_values() {
    let out = copy_out("COPY customers TO STDOUT");
    let row = b"1\tAda\\tLovelace\tada@example.com\t\\N\n";
    let masked = mask_row(row, &out, &columns(), &masks()).unwrap();
    assert_eq!(String::from_utf8(masked).unwrap(), "1\tAda\\tLovelace\t***\t\\N\n");
    // Detectors read the unmasked fields.
    let row = b"2\tmail alan@example.com\tx\ty\n";
    let masked = mask_row(row, &out, &columns(), &masks()).unwrap();
    assert_eq!(String::from_utf8(masked).unwrap(), "2\tmail a***@example.com\t***\t***\n");
}

#[test]
fn csv_rows_keep_their_quoting_and_lose_the_masked_values() {
    let out = copy_out("COPY customers TO STDOUT (FORMAT csv)");
    let row = b"1,\"Lovelace, Ada \"\"the first\"\"\",ada@example.com,\n";
    let masked = mask_row(row, &out, &columns(), &masks()).unwrap();
    assert_eq!(String::from_utf8(masked).unwrap(), "1,\"Lovelace, Ada \"\"the first\"\"\",***,\n");
}

#[test]
fn unresolved_columns_are_masked_whole() {
    let out = copy_out("COPY (SELECT email, ssn FROM customers) TO STDOUT");
    let all = CopyColumns { columns: vec![], all: true };
    let masked = mask_row(b"ada@example.com\t123-45-6789\n", &out, &all, &masks()).unwrap();
    assert_eq!(String::from_utf8(masked).unwrap(), "\\N\t\\N\n");
}

#[test]
fn binary_tuples_are_masked_by_their_columns_types() {
    // Header, then one tuple (id int4 = 1, name text, email text, ssn NULL), then the
    // trailer in a second message.
    let mut first = b"PGCOPY\n\xff\r\n\0".to_vec();
    first.extend(0i32.to_be_bytes());
    first.extend(0i32.to_be_bytes());
    first.extend(4i16.to_be_bytes());
    for value in [&1i32.to_be_bytes()[..], b"Ada", b"ada@example.com"] {
        first.extend(i32::try_from(value.len()).unwrap().to_be_bytes());
        first.extend(value);
    }
    first.extend((-1i32).to_be_bytes());
    let masked = super::mask_binary(&first, true, &columns(), &masks()).unwrap();
    let text = String::from_utf8_lossy(&masked);
    assert!(!text.contains("ada@example.com") && text.contains("***") && text.contains("Ada"), "{text:?}");
    assert!(masked.starts_with(b"PGCOPY\n\xff\r\n\0"));
    let trailer = (-1i16).to_be_bytes();
    assert_eq!(super::mask_binary(&trailer, false, &columns(), &masks()).unwrap(), trailer.to_vec());
    // A truncated message cannot be read.
    assert!(super::mask_binary(&first[..first.len() - 3], true, &columns(), &masks()).is_none());
}
