//! The commonest request, a GET without a body on a kept-alive HTTP/1.1
//! connection, read and answered by the gateway's own code instead of
//! hyper's server, whose connection machinery (its dispatcher, its
//! buffers, its body channel) took about 4.5% of the gateway's
//! instructions for a small GET (README, "Plain GETs").
//!
//! Only what is plainly such a request is served here; anything else is
//! handed to hyper with the bytes read so far, before a byte of it is
//! answered, and hyper serves the rest of that stretch of the connection.
//! Both parse with httparse in its default configuration, so the two cannot
//! read one head two ways: a head is served here only if httparse reads it
//! whole, within `max_header_bytes` and the headers this module has room
//! for, as `GET` in origin form over HTTP/1.1, with no `Transfer-Encoding`,
//! `Expect` or `Upgrade` header, no `Content-Length` but one plain number
//! up to [`SHORT_BODY`] whose body has come whole with the head (since
//! 2026-12-06: bashio's `{}`, which curl sends in one piece with the
//! head; it is read with the head and sent on with the request), no `Connection`
//! header but `keep-alive` or `close` (since 2026-12-05, night: a client
//! with a connection a request, such as Python's `urllib`, sends `close`;
//! it is answered with `connection: close` and the connection ends, as
//! hyper does), and names, values and target that the `http` crate takes
//! as they are. Every malformed or oversized head thus reaches
//! hyper, which answers it (400, 414, 431) as it always has.
//!
//! Answers are written as hyper writes them for such a request: a status
//! line with the canonical reason, the headers in lower case, `date` when
//! the answer has none, and `content-length` (from the answer's header or
//! its body's exact size) or else chunked framing; no body for 204 and 304.
//! The connection's timeouts are the same [`crate::idle`] deadlines; a client
//! that hangs up while its request waits on the upstream or on the next
//! piece of a streamed answer drops the request, as with hyper.

use std::future::{poll_fn, Future};
use std::io::{IoSlice, Write};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::header::{self, HeaderName, HeaderValue};
use http::{request, HeaderMap, Method, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::caller::TOKEN_HEADERS;
use crate::forwarding::{
    declared_length, keep_spare_head, keep_spare_header_map, lists, plain_decimal, spare_head,
    spare_header_map, ClientBody, Peer,
};
use crate::gateway::Gateway;
use crate::idle::{Activity, ClientIo, Deadlines, Expiry, InFlight, Next};

/// The most headers a head served here may have (fewer if `max_headers`
/// says so); a head with more goes to hyper, which applies the limit.
const HEADERS_HERE: usize = 64;

/// hyper's limit on a request target; a longer one goes to hyper (414).
const MAX_TARGET: usize = u16::MAX as usize - 1;

/// The read buffer's first size, and how much it grows by.
const READ_CHUNK: usize = 4096;

/// The longest body a GET served here may have. bashio, the library shell
/// add-ons call the API with, sends `{}` with every GET (with
/// `Content-Length: 2`); such a body is served here when it has come whole
/// with its head (curl sends them in one piece), read with it and sent on
/// with the request. Any other body goes to hyper.
const SHORT_BODY: usize = 1024;

/// The start of HTTP/2's connection preface (RFC 9113, 3.4), sent first
/// by a client that assumes HTTP/2 without asking ("prior knowledge").
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\n";

/// The gateway's answer to it, in HTTP/2's own framing: the empty
/// SETTINGS frame a server's side of the connection must begin with, then
/// a GOAWAY with no stream processed and the error HTTP_1_1_REQUIRED
/// (0xd), which tells the client to come again over HTTP/1.1 (curl 7.88,
/// with prior knowledge, reports it and does not).
const HTTP2_GOAWAY: [u8; 26] = [
    0, 0, 0, 4, 0, 0, 0, 0, 0, // SETTINGS: length 0, flags 0, stream 0
    0, 0, 8, 7, 0, 0, 0, 0, 0, // GOAWAY: length 8, flags 0, stream 0
    0, 0, 0, 0, // the last stream processed: none
    0, 0, 0, 0x0d, // HTTP_1_1_REQUIRED
];

/// How long, after its GOAWAY, what an HTTP/2 client sends is read and
/// dropped: a socket closed with bytes unread sends a reset rather than
/// an end, and a reset discards what the kernel has not yet sent, and on
/// some systems what the client has not yet read. (Not tested: on
/// loopback with Linux the GOAWAY reaches the client either way.)
const HTTP2_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// How a stretch of the connection served here ended.
pub(crate) enum Stretch {
    /// The connection is closed: the client went, an answer could not be
    /// written whole, or the server stops.
    Closed,
    /// A deadline closes the connection; its socket goes with it, to be
    /// dropped once the close is recorded (a client given up on is then
    /// reset, see `server::close`).
    Expired(Expiry, ClientIo),
    /// Idle long enough (or hyper connections crowded): the socket is
    /// kept, nothing else.
    Parked(ClientIo),
    /// A request this module does not serve: hyper serves it, from the
    /// bytes given back in the socket on. `stopping`: the server stops, so
    /// hyper should finish that request and close.
    HandOver { io: ClientIo, stopping: bool },
}

/// What a stretch needs of its connection.
pub(crate) struct Served<'a> {
    pub(crate) gateway: &'a Arc<Gateway>,
    pub(crate) activity: &'a Arc<Activity>,
    pub(crate) peer: &'a Peer,
    /// The client's address, for log lines.
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_headers: usize,
}

