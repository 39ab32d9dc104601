use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// What the test upstream does with each request on a connection.
#[derive(Clone, Copy, PartialEq)]
enum Manner {
    /// Answers every request and keeps the connection open.
    KeepAlive,
    /// Answers, then closes the connection without saying so.
    CloseAfterAnswer,
    /// Answers the first request on a connection; reads the second and
    /// hangs up without an answer.
    HangUpOnSecond,
}

/// A raw HTTP/1.1 upstream on loopback that counts its connections and
/// keeps every request head it read.
struct TestUpstream {
    port: u16,
    accepted: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl TestUpstream {
    async fn start(manner: Manner, body: Vec<u8>) -> TestUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let body = Arc::new(body);
        let (counter, seen) = (accepted.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let (seen, body) = (seen.clone(), body.clone());
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    for number in 1.. {
                        let Some(head) = read_head(&mut stream, &mut pending).await else {
                            return;
                        };
                        seen.lock().expect("heads").push(head);
                        if manner == Manner::HangUpOnSecond && number == 2 {
                            return;
                        }
                        let answer =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                        if stream.write_all(answer.as_bytes()).await.is_err()
                            || stream.write_all(&body).await.is_err()
                        {
                            return;
                        }
                        if manner == Manner::CloseAfterAnswer {
                            return;
                        }
                    }
                });
            }
        });
        TestUpstream {
            port,
            accepted,
            heads,
        }
    }

    fn upstream(&self, pool_size: usize) -> Upstream {
        let authority = format!("127.0.0.1:{}", self.port)
            .parse()
            .expect("authority");
        Upstream::new(&authority, Duration::from_secs(2), pool_size, 1)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.heads.lock().expect("heads").len()
    }
}

/// Reads one request head (requests here have no body).
async fn read_head(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = pending.windows(4).position(|window| window == b"\r\n\r\n") {
            let head: Vec<u8> = pending.drain(..end + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => pending.extend_from_slice(&chunk[..read]),
        }
    }
}

/// A request that may not be sent twice.
fn no_copy() -> Option<Request<Body>> {
    None
}

fn get(path: &str) -> Request<Body> {
    Request::builder()
        .uri(path)
        .header(http::header::HOST, "supervisor")
        .body(Body::empty())
        .expect("request")
}

/// A bodiless POST for `path`, for hyper's client.
fn post(path: &str) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(path)
        .header(http::header::HOST, "supervisor")
        .body(Body::empty())
        .expect("request")
}

/// The head of a bodiless GET for `path`, as the gateway's own client
/// sends it.
fn get_head(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: supervisor\r\n\r\n").into_bytes()
}

/// A GET for `path`, sent by the gateway's own client and answered.
async fn sent_get(upstream: &Upstream, path: &str) -> Response<Body> {
    upstream
        .send_bodiless(&get_head(path), false, None)
        .await
        .expect("sent")
}

async fn body_of(response: Response<Body>) -> Vec<u8> {
    let collected = response.into_body().collect().await.expect("body");
    collected.to_bytes().to_vec()
}

