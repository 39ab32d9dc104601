//! The accept loop: serves HTTP/1.1 connections on a bound listener until a
//! shutdown signal, then lets requests in flight finish up to the grace time.
//! It enforces the connection limits: head size and time, keep-alive idle
//! time and the number of open connections.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use futures_util::FutureExt;
use http_body::Frame;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::forwarding::Peer;
use crate::gateway::Gateway;

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
    let (stop_tx, stop_rx) = watch::channel(false);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
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
            _alive: alive_tx.clone(),
            _slot: slot,
        };
        workers.spawn(connection, stream, peer);
    }
    drop(listener);
    drop(alive_tx);
    let _ = stop_tx.send(true);
    let grace = gateway.limits().shutdown_grace;
    if tokio::time::timeout(grace, alive_rx.recv()).await.is_err() {
        let grace_ms = grace.as_millis() as u64;
        tracing::warn!(
            grace_ms,
            "connections still open after the shutdown grace time"
        );
    }
    Ok(())
}

/// Waits for a free connection slot, then for a connection. While every
/// slot is taken, new connections wait in the listen backlog.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> Option<(TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit)> {
    let slot = slots.clone().acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, peer)) => Some((stream, peer, slot)),
        Err(error) => {
            tracing::warn!(%error, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// One client connection. `_alive` and `_slot` are dropped when it ends,
/// which is how the shutdown and the connection limit know it is gone.
struct Connection {
    gateway: Arc<Gateway>,
    stop: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream, peer: SocketAddr) {
        crate::metrics::connections(1.0);
        let _counted = Counted;
        let _ = stream.set_nodelay(true);
        let limits = self.gateway.limits().clone();
        let activity = Arc::new(Activity::new());
        let peer = Peer::new(peer);
        let service = {
            let (gateway, activity) = (self.gateway.clone(), activity.clone());
            service_fn(move |request| {
                let guard = InFlight::start(&activity);
                let answered = gateway.handle(request, peer.clone());
                answered.map(move |response| {
                    let tracked = response.map(|body| Tracked {
                        body,
                        _guard: guard,
                    });
                    Ok::<_, Infallible>(tracked)
                })
            })
        };
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes)
            .max_headers(limits.max_headers);
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::pin!(connection);

        let mut stop = self.stop.clone();
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = stopped => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
            () = activity.idle_for(limits.keep_alive_timeout) => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, "connection ended with an error");
        }
    }
}

/// Counts a connection as closed when dropped, however its task ends.
struct Counted;

impl Drop for Counted {
    fn drop(&mut self) {
        crate::metrics::connections(-1.0);
    }
}

// ---- keep-alive idle tracking ---------------------------------------------

/// Requests in flight on one connection, and since when (in milliseconds
/// after `opened`) it has had none.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    /// Resolves once the connection has had no request in flight for
    /// `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        let tick = crate::body::check_every(timeout);
        loop {
            tokio::time::sleep(tick).await;
            let idle_ms = self
                .now_ms()
                .saturating_sub(self.idle_since_ms.load(Ordering::Acquire));
            let idle = Duration::from_millis(idle_ms);
            if self.in_flight.load(Ordering::Acquire) == 0 && idle >= timeout {
                return;
            }
        }
    }
}

/// A request in flight: from the moment hyper hands it over until its
/// response body is finished or dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .idle_since_ms
            .store(self.0.now_ms(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
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
