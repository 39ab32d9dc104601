//! The mock Supervisor upstream: an axum app that records every request it
//! receives (body streamed, counted and hashed, never held whole) and answers
//! the real API's routes with Supervisor-shaped bodies, for tests and local
//! runs of the gateway. Any other path gets 404, and a known path asked with
//! the wrong method 405, both in the error envelope. The core proxy also
//! speaks WebSocket and an event stream, and backups download at any size.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

#[path = "mock_upstream_addons.rs"]
mod addons;

#[path = "mock_upstream_data.rs"]
mod data;

#[path = "mock_upstream_routes.rs"]
mod routes;

#[path = "mock_upstream_streams.rs"]
mod streams;

#[path = "mock_upstream_target.rs"]
mod target;

#[path = "mock_upstream_ws.rs"]
mod ws;

pub use streams::pattern_sha256;
pub use ws::WsRecord;

use target::{Caller, Target};

#[cfg(test)]
#[path = "mock_upstream_tests.rs"]
mod tests;

/// How much of each body `Recorded::body_head` keeps; also the most the
/// security endpoint will parse.
const HEAD_LIMIT: usize = 64 * 1024;

/// How long `MockHandle::stop` waits for open connections to finish.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// First path segments (in v1 words) whose `GET /<area>/info` answers with a
/// generic body when no builder of its own does.
const AREAS: &[&str] = &[
    "addons",
    "audio",
    "auth",
    "available_updates",
    "backups",
    "cli",
    "core",
    "discovery",
    "dns",
    "docker",
    "hardware",
    "host",
    "ingress",
    "jobs",
    "mounts",
    "multicast",
    "network",
    "observer",
    "os",
    "refresh_updates",
    "reload_updates",
    "resolution",
    "security",
    "services",
    "store",
    "supervisor",
];

/// Plugins that answer `stats` and `logs` like the Supervisor itself.
const PLUGINS: &[&str] = &["dns", "audio", "cli", "multicast", "observer"];

/// How many requests, and WebSocket messages, the mock remembers: the
/// latest, so that a mock serving a load test for hours keeps a bounded log.
pub const RECORDED_LIMIT: usize = 10_000;

/// How many bytes of requests (headers and kept body heads), and of
/// WebSocket messages, the mock remembers at most: the latest again. A
/// request's record holds up to 64 KiB of its body.
pub const RECORDED_BYTES: usize = 32 << 20;

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Request method, e.g. `GET`.
    pub method: String,
    /// Path exactly as it came on the wire, without any decoding.
    pub path: String,
    /// Query string without the `?`, as received.
    pub query: Option<String>,
    /// Every header with a lower-case name; repeated ones are kept.
    ///
    /// Order is by first appearance of each name, then the values of that
    /// name in arrival order: hyper's header map does not keep how
    /// different names interleaved on the wire.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Total body bytes received.
    pub body_len: u64,
    /// Lower-case hex SHA-256 of the whole body.
    pub body_sha256: String,
    /// The first 64 KiB of the body.
    pub body_head: Vec<u8>,
}

/// Shared state of the mock: the request and WebSocket logs, the protection
/// flags, the add-ons it knows and the release of event streams.
#[derive(Clone, Debug, Default)]
pub struct MockState {
    inner: Arc<Shared>,
}

/// An add-on the mock knows by slug, as the gateway's config describes it.
///
/// Its fields are what `GET /addons/<slug>/info` reports as `hassio_role`,
/// `hassio_api`, `homeassistant_api` and `auth_api`, whoever asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockAddon {
    /// The add-on's slug, e.g. `local_probe`.
    pub slug: String,
    /// Its `hassio_role`: `default`, `homeassistant`, `backup`, `manager` or
    /// `admin` (not checked).
    pub role: String,
    /// Whether it may use the Supervisor API.
    pub hassio_api: bool,
    /// Whether it may use Home Assistant's API through the core proxy.
    pub homeassistant_api: bool,
    /// Whether it may check user logins at `/auth`.
    pub auth_api: bool,
}

/// A running mock; dropping it (or calling `stop`) shuts the server down.
#[derive(Debug)]
pub struct MockHandle {
    addr: SocketAddr,
    state: MockState,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<io::Result<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Set for a mock running on its own (`mock-upstream`), where nobody
    /// reads the log: requests are then answered without being recorded.
    unrecorded: bool,
    log: Mutex<Log<Recorded>>,
    ws_log: Mutex<Log<WsRecord>>,
    protection: Mutex<HashMap<String, bool>>,
    backups_made: AtomicU64,
    addons: Vec<MockAddon>,
    /// Counts calls of `release_streams`; each open stream waits for a change.
    releases: watch::Sender<u64>,
}

