use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// The head of `answer` as this module reads it (`None`: incomplete).
fn head_of(answer: &str, head_only: bool) -> Result<Option<Head>, Failure> {
    let mut unread = BytesMut::from(answer.as_bytes());
    loop {
        match read_head(&mut unread, head_only)? {
            Some(Parsed::Interim) => continue,
            Some(Parsed::Final(head)) => return Ok(Some(head)),
            None => return Ok(None),
        }
    }
}

/// Framing and keep-alive of a complete head.
fn framed(answer: &str) -> Result<(Framing, bool), Failure> {
    let head = head_of(answer, false)?.expect("a complete head");
    Ok((head.framing, head.keep_alive))
}

#[test]
fn a_length_is_trusted_only_when_every_value_agrees() {
    use Framing::*;
    let ok = |headers: &str| framed(&format!("HTTP/1.1 200 OK\r\n{headers}\r\n"));
    assert_eq!(ok("Content-Length: 5\r\n"), Ok((Length(5), true)));
    assert_eq!(ok("Content-Length: 5, 5\r\n"), Ok((Length(5), true)));
    assert_eq!(
        ok("Content-Length: 5\r\nContent-Length: 5\r\n"),
        Ok((Length(5), true))
    );
    for bad in [
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 6\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: 5a\r\n",
        "Content-Length: 0x5\r\n",
        "Content-Length: \r\n",
        "Content-Length: 5,\r\n",
        "Content-Length: 99999999999999999999\r\n",
    ] {
        assert_eq!(ok(bad), Err(Failure::Broken), "{bad:?}");
    }
}

#[test]
fn several_equal_lengths_are_passed_on_as_one() {
    for headers in [
        "Content-Length: 5, 5\r\n",
        "Content-Length: 5\r\ncontent-length: 5\r\n",
    ] {
        let head = head_of(&format!("HTTP/1.1 200 OK\r\n{headers}\r\n"), false)
            .expect("read")
            .expect("complete");
        let lengths: Vec<_> = head
            .response
            .headers()
            .get_all(CONTENT_LENGTH)
            .iter()
            .collect();
        assert_eq!(lengths, [HeaderValue::from_static("5")], "{headers:?}");
    }
}

