//! The admin listener of a running `serve`: `/healthz`, `/readyz` and
//! `/metrics`, parsed as Prometheus text, with counters that move as
//! requests pass and are refused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use supervisor_gateway::mock_upstream::MockHandle;

use crate::helpers::*;

/// One sample line of the Prometheus text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text exposition format strictly: every sample
/// belongs to a family declared by a `# TYPE` line before it, names and
/// label names are valid, label values are quoted with escapes, and every
/// value is a number.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let valid_name = |name: &str| {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(valid_name(name), "family name {name:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "type {kind:?}"
            );
            families.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            assert!(line.starts_with("# HELP "), "comment {line:?}");
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(at) => line.split_at(at),
            None => panic!("sample without a value: {line:?}"),
        };
        assert!(valid_name(name), "sample name {name:?}");
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(inner) = rest.strip_prefix('{') {
            let (parsed, after) = parse_labels(inner);
            labels = parsed;
            rest = after;
        }
        let value: f64 = match rest.trim() {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            number => number.parse().expect("a number"),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| families.get(*base).is_some_and(|kind| kind == "histogram"))
            .unwrap_or(name);
        assert!(families.contains_key(family), "{name} has no # TYPE line");
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}

/// Parses `name="value",...}` and returns the labels and what follows the
/// closing brace.
fn parse_labels(text: &str) -> (BTreeMap<String, String>, &str) {
    let bytes = text.as_bytes();
    let mut labels = BTreeMap::new();
    let mut at = 0;
    loop {
        if bytes[at] == b'}' {
            return (labels, &text[at + 1..]);
        }
        let eq = at + text[at..].find('=').expect("label =");
        let name = &text[at..eq];
        assert!(
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "label name {name:?}"
        );
        assert_eq!(bytes[eq + 1], b'"', "quoted label value");
        let mut value = String::new();
        at = eq + 2;
        while bytes[at] != b'"' {
            if bytes[at] == b'\\' {
                value.push(if bytes[at + 1] == b'n' {
                    '\n'
                } else {
                    bytes[at + 1] as char
                });
                at += 2;
            } else {
                value.push(bytes[at] as char);
                at += 1;
            }
        }
        labels.insert(name.to_owned(), value);
        at += 1;
        if bytes[at] == b',' {
            at += 1;
        }
    }
}

/// The value of the sample with this name and these labels (0 if absent).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|sample| sample.name == name)
        .find(|sample| {
            labels
                .iter()
                .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(*value))
        })
        .map_or(0.0, |sample| sample.value)
}

async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(admin).await.expect("admin connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received))
        .await
        .expect("admin answers")
        .expect("read");
    let response = parse_response(&received);
    (
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    )
}

async fn scrape(admin: SocketAddr) -> (String, Vec<Sample>) {
    let (status, text) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    let samples = parse_prometheus(&text);
    (text, samples)
}