/// Which API generation a path belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    V1,
    V2,
}

/// What the mock answers, before it becomes a response.
enum Reply {
    Data(Value),
    Fail(StatusCode, &'static str),
    /// 405, with the methods the path does accept for the `Allow` header.
    NotAllowed(Vec<&'static str>),
    Core(StatusCode, Value),
    Text(String),
    Tar(Vec<u8>),
    /// A WebSocket handshake, which only `handle` can answer: it needs the
    /// request's upgrade.
    Upgrade,
    /// The core event stream, released by a change of this receiver.
    Events(watch::Receiver<u64>),
    /// A backup download of this many pattern bytes.
    Pattern(u64),
}

/// The body the security endpoint accepts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecurityBody {
    protected: bool,
}

/// Running digest of a request body.
struct BodyTally {
    digest: Sha256,
    len: u64,
    head: Vec<u8>,
}

// --- Recorded, MockState, MockHandle -------------------------------------

/// What a log entry holds, in bytes (roughly: what it points to).
trait Weighed {
    fn bytes(&self) -> usize;
}

impl Weighed for Recorded {
    fn bytes(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        self.method.len()
            + self.path.len()
            + self.query.as_ref().map_or(0, String::len)
            + headers
            + self.body_sha256.len()
            + self.body_head.len()
    }
}

impl Weighed for WsRecord {
    fn bytes(&self) -> usize {
        match self {
            WsRecord::Text(text) => text.len(),
            WsRecord::Binary(bytes) => bytes.len(),
            WsRecord::Close(_) => 0,
        }
    }
}

/// The latest entries, oldest first: at most [`RECORDED_LIMIT`] of them and
/// [`RECORDED_BYTES`] bytes (the latest entry is kept whatever its size).
#[derive(Debug)]
struct Log<T> {
    entries: VecDeque<T>,
    bytes: usize,
}

impl<T> Default for Log<T> {
    fn default() -> Log<T> {
        Log {
            entries: VecDeque::new(),
            bytes: 0,
        }
    }
}

impl<T: Weighed> Log<T> {
    fn push(&mut self, entry: T) {
        let bytes = entry.bytes();
        while self.entries.len() >= RECORDED_LIMIT
            || (!self.entries.is_empty() && self.bytes + bytes > RECORDED_BYTES)
        {
            if let Some(oldest) = self.entries.pop_front() {
                self.bytes -= oldest.bytes();
            }
        }
        self.bytes += bytes;
        self.entries.push_back(entry);
    }

    fn take(&mut self) -> Vec<T> {
        self.bytes = 0;
        std::mem::take(&mut self.entries).into()
    }

    fn clear(&mut self) {
        self.take();
    }
}

impl Recorded {
    /// First value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(have, _)| have.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }
}

impl MockState {
    /// An empty log, with every add-on protected and no known add-ons.
    pub fn new() -> Self {
        Self::default()
    }

    /// Like `new`, knowing `addons`; where a slug is listed twice, the first
    /// entry counts.
    pub fn with_addons(addons: Vec<MockAddon>) -> Self {
        let shared = Shared {
            addons,
            ..Shared::default()
        };
        Self {
            inner: Arc::new(shared),
        }
    }

    /// Like `new`, but keeps no log of requests: `requests` and `take` stay
    /// empty. For a mock that runs on its own, where nothing in the process
    /// reads the log, so that a load test against it does not pay for
    /// copying every header of every request (WebSocket messages are still
    /// recorded).
    pub fn unrecorded() -> Self {
        let shared = Shared {
            unrecorded: true,
            ..Shared::default()
        };
        Self {
            inner: Arc::new(shared),
        }
    }

    /// The add-ons given to `with_addons`, in that order.
    pub fn known_addons(&self) -> Vec<MockAddon> {
        self.inner.addons.clone()
    }

    /// Everything recorded so far (the latest [`RECORDED_LIMIT`] requests
    /// within [`RECORDED_BYTES`]), in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log().entries.iter().cloned().collect()
    }

    /// Returns the log and leaves it empty.
    pub fn take(&self) -> Vec<Recorded> {
        self.log().take()
    }

    /// Empties the log.
    pub fn clear(&self) {
        self.log().clear();
    }

    /// Every WebSocket message received so far (the latest, within the
    /// same bounds as requests), over all sessions, in arrival order; `take`
    /// and `clear` leave it alone.
    pub fn ws_messages(&self) -> Vec<WsRecord> {
        self.ws_log().entries.iter().cloned().collect()
    }

