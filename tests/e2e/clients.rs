//! Real clients' exact wire shapes: bashio's curl calls, the `ha` CLI and
//! plain curl with `X-Supervisor-Token`.

use crate::helpers::*;

/// bashio sends `Authorization: Bearer` fed from stdin, a JSON content type
/// and the literal `{}` as the body of every GET.
fn bashio_request(method: &str, path: &str, token: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: supervisor\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn bashio_get_with_a_json_body_is_forwarded_with_its_body() {
    let gateway = TestGateway::start().await;
    let response = send_raw(
        gateway.addr,
        &bashio_request("GET", "/addons/self/info", TOK_DEFAULT, "{}"),
    )
    .await;
    assert_eq!(response.status, 200);
    let json = response.json();
    assert_eq!(json["result"], "ok");
    assert_eq!(json["data"]["slug"], "local_probe");

    let seen = gateway.upstream_saw();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", "/addons/self/info")
    );
    assert_eq!(seen[0].body_head, b"{}");
    assert_eq!(seen[0].header("content-length"), Some(&b"2"[..]));
}

#[tokio::test]
async fn bashio_post_options_is_forwarded_and_its_denials_are_json_errors() {
    let gateway = TestGateway::start().await;
    let body = r#"{"options":{"log_level":"debug"}}"#;
    let response = send_raw(
        gateway.addr,
        &bashio_request("POST", "/addons/self/options", TOK_NOAPI, body),
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(gateway.upstream_saw()[0].body_head, body.as_bytes());

    let denied = send_raw(
        gateway.addr,
        &bashio_request("GET", "/host/info", TOK_NOAPI, "{}"),
    )
    .await;
    assert_refused(&denied, 403, "bashio without hassio_api");
    assert_upstream_silent(&gateway, "bashio without hassio_api");
}

#[tokio::test]
async fn bashio_with_an_empty_token_gets_401() {
    let gateway = TestGateway::start().await;
    let bytes = b"GET /addons/self/info HTTP/1.1\r\nHost: supervisor\r\nAuthorization: Bearer\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    let response = send_raw(gateway.addr, bytes).await;
    assert_refused(&response, 401, "empty bearer");
    assert_eq!(response.header("www-authenticate"), Some("Bearer"));
    assert_upstream_silent(&gateway, "empty bearer");
}

#[tokio::test]
async fn the_ha_cli_shape_is_forwarded() {
    let gateway = TestGateway::start().await;
    let bytes = format!(
        "GET /supervisor/info HTTP/1.1\r\nHost: supervisor\r\nUser-Agent: Go-http-client/1.1\r\nAccept: application/json\r\nAuthorization: Bearer {TOK_CLI}\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
    );
    let response = send_raw(gateway.addr, bytes.as_bytes()).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["result"], "ok");
    assert!(response.json()["data"]["version"].is_string());
    assert_eq!(gateway.upstream_saw().len(), 1);
}

#[tokio::test]
async fn curl_with_x_supervisor_token_and_keep_alive_serves_several_requests() {
    let gateway = TestGateway::start().await;
    let one = format!("GET /supervisor/ping HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_DEFAULT}\r\n\r\n");
    let last = format!("GET /os/info HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_DEFAULT}\r\nConnection: close\r\n\r\n");
    let pipelined = format!("{one}{one}{last}");
    let response = send_raw(gateway.addr, pipelined.as_bytes()).await;
    assert_eq!(response.status, 200);
    let paths: Vec<String> = gateway.upstream_saw().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/supervisor/ping", "/supervisor/ping", "/os/info"]);
}

#[tokio::test]
async fn a_get_that_says_connection_close_is_the_last_answered_and_the_upstream_keeps_its_connection(
) {
    // As Python's urllib sends a GET: one request a connection, asking to
    // close it. What is sent behind it is not answered, as with hyper.
    let gateway = TestGateway::start().await;
    let first = format!("GET /os/info HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_DEFAULT}\r\nConnection: close\r\n\r\n");
    let behind = format!(
        "GET /supervisor/ping HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_DEFAULT}\r\n\r\n"
    );
    let received = exchange_raw(gateway.addr, format!("{first}{behind}").as_bytes()).await;
    let text = String::from_utf8_lossy(&received);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "one answer: {text}");
    let response = parse_response(&received);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("connection"), Some("close"));
    let seen = gateway.upstream_saw();
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/os/info"]);
    assert!(
        !seen[0].headers.iter().any(|(name, _)| name == "connection"),
        "the client's Connection header is not passed on: {:?}",
        seen[0].headers
    );
}
