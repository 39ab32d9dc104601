use std::convert::Infallible;
use std::time::Duration;

use http_body_util::{Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::idle::Timeouts;

const LIMIT: usize = 32 * 1024;
const NEXT: &[u8] = b"GET /next HTTP/1.1\r\nHost: n\r\n\r\n";

/// [`super::parse`] of `bytes`, and the length of the head it took out;
/// a head not served here must leave every byte where it was, for hyper.
fn parse_counted(bytes: &[u8], max_header_bytes: usize, max_headers: usize) -> (Parsed, usize) {
    let mut read = BytesMut::from(bytes);
    let parsed = super::parse(&mut read, max_header_bytes, max_headers);
    let taken = bytes.len() - read.len();
    match parsed {
        Parsed::Plain(..) => assert_eq!(&bytes[taken..], &read[..], "what follows the head"),
        _ => assert_eq!(&read[..], bytes, "a head not served here is left whole"),
    }
    (parsed, taken)
}

fn parse(bytes: &[u8], max_header_bytes: usize, max_headers: usize) -> Parsed {
    parse_counted(bytes, max_header_bytes, max_headers).0
}

fn parsed(head: &str) -> Parsed {
    parse(head.as_bytes(), LIMIT, 100)
}

fn is_plain(head: &str) -> bool {
    matches!(parsed(head), Parsed::Plain(..))
}

#[test]
fn a_plain_get_is_read_with_its_head_length_and_headers_in_order() {
    let head = "GET /os/info?x=1 HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: t\r\nAccept: a\r\nX-HASSIO-key: k\r\nAccept: b\r\n\r\n";
    let (Parsed::Plain(parts, None), length) =
        parse_counted(format!("{head}GET /").as_bytes(), LIMIT, 100)
    else {
        panic!("a plain GET");
    };
    assert_eq!(length, head.len());
    assert_eq!(parts.method, Method::GET);
    assert_eq!(parts.uri, "/os/info?x=1");
    assert_eq!(parts.version, Version::HTTP_11);
    let accept: Vec<_> = parts.headers.get_all(header::ACCEPT).iter().collect();
    assert_eq!(accept, ["a", "b"]);
    assert_eq!(parts.headers["x-supervisor-token"], "t");
    assert_eq!(parts.headers["x-hassio-key"], "k");
    let names: Vec<_> = parts.headers.keys().map(HeaderName::as_str).collect();
    assert_eq!(
        names,
        ["host", "x-supervisor-token", "accept", "x-hassio-key"],
        "names in lower case"
    );
}

#[test]
fn whatever_is_not_plainly_a_bodiless_keep_alive_get_goes_to_hyper() {
    let others = [
        "POST /x HTTP/1.1\r\nHost: h\r\n\r\n",
        "HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n",
        "get /x HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET /x HTTP/1.0\r\nHost: h\r\n\r\n",
        "GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET * HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
        "GET /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: h\r\nConnection: close, x-token\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, x-token\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost : h\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
        "GET /x HTTP/1.1\r\nBad\x01Name: h\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\x7fb\r\n\r\n",
        // Targets httparse takes and the `http` crate does not: taken out
        // of the buffer, then given back (the wrapper above checks it is
        // whole).
        "GET /a`b HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\n",
        "GET /a<b> HTTP/1.1\r\nHost: h\r\n\r\n",
    ];
    for head in others {
        assert!(matches!(parsed(head), Parsed::Other), "{head:?}");
    }
    // The `keep-alive` or `close` a client may send is plain; its case and
    // spaces aside.
    assert!(is_plain(
        "GET /x HTTP/1.1\r\nHost: h\r\nConnection:  Keep-Alive \r\n\r\n"
    ));
    let Parsed::Plain(parts, None) =
        parsed("GET /x HTTP/1.1\r\nHost: h\r\nConnection: Close \r\n\r\n")
    else {
        panic!("a GET that asks to close is plain");
    };
    assert!(wants_close(&parts.headers), "and is known to ask it");
    assert!(!wants_close(&match parsed(
        "GET /x HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"
    ) {
        Parsed::Plain(parts, None) => parts.headers,
        _ => panic!("plain"),
    }));
}

#[test]
fn a_get_with_a_short_body_come_whole_is_read_with_it() {
    // bashio's GET: `{}`, its length, a JSON content type.
    let head = "GET /os/info HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer t\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n";
    let (Parsed::Plain(parts, Some(body)), taken) =
        parse_counted(format!("{head}{{}}GET /next").as_bytes(), LIMIT, 100)
    else {
        panic!("plain, with its body");
    };
    assert_eq!(
        taken,
        head.len() + 2,
        "the head and the body, not what follows"
    );
    assert_eq!(&body[..], b"{}");
    assert_eq!(parts.headers[header::CONTENT_LENGTH], "2");
    // A length of nothing is no body; spaces and leading zeros are the
    // same number.
    assert!(matches!(
        parsed("GET /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
        Parsed::Plain(_, None)
    ));
    for length in [" 3 ", "003"] {
        let Parsed::Plain(_, Some(body)) = parsed(&format!(
            "GET /x HTTP/1.1\r\nContent-Length:{length}\r\n\r\nabcd"
        )) else {
            panic!("{length:?}: plain");
        };
        assert_eq!(&body[..], b"abc", "{length:?}");
    }
    let longest = format!(
        "GET /x HTTP/1.1\r\nContent-Length: {SHORT_BODY}\r\n\r\n{}",
        "a".repeat(SHORT_BODY)
    );
    assert!(matches!(parsed(&longest), Parsed::Plain(_, Some(body)) if body.len() == SHORT_BODY));
    // Anything else with a length goes to hyper, every byte left in place.
    let too_long = format!(
        "GET /x HTTP/1.1\r\nContent-Length: {}\r\n\r\n{}",
        SHORT_BODY + 1,
        "a".repeat(SHORT_BODY + 1)
    );
    for other in [
        // Not all of the body has come.
        "GET /x HTTP/1.1\r\nContent-Length: 2\r\n\r\n{",
        "GET /x HTTP/1.1\r\nContent-Length: 2\r\n\r\n",
        // Two lengths, alike or not; a list; no number.
        "GET /x HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
        "GET /x HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\n{}",
        "GET /x HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\n{}",
        "GET /x HTTP/1.1\r\nContent-Length: +2\r\n\r\n{}",
        "GET /x HTTP/1.1\r\nContent-Length: -2\r\n\r\n{}",
        "GET /x HTTP/1.1\r\nContent-Length: 0x2\r\n\r\n{}",
        "GET /x HTTP/1.1\r\nContent-Length: \r\n\r\n{}",
        "GET /x HTTP/1.1\r\nContent-Length: 99999\r\n\r\n{}",
        // A body with another method, or asking to continue first.
        "POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        "HEAD /x HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        "GET /x HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n{}",
        &too_long,
    ] {
        assert!(matches!(parsed(other), Parsed::Other), "{other:?}");
    }
}

#[test]
fn a_head_not_yet_whole_waits_and_one_over_the_limits_goes_to_hyper() {
    assert!(matches!(
        parsed("GET /x HTTP/1.1\r\nHost: h\r\n"),
        Parsed::Partial
    ));
    let long = format!(
        "GET /x HTTP/1.1\r\nHost: h\r\nX-Long: {}\r\n\r\n",
        "a".repeat(100)
    );
    assert!(
        matches!(parse(long.as_bytes(), 64, 100), Parsed::Other),
        "over max_header_bytes"
    );
    let three = "GET /x HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert!(
        matches!(parse(three.as_bytes(), LIMIT, 2), Parsed::Other),
        "over max_headers"
    );
    assert!(matches!(
        parse(three.as_bytes(), LIMIT, 3),
        Parsed::Plain(..)
    ));
    let many: String = (0..HEADERS_HERE + 1)
        .map(|n| format!("H{n}: v\r\n"))
        .collect();
    let many = format!("GET /x HTTP/1.1\r\n{many}\r\n");
    assert!(
        matches!(parse(many.as_bytes(), LIMIT, 1000), Parsed::Other),
        "over what is served here"
    );
    let target = format!(
        "GET /{} HTTP/1.1\r\nHost: h\r\n\r\n",
        "a".repeat(MAX_TARGET)
    );
    assert!(
        matches!(parse(target.as_bytes(), 1 << 20, 100), Parsed::Other),
        "target over hyper's limit"
    );
}

/// What hyper's server hands its service for `bytes`: each request's head
/// and its body (`None` if it read none), for up to `count` requests.
async fn hyper_reads(bytes: &[u8], count: usize) -> Vec<(request::Parts, Option<Bytes>)> {
    let (client, server) = tokio::io::duplex(256 * 1024);
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let (parts, body) = request.into_parts();
        let sender = sender.clone();
        async move {
            let body = match http_body::Body::is_end_stream(&body) {
                true => None,
                false => body.collect().await.ok().map(|body| body.to_bytes()),
            };
            let _ = sender.send((parts, body));
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        }
    });
    let serving =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), service);
    let serving = tokio::spawn(serving);
    let (mut reading, mut writing) = tokio::io::split(client);
    writing.write_all(bytes).await.expect("write");
    let drain = tokio::spawn(async move {
        let mut sink = vec![0; 4096];
        while matches!(reading.read(&mut sink).await, Ok(read) if read > 0) {}
    });
    let mut seen = Vec::new();
    while seen.len() < count {
        match tokio::time::timeout(Duration::from_millis(500), receiver.recv()).await {
            Ok(Some(request)) => seen.push(request),
            _ => break,
        }
    }
    serving.abort();
    drain.abort();
    seen
}

