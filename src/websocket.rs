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
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::caller::Caller;
use crate::forwarding;
use crate::forwarding::ForwardError;
use crate::gateway::{Grant, Policy};
use crate::idle::SendWatch;
use crate::places::Place;
use crate::websocket_meter::{cut_of, Cut, Meter, Metered};
use crate::websocket_pieces::{Cutting, Pieces};

#[path = "websocket_messages.rs"]
mod messages;

use messages::{auth, auth_refused, close, judge_message, result_error, Verdict};

/// The paths that carry the Home Assistant WebSocket API (v1 and v2).
const WEBSOCKET_PATHS: [&str; 4] = [
    "/core/websocket",
    "/core/api/websocket",
    "/homeassistant/websocket",
    "/homeassistant/api/websocket",
];

/// How many frames may wait for a slow receiver before the sender waits.
const QUEUE: usize = 32;

/// How many bytes of messages may wait for the client before the senders
/// wait; a larger message waits alone. Counting frames only, 32 large
/// answers the client asked for and did not read stayed in memory until
/// the send timeout.
const QUEUE_BYTES: usize = 4 << 20;

/// The relay's queue of messages for the client, bounded in frames and in
/// bytes.
fn client_queue() -> (ToClient, mpsc::Receiver<Queued>) {
    let (messages, queue) = mpsc::channel(QUEUE);
    let room = Arc::new(Semaphore::new(QUEUE_BYTES));
    (ToClient { messages, room }, queue)
}

/// Where both directions put messages for the client.
#[derive(Clone)]
struct ToClient {
    messages: mpsc::Sender<Queued>,
    room: Arc<Semaphore>,
}

/// A message on its way to the client, with the room it takes.
struct Queued {
    message: Message,
    _room: OwnedSemaphorePermit,
}

/// The client's writer has ended.
#[derive(Debug)]
struct WriterGone;

impl ToClient {
    /// Queues `message`, once there is room for it.
    async fn send(&self, message: Message) -> Result<(), WriterGone> {
        let room = self.room.clone().acquire_many_owned(room_for(&message));
        let room = room.await.map_err(|_| WriterGone)?;
        let queued = Queued {
            message,
            _room: room,
        };
        self.messages.send(queued).await.map_err(|_| WriterGone)
    }

    /// Queues `message` if there is room for it now.
    fn try_send(&self, message: Message) -> Result<(), WriterGone> {
        let room = self.room.clone().try_acquire_many_owned(room_for(&message));
        let room = room.map_err(|_| WriterGone)?;
        let queued = Queued {
            message,
            _room: room,
        };
        self.messages.try_send(queued).map_err(|_| WriterGone)
    }
}

/// The room a message takes in the queue: its size, at least 1 and at most
/// the whole queue.
fn room_for(message: &Message) -> u32 {
    message.len().clamp(1, QUEUE_BYTES) as u32
}

/// The largest message, or frame, the gateway takes from the upstream (the
/// library's own message limit; its frame limit is smaller).
pub const UPSTREAM_MESSAGE_LIMIT: usize = 64 << 20;

/// Bytes each side of a relay reads at once.
const READ_BUFFER: usize = 32 * 1024;

/// The most bytes a socket's write buffer holds. The library answers each
/// ping with a pong on its own, into that buffer, whether or not the peer
/// reads: unbounded (the library's default), a client that sent pings and
/// read nothing grew the gateway's memory by about 50 MB a second (found by
/// helper 60). At this bound the library keeps only the latest pong
/// unsent, as RFC 6455 allows. Larger than the library's write threshold
/// ([`READ_BUFFER`] here), which it requires, and than a frame the gateway
/// writes (see [`FRAGMENT`]).
const WRITE_BUFFER_MOST: usize = 512 * 1024;

/// The most payload a data frame the gateway writes carries: a longer
/// message goes out in fragments of this size, so that it fits under
/// [`WRITE_BUFFER_MOST`]. (RFC 6455 lets an intermediary fragment a
/// message anew when no extension is in use; the relay offers none.) The
/// library keeps its write buffer at the largest size it reached, for the
/// socket's life: with 128 KiB fragments (and its default write threshold
/// of 128 KiB) a socket that had carried one large message kept about 330
/// KiB more than one that had carried none, with 32 KiB about 130 (helper
/// 85); large messages relay as fast.
const FRAGMENT: usize = 32 * 1024;

