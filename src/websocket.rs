//! WebSocket on the core proxy paths. The upgrade is decided by the same
//! policy as any request; once both sides have switched, frames are relayed
//! both ways with back-pressure. The add-on's in-band authentication is
//! checked like a header token, and its `supervisor/` and `hassio/`
//! messages are answered with an error instead of being forwarded.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use http::{header, request, HeaderMap, HeaderValue, Method};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::caller::Caller;
use crate::gateway::Policy;
use crate::idle::SendWatch;

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

/// The two connections a relay joins, once each has upgraded.
pub struct Ends {
    /// The client's request, once the gateway has answered 101.
    pub client: OnUpgrade,
    /// The upstream's 101 answer.
    pub upstream: OnUpgrade,
    /// What the client's connection hands over, when a server serves it.
    pub(crate) handover: Option<Handover>,
}

/// What a relay takes over from the client's connection; the server puts
/// it in every upgrade request it takes.
#[derive(Clone)]
pub(crate) struct Handover {
    /// The client connection's writes, watched for the send timeout.
    pub(crate) send: SendWatch,
    /// Set when the server stops accepting: the relay then closes both
    /// sides with 1001 (going away).
    pub(crate) stopping: watch::Receiver<bool>,
}

/// Once both sides have upgraded, relays frames until either side closes.
/// `caller` made the upgrade request; the in-band auth must name the same
/// add-on. A client that takes none of what is written to it for the send
/// timeout is given up on at once: its socket is reset, the upstream side
/// closed.
pub async fn relay(ends: Ends, policy: Arc<Policy>, caller: Caller) {
    let Ends {
        client,
        upstream,
        handover,
    } = ends;
    let (send, stopping) = match handover {
        Some(Handover { send, stopping }) => (Some(send), Some(stopping)),
        None => (None, None),
    };
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
    let (gave_up, given_up) = oneshot::channel();

    let mut writer = tokio::spawn(write_all(from_relay, client_sink, send, gave_up));
    let mut down = tokio::spawn(downstream(upstream_stream, to_client.clone()));
    let mut sides = Sides {
        client: client_stream,
        upstream: upstream_sink,
        to_client,
    };
    let stopping = async move {
        match stopping {
            Some(mut stopping) => {
                let _ = stopping.wait_for(|stopping| *stopping).await;
            }
            None => std::future::pending().await,
        }
    };
    // (Fused: it is waited for in two places, and may have ended in the
    // first without a give-up, when the writer ended otherwise.)
    let mut given_up = given_up.fuse();
    let ended = {
        let forwarding = upstream_side(&mut sides, &policy, &caller);
        tokio::pin!(forwarding);
        tokio::select! {
            // (First: a client given up on also ends the other branches.)
            biased;
            Ok(()) = &mut given_up => Ended::ClientGivenUp,
            () = &mut forwarding => Ended::Closed,
            // The upstream closed (its close is on its way to the client)
            // or went away: the client has a while to answer the close,
            // unless it is given up on meanwhile.
            _ = &mut down => tokio::select! {
                biased;
                Ok(()) = &mut given_up => Ended::ClientGivenUp,
                _ = tokio::time::timeout(CLOSE_WAIT, &mut forwarding) => Ended::Closed,
            },
            () = stopping => Ended::Stopping,
        }
    };
    if ended == Ended::ClientGivenUp {
        // The client's socket goes now (the writer has let go of its half),
        // so that it is reset at once; the upstream gets a close.
        down.abort();
        let Sides {
            client, upstream, ..
        } = sides;
        drop(client);
        let _ = tokio::time::timeout(CLOSE_WAIT, close_upstream(upstream)).await;
        return;
    }
    if ended == Ended::Stopping {
        // A client whose queue is full is not reading: it gets no close.
        let _ = sides
            .to_client
            .try_send(close(CloseCode::Away, SHUTTING_DOWN));
        let goodbye = sides.upstream.send(close(CloseCode::Away, SHUTTING_DOWN));
        let _ = tokio::time::timeout(CLOSE_WAIT, goodbye).await;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, sides.upstream.close()).await;
    down.abort();
    drop(sides);
    // The client's queue is written out, for as long as the client reads.
    if tokio::time::timeout(CLOSE_WAIT, &mut writer).await.is_err() {
        writer.abort();
    }
}

async fn socket(io: Upgraded, role: Role) -> WebSocketStream<TokioIo<Upgraded>> {
    WebSocketStream::from_raw_socket(TokioIo::new(io), role, None).await
}

type Sink = futures_util::stream::SplitSink<WebSocketStream<TokioIo<Upgraded>>, Message>;
type Stream = futures_util::stream::SplitStream<WebSocketStream<TokioIo<Upgraded>>>;

/// How a relay came to its end.
#[derive(PartialEq, Eq)]
enum Ended {
    /// A side closed or went away.
    Closed,
    /// The gateway is shutting down.
    Stopping,
    /// The client took nothing for the send timeout.
    ClientGivenUp,
}

