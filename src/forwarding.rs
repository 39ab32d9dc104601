//! Forwarding an allowed request to the upstream: which headers the upstream
//! sees, which the gateway sets itself, and how upstream failures map to 502
//! and 504. Bodies stream both ways; nothing is buffered.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::Body as _;
use http_body_util::BodyExt;

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{request, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use crate::body::{BodyWatch, Held, HeldRoom, IdleLimit, LimitedBody, NoRoom, Sent, Tap};
use crate::caller::{Caller, TOKEN_HEADERS};
use crate::config::{Config, Limits};
use crate::decision::Permit;
use crate::gateway::Grant;
use crate::places::Places;
use crate::spares;
use crate::upstream::{SendError, Upstream};
use crate::websocket;

#[path = "forwarding_headers.rs"]
mod headers;

use headers::{
    connection_names, is_hop_by_hop, strip_hop_by_hop, X_FORWARDED_FOR, X_FORWARDED_HOST,
    X_FORWARDED_PROTO, X_GATEWAY_ADDON, X_GATEWAY_CALLER, X_GATEWAY_ROLE,
};
pub use headers::{header_problem, is_reserved_header, IDENTITY_HEADERS};
pub(crate) use headers::{lists, plain_decimal, value_lists, values_of};

/// A request's body as the gateway's server got it.
pub enum ClientBody {
    /// Read by hyper's server as the forwarding takes it.
    Streamed(Incoming),
    /// A short body that came whole with a GET's head, read with it by the
    /// gateway's own server (`plain.rs`): bashio's `{}`.
    Whole(Bytes),
}

impl ClientBody {
    /// Whether a body is known to be empty.
    pub fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Streamed(body) => body.is_end_stream(),
            ClientBody::Whole(bytes) => bytes.is_empty(),
        }
    }

    /// The bytes of a body read whole, if there are any.
    fn into_whole(self) -> Option<Bytes> {
        match self {
            ClientBody::Whole(bytes) if !bytes.is_empty() => Some(bytes),
            _ => None,
        }
    }
}

/// The client at the other end of a connection, as the upstream is told
/// of it: the `X-Forwarded-For` value, made once for all of the
/// connection's requests.
#[derive(Debug, Clone)]
pub struct Peer {
    forwarded_for: Option<HeaderValue>,
}

impl Peer {
    /// The peer at `addr`.
    pub fn new(addr: SocketAddr) -> Peer {
        let forwarded_for = match addr.ip() {
            IpAddr::V4(ip) => HeaderValue::from_bytes(dotted_quad(ip).as_bytes()),
            IpAddr::V6(ip) => HeaderValue::from_str(&ip.to_string()),
        };
        Peer {
            forwarded_for: forwarded_for.ok(),
        }
    }
}

/// An IPv4 address as `Display` writes it (`192.0.2.1`), made without the
/// formatting machinery: this runs for every connection, and
/// `Ipv4Addr`'s `Display` was a tenth of the instructions of a request
/// on a connection of its own.
fn dotted_quad(ip: Ipv4Addr) -> DottedQuad {
    let mut text = DottedQuad {
        bytes: [0; 15],
        len: 0,
    };
    for (index, octet) in ip.octets().into_iter().enumerate() {
        if index > 0 {
            text.push(b'.');
        }
        if octet >= 100 {
            text.push(b'0' + octet / 100);
        }
        if octet >= 10 {
            text.push(b'0' + octet / 10 % 10);
        }
        text.push(b'0' + octet % 10);
    }
    text
}

/// At most `255.255.255.255`.
struct DottedQuad {
    bytes: [u8; 15],
    len: usize,
}