/// Why the connection ends in the middle of a request.
enum End {
    Closed,
    Expired(Expiry),
}

/// A head as httparse read it. (Returned once a request and taken apart
/// at once: boxing the large variant would cost an allocation a request.)
#[allow(clippy::large_enum_variant)]
enum Parsed {
    /// A request served here, its head taken out of the buffer, and its
    /// short body if it has one (see [`SHORT_BODY`]).
    Plain(request::Parts, Option<Bytes>),
    /// Not all of the head has come.
    Partial,
    /// Anything else: for hyper.
    Other,
}

/// Serves plain GETs on `io` for as long as the client sends them; see
/// the module's comment. `stopped` resolves once when the server stops;
/// `stopping` says it has. From then on, the request in flight (or whose
/// head has begun) is answered with `connection: close`, and the
/// connection closes.
pub(crate) async fn serve<S: Future<Output = ()> + Unpin>(
    io: ClientIo,
    served: &Served<'_>,
    deadlines: &mut Deadlines,
    stopped: &mut S,
    stopping: &mut bool,
) -> Stretch {
    let mut connection = Connection {
        io,
        addr: served.addr,
        read: BytesMut::with_capacity(READ_CHUNK),
        scanned: 0,
        activity: served.activity,
        room: served.max_header_bytes,
        max_headers: served.max_headers,
        stopped,
        stopping,
    };
    match connection.serve(served, deadlines).await {
        Ok(()) => connection.leave(),
        Err(End::Closed) => Stretch::Closed,
        Err(End::Expired(expiry)) => Stretch::Expired(expiry, connection.io),
    }
}

/// The connection while this module serves it.
struct Connection<'a, S> {
    io: ClientIo,
    /// The client's address, for log lines.
    addr: std::net::SocketAddr,
    /// What the client sent and no request has taken yet.
    read: BytesMut,
    /// How much of `read` is known to hold no end of a head.
    scanned: usize,
    activity: &'a Activity,
    /// The most bytes read ahead of the request being served, and of a
    /// head (`max_header_bytes`).
    room: usize,
    max_headers: usize,
    stopped: &'a mut S,
    stopping: &'a mut bool,
}

/// Reads what the client sent into `read`: `false` once it has closed its
/// side or the connection failed.
async fn read_into(io: &mut ClientIo, read: &mut BytesMut) -> bool {
    if read.capacity() - read.len() < READ_CHUNK / 4 {
        read.reserve(READ_CHUNK);
    }
    matches!(io.read_buf(read).await, Ok(count) if count > 0)
}

