//! The mock upstream's WebSocket on the core proxy paths: a small part of
//! Home Assistant's WebSocket protocol (the auth phase, `ping`, an echo of
//! every other command, a close on request), recording what it receives.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{MockState, Reply};

/// The Home Assistant version the mock claims in the auth phase.
const HA_VERSION: &str = "2026.12.0";

/// How long the client has to send its auth message, as Home Assistant
/// allows; past that it is refused like a bad token.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the mock waits for the client's side of a close handshake.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Close code after a refused auth message, as Home Assistant sends.
const NORMAL_CLOSE: u16 = 1000;

/// One message the mock's WebSocket received.
///
/// Pings and pongs are answered (or accepted) below the protocol and are not
/// recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsRecord {
    /// A text frame, as received.
    Text(String),
    /// A binary frame, as received.
    Binary(Vec<u8>),
    /// A close frame with its code, `None` when it carried none.
    Close(Option<u16>),
}

/// What the mock does about one command of the client.
enum Step {
    /// Answer with this JSON text.
    Answer(Value),
    /// Echo a binary frame.
    Echo(Bytes),
    /// Close the socket with this code and reason "requested".
    Close(u16),
}

// --- Upgrade ---------------------------------------------------------------

/// Takes the upgrade out of `parts` and runs a session on it; a request that
/// is no WebSocket handshake gets axum's status (400, 405 or 426) with
/// Home Assistant's `{"message": ...}` body.
pub(super) async fn upgrade(state: MockState, parts: &mut Parts) -> Response {
    match WebSocketUpgrade::from_request_parts(parts, &()).await {
        Ok(upgrade) => upgrade.on_upgrade(move |socket| session(state, socket)),
        Err(rejection) => {
            let body = json!({"message": rejection.body_text()});
            Reply::Core(rejection.status(), body).into_response()
        }
    }
}

// --- Session ---------------------------------------------------------------

async fn session(state: MockState, mut socket: WebSocket) {
    let required = json!({"type": "auth_required", "ha_version": HA_VERSION});
    if send_json(&mut socket, required).await.is_err() {
        return;
    }

    match tokio::time::timeout(AUTH_TIMEOUT, receive(&state, &mut socket)).await {
        // The client left, or began the close itself: nothing to answer.
        Ok(None | Some(Message::Close(_))) => {}
        Ok(Some(message)) if accepts(&message) => {
            tracing::debug!(outcome = "auth_ok", "mock websocket auth");
            let ok = json!({"type": "auth_ok", "ha_version": HA_VERSION});
            if send_json(&mut socket, ok).await.is_ok() {
                converse(&state, &mut socket).await;
            }
        }
        Ok(Some(_)) | Err(_) => {
            tracing::debug!(outcome = "auth_invalid", "mock websocket auth");
            refuse(&mut socket).await;
        }
    }
    finish(&state, &mut socket).await;
}

/// Whether `message` is `{"type": "auth", "access_token": <non-empty>}`.
fn accepts(message: &Message) -> bool {
    let Message::Text(text) = message else {
        return false;
    };
    let Ok(Value::Object(auth)) = serde_json::from_str::<Value>(text.as_str()) else {
        return false;
    };
    let token = auth.get("access_token").and_then(Value::as_str);
    auth.get("type").and_then(Value::as_str) == Some("auth") && token.is_some_and(|t| !t.is_empty())
}

async fn refuse(socket: &mut WebSocket) {
    let invalid = json!({"type": "auth_invalid",
        "message": "Invalid access token or password"});
    if send_json(socket, invalid).await.is_ok() {
        let _ = socket.send(close_frame(NORMAL_CLOSE, "")).await;
    }
}

/// The command phase: until either side closes or the connection breaks.
async fn converse(state: &MockState, socket: &mut WebSocket) {
    while let Some(message) = receive(state, socket).await {
        let step = match message {
            Message::Text(text) => command(text.as_str()),
            Message::Binary(bytes) => Step::Echo(bytes),
            // A close (`receive` passes no pings): tungstenite has already
            // queued the same close frame in reply.
            _ => return,
        };
        let sent = match step {
            Step::Answer(value) => send_json(socket, value).await,
            Step::Echo(bytes) => socket.send(Message::Binary(bytes)).await,
            Step::Close(code) => {
                let _ = socket.send(close_frame(code, "requested")).await;
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Reads on after a close, so the handshake completes, the reply to the
/// client's close goes out and the client's own close is recorded.
async fn finish(state: &MockState, socket: &mut WebSocket) {
    let drain = async { while receive(state, socket).await.is_some() {} };
    let _ = tokio::time::timeout(CLOSE_WAIT, drain).await;
}

/// The next text, binary or close frame, recorded; `None` once the
/// connection is over or broken.
async fn receive(state: &MockState, socket: &mut WebSocket) -> Option<Message> {
    loop {
        let message = socket.recv().await?.ok()?;
        let record = match &message {
            Message::Text(text) => WsRecord::Text(text.as_str().to_owned()),
            Message::Binary(bytes) => WsRecord::Binary(bytes.to_vec()),
            Message::Close(frame) => WsRecord::Close(frame.as_ref().map(|f| f.code)),
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        state.push_ws(record);
        return Some(message);
    }
}

async fn send_json(socket: &mut WebSocket, value: Value) -> Result<(), axum::Error> {
    socket.send(Message::Text(value.to_string().into())).await
}

fn close_frame(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

// --- Commands --------------------------------------------------------------

/// The answer to one text message of the command phase.
///
/// A message that is not a JSON object with an integer `id` and a string
/// `type` gets Home Assistant's `invalid_format` error result, with its id
/// where it had a usable one.
fn command(text: &str) -> Step {
    let Ok(Value::Object(message)) = serde_json::from_str::<Value>(text) else {
        return invalid(Value::Null, "Message incorrectly formatted.");
    };
    let id = match message.get("id") {
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Value::Number(n.clone()),
        _ => return invalid(Value::Null, "Message incorrectly formatted."),
    };
    match message.get("type").and_then(Value::as_str) {
        None => invalid(id, "Message incorrectly formatted."),
        Some("ping") => Step::Answer(json!({"id": id, "type": "pong"})),
        Some("test/close") => close_on_request(id, &message),
        Some(kind) => Step::Answer(json!({"id": id, "type": "result",
            "success": true, "result": {"echo": kind}})),
    }
}

/// `test/close`: closes with the message's `code` if that code may be sent
/// in a close frame (1000-1003, 1007-1013, 3000-4999).
fn close_on_request(id: Value, message: &Map<String, Value>) -> Step {
    let code = message
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|code| u16::try_from(code).ok())
        .filter(|code| matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999));
    match code {
        Some(code) => Step::Close(code),
        None => invalid(id, "code must be a close code a peer may send"),
    }
}

fn invalid(id: Value, message: &str) -> Step {
    Step::Answer(json!({"id": id, "type": "result", "success": false,
        "error": {"code": "invalid_format", "message": message}}))
}