/// Whether a request asks to become a WebSocket on a path that carries one.
pub fn is_upgrade(parts: &request::Parts, path: &str) -> bool {
    let path = path.strip_prefix("/v2").unwrap_or(path);
    parts.method == Method::GET
        && WEBSOCKET_PATHS.contains(&path)
        && forwarding::lists(&parts.headers, header::UPGRADE, "websocket")
        && forwarding::lists(&parts.headers, header::CONNECTION, "upgrade")
}

/// Whether the upstream's 101 to an upgrade `request` answers it as RFC
/// 6455 (4.1) asks of a WebSocket server: `Upgrade: websocket`,
/// `Connection: upgrade`, the `Sec-WebSocket-Accept` made from the
/// request's one key, no extension (the relay offers none), and no
/// subprotocol but one of those the request offered. The relay is the
/// upstream's client, which must fail the connection otherwise; the
/// client's library, which gets the same accept, may not look. (An
/// extension taken unasked, such as compression, broke the relay at its
/// first frame; a subprotocol not offered reached a client that asked for
/// none: helper 71.)
pub fn is_handshake_answer(request: &HeaderMap, answer: &HeaderMap) -> bool {
    let mut keys = forwarding::values_of(request, &header::SEC_WEBSOCKET_KEY);
    let (Some(key), None) = (keys.next(), keys.next()) else {
        return false;
    };
    let expected = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut accepts = forwarding::values_of(answer, &header::SEC_WEBSOCKET_ACCEPT);
    forwarding::lists(answer, header::UPGRADE, "websocket")
        && forwarding::lists(answer, header::CONNECTION, "upgrade")
        && matches!(
            (accepts.next(), accepts.next()),
            (Some(accept), None) if accept.as_bytes() == expected.as_bytes()
        )
        && forwarding::values_of(answer, &header::SEC_WEBSOCKET_EXTENSIONS)
            .all(|value| value.as_bytes().trim_ascii().is_empty())
        && subprotocol_offered(request, answer)
}