fn header_lines(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect()
}

/// Pieces of request heads: what clients send, most of the time, and
/// what smuggling and parser confusion are made of.
const METHODS: (&[&str], &[&str]) = (&["GET"], &["POST", "get", "HEAD", "GET\t", "G ET", ""]);
const TARGETS: (&[&str], &[&str]) = (
    &[
        "/",
        "/os/info",
        "/a?b=c&d",
        "//x",
        "/%2e%2e/x",
        "/a%00b",
        "/a#f",
        "/a?",
        "/..;/x",
    ],
    &["/\u{e9}", "/a b", "http://h/x", "*", "/a\\b", "", "/a\x7f"],
);
const VERSIONS: (&[&str], &[&str]) = (
    &["HTTP/1.1"],
    &["HTTP/1.0", "HTTP/2.0", "http/1.1", "HTTP/1.1 "],
);
const NAMES: (&[&str], &[&str]) = (
    &[
        "Host",
        "X-Supervisor-Token",
        "Authorization",
        "Accept",
        "X-Forwarded-For",
        "TE",
        "Keep-Alive",
        "Connection",
    ],
    &[
        "Content-Length",
        "content-length",
        "Transfer-Encoding",
        "Expect",
        "Upgrade",
        "Host ",
        " Host",
        "X\tY",
        "",
        "Proxy-Connection",
    ],
);
const VALUES: (&[&str], &[&str]) = (
    &[
        "supervisor",
        "token",
        "0",
        "keep-alive",
        "Keep-Alive",
        "",
        " spaced ",
        "a\tb",
        "\u{fc}ber",
        "trailers",
    ],
    &[
        "5",
        "chunked",
        "close",
        "keep-alive, close",
        "100-continue",
        "websocket",
        "x\x7fy",
        "a\x01b",
        "a\rb",
    ],
);
const LINE_ENDS: (&[&str], &[&str]) = (&["\r\n"], &["\n", "\r", "\n\r"]);

