//! Connections to the upstream: HTTP/1.1 keep-alive connections, kept in one
//! pool per worker thread so that a request goes out on a connection whose
//! task runs on its own thread. A connection goes back to its pool only once
//! its request body has been sent and its response body read, both to the
//! end; anything else closes it, so a reused connection is always idle.
//!
//! A bodiless GET or HEAD (or a GET with a short body read whole, see
//! `plain.rs`) is exchanged by the gateway's own client (`exchange.rs`) in
//! the request's task; anything else through hyper's
//! client, whose connections run as tasks of their own. Both keep their
//! idle connections in the same pool, within its one size: a request for
//! hyper takes one of hyper's, else a plain one, which is handed to hyper
//! for good; a bodiless GET or HEAD takes only a plain one (hyper keeps
//! the socket of its connections), else opens a new connection.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::body::{BodyWatch, Sent};
use crate::exchange::{self, PlainBody, PlainConn};

/// How long an unused connection is kept before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request got no response head from the upstream.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be made in time.
    Unreachable,
    /// The connection failed while the request was sent or the head read.
    Failed,
    /// No answer's head came by the deadline.
    TimedOut,
}

/// The upstream's address and the idle connections to it.
pub(crate) struct Upstream {
    host: String,
    port: u16,
    connect_timeout: Duration,
    pools: Arc<Pools>,
}

/// One pool of idle connections per worker thread.
struct Pools {
    per_worker: Vec<Pool>,
    idle_timeout: Duration,
}

struct Pool {
    idle: Mutex<VecDeque<Idle>>,
    /// This worker's share of the pool size.
    max_idle: usize,
    reaper_started: std::sync::atomic::AtomicBool,
}

struct Idle {
    conn: Pooled,
    since: Instant,
}

/// Which idle connection a request takes: a bodiless GET or HEAD a plain
/// one only; anything else one of hyper's, else a plain one, handed to
/// hyper.
#[derive(Clone, Copy)]
enum Kind {
    Plain,
    Hyper,
}

/// An idle connection: a plain one (the gateway's own client) or one run by
/// hyper's client.
enum Pooled {
    Plain(PlainConn),
    Hyper(Conn),
}

impl Pooled {
    /// Whether the connection can still carry a request.
    fn is_open(&self) -> bool {
        match self {
            Pooled::Plain(conn) => conn.is_open(),
            Pooled::Hyper(conn) => conn.sender.is_ready(),
        }
    }
}

/// One upstream connection: the handle to send on, and its task.
struct Conn {
    sender: http1::SendRequest<Body>,
    task: JoinHandle<()>,
}

