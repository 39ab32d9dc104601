//! The accept loop: serves HTTP/1.1 connections on a bound listener until a
//! shutdown signal, then lets requests in flight finish up to the grace time.
//! It enforces the connection limits: head size and time, keep-alive idle
//! time and the number of open connections.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::FutureExt;
use http_body::{Body as _, Frame};
use hyper::body::Incoming;
use hyper::server::conn::http1::{self, UpgradeableConnection};
use hyper::service::{service_fn, HttpService, Service};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::forwarding::Peer;
use crate::gateway::Gateway;
use crate::idle::{
    self, Activity, ClientIo, Deadlines, Expiry, InFlight, Next, SendWatch, Timeouts, Warm,
};
use crate::plain::{self, Stretch};
use crate::websocket::Handover;

/// The most unsent answer bytes the kernel holds for a client before the
/// gateway waits for it (`TCP_NOTSENT_LOWAT`).
const UNSENT_LOW_WATER: u32 = 128 * 1024;

/// TCP keep-alive for client connections: a client gone without a FIN or
/// reset (its machine or its network gone) is found after about two
/// minutes of silence (60 s, then 6 probes 10 s apart), where a quiet
/// WebSocket or event stream would hold its connection (and its add-on's
/// place under `max_websockets_per_addon`) for good.
const KEEPALIVE: socket2::TcpKeepalive = socket2::TcpKeepalive::new()
    .with_time(Duration::from_secs(60))
    .with_interval(Duration::from_secs(10))
    .with_retries(6);

/// hyper's buffer size for a client connection. Its read buffer starts at
/// 8 KiB and grows towards this only while reads keep filling it, as a
/// large upload does (a read takes whatever room the buffer has, which can
/// be more); it also caps how much of an answer hyper queues before waiting
/// for the client. At 32 KiB (the head limit, which it used to be) an
/// upload cost half again as much CPU; the price is memory per busy or
/// stalled connection (docs/load-history.md, uploads). Heads are bounded apart from it,
/// by `max_header_bytes`.
const HYPER_BUFFER_SIZE: usize = 256 * 1024;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker thread this runs on; 0 outside the workers.
pub fn current_worker() -> usize {
    WORKER.with(Cell::get)
}

/// Where connections run: on the runtime that accepts them, or spread in
/// turn over worker threads that each run a single-threaded runtime, so that
/// a request, its upstream connection and their wake-ups stay on one thread
/// (as nginx keeps a connection in one worker process).
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    threads: Vec<(oneshot::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Workers {
    /// Connections run on the runtime that calls [`serve_on`].
    pub fn here() -> Workers {
        Workers {
            handles: Vec::new(),
            next: AtomicUsize::new(0),
            threads: Vec::new(),
        }
    }

    /// Starts `count` worker threads (at least one).
    pub fn start(count: usize) -> std::io::Result<Workers> {
        let mut workers = Workers::here();
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            workers.handles.push(runtime.handle().clone());
            let thread = std::thread::Builder::new()
                .name(format!("gateway-worker-{index}"))
                .spawn(move || {
                    WORKER.with(|worker| worker.set(index));
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                })?;
            workers.threads.push((stop, thread));
        }
        Ok(workers)
    }

    /// Runs `connection` on the next worker.
    fn spawn(&self, connection: Connection, stream: TcpStream, peer: SocketAddr) {
        if self.handles.is_empty() {
            tokio::spawn(connection.run(stream, peer));
            return;
        }
        // The socket moves to the worker's own event loop.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => return tracing::warn!(%error, "cannot hand a connection over"),
        };
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[turn].spawn(async move {
            match TcpStream::from_std(stream) {
                Ok(stream) => connection.run(stream, peer).await,
                Err(error) => tracing::warn!(%error, "cannot take a connection over"),
            }
        });
    }

    /// Stops the worker threads, dropping whatever still runs on them, and
    /// waits for them to end.
    pub fn stop(self) {
        for (stop, thread) in self.threads {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

/// Serves `gateway` on `listener` with connections on the calling runtime;
/// see [`serve_on`].
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_on(listener, gateway, shutdown, &Workers::here()).await
}

/// Serves `gateway` on `listener`, running connections on `workers`, until
/// `shutdown` resolves; then stops accepting and waits up to the configured
/// grace time for open connections.
pub async fn serve_on(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
    workers: &Workers,
) -> std::io::Result<()> {
    let nodelay_inherited = tune_listener(socket2::SockRef::from(&listener));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (alive_tx, alive_rx) = mpsc::channel::<()>(1);
    let slots = Arc::new(Semaphore::new(gateway.limits().max_connections));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener, &slots) => accepted,
            () = &mut shutdown => break,
        };
        let Some((stream, peer, slot)) = accepted else {
            continue;
        };
        let connection = Connection {
            gateway: gateway.clone(),
            stop: stop_rx.clone(),
            alive: alive_tx.clone(),
            slot,
            nodelay_inherited,
        };
        workers.spawn(connection, stream, peer);
    }
    drop(listener);
    drop(alive_tx);
    let _ = stop_tx.send(true);
    gateway.end_streams();
    wait_for_connections(&gateway, alive_rx).await;
    Ok(())
}

