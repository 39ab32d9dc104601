//! A client connection between its requests. hyper keeps a read buffer
//! (8 KiB), a write buffer and a slot for a request's future for as long as
//! its connection object lives, and an idle keep-alive connection needs none
//! of them. So the server runs one hyper connection per stretch of requests:
//! when the last request is answered and written out, and the connection sits
//! at a message boundary hyper would keep alive, the hyper connection is
//! ended without closing the socket ("parked"), and a new one is made when
//! the client sends again. nginx frees an idle connection's buffers the same
//! way. A new hyper connection costs about 20 KiB of allocations, so a
//! connection is parked after a second without requests, or at once when
//! more than [`WARM_LIMIT`] hyper connections are running. (Plain GETs are
//! served by [`crate::plain`] rather than hyper; a stretch of those holds
//! only a read buffer, and parks the same way.)
//!
//! Parking also puts the connection's timeouts here rather than in hyper:
//! the head timeout counts from the first byte of a head (or from the
//! connection's opening, for its first; or from the end of the request
//! before, when the head may have come during it), the keep-alive timeout
//! from the end of the last request, and both run on one timer per
//! connection that is re-armed only when it fires or must fire sooner. An
//! answer still being written out is never idle time, but a client that
//! takes none of it for the send timeout is closed, as nginx's
//! `send_timeout` does.

use std::future::{poll_fn, Future};
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, Version};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// No head is on its way.
const NO_HEAD: u64 = u64::MAX;

/// The last write to the client went out (or there was none).
const NOT_BLOCKED: u64 = u64::MAX;

