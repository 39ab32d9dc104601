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

fn get(path: &str) -> Request<Body> {
    Request::builder()
        .uri(path)
        .header(http::header::HOST, "supervisor")
        .body(Body::empty())
        .expect("request")
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
        let response = upstream.send(get("/supervisor/ping")).await.expect("sent");
        assert_eq!(body_of(response).await, b"pong");
    }
    assert_eq!(test.accepted(), 1);
    assert_eq!(test.requests(), 5);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    let test = TestUpstream::start(Manner::KeepAlive, vec![b'x'; 256 * 1024]).await;
    let upstream = test.upstream(4);
    let unread = upstream
        .send(get("/backups/a/download"))
        .await
        .expect("sent");
    drop(unread);
    let response = upstream
        .send(get("/backups/a/download"))
        .await
        .expect("sent");
    assert_eq!(body_of(response).await.len(), 256 * 1024);
    assert_eq!(test.accepted(), 2, "the half-read connection was reused");
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_not_used_again() {
    let test = TestUpstream::start(Manner::CloseAfterAnswer, b"ok".to_vec()).await;
    let upstream = test.upstream(4);
    for _ in 0..3 {
        let response = upstream.send(get("/os/info")).await.expect("sent");
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
    let first = upstream.send(get("/os/info")).await.expect("sent");
    assert_eq!(body_of(first).await, b"ok");
    let post = Request::builder()
        .method("POST")
        .uri("/backups/new/full")
        .header(http::header::HOST, "supervisor")
        .body(Body::empty())
        .expect("request");
    assert!(matches!(upstream.send(post).await, Err(SendError::Failed)));
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
        held.push(upstream.send(get("/os/info")).await.expect("sent"));
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
    let response = upstream.send(get("/os/info")).await.expect("sent");
    assert_eq!(body_of(response).await, b"ok");
    assert_eq!(upstream.pools.per_worker[0].lock().len(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        upstream.pools.per_worker[0].lock().len(),
        0,
        "the reaper left an expired connection"
    );
    let response = upstream.send(get("/os/info")).await.expect("sent");
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
        upstream.send(get("/os/info")).await,
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
    assert_eq!(upstream.pools.max_idle, 2);
}
