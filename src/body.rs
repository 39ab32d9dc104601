//! Request bodies on their way upstream: the route's size limit, and the
//! moment a body has been sent in full (when the response timeout starts).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// What the forwarder learns about a body while hyper sends it.
#[derive(Debug)]
pub(crate) struct BodyWatch {
    exceeded: AtomicBool,
    client_failed: AtomicBool,
    stalled: AtomicBool,
    finished: AtomicBool,
    /// The body will not be sent in full: it failed (over its limit, the
    /// client's fault or stall) or was dropped unfinished.
    broken: AtomicBool,
    /// Woken when the body is finished or broken.
    notify: Notify,
    /// When hyper last asked for more of the body (in milliseconds after
    /// `since`), and whether the body is waiting for its client.
    since: std::time::Instant,
    asked_ms: AtomicU64,
    waiting_on_client: AtomicBool,
}

impl Default for BodyWatch {
    fn default() -> BodyWatch {
        BodyWatch {
            exceeded: AtomicBool::new(false),
            client_failed: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            notify: Notify::new(),
            since: std::time::Instant::now(),
            asked_ms: AtomicU64::new(0),
            waiting_on_client: AtomicBool::new(false),
        }
    }
}

impl BodyWatch {
    /// Whether the body went over its limit (and so failed).
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Acquire)
    }

    /// Whether the client's body broke off (a malformed chunk, a connection
    /// closed early): the client's fault, not the upstream's.
    pub(crate) fn client_failed(&self) -> bool {
        self.client_failed.load(Ordering::Acquire)
    }

    /// Whether the client stopped sending its body for longer than allowed.
    pub(crate) fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Acquire)
    }

    /// Resolves once the body has been read to its end, or will never be.
    async fn ended(&self) {
        if self.has_ended() {
            // Every bodiless request: no waiter to register.
            return;
        }
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !self.has_ended() {
            notified.await;
        }
    }

    fn has_ended(&self) -> bool {
        self.is_finished() || self.broken.load(Ordering::Acquire)
    }

    /// Whether the body has been read to its end without fault.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Whether the upstream has taken none of the body for `timeout` while
    /// the body had more ready to send: hyper asks for more only as the
    /// upstream reads, so an upstream that stops reading stops the asking.
    pub(crate) fn upstream_stopped_reading(&self, timeout: Duration) -> bool {
        let asked = Duration::from_millis(self.asked_ms.load(Ordering::Acquire));
        !self.is_finished()
            && !self.waiting_on_client.load(Ordering::Acquire)
            && self.since.elapsed().saturating_sub(asked) >= timeout
    }

    /// Waits until the body has been sent in full, has broken off, or the
    /// upstream has stopped taking it for `timeout`, and says which.
    pub(crate) async fn sent(&self, timeout: Duration) -> Sent {
        let tick = check_every(timeout);
        loop {
            if self.is_finished() {
                return Sent::Whole;
            }
            if self.broken.load(Ordering::Acquire) {
                return Sent::Broken;
            }
            tokio::select! {
                () = self.ended() => {}
                () = tokio::time::sleep(tick) => {
                    if self.upstream_stopped_reading(timeout) {
                        tracing::debug!("the upstream stopped reading the request body");
                        return Sent::UpstreamStopped;
                    }
                }
            }
        }
    }

    fn asked(&self) {
        let now = self.since.elapsed().as_millis() as u64;
        self.asked_ms.store(now, Ordering::Release);
    }

    fn finish(&self) {
        if !self.finished.swap(true, Ordering::AcqRel) {
            self.notify.notify_waiters();
        }
    }

    /// The body will not be sent in full.
    fn break_off(&self) {
        if !self.is_finished() && !self.broken.swap(true, Ordering::AcqRel) {
            self.notify.notify_waiters();
        }
    }
}

/// How a request body's sending ended; see [`BodyWatch::sent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Read to its end and handed on whole.
    Whole,
    /// The upstream took none of it for the timeout.
    UpstreamStopped,
    /// It failed (over its limit, the client's fault or stall) or was
    /// dropped unfinished, with the connection it was going out on.
    Broken,
}