/// Waits up to the configured grace time for the open connections, each
/// of which holds a sender of `alive`, to end.
async fn wait_for_connections(gateway: &Gateway, mut alive: mpsc::Receiver<()>) {
    let grace = gateway.limits().shutdown_grace;
    if tokio::time::timeout(grace, alive.recv()).await.is_err() {
        let grace_ms = grace.as_millis() as u64;
        tracing::warn!(
            grace_ms,
            "connections still open after the shutdown grace time"
        );
    }
}

/// [`serve_on`] with each worker accepting its connections itself, on a
/// listener of its own: `listeners`, one for each of the worker threads,
/// bound to one address by [`bind_reusing_port`] (the config's
/// `reuse_port`, off by default). No thread accepts for the others, and
/// no socket is handed from one event loop to another; the kernel spreads
/// new connections over the listeners by their addresses, and any process
/// of the same user may bind the port too and take a share of them. On
/// shutdown every worker stops accepting and drops its listener, then the
/// connections get the grace time.
pub async fn serve_each_worker_on(
    listeners: Vec<std::net::TcpListener>,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
    workers: &Workers,
) -> std::io::Result<()> {
    if listeners.len() != workers.handles.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "one listener for each worker thread is needed",
        ));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let (alive_tx, alive_rx) = mpsc::channel::<()>(1);
    let (accepting_tx, mut accepting_rx) = mpsc::channel::<()>(1);
    let slots = Arc::new(Semaphore::new(gateway.limits().max_connections));
    for (handle, listener) in workers.handles.iter().zip(listeners) {
        let shared = Shared {
            gateway: gateway.clone(),
            stop: stop_rx.clone(),
            alive: alive_tx.clone(),
            slots: slots.clone(),
        };
        handle.spawn(accept_here(listener, shared, accepting_tx.clone()));
    }
    drop((accepting_tx, alive_tx));
    shutdown.await;
    let _ = stop_tx.send(true);
    gateway.end_streams();
    // Every accepting task has ended (and dropped its listener) once the
    // last of their senders is gone.
    let _ = accepting_rx.recv().await;
    wait_for_connections(&gateway, alive_rx).await;
    Ok(())
}

/// What each worker's accepting task shares with the others.
struct Shared {
    gateway: Arc<Gateway>,
    stop: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
    slots: Arc<Semaphore>,
}

/// A worker's own accept loop: its connections run on its own runtime,
/// where their sockets were registered when accepted. Ends at the stop,
/// dropping the listener and then `_accepting`.
///
/// Unlike the one accept loop, it accepts before it waits for a connection
/// slot: a worker waiting for a slot on a listener that gets no
/// connections would hold it while connections wait on the other workers'
/// listeners (with `max_connections` under the number of workers, for
/// good). So each worker holds at most one accepted connection waiting for
/// a slot, and slots go only to connections.
async fn accept_here(
    listener: std::net::TcpListener,
    shared: Shared,
    _accepting: mpsc::Sender<()>,
) {
    let nodelay_inherited = tune_listener(socket2::SockRef::from(&listener));
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => return tracing::warn!(%error, "a worker cannot take its listener over"),
    };
    let mut stop = shared.stop.clone();
    loop {
        // The stop first: a slot freed by the connections the stop ends
        // does not go to a connection that was waiting for one.
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            accepted = accept_one(&listener) => accepted,
        };
        let Some((stream, peer)) = accepted else {
            continue;
        };
        let slot = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            slot = shared.slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let connection = Connection {
            gateway: shared.gateway.clone(),
            stop: shared.stop.clone(),
            alive: shared.alive.clone(),
            slot,
            nodelay_inherited,
        };
        tokio::spawn(connection.run(stream, peer));
    }
}

