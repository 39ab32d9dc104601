//! Limits and faults: slow clients, oversize heads and bodies, idle
//! keep-alive connections, the connection limit, an upstream that resets
//! mid-body, and SIGTERM with requests in flight.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use supervisor_gateway::config::Config;

use crate::helpers::*;

#[tokio::test]
async fn slow_clients_are_dropped_at_the_header_timeout_while_others_are_served() {
    let gateway = gateway_with_limits("  header_read_timeout_ms: 400\n").await;
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
        stream
            .write_all(b"GET /supervisor/ping HTTP/1.1\r\nHost: supervisor\r\nX-A: ")
            .await
            .expect("partial head");
        slow.push(stream);
    }
    let started = Instant::now();
    let response = gateway
        .send(&RawRequest::new("GET", "/supervisor/ping"))
        .await;
    assert_eq!(response.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "served during the attack"
    );

    for stream in &mut slow {
        let _ = stream.write_all(b"x").await;
    }
    for (index, stream) in slow.iter_mut().enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(3)).await,
            "slow connection {index} still open"
        );
    }
    assert_eq!(gateway.upstream_saw().len(), 1);
}

#[tokio::test]
async fn an_oversize_head_gets_431_and_never_reaches_the_upstream() {
    let gateway = gateway_with_limits("  max_header_bytes: 8192\n  max_headers: 20\n").await;
    let big = RawRequest::new("GET", "/addons/self/info")
        .token(TOK_DEFAULT)
        .header("X-Padding", "p".repeat(16 * 1024));
    assert_eq!(gateway.send(&big).await.status, 431);
    let mut many = RawRequest::new("GET", "/addons/self/info").token(TOK_DEFAULT);
    for index in 0..30 {
        many = many.header("X-Many", format!("{index}"));
    }
    assert_eq!(gateway.send(&many).await.status, 431);
    assert_upstream_silent(&gateway, "oversize head");
}

#[tokio::test]
async fn an_oversize_body_gets_413_before_the_upstream_sees_it() {
    let gateway = gateway_with_limits("  max_body_bytes: 1024\n  max_upload_bytes: 4096\n").await;
    let declared = RawRequest::new("POST", "/addons/self/options")
        .token(TOK_DEFAULT)
        .body(&[b'x'; 2048]);
    assert_refused(&gateway.send(&declared).await, 413, "declared length");
    assert_upstream_silent(&gateway, "declared length");

    let chunk = format!("800\r\n{}\r\n0\r\n\r\n", "y".repeat(2048));
    let chunked = format!(
        "POST /addons/self/options HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_DEFAULT}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunk}"
    );
    assert_refused(
        &send_raw(gateway.addr, chunked.as_bytes()).await,
        413,
        "chunked",
    );
    assert_upstream_silent(&gateway, "chunked");

    let small = RawRequest::new("POST", "/addons/self/options")
        .token(TOK_DEFAULT)
        .body(&[b'z'; 1000]);
    assert_eq!(gateway.send(&small).await.status, 200);
    assert_eq!(gateway.upstream_saw()[0].body_len, 1000);
}