impl DottedQuad {
    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Why an allowed request got no answer from the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The request body is over the route's limit (413).
    #[error("request body too large")]
    BodyTooLarge,
    /// The client's body broke off before it was complete (400).
    #[error("request body ended early or was malformed")]
    ClientBodyFailed,
    /// The client stopped sending its body for too long (408).
    #[error("request body stalled")]
    ClientBodyStalled,
    /// A WebSocket upgrade asked for in another HTTP version than 1.1,
    /// which has no such upgrade (400).
    #[error("a WebSocket upgrade needs HTTP/1.1")]
    UpgradeNotHttp11,
    /// The add-on holds as many WebSockets open as
    /// `limits.max_websockets_per_addon` allows (429).
    #[error("too many WebSockets open for this add-on")]
    TooManyWebSockets,
    /// A body of unknown length would take the bodies held whole, all
    /// requests together, past `limits.max_held_body_bytes` (503; nothing
    /// went upstream).
    #[error("the gateway holds as many request bodies as it may; try again")]
    HeldBodiesFull,
    /// A body of unknown length has filled `limits.max_held_body_bytes`
    /// alone and goes on: it could never be held whole (413; nothing went
    /// upstream).
    #[error("request body of unknown length too large to hold; send it with a Content-Length")]
    HeldBodyTooLarge,
    /// The upstream answered with an event stream, and the add-on holds
    /// as many open as `limits.max_event_streams_per_addon` allows (429;
    /// the answer is dropped).
    #[error("too many event streams open for this add-on")]
    TooManyEventStreams,
    /// No connection could be made (502).
    #[error("upstream unreachable")]
    UpstreamUnreachable,
    /// No response head in time (504).
    #[error("upstream timed out")]
    UpstreamTimedOut,
    /// The connection failed while sending or reading the head (502).
    #[error("upstream failed")]
    UpstreamFailed,
}

impl ForwardError {
    /// The status the client gets.
    pub fn status(self) -> http::StatusCode {
        match self {
            ForwardError::BodyTooLarge | ForwardError::HeldBodyTooLarge => {
                http::StatusCode::PAYLOAD_TOO_LARGE
            }
            ForwardError::ClientBodyFailed | ForwardError::UpgradeNotHttp11 => {
                http::StatusCode::BAD_REQUEST
            }
            ForwardError::ClientBodyStalled => http::StatusCode::REQUEST_TIMEOUT,
            ForwardError::TooManyWebSockets | ForwardError::TooManyEventStreams => {
                http::StatusCode::TOO_MANY_REQUESTS
            }
            ForwardError::UpstreamTimedOut => http::StatusCode::GATEWAY_TIMEOUT,
            ForwardError::HeldBodiesFull => http::StatusCode::SERVICE_UNAVAILABLE,
            ForwardError::UpstreamUnreachable | ForwardError::UpstreamFailed => {
                http::StatusCode::BAD_GATEWAY
            }
        }
    }
}

/// Whether the gateway knows who `caller` is: a token holder, not a request
/// with no token or an unknown or rejected one.
fn is_identified(caller: &Caller) -> bool {
    matches!(
        caller,
        Caller::HomeAssistant | Caller::Cli | Caller::Observer | Caller::Addon(_)
    )
}

/// The client to the upstream, with the gateway's rules for headers.
pub struct Forwarder {
    /// The upstream's connections, pooled per worker thread.
    connections: Upstream,
    /// `Host` for a client that sent none: the upstream's address.
    upstream_host: Option<HeaderValue>,
    /// `Authorization` with the gateway's own credential, when
    /// `upstream_token` is set.
    upstream_authorization: Option<HeaderValue>,
    /// The gateway's own credential alone, for WebSocket auth messages.
    upstream_token: Option<Arc<str>>,
    /// Whether the upstream is told who calls (`X-Gateway-*`).
    identity_headers: bool,
    limits: Limits,
    /// The WebSockets each add-on holds open.
    sockets: Places,
    /// The event streams each add-on holds open.
    streams: Places,
    /// The room left under `limits.max_held_body_bytes`, in bytes; `None`
    /// without a cap.
    held: Option<HeldRoom>,
}

impl Forwarder {
    /// A forwarder for the upstream and limits of `config`.
    pub fn new(config: &Config) -> Forwarder {
        let connections = Upstream::new(
            &config.upstream,
            config.limits.upstream_connect_timeout,
            config.limits.upstream_pool_size,
            config.workers,
        );
        let upstream_authorization = config.upstream_token.as_ref().and_then(|token| {
            HeaderValue::from_str(&format!("Bearer {}", token.0))
                .ok()
                .map(sensitive)
        });
        Forwarder {
            connections,
            upstream_host: HeaderValue::from_str(config.upstream.as_str()).ok(),
            upstream_authorization,
            upstream_token: config
                .upstream_token
                .as_ref()
                .map(|token| token.0.as_str().into()),
            identity_headers: config.identity_headers,
            limits: config.limits.clone(),
            sockets: Places::default(),
            streams: Places::default(),
            held: match config.limits.max_held_body_bytes {
                0 => None,
                // (At most 1 TiB: far under a semaphore's most permits.)
                most => Some(HeldRoom::new(most as usize)),
            },
        }
    }