impl<S: Future<Output = ()> + Unpin> Connection<'_, S> {
    /// Serves requests until one is not plain or the connection may park
    /// (`Ok`), or the connection ends.
    async fn serve(&mut self, served: &Served<'_>, deadlines: &mut Deadlines) -> Result<(), End> {
        loop {
            let Some((parts, body)) = self.next_head(deadlines).await? else {
                return Ok(());
            };
            let in_flight = InFlight::start(served.activity, true);
            // A request that says `Connection: close` is the last.
            let asked_to_close = wants_close(&parts.headers);
            let body = body.map(ClientBody::Whole);
            // Pinned where it is made: the future is large (over 2 KiB),
            // and each move of it is a copy.
            let answering = pin!(served
                .gateway
                .handle_parts(parts, body, served.peer.clone()));
            let answer = self.watching(deadlines, answering).await?;
            let closing = *self.stopping || asked_to_close || wants_close(answer.headers());
            let whole = self.write_answer(answer, closing, deadlines).await?;
            if !whole || closing || *self.stopping {
                return Err(self.close_in_order().await);
            }
            drop(in_flight);
        }
    }

    /// The next plain request's head (and short body), once it has come
    /// whole; `None` when the stretch ends here (see [`Connection::leave`]).
    async fn next_head(
        &mut self,
        deadlines: &mut Deadlines,
    ) -> Result<Option<(request::Parts, Option<Bytes>)>, End> {
        loop {
            if !self.read.is_empty() {
                let parsed = match may_be_whole(&self.read, &mut self.scanned) {
                    true => parse(&mut self.read, self.room, self.max_headers),
                    false => Parsed::Partial,
                };
                match parsed {
                    Parsed::Plain(parts, body) => {
                        self.scanned = 0;
                        return Ok(Some((parts, body)));
                    }
                    Parsed::Partial if self.read.len() < self.room => {}
                    Parsed::Other if self.read.starts_with(HTTP2_PREFACE) => {
                        return Err(self.refuse_http2(deadlines).await);
                    }
                    Parsed::Partial | Parsed::Other => return Ok(None),
                }
            } else if *self.stopping {
                return Err(self.close_in_order().await);
            }
            // What the client has sent comes before a stop: a request
            // already sent is answered (with `connection: close`).
            let next = tokio::select! {
                biased;
                read = read_into(&mut self.io, &mut self.read) => match read {
                    true => continue,
                    false => return Err(End::Closed),
                },
                () = &mut *self.stopped, if !*self.stopping => {
                    *self.stopping = true;
                    continue;
                }
                next = deadlines.next(self.activity, true) => next,
            };
            match next {
                Next::Park => return Ok(None),
                Next::CheckHangup => {}
                Next::Expired(expiry) => return Err(End::Expired(expiry)),
            }
        }
    }

    /// Answers a client that began in HTTP/2 (which hyper, set for
    /// HTTP/1 alone, would close without a word) with a GOAWAY saying
    /// HTTP/1.1 is required, and closes; see [`HTTP2_GOAWAY`].
    async fn refuse_http2(&mut self, deadlines: &mut Deadlines) -> End {
        crate::metrics::unparsed_request("http2");
        tracing::info!(
            peer = %self.addr,
            "a client began in HTTP/2 without asking (prior knowledge): answered GOAWAY HTTP_1_1_REQUIRED, as the gateway speaks HTTP/1.1"
        );
        if let Err(end) = self
            .write(deadlines, &mut [IoSlice::new(&HTTP2_GOAWAY)])
            .await
        {
            return end;
        }
        let _ = self.io.shutdown().await;
        let io = &mut self.io;
        let read = &mut self.read;
        let _ = tokio::time::timeout(HTTP2_LINGER, async move {
            loop {
                read.clear();
                if !read_into(io, read).await {
                    break;
                }
            }
        })
        .await;
        End::Closed
    }

    /// Closes the connection in order: the client gets every byte sent.
    async fn close_in_order(&mut self) -> End {
        let _ = self.io.shutdown().await;
        End::Closed
    }

    /// Ends the stretch with the socket kept: parked if nothing of a next
    /// request has come, else handed to hyper with what has.
    fn leave(self) -> Stretch {
        match self.read.is_empty() {
            true => Stretch::Parked(self.io),
            false => Stretch::HandOver {
                io: self.io.parked(self.read.freeze()),
                stopping: *self.stopping,
            },
        }
    }

    /// Runs `work` while the client is watched: the connection ends if
    /// the client hangs up or a deadline passes first. Bytes the client
    /// sends meanwhile (the next request) are kept, up to the head limit;
    /// a stop is noted.
    async fn watching<T>(
        &mut self,
        deadlines: &mut Deadlines,
        mut work: Pin<&mut impl Future<Output = T>>,
    ) -> Result<T, End> {
        loop {
            let room = self.read.len() < self.room;
            let next = tokio::select! {
                biased;
                done = &mut work => return Ok(done),
                () = &mut *self.stopped, if !*self.stopping => {
                    *self.stopping = true;
                    continue;
                }
                read = read_into(&mut self.io, &mut self.read), if room => match read {
                    true => continue,
                    false => return Err(End::Closed),
                },
                next = deadlines.next(self.activity, true) => next,
            };
            match next {
                Next::Expired(expiry) => return Err(End::Expired(expiry)),
                // With the buffer full, the socket's readiness tells.
                Next::CheckHangup => {
                    if poll_fn(|cx| Poll::Ready(self.io.client_hung_up(cx))).await {
                        return Err(End::Closed);
                    }
                }
                Next::Park => {}
            }
        }
    }

    /// Writes `bufs` whole, unless the send timeout passes first; a stop is
    /// noted.
    async fn write(
        &mut self,
        deadlines: &mut Deadlines,
        mut bufs: &mut [IoSlice<'_>],
    ) -> Result<(), End> {
        while bufs.iter().any(|buf| !buf.is_empty()) {
            let written = tokio::select! {
                biased;
                written = self.io.write_vectored(bufs) => written,
                () = &mut *self.stopped, if !*self.stopping => {
                    *self.stopping = true;
                    continue;
                }
                next = deadlines.next(self.activity, true) => match next {
                    Next::Expired(expiry) => return Err(End::Expired(expiry)),
                    Next::CheckHangup | Next::Park => continue,
                },
            };
            match written {
                Ok(0) | Err(_) => return Err(End::Closed),
                Ok(written) => IoSlice::advance_slices(&mut bufs, written),
            }
        }
        Ok(())
    }

    /// Writes an answer; `Ok(false)` if its body ended early or failed, so
    /// that the connection must close. `closing` adds `connection: close`.
    async fn write_answer(
        &mut self,
        answer: Response<Body>,
        closing: bool,
        deadlines: &mut Deadlines,
    ) -> Result<bool, End> {
        let (head, mut body) = answer.into_parts();
        let mut out = spare_head();
        let framing = encode_head(head.status, head.headers, &body, closing, &mut out);
        let written = self
            .write_body(&mut out, framing, &mut body, deadlines)
            .await;
        keep_spare_head(out);
        written
    }

    /// Writes the encoded `head` and then the body; see [`Self::write_answer`].
    async fn write_body(
        &mut self,
        head: &mut Vec<u8>,
        framing: Framing,
        body: &mut Body,
        deadlines: &mut Deadlines,
    ) -> Result<bool, End> {
        if framing == Framing::None {
            self.write(deadlines, &mut [IoSlice::new(head)]).await?;
            return Ok(true);
        }
        let mut framer = Framer::new(framing);
        // A body at hand goes out with the head in one write; the head of
        // one that is not goes out before the wait for it.
        let mut at_hand = body.frame().now_or_never();
        loop {
            let frame = match at_hand.take() {
                Some(frame) => frame,
                None => {
                    if !head.is_empty() {
                        self.write(deadlines, &mut [IoSlice::new(head)]).await?;
                        head.clear();
                    }
                    self.watching(deadlines, pin!(body.frame())).await?
                }
            };
            let data = match frame {
                None => {
                    let end = framer.end();
                    let parts = [IoSlice::new(head), IoSlice::new(end.unwrap_or_default())];
                    self.write(deadlines, &mut { parts }).await?;
                    return Ok(end.is_some());
                }
                // Cut off: the client sees the body end short, after the
                // head if that has not gone yet (as hyper's server sends
                // it, and as the decision log records the answer).
                Some(Err(_)) => {
                    if !head.is_empty() {
                        self.write(deadlines, &mut [IoSlice::new(head)]).await?;
                    }
                    return Ok(false);
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    // Trailers are not sent (no client asked for them).
                    Err(_) => continue,
                },
            };
            let Some(piece) = framer.frame(data) else {
                return Ok(false);
            };
            let mut parts = [
                IoSlice::new(head),
                IoSlice::new(&piece.before),
                IoSlice::new(&piece.data),
                IoSlice::new(piece.after),
            ];
            self.write(deadlines, &mut parts).await?;
            head.clear();
        }
    }
}