impl Conn {
    /// Lets the connection write what it still holds and close, as it does
    /// once no handle to send on is left; stops it after `within` if it has
    /// not closed by then (an upstream that takes nothing more).
    async fn close_after_flushing(mut self, within: Duration) {
        drop(self.sender);
        if tokio::time::timeout(within, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

/// A connection in use. Dropped without being kept (for the pool, or for an
/// upgrade), it is closed at once, its task stopped: an upstream that stops
/// reading would otherwise keep the task, the client's request body and so
/// the client's connection forever.
struct InUse(Option<Conn>);

impl InUse {
    fn sender(&mut self) -> &mut http1::SendRequest<Body> {
        &mut self.0.as_mut().expect("in use until kept").sender
    }

    /// The connection, no longer closed when this is dropped.
    fn keep(mut self) -> Option<Conn> {
        self.0.take()
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            conn.task.abort();
        }
    }
}

/// A connection lent out for one exchange, and the pool it goes back to.
struct Lease {
    conn: InUse,
    pools: Arc<Pools>,
    worker: usize,
    /// The request body's progress, if it has one, and how long the
    /// upstream may stop taking it.
    request_body: Option<(Arc<BodyWatch>, Duration)>,
    /// Whether the answer's head came before the request body had gone out
    /// in full.
    answered_early: bool,
    /// Whether the answer's head lets the connection be used again (see
    /// [`reusable_after`]).
    reusable: bool,
}

impl Lease {
    /// Returns the connection to its pool, unless its answer came before
    /// its request body had gone out in full. An upstream may answer early
    /// and go on reading the body: the rest of the body still goes to it, in
    /// the background, and the connection is then closed, never reused:
    /// whether the upstream read the rest or left it in its socket buffer
    /// cannot be told, and a request sent behind bytes it never reads would
    /// wait for them until its timeout. An upstream that stops taking the
    /// body has its connection closed at once.
    fn release(self) {
        let Lease {
            conn,
            pools,
            worker,
            request_body,
            answered_early,
            reusable,
        } = self;
        match request_body {
            Some((body, timeout)) if answered_early || !body.is_finished() => {
                tokio::spawn(async move {
                    if body.sent(timeout).await == Sent::Whole {
                        if let Some(conn) = conn.keep() {
                            conn.close_after_flushing(timeout).await;
                        }
                    }
                });
            }
            // Read to its end, but framed in a way not to trust again.
            _ if !reusable => drop(conn),
            _ => {
                if let Some(conn) = conn.keep() {
                    pools.give_back(worker, Pooled::Hyper(conn));
                }
            }
        }
    }
}

/// Whether a connection may be used again after the answer whose head is
/// `response`: only after HTTP/1.1, as the gateway's own client
/// (`exchange.rs`) has it; hyper's client also reuses one after an HTTP/1.0
/// answer that says `Connection: keep-alive`. (The own client also drops a
/// connection after an answer with both `Content-Length` and
/// `Transfer-Encoding`; hyper's client frames such an answer by its chunks
/// and does not show both headers here, so that rule cannot be kept for
/// requests with a body.)
fn reusable_after(response: &Response<Incoming>) -> bool {
    response.version() == http::Version::HTTP_11
}

/// Whether the gateway can pass on the body of the answer whose head is
/// `response` as what it is: one with a transfer coding besides chunked
/// (which hyper takes off) would go on undecoded and unlabelled, so it is
/// refused, as the gateway's own client refuses it ([`exchange::Codings`]).
fn decodable(response: &Response<Incoming>, head_only: bool) -> bool {
    exchange::bodiless(response.status(), head_only)
        || exchange::Codings::of(response.headers()).is_none_or(|codings| codings.only_chunked())
}

impl Upstream {
    /// The upstream at `authority`, with up to `pool_size` idle connections
    /// shared out between `workers` pools.
    pub(crate) fn new(
        authority: &http::uri::Authority,
        connect_timeout: Duration,
        pool_size: usize,
        workers: usize,
    ) -> Upstream {
        let workers = workers.max(1);
        // The size is shared out exactly: the first `pool_size % workers`
        // workers keep one more.
        let share = |worker: usize| pool_size / workers + usize::from(worker < pool_size % workers);
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|host| host.strip_suffix(']'))
            .unwrap_or(host);
        let per_worker = (0..workers)
            .map(|worker| Pool {
                idle: Mutex::new(VecDeque::new()),
                max_idle: share(worker),
                reaper_started: Default::default(),
            })
            .collect();
        Upstream {
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(80),
            connect_timeout,
            pools: Arc::new(Pools {
                per_worker,
                idle_timeout: IDLE_TIMEOUT,
            }),
        }
    }

    /// Sends `request` (origin-form target, `Host` set) and returns the
    /// response head, its body still streaming; `request_body` tells when
    /// the request's body has been sent in full, and how long the upstream
    /// may stop taking it before the connection is given up.
    ///
    /// A request that a reused connection closed before it was sent is tried
    /// again on another one. A request that went out on a reused connection
    /// which then failed before any answer (most often the upstream dropping
    /// an idle connection just as the request arrived) is sent once more on
    /// a new connection only if `again` makes a copy of it, as it should only
    /// for requests that are safe to repeat; any other request that was sent
    /// is never repeated.
    ///
    /// (Not an async function, which would keep `request` twice in its
    /// future; a new connection's state is boxed, as the rare case.)
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would keep the request twice in its future"
    )]
    pub(crate) fn send<'a>(
        &'a self,
        mut request: Request<Body>,
        request_body: Option<(Arc<BodyWatch>, Duration)>,
        again: &'a (dyn Fn() -> Option<Request<Body>> + Sync),
    ) -> impl Future<Output = Result<Response<Body>, SendError>> + Send + 'a {
        async move {
            let worker = self.worker();
            let mut fresh_only = false;
            let head_only = request.method() == http::Method::HEAD;
            loop {
                let pooled = self.idle(worker, Kind::Hyper, fresh_only);
                let reused = pooled.is_some();
                let conn = match pooled {
                    Some(Pooled::Hyper(conn)) => conn,
                    Some(Pooled::Plain(conn)) => {
                        Box::pin(self.handshake(conn.into_stream())).await?
                    }
                    None => {
                        let stream = Box::pin(self.open(worker)).await?;
                        Box::pin(self.handshake(stream)).await?
                    }
                };
                let mut conn = InUse(Some(conn));
                let mut error = match conn.sender().try_send_request(request).await {
                    Ok(response) if response.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
                        // The connection now belongs to the upgrade: its task
                        // hands the socket over and ends by itself.
                        let _ = conn.keep();
                        return Ok(response.map(Body::new));
                    }
                    Ok(response) if !decodable(&response, head_only) => {
                        // (The connection is dropped, not kept.)
                        tracing::warn!(
                            "the upstream answered with a transfer coding besides chunked; refused"
                        );
                        return Err(SendError::Failed);
                    }
                    Ok(response) => {
                        let reusable = reusable_after(&response);
                        let answered_early = request_body
                            .as_ref()
                            .is_some_and(|(body, _)| !body.is_finished());
                        let lease = Lease {
                            conn,
                            pools: self.pools.clone(),
                            worker,
                            request_body,
                            answered_early,
                            reusable,
                        };
                        return Ok(response.map(|body| Body::new(LeasedBody::new(body, lease))));
                    }
                    Err(error) => error,
                };
                if let Some(unsent) = error.take_message().filter(|_| reused) {
                    request = unsent;
                    continue;
                }
                // No response head came (an answer's later failures are its
                // body's): on a reused connection, most likely the upstream
                // dropped it as idle while the request was on its way.
                let error = error.into_error();
                let copy = if reused { again() } else { None };
                match copy {
                    Some(copy) => {
                        tracing::debug!(%error, "a kept-alive upstream connection failed; sending again");
                        request = copy;
                        fresh_only = true;
                    }
                    None => {
                        tracing::debug!(%error, "upstream exchange failed");
                        return Err(SendError::Failed);
                    }
                }
            }
        }
    }

    /// Sends the `head` of a bodiless GET or HEAD (`head_only`), or of a
    /// GET with its short body behind it, with the gateway's own client and
    /// returns the answer's head, its body still streaming; the body reads
    /// the connection and gives it back to the pool when read to its end.
    /// Such a request is safe to repeat (a short body is held whole): one
    /// that went out on a kept-alive connection which then ended without a
    /// byte of an answer (most often the upstream dropping it as idle just
    /// then) is sent once more on a new connection. No answer's head by
    /// `due` (if any) is [`SendError::TimedOut`].
    pub(crate) async fn send_bodiless(
        &self,
        head: &[u8],
        head_only: bool,
        due: Option<tokio::time::Instant>,
    ) -> Result<Response<Body>, SendError> {
        let worker = self.worker();
        let mut fresh_only = false;
        loop {
            let pooled = self.idle(worker, Kind::Plain, fresh_only);
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(Pooled::Plain(conn)) => conn,
                _ => {
                    let opening = Box::pin(self.open(worker));
                    let opened = match due {
                        Some(due) => tokio::time::timeout_at(due, opening).await,
                        None => Ok(opening.await),
                    };
                    PlainConn::new(opened.map_err(|_| SendError::TimedOut)??)
                }
            };
            let answer = match conn.exchange(head, head_only, due).await {
                Ok(answer) => answer,
                Err(exchange::Failure::NoAnswer) if reused => {
                    tracing::debug!(
                        "a kept-alive upstream connection gave no answer; sending again"
                    );
                    fresh_only = true;
                    continue;
                }
                Err(exchange::Failure::TimedOut) => return Err(SendError::TimedOut),
                Err(failure) => {
                    tracing::debug!(?failure, "upstream exchange failed");
                    return Err(SendError::Failed);
                }
            };
            let pools = self.pools.clone();
            let body = PlainBody::new(conn, answer.framing, answer.keep_alive, move |conn| {
                pools.give_back(worker, Pooled::Plain(conn));
            });
            let body = match http_body::Body::is_end_stream(&body) {
                true => Body::empty(),
                false => Body::new(body),
            };
            return Ok(answer.response.map(|()| body));
        }
    }

    /// The pool of the worker this runs on.
    fn worker(&self) -> usize {
        crate::server::current_worker() % self.pools.per_worker.len()
    }

    /// An idle connection of `worker`'s pool for `kind`, unless only a new
    /// connection will do.
    fn idle(&self, worker: usize, kind: Kind, fresh_only: bool) -> Option<Pooled> {
        match fresh_only {
            true => None,
            false => self.pools.checkout(worker, kind),
        }
    }

    /// A new connection to the upstream.
    async fn open(&self, worker: usize) -> Result<TcpStream, SendError> {
        let address = (self.host.as_str(), self.port);
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "cannot connect to the upstream");
                    return Err(SendError::Unreachable);
                }
                Err(_) => {
                    tracing::debug!("connecting to the upstream timed out");
                    return Err(SendError::Unreachable);
                }
            };
        let _ = stream.set_nodelay(true);
        self.pools.start_reaper(worker);
        Ok(stream)
    }

    /// Hands a connection to hyper's client, its task spawned on this
    /// thread.
    async fn handshake(&self, stream: TcpStream) -> Result<Conn, SendError> {
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|_| SendError::Failed)?;
        let task = tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        Ok(Conn { sender, task })
    }
}

