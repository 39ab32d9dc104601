//! The room a WebSocket client's unfinished messages take. The relay holds
//! each message a client sends whole before it judges it, so a client that
//! sends most of a large message and then nothing more makes the gateway
//! hold that much for as long as it likes (helper 78: eight sockets each
//! holding all but the last byte of a 16 MiB message took the gateway from
//! 26 to 155 MiB, and kept it there). So the bytes of a client's message
//! past the first [`FREE`] are counted under `limits.max_held_body_bytes`,
//! the room request bodies held whole take too, and such a message must be
//! whole within `limits.body_idle_timeout_ms` of passing [`FREE`] (a time
//! for the whole rest of it, not for each pause: pings, which a client
//! may send between the pieces of a message, do not make it longer;
//! helper 79).
//!
//! What is counted is what the client's socket gave since the last message
//! was taken whole, but its pings and pongs (and closes): the unfinished
//! message, and at most a read buffer of what follows it. Once a message is
//! whole, all its room is given back: the library reads the client's
//! frames cut into pieces ([`crate::websocket_pieces`]), so it keeps no
//! buffer the size of a large frame once its message has gone on. (The
//! meter reads the bytes as the client sent them, before they are cut:
//! what it counts is the client's frames, not the pieces' heads; helper
//! 83.) (Before they were cut, room for the largest frame a socket had
//! sent was kept for as long as it lived, since the library kept such a
//! buffer: helper 79's twenty sockets that had each sent one 16 MiB
//! message held 325 MiB, idle.) The frames' heads are read here as they
//! pass, to tell the bytes of pings and pongs from a message's, and to
//! refuse at once a head no client may send.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

use crate::body::{HeldRoom, NoRoom};
use crate::websocket_pieces::Head;

/// The bytes of an unfinished message a socket holds without taking room
/// (as it holds its read buffer): an ordinary message never takes any.
pub(crate) const FREE: usize = 64 * 1024;

/// Room is taken in steps of this many bytes (as a held body takes it in
/// blocks of at most this).
const STEP: usize = 64 * 1024;

/// How a client's unfinished message was ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// Other sockets and bodies hold the room it needed: trying again
    /// later may do.
    NoRoomNow,
    /// It needs more than all of `max_held_body_bytes`: it can never be
    /// held.
    NoRoomEver,
    /// It was not whole within `body_idle_timeout_ms` of passing [`FREE`].
    Stalled,
    /// A frame head no client may send: unmasked, or a control frame over
    /// 125 bytes or in pieces. The library refuses them too, but only once
    /// the whole frame has come, and the meter would not count a control
    /// frame's payload meanwhile (helper 82: 20 sockets each holding 16 MiB
    /// of a "ping").
    BadFrame,
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cut::NoRoomNow => "no room left under max_held_body_bytes for a message",
            Cut::NoRoomEver => "a message larger than max_held_body_bytes",
            Cut::Stalled => "a message not whole within body_idle_timeout_ms of passing 64 KiB",
            Cut::BadFrame => "a frame head no client may send (unmasked, or a control frame over 125 bytes or in pieces)",
        })
    }
}

impl std::error::Error for Cut {}

/// Why the library's read of the client's socket failed, if the meter cut
/// it.
pub(crate) fn cut_of(error: &io::Error) -> Option<Cut> {
    error.get_ref()?.downcast_ref::<Cut>().copied()
}

/// The count for one client socket; see the module's comment.
pub(crate) struct Meter {
    /// Where room comes from; `None` without a cap.
    room: Option<HeldRoom>,
    /// How long a message may take, once past [`FREE`], to come whole.
    idle: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// What the socket gave since the last message was taken whole.
    unfinished: usize,
    /// The frames' heads as they pass (see [`Frames`]).
    frames: Frames,
    /// The room taken for it.
    taken: Option<OwnedSemaphorePermit>,
    /// While the message is past [`FREE`]: when its next byte is due.
    due: Option<Pin<Box<Sleep>>>,
}

