//! Connections spread over worker threads, each with its own single-threaded
//! runtime and upstream pool, as `serve` runs them.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use supervisor_gateway::config::Config;
use supervisor_gateway::gateway::Gateway;
use supervisor_gateway::server::{
    bind_each, bind_reusing_port, serve_each_worker_on, serve_on, Workers,
};
use supervisor_gateway::table::Table;

use crate::helpers::*;

/// Waits up to two seconds for the number of worker threads to be `count`
/// (a new thread names itself once it runs), and returns the last count.
fn worker_threads_become(count: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let now = worker_threads();
        if now == count || std::time::Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The threads of this process named like the gateway's workers.
fn worker_threads() -> usize {
    let tasks = std::fs::read_dir("/proc/self/task").expect("this test needs Linux /proc");
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .filter(|name| name.starts_with("gateway-worke"))
        .count()
}

/// A gateway of the config `text`, with the built-in table.
fn gateway_from(text: &str) -> Arc<Gateway> {
    let config = Config::from_yaml(text, "test config").expect("config");
    Arc::new(Gateway::new(config, Table::builtin().expect("table")))
}

/// Runs `serve_on` as a task until the sender it returns is used; the task
/// gives back the result and the workers.
fn serve_in_background(
    accepting: Accepting,
    gateway: Arc<Gateway>,
    workers: Workers,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<(std::io::Result<()>, Workers)>,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        let result = match accepting {
            Accepting::Shared(listener) => serve_on(listener, gateway, shutdown, &workers).await,
            Accepting::EachWorker(listeners) => {
                serve_each_worker_on(listeners, gateway, shutdown, &workers).await
            }
        };
        (result, workers)
    });
    (stop, serving)
}

/// How a test's gateway accepts: on one listener (`serve_on`), or on one
/// for each worker (`serve_each_worker_on`, the config's `reuse_port`).
enum Accepting {
    Shared(TcpListener),
    EachWorker(Vec<std::net::TcpListener>),
}

/// Stops what [`serve_in_background`] started, asserts that `serve_on`
/// returned without error within five seconds, and gives the workers back.
async fn stop_serving(
    stop: oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<(std::io::Result<()>, Workers)>,
) -> Workers {
    let _ = stop.send(());
    let (result, workers) = tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("stops")
        .expect("serve task");
    result.expect("served without error");
    workers
}

/// Opens `count` connections to `addr` at once, sends two requests on
/// each (the second after the first, on the same connection), and asserts
/// that both are answered 200 on every one.
async fn each_answered_twice(addr: std::net::SocketAddr, count: usize) {
    let keep = RawRequest::new("GET", "/os/info")
        .token(TOK_DEFAULT)
        .header("Connection", "keep-alive")
        .to_bytes();
    let last = RawRequest::new("GET", "/supervisor/ping")
        .token(TOK_DEFAULT)
        .to_bytes();
    let mut clients = Vec::new();
    for _ in 0..count {
        let (keep, last) = (keep.clone(), last.clone());
        clients.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.write_all(&keep).await.expect("write");
            stream.write_all(&last).await.expect("write");
            let mut received = Vec::new();
            let read = stream.read_to_end(&mut received);
            tokio::time::timeout(Duration::from_secs(10), read)
                .await
                .expect("answered in time")
                .expect("read");
            String::from_utf8_lossy(&received)
                .matches("HTTP/1.1 200 ")
                .count()
        }));
    }
    for client in clients {
        assert_eq!(client.await.expect("client"), 2, "both requests answered");
    }
}

#[tokio::test]
async fn connections_on_worker_threads_are_served_and_the_workers_stop() {
    let mock = start_mock().await;
    let gateway = gateway_from(&test_config_yaml(mock.addr()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let before = worker_threads();
    let workers = Workers::start(3).expect("workers start");
    assert_eq!(
        worker_threads_become(before + 3),
        before + 3,
        "three worker threads run"
    );
    let (stop, serving) = serve_in_background(Accepting::Shared(listener), gateway, workers);

    // Seven connections, so every worker gets more than one.
    each_answered_twice(addr, 7).await;
    let seen = mock.state().take();
    assert_eq!(seen.len(), 14, "every request reached the upstream once");

    let workers = stop_serving(stop, serving).await;
    tokio::task::spawn_blocking(move || workers.stop())
        .await
        .expect("workers stop");
    assert_eq!(
        worker_threads_become(before),
        before,
        "the worker threads are gone"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "nothing listens after shutdown"
    );
}

/// How many IPv4 sockets of this machine listen on `port` (from
/// `/proc/net/tcp`: the local address's port in hex, and state `0A`).
fn listening_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("this test needs Linux /proc");
    let port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&port) && fields[3] == "0A"
        })
        .count()
}