#[tokio::test]
async fn bodies_of_unknown_length_are_held_under_one_cap_for_all_requests() {
    // Each is read whole before it goes upstream (so that an oversized
    // one never does); all of them together hold at most
    // max_held_body_bytes. Without it, every connection could hold 16 MiB.
    // The room is taken a block at a time (4, 8, 16, 32, then 64 KiB):
    // 1,020 KiB is one body's blocks, full.
    let gateway = gateway_with_limits("  max_held_body_bytes: 1044480\n").await;
    let head = format!(
        "POST /addons/self/options HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_DEFAULT}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    // The first takes all the room, and has not ended.
    let mut first = TcpStream::connect(gateway.addr).await.expect("connect");
    first.write_all(head.as_bytes()).await.expect("head");
    let piece = format!("{:x}\r\n{}\r\n", 255 * 1024, "a".repeat(255 * 1024));
    for _ in 0..4 {
        first.write_all(piece.as_bytes()).await.expect("piece");
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // The next one's first byte finds none: refused, and nothing of it
    // goes upstream.
    let second = format!("{head}5\r\nhello\r\n");
    let refused = send_raw(gateway.addr, second.as_bytes()).await;
    assert_refused(&refused, 503, "no room left");
    assert_eq!(refused.header("connection"), Some("close"));
    assert_upstream_silent(&gateway, "no room left");
    // The first ends and goes upstream whole; its room is given back.
    first.write_all(b"0\r\n\r\n").await.expect("end");
    let mut answer = Vec::new();
    let _ = first.read_to_end(&mut answer).await;
    assert_eq!(parse_response(&answer).status, 200);
    assert_eq!(gateway.upstream_saw()[0].body_len, 1020 * 1024);
    let third = send_raw(
        gateway.addr,
        format!("{head}5\r\nhello\r\n0\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(third.status, 200);
    assert_eq!(gateway.upstream_saw()[0].body_len, 5);
}

#[tokio::test]
async fn a_body_of_unknown_length_is_held_up_to_the_cap_and_longer_is_413() {
    // A cap that is no sum of whole blocks: one body alone may fill it to
    // the byte. One byte more could never be held, whatever else is: 413,
    // not 503 (which says to try again), and nothing goes upstream.
    let cap = 16 * 1024 + 1000;
    let gateway = gateway_with_limits(&format!("  max_held_body_bytes: {cap}\n")).await;
    let chunked = |length: usize| {
        format!(
            "POST /addons/self/options HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_DEFAULT}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{length:x}\r\n{}\r\n0\r\n\r\n",
            "b".repeat(length)
        )
    };
    let whole = send_raw(gateway.addr, chunked(cap).as_bytes()).await;
    assert_eq!(whole.status, 200);
    assert_eq!(gateway.upstream_saw()[0].body_len, cap as u64);

    let over = send_raw(gateway.addr, chunked(cap + 1).as_bytes()).await;
    assert_refused(&over, 413, "one byte over the cap");
    assert!(
        String::from_utf8_lossy(&over.body).contains("Content-Length"),
        "the answer says how to send it: {:?}",
        String::from_utf8_lossy(&over.body)
    );
    assert_upstream_silent(&gateway, "one byte over the cap");
}

#[tokio::test]
async fn uploads_stream_past_the_body_limit_up_to_their_own() {
    let gateway = gateway_with_limits("  max_body_bytes: 1024\n  max_upload_bytes: 65536\n").await;
    let upload = RawRequest::new("POST", "/backups/new/upload")
        .token(TOK_BACKUP)
        .header("Content-Type", "application/octet-stream")
        .body(&[7u8; 32 * 1024]);
    assert_eq!(gateway.send(&upload).await.status, 200);
    assert_eq!(gateway.upstream_saw()[0].body_len, 32 * 1024);

    let huge = "POST /backups/new/upload HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: TOKEN\r\nContent-Length: 107374182400\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        .replace("TOKEN", TOK_BACKUP);
    assert_refused(
        &send_raw(gateway.addr, huge.as_bytes()).await,
        413,
        "100 GB upload",
    );
    assert_upstream_silent(&gateway, "100 GB upload");
}

#[tokio::test]
async fn an_unauthenticated_upload_gets_401_without_100_continue() {
    let gateway = TestGateway::start().await;
    let bytes = b"POST /backups/new/upload HTTP/1.1\r\nHost: supervisor\r\nContent-Type: application/octet-stream\r\nContent-Length: 107374182400\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    stream.write_all(bytes).await.expect("head");
    let mut first = vec![0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut first))
        .await
        .expect("an answer")
        .expect("read");
    assert_eq!(&first, b"HTTP/1.1 401");
    assert_upstream_silent(&gateway, "unauthenticated upload");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_and_busy_ones_are_not() {
    let gateway = gateway_with_limits("  keep_alive_timeout_ms: 300\n").await;
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    let request = format!(
        "GET /os/info HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_DEFAULT}\r\n\r\n"
    );
    for _ in 0..3 {
        stream.write_all(request.as_bytes()).await.expect("request");
        let mut buffer = vec![0u8; 64 * 1024];
        let read = stream.read(&mut buffer).await.expect("response");
        assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        closed_within(&mut stream, Duration::from_secs(3)).await,
        "idle connection kept open"
    );
}

/// Asks for a backup download of `size` bytes on a new connection, which
/// the gateway closes after the answer.
async fn download(gateway: &TestGateway, size: u64) -> TcpStream {
    download_saying(gateway, size, "Connection: close\r\n").await
}

/// `download` with `extra` header lines (none: a plain GET, which the
/// gateway reads itself rather than through hyper).
async fn download_saying(gateway: &TestGateway, size: u64, extra: &str) -> TcpStream {
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    let request = format!(
        "GET /backups/a1b2c3d4/download?size={size} HTTP/1.1\r\nHost: supervisor\r\n{extra}X-Supervisor-Token: {TOK_BACKUP}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("request");
    stream
}

/// Reads as fast as it can until the gateway closes, for at most 20 s.
async fn drain(stream: &mut TcpStream) -> (u64, Ending) {
    let within = Duration::from_secs(20);
    read_to_close(stream, 64 * 1024, Duration::ZERO, within).await
}

#[tokio::test]
async fn a_client_that_stops_taking_its_answer_is_closed_at_the_send_timeout() {
    let gateway = gateway_with_limits("  send_timeout_ms: 500\n").await;
    let size = 1u64 << 30;
    // Through hyper (`Connection: close`) and through the gateway's own
    // code (a plain GET) alike.
    for extra in ["Connection: close\r\n", ""] {
        let mut stream = download_saying(&gateway, size, extra).await;
        // The client takes nothing: the socket buffers fill, the gateway's
        // writes wait, and after half a second of that it gives up.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (read, ending) = drain(&mut stream).await;
        // Reset, not closed in order: the kernel would otherwise keep the
        // unsent answer for as long as the client stays connected.
        assert_eq!(ending, Ending::Reset, "{extra:?}: after {read} bytes");
        assert!(
            read < 64 << 20,
            "{extra:?}: {read} bytes of the 1 GiB answer were still sent after the client stopped reading"
        );
    }
}

#[tokio::test]
async fn only_a_send_timeout_resets_a_connection_whose_writes_wait_on_the_client() {
    let gateway = gateway_with_limits("  send_timeout_ms: 60000\n").await;
    let mut stream = download(&gateway, 64 << 20).await;
    // The buffers fill and the gateway's writes wait; then the client
    // half-closes, which hyper takes for a client gone: the connection
    // ends while a write waits, and must still close in order.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stream.shutdown().await.expect("half-close");
    let (read, ending) = drain(&mut stream).await;
    assert_eq!(ending, Ending::Closed, "after {read} bytes");
}

#[tokio::test]
async fn a_slow_client_that_keeps_reading_is_not_cut_off_by_the_send_timeout() {
    let gateway = gateway_with_limits("  send_timeout_ms: 1500\n").await;
    let mut stream = download(&gateway, 1 << 30).await;
    // About 320 KiB/s for six seconds, a fifth of a MiB per send timeout:
    // far longer than the send timeout in all, and the waits for the client
    // must be seen to end at a finer grain than a third of the send buffer
    // (4 MiB here).
    let pace = Duration::from_millis(50);
    let within = Duration::from_secs(6);
    let (read, ending) = read_to_close(&mut stream, 16 * 1024, pace, within).await;
    assert_eq!(ending, Ending::Open, "after {read} bytes");
    assert!(read > 1 << 20, "only {read} bytes in six seconds");
}

#[tokio::test]
async fn past_the_connection_limit_new_connections_wait_for_a_free_slot() {
    let gateway = gateway_with_limits("  max_connections: 2\n").await;
    let first = TcpStream::connect(gateway.addr).await.expect("connect");
    let _second = TcpStream::connect(gateway.addr).await.expect("connect");
    served_only_once_freed(gateway.addr, move || drop(first), "a third connection").await;
}

/// An upstream that answers its first request with a head promising 1000
/// bytes, sends 10 and closes; later requests get a proper answer.
async fn resetting_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = vec![0u8; 8192];
                let _ = stream.read(&mut head).await;
                let answer: &[u8] = if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
                };
                let _ = stream.write_all(answer).await;
            });
        }
    });
    (addr, count)
}

