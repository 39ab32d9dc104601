//! Tests of the idle module: what a connection waits for, and the bytes
//! handed back across a park.

use super::*;

fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            http::HeaderValue::from_bytes(value).expect("value"),
        );
    }
    map
}

#[test]
fn only_bodiless_http_1_1_requests_that_keep_the_connection_leave_it_reusable() {
    let v11 = Version::HTTP_11;
    assert!(reusable(v11, &headers(&[]), true));
    assert!(reusable(
        v11,
        &headers(&[("connection", b"keep-alive")]),
        true
    ));
    assert!(reusable(
        v11,
        &headers(&[("connection", b"Keep-Alive, X-Foo")]),
        true
    ));
    assert!(!reusable(v11, &headers(&[]), false), "a body");
    assert!(!reusable(Version::HTTP_10, &headers(&[]), true), "HTTP/1.0");
    for closing in [&b"close"[..], b"keep-alive, Close", b"Upgrade", b"\xff"] {
        let map = headers(&[("connection", closing)]);
        assert!(!reusable(v11, &map, true), "{closing:?}");
    }
    let two = headers(&[("connection", b"keep-alive"), ("connection", b"close")]);
    assert!(!reusable(v11, &two, true), "close in a second line");
    let upgrade = headers(&[("upgrade", b"websocket")]);
    assert!(!reusable(v11, &upgrade, true), "an upgrade");
}

const TIMEOUTS: Timeouts = Timeouts {
    head: Duration::from_secs(10),
    keep_alive: Duration::from_secs(60),
    send: Duration::from_secs(30),
};

fn deadline(wait: Wait) -> (Instant, &'static str) {
    match wait {
        Wait::Until(at, Next::Park) => (at, "park"),
        Wait::Until(at, Next::Expired(expiry)) => (at, expiry.name()),
        Wait::Until(_, Next::CheckHangup) => panic!("a hangup check is never waited for"),
        Wait::Busy => panic!("busy"),
        Wait::Now(_) => panic!("now"),
    }
}

#[test]
fn what_a_connection_waits_for() {
    // (Assumes no other test runs over WARM_LIMIT hyper connections.)
    let activity = Arc::new(Activity::new());
    // Before its first request: the first head's time, from the opening.
    let (at, then) = deadline(activity.wait(&TIMEOUTS, true));
    assert_eq!((at, then), (activity.opened + TIMEOUTS.head, "head"));

    let request = InFlight::start(&activity, true);
    assert!(matches!(activity.wait(&TIMEOUTS, true), Wait::Busy));
    drop(request);
    let idle = activity.at(activity.idle_since_ms.load(Ordering::Acquire));
    // Idle and reusable: parked after a second while serving, else
    // closed at the keep-alive time.
    assert_eq!(
        deadline(activity.wait(&TIMEOUTS, true)),
        (idle + PARK_AFTER, "park")
    );
    assert_eq!(
        deadline(activity.wait(&TIMEOUTS, false)),
        (idle + TIMEOUTS.keep_alive, "keep_alive")
    );
    // An answer the client takes nothing of: not parked, and closed at
    // the send time from the first write that had to wait, request in
    // flight or not; a write that goes out starts it again.
    activity.wrote(false);
    let blocked = activity.at(activity.write_blocked_since_ms.load(Ordering::Acquire));
    activity.wrote(false);
    for serving in [true, false] {
        assert_eq!(
            deadline(activity.wait(&TIMEOUTS, serving)),
            (blocked + TIMEOUTS.send, "send"),
            "serving {serving}"
        );
    }
    let writing = InFlight::start(&activity, true);
    assert_eq!(
        deadline(activity.wait(&TIMEOUTS, true)),
        (blocked + TIMEOUTS.send, "send")
    );
    activity.wrote(true);
    assert!(matches!(activity.wait(&TIMEOUTS, true), Wait::Busy));
    drop(writing);
    let idle = activity.at(activity.idle_since_ms.load(Ordering::Acquire));
    // A keep-alive time under the park delay is kept.
    let short = Timeouts {
        keep_alive: Duration::from_millis(300),
        ..TIMEOUTS
    };
    assert_eq!(
        deadline(activity.wait(&short, true)),
        (idle + short.keep_alive, "keep_alive")
    );

    // A head coming in: its own deadline, parked or not.
    activity.bytes_arrived();
    let head = activity.at(activity.head_since_ms.load(Ordering::Acquire));
    for serving in [true, false] {
        assert_eq!(
            deadline(activity.wait(&TIMEOUTS, serving)),
            (head + TIMEOUTS.head, "head")
        );
    }

    // After a request with a body, or an answer with a Connection
    // header: never parked, and the next head's time runs at once; with
    // nothing of a head come in, running out is the end of an idle wait,
    // and once bytes come it is a head timeout, still from the same time.
    for body in [true, false] {
        let request = InFlight::start(&activity, !body);
        if !body {
            activity.answer_has_connection_header();
        }
        drop(request);
        let idle = activity.at(activity.idle_since_ms.load(Ordering::Acquire));
        assert_eq!(
            deadline(activity.wait(&TIMEOUTS, true)),
            (idle + TIMEOUTS.head, "keep_alive"),
            "body {body}"
        );
        activity.bytes_arrived();
        assert_eq!(
            deadline(activity.wait(&TIMEOUTS, true)),
            (idle + TIMEOUTS.head, "head"),
            "body {body}"
        );
    }
    // Bytes during a bodiless request: the next head's time too.
    let request = InFlight::start(&activity, true);
    activity.bytes_arrived();
    drop(request);
    let idle = activity.at(activity.idle_since_ms.load(Ordering::Acquire));
    assert_eq!(
        deadline(activity.wait(&TIMEOUTS, true)),
        (idle + TIMEOUTS.head, "head")
    );
}

