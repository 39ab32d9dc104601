//! What a side of a WebSocket sends, its large frames cut into pieces
//! before the library reads them.
//!
//! The library reads each frame into a buffer the frame's size, and keeps
//! that buffer, at the size of the largest frame so far, until the socket
//! closes. Home Assistant sends each message as one frame, so a socket
//! whose add-on had once asked for a large answer (a dump of all states)
//! kept that much memory for as long as it lived: four idle sockets, each
//! answered once with 60 MiB, held 254 MiB between them. A client's large
//! frames were kept the same way (counted under `max_held_body_bytes`, see
//! [`crate::websocket_meter`], so that the room stayed taken). Cut into
//! pieces of at most [`PIECE`] bytes, a large frame is gathered into its
//! message as a message sent in fragments always was, and nothing of it is
//! kept once the message has gone on.
//!
//! RFC 6455 (5.4) lets an intermediary fragment a message anew when no
//! extension is in use, and the relay negotiates none. Only a data frame
//! the library would take is cut: masked if it comes from the client and
//! unmasked from the upstream, with no reserved bit, and within the
//! library's frame limit on that side. Every other frame passes as it came,
//! for the library (and the meter) to refuse as before; control frames are
//! never cut, and may come between the pieces of a message as they may
//! between its fragments. A piece of a masked frame keeps the frame's key:
//! each piece but the last is a multiple of four bytes long, so the key
//! lines up with the payload where the next piece starts.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// The largest frame payload the library is given: the relay's read
/// buffer, so that the library's buffer stays near that size (it may grow
/// to about twice, once, where a piece follows bytes still unread). A
/// multiple of four (see the module's comment).
pub(crate) const PIECE: usize = 32 * 1024;

/// How much more is read from the socket when a frame's head came in
/// part.
const HEAD_READ: usize = 4 * 1024;

/// Which frames of a side are cut (see the module's comment).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cutting {
    /// Whether that side masks its frames (a client does, a server not).
    pub(crate) masked: bool,
    /// The library's frame limit on that side: a frame over it passes as
    /// it came, so that the library refuses it at its head.
    pub(crate) limit: usize,
}

/// A socket whose large incoming frames are cut into pieces.
pub(crate) struct Pieces<T> {
    inner: T,
    cutter: Cutter,
}

impl<T> Pieces<T> {
    /// `inner`, its frames cut as `cutting` says.
    pub(crate) fn new(inner: T, cutting: Cutting) -> Pieces<T> {
        let cutter = Cutter {
            cutting,
            ..Cutter::default()
        };
        Pieces { inner, cutter }
    }
}

/// Where the stream of frames stands; see the module's comment.
struct Cutter {
    cutting: Cutting,
    /// What is left of the frame passing as it came, its head included.
    passing: u64,
    /// What is left of the payload of the frame being cut, after the piece
    /// being given.
    left: u64,
    /// What is left of the piece being given (0: no frame is being cut).
    piece_left: usize,
    /// The next piece's opcode: the frame's own for the first, then
    /// continuation (0).
    opcode: u8,
    /// Whether the frame being cut ends its message.
    fin: bool,
    /// The frame's masking key, if it has one.
    mask: Option<[u8; 4]>,
    /// The head made for the piece being given, and how much of it has
    /// been given.
    head: [u8; 8],
    head_len: usize,
    head_given: usize,
    /// Bytes the socket gave that are not given on yet: from the start of
    /// a head that had not come whole, or from the payload of a frame
    /// being cut on. Only as much as one read gave, and let go of once
    /// given.
    held: Vec<u8>,
    held_at: usize,
}

impl Default for Cutter {
    fn default() -> Cutter {
        Cutter {
            cutting: Cutting {
                masked: false,
                limit: 0,
            },
            passing: 0,
            left: 0,
            piece_left: 0,
            opcode: 0,
            fin: false,
            mask: None,
            head: [0; 8],
            head_len: 0,
            head_given: 0,
            held: Vec::new(),
            held_at: 0,
        }
    }
}

