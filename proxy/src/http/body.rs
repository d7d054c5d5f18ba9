//! Phases "mask" and "record" for bodies: a response streams to the client as it comes
//! (chunked, Server-Sent Events), masked on the way; the record keeps a bounded, masked
//! preview with the size and SHA-256 of everything sent.
//!
//! JSON (`application/json`, `+json`) up to a bound is masked as a document: a field
//! whose name a column rule matches is masked whole (`"***"` for a string, `null` for
//! anything else), every string runs through the detectors. Other text is masked line by
//! line (SSE events are lines). The resource's own credential is masked wherever it comes
//! back (an API that echoes its request). Other content passes untouched.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::mask::{COLUMN_MASK, MaskPlan};
use crate::ssh::output::{Output, Stream};

/// A response body fed by the relay task.
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl ChannelBody {
    pub fn new() -> (mpsc::Sender<Result<Bytes, std::io::Error>>, ChannelBody) {
        let (tx, rx) = mpsc::channel(8);
        (tx, ChannelBody { rx })
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx).map(|next| next.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// How a response body is masked.
pub struct Masking {
    pub masks: MaskPlan,
    /// Texts masked wherever they appear (the resource's credential).
    pub secrets: Vec<String>,
    pub json: bool,
    pub max_json: usize,
}

impl Masking {
    /// Whether anything can change the body (else its bytes and length pass as they are).
    pub fn is_active(&self) -> bool {
        !self.masks.is_empty() || !self.secrets.is_empty()
    }
}

/// What was sent, for the record.
#[derive(Debug, Default)]
pub struct Sent {
    pub bytes: u64,
    pub blake3: String,
    pub preview: String,
    /// The backend's body broke off.
    pub error: Option<String>,
}

/// Relay `body` to `tx`, masked; returns what was sent. Stops early if the client is gone.
pub async fn pump(
    mut body: Incoming,
    masking: Masking,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    preview_max: usize,
) -> Sent {
    let mut tally = Tally::new(preview_max);
    if masking.is_active() && masking.json {
        let mut whole = Vec::new();
        let mut complete = true;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Ok(data) = f.into_data() {
                        whole.extend_from_slice(&data);
                    }
                }
                Err(e) => {
                    tally.error = Some(e.to_string());
                    complete = false;
                    break;
                }
            }
            if whole.len() > masking.max_json {
                complete = false;
                break;
            }
        }
        if complete && let Some(masked) = mask_json(&whole, &masking) {
            tally.send(&tx, Bytes::from(masked)).await;
            return tally.finish();
        }
        // Too large, broken off or not JSON after all: line by line, then the rest.
        let mut lines = Output::new(masking.masks.clone(), true, 0);
        let out = redact(lines.pass(Stream::Stdout, &whole), &masking.secrets);
        if !tally.send(&tx, Bytes::from(out)).await {
            return tally.finish();
        }
        return stream_lines(body, lines, &masking, tx, tally).await;
    }
    if masking.is_active() {
        let lines = Output::new(masking.masks.clone(), true, 0);
        return stream_lines(body, lines, &masking, tx, tally).await;
    }
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data()
                    && !tally.send(&tx, data).await
                {
                    break;
                }
            }
            Err(e) => {
                tally.error = Some(e.to_string());
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                break;
            }
        }
    }
    tally.finish()
}

async fn stream_lines(
    mut body: Incoming,
    mut lines: Output,
    masking: &Masking,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    mut tally: Tally,
) -> Sent {
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    let out = redact(lines.pass(Stream::Stdout, &data), &masking.secrets);
                    if !out.is_empty() && !tally.send(&tx, Bytes::from(out)).await {
                        return tally.finish();
                    }
                }
            }
            Err(e) => {
                tally.error = Some(e.to_string());
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                return tally.finish();
            }
        }
    }
    let rest = redact(lines.flush(Stream::Stdout), &masking.secrets);
    if !rest.is_empty() {
        tally.send(&tx, Bytes::from(rest)).await;
    }
    tally.finish()
}

