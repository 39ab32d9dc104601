//! Tests of the mock upstream's long-lived answers over loopback TCP: the
//! WebSocket with its auth phase, the event stream held until released, and
//! downloads and uploads of a few MiB checked by length and hash.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{call, get, send, start};
use crate::mock_upstream::{pattern_sha256, MockHandle, WsRecord};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Every path the WebSocket answers on.
const WS_PATHS: &[&str] = &[
    "/core/websocket",
    "/core/api/websocket",
    "/homeassistant/websocket",
    "/homeassistant/api/websocket",
    "/v2/core/websocket",
    "/v2/core/api/websocket",
    "/v2/homeassistant/websocket",
    "/v2/homeassistant/api/websocket",
];

const AUTH: &str = r#"{"type":"auth","access_token":"token-abc"}"#;
const READY: &[u8] = b"event: ready\ndata: {\"n\":1}\n\n";
const DONE: &[u8] = b"event: done\ndata: {\"n\":2}\n\n";

/// How long any one step of a test may take before it fails.
const STEP: Duration = Duration::from_secs(5);

async fn within<T>(what: &str, step: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, step)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {STEP:?}"))
}

async fn connect(mock: &MockHandle, path: &str) -> Socket {
    let url = format!("ws://{}{path}", mock.addr());
    let (socket, _) = within("the handshake", tokio_tungstenite::connect_async(url))
        .await
        .unwrap_or_else(|error| panic!("handshake on {path} failed: {error}"));
    socket
}

/// The next frame that is not a ping or pong; `None` once the stream ends.
async fn next(socket: &mut Socket) -> Option<Message> {
    loop {
        match within("a frame", socket.next()).await? {
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(message) => return Some(message),
            Err(error) => panic!("websocket broke: {error}"),
        }
    }
}

async fn next_json(socket: &mut Socket) -> Value {
    match next(socket).await {
        Some(Message::Text(text)) => serde_json::from_str(text.as_str()).expect("JSON text"),
        other => panic!("expected a JSON text frame, got {other:?}"),
    }
}

async fn send_text(socket: &mut Socket, text: &str) {
    within("a send", socket.send(Message::text(text)))
        .await
        .expect("send a text frame");
}

/// A socket on `/core/websocket` past the auth phase.
async fn authenticated(mock: &MockHandle) -> Socket {
    let mut socket = connect(mock, "/core/websocket").await;
    assert_eq!(next_json(&mut socket).await["type"], "auth_required");
    send_text(&mut socket, AUTH).await;
    assert_eq!(next_json(&mut socket).await["type"], "auth_ok");
    socket
}