#[tokio::test]
async fn an_upstream_reset_mid_body_aborts_that_response_only_and_is_not_retried() {
    let (upstream, count) = resetting_upstream().await;
    let mock = start_mock().await;
    let gateway = TestGateway::in_front_of(upstream, mock).await;

    let post = RawRequest::new("POST", "/backups/new/full")
        .token(TOK_BACKUP)
        .body(b"{}");
    let bytes = post.to_bytes();
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    stream.write_all(&bytes).await.expect("request");
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received)).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = &received[received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head")
        + 4..];
    assert!(
        body.len() < 1000,
        "the truncated body must not look complete"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1, "a POST is never retried");

    let next = gateway
        .send(&RawRequest::new("GET", "/os/info").token(TOK_DEFAULT))
        .await;
    assert_eq!(next.status, 200, "the gateway keeps serving");
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

/// An upstream that answers every request after `delay`.
async fn slow_upstream(delay: Duration) -> SocketAddr {
    fake_upstream(move |mut stream, _| async move {
        tokio::time::sleep(delay).await;
        let answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 26\r\n\r\n{\"result\":\"ok\",\"data\":{}}\n";
        let _ = stream.write_all(answer).await;
    })
    .await
}

/// An upstream that answers `/supervisor/ping` at once and holds every
/// other request: it never answers (`streaming` false), or answers with the
/// head of an event stream and one event and then says nothing more.
async fn holding_upstream(streaming: bool) -> SocketAddr {
    fake_upstream(move |mut stream, head| async move {
        let answer: &[u8] = if head.starts_with(b"GET /supervisor/ping ") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
        } else if streaming {
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n"
        } else {
            b""
        };
        let _ = stream.write_all(answer).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .await
}

/// A gateway in front of `upstream` that takes one connection at a time
/// and waits up to a minute for an answer head.
async fn one_connection_gateway(upstream: SocketAddr) -> TestGateway {
    let text = config_with_limits(upstream, "  max_connections: 1\n").replace(
        "upstream_response_timeout_ms: 2000",
        "upstream_response_timeout_ms: 60000",
    );
    let config = Config::from_yaml(&text, "test config").expect("config");
    TestGateway::with_config(config, start_mock().await).await
}

#[tokio::test]
async fn a_client_that_hangs_up_behind_a_pipelined_byte_gives_its_place_back() {
    // hyper notices a client's end of the connection only while it holds
    // none of its bytes unread; one byte of a next request hides it. The
    // gateway looks at the socket itself while a request is in flight.
    let request = RawRequest::new("GET", "/os/info").token(TOK_DEFAULT);
    for (case, upstream, streaming) in [
        (
            "waiting for the answer head",
            holding_upstream(false).await,
            false,
        ),
        (
            "while a silent event stream runs",
            holding_upstream(true).await,
            true,
        ),
    ] {
        let gateway = one_connection_gateway(upstream).await;
        let mut client = TcpStream::connect(gateway.addr).await.expect("connect");
        let mut bytes = request.to_bytes();
        bytes.push(b'G');
        client.write_all(&bytes).await.expect("request");
        if streaming {
            let mut first = [0u8; 64];
            let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut first)).await;
            assert!(
                matches!(read, Ok(Ok(n)) if n > 0),
                "{case}: the stream began"
            );
        }
        drop(client);
        let status = status_within(spawn_ping(gateway.addr), Duration::from_secs(5)).await;
        assert_eq!(status, Some(200), "{case}: the place was not given back");
    }
}

