//! A measuring stick for `benches/load.sh`, not a proxy to deploy: the
//! least a tokio proxy that forwards as SPEC.md asks (the client's headers
//! plus `X-Forwarded-For`, `-Proto` and `-Host`) can spend on a bodiless
//! GET, so that the gateway's figures can be read against what any proxy
//! built this way costs in front of the same upstream on the same machine.
//!
//! It makes no decision and enforces no limit, timeout or check beyond what
//! it needs to frame the exchange: one current-thread runtime a thread, all
//! accepting from one listener; heads parsed with httparse on both sides; a
//! pool of upstream connections a thread; each answer written with one
//! system call. Anything but a GET or HEAD without a body, and any answer
//! not framed by `Content-Length`, closes the connection. Both addresses
//! must be on loopback.
//!
//! ```text
//! cargo run --release --example floor_proxy -- 127.0.0.1:8090 127.0.0.1:8081 [THREADS]
//! ```

use std::cell::RefCell;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The most headers a head may have here.
const MAX_HEADERS: usize = 64;
/// The largest head read, either way.
const MAX_HEAD: usize = 64 * 1024;

thread_local! {
    static IDLE_UPSTREAM: RefCell<Vec<TcpStream>> = const { RefCell::new(Vec::new()) };
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: floor_proxy LISTEN UPSTREAM [THREADS] (both on loopback)");
        std::process::exit(2);
    };
    let address = |text: &str| -> SocketAddr {
        match text.parse::<SocketAddr>() {
            Ok(address) if address.ip().is_loopback() => address,
            _ => {
                eprintln!("floor_proxy: {text} is not an address on loopback");
                std::process::exit(2);
            }
        }
    };
    let (listen, upstream) = (address(&listen), address(&upstream));
    let threads = args.next().and_then(|n| n.parse().ok()).unwrap_or(2);
    let listener = std::net::TcpListener::bind(listen).expect("bind the listening address");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let listener = listener.try_clone().expect("a copy of the listener");
            std::thread::spawn(move || run(listener, upstream))
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
}

/// One thread's runtime: accepts and serves connections on it alone.
fn run(listener: std::net::TcpListener, upstream: SocketAddr) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = TcpListener::from_std(listener).expect("a tokio listener");
        loop {
            let Ok((client, peer)) = listener.accept().await else {
                continue;
            };
            let _ = client.set_nodelay(true);
            tokio::task::spawn_local(serve(client, peer, upstream));
        }
    });
}

/// Reads into `buffer` until it holds a whole head: its length, or `None`
/// for a closed connection, a malformed head or one too large.
async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>, request: bool) -> Option<usize> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let parsed = if request {
            httparse::Request::new(&mut headers).parse(buffer)
        } else {
            httparse::Response::new(&mut headers).parse(buffer)
        };
        match parsed {
            Ok(httparse::Status::Complete(length)) => return Some(length),
            Ok(httparse::Status::Partial) if buffer.len() < MAX_HEAD => {}
            _ => return None,
        }
        let mut chunk = [0u8; 16 * 1024];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
}

/// Headers a proxy does not pass on, or sets itself.
fn dropped(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    ]
    .iter()
    .any(|dropped| name.eq_ignore_ascii_case(dropped))
}

/// The upstream head for a client's head, or `None` for a request this
/// proxy does not carry (not a bodiless GET or HEAD).
fn upstream_head(head: &[u8], peer: &str, out: &mut Vec<u8>) -> Option<()> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    request.parse(head).ok()?;
    let method = request.method?;
    if method != "GET" && method != "HEAD" {
        return None;
    }
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(request.path?.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut host: &[u8] = b"";
    for header in request.headers.iter() {
        let name = header.name;
        let has_body = name.eq_ignore_ascii_case("transfer-encoding")
            || (name.eq_ignore_ascii_case("content-length") && header.value != b"0");
        if has_body {
            return None;
        }
        if dropped(name) {
            continue;
        }
        if name.eq_ignore_ascii_case("host") {
            host = header.value;
        }
        // In lower case, as the gateway sends them (its header map keeps
        // them so): the upstream then reads the same bytes behind both.
        out.extend(name.bytes().map(|byte| byte.to_ascii_lowercase()));
        out.extend_from_slice(b": ");
        out.extend_from_slice(header.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    out.extend_from_slice(peer.as_bytes());
    out.extend_from_slice(b"\r\nx-forwarded-proto: http\r\nx-forwarded-host: ");
    out.extend_from_slice(host);
    out.extend_from_slice(b"\r\n\r\n");
    Some(())
}

/// The `Content-Length` of an answer head; `None` if it has none, or is
/// chunked.
fn answer_length(head: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut answer = httparse::Response::new(&mut headers);
    answer.parse(head).ok()?;
    let mut length = None;
    for header in answer.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return None;
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(header.value).ok()?.trim().parse().ok();
        }
    }
    length
}

/// One upstream exchange: the whole answer in `answer`, and the connection
/// for the next request; `None` on any fault.
async fn exchange(
    upstream: SocketAddr,
    head: &[u8],
    head_only: bool,
    answer: &mut Vec<u8>,
) -> Option<TcpStream> {
    let idle = IDLE_UPSTREAM.with(|idle| idle.borrow_mut().pop());
    let mut connection = match idle {
        Some(connection) => connection,
        None => {
            let connection = TcpStream::connect(upstream).await.ok()?;
            connection.set_nodelay(true).ok()?;
            connection
        }
    };
    connection.write_all(head).await.ok()?;
    answer.clear();
    let head_length = read_head(&mut connection, answer, false).await?;
    let body = if head_only {
        0
    } else {
        answer_length(&answer[..head_length])?
    };
    while answer.len() < head_length + body {
        let mut chunk = [0u8; 16 * 1024];
        match connection.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => answer.extend_from_slice(&chunk[..read]),
        }
    }
    // Bytes past the answer would be the next answer's: not reused then.
    (answer.len() == head_length + body).then_some(connection)
}

/// Serves one client connection, request after request.
async fn serve(mut client: TcpStream, peer: SocketAddr, upstream: SocketAddr) {
    let peer = peer.ip().to_string();
    let (mut request, mut head, mut answer) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        let Some(length) = read_head(&mut client, &mut request, true).await else {
            return;
        };
        if upstream_head(&request[..length], &peer, &mut head).is_none() {
            return;
        }
        let head_only = request.starts_with(b"HEAD ");
        request.drain(..length);
        let Some(connection) = exchange(upstream, &head, head_only, &mut answer).await else {
            return;
        };
        IDLE_UPSTREAM.with(|idle| idle.borrow_mut().push(connection));
        if client.write_all(&answer).await.is_err() {
            return;
        }
    }
}