    /// Sends an allowed request upstream and returns its response head with
    /// the body still streaming. A body over the route's limit is refused
    /// before anything is sent when its length is declared, and cut off with
    /// 413 when it is not. With a `tap`, the body's first bytes are kept in
    /// it as they pass.
    ///
    /// The request's head and permit are borrowed, not moved: an async
    /// function keeps a moved argument twice in its future, and hyper keeps
    /// room for that future in every connection.
    pub async fn forward(
        &self,
        permit: &Permit,
        caller: &Caller,
        parts: &request::Parts,
        body: Option<ClientBody>,
        tap: Option<Tap>,
        peer: &Peer,
    ) -> Result<Response<Body>, ForwardError> {
        let bodiless = matches!(parts.method, http::Method::GET | http::Method::HEAD)
            && body.as_ref().is_none_or(ClientBody::is_end_stream)
            && tap.is_none();
        // (No body at all, or a short one read whole: a GET the server read
        // itself, see `plain.rs`. Such a GET is never a toggle, the one
        // request with a `tap`.)
        let body = match body {
            Some(ClientBody::Streamed(body)) if !bodiless => body,
            other => {
                let whole = other.and_then(ClientBody::into_whole);
                let sent = self.forward_bodiless(permit, caller, parts, peer, whole.as_ref());
                return sent.await;
            }
        };
        let (body, watch) = self.limited_body(permit, &parts.headers, body, tap).await?;
        // A bodiless GET, HEAD or OPTIONS may go out a second time if the
        // upstream drops the kept-alive connection it was sent on.
        let safe = matches!(
            parts.method,
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        );
        let repeatable = safe && body.is_end_stream();
        let request = self.upstream_request(permit, parts, caller, peer, body)?;
        let again = || {
            let copy = self.upstream_request(permit, parts, caller, peer, Body::empty());
            copy.ok().filter(|_| repeatable)
        };

        // The response timeout runs from the end of the request body, so a
        // long upload is not cut off for taking long to send; while the body
        // goes out, an upstream that stops taking it for as long times out.
        let timeout = self.limits.upstream_response_timeout;
        let deadline = async {
            match watch.sent(timeout).await {
                Sent::Whole => tokio::time::sleep(timeout).await,
                Sent::UpstreamStopped => {}
                // The send fails with the body's fault; that says what
                // went wrong.
                Sent::Broken => std::future::pending().await,
            }
        };
        let sent_at = std::time::Instant::now();
        let response = tokio::select! {
            sent = self.connections.send(request, Some((watch.clone(), timeout)), &again) => sent,
            () = deadline => return Err(ForwardError::UpstreamTimedOut),
        };
        crate::metrics::upstream_answered(sent_at.elapsed());
        let response = match response {
            Ok(response) => response,
            Err(error) => return Err(body_fault(&watch).unwrap_or(upstream_fault(error))),
        };
        let (head, body) = self.passed_on(caller, response)?.into_parts();
        if watch.is_finished() {
            return Ok(Response::from_parts(head, body));
        }
        // An answer before the whole request body went out: it fails if the
        // upstream then stops taking the body for its timeout (an upstream
        // that neither reads nor answers further would otherwise hold both
        // forever). A body that broke off is the client's doing: its answer,
        // already on its way, goes on (its upstream connection is not
        // reused).
        let stopped = async move {
            match watch.sent(timeout).await == Sent::UpstreamStopped {
                true => WatchEnds::Fail(axum::Error::new(UpstreamStoppedReading)),
                false => WatchEnds::GoOn,
            }
        };
        let watched = Watched::new(body, stopped, true);
        Ok(Response::from_parts(head, Body::new(watched)))
    }