/// A whole body (one of a declared, small length, read before the response leaves)
/// masked as [`pump`] would mask it; returned as it is, without a copy, when nothing in
/// it can change.
pub fn mask_whole(raw: Bytes, masking: &Masking) -> Bytes {
    if !masking.is_active() || untouched(&raw, masking) {
        return raw;
    }
    if masking.json
        && raw.len() <= masking.max_json
        && let Some(masked) = mask_json(&raw, masking)
    {
        return Bytes::from(masked);
    }
    let mut lines = Output::new(masking.masks.clone(), true, 0);
    let mut out = lines.pass(Stream::Stdout, &raw);
    out.extend(lines.flush(Stream::Stdout));
    Bytes::from(redact(out, &masking.secrets))
}

/// Whether masking cannot change `raw`: no mask rule applies and the credential does not
/// occur in it. For JSON that also needs no escape in it (`\u0041` spells `A`: a
/// credential may hide behind escapes, which only parsing the document sees).
fn untouched(raw: &[u8], masking: &Masking) -> bool {
    masking.masks.is_empty()
        && !(masking.json && raw.contains(&b'\\'))
        && !masking.secrets.iter().filter(|s| s.len() >= 4).any(|s| super::headers::contains(raw, s.as_bytes()))
}

/// What is recorded of a body sent whole.
pub fn sent_whole(body: &[u8], preview_max: usize) -> Sent {
    Sent {
        bytes: body.len() as u64,
        blake3: blake3::hash(body).to_hex().to_string(),
        preview: String::from_utf8_lossy(body.get(..preview_max.min(body.len())).unwrap_or_default()).into_owned(),
        error: None,
    }
}

/// A JSON document masked, or `None` if `raw` is not JSON.
pub fn mask_json(raw: &[u8], masking: &Masking) -> Option<Vec<u8>> {
    let mut doc: Value = serde_json::from_slice(raw).ok()?;
    walk(&mut doc, masking);
    serde_json::to_vec(&doc).ok()
}

fn walk(v: &mut Value, masking: &Masking) {
    match v {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if masking.masks.masks_column(key) {
                    *value = if value.is_string() { Value::String(COLUMN_MASK.into()) } else { Value::Null };
                } else {
                    walk(value, masking);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| walk(i, masking)),
        Value::String(s) => {
            let masked = masking.masks.detect(s).unwrap_or_else(|| s.clone());
            *s = redact_text(masked, &masking.secrets);
        }
        _ => {}
    }
}

fn redact(bytes: Vec<u8>, secrets: &[String]) -> Vec<u8> {
    if secrets.is_empty() {
        return bytes;
    }
    match String::from_utf8(bytes) {
        Ok(text) => redact_text(text, secrets).into_bytes(),
        Err(e) => e.into_bytes(),
    }
}

fn redact_text(mut text: String, secrets: &[String]) -> String {
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), COLUMN_MASK);
        }
    }
    text
}

/// Counts, digests and previews what is sent.
struct Tally {
    digest: blake3::Hasher,
    bytes: u64,
    preview: Vec<u8>,
    preview_max: usize,
    error: Option<String>,
}

impl Tally {
    fn new(preview_max: usize) -> Self {
        Tally { digest: blake3::Hasher::new(), bytes: 0, preview: Vec::new(), preview_max, error: None }
    }

    /// `false` when the client is gone.
    async fn send(&mut self, tx: &mpsc::Sender<Result<Bytes, std::io::Error>>, data: Bytes) -> bool {
        self.digest.update(&data);
        self.bytes += data.len() as u64;
        let room = self.preview_max.saturating_sub(self.preview.len());
        self.preview.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
        tx.send(Ok(data)).await.is_ok()
    }

    fn finish(self) -> Sent {
        Sent {
            bytes: self.bytes,
            blake3: self.digest.finalize().to_hex().to_string(),
            preview: String::from_utf8_lossy(&self.preview).into_owned(),
            error: self.error,
        }
    }
}

/// Text past a preview's cut that is masked with it: covers the longest value a detector
/// finds in practice (a JWT).
const PREVIEW_MASK_SLACK: usize = 4096;