/// Waits up to two seconds for `listening_on(port)` to be `count`, and
/// returns the last count.
async fn listening_becomes(port: u16, count: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let now = listening_on(port);
        if now == count || std::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn with_reuse_port_each_worker_accepts_on_a_listener_of_its_own() {
    let mock = start_mock().await;
    let gateway = gateway_from(&test_config_yaml(mock.addr()));
    let listeners = bind_each("127.0.0.1:0".parse().expect("address"), 3).expect("bind");
    let addr = listeners[0].local_addr().expect("addr");
    assert_eq!(
        listening_on(addr.port()),
        3,
        "all three on the first's port"
    );
    let workers = Workers::start(3).expect("workers start");
    let (stop, serving) = serve_in_background(Accepting::EachWorker(listeners), gateway, workers);
    assert_eq!(
        listening_becomes(addr.port(), 3).await,
        3,
        "one listener for each of the three workers"
    );

    // Twenty connections: the kernel spreads them over the three
    // listeners, and every one is served.
    each_answered_twice(addr, 20).await;
    assert_eq!(
        mock.state().take().len(),
        40,
        "every request reached the upstream once"
    );

    let workers = stop_serving(stop, serving).await;
    assert_eq!(
        listening_on(addr.port()),
        0,
        "every worker dropped its listener before serve_on returned"
    );
    tokio::task::spawn_blocking(move || workers.stop())
        .await
        .expect("workers stop");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "nothing listens after shutdown"
    );
}

#[tokio::test]
async fn only_a_listener_bound_to_reuse_its_port_can_be_joined() {
    // The default: no other socket can bind the gateway's port.
    let plain = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let taken = plain.local_addr().expect("addr");
    let error = bind_reusing_port(taken).expect_err("the port is the gateway's alone");
    assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
    // With reuse_port, another socket of the same user can bind it too
    // (the trade-off the README names).
    let reusing = bind_reusing_port("127.0.0.1:0".parse().expect("address")).expect("bind");
    let shared = reusing.local_addr().expect("addr");
    let beside = bind_reusing_port(shared).expect("bound beside it");
    assert_eq!(beside.local_addr().expect("addr"), shared);
}

#[tokio::test]
async fn with_reuse_port_fewer_slots_than_workers_still_serve_every_connection() {
    // One connection at a time over four listeners, with one slot: a
    // worker must not hold the slot while its listener gets nothing.
    let mock = start_mock().await;
    let text = test_config_yaml(mock.addr()).replace(
        "  shutdown_grace_ms: 1000\n",
        "  shutdown_grace_ms: 1000\n  max_connections: 1\n",
    );
    let gateway = gateway_from(&text);
    assert_eq!(gateway.limits().max_connections, 1);
    let listeners = bind_each("127.0.0.1:0".parse().expect("address"), 4).expect("bind");
    let addr = listeners[0].local_addr().expect("addr");
    let workers = Workers::start(4).expect("workers start");
    let (stop, serving) = serve_in_background(Accepting::EachWorker(listeners), gateway, workers);
    assert_eq!(listening_becomes(addr.port(), 4).await, 4);

    let request = RawRequest::new("GET", "/supervisor/ping")
        .token(TOK_DEFAULT)
        .to_bytes();
    for connection in 0..20 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(&request).await.expect("write");
        let mut received = Vec::new();
        let read = stream.read_to_end(&mut received);
        let answered = tokio::time::timeout(Duration::from_secs(5), read).await;
        assert!(
            answered.is_ok(),
            "connection {connection} waited with the slot free"
        );
        assert!(
            String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200 "),
            "connection {connection}"
        );
    }
    let workers = stop_serving(stop, serving).await;
    tokio::task::spawn_blocking(move || workers.stop())
        .await
        .expect("workers stop");
}

#[tokio::test]
async fn serve_with_reuse_port_binds_a_listener_for_each_worker() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!(
        "{}watch_interval_ms: 0\nworkers: 2\nreuse_port: true\n",
        test_config_yaml(mock.addr())
    );
    let served = spawn_serve(&write(dir.path(), "gateway.yaml", &text), "info");
    assert_eq!(listening_becomes(served.addr.port(), 2).await, 2);
    for _ in 0..10 {
        let response = served
            .send(&RawRequest::new("GET", "/addons/self/info").token(TOK_DEFAULT))
            .await;
        assert_eq!(response.status, 200);
    }
    assert!(served.log().contains("reuse_port=true"), "{}", served.log());
}

#[tokio::test]
async fn each_worker_must_have_a_listener_of_its_own() {
    let mock = start_mock().await;
    let gateway = gateway_from(&test_config_yaml(mock.addr()));
    let listeners = bind_each("127.0.0.1:0".parse().expect("address"), 1).expect("bind");
    let workers = Workers::start(2).expect("workers start");
    let refused = serve_each_worker_on(listeners, gateway, std::future::pending(), &workers).await;
    assert_eq!(
        refused.expect_err("two workers, one listener").kind(),
        std::io::ErrorKind::InvalidInput
    );
    tokio::task::spawn_blocking(move || workers.stop())
        .await
        .expect("workers stop");
}
