//! Phase "record" for file transfers over the sftp subsystem (also what `scp` uses by
//! default since OpenSSH 9): the door watches the SFTP packets go by, both ways, and
//! records each file a client opened: its path, the direction (read from the host or
//! written to it) and the bytes moved, plus removals and renames. It only reads the
//! packets: the bytes relayed are the client's and the host's, unchanged.
//!
//! SFTP (draft-ietf-secsh-filexfer-02, what OpenSSH speaks): `uint32 length`, `byte
//! type`, then for requests `uint32 id` and fields. A packet larger than [`MAX_PACKET`]
//! (OpenSSH's own limit is 256 KiB) makes the observer give up on the stream: it says
//! so in the record rather than guess.

use std::collections::HashMap;

use serde::Serialize;

/// Larger packets are not SFTP as OpenSSH speaks it.
pub const MAX_PACKET: usize = 256 * 1024 + 1024;
/// Open files followed at once; more are recorded as opened, their sizes not followed.
const MAX_OPEN: usize = 1024;

const FXP_OPEN: u8 = 3;
const FXP_CLOSE: u8 = 4;
const FXP_READ: u8 = 5;
const FXP_WRITE: u8 = 6;
const FXP_REMOVE: u8 = 13;
const FXP_MKDIR: u8 = 14;
const FXP_RMDIR: u8 = 15;
const FXP_RENAME: u8 = 18;
const FXP_HANDLE: u8 = 102;
const FXP_DATA: u8 = 103;

/// `SSH_FXF_WRITE`, `SSH_FXF_CREAT`, `SSH_FXF_TRUNC`, `SSH_FXF_APPEND`.
const PFLAGS_WRITING: u32 = 0x02 | 0x08 | 0x10 | 0x04;

/// One file operation, as recorded (`file` events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEvent {
    /// `download` (read from the host), `upload` (written to it), `remove`, `mkdir`,
    /// `rmdir`, `rename`.
    pub op: &'static str,
    pub path: String,
    /// For a rename, the new path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Bytes moved through the handle (download and upload).
    pub bytes: u64,
}

/// Which way a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ToHost,
    ToClient,
}

#[derive(Debug, Default)]
struct Open {
    path: String,
    writing: bool,
    bytes: u64,
}

/// Follows one sftp channel.
#[derive(Debug, Default)]
pub struct SftpObserver {
    to_host: Vec<u8>,
    to_client: Vec<u8>,
    /// OPEN requests waiting for their HANDLE, by request id.
    opening: HashMap<u32, (String, bool)>,
    /// READ requests waiting for their DATA, by request id: the handle.
    reading: HashMap<u32, Vec<u8>>,
    open: HashMap<Vec<u8>, Open>,
    /// Why the stream is no longer followed.
    pub lost: Option<String>,
}

impl SftpObserver {
    /// Feed bytes seen going `way`; returns the file operations they completed.
    pub fn feed(&mut self, way: Direction, data: &[u8]) -> Vec<FileEvent> {
        if self.lost.is_some() {
            return Vec::new();
        }
        let (packets, lost) = split(
            match way {
                Direction::ToHost => &mut self.to_host,
                Direction::ToClient => &mut self.to_client,
            },
            data,
        );
        if lost.is_some() {
            self.lost = lost;
            return Vec::new();
        }
        let mut events = Vec::new();
        for packet in packets {
            if let Some(event) = self.packet(way, &packet) {
                events.push(event);
            }
        }
        events
    }

    /// What is left open when the channel ends, recorded as it stands.
    pub fn finish(&mut self) -> Vec<FileEvent> {
        self.open.drain().map(|(_, o)| transfer(o)).collect()
    }

    fn packet(&mut self, way: Direction, packet: &[u8]) -> Option<FileEvent> {
        let mut r = Reader(packet);
        let kind = r.u8()?;
        match (way, kind) {
            (Direction::ToHost, FXP_OPEN) => {
                let id = r.u32()?;
                let path = r.text()?;
                let pflags = r.u32()?;
                self.opening.insert(id, (path, pflags & PFLAGS_WRITING != 0));
                None
            }
            (Direction::ToClient, FXP_HANDLE) => {
                let id = r.u32()?;
                let handle = r.bytes()?.to_vec();
                let (path, writing) = self.opening.remove(&id)?;
                if self.open.len() < MAX_OPEN {
                    self.open.insert(handle, Open { path, writing, bytes: 0 });
                    None
                } else {
                    Some(FileEvent { op: if writing { "upload" } else { "download" }, path, to: None, bytes: 0 })
                }
            }
            (Direction::ToHost, FXP_READ) => {
                let id = r.u32()?;
                let handle = r.bytes()?.to_vec();
                self.reading.insert(id, handle);
                None
            }
            (Direction::ToClient, FXP_DATA) => {
                let id = r.u32()?;
                let data = r.bytes()?;
                let handle = self.reading.remove(&id)?;
                if let Some(open) = self.open.get_mut(&handle) {
                    open.bytes += data.len() as u64;
                }
                None
            }
            (Direction::ToHost, FXP_WRITE) => {
                let _id = r.u32()?;
                let handle = r.bytes()?.to_vec();
                let _offset = r.u64()?;
                let data = r.bytes()?;
                if let Some(open) = self.open.get_mut(&handle) {
                    open.writing = true;
                    open.bytes += data.len() as u64;
                }
                None
            }
            (Direction::ToHost, FXP_CLOSE) => {
                let _id = r.u32()?;
                let handle = r.bytes()?;
                self.open.remove(handle).map(transfer)
            }
            (Direction::ToHost, FXP_REMOVE | FXP_MKDIR | FXP_RMDIR) => {
                let _id = r.u32()?;
                let path = r.text()?;
                let op = match kind {
                    FXP_REMOVE => "remove",
                    FXP_MKDIR => "mkdir",
                    _ => "rmdir",
                };
                Some(FileEvent { op, path, to: None, bytes: 0 })
            }
            (Direction::ToHost, FXP_RENAME) => {
                let _id = r.u32()?;
                let path = r.text()?;
                let to = r.text()?;
                Some(FileEvent { op: "rename", path, to: Some(to), bytes: 0 })
            }
            _ => None,
        }
    }
}

/// Append `data` to `buffer` and cut the whole packets off its front; the second value
/// says why the stream cannot be followed, if it cannot.
fn split(buffer: &mut Vec<u8>, data: &[u8]) -> (Vec<Vec<u8>>, Option<String>) {
    buffer.extend_from_slice(data);
    let mut packets = Vec::new();
    while let Some(len) = buffer.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_be_bytes) {
        let len = len as usize;
        if len == 0 || len > MAX_PACKET {
            buffer.clear();
            return (Vec::new(), Some(format!("an SFTP packet of {len} bytes: the stream is not followed further")));
        }
        if buffer.len() < 4 + len {
            break;
        }
        packets.push(buffer.drain(..4 + len).skip(4).collect());
    }
    (packets, None)
}

fn transfer(open: Open) -> FileEvent {
    FileEvent { op: if open.writing { "upload" } else { "download" }, path: open.path, to: None, bytes: open.bytes }
}

/// A bounds-checked cursor over one packet.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?]))
    }

    fn u64(&mut self) -> Option<u64> {
        let (hi, lo) = (self.u32()?, self.u32()?);
        Some((u64::from(hi) << 32) | u64::from(lo))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn text(&mut self) -> Option<String> {
        Some(String::from_utf8_lossy(self.bytes()?).into_owned())
    }
}

#[cfg(test)]
mod tests;