/// The first `max` bytes of `text` for a record, masked by `masks`' detectors BEFORE the
/// cut: a value straddling the cut (an email, a token) would otherwise be kept half
/// revealed, too short for a detector to recognise.
pub fn masked_preview(masks: &MaskPlan, text: &str, max: usize) -> String {
    let window = crate::gate::record::bounded(text, max.saturating_add(PREVIEW_MASK_SLACK));
    let masked = masks.detect(window).unwrap_or_else(|| window.to_string());
    crate::gate::record::bounded(&masked, max).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::{Masking, mask_json, mask_whole, masked_preview};
    use crate::mask::{Detector, MaskPlan};
    use crate::policy::Glob;

    #[test]
    fn json_fields_by_name_strings_by_detectors_and_the_injected_secret_are_masked() {
        let masking = Masking {
            masks: MaskPlan::new(vec![Glob::new("api_token"), Glob::new("balance")], vec![Detector::Email]),
            secrets: vec!["backend-key-123".into()],
            json: true,
            max_json: 1 << 20,
        };
        let raw = br#"{"user":{"email":"ada@example.com","api_token":"t0k","balance":12},"echo":"Bearer backend-key-123","n":[1,"x"]}"#;
        let out: serde_json::Value = serde_json::from_slice(&mask_json(raw, &masking).unwrap()).unwrap();
        assert_eq!(out["user"]["email"], "a***@example.com");
        assert_eq!(out["user"]["api_token"], "***");
        assert_eq!(out["user"]["balance"], serde_json::Value::Null);
        assert_eq!(out["echo"], "Bearer ***");
        assert_eq!(out["n"][0], 1);
        assert!(mask_json(b"not json", &masking).is_none());
    }

    #[test]
    fn a_whole_body_passes_as_it_is_unless_masking_can_change_it() {
        let secret_only = |json: bool| Masking {
            masks: MaskPlan::default(),
            secrets: vec!["backend-key-123".into()],
            json,
            max_json: 1 << 20,
        };
        // Nothing to change: the very same bytes, not a re-serialized document.
        let raw = bytes::Bytes::from_static(br#"{ "b": 1,  "a": "x" }"#);
        let out = mask_whole(raw.clone(), &secret_only(true));
        assert_eq!(out.as_ptr(), raw.as_ptr());
        // The credential in plain text, in JSON, and spelled with JSON escapes.
        let text = mask_whole(
            bytes::Bytes::from_static(
                b"key=backend-key-123
",
            ),
            &secret_only(false),
        );
        assert_eq!(
            &text[..],
            b"key=***
"
        );
        let json = mask_whole(bytes::Bytes::from_static(br#"{"k":"backend-key-123"}"#), &secret_only(true));
        assert_eq!(&json[..], br#"{"k":"***"}"#);
        let escaped = br#"{"k":"backend-key-123"}"#;
        let out = mask_whole(bytes::Bytes::from_static(escaped), &secret_only(true));
        assert_eq!(&out[..], br#"{"k":"***"}"#);
        // A detector applies to every body, text or JSON.
        let emails = Masking {
            masks: MaskPlan::new(vec![], vec![Detector::Email]),
            secrets: vec![],
            json: false,
            max_json: 1 << 20,
        };
        let out = mask_whole(
            bytes::Bytes::from_static(
                b"to ada@example.com
bye",
            ),
            &emails,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "to a***@example.com
bye"
        );
    }

    #[test]
    fn a_preview_is_masked_before_it_is_cut() {
        let masks = MaskPlan::new(vec![], vec![Detector::Email]);
        let text = format!("{} ada.lovelace@example.com and more", "x".repeat(10));
        // Cut inside the address: what is kept must not show its start unmasked.
        let preview = masked_preview(&masks, &text, 16);
        assert_eq!(preview.len(), 16);
        assert!(!preview.contains("ada.l"), "{preview}");
        assert!(preview.starts_with("xxxxxxxxxx a***"), "{preview}");
        // A cut inside a multi-byte character keeps what comes before it.
        assert_eq!(masked_preview(&MaskPlan::default(), "aé", 2), "a");
    }
}
