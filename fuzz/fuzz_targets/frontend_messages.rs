//! Fuzz the Postgres door's message decoder: arbitrary client bytes, in each decoder
//! state (before TLS, before startup, in a session), must give messages, "need more",
//! or a protocol error; never a panic or an unbounded allocation.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgwire::messages::DecodeContext;
use portcullis_proxy::postgres::conn::decode_frontend;

fuzz_target!(|data: &[u8]| {
    for state in 0..3 {
        let mut ctx = DecodeContext::default();
        ctx.awaiting_frontend_ssl = state == 0;
        ctx.awaiting_frontend_startup = state <= 1;
        let mut buf = BytesMut::from(data);
        // Decode until the input is used up, needs more bytes, or is refused.
        for _ in 0..1024 {
            match decode_frontend(&mut buf, &ctx, 1 << 20) {
                Ok(Some(_)) if !buf.is_empty() => continue,
                _ => break,
            }
        }
    }
});