    /// Lets every event stream open now send its `done` event and end; a
    /// stream opened later waits for the next call.
    ///
    /// A stream never released ends without `done` after 30 s; until then
    /// its connection holds up `MockHandle::stop` (for at most its 5 s grace).
    pub fn release_streams(&self) {
        self.inner
            .releases
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    /// Current protection mode of add-on `slug`; `true` until changed.
    pub fn protected(&self, slug: &str) -> bool {
        self.protection().get(slug).copied().unwrap_or(true)
    }

    fn known(&self, slug: &str) -> Option<&MockAddon> {
        self.inner.addons.iter().find(|addon| addon.slug == slug)
    }

    fn set_protected(&self, slug: &str, protected: bool) {
        self.protection().insert(slug.to_owned(), protected);
    }

    fn next_backup_slug(&self) -> String {
        let n = self.inner.backups_made.fetch_add(1, Ordering::Relaxed);
        format!("mock{n:04x}")
    }

    fn push(&self, recorded: Recorded) {
        if self.inner.unrecorded {
            return;
        }
        self.log().push(recorded);
    }

    fn push_ws(&self, record: WsRecord) {
        self.ws_log().push(record);
    }

    /// What an event stream waits on: it has seen every release made so far.
    fn stream_release(&self) -> watch::Receiver<u64> {
        self.inner.releases.subscribe()
    }

    // A poisoned lock only means a test thread panicked mid-push or mid-clone;
    // the data is still whole, so keep serving rather than panic again.
    fn log(&self) -> MutexGuard<'_, Log<Recorded>> {
        self.inner
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn ws_log(&self) -> MutexGuard<'_, Log<WsRecord>> {
        self.inner
            .ws_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn protection(&self) -> MutexGuard<'_, HashMap<String, bool>> {
        self.inner
            .protection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl MockHandle {
    /// Address the mock listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The state the mock records into.
    pub fn state(&self) -> &MockState {
        &self.state
    }

    /// Shuts the server down and waits for it, at most five seconds.
    ///
    /// Past that (a client still streaming a body), the server task is
    /// aborted; connections already accepted may linger until their client
    /// goes away.
    pub async fn stop(self) {
        let Self {
            shutdown, mut task, ..
        } = self;
        drop(shutdown);

        match tokio::time::timeout(STOP_GRACE, &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "mock upstream failed"),
            Ok(Err(error)) => tracing::warn!(%error, "mock upstream task failed"),
            Err(_) => {
                task.abort();
                tracing::warn!("mock upstream did not stop in time");
            }
        }
    }
}

// --- Serving ---------------------------------------------------------------

/// The whole mock as an axum router: one fallback handler answers everything.
pub fn router(state: MockState) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// Serves the mock on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: MockState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "mock upstream listening");
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds nothing itself: spawns `serve` on the given listener and returns a
/// handle; dropping the handle (or calling stop) shuts the server down.
///
/// Fails if the listener has no local address or no tokio runtime is running.
pub fn spawn(listener: TcpListener, state: MockState) -> io::Result<MockHandle> {
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
    let (shutdown, stopped) = oneshot::channel::<()>();

    // A send and a dropped sender both mean "stop", so the result is moot.
    let signal = async move {
        let _ = stopped.await;
    };
    let task = runtime.spawn(serve(listener, state.clone(), signal));
    Ok(MockHandle {
        addr,
        state,
        shutdown,
        task,
    })
}

async fn handle(State(state): State<MockState>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let (recorded, complete) = record(&parts, body, !state.inner.unrecorded).await;

    let reply = if complete {
        answer(&state, &parts, &recorded)
    } else {
        Reply::Fail(StatusCode::BAD_REQUEST, "request body could not be read")
    };
    let response = match reply {
        Reply::Upgrade => ws::upgrade(state.clone(), &mut parts).await,
        reply => reply.into_response(),
    };

    // (What a body's sender can check against, run standalone: the record
    // itself is only for tests in the same process.)
    tracing::debug!(
        method = %parts.method,
        path = parts.uri.path(),
        status = response.status().as_u16(),
        body_bytes = recorded.body_len,
        body_sha256 = recorded.body_sha256.as_str(),
        "mock upstream answered"
    );
    state.push(recorded);
    response
}

/// Reads the body chunk by chunk; `false` if the stream broke part way.
/// The record copies the request's headers only `with_headers`.
async fn record(parts: &Parts, mut body: Body, with_headers: bool) -> (Recorded, bool) {
    let mut tally = BodyTally::new();
    let complete = loop {
        match body.frame().await {
            None => break true,
            Some(Ok(frame)) => {
                if let Some(chunk) = frame.data_ref() {
                    tally.add(chunk);
                }
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "mock upstream could not read a body");
                break false;
            }
        }
    };

