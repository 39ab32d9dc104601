//! Upstream failures the gateway answers itself: unreachable (502) and too
//! slow (504), in the error envelope; and answers framed every way the
//! gateway's own client reads, each passed on whole and nothing after one
//! taken for the next.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use supervisor_gateway::config::Config;

use crate::helpers::*;

/// A gateway whose upstream address has nothing listening.
async fn gateway_before_nothing() -> TestGateway {
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead = closed.local_addr().expect("addr");
    drop(closed);
    TestGateway::in_front_of(dead, start_mock().await).await
}

#[tokio::test]
async fn an_unreachable_upstream_gives_502_quickly() {
    let gateway = gateway_before_nothing().await;

    let started = Instant::now();
    let response = gateway
        .send(&RawRequest::new("GET", "/os/info").token(TOK_DEFAULT))
        .await;
    assert_refused(&response, 502, "unreachable upstream");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn an_upstream_that_never_answers_gives_504() {
    let mock = start_mock().await;
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = silent.local_addr().expect("addr");
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let text = test_config_yaml(addr).replace(
        "upstream_response_timeout_ms: 2000",
        "upstream_response_timeout_ms: 300",
    );
    let config = Config::from_yaml(&text, "test config").expect("config");
    let gateway = TestGateway::with_config(config, mock).await;

    let response = gateway
        .send(&RawRequest::new("GET", "/os/info").token(TOK_DEFAULT))
        .await;
    assert_refused(&response, 504, "silent upstream");
    hold.abort();
}

#[tokio::test]
async fn a_kept_connection_that_goes_silent_times_out_a_whole_timeout_after_its_own_request() {
    // The upstream answers /os/info and never answers /core/info.
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let upstream = fake_upstream(move |stream, head| {
        counted.fetch_add(1, Ordering::SeqCst);
        answer_each(stream, head, |path| match path {
            "/os/info" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            _ => b"",
        })
    })
    .await;
    let text = test_config_yaml(upstream).replace(
        "upstream_response_timeout_ms: 2000",
        "upstream_response_timeout_ms: 600",
    );
    let config = Config::from_yaml(&text, "test config").expect("config");
    let gateway = TestGateway::with_config(config, start_mock().await).await;
    let get = |path| RawRequest::new("GET", path).token(TOK_MANAGER);

    let first = gateway.send(&get("/os/info")).await;
    assert_eq!((first.status, first.body.as_slice()), (200, &b"ok"[..]));
    // The connection's answer timer was set for the first request; the
    // second request's deadline is its own, 600 ms after it was sent, not
    // the first's (which passes 200 ms into the second's wait).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let sent = Instant::now();
    let silent = gateway.send(&get("/core/info")).await;
    let waited = sent.elapsed();
    assert_refused(&silent, 504, "silent on a kept connection");
    // Not early, and not a multiple of the timeout late either (the bound
    // leaves the machine half a second of slack).
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_millis(1_150),
        "504 after {waited:?}"
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "the kept connection carried both"
    );
    // The connection that timed out is not used again.
    let next = gateway.send(&get("/os/info")).await;
    assert_eq!((next.status, next.body.as_slice()), (200, &b"ok"[..]));
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

/// Reads request heads from `stream` one at a time and answers each with
/// `answer(path)`, written in small pieces so that the gateway reads them
/// apart; stops when the client closes, or after an answer with
/// `Connection: close`.
async fn answer_each(
    mut stream: TcpStream,
    mut pending: Vec<u8>,
    answer: fn(&str) -> &'static [u8],
) {
    for _ in 0..100 {
        let end = loop {
            if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(read) => pending.extend_from_slice(&chunk[..read]),
            }
        };
        let head = String::from_utf8_lossy(&pending[..end]).into_owned();
        pending.drain(..end);
        let bytes = answer(head.split(' ').nth(1).unwrap_or(""));
        for piece in bytes.chunks(7) {
            if stream.write_all(piece).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if bytes
            .windows(17)
            .any(|w| w.eq_ignore_ascii_case(b"connection: close"))
        {
            return;
        }
    }
}

/// A gateway in front of an upstream that answers each request by its path
/// with `answer`, and the count of connections the upstream took.
async fn gateway_answering(answer: fn(&str) -> &'static [u8]) -> (TestGateway, Arc<AtomicUsize>) {
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let upstream = fake_upstream(move |stream, head| {
        counted.fetch_add(1, Ordering::SeqCst);
        answer_each(stream, head, answer)
    })
    .await;
    let gateway = TestGateway::in_front_of(upstream, start_mock().await).await;
    (gateway, connections)
}

#[tokio::test]
async fn answers_framed_every_way_reach_the_client_whole_and_in_turn() {
    let (gateway, _) = gateway_answering(|path| match path {
        "/os/info" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n",
        "/core/info" => b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nfirst",
        "/supervisor/info" => b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
        "/host/info" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nhost",
        _ => b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
    })
    .await;
    let get = |path| RawRequest::new("GET", path).token(TOK_MANAGER);
    // Twice over: the second round reuses the kept connections.
    for round in 0..2 {
        let chunked = gateway.send(&get("/os/info")).await;
        assert_eq!(
            (chunked.status, chunked.body.as_slice()),
            (200, &b"hello world"[..]),
            "round {round}"
        );
        let listed = gateway.send(&get("/core/info")).await;
        assert_eq!(
            (listed.status, listed.body.as_slice()),
            (200, &b"first"[..])
        );
        assert_eq!(listed.header("content-length"), Some("5"));
        let unchanged = gateway.send(&get("/supervisor/info")).await;
        assert_eq!((unchanged.status, unchanged.body.len()), (304, 0));
        let interim = gateway.send(&get("/host/info")).await;
        assert_eq!(
            (interim.status, interim.body.as_slice()),
            (200, &b"host"[..])
        );
        let to_close = gateway.send(&get("/network/info")).await;
        assert_eq!(
            (to_close.status, to_close.body.as_slice()),
            (200, &b"until the end"[..])
        );
    }
}

#[tokio::test]
async fn an_answer_in_a_transfer_coding_besides_chunked_is_refused_not_passed_on_undecoded() {
    // The gateway takes chunked off and frames the body anew: a gzip coding
    // under it reached the client as if it were the body, labelled with
    // nothing (helper 71). Both clients: the own (a bodiless GET) and
    // hyper's (a POST with a body).
    let (gateway, _) = gateway_answering(|path| match path {
        "/os/info" | "/addons/self/options" => {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\n\x1f\x8b\x08\r\n0\r\n\r\n"
        }
        // hyper's client reads this to the close, its chunks as the body
        // (helper 72).
        "/addons/self/stats" => {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        }
        "/core/info" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n\x1f\x8b\x08",
        _ => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nreal\r\n0\r\n\r\n",
    })
    .await;
    let get = |path| RawRequest::new("GET", path).token(TOK_MANAGER);
    for path in ["/os/info", "/core/info"] {
        assert_refused(&gateway.send(&get(path)).await, 502, path);
    }
    let post = RawRequest::new("POST", "/addons/self/options")
        .token(TOK_DEFAULT)
        .body(b"{}");
    assert_refused(&gateway.send(&post).await, 502, "POST");
    for method in ["GET", "POST"] {
        let empty_element = RawRequest::new(method, "/addons/self/stats")
            .token(TOK_DEFAULT)
            .body(b"{}");
        assert_refused(
            &gateway.send(&empty_element).await,
            502,
            &format!("{method} with chunked and an empty element"),
        );
    }
    // Plain chunked still passes, on both clients.
    let fine = gateway.send(&get("/network/info")).await;
    assert_eq!((fine.status, fine.body.as_slice()), (200, &b"real"[..]));
    let post = RawRequest::new("POST", "/network/interface/eth0/update")
        .token(TOK_MANAGER)
        .body(b"{}");
    let fine = gateway.send(&post).await;
    assert_eq!((fine.status, fine.body.as_slice()), (200, &b"real"[..]));
}

#[tokio::test]
async fn bytes_after_an_answer_never_become_the_next_requests_answer() {
    let (gateway, connections) = gateway_answering(|path| match path {
        // A length one short, then a whole forged answer.
        "/os/info" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
        // Two lengths that disagree.
        "/core/info" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        _ => b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal",
    })
    .await;
    let get = |path| RawRequest::new("GET", path).token(TOK_MANAGER);
    for _ in 0..3 {
        let first = gateway.send(&get("/os/info")).await;
        assert_eq!((first.status, first.body.as_slice()), (200, &b"ok"[..]));
        let next = gateway.send(&get("/network/info")).await;
        assert_eq!((next.status, next.body.as_slice()), (200, &b"real"[..]));
    }
    assert_refused(&gateway.send(&get("/core/info")).await, 502, "two lengths");
    let next = gateway.send(&get("/network/info")).await;
    assert_eq!((next.status, next.body.as_slice()), (200, &b"real"[..]));
    // Each answer with bytes after it, and the one refused, cost their
    // connection: 3 + 1, plus the one the good answers share.
    assert_eq!(connections.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn a_get_with_utf8_in_its_query_reaches_the_upstream_as_other_methods_do() {
    let gateway = TestGateway::start().await;
    for method in ["GET", "HEAD"] {
        let request =
            RawRequest::new(method, "/addons/self/options/config?name=café").token(TOK_DEFAULT);
        let response = gateway.send(&request).await;
        assert_ne!(response.status, 502, "{method}");
        let seen = gateway.upstream_saw();
        let last = seen.last().expect("the upstream saw it");
        assert_eq!(
            (last.method.as_str(), last.query.as_deref()),
            (method, Some("name=café"))
        );
    }
}

#[tokio::test]
async fn an_upstream_failure_before_the_body_was_read_says_the_connection_closes() {
    let gateway = gateway_before_nothing().await;
    // The head alone: the body is never sent.
    let head = format!(
        "POST /backups/new/full HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_BACKUP}\r\nContent-Length: 7\r\n\r\n"
    );
    let response = send_raw(gateway.addr, head.as_bytes()).await;
    assert_refused(&response, 502, "unreachable upstream");
    assert_eq!(response.header("connection"), Some("close"));
}

/// The answer to `request`, read by its length (a JSON envelope), not to
/// the connection's close: hyper leaves a connection that asked for an
/// upgrade open after a refusal.
async fn answer_read_whole(addr: std::net::SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut received = Vec::new();
    let read_whole = async {
        while !received.ends_with(b"}") {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(read) => received.extend_from_slice(&chunk[..read]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_whole)
        .await
        .expect("an answer within 10 s");
    parse_response(&received)
}

#[tokio::test]
async fn a_failed_websocket_upgrade_with_a_body_says_the_connection_closes() {
    let gateway = gateway_before_nothing().await;
    let upgrade = |length: &str| {
        format!(
            "GET /core/websocket HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_HA}\r\n\
             Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{length}\r\n"
        )
    };
    // The head alone: the body is never sent.
    let with_body =
        answer_read_whole(gateway.addr, upgrade("Content-Length: 7\r\n").as_bytes()).await;
    assert_refused(&with_body, 502, "unreachable upstream");
    assert_eq!(with_body.header("connection"), Some("close"));
    let without = answer_read_whole(gateway.addr, upgrade("").as_bytes()).await;
    assert_refused(&without, 502, "unreachable upstream");
    assert_eq!(without.header("connection"), None);
}