/// Writes what both directions queue for the client, in order. If the
/// client takes none of it for the send timeout, gives it up, lets go of
/// the socket and says so on `gave_up`.
async fn write_all(
    mut queue: mpsc::Receiver<Message>,
    mut sink: Sink,
    send: Option<SendWatch>,
    gave_up: oneshot::Sender<()>,
) {
    while let Some(message) = queue.recv().await {
        let closing = message.is_close();
        let sent = match &send {
            None => Some(sink.send(message).await),
            Some(watch) => tokio::select! {
                biased;
                sent = sink.send(message) => Some(sent),
                () = watch.stalled() => {
                    watch.give_up();
                    None
                }
            },
        };
        let Some(sent) = sent else {
            drop(sink);
            let _ = gave_up.send(());
            return;
        };
        if sent.is_err() || closing {
            break;
        }
    }
    let _ = sink.close().await;
}

async fn close_upstream(mut upstream: Sink) {
    let _ = upstream.send(close(CloseCode::Away, "client gone")).await;
    let _ = upstream.close().await;
}

/// Upstream to client: everything passes but pongs. (Each side's pings are
/// answered by the gateway's own end of that side's socket and also passed
/// on; the other side's pong to the gateway goes no further, so that a ping
/// gets one pong.) If the upstream goes away without a close, the client is
/// told so with 1011.
async fn downstream(mut upstream: Stream, to_client: mpsc::Sender<Message>) {
    while let Some(Ok(message)) = upstream.next().await {
        if matches!(message, Message::Pong(_)) {
            continue;
        }
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
/// judged; pings, binary frames and closes pass, pongs stop (see
/// [`downstream`]). Returns when the client closes or goes away, or is
/// refused; the relay closes the upstream side after.
async fn upstream_side(sides: &mut Sides, policy: &Policy, caller: &Caller) {
    let Sides {
        client,
        upstream,
        to_client,
    } = sides;
    let mut authenticated = false;
    while let Some(Ok(message)) = client.next().await {
        let verdict = match &message {
            Message::Text(text) if !authenticated => auth(text, policy, caller),
            Message::Text(text) => judge_message(text),
            Message::Pong(_) => continue,
            _ => Verdict::Forward,
        };
        let message = match verdict {
            Verdict::Forward => message,
            Verdict::Authenticated => {
                authenticated = true;
                message
            }
            Verdict::Instead { forward, answers } => {
                let mut gone = false;
                for answer in answers {
                    gone |= to_client.send(answer).await.is_err();
                }
                match forward {
                    Some(forward) if !gone => forward,
                    _ if gone => break,
                    _ => continue,
                }
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
        };
        let closing = message.is_close();
        if upstream.send(message).await.is_err() || closing {
            break;
        }
    }
}

/// The relay's client side and upstream side, as the client-to-upstream
/// direction holds them.
struct Sides {
    client: Stream,
    upstream: Sink,
    to_client: mpsc::Sender<Message>,
}

/// The close reason both sides get when the gateway shuts down.
const SHUTTING_DOWN: &str = "gateway shutting down";

/// How long the relay waits, once it is ending, for a side to take or
/// answer a close, and for the client to take what is queued for it.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// What the relay does with one client message.
enum Verdict {
    /// Send it on.
    Forward,
    /// Send it on; the auth phase is over.
    Authenticated,
    /// Answer the client, and send on only what is left of it, if anything.
    Instead {
        forward: Option<Message>,
        answers: Vec<Message>,
    },
    /// Answer the client, then close both sides.
    Refuse(Message),
}

/// The auth phase: the access token must belong to an add-on with
/// `homeassistant_api`, as a header token must, and to the add-on that
/// made the upgrade request.
fn auth(text: &str, policy: &Policy, caller: &Caller) -> Verdict {
    let message: Option<Value> = serde_json::from_str(text).ok();
    let token = message
        .as_ref()
        .filter(|message| message["type"] == "auth")
        .and_then(|message| message["access_token"].as_str());
    let allowed = token.is_some_and(|token| {
        let upgraded_by = match caller {
            Caller::Addon(addon) => Some(addon.slug.as_str()),
            _ => None,
        };
        matches!(
            policy.callers.identify(Some(token.as_bytes())),
            Caller::Addon(addon) if addon.homeassistant_api && upgraded_by == Some(addon.slug.as_str())
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

/// After auth: an add-on's `supervisor/` and `hassio/` commands never reach
/// the upstream; the add-on gets an error result for that id instead. Home
/// Assistant also runs each command of a JSON array, so an array is judged
/// command by command and only the allowed ones go on. A text message that
/// is not JSON this parser can read goes nowhere: Home Assistant's parser
/// might read it (deeper nesting, numbers out of range) and run it.
fn judge_message(text: &str) -> Verdict {
    let Ok(message) = serde_json::from_str::<Value>(text) else {
        return unreadable();
    };
    match message {
        Value::Array(commands) => {
            if !commands.iter().any(is_denied) {
                return Verdict::Forward;
            }
            // The allowed commands go on as the client wrote them, cut out
            // of its text rather than written anew.
            let Ok(written) = serde_json::from_str::<Vec<&RawValue>>(text) else {
                return unreadable();
            };
            let mut allowed = Vec::new();
            let mut answers = Vec::new();
            for (command, written) in commands.iter().zip(written) {
                match is_denied(command) {
                    true => answers.push(refusal(command)),
                    false => allowed.push(written.get()),
                }
            }
            let forward =
                (!allowed.is_empty()).then(|| Message::text(format!("[{}]", allowed.join(","))));
            Verdict::Instead { forward, answers }
        }
        command if is_denied(&command) => Verdict::Instead {
            forward: None,
            answers: vec![refusal(&command)],
        },
        _ => Verdict::Forward,
    }
}

/// The answer to text that is not JSON this parser can read.
fn unreadable() -> Verdict {
    tracing::warn!("websocket message refused: not readable JSON");
    let answer = result_error(
        &Value::Null,
        "invalid_format",
        "Message incorrectly formatted.",
    );
    Verdict::Instead {
        forward: None,
        answers: vec![answer],
    }
}

/// Whether a command's type is one an add-on may not send.
fn is_denied(command: &Value) -> bool {
    let kind = command["type"].as_str().unwrap_or_default();
    kind.starts_with("supervisor/") || kind.starts_with("hassio/")
}

/// The error result for a refused command, under its id.
fn refusal(command: &Value) -> Message {
    let kind = command["type"].as_str().unwrap_or_default();
    tracing::warn!(message_type = kind, "websocket message refused");
    result_error(&command["id"], "unauthorized", "Unauthorized")
}

fn result_error(id: &Value, code: &str, message: &str) -> Message {
    let answer = serde_json::json!({
        "id": id,
        "type": "result",
        "success": false,
        "error": { "code": code, "message": message },
    });
    Message::text(answer.to_string())
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

    fn json(message: &Message) -> Value {
        match message {
            Message::Text(text) => serde_json::from_str(text).expect("json"),
            other => panic!("expected text, got {other:?}"),
        }
    }

    /// What goes on and what the client is answered, as JSON.
    fn instead(verdict: Verdict) -> (Option<Value>, Vec<Value>) {
        match verdict {
            Verdict::Instead { forward, answers } => (
                forward.as_ref().map(json),
                answers.iter().map(json).collect(),
            ),
            _ => panic!("expected the message to be judged"),
        }
    }

    #[test]
    fn supervisor_and_hassio_messages_are_answered_with_their_id() {
        for kind in [
            "supervisor/api",
            "hassio/addon/info",
            "supervisor\\u002fapi",
        ] {
            let (forward, answers) =
                instead(judge_message(&format!(r#"{{"id":7,"type":"{kind}"}}"#)));
            assert_eq!(forward, None);
            assert_eq!(answers.len(), 1);
            assert_eq!(answers[0]["id"], 7);
            assert_eq!(answers[0]["success"], false);
            assert_eq!(answers[0]["error"]["code"], "unauthorized");
        }
    }

    #[test]
    fn an_array_goes_on_without_its_refused_commands() {
        let text = r#"[{"id":1,"type":"get_states"},{"id":2,"type":"supervisor/api"},{"id":3,"type":"hassio/x"},{"id":4,"type":"ping"}]"#;
        let (forward, answers) = instead(judge_message(text));
        let forward = forward.expect("the allowed commands go on");
        assert_eq!(
            forward,
            serde_json::json!([{"id":1,"type":"get_states"},{"id":4,"type":"ping"}])
        );
        let ids: Vec<&Value> = answers.iter().map(|answer| &answer["id"]).collect();
        assert_eq!(ids, [&serde_json::json!(2), &serde_json::json!(3)]);
        let written = r#"[ {"type":"ping","id":1,"n":123456789012345678901234567890},{"id":2,"type":"hassio/x"}]"#;
        match judge_message(written) {
            Verdict::Instead {
                forward: Some(Message::Text(text)),
                ..
            } => assert_eq!(
                text.as_str(),
                r#"[{"type":"ping","id":1,"n":123456789012345678901234567890}]"#,
                "the allowed command was not passed on as written"
            ),
            _ => panic!("expected the array to be judged"),
        }
        let (forward, answers) = instead(judge_message(r#"[{"id":9,"type":"supervisor/api"}]"#));
        assert_eq!((forward, answers.len()), (None, 1));
        assert!(matches!(
            judge_message(r#"[{"id":1,"type":"ping"}]"#),
            Verdict::Forward
        ));
    }

    #[test]
    fn text_that_is_not_readable_json_goes_nowhere() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for text in [
            "not json",
            r#"{"id":1,"type":"supervisor/api","n":1e999}"#,
            deep.as_str(),
        ] {
            let (forward, answers) = instead(judge_message(text));
            assert_eq!(forward, None, "{text}");
            assert_eq!(answers[0]["error"]["code"], "invalid_format");
        }
    }

    #[test]
    fn other_messages_pass_unchanged() {
        for text in [
            r#"{"id":1,"type":"get_states"}"#,
            r#"{"id":2,"type":"supervisors"}"#,
            r#"{"id":3,"type":"Supervisor/api"}"#,
            "42",
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
