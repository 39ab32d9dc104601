//! Keep-alive connections between requests: a connection idle for a while
//! gives up its hyper connection and buffers ("parked") and gets a new one
//! when the client sends again. What must hold across that: the next request
//! is served, bytes the client sent early are not lost, and the head and
//! keep-alive timeouts still close what they should.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// Longer than the gateway keeps an idle connection unparked (1 s).
const PARKED: Duration = Duration::from_millis(1500);

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_DEFAULT}\r\n\r\n")
}

#[tokio::test]
async fn a_parked_connection_serves_its_next_request_past_the_head_timeout() {
    // The head timeout counts from a head's first byte, not from the last
    // answer, so an idle connection lives for the keep-alive time.
    let gateway =
        gateway_with_limits("  header_read_timeout_ms: 300\n  keep_alive_timeout_ms: 10000\n")
            .await;
    let mut client = KeptAlive::connect(gateway.addr).await;
    for path in ["/os/info", "/supervisor/ping", "/os/info"] {
        client.write(&get(path)).await;
        assert_eq!(client.answer().await.status, 200, "{path}");
        tokio::time::sleep(PARKED).await;
    }
    let paths: Vec<String> = gateway.upstream_saw().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/os/info", "/supervisor/ping", "/os/info"]);
}

#[tokio::test]
async fn after_bashios_get_with_its_short_body_the_connection_parks_too() {
    // Its `{}` came whole with its head and was read with it, so nothing of
    // the request is left unread: the connection parks as after a plain
    // GET, and lives for the keep-alive time, not the head time.
    let gateway =
        gateway_with_limits("  header_read_timeout_ms: 300\n  keep_alive_timeout_ms: 10000\n")
            .await;
    let mut client = KeptAlive::connect(gateway.addr).await;
    let bashio = bashio_kept_alive("/os/info");
    for round in 0..2 {
        client.write(&bashio).await;
        assert_eq!(client.answer().await.status, 200, "round {round}");
        tokio::time::sleep(PARKED).await;
    }
    client.write(&get("/supervisor/ping")).await;
    assert_eq!(client.answer().await.status, 200);
    let paths: Vec<String> = gateway.upstream_saw().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/os/info", "/os/info", "/supervisor/ping"]);
}

#[tokio::test]
async fn a_head_begun_before_the_connection_parked_is_finished_after() {
    let gateway = gateway_with_limits("  header_read_timeout_ms: 5000\n").await;
    let mut client = KeptAlive::connect(gateway.addr).await;
    let second = get("/supervisor/ping");
    let (early, late) = second.split_at(20);
    client.write(&format!("{}{early}", get("/os/info"))).await;
    assert_eq!(client.answer().await.status, 200);
    tokio::time::sleep(PARKED).await;
    client.write(late).await;
    let answer = client.answer().await;
    assert_eq!(answer.status, 200);
    let paths: Vec<String> = gateway.upstream_saw().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/os/info", "/supervisor/ping"]);
}

#[tokio::test]
async fn unfinished_heads_are_closed_at_the_head_timeout_parked_or_not() {
    let gateway =
        gateway_with_limits("  header_read_timeout_ms: 1500\n  keep_alive_timeout_ms: 30000\n")
            .await;
    // A head left half-sent behind a request, in the buffer when parked.
    let mut behind = KeptAlive::connect(gateway.addr).await;
    behind
        .write(&format!("{}GET /os/info HTTP/1.1\r\nHo", get("/os/info")))
        .await;
    assert_eq!(behind.answer().await.status, 200);
    // A head begun on a connection that was parked already.
    let mut after = KeptAlive::connect(gateway.addr).await;
    after.write(&get("/os/info")).await;
    assert_eq!(after.answer().await.status, 200);
    tokio::time::sleep(PARKED).await;
    after.write("GET /os/info HTTP/1.1\r\nHo").await;

    for (name, client) in [("behind", &mut behind), ("after", &mut after)] {
        assert!(
            closed_within(&mut client.stream, Duration::from_secs(4)).await,
            "{name}: the unfinished head is still waited for"
        );
    }
    // Meanwhile the gateway serves others.
    let response = gateway
        .send(&RawRequest::new("GET", "/supervisor/ping"))
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(gateway.upstream_saw().len(), 3);
}