/// What one client connection is doing, shared by its task, its socket
/// wrapper and its requests. Times are milliseconds after `opened`.
pub(crate) struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// When the last request finished.
    idle_since_ms: AtomicU64,
    /// When the first byte of the next head came in with no request in
    /// flight; at first 0, so the first head counts from the opening.
    head_since_ms: AtomicU64,
    /// The last request and its answer leave the connection where hyper
    /// keeps it alive for another request: HTTP/1.1, no request body, no
    /// upgrade, no `close` asked for, and no `Connection` header on the
    /// answer.
    reusable: AtomicBool,
    /// Since when writes to the client have been waiting for it to take
    /// bytes, with none taken in between.
    write_blocked_since_ms: AtomicU64,
    /// Bytes came in while the request in flight ran: a body, or the start
    /// of the next request.
    read_in_flight: AtomicBool,
    /// A hyper connection shutting down now should leave the socket open.
    parking: AtomicBool,
    /// Bytes of the head waited for have come in, or the connection is
    /// new: the head time running out is then a head timeout, not the end
    /// of an idle connection's wait for its next request.
    head_begun: AtomicBool,
    /// The client was given up on for taking none of its answer: its socket
    /// is reset when closed.
    given_up: AtomicBool,
    /// The connection's task asks its socket wrapper to look, at hyper's
    /// next flush, whether the client has hung up (see [`HANGUP_CHECK`]).
    hangup_check: AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            head_since_ms: AtomicU64::new(0),
            reusable: AtomicBool::new(true),
            write_blocked_since_ms: AtomicU64::new(NOT_BLOCKED),
            read_in_flight: AtomicBool::new(false),
            parking: AtomicBool::new(false),
            head_begun: AtomicBool::new(true),
            given_up: AtomicBool::new(false),
            hangup_check: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.opened + Duration::from_millis(ms)
    }

    /// Bytes came from the client.
    fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            self.read_in_flight.store(true, Ordering::Release);
            return;
        }
        self.head_begun.store(true, Ordering::Release);
        if self.head_since_ms.load(Ordering::Acquire) == NO_HEAD {
            self.head_since_ms.store(self.now_ms(), Ordering::Release);
        }
    }

    /// The next head's time runs from the end of the last request: part of
    /// it came in before then (`begun`), or there is no telling.
    fn head_waiting_since_idle(&self, begun: bool) {
        if begun {
            self.head_begun.store(true, Ordering::Release);
        }
        if self.head_since_ms.load(Ordering::Acquire) == NO_HEAD {
            let idle_since = self.idle_since_ms.load(Ordering::Acquire);
            self.head_since_ms.store(idle_since, Ordering::Release);
        }
    }

    /// Asks the socket wrapper to look whether the client has hung up, at
    /// hyper's next flush.
    pub(crate) fn check_hangup(&self) {
        self.hangup_check.store(true, Ordering::Release);
    }

    /// The client took none of its answer for the send time: its socket is
    /// reset when closed, so that the kernel drops the unsent answer.
    pub(crate) fn give_up(&self) {
        self.given_up.store(true, Ordering::Release);
    }

    /// Marks whether hyper's shutdown of the connection should leave the
    /// socket open.
    pub(crate) fn set_parking(&self, parking: bool) {
        self.parking.store(parking, Ordering::Release);
    }

    /// The answer to the request in flight carries a `Connection` header.
    pub(crate) fn answer_has_connection_header(&self) {
        self.reusable.store(false, Ordering::Release);
    }

    /// A write to the client went out (`true`) or must wait for it to take
    /// bytes (`false`).
    fn wrote(&self, went_out: bool) {
        let since = &self.write_blocked_since_ms;
        if went_out {
            since.store(NOT_BLOCKED, Ordering::Release);
        } else if since.load(Ordering::Acquire) == NOT_BLOCKED {
            since.store(self.now_ms(), Ordering::Release);
        }
    }

    /// What the connection waits for now: a client that takes no bytes of
    /// an answer for the send time is given up on; no deadline runs while a
    /// request is in flight (only the hangup check, see
    /// [`Deadlines::poll_hangup_check`]); else a head's deadline, or (while
    /// `serving`, that is while a hyper connection runs) the moment to
    /// park, or the end of the keep-alive time.
    fn wait(&self, timeouts: &Timeouts, serving: bool) -> Wait {
        // An answer still being written out is not idle time, but it must
        // move.
        let blocked_since = self.write_blocked_since_ms.load(Ordering::Acquire);
        if blocked_since != NOT_BLOCKED {
            let until = self.at(blocked_since) + timeouts.send;
            return Wait::Until(until, Next::Expired(Expiry::Send));
        }
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Wait::Busy;
        }
        let head_since = self.head_since_ms.load(Ordering::Acquire);
        if head_since != NO_HEAD {
            let until = self.at(head_since) + timeouts.head;
            let expiry = if self.head_begun.load(Ordering::Acquire) {
                Expiry::Head
            } else {
                Expiry::KeepAlive
            };
            return Wait::Until(until, Next::Expired(expiry));
        }
        let idle_since = self.at(self.idle_since_ms.load(Ordering::Acquire));
        let expires = Wait::Until(
            idle_since + timeouts.keep_alive,
            Next::Expired(Expiry::KeepAlive),
        );
        if !serving || !self.reusable.load(Ordering::Acquire) {
            return expires;
        }
        if Warm::crowded() {
            return Wait::Now(Next::Park);
        }
        if timeouts.keep_alive <= PARK_AFTER {
            return expires;
        }
        Wait::Until(idle_since + PARK_AFTER, Next::Park)
    }
}

enum Wait {
    Busy,
    Now(Next),
    Until(Instant, Next),
}

/// How long a connection keeps its hyper connection, buffers and all,
/// after its last request, so that a client sending one request after
/// another does not pay for a new one each time.
const PARK_AFTER: Duration = Duration::from_secs(1);

/// How many hyper connections may be kept past their requests at once
/// (about 27 KiB each); beyond that, connections park as soon as they are
/// idle.
const WARM_LIMIT: usize = 256;

/// A running hyper connection, counted while it lives.
pub(crate) struct Warm;

static WARM: AtomicUsize = AtomicUsize::new(0);

impl Warm {
    pub(crate) fn start() -> Warm {
        WARM.fetch_add(1, Ordering::Relaxed);
        Warm
    }

    /// How many hyper connections run now.
    pub(crate) fn count() -> usize {
        WARM.load(Ordering::Relaxed)
    }

    fn crowded() -> bool {
        WARM.load(Ordering::Relaxed) > WARM_LIMIT
    }
}