#[tokio::test]
async fn a_client_that_stays_is_answered_past_several_hangup_checks() {
    let upstream = slow_upstream(Duration::from_millis(3500)).await;
    let gateway = one_connection_gateway(upstream).await;
    let mut client = TcpStream::connect(gateway.addr).await.expect("connect");
    let mut bytes = RawRequest::new("GET", "/os/info")
        .token(TOK_DEFAULT)
        .to_bytes();
    // The start of a next request, still to come.
    bytes.extend_from_slice(b"GET /supervisor/ping HTTP/1.1\r\n");
    client.write_all(&bytes).await.expect("request");
    let mut answer = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), client.read(&mut answer)).await;
    let Ok(Ok(n)) = read else {
        panic!("no answer: {read:?}");
    };
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

#[tokio::test]
async fn sigterm_lets_requests_in_flight_finish_then_exits_0() {
    let upstream = slow_upstream(Duration::from_millis(800)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text =
        test_config_yaml(upstream).replace("shutdown_grace_ms: 1000", "shutdown_grace_ms: 5000");
    let path = write(dir.path(), "gateway.yaml", &text);
    let served = spawn_serve(&path, "info");
    let addr = served.addr;

    let in_flight = spawn_send(
        addr,
        RawRequest::new("GET", "/os/info")
            .token(TOK_DEFAULT)
            .to_bytes(),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::task::spawn_blocking(move || served.stop());
    let response = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("finishes")
        .expect("task");
    assert_eq!(response.status, 200, "the request in flight completes");
    let (code, _) = stopping.await.expect("stop");
    assert_eq!(code, Some(0));
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "nothing listens after shutdown"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_stopping_gateway_says_how_many_audit_lines_a_stalled_log_did_not_take() {
    use std::os::unix::fs::OpenOptionsExt;
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("audit.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.expect("mkfifo").success());
    // A collector that opened the pipe and reads nothing.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("reader");
    let text = format!(
        "{}audit_log: {}\n",
        test_config_yaml(mock.addr()),
        fifo.display()
    );
    let served = spawn_serve(&write(dir.path(), "gateway.yaml", &text), "info");
    // More decisions than the pipe holds (64 KiB, about 250 lines).
    for _ in 0..600 {
        let request = RawRequest::new("GET", "/os/info").token(TOK_DEFAULT);
        assert_eq!(served.send(&request).await.status, 200);
    }
    let started = Instant::now();
    let (code, log) = tokio::task::spawn_blocking(move || served.stop())
        .await
        .expect("stop");
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("the audit log did not take its last lines in time"),
        "{log}"
    );
    // Waited for, but not for good.
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_sigterm_as_soon_as_the_gateway_listens_shuts_it_down_gracefully() {
    // (spawn_serve returns once "gateway listening" is logged.)
    let (served, _mock, _dir) = serve_with_mock("", "info").await;
    let (code, log) = tokio::task::spawn_blocking(move || served.stop())
        .await
        .expect("stop");
    assert_eq!(
        code,
        Some(0),
        "ended by the signal's default action, not shut down:\n{log}"
    );
    assert!(log.contains("shutting down"), "{log}");
}

#[test]
fn signals_during_start_up_are_handled_not_fatal() {
    // Loading the config and compiling the tables takes a while (over
    // 100 ms in a debug build); a signal then took its default action and
    // ended the process (143 for SIGTERM, 129 for SIGHUP).
    let dir = tempfile::tempdir().expect("temp dir");
    let text = test_config_yaml("127.0.0.1:9".parse().expect("address"));
    let path = write(dir.path(), "gateway.yaml", &text);
    for signal in ["TERM", "HUP"] {
        let mut child = std::process::Command::new(BIN)
            .args(["serve", "--config", path.to_str().expect("utf-8 path")])
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn serve");
        std::thread::sleep(Duration::from_millis(50));
        let pid = child.id().to_string();
        let kill = |name: &str| {
            std::process::Command::new("kill")
                .args([&format!("-{name}"), &pid])
                .status()
                .expect("kill")
        };
        kill(signal);
        if signal == "HUP" {
            // Taken as a reload: the gateway is still there to be stopped.
            std::thread::sleep(Duration::from_millis(500));
            assert!(matches!(child.try_wait(), Ok(None)), "SIGHUP ended serve");
            kill("TERM");
        }
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(0), "SIG{signal}: {status:?}");
    }
}

#[tokio::test]
async fn sigterm_exits_after_the_grace_time_when_a_request_hangs() {
    let upstream = slow_upstream(Duration::from_secs(60)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = test_config_yaml(upstream)
        .replace("shutdown_grace_ms: 1000", "shutdown_grace_ms: 500")
        .replace(
            "upstream_response_timeout_ms: 2000",
            "upstream_response_timeout_ms: 60000",
        );
    let path = write(dir.path(), "gateway.yaml", &text);
    let served = spawn_serve(&path, "info");
    let hanging = spawn_send(
        served.addr,
        RawRequest::new("GET", "/os/info")
            .token(TOK_DEFAULT)
            .to_bytes(),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let (code, log) = tokio::task::spawn_blocking(move || served.stop())
        .await
        .expect("stop");
    assert_eq!(code, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "exit after the grace time"
    );
    assert!(
        log.contains("still open after the shutdown grace time"),
        "{log}"
    );
    hanging.abort();
}

/// Uploads `pieces` pieces of 64 KiB through a gateway whose response
/// timeout is 300 ms, pausing `pause` before each; returns the answer, the
/// length sent and the length the upstream saw.
async fn paced_upload(pieces: usize, pause: Duration) -> (Vec<u8>, u64, u64) {
    let mock = start_mock().await;
    let text = test_config_yaml(mock.addr()).replace(
        "upstream_response_timeout_ms: 2000",
        "upstream_response_timeout_ms: 300",
    );
    let config = Config::from_yaml(&text, "test config").expect("config");
    let gateway = TestGateway::with_config(config, mock).await;

    let chunk = vec![b'u'; 64 * 1024];
    let total = chunk.len() * pieces;
    let head = format!(
        "POST /backups/new/upload HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_BACKUP}\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
    );
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("head");
    for _ in 0..pieces {
        tokio::time::sleep(pause).await;
        stream.write_all(&chunk).await.expect("chunk");
    }
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received)).await;
    let seen = gateway
        .upstream_saw()
        .first()
        .map_or(0, |seen| seen.body_len);
    (received, total as u64, seen)
}

#[tokio::test]
async fn an_upload_slower_than_the_response_timeout_still_passes() {
    let (received, sent, seen) = paced_upload(8, Duration::from_millis(150)).await;
    let text = String::from_utf8_lossy(&received);
    assert!(received.starts_with(b"HTTP/1.1 200"), "{text}");
    assert_eq!(seen, sent);
}

#[tokio::test]
async fn an_upstream_that_switches_protocols_unasked_gives_502() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = vec![0u8; 8192];
            let _ = stream.read(&mut head).await;
            let _ = stream.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: evil\r\n\r\n").await;
        }
    });
    let mock = start_mock().await;
    let gateway = TestGateway::in_front_of(upstream, mock).await;
    let response = gateway
        .send(&RawRequest::new("GET", "/os/info").token(TOK_DEFAULT))
        .await;
    assert_refused(&response, 502, "unasked 101");
}