#[tokio::test]
async fn a_parked_connection_is_closed_at_the_keep_alive_timeout() {
    let gateway = gateway_with_limits("  keep_alive_timeout_ms: 2000\n").await;
    let mut client = KeptAlive::connect(gateway.addr).await;
    client.write(&get("/os/info")).await;
    assert_eq!(client.answer().await.status, 200);
    tokio::time::sleep(PARKED).await;
    // Parked, and still open.
    client.write(&get("/os/info")).await;
    assert_eq!(client.answer().await.status, 200);
    let started = std::time::Instant::now();
    assert!(
        closed_within(&mut client.stream, Duration::from_secs(5)).await,
        "idle connection kept open"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "closed before its keep-alive time: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn pipelined_requests_all_answered_while_connections_park_at_once() {
    // More than 256 connections running (each holding half a head) make
    // idle connections park at once, also in the pauses hyper takes within
    // a long pipeline; no byte may be lost across those parks.
    let gateway = gateway_with_limits("  header_read_timeout_ms: 20000\n").await;
    let mut holding = Vec::new();
    for _ in 0..300 {
        let mut client = KeptAlive::connect(gateway.addr).await;
        client.write("GET /os/info HTTP/1.1\r\nHo").await;
        holding.push(client);
    }
    let mut client = KeptAlive::connect(gateway.addr).await;
    let pipeline: String = (0..600)
        .map(|n| format!("GET /backups/n{n:05} HTTP/1.1\r\nHost: x\r\n\r\n"))
        .collect();
    client.write(&pipeline).await;
    for n in 0..600 {
        let answer = client.answer().await;
        assert_eq!(answer.status, 401, "answer {n}");
    }
    // Still open and in step: one more request is answered as itself.
    client.write(&get("/os/info")).await;
    assert_eq!(client.answer().await.status, 200);
    let paths: Vec<String> = gateway.upstream_saw().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/os/info"]);
    drop(holding);
}

#[tokio::test]
async fn a_head_sent_behind_a_request_with_a_body_has_only_its_head_time() {
    let gateway =
        gateway_with_limits("  header_read_timeout_ms: 1000\n  keep_alive_timeout_ms: 20000\n")
            .await;
    let mut client = KeptAlive::connect(gateway.addr).await;
    let post = format!(
        "POST /addons/self/options HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_DEFAULT}\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    client
        .write(&format!("{post}GET /os/info HTTP/1.1\r\n"))
        .await;
    assert_eq!(client.answer().await.status, 200);
    // Nothing more is sent: the head began with the POST, so it times out
    // then, not a keep-alive time later.
    assert!(
        closed_within(&mut client.stream, Duration::from_millis(3000)).await,
        "the unfinished head is still waited for"
    );
}

#[tokio::test]
async fn shutdown_does_not_wait_past_the_head_time_for_an_unfinished_head() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("dir");
    let text = config_with_limits(mock.addr(), "  header_read_timeout_ms: 1000\n")
        .replace("shutdown_grace_ms: 1000", "shutdown_grace_ms: 10000");
    let served = spawn_serve(&write(dir.path(), "gateway.yaml", &text), "info");
    let mut first = KeptAlive::connect(served.addr).await;
    first.write("GET /os/info HTTP/1.1\r\nHo").await;
    let mut parked = KeptAlive::connect(served.addr).await;
    parked.write(&get("/supervisor/ping")).await;
    assert_eq!(parked.answer().await.status, 200);
    tokio::time::sleep(PARKED).await;
    parked.write("GET /os/info HTTP/1.1\r\nHo").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let (code, _) = served.stop();
    assert_eq!(code, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}, waiting on unfinished heads",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_pipeline_mixing_plain_gets_and_other_requests_is_answered_in_order() {
    // Plain GETs are served by the gateway's own code and anything else by
    // hyper, which takes over the connection with the bytes already read:
    // none may be lost, doubled or answered out of turn, either way.
    let gateway = TestGateway::start().await;
    let mut client = KeptAlive::connect(gateway.addr).await;
    let post = format!(
        "POST /addons/self/options HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_DEFAULT}\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    let closing = format!(
        "GET /os/info HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_DEFAULT}\r\nConnection: close\r\n\r\n"
    );
    let pipeline = [
        get("/supervisor/ping"),
        post.clone(),
        get("/addons/self/info"),
        get("/backups"),
        post,
        get("/os/info"),
        closing,
    ];
    client.write(&pipeline.concat()).await;
    let statuses = [200, 200, 200, 403, 200, 200, 200];
    for (n, status) in statuses.into_iter().enumerate() {
        assert_eq!(client.answer().await.status, status, "answer {n}");
    }
    let seen: Vec<(String, String)> = gateway
        .upstream_saw()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    let expected = [
        ("GET", "/supervisor/ping"),
        ("POST", "/addons/self/options"),
        ("GET", "/addons/self/info"),
        ("POST", "/addons/self/options"),
        ("GET", "/os/info"),
        ("GET", "/os/info"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(seen, expected);
}

/// An upstream that answers each request `ok` after `delay`, keeping its
/// connections alive.
async fn slow_upstream(delay: Duration) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut received = Vec::new();
                let mut buffer = [0u8; 4096];
                loop {
                    while let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                        received.drain(..end + 4);
                        tokio::time::sleep(delay).await;
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                    match stream.read(&mut buffer).await {
                        Ok(read) if read > 0 => received.extend_from_slice(&buffer[..read]),
                        _ => return,
                    }
                }
            });
        }
    });
    addr
}

