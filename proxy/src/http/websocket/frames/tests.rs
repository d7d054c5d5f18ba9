#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::{Event, Frames, From, Kind, close_frame};

/// A frame as a client sends it (masked with `key`) or a server (`key` None).
fn frame(fin: bool, opcode: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    let m = if key.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n < 65536 => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match key {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

const KEY: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

fn client() -> Frames {
    Frames::new(From::Client, 1 << 20, 4 << 20, 8)
}

fn text(bytes: u64, frames: u64, preview: &str) -> Event {
    Event::Message { kind: Kind::Text, bytes, frames, preview: preview.as_bytes().to_vec(), whole: None }
}

#[test]
fn client_text_is_unmasked_and_previewed_whatever_the_chunking() {
    let wire = frame(true, 1, b"hello ada@example.com", KEY);
    for split in 1..wire.len() {
        let mut f = client();
        let mut events = f.feed(&wire[..split]).unwrap();
        events.extend(f.feed(&wire[split..]).unwrap());
        assert_eq!(events, vec![text(21, 1, "hello ad")], "split at {split}");
        assert!(f.at_boundary());
    }
    // Byte by byte.
    let mut f = client();
    let events: Vec<Event> = wire.iter().flat_map(|b| f.feed(&[*b]).unwrap()).collect();
    assert_eq!(events, vec![text(21, 1, "hello ad")]);
}

#[test]
fn fragments_make_one_message_and_control_frames_may_come_between() {
    let mut wire = frame(false, 1, b"abc", KEY);
    wire.extend(frame(true, 9, b"p", KEY));
    wire.extend(frame(false, 0, b"def", KEY));
    wire.extend(frame(true, 0, b"ghij", KEY));
    wire.extend(frame(true, 2, &[0u8; 300], KEY));
    wire.extend(frame(true, 8, &[0x03, 0xe8, b'b', b'y', b'e'], KEY));
    let events = client().feed(&wire).unwrap();
    assert_eq!(
        events,
        vec![
            Event::Ping { payload: b"p".to_vec() },
            text(10, 3, "abcdefgh"),
            Event::Message { kind: Kind::Binary, bytes: 300, frames: 1, preview: vec![], whole: None },
            Event::Close { code: Some(1000), reason: "bye".into() },
        ]
    );
}

#[test]
fn server_frames_are_unmasked_and_large_lengths_read() {
    let mut f = Frames::new(From::Backend, 1 << 20, 4 << 20, 4);
    let big = vec![b'x'; 70_000];
    let events = f.feed(&frame(true, 1, &big, None)).unwrap();
    assert_eq!(events, vec![text(70_000, 1, "xxxx")]);
    assert_eq!(
        f.feed(&close_frame(1001, "going away")).unwrap()[0],
        Event::Close { code: Some(1001), reason: "going away".into() }
    );
}

#[test]
fn what_rfc_6455_forbids_is_an_error() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked from client", frame(true, 1, b"x", None)),
        ("reserved bit", {
            let mut f = frame(true, 1, b"x", KEY);
            f[0] |= 0x40;
            f
        }),
        ("unknown opcode", frame(true, 3, b"x", KEY)),
        ("fragmented control", frame(false, 9, b"x", KEY)),
        ("long control", frame(true, 9, &[0u8; 126], KEY)),
        ("orphan continuation", frame(true, 0, b"x", KEY)),
        ("message inside a message", [frame(false, 1, b"x", KEY), frame(true, 1, b"y", KEY)].concat()),
        ("after close", [frame(true, 8, b"", KEY), frame(true, 1, b"y", KEY)].concat()),
        ("one-byte close", frame(true, 8, b"x", KEY)),
        ("64-bit length with the top bit", vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
    ];
    for (what, wire) in cases {
        assert!(client().feed(&wire).is_err(), "{what}");
    }
    let masked = frame(true, 1, b"x", KEY);
    assert!(Frames::new(From::Backend, 100, 100, 4).feed(&masked).is_err(), "masked from server");
}

#[test]
fn frames_and_messages_past_their_bounds_are_refused_from_the_header() {
    let mut f = Frames::new(From::Client, 1000, 1500, 4);
    // Only the header of a 2 GiB frame: refused before any payload.
    let header = [0x82, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0, 1, 2, 3, 4];
    let e = f.feed(&header).unwrap_err().to_string();
    assert!(e.contains("2147483648") && e.contains("1000"), "{e}");
    let mut f = Frames::new(From::Client, 1000, 1500, 4);
    f.feed(&frame(false, 2, &[0u8; 1000], KEY)).unwrap();
    assert!(f.feed(&frame(true, 0, &[0u8; 600], KEY)).is_err(), "the message grew past 1500");
}

#[test]
fn empty_frames_end_at_once() {
    let mut f = client();
    assert_eq!(f.feed(&frame(true, 1, b"", KEY)).unwrap(), vec![text(0, 1, "")]);
    assert_eq!(f.feed(&frame(true, 10, b"", KEY)).unwrap(), vec![Event::Pong { payload: vec![] }]);
    assert_eq!(f.feed(&frame(true, 8, b"", KEY)).unwrap(), vec![Event::Close { code: None, reason: String::new() }]);
}