#[tokio::test]
async fn a_refusal_with_an_unread_body_says_the_connection_closes() {
    let gateway = TestGateway::start().await;
    let refused = RawRequest::new("POST", "/addons/core_ssh/security")
        .token(TOK_DEFAULT)
        .header("Connection", "keep-alive")
        .body(br#"{"protected":false}"#);
    let response = gateway.send(&refused).await;
    assert_refused(&response, 403, "refused with a body");
    assert_eq!(response.header("connection"), Some("close"));

    let bodiless = RawRequest::new("GET", "/backups")
        .token(TOK_DEFAULT)
        .header("Connection", "keep-alive");
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    let twice = [
        bodiless.to_bytes(),
        RawRequest::new("GET", "/os/info")
            .token(TOK_DEFAULT)
            .to_bytes(),
    ]
    .concat();
    stream.write_all(&twice).await.expect("two requests");
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received)).await;
    let text = String::from_utf8_lossy(&received);
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        2,
        "a bodiless refusal keeps the connection: {text}"
    );
}

#[tokio::test]
async fn a_client_body_that_breaks_off_is_the_clients_fault_not_the_upstreams() {
    let gateway = TestGateway::start().await;
    let short = format!(
        "POST /backups/new/upload HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_BACKUP}\r\nContent-Length: 1000\r\n\r\n0123456789"
    );
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    stream.write_all(short.as_bytes()).await.expect("head");
    stream.shutdown().await.expect("half-close");
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received)).await;
    let text = String::from_utf8_lossy(&received);
    assert!(!text.contains(" 502 "), "{text}");

    let malformed = format!(
        "POST /addons/self/options HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_DEFAULT}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nabcde\r\nzz\r\n"
    );
    let response = send_raw(gateway.addr, malformed.as_bytes()).await;
    assert_refused(&response, 400, "malformed chunk");
}

#[tokio::test]
async fn a_client_that_stops_sending_its_body_gets_408() {
    let gateway = gateway_with_limits("  body_idle_timeout_ms: 300\n").await;
    let stalled = format!(
        "POST /addons/self/options HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_DEFAULT}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n"
    );
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    stream
        .write_all(stalled.as_bytes())
        .await
        .expect("partial body");
    let mut received = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut received))
        .await
        .expect("answered within 5 s")
        .expect("read");
    assert!(
        received[..read].starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&received[..read])
    );
    assert_upstream_silent(&gateway, "stalled body");
}

