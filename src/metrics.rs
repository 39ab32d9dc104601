//! What the gateway counts for `/metrics`: requests by decision, step, role
//! and status; decision and upstream latency; upstream errors by kind; open
//! and active connections; client timeouts; reloads. The labels hold only
//! fixed words and status codes: never a token, a path or an add-on's slug.
//!
//! The functions record into the process-wide recorder that [`install`]
//! sets up for `serve`; where none is installed (tests that run a gateway
//! in-process, the demo) they do nothing. Each thread keeps its handles, so
//! the recorder must be installed before the first request is counted (as
//! `serve` does) or that thread keeps counting into nothing.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::caller::Caller;
use crate::decision::Decision;
use crate::forwarding::ForwardError;

const REQUESTS: &str = "supervisor_gateway_requests_total";
const DECISION_SECONDS: &str = "supervisor_gateway_decision_duration_seconds";
const UPSTREAM_SECONDS: &str = "supervisor_gateway_upstream_duration_seconds";
const UPSTREAM_ERRORS: &str = "supervisor_gateway_upstream_errors_total";
const OPEN_CONNECTIONS: &str = "supervisor_gateway_open_connections";
const RELOADS: &str = "supervisor_gateway_reloads_total";
const ACTIVE_CONNECTIONS: &str = "supervisor_gateway_active_connections";
const CLIENT_TIMEOUTS: &str = "supervisor_gateway_client_timeouts_total";
const AUDIT_DROPPED: &str = "supervisor_gateway_audit_dropped_total";
const UNPARSED_REQUESTS: &str = "supervisor_gateway_unparsed_requests_total";

/// Latency buckets, in seconds: from 1 µs (a decision) to 30 s (a slow
/// upstream).
const BUCKETS: [f64; 16] = [
    0.000_001, 0.000_005, 0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
    1.0, 5.0, 10.0, 30.0,
];

/// Installs the process-wide recorder and describes the metrics; the
/// handle renders them. An error means a recorder was already installed.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|error| error.to_string())?;
    metrics::describe_counter!(
        REQUESTS,
        "Requests answered, by decision, step, role and status."
    );
    metrics::describe_counter!(UPSTREAM_ERRORS, "Forwarded requests that failed, by kind.");
    metrics::describe_gauge!(OPEN_CONNECTIONS, "Client connections open now.");
    metrics::describe_counter!(RELOADS, "Policy reloads, by result (ok or refused).");
    metrics::describe_counter!(
        CLIENT_TIMEOUTS,
        "Client connections closed by a timeout: head (no whole request head in time) or send (the client took none of its answer)."
    );
    metrics::describe_counter!(
        AUDIT_DROPPED,
        "Audit log lines lost: dropped because the writer was far behind, or not written because writing failed."
    );
    // Present from the start, so that a scrape before the first event sees 0.
    let open = metrics::gauge!(OPEN_CONNECTIONS);
    open.set(0.0);
    let _ = OPEN_CONNECTIONS_GAUGE.set(open);
    for result in ["ok", "refused"] {
        metrics::counter!(RELOADS, "result" => result).absolute(0);
    }
    for timeout in ["head", "send"] {
        metrics::counter!(CLIENT_TIMEOUTS, "timeout" => timeout).absolute(0);
    }
    metrics::counter!(AUDIT_DROPPED).absolute(0);
    metrics::describe_counter!(
        UNPARSED_REQUESTS,
        "Requests the HTTP parser refused before they were decided, by reason (malformed: 400, too_large: 431, http2: HTTP/2 without asking, answered GOAWAY)."
    );
    for reason in ["malformed", "too_large", "http2"] {
        metrics::counter!(UNPARSED_REQUESTS, "reason" => reason).absolute(0);
    }
    Ok(handle)
}

/// The role label: the add-on's role, or the kind of caller for everyone
/// else.
fn role_label(caller: &Caller) -> &'static str {
    match caller {
        Caller::Addon(addon) => addon.role.name(),
        other => other.kind(),
    }
}

thread_local! {
    /// Each thread's handles to the request counters it has used, by their
    /// labels packed into one number: looking a labelled counter up in the
    /// recorder builds its key anew every time, which costs more than the
    /// rest of the bookkeeping together.
    static COUNTERS: RefCell<HashMap<u64, metrics::Counter>> = RefCell::new(HashMap::new());
}

