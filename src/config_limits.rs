//! The `limits` section: timeouts and sizes, their defaults, and the
//! bounds a value must keep to be usable.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// Timeouts and limits; every value has a default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time a client has to send a request head, counted from when the
    /// gateway starts waiting for it (so it also bounds keep-alive idle time).
    pub header_read_timeout: Duration,
    /// Time a keep-alive connection may sit with no request in flight.
    pub keep_alive_timeout: Duration,
    /// Longest a client may take none of an answer being written to it
    /// (the connection is closed after it).
    pub send_timeout: Duration,
    /// Largest request head, in bytes (431 above it; at least 8192).
    pub max_header_bytes: usize,
    /// Most header lines in a request head (431 above it).
    pub max_headers: usize,
    /// Longest pause a client may make while sending a body (408 after).
    pub body_idle_timeout: Duration,
    /// Largest request body on ordinary routes (413 above it).
    pub max_body_bytes: u64,
    /// Largest request body on upload routes, which stream.
    pub max_upload_bytes: u64,
    /// Most bytes of request bodies of unknown length held at once, all
    /// requests together, while each is read whole before it goes
    /// upstream (ordinary routes); zero for no cap.
    pub max_held_body_bytes: u64,
    /// Largest WebSocket message (and frame) a client may send.
    pub max_websocket_message_bytes: usize,
    /// Most WebSockets one add-on may hold open at once (429 above it);
    /// zero for no cap.
    pub max_websockets_per_addon: usize,
    /// Most event streams (`text/event-stream` answers) one add-on may
    /// hold open at once (429 above it); zero for no cap.
    pub max_event_streams_per_addon: usize,
    /// The upload routes: exact canonical paths.
    pub upload_paths: Vec<String>,
    /// Most client connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// Idle keep-alive connections kept open to the upstream for reuse.
    pub upstream_pool_size: usize,
    /// Time to open a connection to the upstream (502 after).
    pub upstream_connect_timeout: Duration,
    /// Time for the upstream to send its response head (504 after).
    pub upstream_response_timeout: Duration,
    /// Longest the upstream may send nothing of an answer's body before the
    /// answer is cut off; zero for no limit.
    pub upstream_body_idle_timeout: Duration,
    /// Time requests in flight get to finish after a shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            body_idle_timeout: Duration::from_secs(30),
            max_body_bytes: 16 * 1024 * 1024,
            max_upload_bytes: 1 << 40,
            max_held_body_bytes: 64 * 1024 * 1024,
            max_websocket_message_bytes: 16 * 1024 * 1024,
            max_websockets_per_addon: 0,
            max_event_streams_per_addon: 0,
            upload_paths: vec![
                "/backups/new/upload".to_owned(),
                "/v2/backups/new/upload".to_owned(),
            ],
            max_connections: 4096,
            upstream_pool_size: 64,
            upstream_connect_timeout: Duration::from_secs(2),
            upstream_response_timeout: Duration::from_secs(300),
            upstream_body_idle_timeout: Duration::ZERO,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// Whether a canonical path is an upload route.
    pub fn is_upload(&self, path: &str) -> bool {
        self.upload_paths.iter().any(|upload| upload == path)
    }

    /// The body limit for a canonical path.
    pub fn body_limit(&self, path: &str) -> u64 {
        if self.is_upload(path) {
            self.max_upload_bytes
        } else {
            self.max_body_bytes
        }
    }
}

/// The `limits` section as written: each value with where it was, so that
/// a value [`check_limits`] refuses is named with its own line.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    header_read_timeout_ms: Option<Spanned<u64>>,
    keep_alive_timeout_ms: Option<Spanned<u64>>,
    send_timeout_ms: Option<Spanned<u64>>,
    max_header_bytes: Option<Spanned<usize>>,
    max_headers: Option<Spanned<usize>>,
    body_idle_timeout_ms: Option<Spanned<u64>>,
    max_body_bytes: Option<Spanned<u64>>,
    max_upload_bytes: Option<Spanned<u64>>,
    max_held_body_bytes: Option<Spanned<u64>>,
    max_websocket_message_bytes: Option<Spanned<usize>>,
    max_websockets_per_addon: Option<Spanned<usize>>,
    max_event_streams_per_addon: Option<Spanned<usize>>,
    upload_paths: Option<Spanned<Vec<String>>>,
    max_connections: Option<Spanned<usize>>,
    upstream_pool_size: Option<Spanned<usize>>,
    upstream_connect_timeout_ms: Option<Spanned<u64>>,
    upstream_response_timeout_ms: Option<Spanned<u64>>,
    upstream_body_idle_timeout_ms: Option<Spanned<u64>>,
    shutdown_grace_ms: Option<Spanned<u64>>,
}