/// How often a body still going out is checked for an upstream that
/// stopped taking it within `timeout`.
fn check_every(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// How long a body may wait for its next piece. The timer is made the
/// first time the body waits (a body that comes whole, as every GET, never
/// arms one), and set afresh the first time it waits after a piece came:
/// time in which its reader did not ask for more (an upstream that stops
/// taking a request body, a client slow to take an answer) is never counted
/// against the sender.
pub(crate) struct IdleLimit {
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether a piece came since the timer was last set.
    flowed: bool,
}

impl IdleLimit {
    pub(crate) fn new(limit: Duration) -> IdleLimit {
        IdleLimit {
            limit,
            timer: None,
            flowed: false,
        }
    }

    /// How long the body may wait.
    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    /// A piece came.
    pub(crate) fn flowed(&mut self) {
        self.flowed = true;
    }

    /// The body waits: whether it has waited `limit` since it last had a
    /// piece (if not, `cx` is woken when it has).
    pub(crate) fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let limit = self.limit;
        let flowed = std::mem::take(&mut self.flowed);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if flowed {
            timer.as_mut().reset(Instant::now() + limit);
        }
        timer.as_mut().poll(cx).is_ready()
    }
}

/// A request body that fails once more than `limit` bytes have passed and
/// reports its end through a [`BodyWatch`].
pub(crate) struct LimitedBody {
    inner: Incoming,
    tap: Option<Tap>,
    remaining: u64,
    watch: Arc<BodyWatch>,
    /// How long the client may pause between pieces.
    idle: IdleLimit,
}

/// The error a [`LimitedBody`] ends with when it grows over its limit.
#[derive(Debug, thiserror::Error)]
#[error("request body over the limit")]
struct BodyLimitExceeded;

/// The error a [`LimitedBody`] ends with when its client stops sending.
#[derive(Debug, thiserror::Error)]
#[error("request body stalled")]
struct BodyStalled;

impl LimitedBody {
    /// A body of at most `limit` bytes, whose client may pause at most
    /// `idle_limit` between pieces.
    pub(crate) fn new(
        inner: Incoming,
        limit: u64,
        idle_limit: Duration,
    ) -> (LimitedBody, Arc<BodyWatch>) {
        let watch = Arc::new(BodyWatch::default());
        if inner.is_end_stream() {
            watch.finish();
        }
        let body = LimitedBody {
            inner,
            tap: None,
            remaining: limit,
            watch: watch.clone(),
            idle: IdleLimit::new(idle_limit),
        };
        (body, watch)
    }
}

/// A copy of the first bytes of a body as it passes.
#[derive(Clone, Default)]
pub struct Tap(Arc<std::sync::Mutex<Vec<u8>>>);

/// How much of a tapped body is kept.
const TAP_LIMIT: usize = 4096;

impl Tap {
    /// The body, if it was short enough to be kept whole.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        let kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (kept.len() <= TAP_LIMIT).then(|| kept.clone())
    }

    fn keep(&self, data: &[u8]) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = (TAP_LIMIT + 1).saturating_sub(kept.len()).min(data.len());
        kept.extend_from_slice(&data[..room]);
    }
}

impl LimitedBody {
    /// Keeps a copy of the body's first bytes in `tap` as they pass.
    pub(crate) fn tapped(mut self, tap: Tap) -> LimitedBody {
        self.tap = Some(tap);
        self
    }
}