    /// Sends an allowed GET or HEAD without a body, the commonest request,
    /// or a GET with a short body read whole (`body`), through the
    /// gateway's own client: its head written straight from the client's,
    /// no request built for hyper (see `exchange.rs`). A body over the
    /// route's limit is refused, as [`Self::limited_body`] refuses one
    /// declared so.
    async fn forward_bodiless(
        &self,
        permit: &Permit,
        caller: &Caller,
        parts: &request::Parts,
        peer: &Peer,
        body: Option<&Bytes>,
    ) -> Result<Response<Body>, ForwardError> {
        if let Some(body) = body {
            if body.len() as u64 > self.limits.body_limit(&permit.target().path) {
                return Err(ForwardError::BodyTooLarge);
            }
        }
        let head = self.upstream_head(permit, parts, caller, peer, body)?;
        let head_only = parts.method == http::Method::HEAD;
        let sent_at = std::time::Instant::now();
        // The deadline is set on the upstream connection's own timer, which
        // stays set from one request to the next (see `due.rs`); no
        // deadline is the same as one past any wait.
        let due = tokio::time::Instant::from_std(sent_at)
            .checked_add(self.limits.upstream_response_timeout);
        let response = self.connections.send_bodiless(&head, head_only, due).await;
        keep_spare_head(head);
        let response = response.map_err(upstream_fault)?;
        crate::metrics::upstream_answered(sent_at.elapsed());
        self.passed_on(caller, response)
    }

    /// The upstream's answer as it goes to the client: no hop-by-hop
    /// headers, and its body cut off if the upstream stalls in it for
    /// `limits.upstream_body_idle_timeout_ms` (when set). A 101 nobody
    /// asked for, or a status past 599, is a failed exchange (502). An
    /// event stream holds one of the add-on's places under
    /// `limits.max_event_streams_per_addon` until its body ends or is
    /// dropped; with none left the answer is dropped (429).
    fn passed_on(
        &self,
        caller: &Caller,
        mut response: Response<Body>,
    ) -> Result<Response<Body>, ForwardError> {
        let status = response.status().as_u16();
        // Codes past 599 are no HTTP status a client knows what to do with.
        if status == 101 || status > 599 {
            return Err(ForwardError::UpstreamFailed);
        }
        // The client is answered in the gateway's own HTTP/1.1, whatever
        // the upstream spoke.
        *response.version_mut() = http::Version::HTTP_11;
        strip_hop_by_hop(response.headers_mut());
        let response = self.stream_placed(caller, response)?;
        let idle = self.limits.upstream_body_idle_timeout;
        if idle.is_zero() || response.body().is_end_stream() {
            return Ok(response);
        }
        Ok(response.map(|inner| {
            Body::new(IdleLimited {
                inner,
                idle: IdleLimit::new(idle),
            })
        }))
    }

    /// `response` holding the calling add-on's place for one more event
    /// stream, if it is one and a cap is set; none left is
    /// `TooManyEventStreams`, and the answer (with its upstream
    /// connection, which is not reused) is dropped.
    fn stream_placed(
        &self,
        caller: &Caller,
        response: Response<Body>,
    ) -> Result<Response<Body>, ForwardError> {
        let most = self.limits.max_event_streams_per_addon;
        // (Without a cap no header is looked at.)
        if most == 0 {
            return Ok(response);
        }
        // An answer with no body, to HEAD say, opens no stream.
        let streams = is_event_stream(response.headers()) && !response.body().is_end_stream();
        let slug = match caller.slug() {
            Some(slug) if streams => slug,
            _ => return Ok(response),
        };
        let Some(place) = self.streams.take(slug, most) else {
            tracing::warn!(
                slug,
                most,
                "event stream refused: the add-on holds as many as limits.max_event_streams_per_addon allows"
            );
            return Err(ForwardError::TooManyEventStreams);
        };
        // The place goes with the body, moved into its frame mapping (which
        // changes nothing): given back when the body is dropped, at its end
        // or when the client goes.
        let holding = move |frame| {
            let _held = &place;
            frame
        };
        Ok(response.map(|inner| Body::new(inner.map_frame(holding))))
    }