/// A frame's head, read whole (here, and by the meter as the client's
/// bytes pass: [`crate::websocket_meter`]).
pub(crate) struct Head {
    /// Its bytes.
    pub(crate) size: usize,
    /// Its payload's length.
    pub(crate) length: u64,
    /// Whether the frame ends its message.
    pub(crate) fin: bool,
    pub(crate) opcode: u8,
    pub(crate) mask: Option<[u8; 4]>,
    /// Whether a reserved bit is set.
    reserved: bool,
}

impl Head {
    /// The head at the start of `bytes`, if it has come whole.
    pub(crate) fn read(bytes: &[u8]) -> Option<Head> {
        let (&first, rest) = bytes.split_first()?;
        let &second = rest.first()?;
        let length_size = match second & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let masked = second & 0x80 != 0;
        let size = 2 + length_size + if masked { 4 } else { 0 };
        if bytes.len() < size {
            return None;
        }
        let length = match &bytes[2..2 + length_size] {
            [high, low] => u64::from(u16::from_be_bytes([*high, *low])),
            [] => u64::from(second & 0x7f),
            eight => eight
                .iter()
                .fold(0, |sum, byte| sum << 8 | u64::from(*byte)),
        };
        let mask = match masked {
            true => <[u8; 4]>::try_from(&bytes[size - 4..size]).ok(),
            false => None,
        };
        Some(Head {
            size,
            length,
            fin: first & 0x80 != 0,
            opcode: first & 0x0f,
            mask,
            reserved: first & 0x70 != 0,
        })
    }

    /// Whether it is a control frame's (close, ping, pong: opcodes 8 and
    /// up).
    pub(crate) fn control(&self) -> bool {
        self.opcode & 0x08 != 0
    }
}

impl Cutting {
    /// Whether the frame of `head` is cut into pieces (see the module's
    /// comment).
    fn cuts(&self, head: &Head) -> bool {
        // Opcodes 0 to 2: continuation, text, binary.
        head.opcode <= 2
            && head.mask.is_some() == self.masked
            && !head.reserved
            && head.length > PIECE as u64
            && head.length <= self.limit as u64
    }
}

impl Cutter {
    fn held(&self) -> &[u8] {
        &self.held[self.held_at..]
    }

    /// Lets go of what was held once all of it is given.
    fn took_held(&mut self, count: usize) {
        self.held_at += count;
        if self.held_at == self.held.len() {
            self.held = Vec::new();
            self.held_at = 0;
        }
    }

    /// Starts cutting the frame of `head`, whose head is dropped.
    fn start(&mut self, head: &Head) {
        self.left = head.length;
        self.opcode = head.opcode;
        self.fin = head.fin;
        self.mask = head.mask;
        self.next_piece();
    }

    /// Makes the head of the next piece of the frame being cut.
    fn next_piece(&mut self) {
        let piece = usize::try_from(self.left).map_or(PIECE, |left| left.min(PIECE));
        self.left -= piece as u64;
        let last = self.left == 0;
        let first = if last && self.fin { 0x80 } else { 0 } | self.opcode;
        // The pieces after the first continue the message.
        self.opcode = 0;
        let masked = if self.mask.is_some() { 0x80 } else { 0 };
        let [high, low] = (piece as u16).to_be_bytes();
        let length: &[u8] = match piece {
            0..=125 => &[masked | low],
            _ => &[masked | 126, high, low],
        };
        let key = self.mask.as_ref().map_or(&[][..], |key| &key[..]);
        self.head_len = 0;
        for &byte in [first].iter().chain(length).chain(key) {
            self.head[self.head_len] = byte;
            self.head_len += 1;
        }
        self.head_given = 0;
        self.piece_left = piece;
    }