/// Whether the answer names no subprotocol, or one (on one line) of those
/// the request's `Sec-WebSocket-Protocol` lines offered.
fn subprotocol_offered(request: &HeaderMap, answer: &HeaderMap) -> bool {
    let mut chosen = forwarding::values_of(answer, &header::SEC_WEBSOCKET_PROTOCOL);
    let chosen = match (chosen.next(), chosen.next()) {
        (None, _) => return true,
        (Some(one), None) => one.as_bytes().trim_ascii(),
        (Some(_), Some(_)) => return false,
    };
    !chosen.is_empty()
        && forwarding::values_of(request, &header::SEC_WEBSOCKET_PROTOCOL)
            .flat_map(|line| line.as_bytes().split(|byte| *byte == b','))
            .any(|offered| offered.trim_ascii() == chosen)
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
    /// Largest message (and frame) the client may send.
    pub max_client_message: usize,
    /// The room the client's messages take, and how long one may take to
    /// come whole.
    pub(crate) meter: Arc<Meter>,
    /// The add-on's place under `limits.max_websockets_per_addon`, held
    /// for as long as the relay runs.
    pub slot: Option<Place>,
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

/// Who a relay serves, and what it checks them against.
pub struct Access {
    /// The upgrade request, decided again after every reload; the in-band
    /// auth must name the add-on that made it, under the policy in force
    /// when the auth message comes.
    pub grant: Grant,
    /// The gateway's own credential (`upstream_token`): the upstream's
    /// auth message carries it instead of the add-on's token.
    pub upstream_token: Option<Arc<str>>,
}

impl Access {
    /// The in-band auth: `token` must belong to an add-on with
    /// `homeassistant_api`, as a header token must, and to the add-on that
    /// made the upgrade request.
    fn admits(&self, policy: &Policy, token: &str) -> bool {
        let upgraded_by = self.grant.caller().slug();
        matches!(
            policy.callers.identify(Some(token.as_bytes())),
            Caller::Addon(addon) if addon.homeassistant_api && upgraded_by == Some(addon.slug.as_str())
        )
    }

    /// After a reload: whether the upgrade request would still be allowed
    /// and its auth token (once one was taken) still accepted.
    fn still_allowed(&self, authenticated_with: Option<&str>) -> bool {
        self.grant.still_allowed()
            && authenticated_with.is_none_or(|token| self.admits(&self.grant.policy(), token))
    }
}

/// Once both sides have upgraded, relays frames until either side closes.
/// A client that takes none of what is written to it for the send timeout
/// is given up on at once: its socket is reset, the upstream side closed.
pub async fn relay(ends: Ends, access: Access) {
    // (`_slot` is held to the end of the relay.)
    let Ends {
        client,
        upstream,
        handover,
        max_client_message,
        meter,
        slot: _slot,
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
    // The client's messages are held whole to be judged, so they are held
    // to the limit; the upstream (trusted, and the sender of large state
    // dumps) has a larger one, for messages and frames alike: Home
    // Assistant sends each message as one frame, so the library's frame
    // limit (16 MiB) would have been the real limit on its answers. Both
    // sides read through a smaller buffer than the library's (128 KiB
    // each, allocated up front), which made an idle WebSocket cost the
    // gateway 273 KiB; with 32 KiB it costs 73, and an 8 MB message is
    // relayed as fast (8 KiB: half again as slow).
    let library = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        // (Written once this much waits; see [`FRAGMENT`].)
        .write_buffer_size(READ_BUFFER)
        .max_write_buffer_size(WRITE_BUFFER_MOST);
    let upstream_config = library
        .max_message_size(Some(UPSTREAM_MESSAGE_LIMIT))
        .max_frame_size(Some(UPSTREAM_MESSAGE_LIMIT));
    let client_config = library
        .max_message_size(Some(max_client_message))
        .max_frame_size(Some(max_client_message));
    // Each side's large frames are cut into pieces, which the library
    // gathers into their messages; see [`crate::websocket_pieces`].
    let from_client = Cutting {
        masked: true,
        limit: max_client_message,
    };
    let from_upstream = Cutting {
        masked: false,
        limit: UPSTREAM_MESSAGE_LIMIT,
    };
    let client = socket(
        client,
        Some(meter.clone()),
        from_client,
        Role::Server,
        client_config,
    )
    .await;
    let upstream = socket(upstream, None, from_upstream, Role::Client, upstream_config).await;
    let (client_sink, client_stream) = client.split();
    let (upstream_sink, upstream_stream) = upstream.split();
    let (to_client, from_relay) = client_queue();
    let (gave_up, given_up) = oneshot::channel();
    let (reached, phase) = watch::channel(AuthPhase::Nothing);

    // (Both end with the relay, however it ends: a panic in it left them
    // running, and the sockets open, with the relay's place given back:
    // helper 83.)
    let mut writer = Ending(tokio::spawn(write_all(
        from_relay,
        client_sink,
        send,
        gave_up,
    )));
    let mut down = Ending(tokio::spawn(downstream(
        upstream_stream,
        to_client.clone(),
        reached,
    )));
    let mut sides = Sides {
        client: client_stream,
        meter,
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
        let forwarding = upstream_side(&mut sides, &access, phase);
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

async fn socket(
    io: Upgraded,
    meter: Option<Arc<Meter>>,
    cutting: Cutting,
    role: Role,
    config: WebSocketConfig,
) -> WebSocketStream<Io> {
    // (The meter counts what the client sent, before it is cut.)
    let io = Pieces::new(Metered::new(TokioIo::new(io), meter), cutting);
    WebSocketStream::from_raw_socket(io, role, Some(config)).await
}

/// A side's connection: each side's large frames cut into pieces, and
/// the client's reads counted before that.
type Io = Pieces<Metered<TokioIo<Upgraded>>>;

type Sink = futures_util::stream::SplitSink<WebSocketStream<Io>, Message>;
type Stream = futures_util::stream::SplitStream<WebSocketStream<Io>>;

/// A task of the relay's, aborted when the relay lets go of it.
struct Ending(tokio::task::JoinHandle<()>);

impl Ending {
    fn abort(&self) {
        self.0.abort();
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::future::Future for Ending {
    type Output = Result<(), tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

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
/// client takes none of it for the send timeout (or its write buffer is
/// full of the pongs its pings asked for), gives it up, lets go of the
/// socket and says so on `gave_up`.
async fn write_all(
    mut queue: mpsc::Receiver<Queued>,
    mut sink: Sink,
    send: Option<SendWatch>,
    gave_up: oneshot::Sender<()>,
) {
    // (`_room` goes back to the queue once the message is written.)
    while let Some(Queued { message, _room }) = queue.recv().await {
        let closing = message.is_close();
        let sent = match &send {
            None => Some(send_in_fragments(&mut sink, message).await),
            Some(watch) => tokio::select! {
                biased;
                sent = send_in_fragments(&mut sink, message) => Some(sent),
                () = watch.stalled() => {
                    watch.give_up();
                    None
                }
            },
        };
        let sent = match sent {
            // The write buffer full of pongs: a client that pings and
            // takes nothing, as good as one that takes nothing.
            Some(Err(WsError::WriteBufferFull(_))) => {
                if let Some(watch) = &send {
                    watch.give_up_full_of_pongs();
                }
                None
            }
            sent => sent,
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

/// Sends `message`; a data message longer than [`FRAGMENT`] goes as
/// fragments of that size, one after another.
async fn send_in_fragments(sink: &mut Sink, message: Message) -> Result<(), WsError> {
    let (kind, mut rest) = match message {
        Message::Text(text) if text.len() > FRAGMENT => (Data::Text, bytes::Bytes::from(text)),
        Message::Binary(data) if data.len() > FRAGMENT => (Data::Binary, data),
        message => return sink.send(message).await,
    };
    let mut opcode = OpCode::Data(kind);
    while !rest.is_empty() {
        let piece = rest.split_to(rest.len().min(FRAGMENT));
        let last = rest.is_empty();
        let frame = Message::Frame(Frame::message(piece, opcode, last));
        if last {
            sink.send(frame).await?;
        } else {
            sink.feed(frame).await?;
        }
        opcode = OpCode::Data(Data::Continue);
    }
    Ok(())
}

async fn close_upstream(mut upstream: Sink) {
    let _ = upstream.send(close(CloseCode::Away, "client gone")).await;
    let _ = upstream.close().await;
}

/// Upstream to client: everything passes but pongs. (Each side's pings are
/// answered by the gateway's own end of that side's socket and also passed
/// on; the other side's pong to the gateway goes no further, so that a ping
/// gets one pong.) If the upstream goes away without a close, sends a
/// message over [`UPSTREAM_MESSAGE_LIMIT`] or breaks the protocol, the
/// client is told so with 1011 and a reason that says which.
async fn downstream(mut upstream: Stream, to_client: ToClient, reached: watch::Sender<AuthPhase>) {
    let reason = loop {
        match upstream.next().await {
            Some(Ok(Message::Pong(_))) => continue,
            Some(Ok(message)) => {
                let closing = message.is_close();
                // (Read only until the auth phase is over.)
                let phase = match *reached.borrow() {
                    AuthPhase::Over => None,
                    _ => AuthPhase::of(&message),
                };
                if to_client.send(message).await.is_err() || closing {
                    return;
                }
                // Once the message is queued for the client: what the
                // relay answers the client itself goes after it.
                if let Some(phase) = phase {
                    reached.send_if_modified(|now| {
                        let later = phase > *now;
                        *now = (*now).max(phase);
                        later
                    });
                }
            }
            Some(Err(error)) => break upstream_fault(&error),
            None => break UPSTREAM_GONE,
        }
    };
    let _ = to_client.send(close(CloseCode::Error, reason)).await;
}

/// Client to upstream: the auth message is checked, then each message is
/// judged; pings, binary frames and closes pass, pongs stop (see
/// [`downstream`]). Returns when the client closes or goes away, is
/// refused, or is no longer allowed after a reload; the relay closes the
/// upstream side after.
async fn upstream_side(sides: &mut Sides, access: &Access, phase: watch::Receiver<AuthPhase>) {
    let Sides {
        client,
        meter,
        upstream,
        to_client,
    } = sides;
    let mut order = AuthOrder::new(phase);
    let mut reloads = access.grant.reloads();
    // The token the in-band auth was accepted with.
    let mut authenticated_with: Option<String> = None;
    loop {
        let next = tokio::select! {
            // (A reload first: nothing more goes on once it has been seen.)
            biased;
            Ok(()) = reloads.changed() => {
                if access.still_allowed(authenticated_with.as_deref()) {
                    continue;
                }
                return no_longer_allowed(access, to_client, upstream).await;
            }
            // The answers held for the upstream's auth messages, once
            // those have gone to the client (or the wait ran out).
            () = order.ready() => {
                for answer in order.take() {
                    if to_client.send(answer).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            next = client.next() => next,
        };
        let authenticated = authenticated_with.is_some();
        let message = match next {
            Some(Ok(message)) => {
                // (Pings and pongs are not counted as message bytes.)
                if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
                    meter.taken_whole();
                }
                message
            }
            Some(Err(error)) => {
                // Nothing of the message went on: the client is told why
                // (RFC 6455's codes), the upstream that the client went.
                let Some(refusal) = client_fault(&error) else {
                    return;
                };
                let _ = to_client.send(refusal).await;
                let _ = upstream
                    .send(close(CloseCode::Away, "client refused"))
                    .await;
                return;
            }
            None => return,
        };
        let verdict = match &message {
            Message::Text(text) if !authenticated => auth(text, access),
            // Only a text message can be the auth message.
            Message::Binary(_) if !authenticated => auth_refused(),
            // Answered by the gateway's own end; nothing goes on before
            // the auth message.
            Message::Ping(_) if !authenticated => continue,
            Message::Text(text) => judge_message(text),
            Message::Pong(_) => continue,
            _ => Verdict::Forward,
        };
        let message = match verdict {
            Verdict::Forward => message,
            Verdict::Authenticated { token, message } => {
                authenticated_with = Some(token);
                message
            }
            Verdict::Answer(answer) => {
                if order.give(answer, to_client).await.is_err() {
                    return;
                }
                continue;
            }
            Verdict::Instead { forward, refused } => {
                for id in refused {
                    let answer = result_error(id, "unauthorized", "Unauthorized");
                    if order.give(answer, to_client).await.is_err() {
                        return;
                    }
                }
                match forward {
                    Some(forward) => forward,
                    None => continue,
                }
            }
            Verdict::Refuse(answer) => {
                // A refusal like any other: logged with who asked (the
                // add-on that made the upgrade), never the token sent.
                tracing::warn!(
                    slug = access.grant.caller().slug().unwrap_or("-"),
                    "websocket closed: its in-band auth was refused (auth_invalid)"
                );
                // (The socket closes after it: the wait, if any, holds
                // nothing else up.)
                order.after_required().await;
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
        // A reload may have come while the client's answers were queued
        // (a client that reads nothing makes that as long as it likes):
        // nothing goes on for a token it took away (helper 77).
        if reloads.has_changed().unwrap_or(false) {
            reloads.mark_unchanged();
            if !access.still_allowed(authenticated_with.as_deref()) {
                return no_longer_allowed(access, to_client, upstream).await;
            }
        }
        let closing = message.is_close();
        if send_in_fragments(upstream, message).await.is_err() || closing {
            return;
        }
    }
}

/// Closes a relay whose add-on a reload no longer allows: 1008 to the
/// client, 1001 to the upstream.
async fn no_longer_allowed(access: &Access, to_client: &ToClient, upstream: &mut Sink) {
    tracing::info!(
        slug = access.grant.caller().slug().unwrap_or("-"),
        "websocket closed: after a reload its token no longer allows it"
    );
    let _ = to_client
        .send(close(CloseCode::Policy, NO_LONGER_ALLOWED))
        .await;
    let _ = upstream
        .send(close(CloseCode::Away, "client refused"))
        .await;
}

/// How far the upstream's side of Home Assistant's auth phase has gone to
/// the client: nothing yet, `auth_required`, then `auth_ok` (or
/// `auth_invalid`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum AuthPhase {
    Nothing,
    Required,
    Over,
}

impl AuthPhase {
    /// The phase a message from the upstream marks, if any.
    fn of(message: &Message) -> Option<AuthPhase> {
        #[derive(serde::Deserialize)]
        struct Typed<'a> {
            #[serde(rename = "type", borrow)]
            kind: Option<std::borrow::Cow<'a, str>>,
        }
        let Message::Text(text) = message else {
            return None;
        };
        let typed: Typed = serde_json::from_str(text).ok()?;
        match typed.kind.as_deref()? {
            "auth_required" => Some(AuthPhase::Required),
            "auth_ok" | "auth_invalid" => Some(AuthPhase::Over),
            _ => None,
        }
    }
}

/// Keeps the relay's own answers to the client in the order Home
/// Assistant's would come: an `auth_invalid` after the upstream's
/// `auth_required`, a refused command's result after its `auth_ok`. A
/// client that sent its auth message and a command at once got the
/// command's refusal before `auth_required` (helper 71). A refusal is held
/// rather than waited for, so that the client's socket is read on (its
/// pings, its close, a reload that revokes it, the allowed commands that
/// go on: helper 75 found a first version that stopped reading meanwhile).
struct AuthOrder {
    phase: watch::Receiver<AuthPhase>,
    /// The refusals held, in order.
    held: Vec<Message>,
    /// When to stop holding them, once the first is held.
    until: Option<tokio::time::Instant>,
    /// Whether to hold: not once a wait ran out (an upstream that does not
    /// speak the auth phase), nor once the upstream's side has ended.
    waiting: bool,
}

/// The longest the relay holds its own answers back for the upstream's
/// part of the auth phase (Home Assistant gives a client 10 s for its own).
const AUTH_ORDER_WAIT: Duration = Duration::from_secs(10);

/// The most refusals held at once; past it, they go out as they are (a
/// client that sends that many refused commands before `auth_ok` loses
/// only their order).
const AUTH_ORDER_HELD_MOST: usize = 256;

impl AuthOrder {
    fn new(phase: watch::Receiver<AuthPhase>) -> AuthOrder {
        AuthOrder {
            phase,
            held: Vec::new(),
            until: None,
            waiting: true,
        }
    }

    /// A refused command's result: given back to be sent now, or held
    /// until the upstream's `auth_ok` has gone to the client.
    fn hold(&mut self, answer: Message) -> Option<Message> {
        let over = *self.phase.borrow() >= AuthPhase::Over;
        if self.held.is_empty() && (over || !self.waiting) {
            return Some(answer);
        }
        self.held.push(answer);
        self.until
            .get_or_insert_with(|| tokio::time::Instant::now() + AUTH_ORDER_WAIT);
        if self.held.len() >= AUTH_ORDER_HELD_MOST {
            self.waiting = false;
        }
        None
    }

    /// Sends a refused command's result to the client, or holds it (see
    /// [`AuthOrder::hold`]); with the most held, sends them all now, so
    /// that no more are held than that even within one message (helper
    /// 76: an array of 880,000 refused commands held 245 MB).
    async fn give(&mut self, answer: Message, to_client: &ToClient) -> Result<(), WriterGone> {
        if let Some(answer) = self.hold(answer) {
            return to_client.send(answer).await;
        }
        if self.held.len() >= AUTH_ORDER_HELD_MOST {
            for answer in self.take() {
                to_client.send(answer).await?;
            }
        }
        Ok(())
    }

    /// Resolves once the held refusals may go: the upstream's `auth_ok`
    /// has gone to the client, the upstream's side has ended, the wait ran
    /// out, or too many are held. Never while none is held.
    async fn ready(&mut self) {
        let Some(until) = self.until else {
            return std::future::pending().await;
        };
        if !self.waiting {
            return;
        }
        let over = self.phase.wait_for(|reached| *reached >= AuthPhase::Over);
        match tokio::time::timeout_at(until, over).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => self.waiting = false,
        }
    }

    /// The refusals held, to be sent now, in order.
    fn take(&mut self) -> Vec<Message> {
        self.until = None;
        std::mem::take(&mut self.held)
    }

    /// Waits until the upstream's `auth_required` has gone to the client,
    /// for an `auth_invalid` that closes the socket after it.
    async fn after_required(&mut self) {
        if !self.waiting {
            return;
        }
        let required = self
            .phase
            .wait_for(|reached| *reached >= AuthPhase::Required);
        if !matches!(
            tokio::time::timeout(AUTH_ORDER_WAIT, required).await,
            Ok(Ok(_))
        ) {
            self.waiting = false;
        }
    }
}

/// How a side's socket failed, as the library reports it.
enum Fault<'a> {
    /// The side went without a close frame, or its connection failed.
    /// (The library reports a peer that hung up without a close as a
    /// protocol error, though it is the ordinary way for a side to go.)
    WentAway,
    /// A message (or frame) over the side's limit.
    TooBig,
    /// A rule of the protocol broken; the error names the rule, never the
    /// frame's bytes.
    Protocol(&'a ProtocolError),
    /// Text that is not UTF-8. (The library's error quotes the bytes, which
    /// may hold a token: it is not logged.)
    NotUtf8,
    /// An unfinished message cut: no room for it, or not whole in time (the
    /// client's side only; see [`crate::websocket_meter`]).
    Cut(Cut),
}

fn fault(error: &WsError) -> Fault<'_> {
    match error {
        WsError::Capacity(_) => Fault::TooBig,
        WsError::Utf8(_) => Fault::NotUtf8,
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Fault::WentAway,
        WsError::Protocol(error) => Fault::Protocol(error),
        WsError::Io(error) => cut_of(error).map_or(Fault::WentAway, Fault::Cut),
        _ => Fault::WentAway,
    }
}

/// The reason the client's 1011 gives for the upstream's side failing.
fn upstream_fault(error: &WsError) -> &'static str {
    match fault(error) {
        Fault::WentAway => UPSTREAM_GONE,
        Fault::TooBig => {
            tracing::warn!(
                limit_bytes = UPSTREAM_MESSAGE_LIMIT,
                "websocket closed: an upstream message over the limit"
            );
            UPSTREAM_TOO_BIG
        }
        Fault::Protocol(error) => {
            tracing::warn!(%error, "websocket closed: the upstream broke the protocol");
            UPSTREAM_BROKE_PROTOCOL
        }
        Fault::NotUtf8 => {
            tracing::warn!("websocket closed: the upstream sent text that is not UTF-8");
            UPSTREAM_BROKE_PROTOCOL
        }
        // (The upstream's reads are not counted: it is trusted.)
        Fault::Cut(_) => UPSTREAM_GONE,
    }
}

/// The close a client gets for a message the gateway could not take from
/// it; none if the client went away rather than broke a rule.
fn client_fault(error: &WsError) -> Option<Message> {
    match fault(error) {
        Fault::WentAway => None,
        Fault::TooBig => {
            // Over `max_websocket_message_bytes` (or a frame over it).
            tracing::warn!("websocket closed: a message over max_websocket_message_bytes");
            Some(close(CloseCode::Size, TOO_BIG))
        }
        Fault::Protocol(error) => {
            tracing::info!(%error, "websocket closed: the client broke the protocol");
            Some(close(CloseCode::Protocol, "protocol error"))
        }
        Fault::NotUtf8 => {
            tracing::info!("websocket closed: the client sent text that is not UTF-8");
            Some(close(CloseCode::Invalid, "text that is not UTF-8"))
        }
        Fault::Cut(cut) => {
            let (error, code, reason) = match cut {
                Cut::NoRoomNow => (ForwardError::HeldBodiesFull, CloseCode::Again, NO_ROOM_NOW),
                Cut::NoRoomEver => (
                    ForwardError::HeldBodyTooLarge,
                    CloseCode::Size,
                    NO_ROOM_EVER,
                ),
                Cut::Stalled => (ForwardError::ClientBodyStalled, CloseCode::Policy, STALLED),
                // As the library's own refusals of such frames.
                Cut::BadFrame => {
                    tracing::info!(%cut, "websocket closed: the client broke the protocol");
                    return Some(close(CloseCode::Protocol, "protocol error"));
                }
            };
            tracing::warn!(%cut, "websocket closed: a client's unfinished message was cut off");
            crate::metrics::upstream_error(error);
            Some(close(code, reason))
        }
    }
}

/// The relay's client side and upstream side, as the client-to-upstream
/// direction holds them.
struct Sides {
    client: Stream,
    /// The count of the client's unfinished message.
    meter: Arc<Meter>,
    upstream: Sink,
    to_client: ToClient,
}

/// The close reason a client gets for a message over its limit.
const TOO_BIG: &str = "message too big";

/// The close reasons a client gets when its unfinished message is cut off:
/// no room for it now (1013, try again later), never room for it (1009),
/// or not whole in time (1008).
const NO_ROOM_NOW: &str = "gateway holds too much now, try again";
const NO_ROOM_EVER: &str = "message too big to hold";
const STALLED: &str = "message not whole in time";

/// The close reasons a client gets with 1011 when the upstream's side
/// ends without a close.
const UPSTREAM_GONE: &str = "upstream gone";
const UPSTREAM_TOO_BIG: &str = "upstream message too big";
const UPSTREAM_BROKE_PROTOCOL: &str = "upstream broke the protocol";

/// The close reason a client gets when a reload no longer allows its
/// socket.
const NO_LONGER_ALLOWED: &str = "no longer allowed";

/// The close reason both sides get when the gateway shuts down.
const SHUTTING_DOWN: &str = "gateway shutting down";

/// How long the relay waits, once it is ending, for a side to take or
/// answer a close, and for the client to take what is queued for it.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

#[cfg(test)]
#[path = "websocket_tests.rs"]
mod tests;