    (tally.finish(parts, with_headers), complete)
}

// --- Routing ---------------------------------------------------------------

fn answer(state: &MockState, parts: &Parts, recorded: &Recorded) -> Reply {
    let caller = Caller::from_headers(&parts.headers);
    let Some(target) = Target::parse(parts.uri.path(), &caller) else {
        return not_found();
    };
    let segments: Vec<&str> = target.segments.iter().map(String::as_str).collect();

    if let Some(reply) = live(state, parts, &target, &segments) {
        return reply;
    }
    if let ["core", "api", rest @ ..] = segments.as_slice() {
        let method = if parts.method == Method::HEAD {
            &Method::GET
        } else {
            &parts.method
        };
        let (status, body) = data::core_api(method, &rest.join("/"));
        return Reply::Core(status, body);
    }
    let reading = matches!(parts.method, Method::GET | Method::HEAD);
    let actions = if target.exact {
        routes::action_methods(&segments)
    } else {
        Vec::new()
    };
    if reading {
        if let Some(reply) = read(state, &target, &segments, &caller) {
            return reply;
        }
    } else if actions.contains(&parts.method.as_str()) {
        return act(state, &parts.method, &segments, recorded);
    }
    let readable = !reading && target.exact && read(state, &target, &segments, &caller).is_some();
    refuse(readable, actions)
}

/// The answers that go on after the handler returns: the WebSocket, the
/// event stream and downloads with a `size`. HEAD on the event stream gets
/// the stream's head, as Home Assistant's server answers HEAD for a GET
/// route; HEAD and other methods on the other core API paths keep the core
/// proxy's plain answer.
fn live(state: &MockState, parts: &Parts, target: &Target, segments: &[&str]) -> Option<Reply> {
    let get = parts.method == Method::GET;
    if !target.exact {
        return None;
    }
    let reply = match segments {
        ["core", "websocket"] if !get => Reply::NotAllowed(vec!["GET"]),
        ["core", "websocket"] | ["core", "api", "websocket"] if get => Reply::Upgrade,
        ["core", "api", "stream"] if get || parts.method == Method::HEAD => {
            Reply::Events(state.stream_release())
        }
        ["backups", _, "download"] if get || parts.method == Method::HEAD => {
            match streams::requested_size(parts.uri.query())? {
                Ok(len) => Reply::Pattern(len),
                Err(_) => Reply::Fail(
                    StatusCode::BAD_REQUEST,
                    "size must be a whole number of bytes",
                ),
            }
        }
        _ => return None,
    };
    Some(reply)
}

/// 405 naming the methods the path does answer, or 404 if it answers none.
fn refuse(readable: bool, actions: Vec<&'static str>) -> Reply {
    let mut allow = if readable {
        vec!["GET", "HEAD"]
    } else {
        Vec::new()
    };
    allow.extend(actions);
    if allow.is_empty() {
        not_found()
    } else {
        Reply::NotAllowed(allow)
    }
}

/// The answer to a GET (or HEAD), or `None` if the path has none.
fn read(state: &MockState, target: &Target, segments: &[&str], caller: &Caller) -> Option<Reply> {
    let api = target.api;
    if let Some(data) = data::fixed(&segments.join("/"), api) {
        return Some(Reply::Data(data));
    }
    let data = match segments {
        ["addons"] => addons::addons_list(api, &state.inner.addons, |slug| state.protected(slug)),
        ["addons", slug, "info"] => addon_info(state, api, slug, caller),
        ["addons", slug, "stats"] => data::stats(slug),
        ["addons", _, "options", "config"] => json!({"log_level": "info"}),
        ["backups", slug, "info"] => data::backup_info(api, slug),
        ["store", "addons", slug] => data::store_addon(slug),
        [area, "stats"] if has_logs(area) && *area != "host" => data::stats(area),
        [area, "info"] if AREAS.contains(area) => data::generic_info(area),
        _ => return read_file(segments),
    };
    Some(Reply::Data(data))
}

/// GETs that answer outside the envelope: logs, documents, archives.
fn read_file(segments: &[&str]) -> Option<Reply> {
    let reply = match segments {
        ["addons", slug, "logs", ..] => Reply::Text(data::log_lines(slug)),
        [area, "logs", ..] if has_logs(area) => Reply::Text(data::log_lines(area)),
        ["addons", slug, "changelog" | "documentation"] => {
            Reply::Text(format!("# {slug}\n\nWritten by the mock upstream.\n"))
        }
        ["backups", slug, "download"] => Reply::Tar(data::backup_tar(slug)),
        _ => return None,
    };
    Some(reply)
}