    /// `count` bytes of the piece's payload given.
    fn gave_payload(&mut self, count: usize) {
        self.piece_left -= count;
        if self.piece_left == 0 && self.left > 0 {
            self.next_piece();
        }
    }

    /// Reads the frames' heads in `bytes` (no frame being cut), giving on
    /// at most `room` of them: how many pass as they came and, when the
    /// head of a frame to cut follows those, its size (its pieces get heads
    /// of their own). Stops before a head that has not come whole.
    fn scan(&mut self, bytes: &[u8], room: usize) -> (usize, usize) {
        let mut at = 0;
        while at < room.min(bytes.len()) {
            if self.passing > 0 {
                let passing = usize::try_from(self.passing).unwrap_or(usize::MAX);
                let taken = passing.min(room.min(bytes.len()) - at);
                self.passing -= taken as u64;
                at += taken;
                continue;
            }
            let Some(head) = Head::read(&bytes[at..]) else {
                break;
            };
            if self.cutting.cuts(&head) {
                self.start(&head);
                return (at, head.size);
            }
            // (Saturating: a length near 2^64 wrapped to nothing, and the
            // same head was read over and over; helper 83. The library
            // refuses such a frame at its head.)
            self.passing = head.length.saturating_add(head.size as u64);
        }
        (at, 0)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Pieces<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let cutter = &mut this.cutter;
        let inner = &mut this.inner;
        let start = buf.filled().len();
        // No read of the socket once something is given.
        while buf.remaining() > 0 {
            let given = buf.filled().len() > start;
            if cutter.piece_left > 0 {
                if cutter.head_given < cutter.head_len {
                    let head = &cutter.head[cutter.head_given..cutter.head_len];
                    let count = head.len().min(buf.remaining());
                    buf.put_slice(&head[..count]);
                    cutter.head_given += count;
                    continue;
                }
                let room = cutter.piece_left.min(buf.remaining());
                if !cutter.held().is_empty() {
                    let count = room.min(cutter.held().len());
                    buf.put_slice(&cutter.held()[..count]);
                    cutter.took_held(count);
                    cutter.gave_payload(count);
                    continue;
                }
                if given {
                    break;
                }
                // The payload straight from the socket into `buf`.
                let read = {
                    let unfilled = buf.initialize_unfilled_to(room);
                    let mut part = ReadBuf::new(unfilled);
                    ready!(Pin::new(&mut *inner).poll_read(cx, &mut part))?;
                    part.filled().len()
                };
                // (Nothing read: the socket ended inside the piece, and the
                // library sees the frame end short, as it would have.)
                buf.advance(read);
                cutter.gave_payload(read);
                break;
            }
            if !cutter.held().is_empty() {
                // (Out of `cutter` while its heads are read.)
                let held = std::mem::take(&mut cutter.held);
                let (pass, dropped) = cutter.scan(&held[cutter.held_at..], buf.remaining());
                buf.put_slice(&held[cutter.held_at..cutter.held_at + pass]);
                cutter.held = held;
                cutter.took_held(pass + dropped);
                if pass + dropped > 0 {
                    continue;
                }
                // A head that has not come whole: more of it from the socket.
                if given {
                    break;
                }
                let had = cutter.held.len();
                cutter.held.resize(had + HEAD_READ, 0);
                let mut part = ReadBuf::new(&mut cutter.held[had..]);
                let read = Pin::new(&mut *inner).poll_read(cx, &mut part);
                let count = part.filled().len();
                cutter.held.truncate(had + count);
                ready!(read)?;
                if count == 0 {
                    // The socket ended inside the head: the library gets
                    // what came, as it would have.
                    let count = cutter.held().len().min(buf.remaining());
                    buf.put_slice(&cutter.held()[..count]);
                    cutter.took_held(count);
                    break;
                }
                continue;
            }
            if given {
                break;
            }
            // Straight from the socket into `buf`, where the heads are
            // read; what follows a frame to cut (or a head in part) is held.
            let from = buf.filled().len();
            ready!(Pin::new(&mut *inner).poll_read(cx, buf))?;
            let read = &buf.filled()[from..];
            if read.is_empty() {
                break;
            }
            let (pass, dropped) = cutter.scan(read, read.len());
            cutter.held.extend_from_slice(&read[pass + dropped..]);
            buf.set_filled(from + pass);
        }
        Poll::Ready(Ok(()))
    }
}