/// Scrapes until the unlabelled metric `name` reads `wanted`, for up to
/// 5 s, and returns the last scrape.
async fn scrape_until(admin: SocketAddr, name: &str, wanted: f64) -> Vec<Sample> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, samples) = scrape(admin).await;
        if value(&samples, name, &[]) == wanted || std::time::Instant::now() > deadline {
            return samples;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const REQUESTS: &str = "supervisor_gateway_requests_total";

/// `serve` on a config in `dir` with the admin listener on, and the admin
/// listener's address.
fn serve_with_admin(mock: &MockHandle, dir: &Path) -> (Served, SocketAddr) {
    serve_with_admin_and_limits(mock, dir, "")
}

/// The same, with more `limits` lines.
fn serve_with_admin_and_limits(
    mock: &MockHandle,
    dir: &Path,
    limits: &str,
) -> (Served, SocketAddr) {
    serve_text_with_admin(dir, &config_with_limits(mock.addr(), limits))
}

/// `serve` with the config `text`, its admin listener on a port of its own.
fn serve_text_with_admin(dir: &Path, text: &str) -> (Served, SocketAddr) {
    let text = text.replace("admin_listen: none", "admin_listen: 127.0.0.1:0");
    let path = write(dir, "gateway.yaml", &text);
    let served = spawn_serve(&path, "info");
    assert!(served.wait_for_log("admin=", 1, Duration::from_secs(10)));
    let admin: SocketAddr = served
        .log()
        .split("admin=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the admin address is logged")
        .parse()
        .expect("an address");
    (served, admin)
}

#[tokio::test]
async fn health_readiness_and_metrics_that_move_with_traffic() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("dir");
    let (served, admin) = serve_with_admin(&mock, dir.path());

    assert_eq!(admin_get(admin, "/healthz").await, (200, "ok\n".to_owned()));
    let (status, ready) = admin_get(admin, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert!(ready.contains("\"upstream\":\"reachable\""), "{ready}");
    let healthcheck = Command::new(BIN)
        .args(["healthcheck", "--admin", &admin.to_string()])
        .output()
        .expect("healthcheck runs");
    assert!(healthcheck.status.success());

    let (_, before) = scrape(admin).await;
    let allowed = [
        ("decision", "allowed"),
        ("step", "add-ons"),
        ("role", "backup"),
        ("status", "200"),
    ];
    let denied = [
        ("decision", "denied"),
        ("step", "default-deny"),
        ("role", "default"),
        ("status", "403"),
    ];
    let anonymous = [
        ("decision", "denied"),
        ("role", "anonymous"),
        ("status", "401"),
    ];
    for _ in 0..3 {
        let request = RawRequest::new("GET", "/backups").token(TOK_BACKUP);
        assert_eq!(served.send(&request).await.status, 200);
    }
    let refused = RawRequest::new("GET", "/backups").token(TOK_DEFAULT);
    assert_eq!(served.send(&refused).await.status, 403);
    let no_token = RawRequest::new("GET", "/backups");
    assert_eq!(served.send(&no_token).await.status, 401);

    // One connection held open, idle after its request.
    let mut held = TcpStream::connect(served.addr).await.expect("connect");
    let keep = RawRequest::new("GET", "/supervisor/ping")
        .header("Connection", "keep-alive")
        .to_bytes();
    held.write_all(&keep).await.expect("write");
    let mut buffer = [0u8; 4096];
    let read = held.read(&mut buffer).await.expect("read");
    assert!(read > 0);

    let (text, after) = scrape(admin).await;
    let moved = |labels: &[(&str, &str)]| {
        value(&after, REQUESTS, labels) - value(&before, REQUESTS, labels)
    };
    assert_eq!(moved(&allowed), 3.0, "{text}");
    assert_eq!(moved(&denied), 1.0, "{text}");
    assert_eq!(moved(&anonymous), 1.0, "{text}");
    let decisions = "supervisor_gateway_decision_duration_seconds_count";
    assert_eq!(
        value(&after, decisions, &[]) - value(&before, decisions, &[]),
        6.0
    );
    let upstream = "supervisor_gateway_upstream_duration_seconds_count";
    assert_eq!(
        value(&after, upstream, &[]) - value(&before, upstream, &[]),
        4.0
    );
    assert_eq!(
        value(&after, "supervisor_gateway_open_connections", &[]),
        1.0,
        "{text}"
    );
    for secret in [TOK_BACKUP, TOK_DEFAULT, TOK_ADMIN] {
        assert!(!text.contains(secret), "a token in the metrics");
    }
    assert!(
        !text.contains("local_backup") && !text.contains("/backups"),
        "{text}"
    );

    // The idle connection is parked: open, but no longer active; and it
    // still serves its next request.
    let parked = scrape_until(admin, "supervisor_gateway_active_connections", 0.0).await;
    assert_eq!(
        value(&parked, "supervisor_gateway_active_connections", &[]),
        0.0
    );
    assert_eq!(
        value(&parked, "supervisor_gateway_open_connections", &[]),
        1.0
    );
    held.write_all(&keep).await.expect("write");
    let read = held.read(&mut buffer).await.expect("read");
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));

    // A reload is counted; a closed connection is no longer open.
    drop(held);
    served.signal("HUP");
    assert!(served.wait_for_log("policy reloaded", 1, Duration::from_secs(10)));
    let samples = scrape_until(admin, "supervisor_gateway_open_connections", 0.0).await;
    assert_eq!(
        value(&samples, "supervisor_gateway_open_connections", &[]),
        0.0
    );
    let reloads = "supervisor_gateway_reloads_total";
    assert_eq!(value(&samples, reloads, &[("result", "ok")]), 1.0);
    assert_eq!(value(&samples, reloads, &[("result", "refused")]), 0.0);

    // With the upstream gone: not ready, and forwarding errors are counted.
    mock.stop().await;
    let (status, ready) = admin_get(admin, "/readyz").await;
    assert_eq!(status, 503, "{ready}");
    let request = RawRequest::new("GET", "/backups").token(TOK_BACKUP);
    assert_eq!(served.send(&request).await.status, 502);
    let (_, last) = scrape(admin).await;
    let errors = "supervisor_gateway_upstream_errors_total";
    assert_eq!(value(&last, errors, &[("kind", "unreachable")]), 1.0);

    let (code, _) = served.stop();
    assert_eq!(code, Some(0));
    assert!(
        TcpStream::connect(admin).await.is_err(),
        "the admin listener stops with the gateway"
    );
}