/// Reads a head from the start of `read`; see the module's comment for
/// what is served. A head served here is taken out of `read`, and its
/// target and header values are cut out of it without a copy; anything
/// else leaves `read` as it was, for hyper.
fn parse(read: &mut BytesMut, max_header_bytes: usize, max_headers: usize) -> Parsed {
    // Left uninitialised: httparse writes the ones it fills. (Parsed as
    // `Request::parse` would, in httparse's default configuration.)
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADERS_HERE];
    let room = max_headers.min(HEADERS_HERE);
    let mut request = httparse::Request::new(&mut []);
    let parsing = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut request,
        read,
        &mut headers[..room],
    );
    let length = match parsing {
        Ok(httparse::Status::Complete(length)) if length <= max_header_bytes => length,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        _ => return Parsed::Other,
    };
    let (Some("GET"), Some(target), Some(1)) = (request.method, request.path, request.version)
    else {
        return Parsed::Other;
    };
    if !target.starts_with('/') || target.len() > MAX_TARGET {
        return Parsed::Other;
    }
    // Where the target and each header lie in the head, to cut them out
    // of it once it is taken out of `read`.
    // (In `u32`s: a head served here is within `max_header_bytes`, at most
    // 1 MiB.)
    let base = read.as_ptr() as usize;
    let at = |bytes: &[u8]| (bytes.as_ptr() as usize - base) as u32;
    let target = (at(target.as_bytes()), target.len() as u32);
    let mut spans = [(0, 0, 0, 0); HEADERS_HERE];
    let count = request.headers.len();
    let mut body_length = None;
    for (span, line) in spans.iter_mut().zip(request.headers.iter()) {
        if line.name.eq_ignore_ascii_case("content-length") {
            // One, a plain decimal no longer than a short body: else
            // hyper reads it.
            match (body_length, short_length(line.value)) {
                (None, Some(length)) => body_length = Some(length),
                _ => return Parsed::Other,
            }
        } else if !plain_header(line.name.as_bytes(), line.value) {
            return Parsed::Other;
        }
        *span = (
            at(line.name.as_bytes()),
            line.name.len() as u32,
            at(line.value),
            line.value.len() as u32,
        );
    }
    // A body not all come with its head goes to hyper with it.
    let body_length = body_length.unwrap_or(0);
    if read.len() - length < body_length {
        return Parsed::Other;
    }
    let head = read.split_to(length).freeze();
    match plain_parts(&head, target, &spans[..count]) {
        Some(parts) => {
            let body = (body_length > 0).then(|| read.split_to(body_length).freeze());
            Parsed::Plain(parts, body)
        }
        None => {
            give_back(read, head);
            Parsed::Other
        }
    }
}

