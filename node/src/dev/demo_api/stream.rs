//! The demo API's streaming routes: Server-Sent Events produced over time, and a big
//! body produced chunk by chunk. Neither is built in memory first, so a client (or a
//! gateway in between) sees the first bytes before the last exist.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio_stream::StreamExt;

use super::{Chunk, DemoApi, number_param, orders};

/// Bounds on `/events` and `/big` parameters, so a typo cannot tie the API up forever.
const MAX_EVENTS: u64 = 100_000;
const MAX_EVERY_MS: u64 = 60_000;
const MAX_BIG: u64 = 64 * 1024 * 1024 * 1024;
/// `/big` sends this much per chunk.
const CHUNK: usize = 64 * 1024;

/// `GET /events?n=5&every_ms=100`: `n` events (default 5), one every `every_ms`
/// (default 100), the first at once; each is written when produced:
///
/// ```text
/// id: 1
/// event: order
/// data: {"seq":1,"of":5,"order_id":2,"email":"grace@example.com"}
///
/// ```
pub async fn events(State(api): State<DemoApi>, RawQuery(query): RawQuery) -> Response {
    let n = match number_param(query.as_deref(), "n", 5, MAX_EVENTS) {
        Ok(n) => n,
        Err(refused) => return refused.into_response(),
    };
    let every = match number_param(query.as_deref(), "every_ms", 100, MAX_EVERY_MS) {
        Ok(ms) => Duration::from_millis(ms.max(1)),
        Err(refused) => return refused.into_response(),
    };
    let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(every));
    let mut seq = 0u64;
    let stream = ticks.take(usize::try_from(n).unwrap_or(usize::MAX)).map(move |_| -> Chunk {
        seq += 1;
        let mut data = orders::pick(&api, seq);
        if let Some(obj) = data.as_object_mut() {
            obj.insert("seq".into(), seq.into());
            obj.insert("of".into(), n.into());
        }
        let data = json!(data);
        Ok(Bytes::from(format!("id: {seq}\nevent: order\ndata: {data}\n\n")))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /big?bytes=N`: N bytes (default 1 MiB) of a repeated text line, in 64 KiB
/// chunks, with a Content-Length; `&chunked=1` leaves the length out, so HTTP/1.1
/// sends it chunked.
pub async fn big(RawQuery(query): RawQuery) -> Response {
    let total = match number_param(query.as_deref(), "bytes", 1024 * 1024, MAX_BIG) {
        Ok(n) => n,
        Err(refused) => return refused.into_response(),
    };
    let chunked = number_param(query.as_deref(), "chunked", 0, 1).unwrap_or(0) == 1;
    let line = b"portcullis demo-api big body: the same 64 bytes over and over...\n";
    let block = Bytes::from(line.iter().copied().cycle().take(CHUNK).collect::<Vec<u8>>());
    let chunk = CHUNK as u64;
    let count = total.div_ceil(chunk);
    let stream = tokio_stream::iter(0..count).map(move |i| -> Chunk {
        let len = (total - i * chunk).min(chunk);
        Ok(block.slice(..usize::try_from(len).unwrap_or(CHUNK)))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    if !chunked {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    }
    response
}
