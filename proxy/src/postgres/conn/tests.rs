#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use bytes::BytesMut;
use pgwire::messages::{DecodeContext, PgWireFrontendMessage};

use super::decode_frontend;
use crate::error::Error;

fn in_session() -> DecodeContext {
    let mut ctx = DecodeContext::default();
    ctx.awaiting_frontend_ssl = false;
    ctx.awaiting_frontend_startup = false;
    ctx
}

fn query_bytes(sql: &str) -> BytesMut {
    let mut b = BytesMut::new();
    b.extend_from_slice(b"Q");
    b.extend_from_slice(&i32::try_from(sql.len() + 5).unwrap().to_be_bytes());
    b.extend_from_slice(sql.as_bytes());
    b.extend_from_slice(b"\0");
    b
}

#[test]
fn a_whole_query_decodes_and_a_partial_one_asks_for_more() {
    let whole = query_bytes("SELECT 1");
    let mut partial = BytesMut::from(&whole[..whole.len() - 3]);
    assert!(decode_frontend(&mut partial, &in_session(), 1024).unwrap().is_none());
    let mut buf = whole.clone();
    match decode_frontend(&mut buf, &in_session(), 1024).unwrap() {
        Some(PgWireFrontendMessage::Query(q)) => assert_eq!(q.query, "SELECT 1"),
        other => panic!("{other:?}"),
    }
    assert!(buf.is_empty());
}

#[test]
fn an_oversized_message_is_refused_before_it_is_buffered() {
    let mut buf = BytesMut::from(&b"Q\x40\x00\x00\x00"[..]);
    match decode_frontend(&mut buf, &in_session(), 1024) {
        Err(Error::Protocol(m)) => assert!(m.contains("exceeds the limit"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_negative_or_tiny_length_is_refused() {
    for bytes in [&b"Q\xff\xff\xff\xff"[..], &b"Q\x00\x00\x00\x02"[..]] {
        let mut buf = BytesMut::from(bytes);
        assert!(matches!(decode_frontend(&mut buf, &in_session(), 1024), Err(Error::Protocol(_))));
    }
}

#[test]
fn an_unknown_message_type_is_a_protocol_error() {
    let mut buf = BytesMut::from(&b"\x01\x00\x00\x00\x04"[..]);
    assert!(matches!(decode_frontend(&mut buf, &in_session(), 1024), Err(Error::Protocol(_))));
}

#[test]
fn garbage_never_panics_in_any_state() {
    let mut x: u32 = 0x9e37_79b9;
    for round in 0..2000 {
        let len = (round % 64) + 1;
        let mut bytes = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            bytes.push((x & 0xff) as u8);
        }
        for state in 0..3 {
            let mut ctx = DecodeContext::default();
            ctx.awaiting_frontend_ssl = state == 0;
            ctx.awaiting_frontend_startup = state <= 1;
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = decode_frontend(&mut buf, &ctx, 1 << 16);
        }
    }
}

#[test]
fn a_bind_whose_counts_run_past_its_end_is_refused_not_a_panic() {
    // Found by the frontend_messages fuzzer: pgwire's Bind decoder read past the body.
    let mut buf = BytesMut::from(&b"B\x00\x00\x00\x05\x00\x05"[..]);
    match decode_frontend(&mut buf, &in_session(), 1024) {
        Err(Error::Protocol(m)) => assert!(m.contains("malformed Bind"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A Bind claiming one parameter of 100 bytes but carrying 2.
    let mut body = b"\0\0\x00\x00\x00\x01\x00\x00\x00\x64ab".to_vec();
    let mut buf = BytesMut::from(&b"B"[..]);
    buf.extend_from_slice(&i32::try_from(body.len() + 4).unwrap().to_be_bytes());
    buf.extend_from_slice(&body);
    assert!(matches!(decode_frontend(&mut buf, &in_session(), 1024), Err(Error::Protocol(_))));
    body.clear();
}