impl Pools {
    /// The most recently used idle connection of `worker` for `kind` that is
    /// open and ready for a request now. A pooled connection has finished
    /// its exchange, so one that is not ready is closing: it is dropped
    /// rather than waited for.
    fn checkout(&self, worker: usize, kind: Kind) -> Option<Pooled> {
        let plain = |idle: &Idle| matches!(idle.conn, Pooled::Plain(_));
        let mut idle = self.per_worker[worker].lock();
        loop {
            let at = match kind {
                Kind::Plain => idle.iter().rposition(plain),
                Kind::Hyper => (idle.iter().rposition(|idle| !plain(idle)))
                    .or_else(|| idle.len().checked_sub(1)),
            }?;
            let entry = idle.remove(at)?;
            if entry.since.elapsed() < self.idle_timeout && entry.conn.is_open() {
                return Some(entry.conn);
            }
        }
    }

    /// Puts a connection whose exchange is complete back, unless it
    /// closed; a full pool makes room by closing its longest-idle
    /// connection, whatever its kind, so that a run of requests with bodies
    /// cannot leave GETs without pooled connections until hyper's are
    /// reaped. (A dropped idle connection closes by itself: a plain one
    /// with its socket, hyper's when its task sees the last sender gone.)
    fn give_back(&self, worker: usize, conn: Pooled) {
        if let Pooled::Hyper(conn) = &conn {
            if conn.sender.is_closed() {
                return;
            }
        }
        let pool = &self.per_worker[worker];
        if pool.max_idle == 0 {
            return;
        }
        let mut idle = pool.lock();
        let longest_idle = match idle.len() >= pool.max_idle {
            true => idle.pop_front(),
            false => None,
        };
        idle.push_back(Idle {
            conn,
            since: Instant::now(),
        });
        drop(idle);
        // Closed outside the lock.
        drop(longest_idle);
    }