impl Meter {
    /// A meter taking room from `room`, giving a message `idle` to come
    /// whole once past [`FREE`].
    pub(crate) fn new(room: Option<HeldRoom>, idle: Duration) -> Arc<Meter> {
        Arc::new(Meter {
            room,
            idle,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // (Nothing panics while holding it; a poisoned count is still a
        // count.)
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A message (or a close) was taken whole: the next one starts, and
    /// the room goes back (see the module's comment).
    pub(crate) fn taken_whole(&self) {
        let mut state = self.state();
        state.unfinished = 0;
        state.due = None;
        state.taken = None;
    }

    /// The socket gave `bytes` more.
    fn came(&self, bytes: &[u8]) -> Result<(), Cut> {
        let mut state = self.state();
        let (count, refund) = state.frames.scan(bytes)?;
        let before = state.unfinished;
        state.unfinished = before.saturating_add(count).saturating_sub(refund);
        if state.unfinished <= before || state.unfinished <= FREE {
            return Ok(());
        }
        if let Some(room) = &self.room {
            let over = state.unfinished - FREE;
            let taken = state.taken.as_ref().map_or(0, |taken| taken.num_permits());
            if over > room.cap() {
                return Err(Cut::NoRoomEver);
            }
            if over > taken {
                let step = (over - taken).div_ceil(STEP) * STEP;
                room.take_more(&mut state.taken, step)
                    .map_err(|no_room| match no_room {
                        NoRoom::Now => Cut::NoRoomNow,
                        NoRoom::Ever => Cut::NoRoomEver,
                    })?;
            }
        }
        if state.due.is_none() {
            let due = Instant::now() + self.idle;
            state.due = Some(Box::pin(tokio::time::sleep_until(due)));
        }
        Ok(())
    }

    /// The socket has nothing now: whether the message's time is up.
    fn waiting(&self, cx: &mut Context<'_>) -> Result<(), Cut> {
        let mut state = self.state();
        let Some(due) = &mut state.due else {
            return Ok(());
        };
        match due.as_mut().poll(cx) {
            Poll::Ready(()) => Err(Cut::Stalled),
            Poll::Pending => Ok(()),
        }
    }

    /// The room taken now, in bytes.
    #[cfg(test)]
    fn room_taken(&self) -> usize {
        self.state()
            .taken
            .as_ref()
            .map_or(0, |taken| taken.num_permits())
    }
}

/// The heads of a client's frames, read as the bytes pass: which bytes
/// belong to data frames (a ping or pong, and its head, is no part of a
/// message). (The library reads them too, and refuses what is not a frame;
/// this only needs their opcodes and lengths.)
#[derive(Default)]
struct Frames {
    /// The head being read, and how much of it has come (14 bytes at
    /// most).
    head: [u8; 14],
    have: usize,
    /// The frame being read: what is left of its payload, and whether it
    /// is a control frame.
    payload_left: u64,
    control: bool,
}

impl Frames {
    /// Reads `bytes` on from where the last call stopped; how many of them
    /// belong to data frames, and how many counted as such before were the
    /// head of a control frame. (A head's bytes count as they come, before
    /// it is known whose they are: a count that lags would let a message
    /// hide in heads not yet whole.)
    fn scan(&mut self, mut bytes: &[u8]) -> Result<(usize, usize), Cut> {
        let mut data = 0;
        let mut refund = 0;
        while let Some((&first, rest)) = bytes.split_first() {
            if self.payload_left > 0 {
                let taken = usize::try_from(self.payload_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.payload_left -= taken as u64;
                bytes = &bytes[taken..];
                if !self.control {
                    data += taken;
                }
                continue;
            }
            self.head[self.have] = first;
            self.have += 1;
            bytes = rest;
            data += 1;
            let Some(head) = Head::read(&self.head[..self.have]) else {
                continue;
            };
            self.control = head.control();
            if head.mask.is_none() || (self.control && (head.length > 125 || !head.fin)) {
                return Err(Cut::BadFrame);
            }
            if self.control {
                refund += self.have;
            }
            self.payload_left = head.length;
            self.have = 0;
        }
        Ok((data, refund))
    }
}

/// A socket whose reads a [`Meter`] counts (none: not counted).
pub(crate) struct Metered<T> {
    inner: T,
    meter: Option<Arc<Meter>>,
}

impl<T> Metered<T> {
    pub(crate) fn new(inner: T, meter: Option<Arc<Meter>>) -> Metered<T> {
        Metered { inner, meter }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        let Some(meter) = &this.meter else {
            return read;
        };
        let counted = match &read {
            Poll::Ready(Ok(())) => meter.came(&buf.filled()[before..]),
            Poll::Pending => meter.waiting(cx),
            Poll::Ready(Err(_)) => Ok(()),
        };
        match counted {
            Ok(()) => read,
            Err(cut) => Poll::Ready(Err(io::Error::other(cut))),
        }
    }
}

crate::websocket_pieces::writes_through!(Metered);

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(cap: usize) -> Arc<Meter> {
        Meter::new(Some(HeldRoom::new(cap)), Duration::from_secs(30))
    }

    /// `count` bytes that read, from any byte on, as masked binary frames
    /// of two bytes: all counted, with no large frame among them. (Frames of
    /// 8 bytes: a multiple of 8 ends on a frame's end.)
    fn zeros(count: usize) -> Vec<u8> {
        vec![0x82; count]
    }

    /// A masked ping with four bytes of payload.
    fn ping() -> Vec<u8> {
        vec![0x89, 0x80 | 4, 1, 2, 3, 4, 9, 9, 9, 9]
    }

    /// The head of a masked frame of `length` bytes (14 bytes).
    fn frame_head(length: u64) -> Vec<u8> {
        let mut head = vec![0x82, 0x80 | 127];
        head.extend_from_slice(&length.to_be_bytes());
        head.extend_from_slice(&[1, 2, 3, 4]);
        head
    }

    // (A runtime: a message past FREE starts its timer.)
    #[tokio::test]
    async fn an_ordinary_message_takes_no_room_and_a_large_one_takes_it_in_steps() {
        let meter = meter(1 << 20);
        meter.came(&zeros(FREE)).expect("free");
        assert_eq!(meter.room_taken(), 0);
        meter.came(&zeros(1)).expect("one byte over");
        assert_eq!(meter.room_taken(), STEP);
        meter.came(&zeros(STEP - 1)).expect("to the step");
        assert_eq!(meter.room_taken(), STEP);
        meter.came(&zeros(1)).expect("past it");
        assert_eq!(meter.room_taken(), 2 * STEP);
        // Whole, in frames of no size: all of it is given back.
        meter.taken_whole();
        assert_eq!(meter.room_taken(), 0);
    }

    // (A runtime: a message past FREE starts its timer.)
    #[tokio::test]
    async fn once_a_message_is_whole_all_its_room_goes_back() {
        let meter = meter(1 << 20);
        // One frame of FREE + STEP + 1 bytes: two steps past FREE while it
        // comes (its 14-byte head counted too), none once it is whole (the
        // library reads the client's frames cut into pieces, and keeps
        // nothing of them).
        meter
            .came(&frame_head((FREE + STEP + 1) as u64))
            .expect("head");
        meter.came(&zeros(FREE + STEP + 1)).expect("payload");
        assert_eq!(meter.room_taken(), 2 * STEP);
        meter.taken_whole();
        assert_eq!(meter.room_taken(), 0);
        // The next, as large, takes its own.
        meter.came(&frame_head((FREE + STEP) as u64)).expect("head");
        meter.came(&zeros(FREE + STEP)).expect("payload");
        assert_eq!(meter.room_taken(), 2 * STEP);
        meter.taken_whole();
        assert_eq!(meter.room_taken(), 0);
        // A message in small frames (64 KiB each, as a fragmenting client
        // sends) keeps nothing either.
        let small = meter_fragmented(&meter_for_fragments(), 48);
        assert_eq!(small, 0);
    }

    /// A fresh meter with a cap of 16 MiB.
    fn meter_for_fragments() -> Arc<Meter> {
        meter(16 << 20)
    }

    /// Sends one message in `count` frames of FREE bytes to `meter`; the
    /// room taken once it is whole.
    fn meter_fragmented(meter: &Arc<Meter>, count: usize) -> usize {
        for _ in 0..count {
            meter.came(&frame_head(FREE as u64)).expect("head");
            meter.came(&zeros(FREE)).expect("payload");
        }
        assert!(
            meter.room_taken() >= (count - 2) * FREE,
            "taken while it came"
        );
        meter.taken_whole();
        meter.room_taken()
    }

    // (A runtime: a message past FREE starts its timer.)
    #[tokio::test]
    async fn pings_between_the_pieces_of_a_message_are_not_counted_as_it() {
        let meter = meter(1 << 20);
        meter.came(&zeros(FREE - 8)).expect("a piece");
        // A ping alone, counted from nothing, counts nothing either.
        let fresh = meter_for_fragments();
        fresh.came(&ping()).expect("a ping");
        fresh.came(&zeros(FREE)).expect("to FREE");
        assert_eq!(fresh.room_taken(), 0);
        for _ in 0..1000 {
            meter.came(&ping()).expect("a ping");
            // Its length written in eight bytes, as a client may (helper 81).
            meter
                .came(&[0x89, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4])
                .expect("a long-headed ping");
        }
        assert_eq!(meter.room_taken(), 0);
        meter.came(&zeros(9)).expect("the rest");
        assert_eq!(meter.room_taken(), STEP);
    }

    // (A runtime: a message past FREE starts its timer.)
    #[tokio::test]
    async fn room_other_sockets_hold_is_not_there_and_a_message_over_the_cap_never_is() {
        let room = HeldRoom::new(2 * STEP);
        let meter_of = |room: &HeldRoom| Meter::new(Some(room.clone()), Duration::from_secs(30));
        let first = meter_of(&room);
        let second = meter_of(&room);
        // One frame of FREE + STEP bytes, with its head: two steps, the cap.
        first.came(&frame_head((FREE + STEP) as u64)).expect("head");
        first.came(&zeros(FREE + STEP)).expect("two steps");
        assert_eq!(first.room_taken(), 2 * STEP);
        assert_eq!(second.came(&zeros(FREE + 1)), Err(Cut::NoRoomNow));
        // Whole, it gives its room back: another's message fits again.
        first.taken_whole();
        assert_eq!(first.room_taken(), 0);
        let third = meter_of(&room);
        third.came(&zeros(FREE + 2 * STEP)).expect("room again");
        // A message over the whole cap alone can never be held.
        let alone = meter(2 * STEP);
        assert_eq!(
            alone.came(&zeros(FREE + 2 * STEP + 1)),
            Err(Cut::NoRoomEver)
        );
        // The cap to the byte can.
        let exact = meter(2 * STEP);
        exact.came(&zeros(FREE + 2 * STEP)).expect("to the cap");
    }

    #[test]
    fn frame_heads_no_client_may_send_are_cut_at_once() {
        // A ping announcing 16 MiB: the library would read all of it first,
        // and the meter counts no control frame's payload (helper 82).
        let mut long_ping = vec![0x89, 0x80 | 127];
        long_ping.extend_from_slice(&(16u64 << 20).to_be_bytes());
        long_ping.extend_from_slice(&[1, 2, 3, 4]);
        let unmasked = vec![0x82, 127, 0, 0, 0, 0, 0, 0xf0, 0, 0];
        let in_pieces = vec![0x09, 0x80 | 4, 1, 2, 3, 4];
        for head in [long_ping, unmasked, in_pieces] {
            let mut frames = Frames::default();
            assert_eq!(frames.scan(&head), Err(Cut::BadFrame), "{head:?}");
        }
        let mut frames = Frames::default();
        assert!(frames.scan(&[0x89, 0x80 | 125, 1, 2, 3, 4]).is_ok());
    }

    // (A runtime: a message past FREE starts its timer.)
    #[tokio::test]
    async fn without_a_cap_nothing_is_taken() {
        let meter = Meter::new(None, Duration::from_secs(30));
        meter.came(&zeros(64 << 20)).expect("no cap");
        assert_eq!(meter.room_taken(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_large_message_must_be_whole_within_the_idle_time_of_passing_free() {
        let meter = meter(1 << 20);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        // Under FREE nothing is timed: such a pause is as long as it likes.
        meter.came(&zeros(FREE)).expect("free");
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(meter.waiting(&mut cx), Ok(()));
        meter.came(&zeros(8)).expect("over");
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(meter.waiting(&mut cx), Ok(()));
        // More of it, or pings between its pieces, do not give it longer.
        meter.came(&zeros(8)).expect("a frame more");
        meter.came(&ping()).expect("a ping");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(meter.waiting(&mut cx), Err(Cut::Stalled));
        // Once the message is whole, nothing is due, and the next one
        // starts its own time when it passes FREE.
        meter.taken_whole();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(meter.waiting(&mut cx), Ok(()));
        meter.came(&zeros(FREE + 1)).expect("the next, over");
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(meter.waiting(&mut cx), Ok(()));
    }
}