/// The close frame that ends `socket`, as `(code, reason)`.
async fn close_of(socket: &mut Socket) -> (u16, String) {
    match next(socket).await {
        Some(Message::Close(Some(frame))) => (frame.code.into(), frame.reason.to_string()),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

/// The mock's WebSocket log once it holds `count` records; the mock records
/// a frame just after it reads it, so the test may be a moment ahead.
async fn ws_log(mock: &MockHandle, count: usize) -> Vec<WsRecord> {
    let mut seen = Vec::new();
    for _ in 0..250 {
        seen = mock.state().ws_messages();
        if seen.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen
}

// --- WebSocket -------------------------------------------------------------

#[tokio::test]
async fn every_websocket_path_asks_for_auth_and_accepts_a_non_empty_token() {
    let mock = start().await;
    for path in WS_PATHS {
        let mut socket = connect(&mock, path).await;

        let required = next_json(&mut socket).await;
        assert_eq!(
            required,
            json!({"type": "auth_required", "ha_version": "2026.12.0"}),
            "{path}"
        );
        send_text(&mut socket, AUTH).await;
        let ok = next_json(&mut socket).await;
        assert_eq!(
            ok,
            json!({"type": "auth_ok", "ha_version": "2026.12.0"}),
            "{path}"
        );
    }

    let seen: Vec<String> = mock
        .state()
        .requests()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(seen, WS_PATHS);
    mock.stop().await;
}

#[tokio::test]
async fn anything_but_an_auth_message_with_a_token_is_refused_and_closed() {
    let mock = start().await;
    let refused = [
        (
            "empty token",
            Message::text(r#"{"type":"auth","access_token":""}"#),
        ),
        ("no token", Message::text(r#"{"type":"auth"}"#)),
        (
            "token not text",
            Message::text(r#"{"type":"auth","access_token":7}"#),
        ),
        ("wrong type", Message::text(r#"{"type":"ping","id":1}"#)),
        ("not json", Message::text("auth please")),
        ("binary", Message::binary(AUTH.as_bytes().to_vec())),
    ];
    for (case, first) in refused {
        let mut socket = connect(&mock, "/homeassistant/api/websocket").await;
        assert_eq!(next_json(&mut socket).await["type"], "auth_required");
        within("a send", socket.send(first)).await.expect("send");

        let invalid = next_json(&mut socket).await;
        assert_eq!(
            invalid,
            json!({"type": "auth_invalid",
                "message": "Invalid access token or password"}),
            "{case}"
        );
        assert_eq!(close_of(&mut socket).await.0, 1000, "{case}");
        assert!(next(&mut socket).await.is_none(), "{case}");
    }
    mock.stop().await;
}

#[tokio::test]
async fn ping_gets_pong_and_other_commands_echo_their_type() {
    let mock = start().await;
    let mut socket = authenticated(&mock).await;
    let exchanges = [
        (
            r#"{"id":1,"type":"ping"}"#,
            json!({"id": 1, "type": "pong"}),
        ),
        (
            r#"{"id":2,"type":"get_states"}"#,
            json!({"id": 2, "type": "result", "success": true,
                "result": {"echo": "get_states"}}),
        ),
        (
            r#"{"type":"subscribe_events","id":41,"event_type":"x"}"#,
            json!({"id": 41, "type": "result", "success": true,
                "result": {"echo": "subscribe_events"}}),
        ),
    ];
    for (sent, expected) in exchanges {
        send_text(&mut socket, sent).await;

        assert_eq!(next_json(&mut socket).await, expected, "{sent}");
    }
    mock.stop().await;
}

#[tokio::test]
async fn a_command_without_an_integer_id_or_a_type_gets_an_invalid_format_error() {
    let mock = start().await;
    let mut socket = authenticated(&mock).await;
    for (sent, id) in [
        (r#"{"id":3}"#, json!(3)),
        (r#"{"id":"4","type":"ping"}"#, Value::Null),
        (r#"{"id":1.5,"type":"ping"}"#, Value::Null),
        ("not json", Value::Null),
    ] {
        send_text(&mut socket, sent).await;

        let answer = next_json(&mut socket).await;
        assert_eq!(answer["id"], id, "{sent}");
        assert_eq!(answer["type"], "result", "{sent}");
        assert_eq!(answer["success"], false, "{sent}");
        assert_eq!(answer["error"]["code"], "invalid_format", "{sent}");
    }
    mock.stop().await;
}

#[tokio::test]
async fn binary_frames_and_pings_come_back_unchanged() {
    let mock = start().await;
    let mut socket = authenticated(&mock).await;
    let bytes: Vec<u8> = (0..=255).chain(0..=255).collect();

    within("a send", socket.send(Message::binary(bytes.clone())))
        .await
        .expect("send binary");
    match next(&mut socket).await {
        Some(Message::Binary(echo)) => assert_eq!(echo.as_ref(), bytes.as_slice()),
        other => panic!("expected the binary echo, got {other:?}"),
    }
    within(
        "a send",
        socket.send(Message::Ping(Bytes::from_static(b"hi"))),
    )
    .await
    .expect("send ping");
    match within("the pong", socket.next()).await {
        Some(Ok(Message::Pong(payload))) => assert_eq!(payload.as_ref(), b"hi"),
        other => panic!("expected the pong, got {other:?}"),
    }
    mock.stop().await;
}

#[tokio::test]
async fn test_close_closes_with_the_requested_code_and_reason() {
    let mock = start().await;
    let mut socket = authenticated(&mock).await;
    let request = r#"{"id":5,"type":"test/close","code":4321}"#;
    send_text(&mut socket, request).await;

    assert_eq!(close_of(&mut socket).await, (4321, "requested".to_owned()));
    assert!(next(&mut socket).await.is_none());
    let expected = [
        WsRecord::Text(AUTH.to_owned()),
        WsRecord::Text(request.to_owned()),
        WsRecord::Close(Some(4321)),
    ];
    assert_eq!(ws_log(&mock, 3).await, expected);
    mock.stop().await;
}

#[tokio::test]
async fn test_close_with_a_code_no_peer_may_send_is_refused_and_the_socket_stays() {
    let mock = start().await;
    let mut socket = authenticated(&mock).await;
    for code in [
        json!(1005),
        json!(999),
        json!(70000),
        json!("4000"),
        Value::Null,
    ] {
        let request = json!({"id": 6, "type": "test/close", "code": code});
        send_text(&mut socket, &request.to_string()).await;

        let answer = next_json(&mut socket).await;
        assert_eq!(answer["success"], false, "{code}");
        assert_eq!(answer["error"]["code"], "invalid_format", "{code}");
    }
    send_text(&mut socket, r#"{"id":7,"type":"ping"}"#).await;
    assert_eq!(next_json(&mut socket).await["type"], "pong");
    mock.stop().await;
}

#[tokio::test]
async fn a_client_close_is_answered_with_the_same_code() {
    let mock = start().await;
    let mut socket = authenticated(&mock).await;
    let frame = CloseFrame {
        code: CloseCode::from(4001),
        reason: "bye".into(),
    };
    within("the close", socket.close(Some(frame)))
        .await
        .expect("send close");

    assert_eq!(close_of(&mut socket).await.0, 4001);
    assert!(next(&mut socket).await.is_none());
    mock.stop().await;
}

#[tokio::test]
async fn every_websocket_message_and_the_upgrade_request_are_recorded_in_order() {
    let mock = start().await;
    let mut socket = authenticated(&mock).await;
    let ping = r#"{"id":1,"type":"ping"}"#;
    send_text(&mut socket, ping).await;
    assert_eq!(next_json(&mut socket).await["type"], "pong");
    within("a send", socket.send(Message::binary(vec![0, 1, 2])))
        .await
        .expect("send binary");
    assert!(matches!(next(&mut socket).await, Some(Message::Binary(_))));
    within("the close", socket.close(None))
        .await
        .expect("send close");
    assert!(matches!(next(&mut socket).await, Some(Message::Close(_))));

    let expected = [
        WsRecord::Text(AUTH.to_owned()),
        WsRecord::Text(ping.to_owned()),
        WsRecord::Binary(vec![0, 1, 2]),
        WsRecord::Close(None),
    ];
    assert_eq!(ws_log(&mock, 4).await, expected);
    let requests = mock.state().requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/core/websocket");
    assert_eq!(requests[0].header("upgrade"), Some(&b"websocket"[..]));
    assert!(requests[0].header("sec-websocket-key").is_some());
    mock.stop().await;
}

#[tokio::test]
async fn a_websocket_path_without_a_handshake_is_refused_and_other_methods_get_405() {
    let mock = start().await;
    let plain = get(&mock, "/core/websocket", &[]).await;
    let posted = call(&mock, "POST", "/homeassistant/websocket").await;
    let proxied = call(&mock, "POST", "/core/api/websocket").await;

    assert_eq!(plain.status, StatusCode::BAD_REQUEST);
    assert!(plain.json()["message"].is_string());
    assert_eq!(posted.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        posted.headers.get(header::ALLOW).map(|v| v.as_bytes()),
        Some(&b"GET"[..])
    );
    assert_eq!(proxied.status, StatusCode::OK);
    assert_eq!(proxied.json(), json!({"message": "ok"}));
    assert!(mock.state().ws_messages().is_empty());
    mock.stop().await;
}

// --- Event stream ----------------------------------------------------------

/// Starts `GET target` and returns the response with its body unread.
async fn open(mock: &MockHandle, method: Method, target: &str) -> http::Response<Incoming> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = Request::builder()
        .method(method)
        .uri(format!("http://{}{target}", mock.addr()))
        .body(Empty::new())
        .expect("test request is well formed");
    within("the response head", client.request(request))
        .await
        .expect("mock answers")
}

/// Reads `body` until it has sent `want` bytes (or more) or ended.
async fn read_at_least(body: &mut Incoming, want: usize) -> Vec<u8> {
    let mut seen = Vec::new();
    while seen.len() < want {
        match within("a body frame", body.frame()).await {
            Some(frame) => {
                let frame = frame.expect("body frame");
                if let Some(data) = frame.data_ref() {
                    seen.extend_from_slice(data);
                }
            }
            None => break,
        }
    }
    seen
}

async fn read_to_end(body: &mut Incoming) -> Vec<u8> {
    read_at_least(body, usize::MAX).await
}

#[tokio::test]
async fn the_event_stream_sends_ready_at_once_and_done_only_after_release() {
    let mock = start().await;
    let response = open(&mock, Method::GET, "/core/api/stream").await;
    assert_eq!(response.status(), StatusCode::OK);
    let kind = response.headers().get(header::CONTENT_TYPE);
    assert_eq!(kind.map(|v| v.as_bytes()), Some(&b"text/event-stream"[..]));
    let mut body = response.into_body();

    assert_eq!(read_at_least(&mut body, READY.len()).await, READY);
    let early = tokio::time::timeout(Duration::from_millis(200), body.frame()).await;
    assert!(early.is_err(), "the stream went on before release");
    mock.state().release_streams();
    assert_eq!(read_to_end(&mut body).await, DONE);
    mock.stop().await;
}

#[tokio::test]
async fn a_release_before_a_stream_opens_does_not_end_it_on_any_path() {
    let mock = start().await;
    mock.state().release_streams();
    for target in [
        "/homeassistant/api/stream",
        "/v2/core/api/stream",
        "/v2/homeassistant/api/stream",
    ] {
        let mut body = open(&mock, Method::GET, target).await.into_body();

        assert_eq!(
            read_at_least(&mut body, READY.len()).await,
            READY,
            "{target}"
        );
        let early = tokio::time::timeout(Duration::from_millis(100), body.frame()).await;
        assert!(early.is_err(), "{target} went on before release");
        mock.state().release_streams();
        assert_eq!(read_to_end(&mut body).await, DONE, "{target}");
    }
    mock.stop().await;
}

// --- Large bodies ----------------------------------------------------------

#[tokio::test]
async fn a_sized_download_streams_exactly_that_many_pattern_bytes() {
    let mock = start().await;
    let size: u64 = 3 * 1024 * 1024 + 12_345;
    let target = format!("/backups/a1b2c3d4/download?size={size}");
    let response = open(&mock, Method::GET, &target).await;

    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    let kind = headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
    assert_eq!(kind, Some(&b"application/x-tar"[..]));
    let length = headers.get(header::CONTENT_LENGTH).map(|v| v.as_bytes());
    assert_eq!(length, Some(size.to_string().as_bytes()));
    let mut body = response.into_body();
    let mut digest = Sha256::new();
    let mut received = 0_u64;
    while let Some(frame) = within("a body frame", body.frame()).await {
        if let Some(data) = frame.expect("body frame").data_ref() {
            received += data.len() as u64;
            digest.update(data);
        }
    }
    assert_eq!(received, size);
    assert_eq!(hex::encode(digest.finalize()), pattern_sha256(size));
    assert_ne!(pattern_sha256(size), pattern_sha256(size - 1));
    mock.stop().await;
}

#[tokio::test]
async fn download_sizes_of_zero_or_not_a_number_and_head_behave() {
    let mock = start().await;
    let empty = get(&mock, "/v2/backups/x/download?size=0", &[]).await;
    let bad = get(&mock, "/backups/x/download?size=lots", &[]).await;
    let head = open(&mock, Method::HEAD, "/backups/x/download?size=1073741824").await;

    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.body.is_empty());
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["result"], "error");
    assert_eq!(head.status(), StatusCode::OK);
    let length = head.headers().get(header::CONTENT_LENGTH);
    assert_eq!(length.map(|v| v.as_bytes()), Some(&b"1073741824"[..]));
    assert!(read_to_end(&mut head.into_body()).await.is_empty());
    mock.stop().await;
}

#[tokio::test]
async fn an_upload_of_a_few_mib_is_counted_and_hashed() {
    let mock = start().await;
    let size = 2 * 1024 * 1024 + 7;
    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let answer = send(&mock, Method::POST, "/backups/new/upload", &[], body).await;

    assert_eq!(answer.status, StatusCode::OK);
    let seen = mock.state().requests();
    assert_eq!(seen[0].body_len, size);
    assert_eq!(seen[0].body_sha256, pattern_sha256(size));
    assert_eq!(seen[0].body_head.len(), 64 * 1024);
    mock.stop().await;
}
