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
