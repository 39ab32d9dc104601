//! One client message of a WebSocket, judged: the auth phase (its token
//! checked like a header token) and, after it, the commands an add-on may
//! not send (`supervisor/`, `hassio/`), answered with an error result.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::Access;

/// What the relay does with one client message.
pub(super) enum Verdict<'a> {
    /// Send it on.
    Forward,
    /// The auth phase is over, with `token`: send `message` on instead
    /// (an auth message with nothing but the token the upstream gets).
    Authenticated { token: String, message: Message },
    /// Answer the client; nothing goes on.
    Answer(Message),
    /// The refused commands (by id, as written) each get an error result;
    /// what is left of the message, if anything, goes on.
    Instead {
        forward: Option<Message>,
        refused: Vec<Option<&'a RawValue>>,
    },
    /// Answer the client, then close both sides.
    Refuse(Message),
}

/// The auth phase: see [`Access::admits`], under the policy in force now.
pub(super) fn auth(text: &str, access: &Access) -> Verdict<'static> {
    // Only an object: serde would also fill the fields from an array, by
    // position, which is not an auth message to Home Assistant.
    let object = text.trim_ascii_start().starts_with('{');
    let token = object
        .then(|| read::<AuthMessage>(text))
        .flatten()
        .filter(|message| message.kind.as_deref() == Some("auth"))
        .and_then(|message| message.access_token);
    let policy = access.grant.policy();
    match token {
        // The upstream gets only the token checked here (or the gateway's
        // own credential, as in the upgrade request's headers): the
        // Supervisor's own proxy reads `api_password` before
        // `access_token`, so another field passed on could log in as
        // someone else.
        Some(token) if access.admits(&policy, &token) => {
            let sent = access.upstream_token.as_deref().unwrap_or(&token);
            let checked = serde_json::json!({"type": "auth", "access_token": sent});
            Verdict::Authenticated {
                token: token.into_owned(),
                message: Message::text(checked.to_string()),
            }
        }
        _ => auth_refused(),
    }
}

/// `auth_invalid`, and both sides closed.
pub(super) fn auth_refused() -> Verdict<'static> {
    let refusal = serde_json::json!({
        "type": "auth_invalid",
        "message": "Invalid access token or password",
    });
    Verdict::Refuse(Message::text(refusal.to_string()))
}

/// The auth message's two fields; the rest is skipped.
#[derive(Deserialize)]
struct AuthMessage<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    access_token: Option<Cow<'a, str>>,
}

/// The two fields of a command the relay looks at, as written; the rest is
/// skipped. (A field given twice makes the message unreadable.)
#[derive(Deserialize)]
struct Command<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

impl Command<'_> {
    /// The command's type, when it is a string.
    fn kind(&self) -> Option<String> {
        self.kind
            .and_then(|kind| serde_json::from_str::<String>(kind.get()).ok())
    }
}

/// `text` read as `T`, if it is JSON the relay can read (see
/// [`readable`]) of that shape.
fn read<'a, T: Deserialize<'a>>(text: &'a str) -> Option<T> {
    readable(text)
        .then(|| serde_json::from_str(text).ok())
        .flatten()
}

/// Whether `text` is JSON that `serde_json` reads into a value (numbers in
/// range, nesting within its limit, escapes valid), checked without
/// building the value: a message read into `serde_json::Value` takes many
/// times its own size in memory.
fn readable(text: &str) -> bool {
    serde_json::from_str::<Checked>(text).is_ok()
}

/// Any JSON value, read as `serde_json::Value` would be and dropped as it
/// is read. (serde's `IgnoredAny` would be shorter but skips numbers
/// without reading them: `1e999` passes it and fails `Value`.)
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Checked, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Checked)
    }
}

/// Calls `each` with every element of the JSON array `text`, as written.
fn each_element<'a>(
    text: &'a str,
    each: impl FnMut(&'a RawValue),
) -> Result<(), serde_json::Error> {
    struct Elements<F>(F);
    impl<'de, F: FnMut(&'de RawValue)> Visitor<'de> for Elements<F> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON array")
        }
        fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
            while let Some(element) = seq.next_element::<&'de RawValue>()? {
                (self.0)(element);
            }
            Ok(())
        }
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    deserializer.deserialize_seq(Elements(each))?;
    deserializer.end()
}

/// What one command of a message is.
enum Judged<'a> {
    Allowed,
    /// Refused: its id as written, if it has one, and its type.
    Denied(Option<&'a RawValue>, String),
    /// An object whose fields cannot be read (a field given twice).
    Unreadable,
}

/// Judges one command, given as written (JSON already checked readable).
fn judge_command(command: &str) -> Judged<'_> {
    if !command.starts_with('{') {
        return Judged::Allowed;
    }
    let Ok(command) = serde_json::from_str::<Command>(command) else {
        return Judged::Unreadable;
    };
    match command.kind() {
        Some(kind) if is_denied(&kind) => Judged::Denied(command.id, kind),
        _ => Judged::Allowed,
    }
}

