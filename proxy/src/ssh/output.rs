//! Phase "mask" and the counting half of "record" for what a command prints: every
//! byte sent to the client passes here. With detectors in the plan, text is masked
//! line by line (a match split across two reads would otherwise slip through); the
//! audit keeps a bounded, masked preview, the byte counts and a digest of what was sent.

use crate::gate::OutputRecord;
use crate::mask::MaskPlan;

/// A line longer than this is masked and sent without waiting for its end.
const MAX_LINE: usize = 64 * 1024;

/// Which stream a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The output side of one channel.
pub struct Output {
    masks: MaskPlan,
    /// Line-buffer (exec) or pass chunks as they come (a terminal echoes keystrokes).
    by_line: bool,
    /// Per stream, the start of a line not yet sent.
    stdout_line: Vec<u8>,
    stderr_line: Vec<u8>,
    digest: blake3::Hasher,
    stdout_bytes: u64,
    stderr_bytes: u64,
    preview: Vec<u8>,
    preview_max: usize,
}

impl Output {
    pub fn new(masks: MaskPlan, by_line: bool, preview_max: usize) -> Self {
        Output {
            masks,
            by_line,
            stdout_line: Vec::new(),
            stderr_line: Vec::new(),
            digest: blake3::Hasher::new(),
            stdout_bytes: 0,
            stderr_bytes: 0,
            preview: Vec::new(),
            preview_max,
        }
    }

    /// What to send to the client for `data` read from the host (may be empty: held
    /// back until its line ends).
    pub fn pass(&mut self, stream: Stream, data: &[u8]) -> Vec<u8> {
        let out = if !self.masks.has_detectors() {
            data.to_vec()
        } else if !self.by_line {
            self.mask(data)
        } else {
            let pending = self.line(stream);
            pending.extend_from_slice(data);
            let cut = match pending.iter().rposition(|b| *b == b'\n') {
                Some(at) => at + 1,
                None if pending.len() >= MAX_LINE => pending.len(),
                None => 0,
            };
            let ready: Vec<u8> = pending.drain(..cut).collect();
            self.mask(&ready)
        };
        self.count(stream, &out);
        out
    }

    /// The rest of `stream`'s last line, at its end.
    pub fn flush(&mut self, stream: Stream) -> Vec<u8> {
        let rest = std::mem::take(self.line(stream));
        let out = self.mask(&rest);
        self.count(stream, &out);
        out
    }

    fn line(&mut self, stream: Stream) -> &mut Vec<u8> {
        match stream {
            Stream::Stdout => &mut self.stdout_line,
            Stream::Stderr => &mut self.stderr_line,
        }
    }

    fn mask(&self, data: &[u8]) -> Vec<u8> {
        if data.is_empty() || !self.masks.has_detectors() {
            return data.to_vec();
        }
        let text = String::from_utf8_lossy(data);
        match self.masks.detect(&text) {
            Some(masked) => masked.into_bytes(),
            None => data.to_vec(),
        }
    }

    fn count(&mut self, stream: Stream, sent: &[u8]) {
        self.digest.update(sent);
        match stream {
            Stream::Stdout => self.stdout_bytes += sent.len() as u64,
            Stream::Stderr => self.stderr_bytes += sent.len() as u64,
        }
        let room = self.preview_max.saturating_sub(self.preview.len());
        self.preview.extend_from_slice(sent.get(..room.min(sent.len())).unwrap_or_default());
    }

    /// The audit's view of everything sent.
    pub fn record(self, exit_status: Option<u32>, exit_signal: Option<String>) -> OutputRecord {
        OutputRecord {
            exit_status,
            exit_signal,
            stdout_bytes: self.stdout_bytes,
            stderr_bytes: self.stderr_bytes,
            blake3: self.digest.finalize().to_hex().to_string(),
            preview: String::from_utf8_lossy(&self.preview).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{Output, Stream};
    use crate::mask::{Detector, MaskPlan};

    #[test]
    fn a_secret_split_across_two_reads_is_still_masked_and_counted_once() {
        let plan = MaskPlan::new(vec![], vec![Detector::Ssn]);
        let mut out = Output::new(plan, true, 1024);
        let mut sent = out.pass(Stream::Stdout, b"id 123-4");
        assert!(sent.is_empty(), "held back until the line ends");
        sent.extend(out.pass(Stream::Stdout, b"5-6789 ok\nnext"));
        sent.extend(out.flush(Stream::Stdout));
        assert_eq!(String::from_utf8(sent).unwrap(), "id ***-**-6789 ok\nnext");
        let record = out.record(Some(0), None);
        assert_eq!(record.stdout_bytes, 22);
        assert_eq!(record.preview, "id ***-**-6789 ok\nnext");
    }

    #[test]
    fn without_detectors_bytes_pass_untouched_and_the_preview_is_bounded() {
        let mut out = Output::new(MaskPlan::default(), true, 4);
        assert_eq!(out.pass(Stream::Stderr, b"\xff\x00abc"), b"\xff\x00abc");
        let record = out.record(None, Some("KILL".into()));
        assert_eq!((record.stderr_bytes, record.preview.len() <= 6), (5, true));
    }

    #[test]
    fn the_digest_is_blake3_of_what_was_sent_in_order() {
        let mut out = Output::new(MaskPlan::default(), false, 0);
        out.pass(Stream::Stdout, b"a");
        out.pass(Stream::Stderr, b"bc");
        // BLAKE3("abc"), from the reference implementation's test vectors (what `b3sum` prints).
        let expected = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85";
        assert_eq!(out.record(Some(0), None).blake3, expected);
    }
}