#[test]
fn the_parser_refuses_what_prometheus_would() {
    let good =
        "# HELP x_total A counter.\n# TYPE x_total counter\nx_total{a=\"1\",b=\"q\\\"uote\"} 3\n";
    let samples = parse_prometheus(good);
    assert_eq!(samples[0].labels["b"], "q\"uote");
    assert_eq!(samples[0].value, 3.0);
    for bad in [
        "x_total 1\n",                              // no TYPE
        "# TYPE x_total counter\nx_total{a=1} 1\n", // unquoted
        "# TYPE x_total counter\nx_total one\n",    // not a number
        "# TYPE 1x counter\n",                      // bad name
    ] {
        let result = std::panic::catch_unwind(|| parse_prometheus(bad));
        assert!(result.is_err(), "{bad:?} should not parse");
    }
}

#[tokio::test]
async fn past_256_active_connections_idle_ones_give_up_their_buffers_at_once() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("dir");
    let (served, admin) = serve_with_admin(&mock, dir.path());
    let ping = "GET /supervisor/ping HTTP/1.1\r\nHost: supervisor\r\n\r\n";
    let mut clients = Vec::new();
    for _ in 0..300 {
        let mut client = KeptAlive::connect(served.addr).await;
        client.write(ping).await;
        assert_eq!(client.answer().await.status, 200);
        clients.push(client);
    }
    // Without the limit all 300 would still hold their buffers for a second.
    let (text, samples) = scrape(admin).await;
    assert_eq!(
        value(&samples, "supervisor_gateway_open_connections", &[]),
        300.0,
        "{text}"
    );
    let active = value(&samples, "supervisor_gateway_active_connections", &[]);
    assert!(active <= 256.0, "{active} active connections");
    for client in &mut clients {
        client.write(ping).await;
        assert_eq!(client.answer().await.status, 200);
    }
    drop(clients);
    let (code, _) = served.stop();
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn head_and_send_timeouts_are_counted_and_a_send_timeout_is_logged() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("dir");
    let limits = "  send_timeout_ms: 300\n  header_read_timeout_ms: 300\n";
    let (served, admin) = serve_with_admin_and_limits(&mock, dir.path(), limits);
    let timeouts = "supervisor_gateway_client_timeouts_total";
    let (_, before) = scrape(admin).await;
    assert_eq!(value(&before, timeouts, &[("timeout", "send")]), 0.0);
    assert_eq!(value(&before, timeouts, &[("timeout", "head")]), 0.0);

    // A request with a body, then nothing: after a body the next head's
    // time is the keep-alive time, and its end is no head timeout.
    let mut idle = TcpStream::connect(served.addr).await.expect("connect");
    let post = RawRequest::new("POST", "/addons/self/options")
        .token(TOK_DEFAULT)
        .header("Connection", "keep-alive")
        .body(b"{}")
        .to_bytes();
    idle.write_all(&post).await.expect("write");
    // A head that never ends, and a large download never read.
    let mut partial = TcpStream::connect(served.addr).await.expect("connect");
    partial
        .write_all(b"GET /os/info HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let mut unread = TcpStream::connect(served.addr).await.expect("connect");
    let download = RawRequest::new("GET", "/backups/a1b2c3d4/download?size=1073741824")
        .token(TOK_BACKUP)
        .to_bytes();
    unread.write_all(&download).await.expect("write");

    // (The mock runs on this test's thread: wait without blocking it.)
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, samples) = scrape(admin).await;
        let counted = ["send", "head"]
            .iter()
            .all(|kind| value(&samples, timeouts, &[("timeout", kind)]) > 0.0);
        if counted || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed_within(&mut idle, Duration::from_secs(5)).await);
    let (_, samples) = scrape(admin).await;
    assert_eq!(value(&samples, timeouts, &[("timeout", "send")]), 1.0);
    assert_eq!(value(&samples, timeouts, &[("timeout", "head")]), 1.0);
    let log = served.log();
    assert!(
        log.contains("reset: the client took none of its answer"),
        "{log}"
    );
    assert!(!log.contains(TOK_BACKUP));
    let (code, _) = served.stop();
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn requests_the_http_parser_refuses_are_counted_and_logged() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("dir");
    let (served, admin) = serve_with_admin(&mock, dir.path());
    let name = "supervisor_gateway_unparsed_requests_total";
    let (_, before) = scrape(admin).await;
    assert_eq!(value(&before, name, &[("reason", "malformed")]), 0.0);
    assert!(before.iter().any(|sample| sample.name == name));

    // A control byte in a header value; then a head over max_header_bytes.
    let malformed = b"GET /os/info HTTP/1.1\r\nHost: supervisor\r\nX-Note: a\x01b\r\n\r\n".to_vec();
    let oversize = format!(
        "GET /os/info HTTP/1.1\r\nHost: supervisor\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(40 * 1024)
    )
    .into_bytes();
    for (bytes, status) in [(malformed, 400), (oversize, 431)] {
        assert_eq!(send_raw(served.addr, &bytes).await.status, status);
    }
    assert!(served.wait_for_log("answered 400 by the HTTP parser", 1, Duration::from_secs(5)));
    assert!(served.wait_for_log("answered 431 by the HTTP parser", 1, Duration::from_secs(5)));
    let (_, after) = scrape(admin).await;
    assert_eq!(value(&after, name, &[("reason", "malformed")]), 1.0);
    assert_eq!(value(&after, name, &[("reason", "too_large")]), 1.0);
    assert_eq!(value(&after, REQUESTS, &[]), 0.0, "never decided");
    let (code, _) = served.stop();
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn a_client_beginning_in_http2_gets_a_goaway_saying_http11_is_required() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("dir");
    let (served, admin) = serve_with_admin(&mock, dir.path());
    let name = "supervisor_gateway_unparsed_requests_total";
    assert_eq!(
        value(&scrape(admin).await.1, name, &[("reason", "http2")]),
        0.0
    );

    // As curl --http2-prior-knowledge begins: the preface (RFC 9113, 3.4)
    // and its SETTINGS; then, after the gateway has answered, the frames of
    // a first request, which it reads and drops before it closes. (Whether
    // it does cannot be seen from here: Linux hands a client the bytes it
    // received before a reset, and on loopback they all are.)
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]);
    let request = [0, 0, 4, 1, 5, 0, 0, 0, 1, 0x82, 0x86, 0x84, 0x41];
    let mut stream = tokio::net::TcpStream::connect(served.addr)
        .await
        .expect("connect");
    stream.write_all(&preface).await.expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(&request).await.expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got)).await;
    assert!(
        matches!(read, Ok(Ok(_))),
        "closed cleanly, not reset: {read:?}"
    );
    // An empty SETTINGS (type 4), then GOAWAY (type 7, 8 bytes) with last
    // stream 0 and error 0xd, HTTP_1_1_REQUIRED (RFC 9113, 6.5, 6.8, 7).
    let expected: [u8; 26] = [
        0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 13,
    ];
    assert_eq!(got, expected);

    assert!(served.wait_for_log(
        "answered GOAWAY HTTP_1_1_REQUIRED",
        1,
        Duration::from_secs(5)
    ));
    let (_, after) = scrape(admin).await;
    assert_eq!(value(&after, name, &[("reason", "http2")]), 1.0);
    assert_eq!(value(&after, REQUESTS, &[]), 0.0, "never decided");
    let (code, _) = served.stop();
    assert_eq!(code, Some(0));
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn audit_lines_that_cannot_be_written_are_counted_and_said_once() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("dir");
    // Every write to /dev/full fails (no space left on the device).
    let text = format!("{}audit_log: /dev/full\n", test_config_yaml(mock.addr()));
    let (served, admin) = serve_text_with_admin(dir.path(), &text);
    let lost = "supervisor_gateway_audit_dropped_total";
    assert_eq!(value(&scrape(admin).await.1, lost, &[]), 0.0);
    for _ in 0..3 {
        let backups = RawRequest::new("GET", "/backups").token(TOK_BACKUP);
        assert_eq!(served.send(&backups).await.status, 200);
    }
    let samples = scrape_until(admin, lost, 3.0).await;
    assert_eq!(value(&samples, lost, &[]), 3.0);
    // (The line may come after the count: the process's log is read as
    // it writes it.)
    assert!(served.wait_for_log("cannot write the audit log", 1, Duration::from_secs(5)));
    let log = served.log();
    assert_eq!(
        log.matches("cannot write the audit log").count(),
        1,
        "{log}"
    );
    let (code, _) = served.stop();
    assert_eq!(code, Some(0));
}
