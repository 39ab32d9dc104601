//! The mock upstream's long answers: Home Assistant's event stream, which
//! holds its last event until the test releases it, and backup downloads of
//! any size, made chunk by chunk from a fixed byte pattern.

use std::convert::Infallible;
use std::num::ParseIntError;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{future, stream, StreamExt};
use http_body::{Frame, SizeHint};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// Size of each chunk of a pattern download.
const CHUNK: usize = 64 * 1024;

/// The pattern repeats every 251 bytes; a prime, so no power-of-two chunk
/// or buffer size lines up with it and a misplaced chunk shows in the hash.
const PERIOD: u8 = 251;

/// How long an event stream waits for `MockState::release_streams`.
const STREAM_WAIT: Duration = Duration::from_secs(30);

const READY_EVENT: &[u8] = b"event: ready\ndata: {\"n\":1}\n\n";
const DONE_EVENT: &[u8] = b"event: done\ndata: {\"n\":2}\n\n";

/// A body of `len` pattern bytes, `byte[i] = (i % 251) as u8`, made 64 KiB
/// at a time; its exact size hint makes hyper send a content-length.
struct PatternBody {
    sent: u64,
    len: u64,
}

// --- Event stream ----------------------------------------------------------

/// `GET /core/api/stream`: `text/event-stream` that sends the `ready` event
/// at once, then the `done` event once `release` changes, then ends.
///
/// Deliberate limit: if nothing is released within 30 s (or the state is
/// gone), the stream ends without its `done` event, so a test can tell.
pub(super) fn event_stream(mut release: watch::Receiver<u64>) -> Response {
    let ready = stream::once(future::ready(Bytes::from_static(READY_EVENT)));
    let done = async move {
        let released = tokio::time::timeout(STREAM_WAIT, release.changed()).await;
        let last = matches!(released, Ok(Ok(()))).then_some(Bytes::from_static(DONE_EVENT));
        stream::iter(last)
    };
    let events = ready
        .chain(stream::once(done).flatten())
        .map(Ok::<_, Infallible>);

    let headers = [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    (headers, Body::from_stream(events)).into_response()
}

// --- Pattern downloads -----------------------------------------------------

/// Lower-case hex SHA-256 of the first `n` bytes of the download pattern,
/// `byte[i] = (i % 251) as u8`, hashed chunk by chunk without holding them.
pub fn pattern_sha256(n: u64) -> String {
    let mut digest = Sha256::new();
    let mut offset = 0;
    while offset < n {
        let chunk = pattern_chunk(offset, n);
        offset += chunk.len() as u64;
        digest.update(&chunk);
    }
    hex::encode(digest.finalize())
}

/// The `size` a download's query asks for: `None` without one (the first
/// `size` counts), an error when it is not a whole number of bytes.
pub(super) fn requested_size(query: Option<&str>) -> Option<Result<u64, ParseIntError>> {
    query?.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (name == "size").then(|| value.parse())
    })
}

/// A tar download of exactly `len` pattern bytes, streamed.
pub(super) fn pattern_download(len: u64) -> Response {
    let mut response = Response::new(Body::new(PatternBody { sent: 0, len }));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    response
}

/// The pattern bytes from `offset`, at most one chunk and never past `len`.
fn pattern_chunk(offset: u64, len: u64) -> Vec<u8> {
    let size = len.saturating_sub(offset).min(CHUNK as u64) as usize;
    let mut byte = (offset % u64::from(PERIOD)) as u8;
    let mut chunk = Vec::with_capacity(size);
    for _ in 0..size {
        chunk.push(byte);
        byte = if byte + 1 == PERIOD { 0 } else { byte + 1 };
    }
    chunk
}

impl http_body::Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let body = self.get_mut();
        if body.sent >= body.len {
            return Poll::Ready(None);
        }
        let chunk = pattern_chunk(body.sent, body.len);
        body.sent += chunk.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len.saturating_sub(self.sent))
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::{pattern_chunk, pattern_sha256, requested_size, CHUNK};

    #[test]
    fn the_pattern_hash_matches_the_pattern_held_whole() {
        for n in [0, 1, 250, 251, 252, CHUNK as u64, CHUNK as u64 * 3 + 7] {
            let whole: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            assert_eq!(
                pattern_sha256(n),
                hex::encode(Sha256::digest(&whole)),
                "{n}"
            );
        }
    }

    #[test]
    fn a_chunk_continues_the_pattern_and_stops_at_the_length() {
        let chunk = pattern_chunk(500, 510);
        assert_eq!(chunk, [249, 250, 0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(pattern_chunk(0, u64::MAX).len(), CHUNK);
        assert!(pattern_chunk(10, 10).is_empty());
    }

    #[test]
    fn the_first_size_in_the_query_counts_and_must_be_a_number() {
        assert_eq!(requested_size(Some("a=1&size=42&size=7")), Some(Ok(42)));
        assert_eq!(requested_size(Some("sizes=3")), None);
        assert_eq!(requested_size(None), None);
        assert!(matches!(requested_size(Some("size=-1")), Some(Err(_))));
        assert!(matches!(requested_size(Some("size")), Some(Err(_))));
    }
}