/// After auth: an add-on's `supervisor/` and `hassio/` commands never reach
/// the upstream; the add-on gets an error result for that id instead. Home
/// Assistant also runs each command of a JSON array, so an array is judged
/// command by command and only the allowed ones go on. A text message that
/// is not JSON this parser can read goes nowhere: Home Assistant's parser
/// might read it (deeper nesting, numbers out of range) and run it.
///
/// Nothing of the message is copied but the allowed commands of an array
/// that had some refused, and the refused commands' ids.
pub(super) fn judge_message(text: &str) -> Verdict<'_> {
    if !readable(text) {
        return unreadable();
    }
    let text = text.trim_ascii();
    if !text.starts_with('[') {
        return match judge_command(text) {
            Judged::Allowed => Verdict::Forward,
            Judged::Denied(id, kind) => {
                log_refused(1, &kind);
                Verdict::Instead {
                    forward: None,
                    refused: vec![id],
                }
            }
            Judged::Unreadable => unreadable(),
        };
    }
    // First only whether any command is refused, holding nothing: most
    // arrays go on as they are.
    let mut any_refused = false;
    let mut any_unreadable = false;
    let looked = each_element(text, |command| match judge_command(command.get()) {
        Judged::Allowed => {}
        Judged::Denied(..) => any_refused = true,
        Judged::Unreadable => any_unreadable = true,
    });
    if looked.is_err() || any_unreadable {
        return unreadable();
    }
    if !any_refused {
        return Verdict::Forward;
    }
    // The allowed commands go on as the client wrote them, cut out of its
    // text rather than written anew.
    let mut allowed = String::with_capacity(text.len());
    let mut refused = Vec::new();
    let mut first_refused = String::new();
    let _ = each_element(text, |command| match judge_command(command.get()) {
        Judged::Denied(id, kind) => {
            if refused.is_empty() {
                first_refused = kind;
            }
            refused.push(id);
        }
        _ => {
            allowed.push(if allowed.is_empty() { '[' } else { ',' });
            allowed.push_str(command.get());
        }
    });
    log_refused(refused.len(), &first_refused);
    let forward = (!allowed.is_empty()).then(|| {
        allowed.push(']');
        Message::text(allowed)
    });
    Verdict::Instead { forward, refused }
}

/// The answer to text that is not JSON this parser can read.
fn unreadable() -> Verdict<'static> {
    tracing::warn!("websocket message refused: not readable JSON");
    Verdict::Answer(result_error(
        None,
        "invalid_format",
        "Message incorrectly formatted.",
    ))
}

/// One warning per message, however many of its commands were refused: a
/// line per command would let one message write hundreds of megabytes of
/// log. The first refused type is named by its namespace alone
/// (`supervisor/…`, `hassio/…`): the rest is the client's text, which may
/// be anything, a token even (helper 81).
fn log_refused(refused: usize, first: &str) {
    let namespace = match first.split_once('/') {
        Some((namespace, _)) => namespace,
        None => first,
    };
    tracing::warn!(refused, message_type = %format_args!("{}/…", Shortened(namespace)), "websocket message refused");
}

/// Whether a command's type is one an add-on may not send.
fn is_denied(kind: &str) -> bool {
    kind.starts_with("supervisor/") || kind.starts_with("hassio/")
}

/// The longest id, as written, an error result repeats; a longer one is
/// answered as `null`. Home Assistant's ids are integers, and repeating a
/// message-sized id would let each small refusal cost as much as the
/// message (a helper filled 600 MB with one socket's queue so).
pub(super) const MAX_ECHOED_ID: usize = 64;

/// The error result for a command, under its id as the client wrote it
/// (written out as it came, not read into a value) if that is short.
pub(super) fn result_error(id: Option<&RawValue>, code: &str, message: &str) -> Message {
    let quoted = |text: &str| serde_json::to_string(text).unwrap_or_default();
    let id = id
        .map(RawValue::get)
        .filter(|id| id.len() <= MAX_ECHOED_ID)
        .unwrap_or("null");
    Message::text(format!(
        r#"{{"id":{},"type":"result","success":false,"error":{{"code":{},"message":{}}}}}"#,
        id,
        quoted(code),
        quoted(message),
    ))
}

/// A client's text as logged: at most 100 characters of it.
pub(super) struct Shortened<'a>(pub(super) &'a str);

impl fmt::Display for Shortened<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        let shown: String = chars.by_ref().take(100).collect();
        write!(f, "{}", shown.escape_debug())?;
        if chars.next().is_some() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

pub(super) fn close(code: CloseCode, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}