#[tokio::test]
async fn bytes_handed_back_come_before_those_not_yet_read_from_the_last_park() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let _client = TcpStream::connect(listener.local_addr().expect("addr"))
        .await
        .expect("connect");
    let (stream, _) = listener.accept().await.expect("accept");
    let activity = Arc::new(Activity::new());
    let mut io =
        ClientIo::new(stream, activity, Box::new(())).parked(Bytes::from_static(b"abcdef"));
    let mut two = [0u8; 2];
    io.read_exact(&mut two).await.expect("read");
    assert_eq!(&two, b"ab");
    // Parked again: hyper kept "XY" of what it read; "cdef" it never read.
    let mut io = io.parked(Bytes::from_static(b"XY"));
    let mut rest = [0u8; 6];
    io.read_exact(&mut rest).await.expect("read");
    assert_eq!(&rest, b"XYcdef");
    let io = io.parked(Bytes::new());
    assert!(io.read_ahead.is_empty());
}

#[test]
fn bytes_read_ahead_start_the_next_heads_time_at_the_last_requests_end() {
    let activity = Arc::new(Activity::new());
    drop(InFlight::start(&activity, true));
    let idle_ms = activity.idle_since_ms.load(Ordering::Acquire);
    activity.head_waiting_since_idle(true);
    assert_eq!(activity.head_since_ms.load(Ordering::Acquire), idle_ms);
}

/// A connection's activity and a send watch on it.
fn watched(timeout: Duration) -> (Arc<Activity>, SendWatch) {
    let activity = Arc::new(Activity::new());
    let peer = "127.0.0.1:9".parse().expect("addr");
    (activity.clone(), SendWatch::new(activity, peer, timeout))
}

/// How long `watch` took to fire (at most 10 s).
async fn fired_after(watch: &SendWatch) -> Duration {
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), watch.stalled())
        .await
        .expect("fired within 10 s");
    started.elapsed()
}

#[tokio::test]
async fn a_send_watch_fires_only_once_a_write_has_waited_its_time() {
    let timeout = Duration::from_millis(100);
    let (activity, watch) = watched(timeout);
    // No write waiting, one that went out: nothing to give up on.
    activity.wrote(true);
    let waited = tokio::time::timeout(Duration::from_millis(400), watch.stalled()).await;
    assert!(waited.is_err(), "fired with no write waiting");
    // A write waits and nothing goes out: it fires. (Its start is kept to
    // the millisecond, so not quite all of the time need pass.)
    activity.wrote(false);
    let fired = fired_after(&watch).await;
    assert!(fired >= timeout / 2, "{fired:?}");
    assert!(!activity.given_up.load(Ordering::Acquire));
    watch.give_up();
    assert!(activity.given_up.load(Ordering::Acquire));
}

#[tokio::test]
async fn a_send_watch_counts_from_its_own_send_not_from_an_older_wait() {
    let timeout = Duration::from_millis(100);
    let (activity, watch) = watched(timeout);
    // A write waited (a pong, say) and was never tried again.
    activity.wrote(false);
    tokio::time::sleep(timeout * 3).await;
    let fired = fired_after(&watch).await;
    assert!(fired >= timeout / 2, "{fired:?}");
}