/// Reads until the gateway closes the connection, for at most 5 s.
async fn rest(client: &mut KeptAlive) -> Vec<u8> {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), client.stream.read_to_end(&mut rest));
    read.await.expect("closed within 5 s").expect("read");
    rest
}

#[tokio::test]
async fn a_stop_while_a_plain_get_waits_answers_it_with_close_and_serves_nothing_after() {
    let upstream = slow_upstream(Duration::from_millis(800)).await;
    let dir = tempfile::tempdir().expect("dir");
    let text = config_with_limits(upstream, "")
        .replace("shutdown_grace_ms: 1000", "shutdown_grace_ms: 10000");
    let served = spawn_serve(&write(dir.path(), "gateway.yaml", &text), "info");
    let mut client = KeptAlive::connect(served.addr).await;
    // The second request waits behind the first, read but not begun.
    client
        .write(&format!("{}{}", get("/os/info"), get("/os/info")))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let stopping = tokio::task::spawn_blocking(move || served.stop());
    let answer = client.answer().await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(
        rest(&mut client).await,
        b"",
        "nothing served after the stop"
    );
    let (code, _) = stopping.await.expect("stop");
    assert_eq!(code, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_request_for_hyper_begun_before_a_stop_is_answered_after_it() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("dir");
    let text = config_with_limits(mock.addr(), "")
        .replace("shutdown_grace_ms: 1000", "shutdown_grace_ms: 10000");
    let served = spawn_serve(&write(dir.path(), "gateway.yaml", &text), "info");
    let post = format!(
        "POST /addons/self/options HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_DEFAULT}\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    let mut client = KeptAlive::connect(served.addr).await;
    // Enough for the gateway to see it is no plain GET, not the whole head.
    client.write(&post[..30]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = tokio::task::spawn_blocking(move || served.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.write(&post[30..]).await;
    let answer = client.answer().await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), Some("close"));
    let (code, _) = stopping.await.expect("stop");
    assert_eq!(code, Some(0));
}