/// A listening socket on `address` with `SO_REUSEPORT` (and, as tokio's
/// own `bind`, `SO_REUSEADDR`), non-blocking, for [`serve_each_worker_on`]:
/// the first must be bound so for the others to be bound beside it.
pub fn bind_reusing_port(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// `count` listeners on `address` for [`serve_each_worker_on`], bound by
/// [`bind_reusing_port`]; with port 0, all on the port the first got.
pub fn bind_each(
    mut address: SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        let listener = bind_reusing_port(address)?;
        address = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// The listen backlog of a listener bound by [`bind_reusing_port`]: what
/// tokio's `bind` asks for (mio's, the standard library's), for each.
const LISTEN_BACKLOG: i32 = 128;

/// Waits for a free connection slot, then for a connection. While every
/// slot is taken, new connections wait in the listen backlog.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> Option<(TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit)> {
    let slot = slots.clone().acquire_owned().await.ok()?;
    let (stream, peer) = accept_one(listener).await?;
    Some((stream, peer, slot))
}

/// The next connection on `listener`; `None` (after a pause) when the
/// accept failed.
async fn accept_one(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok(accepted) => Some(accepted),
        Err(error) => {
            tracing::warn!(%error, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// The server's stop, as a connection waits for it. A wait on tokio's
/// watch channel takes a lock that every connection of every worker shares
/// each time it is polled, and the connection's task polls it each time it
/// runs (twice a request); this polls that wait only when the channel has
/// changed or the task's waker is not the one the wait holds, and answers
/// "not yet" otherwise from one atomic read of the channel's version. The
/// wait stays registered, so the stop still wakes the task. Fused, as the
/// plain stretch and hyper's both look at it: after it has fired it is
/// pending for good.
struct Stopped {
    look: watch::Receiver<bool>,
    wait: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// The waker the wait last registered, once it has been polled.
    waker: Option<std::task::Waker>,
    fired: bool,
}

impl Stopped {
    fn new(stop: watch::Receiver<bool>) -> Stopped {
        let look = stop.clone();
        let mut stop = stop;
        let wait = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        Stopped {
            look,
            wait: Box::pin(wait),
            waker: None,
            fired: false,
        }
    }
}

impl Future for Stopped {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.fired {
            return Poll::Pending;
        }
        let same_waker = this
            .waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        // (A sender gone counts as a change: the wait then ends.)
        if same_waker && !this.look.has_changed().unwrap_or(true) {
            return Poll::Pending;
        }
        match this.wait.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.fired = true;
                this.waker = None;
                Poll::Ready(())
            }
            Poll::Pending => {
                if !same_waker {
                    this.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// One client connection. `alive` and `slot` go with its socket (past an
/// upgrade, to the WebSocket relay) and are dropped when it closes, which
/// is how the shutdown and the connection limit know it is gone.
struct Connection {
    gateway: Arc<Gateway>,
    stop: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
    slot: tokio::sync::OwnedSemaphorePermit,
    /// Whether the socket has `TCP_NODELAY` from the listener.
    nodelay_inherited: bool,
}

impl Connection {
    /// Serves the connection: parked (nothing allocated for it) until the
    /// client sends, then by the gateway's own code while it sends plain
    /// GETs (see [`crate::plain`]), and on a hyper connection from the
    /// first request that is not one until it may be parked again (see
    /// [`crate::idle`]).
    async fn run(self, stream: TcpStream, addr: SocketAddr) {
        let Connection {
            gateway,
            stop,
            alive,
            slot,
            nodelay_inherited,
        } = self;
        crate::metrics::connections(1.0);
        // These go with the socket, past an upgrade: a WebSocket counts
        // under the limit, in the metrics and in the shutdown's wait.
        let held = Box::new((slot, Counted, alive));
        tune(&stream, nodelay_inherited);
        let limits = gateway.limits();
        let builder = hyper_builder(limits);
        let activity = Arc::new(Activity::new());
        let timeouts = Timeouts::of(limits);
        let mut deadlines = Deadlines::new(&activity, timeouts);
        let peer = Peer::new(addr);
        let served = plain::Served {
            gateway: &gateway,
            activity: &activity,
            peer: &peer,
            addr,
            max_header_bytes: limits.max_header_bytes,
            max_headers: limits.max_headers,
        };
        let service = service(
            gateway.clone(),
            activity.clone(),
            addr,
            peer.clone(),
            stop.clone(),
            timeouts.send,
        );
        let stopped = Stopped::new(stop);
        tokio::pin!(stopped);
        let mut stopping = false;
        let mut io = ClientIo::new(stream, activity.clone(), held);
        loop {
            // Parked: wait for the client with nothing allocated for it.
            // (A request already sent is served, with `connection: close`,
            // even when the server is stopping.)
            tokio::select! {
                biased;
                readable = io.readable() => if readable.is_err() { return },
                () = &mut stopped => return,
                expiry = deadlines.expired(&activity) => return close(expiry, &activity, addr),
            }
            let _warm = Warm::start();
            // (Boxed: held only while the stretch runs, so that a parked
            // connection's task does not keep room for it.)
            let stretch = plain::serve(io, &served, &mut deadlines, &mut stopped, &mut stopping);
            let (handed, stopping) = match Box::pin(stretch).await {
                Stretch::Closed => return,
                Stretch::Expired(expiry, socket) => {
                    // Marked before the socket is dropped: a client given
                    // up on is reset, not closed in order.
                    close(expiry, &activity, addr);
                    drop(socket);
                    return;
                }
                Stretch::Parked(parked) => {
                    io = parked;
                    continue;
                }
                Stretch::HandOver { io, stopping } => (io, stopping),
            };
            // (Boxed, as the plain stretch: a parked connection's task
            // keeps no room for hyper's connection either.)
            let mut connection = Box::new(
                builder
                    .serve_connection(TokioIo::new(handed), service.clone())
                    .with_upgrades(),
            );
            if stopping {
                // Let the request handed over finish, then close. hyper
                // closes at once a connection told to shut down before it
                // has read anything, so it reads first (the bytes handed
                // over are at hand).
                if let Some(result) = (&mut *connection).now_or_never() {
                    if let Err(error) = result {
                        connection_failed(&error, addr);
                    }
                    return;
                }
                Pin::new(&mut *connection).graceful_shutdown();
                return wind_down(connection, &activity, &mut deadlines, addr).await;
            }
            io = loop {
                let next = tokio::select! {
                    biased;
                    result = &mut *connection => {
                        if let Err(error) = result {
                            connection_failed(&error, addr);
                        }
                        return;
                    }
                    () = &mut stopped => {
                        // Shutting down: let the request in flight finish; a
                        // head on its way still has only its head time.
                        Pin::new(&mut *connection).graceful_shutdown();
                        return wind_down(connection, &activity, &mut deadlines, addr).await;
                    }
                    next = deadlines.next(&activity, true) => next,
                };
                match next {
                    // Looked at when hyper next polls the socket, which the
                    // loop does first.
                    Next::CheckHangup => activity.check_hangup(),
                    Next::Expired(expiry) => return close(expiry, &activity, addr),
                    Next::Park => match park(connection, &activity, &mut deadlines, addr).await {
                        Some(parked) => break parked,
                        None => return,
                    },
                }
            };
        }
    }
}

/// Sets the listener's options that every socket it accepts inherits
/// (Linux copies them at accept, so they cost no system call a
/// connection; nginx's `so_keepalive` works the same way); one that cannot
/// be set leaves the system's default. Says whether `TCP_NODELAY` is
/// among them (since 2026-12-06; else [`tune`] sets it on each socket).
/// (Not `TCP_NOTSENT_LOWAT`: inherited so, it reads back the same but a
/// slow reader's waits were not seen at its grain, and the send timeout
/// cut it off; it is set on each socket.)
fn tune_listener(socket: socket2::SockRef<'_>) -> bool {
    if let Err(error) = socket.set_tcp_keepalive(&KEEPALIVE) {
        tracing::warn!(%error, "cannot set TCP keep-alive for client connections");
    }
    socket.set_tcp_nodelay(true).is_ok()
}

/// Sets a client socket's options; one that cannot be set leaves the
/// system's default. `nodelay_inherited`: `TCP_NODELAY` came with it from
/// the listener.
fn tune(stream: &TcpStream, nodelay_inherited: bool) {
    if !nodelay_inherited {
        let _ = stream.set_nodelay(true);
    }
    // The gateway is woken to write once the answer's unsent bytes drop
    // under this, rather than once a third of the whole send buffer (up to
    // 4 MiB) is free: the send timeout sees a slow client's progress at
    // this grain, and the kernel holds no more unsent answer than this for
    // a client that stops reading.
    let _ = socket2::SockRef::from(stream).set_tcp_notsent_lowat(UNSENT_LOW_WATER);
}

/// hyper's settings for a client connection.
fn hyper_builder(limits: &crate::config::Limits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    // The head timeout is the connection's own (see `idle`): hyper's would
    // start a timer on every request, and count keep-alive idle time as
    // head time.
    builder
        .header_read_timeout(None)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(HYPER_BUFFER_SIZE.max(limits.max_header_bytes))
        .max_headers(limits.max_headers);
    builder
}

/// The connection's service: each request counted in flight until its
/// answer is written, and marked for whether the connection may be parked
/// after it. An upgrade request carries what a WebSocket relay takes over
/// from the connection: the server's stop signal and the send timeout.
fn service(
    gateway: Arc<Gateway>,
    activity: Arc<Activity>,
    addr: SocketAddr,
    peer: Peer,
    stop: watch::Receiver<bool>,
    send_timeout: Duration,
) -> impl Service<
    http::Request<Incoming>,
    Response = http::Response<Tracked>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<Tracked>, Infallible>> + Send,
> + Clone {
    service_fn(move |mut request: http::Request<Incoming>| {
        let reusable = idle::reusable(
            request.version(),
            request.headers(),
            request.body().is_end_stream(),
        );
        if !reusable && request.headers().contains_key(http::header::UPGRADE) {
            let handover = Handover {
                send: SendWatch::new(activity.clone(), addr, send_timeout),
                stopping: stop.clone(),
            };
            request.extensions_mut().insert(handover);
        }
        let guard = InFlight::start(&activity, reusable);
        let activity = activity.clone();
        let answered = gateway.handle(request, peer.clone());
        answered.map(move |response| {
            if response.headers().contains_key(http::header::CONNECTION) {
                activity.answer_has_connection_header();
            }
            let tracked = response.map(|body| Tracked {
                body,
                _guard: guard,
            });
            Ok::<_, Infallible>(tracked)
        })
    })
}

/// Ends an idle hyper connection but not its socket, and gives the socket
/// back with whatever hyper had read of the next request. `None` if the
/// connection ended otherwise: upgraded, failed, or still writing its last
/// answer (it then finishes that, within the keep-alive time, and closes).
async fn park<S>(
    mut connection: Box<UpgradeableConnection<TokioIo<ClientIo>, S>>,
    activity: &Activity,
    deadlines: &mut Deadlines,
    peer: SocketAddr,
) -> Option<ClientIo>
where
    S: HttpService<Incoming, ResBody = Tracked>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // An idle hyper connection ends at once on a graceful shutdown, without
    // reading or writing; one still writing goes on.
    activity.set_parking(true);
    Pin::new(&mut *connection).graceful_shutdown();
    let ended = (&mut *connection).now_or_never();
    activity.set_parking(false);
    match ended {
        Some(Ok(())) => {}
        Some(Err(error)) => {
            connection_failed(&error, peer);
            return None;
        }
        None => {
            wind_down(connection, activity, deadlines, peer).await;
            return None;
        }
    }
    let parts = connection.into_parts()?;
    Some(parts.io.into_inner().parked(parts.read_buf))
}

/// Lets a hyper connection that was told to shut down finish what it is
/// doing, for as long as the connection's deadlines allow (an answer being
/// written has none; a head on its way has its head time).
async fn wind_down<S>(
    mut connection: Box<UpgradeableConnection<TokioIo<ClientIo>, S>>,
    activity: &Activity,
    deadlines: &mut Deadlines,
    peer: SocketAddr,
) where
    S: HttpService<Incoming, ResBody = Tracked>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::select! {
        _ = &mut *connection => {}
        expiry = deadlines.expired(activity) => close(expiry, activity, peer),
    }
}

/// A connection's timer closes it: a client given up on for taking none of
/// its answer is marked to be reset, and the close is recorded.
fn close(expiry: Expiry, activity: &Activity, peer: SocketAddr) {
    if expiry == Expiry::Send {
        activity.give_up();
    }
    expiry.record(peer);
}

/// Counts a connection as closed when dropped, however it ends.
struct Counted;

impl Drop for Counted {
    fn drop(&mut self) {
        crate::metrics::connections(-1.0);
    }
}

/// A response body that keeps its request counted as in flight.
struct Tracked {
    body: Body,
    _guard: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Logs how a client connection failed. A request hyper's parser refused
/// (answered 400 or 431 by hyper itself, never decided, never in the
/// decision or audit log) is logged at info and counted; anything else (a
/// client gone, a reset) at debug.
fn connection_failed(error: &hyper::Error, peer: SocketAddr) {
    // Counted first: once the line is out, the count shows it.
    if error.is_parse_too_large() {
        crate::metrics::unparsed_request("too_large");
        tracing::info!(%peer, "a request head over max_header_bytes or max_headers, answered 431 by the HTTP parser");
    } else if error.is_parse() {
        crate::metrics::unparsed_request("malformed");
        tracing::info!(%peer, %error, "a malformed request, answered 400 by the HTTP parser");
    } else {
        tracing::debug!(%error, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Wakes>, std::task::Waker) {
        let wakes = Arc::new(Wakes::default());
        (wakes.clone(), std::task::Waker::from(wakes))
    }

    fn poll(stopped: &mut Stopped, waker: &std::task::Waker) -> Poll<()> {
        Pin::new(stopped).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn a_stop_wakes_the_waiting_connection_though_its_polls_skipped_the_channel() {
        let (stop, receiver) = watch::channel(false);
        let mut stopped = Stopped::new(receiver);
        let (first, first_waker) = waker();
        for _ in 0..3 {
            assert!(poll(&mut stopped, &first_waker).is_pending());
        }
        // Polled by another waker (a task's waker may change): that one is
        // woken by the stop, not the first.
        let (second, second_waker) = waker();
        assert!(poll(&mut stopped, &second_waker).is_pending());
        assert!(poll(&mut stopped, &second_waker).is_pending());
        assert_eq!(
            first.0.load(Ordering::SeqCst) + second.0.load(Ordering::SeqCst),
            0
        );
        stop.send(true).expect("a receiver is there");
        assert!(
            second.0.load(Ordering::SeqCst) >= 1,
            "the stop woke the task"
        );
        assert_eq!(first.0.load(Ordering::SeqCst), 0, "the waker given up");
        assert!(poll(&mut stopped, &second_waker).is_ready());
        assert!(poll(&mut stopped, &second_waker).is_pending(), "fused");
    }

    #[test]
    fn a_stop_sent_before_the_connection_began_or_a_server_gone_ends_the_wait_at_once() {
        let (stop, receiver) = watch::channel(false);
        stop.send(true).expect("a receiver is there");
        let (_, waker) = waker();
        let mut stopped = Stopped::new(receiver.clone());
        assert!(poll(&mut stopped, &waker).is_ready());
        let (stop, receiver) = watch::channel(false);
        let mut stopped = Stopped::new(receiver);
        assert!(poll(&mut stopped, &waker).is_pending());
        assert!(poll(&mut stopped, &waker).is_pending());
        drop(stop);
        assert!(poll(&mut stopped, &waker).is_ready(), "no sender left");
    }

    #[tokio::test]
    async fn accepted_sockets_inherit_the_listeners_keep_alive_and_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        assert!(
            tune_listener(socket2::SockRef::from(&listener)),
            "TCP_NODELAY set on the listener"
        );
        let addr = listener.local_addr().expect("addr");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        assert!(accepted.nodelay().expect("TCP_NODELAY"));
        let socket = socket2::SockRef::from(&accepted);
        assert!(socket.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(
            socket.tcp_keepalive_time().expect("TCP_KEEPIDLE"),
            Duration::from_secs(60)
        );
        assert_eq!(
            socket.tcp_keepalive_interval().expect("TCP_KEEPINTVL"),
            Duration::from_secs(10)
        );
        assert_eq!(socket.tcp_keepalive_retries().expect("TCP_KEEPCNT"), 6);
    }
}