impl RawLimits {
    /// The line of the value a key of [`check_limits`] names
    /// (`limits.send_timeout_ms`), if it was written.
    pub(super) fn line_of(&self, key: &str) -> Option<u64> {
        fn line<T>(field: &Option<Spanned<T>>) -> Option<u64> {
            field.as_ref().map(super::line_of)
        }
        match key.strip_prefix("limits.")? {
            "header_read_timeout_ms" => line(&self.header_read_timeout_ms),
            "keep_alive_timeout_ms" => line(&self.keep_alive_timeout_ms),
            "send_timeout_ms" => line(&self.send_timeout_ms),
            "max_header_bytes" => line(&self.max_header_bytes),
            "max_headers" => line(&self.max_headers),
            "body_idle_timeout_ms" => line(&self.body_idle_timeout_ms),
            "max_body_bytes" => line(&self.max_body_bytes),
            "max_upload_bytes" => line(&self.max_upload_bytes),
            "max_held_body_bytes" => line(&self.max_held_body_bytes),
            "max_websocket_message_bytes" => line(&self.max_websocket_message_bytes),
            "max_websockets_per_addon" => line(&self.max_websockets_per_addon),
            "max_event_streams_per_addon" => line(&self.max_event_streams_per_addon),
            "upload_paths" => line(&self.upload_paths),
            "max_connections" => line(&self.max_connections),
            "upstream_pool_size" => line(&self.upstream_pool_size),
            "upstream_connect_timeout_ms" => line(&self.upstream_connect_timeout_ms),
            "upstream_response_timeout_ms" => line(&self.upstream_response_timeout_ms),
            "upstream_body_idle_timeout_ms" => line(&self.upstream_body_idle_timeout_ms),
            "shutdown_grace_ms" => line(&self.shutdown_grace_ms),
            _ => None,
        }
    }
}

pub(super) fn from_raw(raw: &RawLimits) -> Limits {
    let d = Limits::default();
    fn or<T: Copy>(field: &Option<Spanned<T>>, default: T) -> T {
        field.as_ref().map_or(default, |spanned| spanned.value)
    }
    let ms = |field: &Option<Spanned<u64>>, default: Duration| {
        field
            .as_ref()
            .map_or(default, |spanned| Duration::from_millis(spanned.value))
    };
    Limits {
        header_read_timeout: ms(&raw.header_read_timeout_ms, d.header_read_timeout),
        keep_alive_timeout: ms(&raw.keep_alive_timeout_ms, d.keep_alive_timeout),
        send_timeout: ms(&raw.send_timeout_ms, d.send_timeout),
        max_header_bytes: or(&raw.max_header_bytes, d.max_header_bytes),
        max_headers: or(&raw.max_headers, d.max_headers),
        body_idle_timeout: ms(&raw.body_idle_timeout_ms, d.body_idle_timeout),
        max_body_bytes: or(&raw.max_body_bytes, d.max_body_bytes),
        max_upload_bytes: or(&raw.max_upload_bytes, d.max_upload_bytes),
        max_held_body_bytes: or(&raw.max_held_body_bytes, d.max_held_body_bytes),
        max_websocket_message_bytes: or(
            &raw.max_websocket_message_bytes,
            d.max_websocket_message_bytes,
        ),
        max_websockets_per_addon: or(&raw.max_websockets_per_addon, d.max_websockets_per_addon),
        max_event_streams_per_addon: or(
            &raw.max_event_streams_per_addon,
            d.max_event_streams_per_addon,
        ),
        upload_paths: raw
            .upload_paths
            .as_ref()
            .map_or(d.upload_paths, |spanned| spanned.value.clone()),
        max_connections: or(&raw.max_connections, d.max_connections),
        upstream_pool_size: or(&raw.upstream_pool_size, d.upstream_pool_size),
        upstream_connect_timeout: ms(&raw.upstream_connect_timeout_ms, d.upstream_connect_timeout),
        upstream_response_timeout: ms(
            &raw.upstream_response_timeout_ms,
            d.upstream_response_timeout,
        ),
        upstream_body_idle_timeout: ms(
            &raw.upstream_body_idle_timeout_ms,
            d.upstream_body_idle_timeout,
        ),
        shutdown_grace: ms(&raw.shutdown_grace_ms, d.shutdown_grace),
    }
}

