#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::Masker;
use crate::error::Error;
use crate::http::websocket::frames::{Event, Frames, From, Kind, close_frame, server_frame};
use crate::mask::{Detector, MaskPlan};
use crate::policy::Glob;

/// A server frame, FIN or not (server frames carry no mask).
fn wire(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = server_frame(opcode, payload);
    if !fin {
        out[0] &= 0x7f;
    }
    out
}

fn emails() -> Masker {
    Masker::new(MaskPlan::new(vec![], vec![Detector::Email]), vec![])
}

/// The backend's reader when its messages are masked on the wire.
fn reader(bound: u64) -> Frames {
    Frames::new(From::Backend, 16 << 20, 64 << 20, 16).keeping_messages(bound)
}

/// What the client gets for `input`, fed in chunks of `chunk` bytes.
fn relay(masker: &Masker, input: &[u8], chunk: usize) -> Result<Vec<u8>, Error> {
    let mut frames = reader(1 << 20);
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        for event in frames.feed(piece)? {
            out.extend(masker.reframe(&event)?.frame);
        }
    }
    Ok(out)
}

/// The length field's encoding a frame uses: its header's size without a mask key.
fn header_len(frame: &[u8]) -> usize {
    match frame[1] & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    }
}

#[test]
fn server_frames_use_the_shortest_length_encoding_and_read_back() {
    for (n, header) in [(0, 2), (125, 2), (126, 4), (127, 4), (65535, 4), (65536, 10), (70_000, 10)] {
        let payload: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let frame = server_frame(0x2, &payload);
        assert_eq!(frame[0], 0x82, "FIN and binary, no reserved bit ({n})");
        assert_eq!(frame[1] & 0x80, 0, "a server frame carries no mask ({n})");
        assert_eq!(header_len(&frame), header, "{n} bytes");
        assert_eq!(frame.len(), header + n, "{n} bytes");
        let events = reader(1 << 20).feed(&frame).unwrap();
        assert!(
            matches!(&events[..], [Event::Message { kind: Kind::Binary, bytes, frames: 1, whole: Some(w), .. }]
                if *bytes == n as u64 && *w == payload),
            "{n} bytes read back"
        );
    }
}

#[test]
fn a_fragmented_text_is_joined_masked_and_sent_as_one_frame_after_the_ping_between() {
    let mut input = wire(false, 0x1, b"mail ada@exa");
    input.extend(wire(true, 0x9, b"p"));
    input.extend(wire(false, 0x0, b"mple.com and "));
    input.extend(wire(true, 0x0, b"more"));
    input.extend(close_frame(1000, "bye"));
    let mut expected = server_frame(0x9, b"p");
    expected.extend(server_frame(0x1, b"mail a***@example.com and more"));
    expected.extend(close_frame(1000, "bye"));
    for chunk in [1, 3, 7, input.len()] {
        assert_eq!(relay(&emails(), &input, chunk).unwrap(), expected, "chunks of {chunk}");
    }
}

#[test]
fn masking_that_changes_the_length_changes_its_encoding() {
    // "adamx@example.com" (17 bytes) becomes "a***@example.com" (16).
    for (len, before, after) in [(126, 4, 2), (65536, 10, 4)] {
        let text = format!("{} adamx@example.com", "x".repeat(len - 18));
        assert_eq!(text.len(), len);
        let input = server_frame(0x1, text.as_bytes());
        assert_eq!(header_len(&input), before);
        let out = relay(&emails(), &input, 4096).unwrap();
        let masked = format!("{} a***@example.com", "x".repeat(len - 18));
        assert_eq!(header_len(&out), after, "{len} bytes masked to {}", masked.len());
        assert_eq!(out, server_frame(0x1, masked.as_bytes()));
    }
}

#[test]
fn the_resource_credential_is_masked_in_text_and_refused_in_binary() {
    let masker = Masker::new(MaskPlan::default(), vec!["backend-key-123".into()]);
    assert!(masker.is_active());
    let out = relay(&masker, &server_frame(0x1, b"echo: Bearer backend-key-123"), 5).unwrap();
    assert_eq!(out, server_frame(0x1, b"echo: Bearer ***"));
    // Binary without it passes unchanged; with it, it is refused.
    let clean = server_frame(0x2, &[0, 1, 2, 0xff]);
    assert_eq!(relay(&masker, &clean, 2).unwrap(), clean);
    let leaky = server_frame(0x2, b"\x00backend-key-123\x01");
    assert!(matches!(relay(&masker, &leaky, 2), Err(Error::Unmaskable { close_code: 1008, .. })));
}

#[test]
fn binary_is_refused_while_detectors_apply() {
    let e = relay(&emails(), &server_frame(0x2, &[1, 2, 3]), 64).unwrap_err();
    assert!(matches!(e, Error::Unmaskable { close_code: 1008, .. }), "{e}");
    assert!(e.to_string().contains("binary"), "{e}");
}

#[test]
fn text_that_is_not_utf8_is_refused_with_1007() {
    let e = relay(&emails(), &server_frame(0x1, b"ok \xff\xfe"), 64).unwrap_err();
    assert!(matches!(e, Error::Unmaskable { close_code: 1007, .. }), "{e}");
    // Split inside a character across fragments is fine: the message is whole first.
    let mut input = wire(false, 0x1, "é".as_bytes().get(..1).unwrap());
    input.extend(wire(true, 0x0, "é@example.com".as_bytes().get(1..).unwrap()));
    assert_eq!(relay(&emails(), &input, 1).unwrap(), server_frame(0x1, "é@example.com".as_bytes()));
}

#[test]
fn a_message_past_the_masked_bound_is_refused_from_the_header_that_crosses_it() {
    let mut frames = reader(100);
    frames.feed(&wire(false, 0x1, &[b'a'; 60])).unwrap();
    // Only the header of the next fragment: refused before its payload.
    let e = frames.feed(&wire(true, 0x0, &[b'a'; 60])[..2]).unwrap_err();
    assert!(matches!(e, Error::Limit { code: "1009", .. }), "{e}");
    assert!(e.to_string().contains("http_max_masked_websocket_message_bytes"), "{e}");
    // Exactly the bound is fine.
    let mut frames = reader(100);
    assert_eq!(frames.feed(&server_frame(0x1, &[b'a'; 100])).unwrap().len(), 1);
}

#[test]
fn nothing_to_mask_means_no_reframing() {
    assert!(!Masker::default().is_active());
    // Column rules do not apply to messages; a secret too short to search for is none.
    let columns = MaskPlan::new(vec![Glob::new("email")], vec![]);
    assert!(!Masker::new(columns, vec!["abc".into()]).is_active());
    assert!(emails().is_active());
}

#[test]
fn control_frames_go_on_as_they_came() {
    for input in
        [server_frame(0x9, b"ping!"), server_frame(0xa, b""), close_frame(1001, "away"), server_frame(0x8, b"")]
    {
        assert_eq!(relay(&emails(), &input, 1).unwrap(), input);
    }
}