/// A latency histogram with fixed buckets: a few relaxed atomic additions
/// per observation, and rendered by [`render`] next to the recorder's
/// counters and gauges.
struct Histogram {
    name: &'static str,
    help: &'static str,
    /// Observations at or below each bound of [`BUCKETS`] (not cumulative).
    buckets: [AtomicU64; BUCKETS.len()],
    /// Observations above the last bound.
    over: AtomicU64,
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    const fn new(name: &'static str, help: &'static str) -> Histogram {
        Histogram {
            name,
            help,
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len()],
            over: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn record(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        match BUCKETS.iter().position(|bound| seconds <= *bound) {
            Some(index) => self.buckets[index].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text form: cumulative buckets, sum and count.
    fn render(&self, out: &mut String) {
        let (name, help) = (self.name, self.help);
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            out.push_str(&format!("{name}_bucket{{le=\"{bound}\"}} {cumulative}\n"));
        }
        cumulative += self.over.load(Ordering::Relaxed);
        out.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {cumulative}\n"));
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        out.push_str(&format!("{name}_sum {sum}\n{name}_count {cumulative}\n"));
    }
}

static DECISION_HISTOGRAM: Histogram = Histogram::new(
    DECISION_SECONDS,
    "Time to decide a request (steps 1 to 9), in seconds.",
);
static UPSTREAM_HISTOGRAM: Histogram = Histogram::new(
    UPSTREAM_SECONDS,
    "Time from sending a request upstream to its response head, in seconds.",
);

/// Everything for `/metrics`: the recorder's counters and gauges, then the
/// two latency histograms.
pub fn render(handle: &PrometheusHandle) -> String {
    handle.run_upkeep();
    let mut out = handle.render();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    DECISION_HISTOGRAM.render(&mut out);
    UPSTREAM_HISTOGRAM.render(&mut out);
    let name = ACTIVE_CONNECTIONS;
    out.push_str(&format!(
        "# HELP {name} Open client connections that hold HTTP state and buffers now \
         (a request in flight, a head coming in, or idle under a second); the other \
         open connections are parked.\n# TYPE {name} gauge\n{name} {}\n",
        crate::idle::Warm::count()
    ));
    out
}

/// Counts one answered request and the time its decision took.
pub fn request(decision: &Decision, caller: &Caller, status: StatusCode, decided_in: Duration) {
    let (decision_name, step, role) = (
        decision.outcome.name(),
        decision.step.name(),
        role_label(caller),
    );
    let key = u64::from(decision.allowed())
        | u64::from(decision.step.number()) << 1
        | role_index(caller) << 8
        | u64::from(status.as_u16()) << 16;
    COUNTERS.with(|counters| {
        counters
            .borrow_mut()
            .entry(key)
            .or_insert_with(|| {
                metrics::counter!(
                    REQUESTS,
                    "decision" => decision_name,
                    "step" => step,
                    "role" => role,
                    "status" => status.as_u16().to_string(),
                )
            })
            .increment(1);
    });
    DECISION_HISTOGRAM.record(decided_in);
}

/// A number for each role label, for the counter cache's key.
fn role_index(caller: &Caller) -> u64 {
    match caller {
        Caller::Addon(addon) => addon.role as u64,
        Caller::Anonymous => 10,
        Caller::Unknown => 11,
        Caller::HomeAssistant => 12,
        Caller::Cli => 13,
        Caller::Observer => 14,
        Caller::Rejected(_) => 15,
    }
}

/// Records how long the upstream took to answer with a head.
pub fn upstream_answered(took: Duration) {
    UPSTREAM_HISTOGRAM.record(took);
}

/// Counts a forwarded request that got no (complete) answer.
pub fn upstream_error(error: ForwardError) {
    let kind = match error {
        ForwardError::BodyTooLarge => "body_too_large",
        ForwardError::ClientBodyFailed => "client_body_failed",
        ForwardError::ClientBodyStalled => "client_body_stalled",
        ForwardError::UpgradeNotHttp11 => "upgrade_not_http11",
        ForwardError::TooManyWebSockets => "too_many_websockets",
        ForwardError::TooManyEventStreams => "too_many_event_streams",
        ForwardError::HeldBodiesFull => "held_bodies_full",
        ForwardError::HeldBodyTooLarge => "held_body_too_large",
        ForwardError::UpstreamUnreachable => "unreachable",
        ForwardError::UpstreamTimedOut => "timed_out",
        ForwardError::UpstreamFailed => "failed",
    };
    metrics::counter!(UPSTREAM_ERRORS, "kind" => kind).increment(1);
}

/// How an upstream failed an answer's body after its head (and status)
/// had gone to the client.
#[derive(Debug, Clone, Copy)]
pub enum BodyFault {
    /// Cut off, or framed wrongly.
    Broken,
    /// Nothing of it for `upstream_body_idle_timeout_ms`.
    Stalled,
}

/// Counts an answer whose body the upstream failed; see [`BodyFault`].
pub fn upstream_body_failed(fault: BodyFault) {
    let kind = match fault {
        BodyFault::Broken => "body_broken",
        BodyFault::Stalled => "body_stalled",
    };
    metrics::counter!(UPSTREAM_ERRORS, "kind" => kind).increment(1);
}

/// Counts a request hyper's parser refused before the gateway saw it:
/// `too_large` (431) or `malformed` (400); or a client that began in
/// HTTP/2 (`http2`, answered with a GOAWAY).
pub fn unparsed_request(reason: &'static str) {
    metrics::counter!(UNPARSED_REQUESTS, "reason" => reason).increment(1);
}

/// Counts an audit line dropped because the writer was far behind.
pub fn audit_dropped() {
    audit_lost(1);
}

/// Audit lines that could not be written (the file or its reader failed).
pub fn audit_lost(lines: u64) {
    metrics::counter!(AUDIT_DROPPED).increment(lines);
}

/// A client connection opened (`1.0`) or closed (`-1.0`).
pub fn connections(change: f64) {
    // The handle is kept from `install`, rather than looked up by name in
    // the recorder twice a connection.
    match OPEN_CONNECTIONS_GAUGE.get() {
        Some(open) => open.increment(change),
        None => metrics::gauge!(OPEN_CONNECTIONS).increment(change),
    }
}

/// The open-connections gauge of the recorder `install` installed.
static OPEN_CONNECTIONS_GAUGE: std::sync::OnceLock<metrics::Gauge> = std::sync::OnceLock::new();

/// Counts a client connection closed by its head or send timeout.
pub fn client_timeout(timeout: &'static str) {
    metrics::counter!(CLIENT_TIMEOUTS, "timeout" => timeout).increment(1);
}

/// Counts a reload.
pub fn reloaded(ok: bool) {
    let result = if ok { "ok" } else { "refused" };
    metrics::counter!(RELOADS, "result" => result).increment(1);
}