/// A `Content-Length` value that is one plain decimal number no larger
/// than [`SHORT_BODY`] (optional whitespace aside, as httparse leaves it);
/// `None` for anything else (a list, a sign, a longer body), which hyper
/// reads or refuses.
fn short_length(value: &[u8]) -> Option<usize> {
    let length = plain_decimal(value.trim_ascii(), 4)? as usize;
    (length <= SHORT_BODY).then_some(length)
}

/// Whether `read` may hold a whole head: whether it has an empty line
/// (`\n\n` or `\n\r\n`) in it. Only what came after `scanned` (and the
/// two bytes before, which an end may straddle) is looked at, and
/// `scanned` moves on: a head sent a few bytes at a time is scanned once,
/// as hyper's server scans it, rather than parsed again from its start at
/// each piece.
fn may_be_whole(read: &[u8], scanned: &mut usize) -> bool {
    let from = scanned.saturating_sub(2).min(read.len());
    *scanned = read.len();
    let rest = &read[from..];
    // (memchr finds each line end many bytes at a time; a loop over the
    // bytes was 2% of a kept-alive GET's instructions.)
    memchr::memchr_iter(b'\n', rest).any(|at| match rest.get(at + 1) {
        Some(b'\n') => true,
        Some(b'\r') => rest.get(at + 2) == Some(&b'\n'),
        _ => false,
    })
}