#[test]
fn chunked_decides_over_a_length_which_is_then_removed() {
    use Framing::*;
    let ok = |headers: &str| framed(&format!("HTTP/1.1 200 OK\r\n{headers}\r\n"));
    assert_eq!(ok("Transfer-Encoding: chunked\r\n"), Ok((Chunked, true)));
    assert_eq!(ok("Transfer-Encoding: CHUNKED\r\n"), Ok((Chunked, true)));
    assert_eq!(ok("Transfer-Encoding:  chunked \r\n"), Ok((Chunked, true)));
    // Both: chunked wins, the length goes, and so does the connection.
    let both = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    let head = head_of(both, false).expect("read").expect("complete");
    assert_eq!((head.framing, head.keep_alive), (Chunked, false));
    assert!(head.response.headers().get(CONTENT_LENGTH).is_none());
    // HTTP/1.0 has no transfer codings.
    assert_eq!(
        framed("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        Err(Failure::Broken)
    );
}

#[test]
fn an_answer_with_a_transfer_coding_besides_one_chunked_is_refused() {
    // The gateway would take chunked off and pass a gzip body on as if
    // it were the body itself, labelled with nothing (helper 71).
    for codings in [
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked, gzip\r\n",
        "Transfer-Encoding: gzip\r\n",
        "Transfer-Encoding: identity\r\n",
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: \r\n",
        "Transfer-Encoding: ,\r\n",
        // An empty element, which hyper's client does not pass over
        // (helper 72: it read `chunked,` to the close, chunks and all).
        "Transfer-Encoding: chunked,\r\n",
        "Transfer-Encoding: chunked, \r\n",
        "Transfer-Encoding: ,chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: ,\r\n",
    ] {
        assert_eq!(
            framed(&format!("HTTP/1.1 200 OK\r\n{codings}\r\n")),
            Err(Failure::Broken),
            "{codings:?}"
        );
    }
    // An answer with no body has nothing to decode.
    assert_eq!(
        framed("HTTP/1.1 204 No Content\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        Ok((Framing::Empty, true))
    );
}

#[test]
fn only_an_http_1_1_answer_without_close_keeps_its_connection() {
    use Framing::*;
    assert_eq!(
        framed("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n"),
        Ok((Length(0), false))
    );
    assert_eq!(
        framed("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n"),
        Ok((Length(2), false))
    );
    assert_eq!(framed("HTTP/1.1 200 OK\r\n\r\n"), Ok((UntilClose, false)));
}

#[test]
fn head_204_and_304_answers_have_no_body_but_keep_their_length() {
    let head = head_of("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", true)
        .expect("read")
        .expect("complete");
    assert_eq!((head.framing, head.keep_alive), (Framing::Empty, true));
    assert_eq!(head.response.headers()[CONTENT_LENGTH], "100");
    for status in ["204 No Content", "304 Not Modified"] {
        let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 7\r\n\r\n");
        assert_eq!(framed(&answer), Ok((Framing::Empty, true)), "{status}");
    }
}

#[test]
fn interim_answers_are_skipped_and_heads_read_whole_or_not_at_all() {
    let answer = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
    let head = head_of(answer, false).expect("read").expect("complete");
    assert_eq!(head.response.status(), StatusCode::CREATED);
    assert!(head.response.headers().get("link").is_none());
    assert!(head_of("HTTP/1.1 200 OK\r\nContent-Le", false)
        .expect("read")
        .is_none());
    // A switch of protocols is final (and refused by the caller), and its
    // connection now speaks another protocol: never kept.
    let head = head_of(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        false,
    )
    .expect("read")
    .expect("complete");
    assert_eq!(head.response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(!head.keep_alive);
}

#[test]
fn malformed_heads_are_broken() {
    for bad in [
        "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
        "ICY 200 OK\r\n\r\n",
    ] {
        assert!(
            matches!(head_of(bad, false), Err(Failure::Broken)),
            "{bad:?}"
        );
    }
    // A head over the limit, even when it arrived whole.
    let large = format!("X: {}\r\n", "a".repeat(MAX_HEAD_BYTES));
    let answer = format!("HTTP/1.1 200 OK\r\n{large}Content-Length: 0\r\n\r\n");
    assert!(matches!(head_of(&answer, false), Err(Failure::Broken)));
    let many: String = (0..=MAX_HEADERS).map(|n| format!("X-{n}: a\r\n")).collect();
    let answer = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
    assert!(matches!(head_of(&answer, false), Err(Failure::Broken)));
}

/// Reads `framing` after a chunk at `chunk` from `bytes`, step by step,
/// until a step needs more or ends; returns the steps.
fn steps(bytes: &str, mut chunk: Chunk) -> Vec<Step> {
    let mut unread = BytesMut::from(bytes.as_bytes());
    let mut seen = Vec::new();
    let mut extensions = 0;
    for _ in 0..10_000 {
        let step = step_chunked(&mut unread, chunk, &mut extensions);
        let next = match step {
            Step::Next(Chunk::Data(size)) => {
                let size = usize::try_from(size).expect("small").min(unread.len());
                unread.advance(size);
                Some(Chunk::DataEnd)
            }
            Step::Next(next) => Some(next),
            _ => None,
        };
        seen.push(step);
        match next {
            Some(next) => chunk = next,
            None => break,
        }
    }
    seen
}

#[test]
fn chunk_sizes_are_hex_digits_within_64_bits_on_a_crlf_line() {
    use Step::*;
    assert_eq!(steps("a\r\n", Chunk::Size)[0], Next(Chunk::Data(10)));
    assert_eq!(
        steps("Ff;name=value\r\n", Chunk::Size)[0],
        Next(Chunk::Data(255))
    );
    assert_eq!(steps("1 ;x\r\n", Chunk::Size)[0], Next(Chunk::Data(1)));
    assert_eq!(
        steps("ffffffffffffffff\r\n", Chunk::Size)[0],
        Next(Chunk::Data(u64::MAX))
    );
    assert_eq!(steps("0\r\n", Chunk::Size)[0], Next(Chunk::Trailers(0, 0)));
    assert_eq!(
        steps("0000000000000000000a\r\n", Chunk::Size)[0],
        Next(Chunk::Data(10))
    );
    assert_eq!(steps("1\t;x\r\n", Chunk::Size)[0], Next(Chunk::Data(1)));
    for bad in [
        "0\x0c\r\n",
        "1\x0b;x\r\n",
        "\r\n",
        "g\r\n",
        "1ffffffffffffffff\r\n",
        "5\n",
        "5\rx\r\n",
        "-5\r\n",
        "5 x\r\n",
        "0x5\r\n",
    ] {
        assert_eq!(steps(bad, Chunk::Size)[0], Bad, "{bad:?}");
    }
    assert_eq!(steps("ff", Chunk::Size)[0], NeedMore);
    assert_eq!(steps("ff\r", Chunk::Size)[0], NeedMore);
    let long = format!("1{}\r\n", " ".repeat(MAX_CHUNK_SIZE));
    assert_eq!(steps(&long, Chunk::Size)[0], Bad);
}

#[test]
fn chunk_extensions_are_taken_up_to_hypers_limit_for_the_whole_body() {
    use Step::*;
    // As hyper's client reads them: 16 KiB less one byte in all, after
    // each `;`, here over two chunks; a byte more is refused.
    let first = "x".repeat(10_000);
    let second = "y".repeat(MAX_CHUNK_EXTENSIONS - 10_000);
    let fits = format!("1;{first}\r\na\r\n0;{second}\r\n\r\n");
    assert_eq!(steps(&fits, Chunk::Size).last(), Some(&End));
    let over = format!("1;{first}\r\na\r\n0;{second}z\r\n\r\n");
    assert_eq!(steps(&over, Chunk::Size).last(), Some(&Bad));
    let alone = format!("1;{}\r\n", "x".repeat(MAX_CHUNK_EXTENSIONS));
    assert_eq!(steps(&alone, Chunk::Size)[0], Next(Chunk::Data(1)));
    let alone = format!("1;{}\r\n", "x".repeat(MAX_CHUNK_EXTENSIONS + 1));
    assert_eq!(steps(&alone, Chunk::Size)[0], Bad);
    // Not yet ended, but already over: no need to wait for more.
    let open = format!(
        "1;{}",
        "x".repeat(MAX_CHUNK_SIZE + MAX_CHUNK_EXTENSIONS + 2)
    );
    assert_eq!(steps(&open, Chunk::Size)[0], Bad);
}

#[test]
fn chunk_data_ends_in_crlf_and_the_body_after_its_trailers() {
    use Step::*;
    assert_eq!(
        steps("3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n", Chunk::Size),
        [
            Next(Chunk::Data(3)),
            Next(Chunk::Size),
            Next(Chunk::Trailers(0, 0)),
            Next(Chunk::Trailers(10, 1)),
            End
        ]
    );
    assert_eq!(steps("3\r\nabcX\r\n", Chunk::Size)[1], Bad);
    assert_eq!(steps("3\r\nabc\n", Chunk::Size)[1], Bad);
    assert_eq!(steps("3\r\nabc\r", Chunk::Size)[1], NeedMore);
    assert_eq!(steps("", Chunk::DataEnd), [NeedMore]);
    assert_eq!(steps("0\r\nX: 1\n\r\n", Chunk::Size)[1], Bad);
    let many = "X: 1\r\n".repeat(MAX_TRAILER_BYTES / 6 + 1);
    let seen = steps(&format!("0\r\n{many}\r\n"), Chunk::Size);
    assert_eq!(seen.last(), Some(&Bad));
}

#[test]
fn trailers_are_taken_as_hypers_client_takes_them() {
    use Step::*;
    let ends = |trailers: &str| steps(&format!("0\r\n{trailers}\r\n"), Chunk::Size).pop();
    // A hundred fields pass, not a hundred and one.
    assert_eq!(ends(&"X: 1\r\n".repeat(100)), Some(End));
    assert_eq!(ends(&"X: 1\r\n".repeat(101)), Some(Bad));
    // All of them, with their line ends and the empty line, under 16 KiB.
    let one = |value: usize| format!("X: {}\r\n", "v".repeat(value));
    let under = MAX_TRAILER_BYTES - 1 - 2 - "X: \r\n".len();
    assert_eq!(ends(&one(under)), Some(End));
    assert_eq!(ends(&one(under + 1)), Some(Bad));
    // Each a field httparse and the http crate read.
    for bad in [
        "no colon\r\n",
        "X: 1\r\n folded\r\n",
        "X : 1\r\n",
        "X(: 1\r\n",
        ": 1\r\n",
        "X: a\x01b\r\n",
    ] {
        assert_eq!(ends(bad), Some(Bad), "{bad:?}");
    }
    assert_eq!(ends("X-Sum: 1\r\nX-Empty:\r\n"), Some(End));
}

/// A connection to a loopback listener whose accepted end writes `pieces`
/// one after another (pausing between them) and then, if `close`, hangs up.
async fn connection_sending(pieces: Vec<&'static [u8]>, close: bool) -> PlainConn {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        for piece in pieces {
            stream.write_all(piece).await.expect("write");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        if !close {
            // Held open until the other end closes.
            let _ = stream.read(&mut [0u8; 1]).await;
        }
    });
    PlainConn::new(TcpStream::connect(address).await.expect("connect"))
}

/// Reads an answer's body from `conn`; its bytes (or the error) and whether
/// the connection was kept.
async fn body_from(conn: PlainConn, framing: Framing) -> (Result<Vec<u8>, BrokenBody>, bool) {
    let kept = Arc::new(Mutex::new(false));
    let mark = kept.clone();
    let body = PlainBody::new(conn, framing, true, move |_| {
        *mark.lock().expect("kept") = true
    });
    let read = body.collect().await.map(|body| body.to_bytes().to_vec());
    let kept = *kept.lock().expect("kept");
    (read, kept)
}

#[tokio::test]
async fn a_chunked_body_in_small_pieces_is_decoded_and_its_connection_kept() {
    let pieces: Vec<&[u8]> = vec![
        b"5",
        b"\r",
        b"\nhel",
        b"lo\r\n",
        b"1;x=y\r\n!\r\n0\r",
        b"\nT: 1\r\n",
        b"\r\n",
    ];
    let conn = connection_sending(pieces, false).await;
    let (read, kept) = body_from(conn, Framing::Chunked).await;
    assert_eq!(read.expect("body"), b"hello!");
    assert!(kept);
}

#[tokio::test]
async fn a_length_body_is_read_to_its_end_and_anything_after_it_closes_the_connection() {
    let conn = connection_sending(vec![b"abc", b"de"], false).await;
    let (read, kept) = body_from(conn, Framing::Length(5)).await;
    assert_eq!(read.expect("body"), b"abcde");
    assert!(kept);
    let conn = connection_sending(vec![b"abcdeEXTRA"], false).await;
    let (read, kept) = body_from(conn, Framing::Length(5)).await;
    assert_eq!(read.expect("body"), b"abcde");
    assert!(!kept, "a connection with bytes after the answer was kept");
}

#[tokio::test]
async fn bodies_that_break_off_or_break_their_framing_fail_and_close() {
    let cases: Vec<(Vec<&'static [u8]>, Framing)> = vec![
        (vec![b"abc"], Framing::Length(5)),
        (vec![b"5\r\nabc"], Framing::Chunked),
        (vec![b"5\r\nabcde\r\n"], Framing::Chunked),
        (vec![b"5\r\nabcdeXY0\r\n\r\n"], Framing::Chunked),
        (vec![b"z\r\n"], Framing::Chunked),
    ];
    for (pieces, framing) in cases {
        let shown = format!("{pieces:?}");
        let conn = connection_sending(pieces, true).await;
        let (read, kept) = body_from(conn, framing).await;
        assert!(read.is_err(), "{shown}: {read:?}");
        assert!(!kept, "{shown}");
    }
}

#[tokio::test]
async fn a_body_without_a_length_runs_to_the_close_and_is_not_kept() {
    let conn = connection_sending(vec![b"all ", b"of it"], true).await;
    let (read, kept) = body_from(conn, Framing::UntilClose).await;
    assert_eq!(read.expect("body"), b"all of it");
    assert!(!kept);
}

#[tokio::test]
async fn an_idle_connection_is_open_until_the_upstream_closes_or_writes_unasked() {
    let conn = connection_sending(vec![], false).await;
    assert!(conn.is_open());
    let conn = connection_sending(vec![], true).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!conn.is_open());
    let conn = connection_sending(vec![b"HTTP/1.1 200 OK\r\n"], false).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!conn.is_open());
}