impl Drop for Warm {
    fn drop(&mut self) {
        WARM.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connection's timeouts.
#[derive(Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) head: Duration,
    pub(crate) keep_alive: Duration,
    /// Longest a write to the client may wait with none of it taken.
    pub(crate) send: Duration,
}

impl Timeouts {
    pub(crate) fn of(limits: &crate::config::Limits) -> Timeouts {
        Timeouts {
            head: limits.header_read_timeout,
            keep_alive: limits.keep_alive_timeout,
            send: limits.send_timeout,
        }
    }
}

/// What the connection's task should do next.
#[derive(Clone, Copy)]
pub(crate) enum Next {
    /// End the hyper connection and keep the socket.
    Park,
    /// A request has been in flight a while: look whether the client is
    /// still there ([`Activity::check_hangup`]), and go on.
    CheckHangup,
    /// A head took too long, the connection sat idle too long, or the
    /// client stopped taking its answer: close it.
    Expired(Expiry),
}

/// Why a connection's own timer closed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// A request head did not come in whole within the head time.
    Head,
    /// No request came within the keep-alive time.
    KeepAlive,
    /// The client took none of its answer for the send time.
    Send,
}

impl Expiry {
    /// The word for logs and metrics.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Expiry::Head => "head",
            Expiry::KeepAlive => "keep_alive",
            Expiry::Send => "send",
        }
    }

    /// Logs and counts the close. A keep-alive close is the normal end of
    /// an idle connection and is neither; a send timeout cuts an answer
    /// off, which an operator should be able to see.
    pub(crate) fn record(self, peer: std::net::SocketAddr) {
        match self {
            Expiry::KeepAlive => return,
            Expiry::Head => {
                tracing::debug!(%peer, "connection closed: no whole request head in time")
            }
            Expiry::Send => tracing::info!(
                %peer,
                "connection reset: the client took none of its answer for the send timeout"
            ),
        }
        crate::metrics::client_timeout(self.name());
    }
}

/// The send timeout for a socket hyper has handed over (a WebSocket
/// relay's client side): its writes still go through [`ClientIo`] and are
/// noted in its [`Activity`], but the connection's own timer has ended.
#[derive(Clone)]
pub(crate) struct SendWatch {
    activity: Arc<Activity>,
    peer: std::net::SocketAddr,
    timeout: Duration,
}

impl SendWatch {
    pub(crate) fn new(
        activity: Arc<Activity>,
        peer: std::net::SocketAddr,
        timeout: Duration,
    ) -> SendWatch {
        SendWatch {
            activity,
            peer,
            timeout,
        }
    }

    /// Returns once the client has taken none of what is written to it for
    /// the send timeout, counted from no earlier than the call (a send starting
    /// now); never while writes go out or none waits. (A write that waited
    /// before, a pong the socket's reading side sent say, may never have
    /// been tried again since: its time says nothing of this send.)
    pub(crate) async fn stalled(&self) {
        let timeout = self.timeout;
        let started = self.activity.now_ms();
        loop {
            let blocked_since = self.activity.write_blocked_since_ms.load(Ordering::Acquire);
            let check_at = if blocked_since == NOT_BLOCKED {
                // A write that starts waiting now is seen at the next look,
                // before its time is up.
                Instant::now() + timeout
            } else {
                let until = self.activity.at(blocked_since.max(started)) + timeout;
                if Instant::now() >= until {
                    return;
                }
                until
            };
            tokio::time::sleep_until(check_at.into()).await;
        }
    }

    /// Gives up on the client: its socket is reset when closed, and the
    /// send timeout is logged and counted (as `send`, like an HTTP
    /// answer's).
    pub(crate) fn give_up(&self) {
        self.activity.give_up();
        tracing::info!(
            peer = %self.peer,
            "websocket reset: the client took none of the frames relayed to it for the send timeout"
        );
        crate::metrics::client_timeout(Expiry::Send.name());
    }

    /// Gives the client up as [`SendWatch::give_up`] does, for a client
    /// whose write buffer is full of the pongs its pings asked for when a
    /// message comes for it: logged so, and not counted as a send timeout
    /// (none has passed).
    pub(crate) fn give_up_full_of_pongs(&self) {
        self.activity.give_up();
        tracing::info!(
            peer = %self.peer,
            "websocket reset: the client sent pings and read none of the pongs, and a message for it did not fit"
        );
    }
}

