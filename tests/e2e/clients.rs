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

#[tokio::test]
async fn bashio_gets_pipelined_with_plain_ones_each_reach_the_upstream_with_their_own_body() {
    // A GET whose short body came with its head is read whole by the
    // gateway's own server and sent on with its body; a plain GET behind
    // it gets none, and each is answered in turn.
    let gateway = TestGateway::start().await;
    let mut client = KeptAlive::connect(gateway.addr).await;
    let plain = format!(
        "GET /supervisor/ping HTTP/1.1\r\nHost: supervisor\r\nX-Supervisor-Token: {TOK_DEFAULT}\r\n\r\n"
    );
    let pipeline = [
        bashio_kept_alive("/addons/self/info"),
        plain.clone(),
        bashio_kept_alive("/os/info"),
        plain,
    ];
    client.write(&pipeline.concat()).await;
    for n in 0..4 {
        let answer = client.answer().await;
        assert_eq!(answer.status, 200, "answer {n}");
        assert_eq!(
            answer.header("connection"),
            None,
            "answer {n} keeps it open"
        );
    }
    let seen: Vec<(String, Vec<u8>, Option<Vec<u8>>)> = gateway
        .upstream_saw()
        .into_iter()
        .map(|r| {
            let length = r.header("content-length").map(<[u8]>::to_vec);
            (r.path, r.body_head, length)
        })
        .collect();
    let with = |path: &str| (path.to_owned(), b"{}".to_vec(), Some(b"2".to_vec()));
    let without = |path: &str| (path.to_owned(), Vec::new(), None);
    assert_eq!(
        seen,
        [
            with("/addons/self/info"),
            without("/supervisor/ping"),
            with("/os/info"),
            without("/supervisor/ping"),
        ]
    );
}

#[tokio::test]
async fn a_bashio_get_whose_body_comes_after_its_head_is_forwarded_with_it_all_the_same() {
    // Not read whole with its head, the body is hyper's to read; the
    // answer and the next request on the connection are as ever.
    let gateway = TestGateway::start().await;
    let mut client = KeptAlive::connect(gateway.addr).await;
    let whole = bashio_kept_alive("/addons/self/info");
    let (head, body) = whole.split_at(whole.len() - 2);
    client.write(head).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    client.write(body).await;
    assert_eq!(client.answer().await.status, 200);
    client.write(&bashio_kept_alive("/os/info")).await;
    assert_eq!(client.answer().await.status, 200);
    let seen = gateway.upstream_saw();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(request.body_head, b"{}", "{}", request.path);
        assert_eq!(request.header("content-length"), Some(&b"2"[..]));
    }
}

#[tokio::test]
async fn a_short_get_body_over_the_body_limit_gets_413_before_the_upstream_sees_it() {
    let gateway = gateway_with_limits("  max_body_bytes: 1\n").await;
    let mut client = KeptAlive::connect(gateway.addr).await;
    client.write(&bashio_kept_alive("/addons/self/info")).await;
    let answer = client.answer().await;
    assert_refused(&answer, 413, "a 2-byte body over a 1-byte limit");
    assert_eq!(answer.header("connection"), Some("close"));
    assert_upstream_silent(&gateway, "a 2-byte body over a 1-byte limit");
}