#[tokio::test]
async fn head_answers_keep_the_upstreams_content_length() {
    let gateway = TestGateway::start().await;
    let get = gateway
        .send(&RawRequest::new("GET", "/os/info").token(TOK_DEFAULT))
        .await;
    let head = gateway
        .send(&RawRequest::new("HEAD", "/os/info").token(TOK_DEFAULT))
        .await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(get.body.len().to_string().as_str())
    );
}

#[tokio::test]
async fn a_head_just_over_the_limit_gets_431() {
    let gateway = gateway_with_limits("  max_header_bytes: 8192\n").await;
    let over = RawRequest::new("GET", "/addons/self/info")
        .token(TOK_DEFAULT)
        .header("X-Padding", "p".repeat(8300));
    assert_eq!(gateway.send(&over).await.status, 431);
    let under = RawRequest::new("GET", "/addons/self/info")
        .token(TOK_DEFAULT)
        .header("X-Padding", "p".repeat(7000));
    assert_eq!(gateway.send(&under).await.status, 200);
    assert_eq!(gateway.upstream_saw().len(), 1);
}

#[tokio::test]
async fn a_head_padded_with_whitespace_past_the_limit_gets_431() {
    // The padding is not part of the header's value, so only a count of
    // the head's bytes as sent catches it: the limit holds although
    // hyper's read buffer is far larger than the head limit.
    let gateway = gateway_with_limits("  max_header_bytes: 8192\n").await;
    let padded = RawRequest::new("GET", "/addons/self/info")
        .token(TOK_DEFAULT)
        .header("X-Padding", format!("{}p", " ".repeat(20_000)));
    assert_eq!(gateway.send(&padded).await.status, 431);
    assert!(gateway.upstream_saw().is_empty());
}

/// An upstream that reads a request's head, sends `answer` (perhaps
/// nothing), then neither reads nor sends anything more; it keeps its
/// connections open for the test's length.
async fn upstream_that_stops_reading(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = vec![0u8; 1024];
            let _ = stream.read(&mut head).await;
            let _ = stream.write_all(answer).await;
            held.push(stream);
        }
    });
    addr
}

/// Sends a 64 MiB upload through a gateway with a 500 ms response timeout
/// in front of `upstream`; returns what came back and whether the exchange
/// ended within 5 s.
async fn upload_to(upstream: SocketAddr) -> (String, bool) {
    let mock = start_mock().await;
    let text = test_config_yaml(upstream).replace(
        "upstream_response_timeout_ms: 2000",
        "upstream_response_timeout_ms: 500",
    );
    let config = Config::from_yaml(&text, "test config").expect("config");
    let gateway = TestGateway::with_config(config, mock).await;

    let total = 64 * 1024 * 1024;
    let head = format!(
        "POST /backups/new/upload HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_BACKUP}\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
    );
    let stream = TcpStream::connect(gateway.addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let sending = tokio::spawn(async move {
        let _ = writer.write_all(head.as_bytes()).await;
        let chunk = vec![b'u'; 64 * 1024];
        for _ in 0..1024 {
            if writer.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut received = Vec::new();
    let ended =
        tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut received)).await;
    sending.abort();
    (
        String::from_utf8_lossy(&received).into_owned(),
        ended.is_ok(),
    )
}

#[tokio::test]
async fn an_upstream_that_stops_reading_an_upload_gets_504_at_the_response_timeout() {
    let upstream = upstream_that_stops_reading(b"").await;
    let (text, ended) = upload_to(upstream).await;
    assert!(ended, "the exchange still hangs: {text}");
    assert!(text.starts_with("HTTP/1.1 504"), "{text}");
}

#[tokio::test]
async fn an_upstream_that_answers_early_then_stops_reading_is_cut_off() {
    let answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n";
    let upstream = upstream_that_stops_reading(answer).await;
    let (text, ended) = upload_to(upstream).await;
    assert!(ended, "the exchange still hangs: {text}");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("first"), "{text}");
    assert!(
        !text.contains("\r\n0\r\n\r\n"),
        "the cut-off body looks complete: {text}"
    );
}

#[tokio::test]
async fn a_client_pausing_longer_than_the_response_timeout_mid_upload_is_not_cut_off() {
    // The client's own pauses: the upstream is waiting for it, not stuck.
    let (received, sent, seen) = paced_upload(3, Duration::from_millis(700)).await;
    let text = String::from_utf8_lossy(&received);
    assert!(received.starts_with(b"HTTP/1.1 200"), "{text}");
    assert_eq!(seen, sent);
}

#[tokio::test]
async fn an_upload_the_upstream_answers_early_but_goes_on_reading_arrives_whole() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream = listener.local_addr().expect("address");
    let received = Arc::new(AtomicUsize::new(0));
    let counted = received.clone();
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let mut seen = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let end = loop {
            let Ok(read) = stream.read(&mut chunk).await else {
                return;
            };
            if read == 0 {
                return;
            }
            seen.extend_from_slice(&chunk[..read]);
            if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
        };
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await;
        // Answered; now it reads the body, slowly at first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut total = seen.len() - end;
        while let Ok(read) = stream.read(&mut chunk).await {
            if read == 0 {
                break;
            }
            total += read;
            counted.store(total, Ordering::SeqCst);
        }
    });
    let mock = start_mock().await;
    let gateway = TestGateway::in_front_of(upstream, mock).await;

    let total = 8 * 1024 * 1024;
    let head = format!(
        "POST /backups/new/upload HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_BACKUP}\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
    );
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("head");
    stream
        .write_all(&vec![b'u'; total])
        .await
        .expect("the whole body goes out");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while received.load(Ordering::SeqCst) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        received.load(Ordering::SeqCst),
        total,
        "the upload was cut short"
    );
}