/// The connection's one timer.
pub(crate) struct Deadlines {
    timeouts: Timeouts,
    sleep: Pin<Box<Sleep>>,
    /// The timer is set for the next hangup check (a request is in
    /// flight), not for one of the idle connection's deadlines.
    hangup_armed: bool,
}

impl Deadlines {
    pub(crate) fn new(activity: &Activity, timeouts: Timeouts) -> Deadlines {
        Deadlines {
            timeouts,
            sleep: Box::pin(tokio::time::sleep_until(
                (activity.opened + timeouts.head).into(),
            )),
            hangup_armed: false,
        }
    }

    /// Resolves when the connection should be parked (only while `serving`,
    /// that is while a hyper connection runs) or closed. It is evaluated
    /// whenever the connection's task runs, which is whenever anything on
    /// the connection changes: requests start and end, and bytes move,
    /// inside the task's hyper connection.
    pub(crate) async fn next(&mut self, activity: &Activity, serving: bool) -> Next {
        poll_fn(|cx| self.poll_next(activity, serving, cx)).await
    }

    /// Resolves when a connection that runs no hyper connection (parked,
    /// or one told to shut down) should be closed, and says why.
    pub(crate) async fn expired(&mut self, activity: &Activity) -> Expiry {
        loop {
            // Not serving, so never told to park.
            if let Next::Expired(expiry) = self.next(activity, false).await {
                return expiry;
            }
        }
    }