#[tokio::test]
async fn an_endless_run_of_interim_answers_is_broken_off() {
    let interim: &'static [u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut conn = connection_sending(vec![interim; MAX_INTERIM + 1], false).await;
    assert_eq!(
        conn.exchange(b"GET / HTTP/1.1\r\n\r\n", false, None)
            .await
            .err(),
        Some(Failure::Broken)
    );
    let mut pieces = vec![interim; MAX_INTERIM];
    pieces.push(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let mut conn = connection_sending(pieces, false).await;
    let head = conn
        .exchange(b"GET / HTTP/1.1\r\n\r\n", false, None)
        .await
        .expect("answer");
    assert_eq!(head.response.status(), StatusCode::OK);
}

#[tokio::test]
async fn bytes_that_come_after_the_last_read_of_a_body_make_its_connection_unusable() {
    // The whole chunked body comes in one read; more bytes come after it,
    // while the body's end is still to be taken from what was read.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (more, send_more) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        stream
            .write_all(b"5\r\nhello\r\n0\r\n\r\n")
            .await
            .expect("write");
        let _ = send_more.await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\n")
            .await
            .expect("write");
        let _ = stream.read(&mut [0u8; 1]).await;
    });
    let conn = PlainConn::new(TcpStream::connect(address).await.expect("connect"));
    let kept = Arc::new(Mutex::new(None));
    let keep = kept.clone();
    let mut body = PlainBody::new(conn, Framing::Chunked, true, move |conn| {
        *keep.lock().expect("kept") = Some(conn);
    });
    let first = body.frame().await.expect("a frame").expect("data");
    assert_eq!(first.into_data().expect("data"), "hello");
    more.send(()).expect("upstream");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(body.frame().await.is_none());
    let conn = kept.lock().expect("kept").take().expect("kept at the end");
    assert!(!conn.is_open(), "bytes after the answer went unnoticed");
}