/// An action route of the table; most answer ok with no data.
fn act(state: &MockState, method: &Method, segments: &[&str], recorded: &Recorded) -> Reply {
    match (method, segments) {
        (&Method::POST, ["addons", slug, "security"]) => set_protection(state, slug, recorded),
        (&Method::POST, ["backups", "new", "full" | "partial"]) => {
            Reply::Data(json!({"slug": state.next_backup_slug()}))
        }
        _ => Reply::Data(json!({})),
    }
}

/// `POST /addons/<slug>/security`: 400 unless the body is `{"protected": bool}`.
fn set_protection(state: &MockState, slug: &str, recorded: &Recorded) -> Reply {
    let parsed = if recorded.body_len > HEAD_LIMIT as u64 {
        None
    } else {
        serde_json::from_slice::<SecurityBody>(&recorded.body_head).ok()
    };
    match parsed {
        Some(body) => {
            state.set_protected(slug, body.protected);
            Reply::Data(json!({}))
        }
        None => Reply::Fail(
            StatusCode::BAD_REQUEST,
            "body must be {\"protected\": true|false}",
        ),
    }
}

/// Describes `slug`: a known add-on's access fields win; otherwise the
/// caller's own role shows only when it asks about itself.
fn addon_info(state: &MockState, api: Api, slug: &str, caller: &Caller) -> Value {
    let is_caller = slug == caller.slug;
    let elevated = matches!(caller.role.as_deref(), Some("manager" | "admin"));
    let role = is_caller.then(|| caller.role.as_deref().unwrap_or("default"));
    addons::addon_info(&addons::AddonView {
        slug,
        known: state.known(slug),
        role,
        protected: state.protected(slug),
        redact_options: caller.is_addon && !is_caller && !elevated,
        api,
    })
}

fn has_logs(area: &str) -> bool {
    matches!(area, "supervisor" | "core" | "host") || PLUGINS.contains(&area)
}

fn not_found() -> Reply {
    Reply::Fail(
        StatusCode::NOT_FOUND,
        "no such endpoint in the mock upstream",
    )
}

// --- Api, Reply, BodyTally ------------------------------------------------

impl Api {
    /// The word this generation uses for add-ons.
    fn addons_word(self) -> &'static str {
        match self {
            Api::V1 => "addons",
            Api::V2 => "apps",
        }
    }

    /// The other generation's word, which this one does not answer to.
    fn foreign_word(self) -> &'static str {
        match self {
            Api::V1 => "apps",
            Api::V2 => "addons",
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self {
            Reply::Data(data) => Json(json!({"result": "ok", "data": data})).into_response(),
            Reply::Fail(status, message) => {
                let body = json!({"result": "error", "message": message});
                (status, Json(body)).into_response()
            }
            Reply::NotAllowed(allow) => {
                let body = json!({"result": "error", "message": "method not allowed"});
                let allow = [(header::ALLOW, allow.join(", "))];
                (StatusCode::METHOD_NOT_ALLOWED, allow, Json(body)).into_response()
            }
            Reply::Core(status, body) => (status, Json(body)).into_response(),
            Reply::Text(text) => {
                ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
            }
            Reply::Tar(bytes) => {
                ([(header::CONTENT_TYPE, "application/x-tar")], bytes).into_response()
            }
            Reply::Upgrade => Reply::Fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "websocket upgrade answered without its request",
            )
            .into_response(),
            Reply::Events(release) => streams::event_stream(release),
            Reply::Pattern(len) => streams::pattern_download(len),
        }
    }
}

impl BodyTally {
    fn new() -> Self {
        Self {
            digest: Sha256::new(),
            len: 0,
            head: Vec::new(),
        }
    }

    /// The record of the request in `parts` whose body this tallied; its
    /// headers are left out unless asked for.
    fn finish(mut self, parts: &Parts, with_headers: bool) -> Recorded {
        // The log counts what a record holds, not the room it grew into
        // (up to twice as much).
        self.head.shrink_to_fit();
        let headers = if with_headers {
            parts
                .headers
                .iter()
                .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
                .collect()
        } else {
            Vec::new()
        };
        Recorded {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers,
            body_len: self.len,
            body_sha256: hex::encode(self.digest.finalize()),
            body_head: self.head,
        }
    }

    fn add(&mut self, chunk: &[u8]) {
        self.digest.update(chunk);
        self.len += chunk.len() as u64;
        let room = HEAD_LIMIT.saturating_sub(self.head.len()).min(chunk.len());
        self.head.extend_from_slice(&chunk[..room]);
    }
}