/// Whether a header (other than `Content-Length`, see [`short_length`])
/// leaves a request plain: not one that frames a body otherwise or asks
/// for an upgrade, and no `Connection` but `keep-alive` or `close`.
/// (Asked of the head as httparse read it, before it is taken out of the
/// buffer: a request that is not plain goes to hyper untouched.)
fn plain_header(name: &[u8], value: &[u8]) -> bool {
    const FRAMING: [&[u8]; 3] = [b"transfer-encoding", b"expect", b"upgrade"];
    if FRAMING
        .iter()
        .any(|framing| name.eq_ignore_ascii_case(framing))
    {
        return false;
    }
    if name.eq_ignore_ascii_case(b"connection") {
        let token = value.trim_ascii();
        return token.eq_ignore_ascii_case(b"keep-alive") || token.eq_ignore_ascii_case(b"close");
    }
    true
}

/// The parts of a plain request from its `head`, given where its target
/// and headers lie in it; `None` if the `http` crate refuses a piece of it
/// that httparse let through (a target with a backtick, say). Every piece
/// it made is dropped by then.
fn plain_parts(head: &Bytes, target: (u32, u32), spans: &[Span]) -> Option<request::Parts> {
    let piece = |(at, length): (u32, u32)| (at as usize)..(at + length) as usize;
    let uri = Uri::from_maybe_shared(head.slice(piece(target))).ok()?;
    let mut map = spare_header_map(spans.len());
    for &(name, name_length, value, value_length) in spans {
        let (Ok(name), Ok(value)) = (
            header_name(&head[piece((name, name_length))]),
            HeaderValue::from_maybe_shared(head.slice(piece((value, value_length)))),
        ) else {
            keep_spare_header_map(map);
            return None;
        };
        map.append(name, value);
    }
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = Method::GET;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.headers = map;
    Some(parts)
}

/// Where a header's name and value lie in its head: the offset and length
/// of each.
type Span = (u32, u32, u32, u32);

/// A header name as [`HeaderName::from_bytes`] reads it, but the
/// gateway's own token headers, which every add-on's request carries,
/// without the copy that makes of a name it does not know.
fn header_name(name: &[u8]) -> Result<HeaderName, http::header::InvalidHeaderName> {
    match TOKEN_NAMES
        .iter()
        .find(|known| name.eq_ignore_ascii_case(known.as_str().as_bytes()))
    {
        Some(known) => Ok(known.clone()),
        None => HeaderName::from_bytes(name),
    }
}

/// The token headers that are not standard names (`Authorization` is).
const TOKEN_NAMES: [HeaderName; 2] = [
    HeaderName::from_static(TOKEN_HEADERS[0]),
    HeaderName::from_static(TOKEN_HEADERS[1]),
];

/// Puts a `head` taken out of `read` back in front of what followed it,
/// by a copy (the two still share one buffer, so neither can take the
/// other back). Only for a head the `http` crate refused after httparse
/// took it: a target with a backtick or `<` in it, say (hyper then
/// refuses it too).
fn give_back(read: &mut BytesMut, head: Bytes) {
    let mut whole = BytesMut::with_capacity(head.len() + read.len());
    whole.extend_from_slice(&head);
    whole.extend_from_slice(read);
    *read = whole;
}

/// Whether a `Connection` header (an answer's, or a request's) asks to
/// close.
fn wants_close(headers: &HeaderMap) -> bool {
    lists(headers, header::CONNECTION, "close")
}

/// How an answer's body is delimited on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Framing {
    /// No body (204, 304).
    None,
    /// This many bytes.
    Length(u64),
    /// Chunked.
    Chunked,
}