impl Drop for LimitedBody {
    /// A body dropped before its end (its upstream connection closed or
    /// failed) will never be sent in full: whoever waits on it is told.
    fn drop(&mut self) {
        self.watch.break_off();
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.watch.asked();
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.watch.waiting_on_client.store(false, Ordering::Release);
                self.idle.flowed();
                frame
            }
            Poll::Ready(Some(Err(error))) => {
                self.watch.client_failed.store(true, Ordering::Release);
                self.watch.break_off();
                return Poll::Ready(Some(Err(error.into())));
            }
            Poll::Ready(None) => {
                self.watch.finish();
                return Poll::Ready(None);
            }
            Poll::Pending => {
                self.watch.waiting_on_client.store(true, Ordering::Release);
                if self.idle.expired(cx) {
                    self.watch.stalled.store(true, Ordering::Release);
                    self.watch.break_off();
                    return Poll::Ready(Some(Err(BodyStalled.into())));
                }
                return Poll::Pending;
            }
        };
        let length = frame.data_ref().map_or(0, |data| data.len() as u64);
        let Some(left) = self.remaining.checked_sub(length) else {
            self.watch.exceeded.store(true, Ordering::Release);
            self.watch.break_off();
            return Poll::Ready(Some(Err(BodyLimitExceeded.into())));
        };
        self.remaining = left;
        if let (Some(tap), Some(data)) = (&self.tap, frame.data_ref()) {
            tap.keep(data);
        }
        if self.inner.is_end_stream() {
            self.watch.finish();
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body read whole before it goes upstream (one of unknown
/// length, on an ordinary route), copied into blocks of its own as it
/// comes, and the room those blocks take under
/// `limits.max_held_body_bytes`, given back when the body is dropped: once
/// sent, or with its request. Copied, because the pieces a client's
/// chunks come in hold on to the reading buffer around them: a body sent
/// one byte a chunk held about 35 times its size so (helper 61). The room
/// counted is the blocks' capacity, the memory they take.
pub(crate) struct Held {
    blocks: std::collections::VecDeque<Bytes>,
    filling: bytes::BytesMut,
    /// Where room comes from; `None` without a cap.
    room: Option<HeldRoom>,
    taken: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The room under `limits.max_held_body_bytes`: what is left of it, shared
/// by all held bodies, and the cap itself.
#[derive(Clone)]
pub(crate) struct HeldRoom {
    left: Arc<tokio::sync::Semaphore>,
    cap: usize,
}

impl HeldRoom {
    /// Room for `cap` bytes, at most [`tokio::sync::Semaphore::MAX_PERMITS`].
    pub(crate) fn new(cap: usize) -> HeldRoom {
        HeldRoom {
            left: Arc::new(tokio::sync::Semaphore::new(cap)),
            cap,
        }
    }

    /// The cap.
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// Takes up to `bytes` more of the room for a holder that has `taken`
    /// already, and adds them to it: no more than the cap leaves for that
    /// holder alone, so that one holder may have the cap to the byte. How
    /// many were taken; `Ever` when the holder has the whole cap already,
    /// `Now` when others hold what it needs. (Held bodies and WebSocket
    /// messages both take their room so.)
    pub(crate) fn take_more(
        &self,
        taken: &mut Option<tokio::sync::OwnedSemaphorePermit>,
        bytes: usize,
    ) -> Result<usize, NoRoom> {
        let held = taken.as_ref().map_or(0, |taken| taken.num_permits());
        let bytes = bytes.min(self.cap.saturating_sub(held));
        if bytes == 0 {
            return Err(NoRoom::Ever);
        }
        let more = u32::try_from(bytes)
            .ok()
            .and_then(|count| self.left.clone().try_acquire_many_owned(count).ok())
            .ok_or(NoRoom::Now)?;
        match taken {
            Some(taken) => taken.merge(more),
            None => *taken = Some(more),
        }
        Ok(bytes)
    }

    #[cfg(test)]
    fn left(&self) -> usize {
        self.left.available_permits()
    }
}

/// The first block's size; each next one is twice the last, up to
/// [`LARGEST_BLOCK`]: a short body takes little room, a long one few blocks.
const FIRST_BLOCK: usize = 4 * 1024;
const LARGEST_BLOCK: usize = 64 * 1024;

/// Why a held body could not take its next block.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NoRoom {
    /// The other bodies held take the room the block needs.
    Now,
    /// This body alone has taken the whole cap: it can never be held.
    Ever,
}

impl Held {
    /// An empty body taking its room from `room` (`None`: no cap).
    pub(crate) fn new(room: Option<HeldRoom>) -> Held {
        Held {
            blocks: std::collections::VecDeque::new(),
            filling: bytes::BytesMut::new(),
            room,
            taken: None,
        }
    }

    /// Copies `piece` in, taking room for each new block it needs.
    pub(crate) fn push(&mut self, mut piece: &[u8]) -> Result<(), NoRoom> {
        while !piece.is_empty() {
            if self.filling.len() == self.filling.capacity() {
                self.next_block()?;
            }
            let space = self.filling.capacity() - self.filling.len();
            let (now, rest) = piece.split_at(space.min(piece.len()));
            self.filling.extend_from_slice(now);
            piece = rest;
        }
        Ok(())
    }

    /// Sets the full block aside and starts the next, once there is room
    /// for it. A block is made no larger than what is left of the cap for
    /// this body alone, so that one body can be held up to the cap itself.
    fn next_block(&mut self) -> Result<(), NoRoom> {
        let mut size = match self.filling.capacity() {
            0 => FIRST_BLOCK,
            last => (last * 2).min(LARGEST_BLOCK),
        };
        if let Some(room) = &self.room {
            size = room.take_more(&mut self.taken, size)?;
        }
        let full = std::mem::replace(&mut self.filling, bytes::BytesMut::with_capacity(size));
        if !full.is_empty() {
            self.blocks.push_back(full.freeze());
        }
        Ok(())
    }

    /// The bytes not yet sent: in the blocks and the one being filled.
    fn unsent(&self) -> u64 {
        let blocks: usize = self.blocks.iter().map(Bytes::len).sum();
        (blocks + self.filling.len()) as u64
    }

    /// The room taken, in bytes (what the blocks' capacity adds up to).
    #[cfg(test)]
    fn room_taken(&self) -> usize {
        self.taken.as_ref().map_or(0, |taken| taken.num_permits())
    }
}

impl Body for Held {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let block = match this.blocks.pop_front() {
            Some(block) => block,
            None if !this.filling.is_empty() => std::mem::take(&mut this.filling).freeze(),
            None => return Poll::Ready(None),
        };
        Poll::Ready(Some(Ok(Frame::data(block))))
    }

    fn is_end_stream(&self) -> bool {
        self.blocks.is_empty() && self.filling.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.unsent())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body waiting on its client, as after an early answer from an
    /// upstream that goes on reading.
    fn waiting_on_its_client() -> BodyWatch {
        let watch = BodyWatch::default();
        watch.waiting_on_client.store(true, Ordering::Release);
        watch
    }

    #[tokio::test]
    async fn an_idle_limit_counts_only_the_wait_after_the_last_piece() {
        let mut idle = IdleLimit::new(Duration::from_millis(200));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(!idle.expired(&mut cx), "armed at the first wait");
        idle.flowed();
        // Its reader asks again only 300 ms later (back-pressure): that is
        // no pause of the sender's.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!idle.expired(&mut cx), "set afresh when it waits again");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(idle.expired(&mut cx), "then the limit holds");
    }

    #[tokio::test]
    async fn the_wait_for_a_body_ends_when_the_body_breaks_off() {
        let watch = waiting_on_its_client();
        let sent = watch.sent(Duration::from_millis(40));
        tokio::pin!(sent);
        // A body waiting on its client is not the upstream's stopping.
        let early = tokio::time::timeout(Duration::from_millis(300), &mut sent).await;
        assert!(early.is_err(), "ended while the body was still coming");
        // The client's body fails (or stalls, or goes over its limit).
        watch.client_failed.store(true, Ordering::Release);
        watch.break_off();
        let ended = tokio::time::timeout(Duration::from_secs(2), sent).await;
        assert_eq!(ended.ok(), Some(Sent::Broken));
    }

    /// A request body as hyper's server hands it over, from a client that
    /// sends `sent` after a head announcing 100 bytes, then hangs up if
    /// `hang_up` (else it stays connected, sending nothing more).
    async fn body_from_a_client(
        sent: &'static [u8],
        hang_up: bool,
    ) -> (Incoming, tokio::task::JoinHandle<()>) {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let client = tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(address)
                .await
                .expect("connect");
            let head =
                b"POST /backups/new/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";
            stream.write_all(head).await.expect("head");
            stream.write_all(sent).await.expect("body");
            if !hang_up {
                std::future::pending::<()>().await;
            }
        });
        let (stream, _) = listener.accept().await.expect("accept");
        let (hand_over, handed) = tokio::sync::oneshot::channel();
        let hand_over = std::sync::Mutex::new(Some(hand_over));
        let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
            if let Some(hand_over) = hand_over.lock().expect("lock").take() {
                let _ = hand_over.send(request.into_body());
            }
            async {
                Ok::<_, std::convert::Infallible>(http::Response::new(
                    http_body_util::Empty::<Bytes>::new(),
                ))
            }
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
        );
        (handed.await.expect("a request"), client)
    }

    #[tokio::test]
    async fn a_body_whose_client_hangs_up_early_is_broken_for_whoever_waits() {
        let (incoming, _client) = body_from_a_client(b"0123456789", true).await;
        let (mut body, watch) = LimitedBody::new(incoming, 1000, Duration::from_secs(10));
        let waiter = tokio::spawn(async move { watch.sent(Duration::from_millis(40)).await });
        let mut read = 0;
        let failed = loop {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                Some(Err(_)) => break true,
                None => break false,
            }
        };
        assert!(failed && read == 10, "read {read} bytes, failed: {failed}");
        let ended = tokio::time::timeout(Duration::from_secs(2), waiter).await;
        assert_eq!(ended.ok().and_then(Result::ok), Some(Sent::Broken));
    }

    #[tokio::test]
    async fn a_body_dropped_unfinished_is_broken_for_whoever_waits() {
        let (incoming, _client) = body_from_a_client(b"0123456789", false).await;
        let (mut body, watch) = LimitedBody::new(incoming, 1000, Duration::from_secs(10));
        let waiter = tokio::spawn({
            let watch = watch.clone();
            async move { watch.sent(Duration::from_millis(40)).await }
        });
        assert!(matches!(body.frame().await, Some(Ok(_))));
        // Waiting on a client that sends nothing more: not the upstream's
        // stopping, so the wait goes on.
        let next = tokio::time::timeout(Duration::from_millis(300), body.frame()).await;
        assert!(next.is_err());
        assert!(
            !waiter.is_finished(),
            "the wait ended with the body still coming"
        );
        drop(body);
        let ended = tokio::time::timeout(Duration::from_secs(2), waiter).await;
        assert_eq!(ended.ok().and_then(Result::ok), Some(Sent::Broken));
    }

    #[tokio::test]
    async fn a_finished_body_is_whole_and_stays_so() {
        let watch = waiting_on_its_client();
        watch.finish();
        watch.break_off();
        assert_eq!(watch.sent(Duration::from_millis(40)).await, Sent::Whole);
    }

    #[tokio::test]
    async fn a_body_the_upstream_stops_taking_is_told_apart() {
        let watch = BodyWatch::default();
        let ended = tokio::time::timeout(
            Duration::from_secs(2),
            watch.sent(Duration::from_millis(40)),
        );
        assert_eq!(ended.await.ok(), Some(Sent::UpstreamStopped));
    }

    /// Reads a held body to its end, in the blocks it sends.
    fn drained(held: &mut Held) -> Vec<Bytes> {
        let waker = std::task::Waker::noop();
        let mut context = Context::from_waker(waker);
        let mut blocks = Vec::new();
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut *held).poll_frame(&mut context) {
            blocks.push(frame.into_data().expect("data"));
        }
        blocks
    }

    #[test]
    fn a_held_body_takes_the_room_of_the_blocks_it_is_copied_into() {
        // A body sent a byte a chunk: 100,000 pieces of one byte.
        let room = HeldRoom::new(1 << 20);
        let mut held = Held::new(Some(room.clone()));
        for index in 0..100_000u32 {
            held.push(&[(index % 251) as u8]).expect("room");
        }
        // Blocks of 4, 8, 16, 32, then 64 KiB: 124 KiB for 100,000 bytes,
        // where one piece a byte took about 35 times the body.
        assert_eq!(held.room_taken(), (4 + 8 + 16 + 32 + 64) * 1024);
        assert_eq!(room.left(), (1 << 20) - held.room_taken());
        assert_eq!(held.size_hint().exact(), Some(100_000));
        let blocks = drained(&mut held);
        assert_eq!(
            blocks.iter().map(Bytes::len).collect::<Vec<_>>(),
            [4096, 8192, 16384, 32768, 100_000 - 61_440]
        );
        let whole: Vec<u8> = blocks.concat();
        assert!(whole
            .iter()
            .enumerate()
            .all(|(index, byte)| *byte == (index % 251) as u8));
        assert!(held.is_end_stream());
        // The room comes back with the body.
        drop(held);
        assert_eq!(room.left(), 1 << 20);
    }

    #[test]
    fn a_held_body_with_no_room_for_its_next_block_is_refused() {
        let room = HeldRoom::new(40 * 1024);
        let mut first = Held::new(Some(room.clone()));
        let mut second = Held::new(Some(room.clone()));
        // 4, 8 and 16 KiB blocks for the first; the second's first 4 KiB.
        first.push(&[1; 28 * 1024]).expect("three blocks");
        second.push(&[2; 4 * 1024]).expect("one block");
        // The first's next block (32 KiB, or the 12 KiB left of the cap
        // for it alone) finds 8 KiB left: the second holds the rest.
        assert_eq!(first.push(&[1]), Err(NoRoom::Now));
        drop(second);
        // With the second gone, the cap's last 12 KiB are the first's.
        first.push(&[1; 12 * 1024]).expect("the rest of the cap");
        assert_eq!(first.room_taken(), 40 * 1024);
        assert!(drained(&mut first).concat() == [1; 40 * 1024]);
        // Without a cap, nothing is counted.
        let mut free = Held::new(None);
        free.push(&[1; 100 * 1024]).expect("no cap");
        assert_eq!(free.room_taken(), 0);
        assert_eq!(drained(&mut free).concat().len(), 100 * 1024);
        drop(first);
        assert_eq!(room.left(), 40 * 1024);
    }

    #[test]
    fn one_body_is_held_up_to_the_cap_and_no_further() {
        // A cap that is no sum of whole blocks (4 + 8 KiB, then 1000 bytes
        // of a third), and one under the first block's size.
        for cap in [13 * 1024 - 24, 1000] {
            let room = HeldRoom::new(cap);
            let mut held = Held::new(Some(room.clone()));
            held.push(&vec![7; cap]).expect("the cap's worth");
            assert_eq!(held.room_taken(), cap);
            // A byte more could never fit, whatever the others hold.
            assert_eq!(held.push(&[7]), Err(NoRoom::Ever));
            assert!(drained(&mut held).concat() == vec![7; cap]);
            drop(held);
            assert_eq!(room.left(), cap);
        }
    }
}
