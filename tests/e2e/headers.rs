//! Header hygiene: identity and forwarding headers from the client never
//! reach the upstream; the gateway sets its own after deleting theirs.

use crate::helpers::*;

fn values<'a>(seen: &'a supervisor_gateway::mock_upstream::Recorded, name: &str) -> Vec<&'a [u8]> {
    seen.headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
        .collect()
}

fn spoofing(request: RawRequest<'static>) -> RawRequest<'static> {
    request
        .header("X-Hass-Is-Admin", "1")
        .header("X-Hass-User-ID", "0123456789abcdef")
        .header("X_Hass_Source", "spoof")
        .header("X-Ingress-Path", "/api/hassio_ingress/abc123")
        .header("X-Remote-User-Id", "owner-placeholder")
        .header("X-Forwarded-For", "172.30.32.2")
        .header("X-Forwarded-Host", "evil")
        .header("Forwarded", "for=172.30.32.2")
        .header("X-Real-IP", "172.30.32.1")
        .header("X-Gateway-Role", "admin")
        .header("x.gateway.addon", "local_admin")
}

#[tokio::test]
async fn spoofed_identity_headers_do_not_open_the_toggle() {
    let gateway = TestGateway::start().await;
    let request = spoofing(RawRequest::new("POST", "/addons/core_ssh/security"))
        .token(TOK_DEFAULT)
        .header("Content-Type", "application/json")
        .body(br#"{"protected":false}"#);
    let response = gateway.send(&request).await;
    assert_refused(&response, 403, "spoofed toggle");
    assert_upstream_silent(&gateway, "spoofed toggle");
}

#[tokio::test]
async fn the_upstream_sees_only_the_gateways_identity_and_forwarding_headers() {
    let gateway = TestGateway::start().await;
    let request = spoofing(RawRequest::new("GET", "/addons/self/info")).token(TOK_DEFAULT);
    let response = gateway.send(&request).await;
    assert_eq!(response.status, 200);
    let seen = &gateway.upstream_saw()[0];

    for name in [
        "x-hass-is-admin",
        "x-hass-user-id",
        "x_hass_source",
        "x-ingress-path",
        "x-remote-user-id",
        "forwarded",
        "x-real-ip",
        "x.gateway.addon",
    ] {
        assert!(values(seen, name).is_empty(), "{name} reached the upstream");
    }
    assert_eq!(values(seen, "x-forwarded-for"), [b"127.0.0.1"]);
    assert_eq!(values(seen, "x-forwarded-host"), [b"supervisor"]);
    assert_eq!(values(seen, "x-forwarded-proto"), [b"http"]);
    assert_eq!(values(seen, "x-gateway-caller"), [b"addon"]);
    assert_eq!(values(seen, "x-gateway-addon"), [b"local_probe"]);
    assert_eq!(values(seen, "x-gateway-role"), [b"default"]);
}

#[tokio::test]
async fn without_upstream_token_the_identity_headers_are_sent_only_when_asked_for() {
    // The test config asks for them (the mock learns its caller from them);
    // by default the upstream checks the caller's own token and is told
    // nothing more, as the SPEC has it.
    let mock = start_mock().await;
    let text = test_config_yaml(mock.addr()).replace("identity_headers: true\n", "");
    assert!(!text.contains("identity_headers"));
    let config =
        supervisor_gateway::config::Config::from_yaml(&text, "test config").expect("config");
    let gateway = TestGateway::with_config(config, mock).await;
    let request = spoofing(RawRequest::new("GET", "/os/info")).token(TOK_DEFAULT);
    assert_eq!(gateway.send(&request).await.status, 200);
    let seen = &gateway.upstream_saw()[0];
    for name in supervisor_gateway::forwarding::IDENTITY_HEADERS {
        assert!(values(seen, name).is_empty(), "{name} reached the upstream");
    }
    assert_eq!(values(seen, "x-supervisor-token"), [TOK_DEFAULT.as_bytes()]);
    assert_eq!(values(seen, "x-forwarded-for"), [b"127.0.0.1"]);
}

#[tokio::test]
async fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
    let gateway = TestGateway::start().await;
    let request = RawRequest::new("GET", "/addons/self/info")
        .token(TOK_DEFAULT)
        .header("Connection", "close, X-Trace-Hop")
        .header("X-Trace-Hop", "1")
        .header("Keep-Alive", "timeout=5")
        .header("TE", "trailers")
        .header("Proxy-Authorization", "Basic Zm9vOmJhcg==")
        .header("X-Kept", "yes");
    assert_eq!(gateway.send(&request).await.status, 200);
    let seen = &gateway.upstream_saw()[0];
    for name in ["x-trace-hop", "keep-alive", "te", "proxy-authorization"] {
        assert!(values(seen, name).is_empty(), "{name} reached the upstream");
    }
    assert_eq!(values(seen, "x-kept"), [b"yes"]);
}

#[tokio::test]
async fn connection_naming_a_header_the_gateway_relies_on_is_refused() {
    let gateway = TestGateway::start().await;
    for named in [
        "X-Supervisor-Token",
        "Authorization",
        "X-Forwarded-For",
        "X-Gateway-Addon",
        "Host",
    ] {
        let request = RawRequest::new("GET", "/addons/self/info")
            .token(TOK_DEFAULT)
            .header("Connection", format!("keep-alive, {named}, close"));
        assert_refused(&gateway.send(&request).await, 400, named);
        assert_upstream_silent(&gateway, named);
    }
}

#[tokio::test]
async fn conflicting_repeated_and_oddly_spelled_token_headers_are_refused() {
    let gateway = TestGateway::start().await;
    let cases = [
        (
            "two tokens",
            RawRequest::new("GET", "/addons/self/info")
                .token(TOK_DEFAULT)
                .header("Authorization", format!("Bearer {TOK_MANAGER}")),
        ),
        (
            "header twice",
            RawRequest::new("GET", "/addons/self/info")
                .token(TOK_DEFAULT)
                .token(TOK_DEFAULT),
        ),
        (
            "underscore spelling",
            RawRequest::new("GET", "/addons/self/info")
                .token(TOK_DEFAULT)
                .header("X_Supervisor_Token", TOK_ADMIN),
        ),
        (
            "method override",
            RawRequest::new("GET", "/os/datadisk/wipe")
                .token(TOK_MANAGER)
                .header("X-HTTP-Method-Override", "POST"),
        ),
    ];
    for (case, request) in cases {
        assert_refused(&gateway.send(&request).await, 400, case);
        assert_upstream_silent(&gateway, case);
    }
}

#[tokio::test]
async fn refusals_never_echo_the_token() {
    let gateway = TestGateway::start().await;
    let request = RawRequest::new("GET", "/backups")
        .token(TOK_DEFAULT)
        .header("X-Hassio-Key", TOK_UNKNOWN);
    let response = gateway.send(&request).await;
    assert_refused(&response, 400, "conflict");
    let text = String::from_utf8_lossy(&response.body);
    for token in [TOK_DEFAULT, TOK_UNKNOWN] {
        assert!(!text.contains(&token[..8]), "{text}");
    }
}

#[tokio::test]
async fn an_http_1_0_request_without_host_reaches_the_upstream_with_its_host() {
    let gateway = TestGateway::start().await;
    let request =
        format!("GET /supervisor/ping HTTP/1.0\r\nX-Supervisor-Token: {TOK_DEFAULT}\r\n\r\n");
    let response = send_raw(gateway.addr, request.as_bytes()).await;
    assert_eq!(response.status, 200);
    let seen = &gateway.upstream_saw()[0];
    let upstream = gateway.mock.addr().to_string();
    assert_eq!(values(seen, "host"), vec![upstream.as_bytes()]);
    assert_eq!(seen.path, "/supervisor/ping");
}

#[tokio::test]
async fn the_clients_host_and_query_reach_the_upstream_as_sent() {
    let gateway = TestGateway::start().await;
    let request = RawRequest::new("GET", "/supervisor/logs?lines=10&verbose")
        .token(TOK_MANAGER)
        .header("Host", "supervisor.local:8080");
    let response = gateway.send(&request).await;
    assert_eq!(response.status, 200, "{:?}", response);
    let seen = &gateway.upstream_saw()[0];
    assert_eq!(values(seen, "host"), vec![&b"supervisor.local:8080"[..]]);
    assert_eq!(seen.query.as_deref(), Some("lines=10&verbose"));
}

#[tokio::test]
async fn an_http_1_1_request_without_host_is_refused() {
    let gateway = TestGateway::start().await;
    let request = format!("GET /supervisor/ping HTTP/1.1\r\nX-Supervisor-Token: {TOK_DEFAULT}\r\nConnection: close\r\n\r\n");
    let response = send_raw(gateway.addr, request.as_bytes()).await;
    assert_refused(&response, 400, "HTTP/1.1 without Host");
    assert_upstream_silent(&gateway, "HTTP/1.1 without Host");
}

#[tokio::test]
async fn with_an_upstream_token_the_upstream_sees_the_gateways_credential_not_the_callers() {
    let own = "gateway-own-credential-0123456789abcdef";
    let gateway = gateway_with_upstream_token(own).await;
    let request = RawRequest::new("GET", "/addons/self/info")
        .token(TOK_DEFAULT)
        .header("Authorization", format!("Bearer {TOK_DEFAULT}"));
    let response = gateway.send(&request).await;
    assert_eq!(response.status, 200);
    let seen = &gateway.upstream_saw()[0];
    let expected = format!("Bearer {own}");
    assert_eq!(values(seen, "authorization"), vec![expected.as_bytes()]);
    assert!(values(seen, "x-supervisor-token").is_empty());
    assert!(values(seen, "x-hassio-key").is_empty());
}