/// A piece from the first list nine times in ten, else from the second.
fn piece(
    (usual, odd): (&'static [&'static str], &'static [&'static str]),
) -> impl Strategy<Value = &'static str> {
    prop_oneof![9 => prop::sample::select(usual), 1 => prop::sample::select(odd)]
}

/// Lengths a head may declare, one time in four: bashio's 2 among them.
const LENGTHS: (&[&str], &[&str]) = (&["2", "0", "5", " 2", "02"], &["2, 2", "+2", "1025", "x"]);

fn head_strategy() -> impl Strategy<Value = String> {
    let header = (piece(NAMES), piece(VALUES), piece(LINE_ENDS));
    let length = prop::option::weighted(0.25, (piece(LENGTHS), 0..6usize));
    (
        piece(METHODS),
        piece(TARGETS),
        piece(VERSIONS),
        piece(LINE_ENDS),
        prop::collection::vec(header, 0..6),
        length,
        piece(LINE_ENDS),
    )
        .prop_map(
            |(method, target, version, end, mut headers, length, last)| {
                let mut head = format!("{method} {target} {version}{end}");
                if let Some((value, at)) = length {
                    headers.insert(at.min(headers.len()), ("Content-Length", value, "\r\n"));
                }
                for (name, value, end) in headers {
                    head.push_str(&format!("{name}: {value}{end}"));
                }
                head.push_str(last);
                head
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// A head served here is one hyper reads the same way: the same
    /// method, target, version and headers in the same order, no body, and
    /// its end where hyper finds the next request.
    #[test]
    fn a_head_served_here_is_read_by_hyper_the_same_way(head in head_strategy(), body in "[a-z{}]{0,6}") {
        // (A body after the head: read as one if the head gives a length.)
        let bytes = [head.as_bytes(), body.as_bytes(), NEXT].concat();
        let (Parsed::Plain(parts, ours), length) = parse_counted(&bytes, LIMIT, 100) else {
            return Ok(());
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        // The head (and body) end where hyper's do: what follows is read
        // the same.
        let next = match parse(&bytes[length..], LIMIT, 100) {
            Parsed::Plain(next, _) => Some(next),
            _ => None,
        };
        let seen = runtime.block_on(hyper_reads(&bytes, 2));
        prop_assert!(!seen.is_empty(), "hyper served the request");
        let (theirs, their_body) = &seen[0];
        prop_assert_eq!(their_body, &ours, "the same body");
        prop_assert_eq!(&theirs.method, &parts.method);
        prop_assert_eq!(&theirs.uri, &parts.uri);
        prop_assert_eq!(theirs.version, parts.version);
        prop_assert_eq!(header_lines(&theirs.headers), header_lines(&parts.headers));
        if wants_close(&parts.headers) {
            // Served here as the last of its connection, as hyper does.
            prop_assert_eq!(seen.len(), 1, "hyper served only this one");
        } else if let Some(next) = next {
            prop_assert_eq!(seen.len(), 2, "hyper served the next request");
            prop_assert_eq!(&seen[1].0.uri, &next.uri);
        }
    }
}

#[test]
fn the_generated_heads_include_plain_ones_and_others() {
    // The property above checks only heads served here: make sure the
    // generator makes enough of them, and of the others.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = head_strategy();
    let (mut plain, mut with_body, mut other) = (0, 0, 0);
    for _ in 0..400 {
        let head = strategy.new_tree(&mut runner).expect("a head").current();
        match parse(format!("{head}{{}}abc").as_bytes(), LIMIT, 100) {
            Parsed::Plain(_, None) => plain += 1,
            Parsed::Plain(_, Some(_)) => with_body += 1,
            _ => other += 1,
        }
    }
    assert!(
        plain >= 80 && with_body >= 20 && other >= 80,
        "plain {plain}, with a body {with_body}, other {other}"
    );
}

/// A connected pair of loopback sockets: (the gateway's side, the client's).
async fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr"));
    let (client, accepted) = tokio::join!(client, listener.accept());
    (accepted.expect("accept").0, client.expect("connect"))
}

/// A connection's deadlines with five seconds for each timeout.
fn five_second_deadlines(activity: &Activity) -> Deadlines {
    let five = Duration::from_secs(5);
    let timeouts = Timeouts {
        head: five,
        keep_alive: five,
        send: five,
    };
    Deadlines::new(activity, timeouts)
}

/// Writes `answer` as this module does, on a fresh loopback connection
/// that is then closed: whether it went out whole, and the client's side.
async fn written(answer: Response<Body>) -> (bool, TcpStream) {
    let (server, client) = socket_pair().await;
    let activity = Arc::new(Activity::new());
    let mut deadlines = five_second_deadlines(&activity);
    let mut connection = Connection {
        io: ClientIo::new(server, activity.clone(), Box::new(())),
        addr: "127.0.0.1:1".parse().expect("address"),
        read: BytesMut::new(),
        scanned: 0,
        activity: &activity,
        room: LIMIT,
        max_headers: 100,
        stopped: &mut std::future::pending(),
        stopping: &mut false,
    };
    let whole = connection.write_answer(answer, true, &mut deadlines).await;
    let _ = connection.io.shutdown().await;
    (matches!(whole, Ok(true)), client)
}

/// The bytes this module writes for `answer` on a connection that closes
/// after it.
async fn ours(answer: Response<Body>) -> Vec<u8> {
    let (whole, mut client) = written(answer).await;
    assert!(whole, "written whole");
    let mut bytes = Vec::new();
    client.read_to_end(&mut bytes).await.expect("read");
    bytes
}

/// The bytes hyper's server writes for `answer` to a GET that asks to
/// close the connection.
async fn hypers(answer: Response<Body>) -> Vec<u8> {
    let (server, mut client) = socket_pair().await;
    let answer = std::sync::Mutex::new(Some(answer));
    let service = hyper::service::service_fn(move |_: http::Request<Incoming>| {
        let answer = answer.lock().expect("lock").take().expect("one request");
        async move { Ok::<_, Infallible>(answer) }
    });
    let serving =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), service);
    let serving = tokio::spawn(serving);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut bytes = Vec::new();
    client.read_to_end(&mut bytes).await.expect("read");
    let _ = serving.await;
    bytes
}