    /// Sends an allowed WebSocket upgrade upstream. When the upstream
    /// switches protocols the client gets its 101, and the two upgraded
    /// connections are handed to the relay; any other answer is passed on as
    /// for an ordinary request.
    pub async fn forward_upgrade(
        &self,
        permit: &Permit,
        grant: Grant,
        parts: &mut request::Parts,
        peer: &Peer,
    ) -> Result<Response<Body>, ForwardError> {
        // (Refused before the upstream hears of it: it would switch
        // protocols on a connection the client cannot switch.)
        if parts.version != http::Version::HTTP_11 {
            return Err(ForwardError::UpgradeNotHttp11);
        }
        let caller = grant.caller();
        let most = self.limits.max_websockets_per_addon;
        let slot = caller
            .slug()
            .map(|slug| {
                self.sockets.take(slug, most).ok_or_else(|| {
                    tracing::warn!(
                        slug,
                        most,
                        "websocket refused: the add-on holds as many as limits.max_websockets_per_addon allows"
                    );
                    ForwardError::TooManyWebSockets
                })
            })
            .transpose()?;
        let client_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(ForwardError::UpstreamFailed)?;
        let mut request = self.upstream_request(permit, parts, caller, peer, Body::empty())?;
        websocket::upgrade_headers(request.headers_mut());

        let timeout = self.limits.upstream_response_timeout;
        let never_again = || None;
        let sent = self.connections.send(request, None, &never_again);
        let sent = tokio::time::timeout(timeout, sent);
        let mut response = match sent.await {
            Err(_) => return Err(ForwardError::UpstreamTimedOut),
            Ok(Err(error)) => return Err(upstream_fault(error)),
            Ok(Ok(response)) => response,
        };
        if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            let (mut head, body) = response.into_parts();
            strip_hop_by_hop(&mut head.headers);
            return Ok(Response::from_parts(head, Body::new(body)));
        }
        if !websocket::is_handshake_answer(&parts.headers, response.headers()) {
            tracing::warn!(
                "the upstream switched protocols without a WebSocket handshake's answer (Upgrade, Connection, Sec-WebSocket-Accept; no extension, and no subprotocol but one the client offered)"
            );
            return Err(ForwardError::UpstreamFailed);
        }
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let access = websocket::Access {
            grant,
            upstream_token: self.upstream_token.clone(),
        };
        tokio::spawn(websocket::relay(
            websocket::Ends {
                client: client_upgrade,
                upstream: upstream_upgrade,
                handover: parts.extensions.remove::<websocket::Handover>(),
                max_client_message: self.limits.max_websocket_message_bytes,
                meter: crate::websocket_meter::Meter::new(
                    self.held.clone(),
                    self.limits.body_idle_timeout,
                ),
                slot,
            },
            access,
        ));
        Ok(switching_protocols(response.headers()))
    }

    /// The body to send upstream, within the route's limit. A declared
    /// length over the limit is refused before anything is read. On ordinary
    /// routes a body of unknown length is read up to the limit first, so that
    /// an oversized one never reaches the upstream, and under
    /// `limits.max_held_body_bytes` for all such bodies together (see
    /// [`Forwarder::held_whole`]); upload routes stream and are cut off at
    /// their (larger) limit.
    async fn limited_body(
        &self,
        permit: &Permit,
        headers: &HeaderMap,
        body: Incoming,
        tap: Option<Tap>,
    ) -> Result<(Body, Arc<BodyWatch>), ForwardError> {
        let path = &permit.target().path;
        let limit = self.limits.body_limit(path);
        if declared_length(headers).is_some_and(|length| length > limit) {
            return Err(ForwardError::BodyTooLarge);
        }
        let (limited, watch) = LimitedBody::new(body, limit, self.limits.body_idle_timeout);
        let limited = match tap {
            Some(tap) => limited.tapped(tap),
            None => limited,
        };
        let streams = declared_length(headers).is_some() || self.limits.is_upload(path);
        if streams || limited.is_end_stream() {
            return Ok((Body::new(limited), watch));
        }
        let held = self.held_whole(limited, &watch).await?;
        Ok((Body::new(held), watch))
    }

    /// Reads a body of unknown length to its end, taking room under
    /// `limits.max_held_body_bytes` for each block it is copied into (see
    /// [`Held`]); a piece for which there is none left refuses the request
    /// (503; 413 when the body alone is longer than the cap), and what was
    /// read of it is let go. (Refused rather than waited for: bodies each
    /// holding some room and waiting for more could wait on each other.)
    /// Trailers are not passed on.
    async fn held_whole(
        &self,
        mut body: LimitedBody,
        watch: &BodyWatch,
    ) -> Result<Held, ForwardError> {
        let mut held = Held::new(self.held.clone());
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|_| body_fault(watch).unwrap_or(ForwardError::ClientBodyFailed))?;
            if let Ok(piece) = frame.into_data() {
                held.push(&piece).map_err(|no_room| match no_room {
                    NoRoom::Now => ForwardError::HeldBodiesFull,
                    NoRoom::Ever => ForwardError::HeldBodyTooLarge,
                })?;
            }
        }
        Ok(held)
    }

    /// The request that goes upstream for an allowed one: its method, the
    /// decided target and the headers the upstream may see.
    fn upstream_request(
        &self,
        permit: &Permit,
        parts: &request::Parts,
        caller: &Caller,
        peer: &Peer,
        body: Body,
    ) -> Result<Request<Body>, ForwardError> {
        let mut request = Request::new(body);
        *request.uri_mut() = self.upstream_uri(permit)?;
        *request.headers_mut() = self.upstream_headers(&parts.headers, caller, peer);
        *request.method_mut() = parts.method.clone();
        Ok(request)
    }

    fn upstream_uri(&self, permit: &Permit) -> Result<Uri, ForwardError> {
        let target = permit.target();
        let path_and_query = match &target.query {
            Some(query) => format!("{}?{}", target.forward_path(), query),
            None => target.forward_path().to_owned(),
        };
        // Origin form: the connection is to the upstream already.
        Uri::try_from(path_and_query).map_err(|_| ForwardError::UpstreamFailed)
    }

    /// The client's headers minus hop-by-hop, `Connection`-named and
    /// reserved ones, plus the gateway's forwarding and identity headers.
    fn upstream_headers(&self, incoming: &HeaderMap, caller: &Caller, peer: &Peer) -> HeaderMap {
        let mut headers = spare_header_map(incoming.len() + 6);
        self.each_upstream_header(incoming, caller, peer, |name, value| {
            headers.append(name.clone(), value.clone());
        });
        headers
    }

    /// The head of a request as it goes on the wire to the upstream, and
    /// its short `body` if it has one: the same method, target and headers
    /// as [`upstream_request`](Self::upstream_request) gives hyper's
    /// client, written directly (header names in lower case, as hyper
    /// writes them).
    fn upstream_head(
        &self,
        permit: &Permit,
        parts: &request::Parts,
        caller: &Caller,
        peer: &Peer,
        body: Option<&Bytes>,
    ) -> Result<Vec<u8>, ForwardError> {
        let target = permit.target();
        let mut head = spare_head();
        head.extend_from_slice(parts.method.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(target.forward_path().as_bytes());
        if let Some(query) = &target.query {
            head.push(b'?');
            head.extend_from_slice(query.as_bytes());
        }
        // The target is canonical and the query came through hyper's
        // parser (which lets UTF-8 through, as a Uri does); a space or a
        // control byte, which could end the request line, is refused all
        // the same, as a Uri would refuse it.
        let target = &head[parts.method.as_str().len() + 1..];
        // (A fold with no early way out, as in `caller::token_in`.)
        let line_breaking = target.iter().fold(false, |breaking, byte| {
            breaking | (*byte <= b' ') | (*byte == 0x7f)
        });
        if line_breaking {
            return Err(ForwardError::UpstreamFailed);
        }
        head.extend_from_slice(b" HTTP/1.1\r\n");
        self.each_upstream_header(&parts.headers, caller, peer, |name, value| {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        });
        // A short body goes out with the head, framed by its length (the
        // client's `Content-Length` is not passed on, as no framing is).
        if let Some(body) = body {
            head.extend_from_slice(b"content-length: ");
            head.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
            head.extend_from_slice(b"\r\n\r\n");
            head.extend_from_slice(body);
        } else {
            head.extend_from_slice(b"\r\n");
        }
        Ok(head)
    }

    /// Hands each header the upstream gets to `emit`: the client's that
    /// pass (see [`passes_through`](Self::passes_through)), then the
    /// gateway's own. None of the gateway's can repeat a client's: those
    /// are reserved, or (`Authorization` with `upstream_token`, `Host`)
    /// dropped or checked first.
    fn each_upstream_header(
        &self,
        incoming: &HeaderMap,
        caller: &Caller,
        peer: &Peer,
        mut emit: impl FnMut(&HeaderName, &HeaderValue),
    ) {
        let named = connection_names(incoming);
        let mut client_host = None;
        for (name, value) in incoming {
            if *name == header::HOST {
                client_host = Some(value);
            }
            if self.passes_through(name.as_str(), &named) {
                emit(name, value);
            }
        }
        // The gateway's credential speaks only for a caller it identified:
        // a request with no token or an unknown one (which reaches the
        // upstream only on a public path) goes on with no token at all.
        if let Some(authorization) = self.upstream_authorization.as_ref() {
            if is_identified(caller) {
                emit(&header::AUTHORIZATION, authorization);
            }
        }
        if client_host.is_none() {
            // An HTTP/1.0 client may send none; HTTP/1.1 requires one.
            if let Some(host) = &self.upstream_host {
                emit(&header::HOST, host);
            }
        }
        if let Some(ip) = &peer.forwarded_for {
            emit(&X_FORWARDED_FOR, ip);
        }
        emit(&X_FORWARDED_PROTO, &HeaderValue::from_static("http"));
        if let Some(host) = client_host {
            emit(&X_FORWARDED_HOST, host);
        }
        if !self.identity_headers {
            return;
        }
        emit(&X_GATEWAY_CALLER, &HeaderValue::from_static(caller.kind()));
        if let Caller::Addon(addon) = caller {
            if let Ok(slug) = HeaderValue::from_str(&addon.slug) {
                emit(&X_GATEWAY_ADDON, &slug);
            }
            emit(
                &X_GATEWAY_ROLE,
                &HeaderValue::from_static(addon.role.name()),
            );
        }
    }
}