/// Writes the status line and headers of an answer into `out`, and says
/// how its body goes. The header map is kept for the next request's.
fn encode_head(
    status: StatusCode,
    headers: HeaderMap,
    body: &Body,
    closing: bool,
    out: &mut Vec<u8>,
) -> Framing {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    out.extend_from_slice(b"\r\n");
    let declared = declared_length(&headers);
    let framing = if matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED) {
        Framing::None
    } else if http_body::Body::is_end_stream(body) {
        Framing::Length(0)
    } else if let Some(length) = declared.or(http_body::Body::size_hint(body).exact()) {
        Framing::Length(length)
    } else {
        Framing::Chunked
    };
    // In hyper's order: the answer's headers, a declared length in its
    // place (the framing is this module's to say: hop-by-hop headers never
    // reach here from the upstream), `connection: close` after them, then
    // any other length or framing, then the date.
    let length_in_place = declared.is_some() && framing != Framing::Length(0);
    let mut framed = framing == Framing::None;
    let mut dated = false;
    for (name, value) in &headers {
        match *name {
            header::CONTENT_LENGTH if length_in_place && !framed => {
                framing.write(out);
                framed = true;
            }
            header::CONTENT_LENGTH | header::TRANSFER_ENCODING => {}
            _ => {
                dated |= *name == header::DATE;
                line(out, name.as_str().as_bytes(), value.as_bytes());
            }
        }
    }
    if closing && !wants_close(&headers) {
        line(out, b"connection", b"close");
    }
    if !framed {
        framing.write(out);
    }
    if !dated {
        DATE.with(|date| line(out, b"date", &date.now()));
    }
    out.extend_from_slice(b"\r\n");
    keep_spare_header_map(headers);
    framing
}

impl Framing {
    /// The header line that says this framing.
    fn write(self, out: &mut Vec<u8>) {
        match self {
            Framing::None => {}
            Framing::Length(length) => {
                line(
                    out,
                    b"content-length",
                    itoa::Buffer::new().format(length).as_bytes(),
                );
            }
            Framing::Chunked => line(out, b"transfer-encoding", b"chunked"),
        }
    }
}

/// One header line.
fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// What goes on the wire for one piece of a body.
#[derive(Default)]
struct Piece {
    before: Vec<u8>,
    data: Bytes,
    after: &'static [u8],
}

/// Frames body pieces as the answer's framing says.
struct Framer {
    framing: Framing,
    left: u64,
}

impl Framer {
    fn new(framing: Framing) -> Framer {
        let left = match framing {
            Framing::Length(length) => length,
            _ => 0,
        };
        Framer { framing, left }
    }

    /// A piece of the body as it goes out; `None` if it runs past the
    /// declared length (the connection then closes).
    fn frame(&mut self, data: Bytes) -> Option<Piece> {
        match self.framing {
            Framing::None => Some(Piece::default()),
            Framing::Length(_) => {
                let length = data.len() as u64;
                if length > self.left {
                    return None;
                }
                self.left -= length;
                Some(Piece {
                    data,
                    ..Piece::default()
                })
            }
            Framing::Chunked if data.is_empty() => Some(Piece::default()),
            Framing::Chunked => {
                // Upper-case hex, as hyper writes chunk sizes.
                let mut before = Vec::with_capacity(18);
                let _ = write!(before, "{:X}\r\n", data.len());
                Some(Piece {
                    before,
                    data,
                    after: b"\r\n",
                })
            }
        }
    }

    /// What ends the body, or `None` if it ended short of its length.
    fn end(&self) -> Option<&'static [u8]> {
        match self.framing {
            Framing::Chunked => Some(b"0\r\n\r\n"),
            Framing::Length(_) if self.left > 0 => None,
            _ => Some(b""),
        }
    }
}

/// The `date` header's value, made once a second per thread.
struct DateCache {
    value: std::cell::RefCell<(u64, [u8; 29])>,
}

thread_local! {
    static DATE: DateCache = const {
        DateCache { value: std::cell::RefCell::new((u64::MAX, [0; 29])) }
    };
}

impl DateCache {
    fn now(&self) -> [u8; 29] {
        let now = SystemTime::now();
        let second = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let mut value = self.value.borrow_mut();
        if value.0 != second {
            let text = httpdate::fmt_http_date(now);
            if let Ok(bytes) = <[u8; 29]>::try_from(text.as_bytes()) {
                *value = (second, bytes);
            }
        }
        value.1
    }
}

#[cfg(test)]
#[path = "plain_tests.rs"]
mod tests;