/// The `date` header's value blanked, which differs by the second.
fn undated(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes).into_owned();
    text.split("\r\n")
        .map(|line| match line.strip_prefix("date: ") {
            Some(_) => "date: (now)",
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn streamed(pieces: &[&'static str]) -> Body {
    let frames = pieces
        .iter()
        .map(|piece| Ok::<_, Infallible>(Frame::data(Bytes::from_static(piece.as_bytes()))));
    Body::new(StreamBody::new(futures_util::stream::iter(
        frames.collect::<Vec<_>>(),
    )))
}

fn answers() -> Vec<(&'static str, Response<Body>)> {
    let with = |status: u16, headers: &[(&'static str, &'static str)], body: Body| {
        let mut answer = Response::new(body);
        *answer.status_mut() = StatusCode::from_u16(status).expect("status");
        for (name, value) in headers {
            answer
                .headers_mut()
                .append(*name, HeaderValue::from_static(value));
        }
        answer
    };
    vec![
        (
            "a whole body",
            with(
                200,
                &[("content-type", "application/json")],
                Body::from("{\"result\":\"ok\"}"),
            ),
        ),
        ("an empty body", with(403, &[], Body::empty())),
        (
            "a declared length, streamed",
            with(
                200,
                &[("content-length", "10")],
                streamed(&["01234", "56789"]),
            ),
        ),
        (
            "an unknown length",
            with(
                200,
                &[("content-type", "text/event-stream")],
                streamed(&["data: 1\n\n", "", "data: a chunk of 26 bytes\n\n"]),
            ),
        ),
        (
            "no content",
            with(204, &[("content-length", "0"), ("x-a", "1")], Body::empty()),
        ),
        (
            "not modified",
            with(
                304,
                &[("etag", "\"e\""), ("content-length", "7")],
                Body::empty(),
            ),
        ),
        ("a status without a reason", with(599, &[], Body::from("x"))),
        (
            "repeated headers, a date",
            with(
                502,
                &[
                    ("set-cookie", "a=1"),
                    ("set-cookie", "b=2"),
                    ("date", "Mon, 01 Jan 2024 00:00:00 GMT"),
                ],
                Body::from("bad"),
            ),
        ),
        (
            "a connection header asking to close",
            with(200, &[("connection", "close")], Body::from("x")),
        ),
    ]
}

#[tokio::test]
async fn answers_are_written_byte_for_byte_as_hyper_writes_them() {
    let hyper_side = answers();
    for ((what, answer), (_, same)) in answers().into_iter().zip(hyper_side) {
        let (ours, theirs) = (ours(answer).await, hypers(same).await);
        assert_eq!(undated(&ours), undated(&theirs), "{what}");
        assert!(
            String::from_utf8_lossy(&ours).contains("\r\ndate: "),
            "{what}: dated"
        );
    }
}

#[tokio::test]
async fn a_body_that_ends_short_of_its_length_or_runs_past_it_closes_the_connection() {
    for pieces in [&["0123"][..], &["0123456789", "x"][..]] {
        let mut answer = Response::new(streamed(pieces));
        answer
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        let (whole, _client) = written(answer).await;
        assert!(!whole, "{pieces:?}: not whole");
    }
}

#[test]
fn lengths_are_written_in_decimal_and_chunk_sizes_in_upper_case_hex() {
    for length in [0, 1234567890, u64::MAX] {
        let mut out = Vec::new();
        Framing::Length(length).write(&mut out);
        assert_eq!(out, format!("content-length: {length}\r\n").as_bytes());
    }
    let piece = Framer::new(Framing::Chunked)
        .frame(Bytes::from(vec![0; 255]))
        .expect("a piece");
    assert_eq!(piece.before, b"FF\r\n");
}

#[tokio::test]
async fn a_request_already_sent_when_the_server_stops_is_read_not_dropped() {
    let (server, mut client) = socket_pair().await;
    client
        .write_all(b"GET /os/info HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .expect("write");
    let activity = Arc::new(Activity::new());
    let mut deadlines = five_second_deadlines(&activity);
    let io = ClientIo::new(server, activity.clone(), Box::new(()));
    io.readable().await.expect("readable");
    // The stop has come already, beside the request.
    let mut connection = Connection {
        io,
        addr: "127.0.0.1:1".parse().expect("address"),
        read: BytesMut::new(),
        scanned: 0,
        activity: &activity,
        room: LIMIT,
        max_headers: 100,
        stopped: &mut std::future::ready(()),
        stopping: &mut false,
    };
    let head = connection.next_head(&mut deadlines).await;
    assert!(matches!(head, Ok(Some((ref parts, None))) if parts.uri == "/os/info"));
}

#[test]
fn the_end_of_a_head_is_found_once_in_the_bytes_that_came_since_the_last_look() {
    let head = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n";
    // Given a byte at a time, the end is seen only with its last byte,
    // whichever line ending it has.
    for head in [
        &head[..],
        b"GET /x HTTP/1.1\nHost: h\n\n",
        b"GET /x HTTP/1.1\nHost: h\n\r\n",
    ] {
        let mut scanned = 0;
        for length in 1..head.len() {
            assert!(!may_be_whole(&head[..length], &mut scanned), "{length}");
            assert_eq!(scanned, length);
        }
        assert!(may_be_whole(head, &mut scanned));
    }
    // An end already looked past is not found again: only new bytes count.
    let mut scanned = head.len();
    assert!(!may_be_whole(
        &[&head[..], b"GET /y"].concat(),
        &mut scanned
    ));
}