#[tokio::test]
async fn requests_in_turn_reuse_one_connection() {
    let test = TestUpstream::start(Manner::KeepAlive, b"pong".to_vec()).await;
    let upstream = test.upstream(4);
    for _ in 0..5 {
        let response = sent_get(&upstream, "/supervisor/ping").await;
        assert_eq!(body_of(response).await, b"pong");
    }
    assert_eq!(test.accepted(), 1);
    assert_eq!(test.requests(), 5);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    let test = TestUpstream::start(Manner::KeepAlive, vec![b'x'; 256 * 1024]).await;
    let upstream = test.upstream(4);
    let unread = sent_get(&upstream, "/backups/a/download").await;
    drop(unread);
    let response = sent_get(&upstream, "/backups/a/download").await;
    assert_eq!(body_of(response).await.len(), 256 * 1024);
    assert_eq!(test.accepted(), 2, "the half-read connection was reused");
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_not_used_again() {
    let test = TestUpstream::start(Manner::CloseAfterAnswer, b"ok".to_vec()).await;
    let upstream = test.upstream(4);
    for _ in 0..3 {
        let response = sent_get(&upstream, "/os/info").await;
        assert_eq!(body_of(response).await, b"ok");
        // Give the connection's task time to see the upstream hang up.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(test.accepted(), 3);
    assert_eq!(test.requests(), 3);
}

#[tokio::test]
async fn a_request_the_upstream_has_read_is_never_sent_again() {
    let test = TestUpstream::start(Manner::HangUpOnSecond, b"ok".to_vec()).await;
    let upstream = test.upstream(4);
    let first = sent_get(&upstream, "/os/info").await;
    assert_eq!(body_of(first).await, b"ok");
    assert!(matches!(
        upstream
            .send(post("/backups/new/full"), None, &no_copy)
            .await,
        Err(SendError::Failed)
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(test.requests(), 2, "the POST was repeated");
    assert_eq!(test.accepted(), 1);
}

#[tokio::test]
async fn the_pool_keeps_no_more_idle_connections_than_its_size() {
    let test = TestUpstream::start(Manner::KeepAlive, b"ok".to_vec()).await;
    let upstream = test.upstream(2);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(sent_get(&upstream, "/os/info").await);
    }
    for response in held {
        assert_eq!(body_of(response).await, b"ok");
    }
    assert_eq!(test.accepted(), 4);
    assert_eq!(upstream.pools.per_worker[0].lock().len(), 2);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let test = TestUpstream::start(Manner::KeepAlive, b"ok".to_vec()).await;
    let mut upstream = test.upstream(4);
    Arc::get_mut(&mut upstream.pools)
        .expect("unshared")
        .idle_timeout = Duration::from_millis(60);
    let response = sent_get(&upstream, "/os/info").await;
    assert_eq!(body_of(response).await, b"ok");
    assert_eq!(upstream.pools.per_worker[0].lock().len(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        upstream.pools.per_worker[0].lock().len(),
        0,
        "the reaper left an expired connection"
    );
    let response = sent_get(&upstream, "/os/info").await;
    assert_eq!(body_of(response).await, b"ok");
    assert_eq!(test.accepted(), 2);
}

#[tokio::test]
async fn nothing_listening_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    let authority = format!("127.0.0.1:{port}").parse().expect("authority");
    let upstream = Upstream::new(&authority, Duration::from_secs(2), 4, 1);
    assert!(matches!(
        upstream.send(get("/os/info"), None, &no_copy).await,
        Err(SendError::Unreachable)
    ));
}

#[test]
fn bracketed_ipv6_hosts_are_connected_to_without_brackets() {
    let authority = "[::1]:8123".parse().expect("authority");
    let upstream = Upstream::new(&authority, Duration::from_secs(2), 4, 2);
    assert_eq!((upstream.host.as_str(), upstream.port), ("::1", 8123));
    let plain = "supervisor".parse().expect("authority");
    let upstream = Upstream::new(&plain, Duration::from_secs(2), 4, 2);
    assert_eq!((upstream.host.as_str(), upstream.port), ("supervisor", 80));
    assert_eq!(shares(&upstream), [2, 2]);
}

fn shares(upstream: &Upstream) -> Vec<usize> {
    upstream
        .pools
        .per_worker
        .iter()
        .map(|pool| pool.max_idle)
        .collect()
}

#[test]
fn the_pool_size_is_shared_out_exactly_between_workers() {
    let authority = "127.0.0.1:8123".parse().expect("authority");
    let upstream = |size, workers| Upstream::new(&authority, Duration::from_secs(2), size, workers);
    assert_eq!(shares(&upstream(5, 2)), [3, 2]);
    assert_eq!(shares(&upstream(1, 2)), [1, 0]);
    assert_eq!(shares(&upstream(0, 3)), [0, 0, 0]);
    assert_eq!(shares(&upstream(64, 1)), [64]);
}

#[tokio::test]
async fn a_connection_whose_request_body_is_still_going_out_is_not_reused() {
    let test = TestUpstream::start(Manner::KeepAlive, b"early".to_vec()).await;
    let upstream = test.upstream(4);
    // The upstream answered (early) while the request body is unfinished.
    let unfinished = Arc::new(BodyWatch::default());
    let response = upstream
        .send(
            get("/supervisor/options"),
            Some((unfinished, Duration::from_millis(100))),
            &no_copy,
        )
        .await
        .expect("sent");
    assert_eq!(body_of(response).await, b"early");
    assert_eq!(upstream.pools.per_worker[0].lock().len(), 0);
    let response = sent_get(&upstream, "/os/info").await;
    assert_eq!(body_of(response).await, b"early");
    assert_eq!(
        test.accepted(),
        2,
        "a busy connection went back to the pool"
    );
}

/// Two exchanges with an upstream that hangs up on its kept-alive
/// connection just as the second request arrives on it (it reads the
/// request and closes without an answer, as an upstream dropping an idle
/// connection at that moment does); the second is sent with `again`.
/// Returns the second's body (or the error) and how many connections and
/// requests the upstream took.
///
/// The second goes through hyper's client with `again`, or, without it,
/// through the gateway's own as a bodiless GET (which is always repeatable).
fn hang_up_race(
    again: Option<&(dyn Fn() -> Option<Request<Body>> + Sync)>,
) -> (Result<Vec<u8>, SendError>, usize, usize) {
    // The upstream runs on its own thread, so that it can hang up while the
    // gateway's runtime is blocked and has not yet seen the connection close.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(false).expect("blocking");
    let port = listener.local_addr().expect("address").port();
    let (accepted, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (connections, seen) = (accepted.clone(), requests.clone());
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        for number in 0..2 {
            if number == 1 {
                // A second connection comes only if the request is sent again.
                listener.set_nonblocking(true).expect("non-blocking");
                std::thread::sleep(Duration::from_millis(500));
            }
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            stream.set_nonblocking(false).expect("blocking");
            connections.fetch_add(1, Ordering::SeqCst);
            let read_head = |stream: &mut std::net::TcpStream| {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                seen.fetch_add(1, Ordering::SeqCst);
            };
            read_head(&mut stream);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            if number == 0 {
                // Takes the next request and hangs up without an answer.
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("timeout");
                read_head(&mut stream);
                drop(stream);
            }
        }
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let second = runtime.block_on(async {
        let authority = format!("127.0.0.1:{port}").parse().expect("authority");
        let upstream = Upstream::new(&authority, Duration::from_secs(2), 4, 1);
        let first = sent_get(&upstream, "/os/info").await;
        assert_eq!(body_of(first).await, b"ok");
        let second = match again {
            Some(again) => upstream.send(get("/os/info"), None, again).await,
            None => {
                upstream
                    .send_bodiless(&get_head("/os/info"), false, None)
                    .await
            }
        };
        match second {
            Ok(response) => Ok(body_of(response).await),
            Err(error) => Err(error),
        }
    });
    server.join().expect("upstream thread");
    (
        second,
        accepted.load(Ordering::SeqCst),
        requests.load(Ordering::SeqCst),
    )
}

#[test]
fn a_safe_request_the_upstream_hung_up_on_goes_out_again_on_a_new_connection() {
    let copy = || Some(get("/os/info"));
    let (second, connections, requests) = hang_up_race(Some(&copy));
    assert_eq!(second.expect("sent again"), b"ok");
    assert_eq!((connections, requests), (2, 3));
}

#[test]
fn a_bodiless_get_the_upstream_hung_up_on_goes_out_again_on_a_new_connection() {
    let (second, connections, requests) = hang_up_race(None);
    assert_eq!(second.expect("sent again"), b"ok");
    assert_eq!((connections, requests), (2, 3));
}

#[test]
fn a_request_without_a_copy_the_upstream_hung_up_on_is_not_sent_again() {
    let (second, connections, requests) = hang_up_race(Some(&no_copy));
    assert!(matches!(second, Err(SendError::Failed)), "{second:?}");
    // Read once, on the first connection, and never sent again.
    assert_eq!((connections, requests), (1, 2));
}

#[tokio::test]
async fn a_connection_switched_to_another_protocol_is_never_used_again() {
    // Every connection's first answer is a 101; what the switched stream
    // says after it looks like an answer to the next request.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let answers: [&[u8]; 2] = [
                    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n",
                    b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
                ];
                for answer in answers {
                    if read_head(&mut stream, &mut pending).await.is_none()
                        || stream.write_all(answer).await.is_err()
                    {
                        return;
                    }
                }
                let _ = stream.read(&mut [0u8; 1]).await;
            });
        }
    });
    let authority = format!("127.0.0.1:{port}").parse().expect("authority");
    let upstream = Upstream::new(&authority, Duration::from_secs(2), 4, 1);
    for _ in 0..2 {
        let switched = sent_get(&upstream, "/os/info").await;
        assert_eq!(switched.status(), http::StatusCode::SWITCHING_PROTOCOLS);
        drop(switched);
        assert_eq!(upstream.pools.per_worker[0].lock().len(), 0);
    }
}

#[tokio::test]
async fn a_full_pool_makes_room_for_a_get_by_closing_its_longest_idle_connection() {
    let test = TestUpstream::start(Manner::KeepAlive, b"ok".to_vec()).await;
    let upstream = test.upstream(1);
    // A request for hyper's client leaves one of hyper's connections idle.
    let answer = upstream
        .send(post("/supervisor/reload"), None, &no_copy)
        .await
        .expect("sent");
    assert_eq!(body_of(answer).await, b"ok");
    // GETs take only plain connections: the first opens one, which then
    // takes the pool's one place; the rest reuse it.
    for _ in 0..3 {
        let response = sent_get(&upstream, "/os/info").await;
        assert_eq!(body_of(response).await, b"ok");
    }
    assert_eq!(test.accepted(), 2);
    assert_eq!(test.requests(), 4);
}