/// Upper bounds of the limits: above them a value is a mistake (a request
/// head's header array is allocated at `max_headers`, a semaphore holds
/// `max_connections` permits), and is refused rather than left to fail at
/// the first request.
const MAX_HEADER_BYTES: usize = 1 << 20;
const MAX_HEADERS: usize = 1000;
const MAX_WEBSOCKET_MESSAGE_BYTES: usize = 256 << 20;
const MAX_CONNECTIONS: usize = 1_000_000;
const MAX_POOL_SIZE: usize = 100_000;
const MAX_HELD_BODY_BYTES: u64 = 1 << 40;

/// Refuses limits that cannot work, naming the key (its line is found
/// with [`RawLimits::line_of`]).
pub(super) fn check_limits(limits: &Limits) -> Result<(), (&'static str, &'static str)> {
    let zero = Duration::ZERO;
    let problems = [
        (
            limits.header_read_timeout == zero,
            "limits.header_read_timeout_ms",
            "must be above 0",
        ),
        (
            limits.keep_alive_timeout == zero,
            "limits.keep_alive_timeout_ms",
            "must be above 0",
        ),
        (
            limits.send_timeout == zero,
            "limits.send_timeout_ms",
            "must be above 0",
        ),
        (
            // (0 made every pause in a body, however short, a 408.)
            limits.body_idle_timeout == zero,
            "limits.body_idle_timeout_ms",
            "must be above 0",
        ),
        (
            limits.max_header_bytes < 8192,
            "limits.max_header_bytes",
            "must be at least 8192",
        ),
        (
            limits.max_header_bytes > MAX_HEADER_BYTES,
            "limits.max_header_bytes",
            "must be at most 1048576 (1 MiB)",
        ),
        (
            limits.max_headers == 0,
            "limits.max_headers",
            "must be above 0",
        ),
        (
            limits.max_headers > MAX_HEADERS,
            "limits.max_headers",
            "must be at most 1000",
        ),
        (
            limits.max_held_body_bytes > MAX_HELD_BODY_BYTES,
            "limits.max_held_body_bytes",
            "must be at most 1099511627776 (1 TiB; 0 for no cap)",
        ),
        (
            limits.max_websocket_message_bytes < 1024,
            "limits.max_websocket_message_bytes",
            "must be at least 1024 (an auth message must fit)",
        ),
        (
            limits.max_websocket_message_bytes > MAX_WEBSOCKET_MESSAGE_BYTES,
            "limits.max_websocket_message_bytes",
            "must be at most 268435456 (256 MiB; messages are held whole)",
        ),
        (
            limits.max_websockets_per_addon > MAX_CONNECTIONS,
            "limits.max_websockets_per_addon",
            "must be at most 1000000 (0 for no cap)",
        ),
        (
            limits.max_event_streams_per_addon > MAX_CONNECTIONS,
            "limits.max_event_streams_per_addon",
            "must be at most 1000000 (0 for no cap)",
        ),
        (
            limits.max_connections == 0,
            "limits.max_connections",
            "must be above 0",
        ),
        (
            limits.max_connections > MAX_CONNECTIONS,
            "limits.max_connections",
            "must be at most 1000000",
        ),
        (
            limits.upstream_pool_size > MAX_POOL_SIZE,
            "limits.upstream_pool_size",
            "must be at most 100000",
        ),
        (
            limits.upstream_connect_timeout == zero,
            "limits.upstream_connect_timeout_ms",
            "must be above 0",
        ),
        (
            limits.upstream_response_timeout == zero,
            "limits.upstream_response_timeout_ms",
            "must be above 0",
        ),
        (
            limits
                .upload_paths
                .iter()
                .any(|path| !path.starts_with('/')),
            "limits.upload_paths",
            "every upload path starts with /",
        ),
    ];
    match problems.into_iter().find(|(bad, _, _)| *bad) {
        Some((_, key, reason)) => Err((key, reason)),
        None => Ok(()),
    }
}
