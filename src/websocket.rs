//! WebSocket on the core proxy paths. The upgrade is decided by the same
//! policy as any request; once both sides have switched, frames are relayed
//! both ways with back-pressure. The add-on's in-band authentication is
//! checked like a header token, and its `supervisor/` and `hassio/`
//! messages are answered with an error instead of being forwarded.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use http::{header, request, HeaderMap, HeaderValue, Method};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::caller::Caller;
use crate::gateway::Policy;

/// The paths that carry the Home Assistant WebSocket API (v1 and v2).
const WEBSOCKET_PATHS: [&str; 4] = [
    "/core/websocket",
    "/core/api/websocket",
    "/homeassistant/websocket",
    "/homeassistant/api/websocket",
];

/// How many frames may wait for a slow receiver before the sender waits.
const QUEUE: usize = 32;

/// Whether a request asks to become a WebSocket on a path that carries one.
pub fn is_upgrade(parts: &request::Parts, path: &str) -> bool {
    let path = path.strip_prefix("/v2").unwrap_or(path);
    parts.method == Method::GET
        && WEBSOCKET_PATHS.contains(&path)
        && lists(&parts.headers, header::UPGRADE, "websocket")
        && lists(&parts.headers, header::CONNECTION, "upgrade")
}

/// Whether a comma-separated header lists `token` (case-insensitively).
fn lists(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// The headers the upstream needs to switch protocols, which the ordinary
/// forwarding rules drop as hop-by-hop. Extensions are not offered: the
/// relay reads frames, so they must not be compressed.
pub fn upgrade_headers(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
}

/// Once both sides have upgraded, relays frames until either side closes.
pub async fn relay(client: OnUpgrade, upstream: OnUpgrade, policy: Arc<Policy>) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(error) => {
            tracing::debug!(%error, "websocket upgrade did not complete");
            return;
        }
    };
    let client = socket(client, Role::Server).await;
    let upstream = socket(upstream, Role::Client).await;
    let (client_sink, client_stream) = client.split();
    let (upstream_sink, upstream_stream) = upstream.split();
    let (to_client, from_relay) = mpsc::channel::<Message>(QUEUE);

    let writer = tokio::spawn(write_all(from_relay, client_sink));
    let down = tokio::spawn(downstream(upstream_stream, to_client.clone()));
    upstream_side(client_stream, upstream_sink, to_client, &policy).await;
    down.abort();
    let _ = writer.await;
}

async fn socket(io: Upgraded, role: Role) -> WebSocketStream<TokioIo<Upgraded>> {
    WebSocketStream::from_raw_socket(TokioIo::new(io), role, None).await
}

type Sink = futures_util::stream::SplitSink<WebSocketStream<TokioIo<Upgraded>>, Message>;
type Stream = futures_util::stream::SplitStream<WebSocketStream<TokioIo<Upgraded>>>;

/// Writes what both directions queue for the client, in order.
async fn write_all(mut queue: mpsc::Receiver<Message>, mut sink: Sink) {
    while let Some(message) = queue.recv().await {
        let closing = message.is_close();
        if sink.send(message).await.is_err() || closing {
            break;
        }
    }
    let _ = sink.close().await;
}

/// Upstream to client: everything passes. If the upstream goes away without
/// a close, the client is told so with 1011.
async fn downstream(mut upstream: Stream, to_client: mpsc::Sender<Message>) {
    while let Some(Ok(message)) = upstream.next().await {
        let closing = message.is_close();
        if to_client.send(message).await.is_err() || closing {
            return;
        }
    }
    let _ = to_client
        .send(close(CloseCode::Error, "upstream gone"))
        .await;
}

/// Client to upstream: the auth message is checked, then each message is
/// judged; pings, binary frames and closes pass.
async fn upstream_side(
    mut client: Stream,
    mut upstream: Sink,
    to_client: mpsc::Sender<Message>,
    policy: &Policy,
) {
    let mut authenticated = false;
    while let Some(Ok(message)) = client.next().await {
        let verdict = match &message {
            Message::Text(text) if !authenticated => auth(text, policy),
            Message::Text(text) => judge_message(text),
            _ => Verdict::Forward,
        };
        match verdict {
            Verdict::Forward => {}
            Verdict::Authenticated => authenticated = true,
            Verdict::Answer(answer) => {
                if to_client.send(answer).await.is_err() {
                    break;
                }
                continue;
            }
            Verdict::Refuse(answer) => {
                let _ = to_client.send(answer).await;
                let _ = to_client
                    .send(close(CloseCode::Policy, "auth_invalid"))
                    .await;
                let _ = upstream
                    .send(close(CloseCode::Away, "client refused"))
                    .await;
                return;
            }
        }
        let closing = message.is_close();
        if upstream.send(message).await.is_err() || closing {
            break;
        }
    }
    let _ = upstream.close().await;
}