/// An upstream on loopback that runs `serve` on each connection it
/// accepts; counts the connections.
async fn counting_upstream<F, Fut>(serve: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream));
        }
    });
    (addr, accepted)
}

/// Reads from `stream` into `seen` until it holds a whole request head;
/// the head's length and its `Content-Length` (0 if none), or `None` if
/// the connection ended first.
async fn request_head(stream: &mut TcpStream, seen: &mut Vec<u8>) -> Option<(usize, usize)> {
    let mut chunk = vec![0u8; 16 * 1024];
    let end = loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => seen.extend_from_slice(&chunk[..read]),
        }
    };
    let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    Some((end, length))
}

/// An upstream that answers every request as soon as its head has come,
/// then reads its body (after a pause, so that the answer is back before
/// the body has gone out) but for the last `unread` bytes, and keeps the
/// connection open; counts the connections it accepted.
async fn upstream_that_leaves_bodies_unread(unread: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    counting_upstream(move |mut stream| async move {
        let mut seen = Vec::new();
        let Some((end, length)) = request_head(&mut stream, &mut seen).await else {
            return;
        };
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut chunk = vec![0u8; 64 * 1024];
        let mut read_so_far = seen.len() - end;
        let wanted = length.saturating_sub(unread);
        while read_so_far < wanted {
            let room = chunk.len().min(wanted - read_so_far);
            match stream.read(&mut chunk[..room]).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read_so_far += read,
            }
        }
        // Holds the connection, the rest unread, until the test ends.
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .await
}

#[tokio::test]
async fn a_connection_answered_before_its_upload_went_out_is_never_reused() {
    let (upstream, accepted) = upstream_that_leaves_bodies_unread(64 * 1024).await;
    let mock = start_mock().await;
    let gateway = TestGateway::in_front_of(upstream, mock).await;

    // The answer comes while the upload is still going out; the last
    // 64 KiB of it then sit unread in the sockets' buffers.
    let total = 4 << 20;
    let head = format!(
        "POST /backups/new/upload HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_BACKUP}\r\nContent-Length: {total}\r\n\r\n"
    );
    let stream = TcpStream::connect(gateway.addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let sending = tokio::spawn(async move {
        let _ = writer.write_all(head.as_bytes()).await;
        let _ = writer.write_all(&vec![b'u'; total]).await;
        writer
    });
    let mut received = Vec::new();
    let mut chunk = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !received.ends_with(b"early") && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(100), reader.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(read)) => received.extend_from_slice(&chunk[..read]),
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&received).into_owned();
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("early"),
        "{text}"
    );
    // The upload goes out in full, in the background.
    let writer = tokio::time::timeout(Duration::from_secs(5), sending)
        .await
        .expect("the whole upload is taken")
        .expect("writer");

    // Another add-on's request: on a new connection, answered at once, not
    // queued behind the bytes the first connection never read.
    let started = Instant::now();
    let options = RawRequest::new("POST", "/addons/self/options")
        .token(TOK_MANAGER)
        .body(b"{}")
        .to_bytes();
    let answer = send_raw(gateway.addr, &options).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    drop(writer);
}

/// An upstream that answers every request with a head promising 100 bytes
/// and sends 10 of them, then nothing more, keeping the connection.
async fn upstream_that_stalls_mid_body() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = vec![0u8; 4096];
            let _ = stream.read(&mut head).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                .await;
            held.push(stream);
        }
    });
    addr
}

/// What a client reading `/os/info` through a gateway with `extra_limits`
/// in front of a stalling upstream got within `within`, and whether the
/// gateway ended the answer by then.
async fn read_stalled_answer(extra_limits: &str, within: Duration) -> (String, bool) {
    let upstream = upstream_that_stalls_mid_body().await;
    let mock = start_mock().await;
    let text = test_config_yaml(upstream).replace(
        "  shutdown_grace_ms: 1000\n",
        &format!("  shutdown_grace_ms: 1000\n{extra_limits}"),
    );
    let config = Config::from_yaml(&text, "test config").expect("config");
    let gateway = TestGateway::with_config(config, mock).await;
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    let request = RawRequest::new("GET", "/os/info")
        .token(TOK_MANAGER)
        .to_bytes();
    stream.write_all(&request).await.expect("request");
    let mut received = Vec::new();
    let ended = tokio::time::timeout(within, stream.read_to_end(&mut received)).await;
    (
        String::from_utf8_lossy(&received).into_owned(),
        ended.is_ok(),
    )
}

