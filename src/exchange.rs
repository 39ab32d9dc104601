//! The gateway's own HTTP/1.1 client for the commonest upstream exchange: a
//! GET or HEAD without a body and without an upgrade (or a GET with a
//! short body held whole, sent with its head).
//!
//! Hyper's client runs every upstream connection as a task of its own and
//! hands each request, answer and piece of body between that task and the
//! request's through channels; for a small GET that was a quarter of the
//! gateway's instructions. Here the request's own task writes the head and
//! reads the answer, and the answer's body reads the socket as the client
//! takes it. Heads are parsed by `httparse` (the parser hyper uses); this
//! module adds the framing of RFC 9112, section 6, strictly: an answer
//! whose length cannot be trusted is refused, and a connection goes back to
//! the pool only after an answer read to its exact end with nothing after it.
//! Requests with a body and upgrades go through hyper's client
//! (`upstream.rs`), which shares the pool.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Version};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::due::DueTimer;

/// Most bytes of an answer's head (status line and headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most interim (1xx) answers before the final one.
const MAX_INTERIM: usize = 16;
/// Most header lines in an answer's head (hyper's client allows as many).
const MAX_HEADERS: usize = 100;
/// Room asked for each read of a head.
const HEAD_READ: usize = 8 * 1024;
/// Largest read of a body.
const BODY_READ: usize = 64 * 1024;
/// Longest chunk-size line before its extensions (hex digits, spaces).
const MAX_CHUNK_SIZE: usize = 1024;
/// Most bytes of chunk extensions (what follows a chunk size's `;`, to the
/// line's end) in one body, all chunks together: what hyper's client
/// takes (its limit is 16 KiB, reached at the last byte), so that the two
/// clients read one answer alike. They are dropped.
const MAX_CHUNK_EXTENSIONS: usize = 16 * 1024 - 1;
/// The trailer fields after the last chunk (they are dropped) are taken
/// as hyper's client takes them, so that the two clients read one answer
/// alike: fewer than this many bytes, their line ends and the empty line
/// after them included (hyper's `TRAILER_LIMIT`), ...
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// ... at most this many of them (hyper's default `max_headers`), each a
/// header field httparse reads (no line folded onto the one before) and
/// the `http` crate takes.
const MAX_TRAILER_FIELDS: usize = 100;

/// Why an exchange gave no usable answer.
#[derive(Debug, PartialEq)]
pub(crate) enum Failure {
    /// The connection failed or closed before a single byte of an answer:
    /// on a kept-alive connection, most likely the upstream dropping it as
    /// idle while the request was on its way.
    NoAnswer,
    /// The answer broke off or could not be read (bad head, untrustworthy
    /// length, head too large).
    Broken,
    /// No whole head came before the answer's deadline.
    TimedOut,
}