    fn poll_next(
        &mut self,
        activity: &Activity,
        serving: bool,
        cx: &mut Context<'_>,
    ) -> Poll<Next> {
        loop {
            let (deadline, next) = match activity.wait(&self.timeouts, serving) {
                Wait::Busy if serving => return self.poll_hangup_check(cx),
                Wait::Busy => return Poll::Pending,
                Wait::Now(next) => return Poll::Ready(next),
                Wait::Until(deadline, next) => (deadline, next),
            };
            if Instant::now() >= deadline {
                return Poll::Ready(next);
            }
            // The timer may fire early (it is then re-armed), never late.
            let armed = self.sleep.deadline().into_std();
            if self.sleep.is_elapsed() || armed > deadline {
                self.sleep.as_mut().reset(deadline.into());
                self.hangup_armed = false;
            }
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// While a request is in flight: every [`HANGUP_CHECK`], says to look
    /// whether the client is still there. The timer is set once per check
    /// and left as it is while requests come and go, so a busy connection
    /// pays for one timer setting a second, not one a request; a deadline
    /// set while idle is replaced.
    fn poll_hangup_check(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        if !self.hangup_armed {
            let due = Instant::now() + HANGUP_CHECK;
            self.sleep.as_mut().reset(due.into());
            self.hangup_armed = true;
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.hangup_armed = false;
                Poll::Ready(Next::CheckHangup)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// How often a connection with a request in flight looks whether its
/// client has hung up. hyper notices a client's end of the connection
/// itself, but only when it holds none of the client's bytes unread: the
/// first bytes of a next request sent behind this one (pipelining) hide
/// it, and the connection would be held until the upstream answers or
/// writes again.
const HANGUP_CHECK: Duration = Duration::from_secs(1);

/// Whether a request leaves the connection reusable once answered: see
/// [`Activity::reusable`].
pub(crate) fn reusable(version: Version, headers: &HeaderMap, bodiless: bool) -> bool {
    version == Version::HTTP_11
        && bodiless
        && !headers.contains_key(UPGRADE)
        && headers.get_all(CONNECTION).iter().all(|value| {
            value.to_str().is_ok_and(|value| {
                value.split(',').all(|option| {
                    let option = option.trim();
                    !option.eq_ignore_ascii_case("close") && !option.eq_ignore_ascii_case("upgrade")
                })
            })
        })
}

/// A request in flight: from the moment hyper hands it over until its
/// response body is finished or dropped.
pub(crate) struct InFlight(Arc<Activity>);

impl InFlight {
    pub(crate) fn start(activity: &Arc<Activity>, reusable: bool) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.head_since_ms.store(NO_HEAD, Ordering::Release);
        activity.read_in_flight.store(false, Ordering::Release);
        activity.head_begun.store(false, Ordering::Release);
        activity.reusable.store(reusable, Ordering::Release);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        activity
            .idle_since_ms
            .store(activity.now_ms(), Ordering::Release);
        // Bytes that came during the request may be the next head, already
        // in hyper's buffer (the socket will not say so again), and after a
        // request that is not reusable there is no telling: either way the
        // next head's time runs from now.
        let read = activity.read_in_flight.load(Ordering::Acquire);
        if read || !activity.reusable.load(Ordering::Acquire) {
            activity.head_waiting_since_idle(read);
        }
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The client's socket as hyper sees it: bytes hyper read ahead before its
/// connection was parked come first, reads and blocked writes are noted in
/// the [`Activity`], and a shutdown while parking leaves the socket open.
pub(crate) struct ClientIo {
    stream: TcpStream,
    read_ahead: Bytes,
    activity: Arc<Activity>,
    /// What the connection holds for as long as its socket is open,
    /// whoever has the socket by then (the WebSocket relay, after an
    /// upgrade): its place under `max_connections`, its count in the
    /// metrics.
    _held: Box<dyn Send + Sync>,
}

impl ClientIo {
    pub(crate) fn new(
        stream: TcpStream,
        activity: Arc<Activity>,
        held: Box<dyn Send + Sync>,
    ) -> ClientIo {
        ClientIo {
            stream,
            read_ahead: Bytes::new(),
            activity,
            _held: held,
        }
    }

    /// Takes back the socket of a parked hyper connection, with the bytes
    /// it had read and not used.
    pub(crate) fn parked(mut self, read_ahead: Bytes) -> ClientIo {
        if read_ahead.is_empty() && self.read_ahead.is_empty() {
            // `read_ahead` is a view of hyper's whole read buffer, which it
            // would keep alive even when empty.
            self.read_ahead = Bytes::new();
            return self;
        }
        // Part of the next head is here: its time runs, from the end of the
        // last request at the latest (it may have come with it).
        self.activity.head_waiting_since_idle(true);
        // What hyper had read comes first; then what it had not yet read of
        // the bytes handed back at the last park.
        let mut rest = Vec::with_capacity(read_ahead.len() + self.read_ahead.len());
        rest.extend_from_slice(&read_ahead);
        rest.extend_from_slice(&self.read_ahead);
        self.read_ahead = Bytes::from(rest);
        self
    }

    /// Waits until the client sends something (or closes), unless bytes
    /// read earlier are waiting already.
    pub(crate) async fn readable(&self) -> std::io::Result<()> {
        if self.read_ahead.is_empty() {
            self.stream.readable().await
        } else {
            Ok(())
        }
    }

    /// Whether the client has ended its side of the connection (or reset
    /// it), as the socket's last readiness says: the runtime records that
    /// when it happens whether anyone reads or not, and never forgets it.
    /// No system call; bytes still unread do not hide it.
    pub(crate) fn client_hung_up(&self, cx: &mut Context<'_>) -> bool {
        let ready = std::pin::pin!(self.stream.ready(Interest::READABLE));
        matches!(ready.poll(cx), Poll::Ready(Ok(ready)) if ready.is_read_closed())
    }

    fn note_write<T>(&self, polled: &Poll<std::io::Result<T>>) {
        self.activity.wrote(polled.is_ready());
    }
}

impl Drop for ClientIo {
    /// A connection closed for its send timeout is reset: a plain close
    /// would leave the unsent answer with the kernel for as long as the
    /// client stays connected, outside `max_connections`. Any other close
    /// is in order, so that a client gets every byte sent before it.
    fn drop(&mut self) {
        if self.activity.given_up.load(Ordering::Acquire) {
            let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.read_ahead.is_empty() {
            let n = self.read_ahead.len().min(buf.remaining());
            buf.put_slice(&self.read_ahead[..n]);
            self.read_ahead.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.note_write(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.note_write(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // hyper flushes each time its connection is polled, so a check the
        // connection's task asked for happens here, in hyper's own poll,
        // and an error ends the connection as hyper's own finding would.
        if self.activity.hangup_check.load(Ordering::Acquire)
            && self.activity.hangup_check.swap(false, Ordering::AcqRel)
            && self.activity.in_flight.load(Ordering::Acquire) > 0
            && self.client_hung_up(cx)
        {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the client hung up with a request in flight",
            )));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.activity.parking.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "idle_tests.rs"]
mod tests;
