#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
//! The observer follows SFTP as OpenSSH's client and server speak it.

use super::{Direction, FileEvent, SftpObserver};

fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut p = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    p.push(kind);
    p.extend_from_slice(body);
    p
}

fn string(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

fn open(id: u32, path: &str, pflags: u32) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    b.extend(string(path.as_bytes()));
    b.extend(pflags.to_be_bytes());
    b.extend(0u32.to_be_bytes()); // attrs: no flags
    packet(3, &b)
}

fn with_id_and(id: u32, kind: u8, fields: &[Vec<u8>]) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    for f in fields {
        b.extend_from_slice(f);
    }
    packet(kind, &b)
}

#[test]
fn a_download_is_recorded_with_its_path_and_size_when_its_handle_closes() {
    let mut o = SftpObserver::default();
    assert!(o.feed(Direction::ToHost, &open(1, "/etc/motd", 0x01)).is_empty());
    assert!(o.feed(Direction::ToClient, &with_id_and(1, 102, &[string(b"h1")])).is_empty());
    let mut read = string(b"h1");
    read.extend(0u64.to_be_bytes());
    read.extend(32768u32.to_be_bytes());
    o.feed(Direction::ToHost, &with_id_and(2, 5, &[read]));
    // The DATA reply arrives one byte at a time.
    for b in with_id_and(2, 103, &[string(&[b'x'; 300])]) {
        assert!(o.feed(Direction::ToClient, &[b]).is_empty());
    }
    let done = o.feed(Direction::ToHost, &with_id_and(3, 4, &[string(b"h1")]));
    assert_eq!(done, vec![FileEvent { op: "download", path: "/etc/motd".into(), to: None, bytes: 300 }]);
}

#[test]
fn uploads_removals_and_renames_are_recorded() {
    let mut o = SftpObserver::default();
    o.feed(Direction::ToHost, &open(7, "up.txt", 0x02 | 0x08 | 0x10));
    o.feed(Direction::ToClient, &with_id_and(7, 102, &[string(b"hw")]));
    let mut write = string(b"hw");
    write.extend(0u64.to_be_bytes());
    write.extend(string(b"hello"));
    let mut both = with_id_and(8, 6, &[write]);
    both.extend(with_id_and(9, 13, &[string(b"old.txt")]));
    let events = o.feed(Direction::ToHost, &both);
    assert_eq!(events, vec![FileEvent { op: "remove", path: "old.txt".into(), to: None, bytes: 0 }]);
    let events = o.feed(Direction::ToHost, &with_id_and(10, 18, &[string(b"a"), string(b"b")]));
    assert_eq!(events[0].op, "rename");
    assert_eq!(events[0].to.as_deref(), Some("b"));
    // Left open when the channel ends: recorded as it stands.
    assert_eq!(o.finish(), vec![FileEvent { op: "upload", path: "up.txt".into(), to: None, bytes: 5 }]);
}

#[test]
fn a_packet_past_the_limit_or_garbage_stops_the_following_and_never_panics() {
    let mut o = SftpObserver::default();
    assert!(o.feed(Direction::ToHost, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).is_empty());
    assert!(o.lost.is_some());
    assert!(o.feed(Direction::ToHost, &open(1, "x", 1)).is_empty(), "not followed any more");
    let mut fresh = SftpObserver::default();
    for junk in [&[0u8, 0, 0, 1, 3][..], &[0, 0, 0, 2, 102, 9], &[0, 0, 0, 5, 103, 0, 0, 0, 1]] {
        let _ = fresh.feed(Direction::ToClient, junk);
        let _ = fresh.feed(Direction::ToHost, junk);
    }
}