/// `AsyncWrite` for a reading adapter `$adapter<T>` (a socket whose reads
/// it changes or counts), writing straight to its field `inner`.
macro_rules! writes_through {
    ($adapter:ident) => {
        impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $adapter<T> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
            }
        }
    };
}
pub(crate) use writes_through;

writes_through!(Pieces);

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use futures_util::{SinkExt, StreamExt};
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::WebSocketStream;

    use super::*;
    use crate::websocket::UPSTREAM_MESSAGE_LIMIT;

    /// As the relay cuts the upstream's frames.
    const FROM_UPSTREAM: Cutting = Cutting {
        masked: false,
        limit: UPSTREAM_MESSAGE_LIMIT,
    };

    /// As the relay cuts a client's frames, with a limit of 1 MiB.
    const FROM_CLIENT: Cutting = Cutting {
        masked: true,
        limit: 1 << 20,
    };

    /// A frame as a server sends it (`mask`: as a client does), `rsv` its
    /// reserved bits.
    fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>, rsv: u8) -> Vec<u8> {
        let mut out = vec![u8::from(fin) << 7 | rsv << 4 | opcode];
        let masked = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            length @ 0..=125 => out.push(masked | length as u8),
            length @ 126..=0xffff => {
                out.push(masked | 126);
                out.extend_from_slice(&(length as u16).to_be_bytes());
            }
            length => {
                out.push(masked | 127);
                out.extend_from_slice(&(length as u64).to_be_bytes());
            }
        }
        match mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    fn data(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        frame(fin, opcode, payload, None, 0)
    }

    fn pattern(length: usize, seed: u8) -> Vec<u8> {
        (0..length).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    /// A frame read back: fin, opcode, masked, reserved bits, payload
    /// (unmasked).
    type Read = (bool, u8, bool, u8, Vec<u8>);

    /// The frames in `bytes`, and what is left after the last whole one.
    fn frames(mut bytes: &[u8]) -> (Vec<Read>, Vec<u8>) {
        let mut out = Vec::new();
        while let Some(head) = Head::read(bytes) {
            let length = head.length as usize;
            if bytes.len() < head.size + length {
                break;
            }
            let masked = bytes[1] & 0x80 != 0;
            let key = head.mask.unwrap_or_default();
            let payload = bytes[head.size..head.size + length]
                .iter()
                .enumerate()
                .map(|(i, byte)| byte ^ key[i % 4])
                .collect();
            out.push((head.fin, head.opcode, masked, bytes[0] >> 4 & 7, payload));
            bytes = &bytes[head.size + length..];
        }
        (out, bytes.to_vec())
    }

    /// What a reader of `bytes` gets: its control frames and its data
    /// messages whole (opcode, payload), in the order they end.
    fn messages(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let (frames, rest) = frames(bytes);
        assert!(rest.is_empty(), "{} bytes not a whole frame", rest.len());
        let mut out = Vec::new();
        let mut message: Option<(u8, Vec<u8>)> = None;
        for (fin, opcode, _, _, payload) in frames {
            if opcode >= 8 {
                out.push((opcode, payload));
                continue;
            }
            let (kind, mut gathered) = match (message.take(), opcode) {
                (None, 1 | 2) => (opcode, Vec::new()),
                (Some(started), 0) => started,
                (started, opcode) => panic!("opcode {opcode} with {started:?} begun"),
            };
            gathered.extend_from_slice(&payload);
            match fin {
                true => out.push((kind, gathered)),
                false => message = Some((kind, gathered)),
            }
        }
        assert!(message.is_none(), "a message left unfinished");
        out
    }

    /// Gives the chunks it was made with, one a read (an empty one: not
    /// ready once), then ends.
    struct Chunks(VecDeque<Vec<u8>>);

    impl AsyncRead for Chunks {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let chunks = &mut self.get_mut().0;
            let Some(front) = chunks.front_mut() else {
                return Poll::Ready(Ok(()));
            };
            if front.is_empty() {
                chunks.pop_front();
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let count = front.len().min(buf.remaining());
            buf.put_slice(&front[..count]);
            front.drain(..count);
            if front.is_empty() {
                chunks.pop_front();
            }
            Poll::Ready(Ok(()))
        }
    }

    /// `input` read through the cutter: given in chunks of `chunk` bytes
    /// (with a "not ready" between each two), read `read` bytes at a time.
    async fn through(input: &[u8], chunk: usize, read: usize) -> Vec<u8> {
        through_from(FROM_UPSTREAM, input, chunk, read).await
    }

    /// As [`through`], cut as `cutting` says.
    async fn through_from(cutting: Cutting, input: &[u8], chunk: usize, read: usize) -> Vec<u8> {
        let chunks = input
            .chunks(chunk)
            .flat_map(|piece| [piece.to_vec(), Vec::new()])
            .collect();
        let mut pieces = Pieces::new(Chunks(chunks), cutting);
        let mut out = Vec::new();
        let mut buf = vec![0; read];
        loop {
            match pieces.read(&mut buf).await.expect("read") {
                0 => return out,
                count => out.extend_from_slice(&buf[..count]),
            }
        }
    }

    /// The ways the tests give bytes and read them: (chunk, read).
    const WAYS: [(usize, usize); 7] = [
        (usize::MAX, 1 << 20),
        (usize::MAX, 32 * 1024),
        (1, 1 << 20),
        (7, 5),
        (13, 14),
        (40_000, 3),
        (65_536, 20_000),
    ];

    #[tokio::test]
    async fn small_frames_pass_as_they_came() {
        let mut input = data(true, 1, br#"{"type":"auth_ok"}"#);
        input.extend(data(false, 2, &pattern(300, 1)));
        input.extend(frame(true, 9, b"ping", None, 0));
        input.extend(data(true, 0, &pattern(PIECE, 2)));
        input.extend(data(true, 1, b""));
        for (chunk, read) in WAYS {
            assert_eq!(through(&input, chunk, read).await, input, "{chunk}/{read}");
        }
    }

    #[tokio::test]
    async fn a_large_frame_comes_in_pieces_of_at_most_piece_bytes_the_first_with_its_opcode() {
        let payload = pattern(3 * PIECE + 5, 3);
        let input = data(true, 2, &payload);
        for (chunk, read) in WAYS {
            let out = through(&input, chunk, read).await;
            let (frames, rest) = frames(&out);
            assert!(rest.is_empty(), "{chunk}/{read}");
            let shape: Vec<_> = frames
                .iter()
                .map(|(fin, opcode, masked, rsv, payload)| {
                    (*fin, *opcode, *masked, *rsv, payload.len())
                })
                .collect();
            assert_eq!(
                shape,
                [
                    (false, 2, false, 0, PIECE),
                    (false, 0, false, 0, PIECE),
                    (false, 0, false, 0, PIECE),
                    (true, 0, false, 0, 5),
                ],
                "{chunk}/{read}"
            );
            assert_eq!(messages(&out), [(2, payload.clone())], "{chunk}/{read}");
        }
    }

    #[tokio::test]
    async fn fragments_and_the_control_frames_between_them_keep_their_order() {
        // A text message in two fragments, one over a piece, with a ping
        // between them; then a frame one byte over a piece, a close.
        let text = "é".repeat(PIECE); // two bytes each
        let (one, two) = text.as_bytes().split_at(PIECE + 1);
        let mut input = data(false, 1, one);
        input.extend(frame(true, 9, b"between", None, 0));
        input.extend(data(true, 0, two));
        input.extend(data(true, 2, &pattern(PIECE + 1, 4)));
        input.extend(frame(true, 8, &[3, 232], None, 0));
        for (chunk, read) in WAYS {
            let out = through(&input, chunk, read).await;
            assert_eq!(
                messages(&out),
                [
                    (9, b"between".to_vec()),
                    (1, text.as_bytes().to_vec()),
                    (2, pattern(PIECE + 1, 4)),
                    (8, vec![3, 232]),
                ],
                "{chunk}/{read}"
            );
            let (frames, _) = frames(&out);
            assert!(frames.iter().all(|frame| frame.4.len() <= PIECE));
            // Only the message's last piece ends it.
            let ends: Vec<_> = frames.iter().map(|frame| frame.0).collect();
            assert_eq!(
                ends,
                [false, false, true, true, false, true, true],
                "{chunk}/{read}"
            );
        }
    }

    #[tokio::test]
    async fn frames_the_library_would_refuse_pass_as_they_came() {
        let large = pattern(PIECE + 100, 5);
        let mut input = frame(true, 2, &large, Some([1, 2, 3, 4]), 0);
        input.extend(frame(true, 2, &large, None, 4));
        input.extend(frame(true, 9, &large, None, 0));
        input.extend(frame(true, 3, &large, None, 0));
        // One announced over the upstream's limit: its head passes, for
        // the library to refuse at once.
        let mut over = vec![0x82, 127];
        over.extend_from_slice(&(UPSTREAM_MESSAGE_LIMIT as u64 + 1).to_be_bytes());
        input.extend_from_slice(&over);
        input.extend_from_slice(&large);
        for (chunk, read) in WAYS {
            assert_eq!(through(&input, chunk, read).await, input, "{chunk}/{read}");
        }
    }

    #[tokio::test]
    async fn a_socket_that_ends_inside_a_frame_ends_the_same_way_after_it() {
        // Inside a head: its bytes come as they came.
        let mut input = data(true, 1, b"whole");
        input.extend_from_slice(&[0x82, 127, 0]);
        for (chunk, read) in WAYS {
            assert_eq!(through(&input, chunk, read).await, input, "{chunk}/{read}");
        }
        // Inside a frame being cut: its pieces, the last one short.
        let payload = pattern(2 * PIECE + 10, 6);
        let whole = data(true, 2, &payload);
        let input = &whole[..whole.len() - 5];
        for (chunk, read) in WAYS {
            let out = through(input, chunk, read).await;
            let (frames, rest) = frames(&out);
            let given: Vec<u8> = frames.iter().flat_map(|frame| frame.4.clone()).collect();
            assert_eq!(frames.len(), 2, "{chunk}/{read}");
            assert_eq!(rest[..2], [0x80, 10], "{chunk}/{read}");
            let mut all = given;
            all.extend_from_slice(&rest[2..]);
            assert_eq!(all, payload[..payload.len() - 5], "{chunk}/{read}");
        }
    }

    /// `messages` sent by the library as `sender`, as the library on the
    /// other side reads them through the cutter (cutting as the relay cuts
    /// that sender's frames), with a frame limit of one piece: a frame over
    /// it would be refused.
    async fn through_the_library(sender: Role, messages: Vec<Message>) -> Vec<Message> {
        let (sending_end, reading_end) = tokio::io::duplex(1 << 16);
        let (reader, cutting) = match sender {
            Role::Server => (Role::Client, FROM_UPSTREAM),
            Role::Client => (Role::Server, FROM_CLIENT),
        };
        let count = messages.len();
        let sending = tokio::spawn(async move {
            let mut socket = WebSocketStream::from_raw_socket(sending_end, sender, None).await;
            for message in messages {
                socket.send(message).await.expect("send");
            }
            socket
        });
        let config = WebSocketConfig::default().max_frame_size(Some(PIECE));
        let mut socket = WebSocketStream::from_raw_socket(
            Pieces::new(reading_end, cutting),
            reader,
            Some(config),
        )
        .await;
        let mut read = Vec::new();
        for _ in 0..count {
            read.push(socket.next().await.expect("a message").expect("read whole"));
        }
        drop(sending.await);
        read
    }

    #[tokio::test]
    async fn the_library_reading_through_it_gets_messages_whole_and_no_frame_over_a_piece() {
        // A text message whose pieces split its characters.
        let sent = vec![
            Message::text("aé".repeat(40_000)),
            Message::binary(pattern(5 * PIECE + 3, 7)),
        ];
        assert_eq!(through_the_library(Role::Server, sent.clone()).await, sent);
    }

    #[tokio::test]
    async fn a_clients_large_frame_comes_in_masked_pieces_and_its_other_frames_as_they_came() {
        let payload = pattern(2 * PIECE + 7, 8);
        let key = [0x11, 0x22, 0x33, 0x44];
        let mut input = frame(true, 2, &payload, Some(key), 0);
        input.extend(frame(true, 9, b"ping", Some(key), 0));
        for (chunk, read) in WAYS {
            let out = through_from(FROM_CLIENT, &input, chunk, read).await;
            let (frames, rest) = frames(&out);
            assert!(rest.is_empty(), "{chunk}/{read}");
            assert!(frames.iter().all(|frame| frame.2), "every piece masked");
            assert_eq!(frames.len(), 4, "{chunk}/{read}");
            assert_eq!(
                messages(&out),
                [(2, payload.clone()), (9, b"ping".to_vec())],
                "{chunk}/{read}"
            );
        }
        // Unmasked, or over the side's limit: as they came, for the meter
        // and the library to refuse.
        let mut refused = frame(true, 2, &payload, None, 0);
        refused.extend(frame(true, 2, &pattern((1 << 20) + 1, 9), Some(key), 0));
        for (chunk, read) in WAYS {
            let out = through_from(FROM_CLIENT, &refused, chunk, read).await;
            assert_eq!(out, refused, "{chunk}/{read}");
        }
    }

    #[tokio::test]
    async fn the_server_side_library_gets_a_clients_messages_whole_and_no_frame_over_a_piece() {
        // The library's client masks each frame with a key of its own.
        let sent = vec![Message::text("aé".repeat(40_000))];
        assert_eq!(through_the_library(Role::Client, sent.clone()).await, sent);
    }

    #[tokio::test]
    async fn a_length_near_two_to_the_64_passes_as_it_came_and_the_reading_ends() {
        // Its head's size added to it wrapped to nothing (or overflowed):
        // the same head was read over and over (helper 83).
        let mut from_client = vec![0x82, 0x80 | 127];
        from_client.extend_from_slice(&(u64::MAX - 13).to_be_bytes());
        from_client.extend_from_slice(&[1, 2, 3, 4]);
        from_client.extend_from_slice(&pattern(100, 10));
        let mut from_upstream = vec![0x82, 127];
        from_upstream.extend_from_slice(&(u64::MAX - 9).to_be_bytes());
        from_upstream.extend_from_slice(&pattern(100, 11));
        for (cutting, input) in [(FROM_CLIENT, from_client), (FROM_UPSTREAM, from_upstream)] {
            for (chunk, read) in WAYS {
                let reading = through_from(cutting, &input, chunk, read);
                let out = tokio::time::timeout(std::time::Duration::from_secs(5), reading)
                    .await
                    .expect("the reading ends");
                assert_eq!(out, input, "{chunk}/{read}");
            }
        }
    }
}