    /// Closes, every so often, the connections of `worker` that have been
    /// idle too long, until the pools are dropped.
    fn start_reaper(self: &Arc<Self>, worker: usize) {
        use std::sync::atomic::Ordering;
        if self.per_worker[worker]
            .reaper_started
            .swap(true, Ordering::AcqRel)
        {
            return;
        }
        let every = self.idle_timeout / 6;
        let pools: Weak<Pools> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(pools) = pools.upgrade() else {
                    return;
                };
                let timeout = pools.idle_timeout;
                pools.per_worker[worker]
                    .lock()
                    .retain(|idle| idle.since.elapsed() < timeout && idle.conn.is_open());
            }
        });
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        // The lock is never held across an await or a panic-prone call.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A response body that gives its connection back once read to the end.
struct LeasedBody {
    inner: Incoming,
    lease: Option<Lease>,
}

impl LeasedBody {
    fn new(inner: Incoming, lease: Lease) -> LeasedBody {
        let mut body = LeasedBody {
            inner,
            lease: Some(lease),
        };
        body.release_if_done();
        body
    }

    fn release_if_done(&mut self) {
        if http_body::Body::is_end_stream(&self.inner) {
            if let Some(lease) = self.lease.take() {
                lease.release();
            }
        }
    }
}

impl http_body::Body for LeasedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(lease) = self.lease.take() {
                    lease.release();
                }
            }
            Poll::Ready(Some(Ok(_))) => self.release_if_done(),
            // A failed body leaves its connection unusable: close it.
            Poll::Ready(Some(Err(_))) => {
                self.lease = None;
                crate::exchange::broken_body();
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod tests;