/// What the relay does with one client message.
enum Verdict {
    /// Send it on.
    Forward,
    /// Send it on; the auth phase is over.
    Authenticated,
    /// Answer the client instead of sending it on.
    Answer(Message),
    /// Answer the client, then close both sides.
    Refuse(Message),
}

/// The auth phase: the access token must belong to an add-on with
/// `homeassistant_api`, as a header token must.
fn auth(text: &str, policy: &Policy) -> Verdict {
    let message: Option<Value> = serde_json::from_str(text).ok();
    let token = message
        .as_ref()
        .filter(|message| message["type"] == "auth")
        .and_then(|message| message["access_token"].as_str());
    let allowed = token.is_some_and(|token| {
        matches!(
            policy.callers.identify(Some(token.as_bytes())),
            Caller::Addon(addon) if addon.homeassistant_api
        )
    });
    if allowed {
        Verdict::Authenticated
    } else {
        let refusal = serde_json::json!({
            "type": "auth_invalid",
            "message": "Invalid access token or password",
        });
        Verdict::Refuse(Message::text(refusal.to_string()))
    }
}

/// After auth: an add-on's `supervisor/` and `hassio/` messages never reach
/// the upstream; the add-on gets an error result for that id instead.
fn judge_message(text: &str) -> Verdict {
    let Ok(message) = serde_json::from_str::<Value>(text) else {
        return Verdict::Forward;
    };
    let kind = message["type"].as_str().unwrap_or_default();
    if !(kind.starts_with("supervisor/") || kind.starts_with("hassio/")) {
        return Verdict::Forward;
    }
    tracing::warn!(message_type = kind, "websocket message refused");
    let answer = serde_json::json!({
        "id": message["id"],
        "type": "result",
        "success": false,
        "error": { "code": "unauthorized", "message": "Unauthorized" },
    });
    Verdict::Answer(Message::text(answer.to_string()))
}

fn close(code: CloseCode, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_of(verdict: Verdict) -> Value {
        match verdict {
            Verdict::Answer(Message::Text(text)) => serde_json::from_str(&text).expect("json"),
            _ => panic!("expected an answer"),
        }
    }

    #[test]
    fn supervisor_and_hassio_messages_are_answered_with_their_id() {
        for kind in ["supervisor/api", "hassio/addon/info"] {
            let answer = answer_of(judge_message(&format!(r#"{{"id":7,"type":"{kind}"}}"#)));
            assert_eq!(answer["id"], 7);
            assert_eq!(answer["success"], false);
            assert_eq!(answer["error"]["code"], "unauthorized");
        }
    }

    #[test]
    fn other_messages_and_non_json_pass() {
        for text in [
            r#"{"id":1,"type":"get_states"}"#,
            "not json",
            r#"{"id":2,"type":"supervisors"}"#,
        ] {
            assert!(matches!(judge_message(text), Verdict::Forward), "{text}");
        }
    }

    #[test]
    fn an_upgrade_needs_get_both_headers_and_a_websocket_path() {
        let parts = |method: Method, upgrade: &str, connection: &str| {
            let request = http::Request::builder()
                .method(method)
                .uri("/core/websocket")
                .header("upgrade", upgrade)
                .header("connection", connection)
                .body(())
                .expect("request");
            request.into_parts().0
        };
        assert!(is_upgrade(
            &parts(Method::GET, "WebSocket", "keep-alive, Upgrade"),
            "/core/websocket"
        ));
        assert!(is_upgrade(
            &parts(Method::GET, "websocket", "upgrade"),
            "/v2/homeassistant/api/websocket"
        ));
        assert!(!is_upgrade(
            &parts(Method::POST, "websocket", "upgrade"),
            "/core/websocket"
        ));
        assert!(!is_upgrade(
            &parts(Method::GET, "websocket", "keep-alive"),
            "/core/websocket"
        ));
        assert!(!is_upgrade(
            &parts(Method::GET, "websocket", "upgrade"),
            "/core/api/states"
        ));
    }
}