#[tokio::test]
async fn an_upstream_that_stalls_mid_answer_is_cut_off_at_the_body_idle_timeout() {
    let started = Instant::now();
    let (text, ended) = read_stalled_answer(
        "  upstream_body_idle_timeout_ms: 300\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(ended, "still waiting: {text}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.ends_with("0123456789"),
        "cut off after what came: {text}"
    );
}

#[tokio::test]
async fn without_a_body_idle_timeout_a_stalled_answer_waits_on_the_upstream() {
    // The default: event streams and log follows may be silent for long.
    let (text, ended) = read_stalled_answer("", Duration::from_millis(1500)).await;
    assert!(!ended, "ended: {text}");
    assert!(text.ends_with("0123456789"), "{text}");
}

#[test]
fn an_upstream_that_breaks_off_an_answer_is_logged() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // 10 of 100 bytes, then the upstream closes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut stream in listener.incoming().take(4).flatten() {
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
        }
    });
    let dir = tempfile::tempdir().expect("dir");
    let config = write(dir.path(), "gateway.yaml", &test_config_yaml(upstream));
    let served = spawn_serve(&config, "info");
    runtime.block_on(async {
        let request = RawRequest::new("GET", "/os/info")
            .token(TOK_MANAGER)
            .to_bytes();
        let mut stream = TcpStream::connect(served.addr).await.expect("connect");
        stream.write_all(&request).await.expect("request");
        // The client's answer is cut off: at most the head and the ten
        // bytes (nothing at all when they were still in the gateway's
        // buffer as the body failed).
        let mut received = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received));
        assert!(read.await.is_ok(), "the connection still waits");
        let text = String::from_utf8_lossy(&received);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        assert!(body.len() <= 10, "{text}");
    });
    assert!(
        served.wait_for_log("broke off", 1, Duration::from_secs(5)),
        "{}",
        served.log()
    );
    let (code, _) = served.stop();
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn a_status_past_599_gives_502_and_an_http_1_0_answer_goes_out_as_http_1_1() {
    let mock = start_mock().await;
    let odd = upstream_that_stops_reading(b"HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n").await;
    let gateway = TestGateway::in_front_of(odd, mock).await;
    let response = gateway
        .send(&RawRequest::new("GET", "/os/info").token(TOK_DEFAULT))
        .await;
    assert_refused(&response, 502, "status 999");

    let mock = start_mock().await;
    let old = upstream_that_stops_reading(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let gateway = TestGateway::in_front_of(old, mock).await;
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    let request = RawRequest::new("GET", "/os/info")
        .token(TOK_DEFAULT)
        .header("Connection", "close")
        .to_bytes();
    stream.write_all(&request).await.expect("request");
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received)).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nok"), "{text}");
}

/// An upstream that answers every request on a connection, in turn, with
/// `answer` (after reading the request's head and its `Content-Length`
/// body), keeping the connection for the next; counts connections.
async fn upstream_answering_each_request_with(
    answer: &'static [u8],
) -> (SocketAddr, Arc<AtomicUsize>) {
    counting_upstream(move |mut stream| async move {
        let mut seen = Vec::new();
        let mut chunk = vec![0u8; 4096];
        while let Some((end, length)) = request_head(&mut stream, &mut seen).await {
            while seen.len() < end + length {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => seen.extend_from_slice(&chunk[..read]),
                }
            }
            seen.drain(..end + length);
            if stream.write_all(answer).await.is_err() {
                return;
            }
        }
    })
    .await
}

#[tokio::test]
async fn after_an_http_1_0_answer_the_connection_is_not_reused_with_a_body_either() {
    for (answer, reused, name) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"[..],
            true,
            "plain",
        ),
        (
            &b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello"[..],
            false,
            "HTTP/1.0 keep-alive",
        ),
    ] {
        let (upstream, accepted) = upstream_answering_each_request_with(answer).await;
        let mock = start_mock().await;
        let gateway = TestGateway::in_front_of(upstream, mock).await;
        for _ in 0..2 {
            let options = RawRequest::new("POST", "/addons/self/options")
                .token(TOK_MANAGER)
                .body(b"{}");
            let response = gateway.send(&options).await;
            assert_eq!(
                (response.status, response.body.as_slice()),
                (200, &b"hello"[..]),
                "{name}"
            );
        }
        let connections = if reused { 1 } else { 2 };
        assert_eq!(accepted.load(Ordering::SeqCst), connections, "{name}");
    }
}

#[tokio::test]
async fn an_answer_whose_body_breaks_at_once_still_sends_its_head_before_the_cut() {
    // A chunked answer whose first chunk-size line is not one: the body
    // fails at its first read, before anything went to the client.
    let upstream = fake_upstream(|mut stream, _| async move {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        let _ = stream.write_all(answer).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    })
    .await;
    let gateway = TestGateway::in_front_of(upstream, start_mock().await).await;
    // A plain GET (the gateway's own path) as the decision log has it: a
    // 200 whose body the client sees cut off, not a connection closed
    // without a word.
    let request = RawRequest::new("GET", "/os/info").token(TOK_MANAGER);
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    stream
        .write_all(&request.to_bytes())
        .await
        .expect("request");
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received));
    assert!(read.await.is_ok(), "the connection still waits");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole head");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert_eq!(body, "", "no chunk, and no last chunk: the body is cut off");
}