/// How an answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Framing {
    /// No body: HEAD, 1xx, 204, 304.
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding` ending in chunked.
    Chunked,
    /// Read until the upstream closes (no length given, or a transfer
    /// coding other than chunked last).
    UntilClose,
}

/// An answer's head as read, its body still on the connection.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) response: Response<()>,
    pub(crate) framing: Framing,
    /// Whether the connection may carry another exchange after this body.
    pub(crate) keep_alive: bool,
}

/// An upstream connection this module exchanges on, and the bytes read
/// from it that are not yet used. Pooled only with nothing unread.
#[derive(Debug)]
pub(crate) struct PlainConn {
    stream: TcpStream,
    unread: BytesMut,
    /// The answers' deadline, kept set from one request to the next.
    answer_timer: DueTimer,
}

impl PlainConn {
    pub(crate) fn new(stream: TcpStream) -> PlainConn {
        PlainConn {
            stream,
            unread: BytesMut::new(),
            answer_timer: DueTimer::default(),
        }
    }

    /// The connection's socket, for handing it to hyper's client.
    pub(crate) fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Whether an idle connection is still open and has sent nothing
    /// unasked. If the runtime has seen nothing to read on it since its
    /// last read left it empty, it is taken as open without a system
    /// call (as hyper's client takes its connections: a hang-up not yet
    /// seen shows as no answer, and a bodiless request goes out again);
    /// otherwise one non-blocking read decides: anything but "nothing to
    /// read yet" (the upstream closed it, or wrote out of turn) makes it
    /// unusable.
    pub(crate) fn is_open(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if self.stream.poll_read_ready(&mut cx).is_pending() {
            return true;
        }
        let mut byte = [0u8; 1];
        matches!(self.stream.try_read(&mut byte), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
    }

    /// Sends a request `head` (as it goes on the wire) and reads the answer's
    /// head, skipping interim (1xx) answers other than 101, unless `due`
    /// (if any) passes first. `head_only` says the request was a HEAD,
    /// whose answer has no body whatever its headers say. A connection
    /// that timed out is not to be used again.
    pub(crate) async fn exchange(
        &mut self,
        head: &[u8],
        head_only: bool,
        due: Option<Instant>,
    ) -> Result<Head, Failure> {
        let mut timer = std::mem::take(&mut self.answer_timer);
        let answer = timer.before(due, self.answer(head, head_only)).await;
        self.answer_timer = timer;
        answer.unwrap_or(Err(Failure::TimedOut))
    }

    async fn answer(&mut self, head: &[u8], head_only: bool) -> Result<Head, Failure> {
        if self.stream.write_all(head).await.is_err() {
            return Err(Failure::NoAnswer);
        }
        let mut answered = false;
        let mut interim = 0;
        loop {
            if !self.unread.is_empty() {
                match read_head(&mut self.unread, head_only)? {
                    Some(Parsed::Interim) if interim < MAX_INTERIM => {
                        interim += 1;
                        continue;
                    }
                    Some(Parsed::Interim) => return Err(Failure::Broken),
                    Some(Parsed::Final(head)) => return Ok(head),
                    None if self.unread.len() > MAX_HEAD_BYTES => return Err(Failure::Broken),
                    None => {}
                }
            }
            match std::future::poll_fn(|cx| self.poll_fill(cx, HEAD_READ)).await {
                Ok(0) | Err(_) if answered => return Err(Failure::Broken),
                Ok(0) | Err(_) => return Err(Failure::NoAnswer),
                Ok(_) => answered = true,
            }
        }
    }

    /// Reads what the socket has, with room for at least `room` more bytes;
    /// `Ok(0)` is the end of the connection.
    fn poll_fill(&mut self, cx: &mut Context<'_>, room: usize) -> Poll<io::Result<usize>> {
        self.unread.reserve(room);
        let spare = self.unread.capacity() - self.unread.len();
        let (stream, unread) = (&self.stream, &mut self.unread);
        loop {
            // A read that takes less than it had room for left the socket
            // empty: it then reports "would block" to the runtime, which
            // forgets that the socket was readable (unless it noted more
            // since the read began), so that the next read waits for new
            // bytes instead of making a system call to find none, as
            // tokio's own reads do.
            let mut taken = None;
            let read = stream.try_io(Interest::READABLE, || {
                let read = stream.try_read_buf(unread)?;
                taken = Some(read);
                match read {
                    0 => Ok(0),
                    read if read < spare => Err(io::ErrorKind::WouldBlock.into()),
                    read => Ok(read),
                }
            });
            match (taken, read) {
                (Some(read), _) => return Poll::Ready(Ok(read)),
                (None, Err(error)) if error.kind() == io::ErrorKind::WouldBlock => {
                    ready!(stream.poll_read_ready(cx))?;
                }
                (None, read) => return Poll::Ready(read),
            }
        }
    }
}

enum Parsed {
    /// An interim answer, consumed.
    Interim,
    Final(Head),
}

/// Parses an answer's head from the start of `unread` and takes it out;
/// `None` while it is incomplete.
fn read_head(unread: &mut BytesMut, head_only: bool) -> Result<Option<Parsed>, Failure> {
    // Left uninitialised: httparse writes the ones it fills.
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let parsing = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        unread,
        &mut headers,
    );
    let length = match parsing {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Failure::Broken),
    };
    if length > MAX_HEAD_BYTES {
        return Err(Failure::Broken);
    }
    let status = parsed
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(Failure::Broken)?;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        unread.advance(length);
        return Ok(Some(Parsed::Interim));
    }
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    // Where each name and value lies in the head, so that the values can be
    // cut out of it without copying once it is taken out of `unread`.
    let base = unread.as_ptr() as usize;
    let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    for (span, header) in spans.iter_mut().zip(parsed.headers.iter()) {
        let at = |bytes: &[u8]| (bytes.as_ptr() as usize - base) as u32;
        *span = (
            at(header.name.as_bytes()),
            header.name.len() as u32,
            at(header.value),
            header.value.len() as u32,
        );
    }
    let count = parsed.headers.len();
    let head = unread.split_to(length).freeze();
    let mut map = crate::forwarding::spare_header_map(count);
    let mut seen = Seen::default();
    for &(name, name_len, value, value_len) in &spans[..count] {
        let (name, value) = (name as usize, value as usize);
        let name = HeaderName::from_bytes(&head[name..name + name_len as usize])
            .map_err(|_| Failure::Broken)?;
        let value = HeaderValue::from_maybe_shared(head.slice(value..value + value_len as usize))
            .map_err(|_| Failure::Broken)?;
        seen.note(&name, &value)?;
        map.append(name, value);
    }
    let (framing, keep_alive) = framing(&mut map, &seen, status, version, head_only)?;
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = map;
    Ok(Some(Parsed::Final(Head {
        response,
        framing,
        keep_alive,
    })))
}

/// What an answer's headers say about its framing, noted as they are read.
#[derive(Debug, Default)]
struct Seen {
    /// The length every `Content-Length` value agrees on.
    length: Option<u64>,
    /// `Content-Length` lines, and whether any was a list.
    length_lines: usize,
    length_listed: bool,
    /// The `Transfer-Encoding` lines, if any.
    codings: Option<Codings>,
    /// Whether `Connection` says close.
    close: bool,
}

impl Seen {
    /// Notes one header; an error if it is a `Content-Length` that is not a
    /// decimal number or disagrees with an earlier one.
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<(), Failure> {
        if *name == CONTENT_LENGTH {
            self.length_lines += 1;
            for item in value.as_bytes().split(|byte| *byte == b',') {
                self.length_listed |= item.len() != value.len();
                let length = crate::forwarding::plain_decimal(item.trim_ascii(), 19)
                    .ok_or(Failure::Broken)?;
                if self.length.is_some_and(|seen| seen != length) {
                    return Err(Failure::Broken);
                }
                self.length = Some(length);
            }
        } else if *name == TRANSFER_ENCODING {
            self.codings.get_or_insert_default().note(value);
        } else if *name == CONNECTION {
            self.close |= crate::forwarding::value_lists(value, "close");
        }
        Ok(())
    }
}

/// The transfer codings an answer's `Transfer-Encoding` lines name. The
/// gateway takes chunked off and frames the body anew for its client; any
/// other coding (`gzip, chunked`, or `gzip` to the connection's end) it
/// would pass on undecoded, with nothing left to say so (helper 71): an
/// answer with a body and such codings is refused (502), as a request with
/// them is (400, `forwarding_headers`).
#[derive(Debug, Default)]
pub(crate) struct Codings {
    /// How many there are (empty list elements too), and whether one is
    /// not chunked.
    count: usize,
    other: bool,
}

impl Codings {
    /// The codings of every `Transfer-Encoding` line in `headers`; `None`
    /// without one.
    pub(crate) fn of(headers: &HeaderMap) -> Option<Codings> {
        let mut lines = headers.get_all(TRANSFER_ENCODING).iter().peekable();
        lines.peek()?;
        let mut codings = Codings::default();
        lines.for_each(|line| codings.note(line));
        Some(codings)
    }

    fn note(&mut self, line: &HeaderValue) {
        // An empty list element counts as another coding: RFC 9110 (5.6.1)
        // has it ignored, but hyper's client frames by the last element
        // as written, and after `chunked,` read to the close and passed
        // the chunks on as the body (helper 72).
        for coding in line.as_bytes().split(|byte| *byte == b',') {
            self.count += 1;
            self.other |= !coding.trim_ascii().eq_ignore_ascii_case(b"chunked");
        }
    }

    /// Whether they are chunked, once: the one framing the gateway decodes.
    pub(crate) fn only_chunked(&self) -> bool {
        self.count == 1 && !self.other
    }
}

/// Whether an answer has no body whatever its headers say: one to HEAD
/// (`head_only`), 1xx, 204 or 304 (RFC 9112, section 6.3).
pub(crate) fn bodiless(status: StatusCode, head_only: bool) -> bool {
    head_only
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

/// How the body of an answer is delimited (RFC 9112, section 6.3), from
/// what its headers said (`seen`), and whether its connection may be used
/// again. A `Content-Length` beside a `Transfer-Encoding` is removed, as a
/// recipient must before passing the answer on, and several equal ones are
/// passed on as one.
fn framing(
    headers: &mut HeaderMap,
    seen: &Seen,
    status: StatusCode,
    version: Version,
    head_only: bool,
) -> Result<(Framing, bool), Failure> {
    // After 101 the connection speaks another protocol: never reused.
    let mut keep_alive =
        version == Version::HTTP_11 && !seen.close && status != StatusCode::SWITCHING_PROTOCOLS;
    let bodiless = bodiless(status, head_only);
    if let Some(codings) = &seen.codings {
        if version != Version::HTTP_11 {
            // HTTP/1.0 has no transfer codings: the framing is faulty.
            return Err(Failure::Broken);
        }
        if headers.remove(CONTENT_LENGTH).is_some() {
            keep_alive = false;
        }
        if bodiless {
            return Ok((Framing::Empty, keep_alive));
        }
        if !codings.only_chunked() {
            return Err(Failure::Broken);
        }
        return Ok((Framing::Chunked, keep_alive));
    }
    if let Some(length) = seen.length {
        if seen.length_lines > 1 || seen.length_listed {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        }
    }
    Ok(match (bodiless, seen.length) {
        (true, _) => (Framing::Empty, keep_alive),
        (false, Some(length)) => (Framing::Length(length), keep_alive),
        (false, None) => (Framing::UntilClose, false),
    })
}

/// Where a chunked body's reading is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Chunk {
    /// At a chunk-size line.
    Size,
    /// Inside a chunk's data, this much still to come.
    Data(u64),
    /// After a chunk's data, at its CRLF.
    DataEnd,
    /// After the last chunk, in the trailer fields; this many bytes and
    /// fields of them read so far.
    Trailers(usize, usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

/// The body of an answer that broke off or was badly framed.
#[derive(Debug, thiserror::Error)]
#[error("the upstream's answer broke off or its body was badly framed")]
pub(crate) struct BrokenBody;

/// Records an answer's body that the upstream broke off or framed
/// wrongly: its head, with its status, is already with the client (and in
/// the decision log), which gets a cut-off answer.
pub(crate) fn broken_body() {
    crate::metrics::upstream_body_failed(crate::metrics::BodyFault::Broken);
    tracing::warn!(
        "an answer's body from the upstream broke off (cut, or framed wrongly); the client's answer is cut off"
    );
}

/// An answer's body, read from its connection as it is polled. Read to its
/// exact end on a connection that may be kept, the connection is handed to
/// `keep`; dropped before that, or after anything unexpected, the
/// connection is closed.
pub(crate) struct PlainBody<K: FnOnce(PlainConn)> {
    conn: Option<PlainConn>,
    state: State,
    /// Bytes of chunk extensions read so far (see [`MAX_CHUNK_EXTENSIONS`]).
    extensions: usize,
    keep_alive: bool,
    keep: Option<K>,
}

impl<K: FnOnce(PlainConn) + Unpin> PlainBody<K> {
    pub(crate) fn new(
        conn: PlainConn,
        framing: Framing,
        keep_alive: bool,
        keep: K,
    ) -> PlainBody<K> {
        let state = match framing {
            Framing::Empty => State::Length(0),
            Framing::Length(length) => State::Length(length),
            Framing::Chunked => State::Chunked(Chunk::Size),
            Framing::UntilClose => State::UntilClose,
        };
        let mut body = PlainBody {
            conn: Some(conn),
            state,
            extensions: 0,
            keep_alive,
            keep: Some(keep),
        };
        if body.state == State::Length(0) {
            body.finish();
        }
        body
    }

    /// The body has been read to its end: the connection goes back if it
    /// may and nothing more came on it.
    fn finish(&mut self) {
        self.state = State::Done;
        let conn = self.conn.take();
        if let (Some(conn), Some(keep)) = (conn, self.keep.take()) {
            if self.keep_alive && conn.unread.is_empty() {
                keep(conn);
            }
        }
    }

    fn fail(&mut self) -> Poll<Option<Result<Frame<Bytes>, BrokenBody>>> {
        self.state = State::Done;
        self.conn = None;
        broken_body();
        Poll::Ready(Some(Err(BrokenBody)))
    }
}

impl<K: FnOnce(PlainConn) + Unpin> http_body::Body for PlainBody<K> {
    type Data = Bytes;
    type Error = BrokenBody;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BrokenBody>>> {
        let this = self.get_mut();
        loop {
            if this.state == State::Done {
                return Poll::Ready(None);
            }
            let Some(conn) = this.conn.as_mut() else {
                return this.fail();
            };
            let room = match this.state {
                State::Length(left) | State::Chunked(Chunk::Data(left))
                    if left > 0 && !conn.unread.is_empty() =>
                {
                    let unread = &mut conn.unread;
                    let take =
                        usize::try_from(left).map_or(unread.len(), |left| left.min(unread.len()));
                    let data = unread.split_to(take).freeze();
                    let left = left - take as u64;
                    if let State::Length(_) = this.state {
                        this.state = State::Length(left);
                        if left == 0 {
                            this.finish();
                        }
                    } else {
                        this.state = State::Chunked(Chunk::Data(left));
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Length(left) | State::Chunked(Chunk::Data(left)) if left > 0 => left,
                State::Length(_) | State::Done => {
                    this.finish();
                    return Poll::Ready(None);
                }
                State::Chunked(Chunk::Data(_)) => {
                    this.state = State::Chunked(Chunk::DataEnd);
                    continue;
                }
                State::UntilClose if !conn.unread.is_empty() => {
                    let data = conn.unread.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::UntilClose => BODY_READ as u64,
                State::Chunked(chunk) => {
                    match step_chunked(&mut conn.unread, chunk, &mut this.extensions) {
                        Step::Next(next) => {
                            this.state = State::Chunked(next);
                            continue;
                        }
                        Step::NeedMore => HEAD_READ as u64,
                        Step::End => {
                            this.finish();
                            return Poll::Ready(None);
                        }
                        Step::Bad => return this.fail(),
                    }
                }
            };
            let room = usize::try_from(room).unwrap_or(BODY_READ).min(BODY_READ);
            match ready!(conn.poll_fill(cx, room)) {
                Ok(0) if this.state == State::UntilClose => {
                    this.state = State::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) | Err(_) => return this.fail(),
                Ok(_) => {}
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(left) => SizeHint::with_exact(left),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// What reading a chunked body's framing from `unread` gave.
#[derive(Debug, PartialEq)]
enum Step {
    /// A piece of framing was read and taken out: go on from here.
    Next(Chunk),
    /// Not enough bytes yet.
    NeedMore,
    /// The end of the body (last chunk and trailer fields) was read.
    End,
    /// The framing is broken.
    Bad,
}

/// Reads the framing at `chunk` (not a chunk's data) from `unread`.
/// Strict on purpose: lines end in CRLF and nothing else, a chunk size is
/// hex digits within 64 bits, and extensions (`extensions` bytes of them
/// read so far in the body) and trailers are bounded and dropped.
fn step_chunked(unread: &mut BytesMut, chunk: Chunk, extensions: &mut usize) -> Step {
    match chunk {
        Chunk::Size => {
            let most = MAX_CHUNK_SIZE + (MAX_CHUNK_EXTENSIONS - *extensions) + 2;
            match line(unread, most) {
                Line::Incomplete => Step::NeedMore,
                Line::Bad => Step::Bad,
                Line::Ends(end) => {
                    let line = &unread[..end];
                    let Some(size) = chunk_size(line) else {
                        return Step::Bad;
                    };
                    let semicolon = line.iter().position(|byte| *byte == b';');
                    if semicolon.unwrap_or(end) > MAX_CHUNK_SIZE {
                        return Step::Bad;
                    }
                    *extensions += semicolon.map_or(0, |at| end - at - 1);
                    if *extensions > MAX_CHUNK_EXTENSIONS {
                        return Step::Bad;
                    }
                    unread.advance(end + 2);
                    match size {
                        0 => Step::Next(Chunk::Trailers(0, 0)),
                        size => Step::Next(Chunk::Data(size)),
                    }
                }
            }
        }
        Chunk::DataEnd => match unread.get(..2) {
            None if unread.first().is_none_or(|byte| *byte == b'\r') => Step::NeedMore,
            Some(b"\r\n") => {
                unread.advance(2);
                Step::Next(Chunk::Size)
            }
            _ => Step::Bad,
        },
        Chunk::Trailers(seen, fields) => {
            match line(unread, MAX_TRAILER_BYTES.saturating_sub(seen)) {
                Line::Incomplete => Step::NeedMore,
                Line::Bad => Step::Bad,
                // (No trailers: the empty line is counted for none.)
                Line::Ends(0) if seen > 0 && seen + 2 >= MAX_TRAILER_BYTES => Step::Bad,
                Line::Ends(0) => {
                    unread.advance(2);
                    Step::End
                }
                Line::Ends(end) => {
                    if fields >= MAX_TRAILER_FIELDS
                        || seen + end + 2 >= MAX_TRAILER_BYTES
                        || !trailer_field(&unread[..end])
                    {
                        return Step::Bad;
                    }
                    unread.advance(end + 2);
                    Step::Next(Chunk::Trailers(seen + end + 2, fields + 1))
                }
            }
        }
        Chunk::Data(_) => Step::Bad,
    }
}

/// Whether a trailer line is a header field as hyper's client reads one:
/// httparse, in its default configuration, reads it whole, and the `http`
/// crate takes its name and value.
fn trailer_field(line: &[u8]) -> bool {
    let mut block = Vec::with_capacity(line.len() + 4);
    block.extend_from_slice(line);
    block.extend_from_slice(b"\r\n\r\n");
    let mut fields = [httparse::EMPTY_HEADER; 1];
    match httparse::parse_headers(&block, &mut fields) {
        Ok(httparse::Status::Complete((_, [field]))) => {
            http::HeaderName::from_bytes(field.name.as_bytes()).is_ok()
                && http::HeaderValue::from_bytes(field.value).is_ok()
        }
        _ => false,
    }
}

/// The line at the start of some bytes.
#[derive(Debug, PartialEq)]
enum Line {
    /// It ends in CRLF at this offset.
    Ends(usize),
    /// Its end has not been read yet.
    Incomplete,
    /// Longer than allowed, or a CR or LF stands alone in it.
    Bad,
}

/// The line at the start of `unread`, which with its CRLF may take no more
/// than `limit` bytes.
fn line(unread: &[u8], limit: usize) -> Line {
    let window = &unread[..unread.len().min(limit)];
    match window
        .iter()
        .position(|byte| *byte == b'\r' || *byte == b'\n')
    {
        None if unread.len() >= limit => Line::Bad,
        None => Line::Incomplete,
        Some(at) => match window.get(at..at + 2) {
            Some(b"\r\n") => Line::Ends(at),
            None if window[at] == b'\r' && unread.len() < limit => Line::Incomplete,
            _ => Line::Bad,
        },
    }
}

/// A chunk-size line's size: hex digits (leading zeros allowed, the value
/// within 64 bits), then nothing, or spaces or tabs and a `;` that starts
/// extensions (ignored).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line
        .iter()
        .take_while(|byte| byte.is_ascii_hexdigit())
        .count();
    if digits == 0 {
        return None;
    }
    let rest = &line[digits..];
    let rest = &rest[rest
        .iter()
        .take_while(|byte| matches!(byte, b' ' | b'\t'))
        .count()..];
    if !(rest.is_empty() || rest.starts_with(b";")) {
        return None;
    }
    line[..digits].iter().try_fold(0u64, |size, digit| {
        let value = char::from(*digit).to_digit(16)?;
        size.checked_mul(16)?.checked_add(u64::from(value))
    })
}

#[cfg(test)]
#[path = "exchange_tests.rs"]
mod tests;
