//! Connections spread over worker threads, each with its own single-threaded
//! runtime and upstream pool, as `serve` runs them.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use supervisor_gateway::config::Config;
use supervisor_gateway::gateway::Gateway;
use supervisor_gateway::server::{serve_on, Workers};
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

#[tokio::test]
async fn connections_on_worker_threads_are_served_and_the_workers_stop() {
    let mock = start_mock().await;
    let config = Config::from_yaml(&test_config_yaml(mock.addr()), "test config").expect("config");
    let gateway = Arc::new(Gateway::new(config, Table::builtin().expect("table")));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let before = worker_threads();
    let workers = Workers::start(3).expect("workers start");
    assert_eq!(
        worker_threads_become(before + 3),
        before + 3,
        "three worker threads run"
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        let result = serve_on(listener, gateway, shutdown, &workers).await;
        (result, workers)
    });

    // Seven connections, so every worker gets more than one; two requests
    // on each, the second after the first on the same connection.
    let keep = RawRequest::new("GET", "/os/info")
        .token(TOK_DEFAULT)
        .header("Connection", "keep-alive")
        .to_bytes();
    let last = RawRequest::new("GET", "/supervisor/ping")
        .token(TOK_DEFAULT)
        .to_bytes();
    let mut clients = Vec::new();
    for _ in 0..7 {
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
    let seen = mock.state().take();
    assert_eq!(seen.len(), 14, "every request reached the upstream once");

    let _ = stop.send(());
    let (result, workers) = tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("stops")
        .expect("serve task");
    result.expect("served without error");
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