impl Forwarder {
    /// Whether a client header goes on to the upstream as it is.
    fn passes_through(&self, name: &str, connection_named: &[String]) -> bool {
        let dropped = is_hop_by_hop(name)
            || connection_named.iter().any(|named| named == name)
            || is_reserved_header(name)
            || (self.upstream_authorization.is_some() && TOKEN_HEADERS.contains(&name));
        !dropped
    }
}

thread_local! {
    /// Header maps of requests already forwarded, emptied, for the next
    /// requests' upstream headers (hyper's client) or answer heads (the
    /// gateway's own): hyper parses each request into the map of the
    /// answer it wrote last, and keeping the request's map in turn for the
    /// next answer spares every request a new map.
    static SPARE_HEADER_MAPS: std::cell::RefCell<Vec<HeaderMap>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

thread_local! {
    /// Buffers of upstream heads already sent, emptied, for the next
    /// bodiless requests' heads.
    static SPARE_HEADS: std::cell::RefCell<Vec<Vec<u8>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Most head buffers kept per thread, and the largest kept (in bytes): a
/// head near `max_header_bytes` is rare and not worth holding on to.
const SPARE_HEADS_KEPT: usize = 16;
const SPARE_HEAD_CAPACITY: usize = 8192;

/// An empty buffer for an upstream head, one kept if there is one.
pub(crate) fn spare_head() -> Vec<u8> {
    let mut head = spares::take(&SPARE_HEADS, |_| true).unwrap_or_default();
    head.reserve(512);
    head
}

/// Empties `head` and keeps it for the next request's upstream head, unless
/// enough are kept or it is unusually large.
pub(crate) fn keep_spare_head(mut head: Vec<u8>) {
    if head.capacity() > SPARE_HEAD_CAPACITY {
        return;
    }
    head.clear();
    spares::keep(&SPARE_HEADS, head, SPARE_HEADS_KEPT);
}

/// Most maps kept per thread, and the largest kept (in headers).
const SPARE_HEADER_MAPS_KEPT: usize = 16;
const SPARE_HEADER_MAP_CAPACITY: usize = 128;

/// An empty header map with room for `capacity` headers.
pub(crate) fn spare_header_map(capacity: usize) -> HeaderMap {
    match spares::take(&SPARE_HEADER_MAPS, |_| true) {
        Some(mut map) => {
            map.reserve(capacity);
            map
        }
        None => HeaderMap::with_capacity(capacity),
    }
}

/// Empties `map` and keeps it for the next request's upstream headers,
/// unless enough are kept or it is unusually large.
pub fn keep_spare_header_map(mut map: HeaderMap) {
    if map.capacity() > SPARE_HEADER_MAP_CAPACITY {
        return;
    }
    map.clear();
    spares::keep(&SPARE_HEADER_MAPS, map, SPARE_HEADER_MAPS_KEPT);
}

/// What the watch beside an answer's body (see [`Watched`]) decides once
/// it resolves.
pub(crate) enum WatchEnds {
    /// The body ends with this error: the client sees it broken off.
    Fail(axum::Error),
    /// The body ends here, as if it had come to its end: the client sees
    /// a whole answer, and the upstream's side is let go.
    End,
    /// The body goes on, no longer watched.
    GoOn,
}

/// An answer's body with a watch beside it that may end it early, with an
/// error or cleanly (see [`WatchEnds`]).
pub(crate) struct Watched {
    /// `None` once the watch has ended it.
    inner: Option<Body>,
    watch: Option<Pin<Box<dyn Future<Output = WatchEnds> + Send>>>,
    /// The watch is looked at only while the body waits for more (an
    /// answer that flows is let flow), not before every piece.
    only_while_waiting: bool,
}

type Polled = Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>;

impl Watched {
    /// `inner`, ended as `watch` decides, if it decides to.
    pub(crate) fn new(
        inner: Body,
        watch: impl Future<Output = WatchEnds> + Send + 'static,
        only_while_waiting: bool,
    ) -> Watched {
        Watched {
            inner: Some(inner),
            watch: Some(Box::pin(watch)),
            only_while_waiting,
        }
    }

    /// How the watch ends the body, once it does.
    fn poll_watch(&mut self, cx: &mut Context<'_>) -> Option<Polled> {
        let Poll::Ready(ends) = self.watch.as_mut()?.as_mut().poll(cx) else {
            return None;
        };
        self.watch = None;
        let polled = match ends {
            WatchEnds::GoOn => return None,
            WatchEnds::Fail(error) => Some(Err(error)),
            WatchEnds::End => None,
        };
        self.inner = None;
        Some(polled)
    }
}

impl http_body::Body for Watched {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Polled> {
        if !self.only_while_waiting {
            if let Some(ended) = self.poll_watch(cx) {
                return Poll::Ready(ended);
            }
        }
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if polled.is_pending() && self.only_while_waiting {
            if let Some(ended) = self.poll_watch(cx) {
                return Poll::Ready(ended);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| http_body::SizeHint::with_exact(0), Body::size_hint)
    }
}

/// The error an answer that came while its request body was still going
/// out ends with, if the upstream then stops taking the body.
#[derive(Debug, thiserror::Error)]
#[error("the upstream stopped taking the request body")]
struct UpstreamStoppedReading;

/// The client's part in a failed exchange, if its body was at fault.
fn body_fault(watch: &BodyWatch) -> Option<ForwardError> {
    if watch.exceeded() {
        Some(ForwardError::BodyTooLarge)
    } else if watch.stalled() {
        Some(ForwardError::ClientBodyStalled)
    } else if watch.client_failed() {
        Some(ForwardError::ClientBodyFailed)
    } else {
        None
    }
}

fn upstream_fault(error: SendError) -> ForwardError {
    match error {
        SendError::Unreachable => ForwardError::UpstreamUnreachable,
        SendError::Failed => ForwardError::UpstreamFailed,
        SendError::TimedOut => ForwardError::UpstreamTimedOut,
    }
}

/// The client's 101: the upstream's handshake answer, and nothing else.
fn switching_protocols(upstream: &HeaderMap) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    for name in [header::SEC_WEBSOCKET_ACCEPT, header::SEC_WEBSOCKET_PROTOCOL] {
        if let Some(value) = upstream.get(&name) {
            headers.insert(name, value.clone());
        }
    }
    response
}

/// The length a `Content-Length` header declares, if it is a number (for a
/// request, hyper has already refused conflicting or malformed ones).
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    values_of(headers, &header::CONTENT_LENGTH)
        .next()?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn sensitive(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

/// An answer's body that ends with an error when the upstream sends none
/// of it for `idle` while the gateway waits for more: an upstream that
/// stalls mid-answer would otherwise hold the client's connection, and
/// its upstream connection, for as long as the client waits.
struct IdleLimited {
    inner: Body,
    idle: IdleLimit,
}

impl http_body::Body for IdleLimited {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_ready() {
            self.idle.flowed();
            return polled;
        }
        if !self.idle.expired(cx) {
            return Poll::Pending;
        }
        crate::metrics::upstream_body_failed(crate::metrics::BodyFault::Stalled);
        tracing::warn!(
            idle_ms = self.idle.limit().as_millis() as u64,
            "the upstream sent nothing of an answer's body for upstream_body_idle_timeout_ms; the answer is cut off"
        );
        Poll::Ready(Some(Err(axum::Error::new(UpstreamBodyStalled))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether an answer's media type is `text/event-stream`, parameters
/// aside, in any case.
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    let Some(value) = values_of(headers, &http::header::CONTENT_TYPE).next() else {
        return false;
    };
    let media = value.as_bytes().split(|&b| b == b';').next().unwrap_or(b"");
    media
        .trim_ascii()
        .eq_ignore_ascii_case(b"text/event-stream")
}

/// The error an answer ends with when its upstream stalls.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent nothing of the answer's body for too long")]
struct UpstreamBodyStalled;

#[cfg(test)]
#[path = "forwarding_tests.rs"]
mod tests;
