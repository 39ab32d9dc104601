//! The probes of ../shared/hostile-requests.md and their variants, sent as
//! raw bytes: each gets its expected refusal and the upstream sees nothing.

use crate::helpers::*;

struct Probe {
    name: String,
    bytes: Vec<u8>,
    /// Any of these statuses passes.
    expect: &'static [u16],
}

/// A request line, header lines and a body, joined with CRLF; adds Host and
/// `Connection: close`, and Content-Length when a body is given.
fn wire(line: &str, headers: &[String], body: &str) -> Vec<u8> {
    let mut out = format!("{line}\r\nHost: supervisor\r\n").into_bytes();
    for header in headers {
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

fn token(value: &str) -> String {
    format!("X-Supervisor-Token: {value}")
}

const TOGGLE_BODY: &str = r#"{"protected":false}"#;

fn probe(name: impl Into<String>, bytes: Vec<u8>, expect: &'static [u16]) -> Probe {
    Probe {
        name: name.into(),
        bytes,
        expect,
    }
}

/// B01 and B02: encoded dot segments and control bytes through prefixes that
/// are open without a token or to every add-on.
fn traversal_probes() -> Vec<Probe> {
    let mut probes = Vec::new();
    let dots = [
        "%252e", "%2e%2e", ".%2e", "%2E.", "%25252e", "%2E%2e", ".%252E",
    ];
    for dot in dots {
        let dotdot = if dot.len() > 5 || dot.starts_with("%2") && dot.len() == 6 {
            dot.to_owned()
        } else {
            format!(".{dot}")
        };
        let dotdot = if dot.contains('.') || dot.matches('%').count() == 2 {
            dot.to_owned()
        } else {
            dotdot
        };
        let targets = [
            (
                format!("POST /discovery/{dotdot}/addons/core_ssh/security HTTP/1.1"),
                Some(TOK_NOAPI),
                TOGGLE_BODY,
            ),
            (
                format!("GET /ingress/abc123/{dotdot}/{dotdot}/backups HTTP/1.1"),
                None,
                "",
            ),
            (
                format!("GET /core/api/{dotdot}/{dotdot}/os/info HTTP/1.1"),
                None,
                "",
            ),
            (
                format!("POST /addons/self/{dotdot}/core_ssh/security HTTP/1.1"),
                Some(TOK_DEFAULT),
                TOGGLE_BODY,
            ),
            (
                format!("POST /v2/discovery/{dotdot}/v2/apps/core_ssh/security HTTP/1.1"),
                Some(TOK_NOAPI),
                TOGGLE_BODY,
            ),
        ];
        for (line, tok, body) in targets {
            let headers: Vec<String> = tok.map(token).into_iter().collect();
            probes.push(probe(
                format!("B01 {line}"),
                wire(&line, &headers, body),
                &[400, 401, 403],
            ));
        }
    }
    for control in ["%09", "%0d", "%0a", "%00", "%7f", "%0D%0A", "%1b"] {
        let cases = [
            (
                format!("POST /discovery/.{control}./addons/core_ssh/security HTTP/1.1"),
                Some(TOK_NOAPI),
                TOGGLE_BODY,
            ),
            (
                format!("GET /ingress/abc123/.{control}./.{control}./supervisor/info HTTP/1.1"),
                None,
                "",
            ),
            (
                format!("POST /addons/self/.{control}./core_ssh/security HTTP/1.1"),
                Some(TOK_DEFAULT),
                TOGGLE_BODY,
            ),
        ];
        for (line, tok, body) in cases {
            let headers: Vec<String> = tok.map(token).into_iter().collect();
            probes.push(probe(
                format!("B02 {line}"),
                wire(&line, &headers, body),
                &[400],
            ));
        }
    }
    probes
}

/// B05, B06: raw dot segments, escaped separators, doubled and trailing
/// slashes, path parameters; and invented routes under default deny.
fn spelling_probes() -> Vec<Probe> {
    let manager = [token(TOK_MANAGER)];
    let default = [token(TOK_DEFAULT)];
    let cases: Vec<(&str, &[String], &'static [u16])> = vec![
        (
            "POST /addons/self/../core_ssh/security HTTP/1.1",
            &default,
            &[400, 403],
        ),
        ("POST /os/./datadisk/wipe HTTP/1.1", &manager, &[400, 403]),
        ("POST /./os/datadisk/wipe HTTP/1.1", &manager, &[400, 403]),
        (
            "POST /os/datadisk/x/../wipe HTTP/1.1",
            &manager,
            &[400, 403],
        ),
        (
            "POST /v2/os/datadisk/x/../wipe HTTP/1.1",
            &manager,
            &[400, 403],
        ),
        ("POST /made/up/route HTTP/1.1", &default, &[403]),
        ("DELETE /backups/slug123 HTTP/1.1", &default, &[403]),
        ("POST /os/datadisk%2Fwipe HTTP/1.1", &manager, &[400]),
        ("POST //os/datadisk/wipe HTTP/1.1", &manager, &[400]),
        ("POST /os//datadisk/wipe HTTP/1.1", &manager, &[400]),
        ("POST /os/datadisk/wipe/ HTTP/1.1", &manager, &[403]),
        ("POST /v2/os/datadisk/wipe/ HTTP/1.1", &manager, &[403]),
        ("POST /os/datadisk%2fwipe HTTP/1.1", &manager, &[400]),
        ("POST /os%5Cdatadisk%5Cwipe HTTP/1.1", &manager, &[400]),
        ("POST /os/datadisk\\wipe HTTP/1.1", &manager, &[400]),
        ("POST /addons/core_ssh/security/ HTTP/1.1", &manager, &[403]),
        (
            "POST /addons/core_ssh%2Fsecurity HTTP/1.1",
            &manager,
            &[400],
        ),
        (
            "POST /addons/core_ssh/security;x=1 HTTP/1.1",
            &manager,
            &[400, 403],
        ),
        (
            "POST /addons/core_ssh/%73ecurity HTTP/1.1",
            &manager,
            &[403],
        ),
        ("POST /addons/core_ssh/SECURITY HTTP/1.1", &manager, &[403]),
        ("POST /addons/self/Security HTTP/1.1", &default, &[403]),
        ("POST /os/datadisk/WIPE HTTP/1.1", &manager, &[403]),
        (
            "POST /v2/apps/core_ssh/security/ HTTP/1.1",
            &manager,
            &[403],
        ),
        ("POST /v2/apps/self/security HTTP/1.1", &manager, &[403]),
        (
            "POST /addons/core_ssh/security%00 HTTP/1.1",
            &manager,
            &[400],
        ),
        (
            "POST /addons/core_ssh/security%20 HTTP/1.1",
            &manager,
            &[403],
        ),
        (
            "POST /addons/core_ssh/security#frag HTTP/1.1",
            &manager,
            &[400, 403],
        ),
        (
            "POST /addons/core_ssh/security?x=/../ HTTP/1.1",
            &manager,
            &[400],
        ),
        (
            "GET http://supervisor/addons/core_ssh/info HTTP/1.1",
            &default,
            &[400],
        ),
        ("OPTIONS * HTTP/1.1", &default, &[400]),
        ("CONNECT supervisor:80 HTTP/1.1", &default, &[400, 405]),
        ("GET /core/api/%2e%2e%2fhassio HTTP/1.1", &default, &[400]),
        ("GET /core/api/hassio%5Fauth HTTP/1.1", &default, &[403]),
        ("GET /core/api/Hassio HTTP/1.1", &default, &[403]),
        (
            "GET /info?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E HTTP/1.1",
            &default,
            &[400],
        ),
        (
            "GET /info?q=union%20all%20select%201 HTTP/1.1",
            &default,
            &[400],
        ),
        ("GET /proc/self/environ HTTP/1.1", &default, &[400]),
        ("GET /info?v=/a/b HTTP/1.1", &default, &[400]),
    ];
    cases
        .into_iter()
        .map(|(line, headers, expect)| {
            let body = if line.starts_with("POST") {
                TOGGLE_BODY
            } else {
                ""
            };
            probe(format!("B05/B06 {line}"), wire(line, headers, body), expect)
        })
        .collect()
}

/// B03, B10, B13, B16, B19: headers that try to change who is calling, what
/// is checked or which method is judged.
fn header_probes() -> Vec<Probe> {
    let toggle = "POST /addons/core_ssh/security HTTP/1.1";
    let info = "GET /addons/self/info HTTP/1.1";
    let long_token = format!("Authorization: Bearer {}", "A".repeat(64 * 1024));
    let cases: Vec<(&str, &str, Vec<String>, &'static [u16])> = vec![
        ("B03 spoofed identity", toggle, vec![token(TOK_DEFAULT), "X-Hass-Is-Admin: 1".into(), "X-Hass-User-ID: 0123456789abcdef".into(), "X-Ingress-Path: /api/hassio_ingress/abc".into(), "X-Remote-User-Id: owner".into(), "X-Forwarded-For: 172.30.32.2".into(), "X-Real-IP: 172.30.32.1".into()], &[403]),
        ("B10 connection drops credentials", info, vec![token(TOK_DEFAULT), "Connection: keep-alive, X-Supervisor-Token, Authorization, X-Forwarded-For, X-Gateway-Addon, X-Gateway-Role".into()], &[400]),
        ("B10 connection on the toggle", toggle, vec![token(TOK_DEFAULT), "Connection: X-Gateway-Role".into()], &[400, 403]),
        ("B13 upgrade on the toggle", toggle, vec![token(TOK_DEFAULT), "Connection: Upgrade".into(), "Upgrade: websocket".into(), "Sec-WebSocket-Version: 13".into(), "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".into()], &[403]),
        ("B13 websocket without homeassistant_api", "GET /core/websocket HTTP/1.1", vec![token(TOK_NOAPI), "Upgrade: WebSocket".into(), "Connection: keep-alive, UPGRADE".into(), "Sec-WebSocket-Version: 13".into(), "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".into()], &[401]),
        ("B13 websocket v2 without homeassistant_api", "GET /v2/core/websocket HTTP/1.1", vec![token(TOK_DEFAULT), "Upgrade: websocket".into(), "Connection: Upgrade".into()], &[401, 403]),
        ("B16 empty supervisor token", info, vec!["X-Supervisor-Token:".into()], &[401]),
        ("B16 bearer without token", info, vec!["Authorization: Bearer".into()], &[401]),
        ("B16 64 KiB bearer", info, vec![long_token], &[400, 431]),
        ("B16 two supervisor tokens", info, vec![token(TOK_DEFAULT), token(TOK_ADMIN)], &[400]),
        ("B16 token and a different bearer", info, vec![token(TOK_DEFAULT), format!("Authorization: Bearer {TOK_MANAGER}")], &[400]),
        ("B16 basic scheme", info, vec![format!("Authorization: Basic {TOK_DEFAULT}")], &[401]),
        ("B16 hassio key and supervisor token differ", info, vec![token(TOK_DEFAULT), format!("X-Hassio-Key: {TOK_ADMIN}")], &[400]),
        ("B16 underscore token header", info, vec![format!("X_Supervisor_Token: {TOK_ADMIN}")], &[400]),
        ("B19 head of a download as default", "HEAD /backups/slug123/download HTTP/1.1", vec![token(TOK_DEFAULT)], &[403]),
        ("B19 options without token", "OPTIONS /addons/core_ssh/security HTTP/1.1", vec![], &[401]),
        ("B19 preflight without token", "OPTIONS /addons/core_ssh/security HTTP/1.1", vec!["Origin: http://evil".into(), "Access-Control-Request-Method: POST".into()], &[401]),
        ("B19 method override", "GET /os/datadisk/wipe HTTP/1.1", vec![token(TOK_MANAGER), "X-HTTP-Method-Override: POST".into()], &[400, 403]),
        ("B19 lower-case method", "post /os/datadisk/wipe HTTP/1.1", vec![token(TOK_MANAGER)], &[400, 403, 405]),
        ("B19 invented method", "WIPE /os/datadisk/wipe HTTP/1.1", vec![token(TOK_MANAGER)], &[400, 403, 405]),
        ("B19 trace", "TRACE /info HTTP/1.1", vec![token(TOK_ADMIN)], &[400, 405]),
        ("B18 log injection in the path", "GET /addons/self/info%0d%0aX-Injected:%20yes HTTP/1.1", vec![token(TOK_DEFAULT)], &[400]),
    ];
    cases
        .into_iter()
        .map(|(name, line, headers, expect)| {
            let body = if line.starts_with("POST") {
                TOGGLE_BODY
            } else {
                ""
            };
            probe(name, wire(line, &headers, body), expect)
        })
        .collect()
}

/// B16: a token that is not UTF-8 must be refused without a 5xx.
fn malformed_token_probe() -> Probe {
    let mut bytes =
        b"GET /addons/self/info HTTP/1.1\r\nHost: supervisor\r\nAuthorization: Bearer ".to_vec();
    bytes.extend_from_slice(b"\xff\xfe\x80");
    bytes.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    probe("B16 invalid UTF-8 bearer", bytes, &[400, 401])
}

#[tokio::test]
async fn every_hostile_probe_is_refused_and_never_reaches_the_upstream() {
    let gateway = TestGateway::start().await;
    let mut probes = traversal_probes();
    probes.extend(spelling_probes());
    probes.extend(header_probes());
    probes.push(malformed_token_probe());
    assert!(probes.len() >= 60, "only {} probes", probes.len());

    let mut failures = Vec::new();
    for probe in &probes {
        let response = send_raw(gateway.addr, &probe.bytes).await;
        let seen = gateway.upstream_saw();
        if !probe.expect.contains(&response.status) {
            failures.push(format!(
                "{}: status {} not in {:?}",
                probe.name, response.status, probe.expect
            ));
        }
        if !seen.is_empty() {
            failures.push(format!(
                "{}: upstream saw {} {}",
                probe.name, seen[0].method, seen[0].path
            ));
        }
        let body = String::from_utf8_lossy(&response.body);
        if ALL_TOKENS.iter().any(|token| body.contains(&token[..12])) {
            failures.push(format!("{}: a token is echoed in the body", probe.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} probes failed:\n{}",
        failures.len(),
        probes.len(),
        failures.join("\n")
    );
}

/// B12: the smuggled request inside a chunk, 0x84 = 132 bytes.
const SMUGGLED: &str = "POST /addons/core_ssh/security HTTP/1.1\r\nHost: supervisor\r\nContent-Type: application/json\r\nContent-Length: 19\r\n\r\n{\"protected\":false}";

fn framing_probe(framing: &[&str]) -> Vec<u8> {
    let mut out = format!(
        "POST /addons/self/options HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_DEFAULT}\r\nContent-Type: application/json\r\n"
    );
    for line in framing {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "\r\n{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n",
        SMUGGLED.len()
    ));
    out.into_bytes()
}

#[tokio::test]
async fn conflicting_framing_never_smuggles_a_second_request() {
    assert_eq!(SMUGGLED.len(), 0x84);
    let gateway = TestGateway::start().await;
    let variants: [&[&str]; 9] = [
        &["Content-Length: 4", "Transfer-Encoding: chunked"],
        &["Transfer-Encoding: chunked", "Content-Length: 4"],
        &["Content-Length: 4", "Transfer-Encoding: chunked, identity"],
        &["Content-Length: 4", "Transfer-Encoding : chunked"],
        &["Content-Length: 4", "Transfer-Encoding: xchunked"],
        &["Content-Length: 4", "Content-Length: 143"],
        &["Content-Length: +4"],
        &["Transfer-Encoding: gzip, chunked"],
        &["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
    ];
    for framing in variants {
        let response = send_raw(gateway.addr, &framing_probe(framing)).await;
        let seen = gateway.upstream_saw();
        assert!(
            seen.len() <= 1,
            "{framing:?}: upstream saw {} requests",
            seen.len()
        );
        assert!(
            seen.iter().all(|r| !r.path.contains("security")),
            "{framing:?}: the smuggled request reached the upstream"
        );
        match response.status {
            400 => assert!(seen.is_empty(), "{framing:?}: refused but forwarded"),
            200 => {
                assert_eq!(
                    response.header("connection"),
                    Some("close"),
                    "{framing:?}: kept alive"
                );
                let one = &seen[0];
                assert_eq!(
                    one.body_len, 0x84,
                    "{framing:?}: body judged by chunks only"
                );
                let content_lengths = one
                    .headers
                    .iter()
                    .filter(|(n, _)| n == "content-length")
                    .count();
                let chunked = one.headers.iter().any(|(n, _)| n == "transfer-encoding");
                assert!(
                    content_lengths + usize::from(chunked) == 1,
                    "{framing:?}: one framing header"
                );
            }
            other => panic!("{framing:?}: status {other}"),
        }
    }
}

#[tokio::test]
async fn after_a_refused_upgrade_the_next_request_is_judged_on_its_own() {
    let gateway = TestGateway::start().await;
    let first = format!(
        "GET /core/websocket HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_NOAPI}\r\nUpgrade: WebSocket\r\nConnection: keep-alive, UPGRADE\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let second =
        "GET /addons/core_ssh/info HTTP/1.1\r\nHost: supervisor\r\nConnection: close\r\n\r\n";
    let received = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(gateway.addr)
            .await
            .expect("connect");
        stream
            .write_all(format!("{first}{second}").as_bytes())
            .await
            .expect("write");
        let mut received = Vec::new();
        let read = stream.read_to_end(&mut received);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), read).await;
        String::from_utf8_lossy(&received).into_owned()
    };
    let statuses: Vec<&str> = received
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|part| &part[..3])
        .collect();
    assert_eq!(statuses.first(), Some(&"401"), "{received}");
    assert!(
        statuses.len() == 1 || statuses[1] == "401",
        "second request judged alone: {statuses:?}"
    );
    assert_upstream_silent(&gateway, "refused upgrade");
}
