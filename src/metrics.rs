//! What the gateway counts for `/metrics`: requests by decision, step, role
//! and status; decision and upstream latency; upstream errors by kind; open
//! connections; reloads. The labels hold only fixed words and status codes:
//! never a token, a path or an add-on's slug.
//!
//! The functions record into the process-wide recorder that [`install`]
//! sets up for `serve`; where none is installed (tests that run a gateway
//! in-process, the demo) they do nothing.

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
        .set_buckets(&BUCKETS)
        .map_err(|error| error.to_string())?
        .install_recorder()
        .map_err(|error| error.to_string())?;
    metrics::describe_counter!(
        REQUESTS,
        "Requests answered, by decision, step, role and status."
    );
    metrics::describe_histogram!(
        DECISION_SECONDS,
        metrics::Unit::Seconds,
        "Time to decide a request (steps 1 to 9)."
    );
    metrics::describe_histogram!(
        UPSTREAM_SECONDS,
        metrics::Unit::Seconds,
        "Time from sending a request upstream to its response head."
    );
    metrics::describe_counter!(UPSTREAM_ERRORS, "Forwarded requests that failed, by kind.");
    metrics::describe_gauge!(OPEN_CONNECTIONS, "Client connections open now.");
    metrics::describe_counter!(RELOADS, "Policy reloads, by result (ok or refused).");
    // Present from the start, so that a scrape before the first event sees 0.
    metrics::gauge!(OPEN_CONNECTIONS).set(0.0);
    for result in ["ok", "refused"] {
        metrics::counter!(RELOADS, "result" => result).absolute(0);
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

/// Counts one answered request and the time its decision took.
pub fn request(decision: &Decision, caller: &Caller, status: StatusCode, decided_in: Duration) {
    metrics::counter!(
        REQUESTS,
        "decision" => decision.outcome.name(),
        "step" => decision.step.name(),
        "role" => role_label(caller),
        "status" => status.as_u16().to_string(),
    )
    .increment(1);
    metrics::histogram!(DECISION_SECONDS).record(decided_in.as_secs_f64());
}

/// Records how long the upstream took to answer with a head.
pub fn upstream_answered(took: Duration) {
    metrics::histogram!(UPSTREAM_SECONDS).record(took.as_secs_f64());
}

/// Counts a forwarded request that got no (complete) answer.
pub fn upstream_error(error: ForwardError) {
    let kind = match error {
        ForwardError::BodyTooLarge => "body_too_large",
        ForwardError::ClientBodyFailed => "client_body_failed",
        ForwardError::ClientBodyStalled => "client_body_stalled",
        ForwardError::UpstreamUnreachable => "unreachable",
        ForwardError::UpstreamTimedOut => "timed_out",
        ForwardError::UpstreamFailed => "failed",
    };
    metrics::counter!(UPSTREAM_ERRORS, "kind" => kind).increment(1);
}

/// A client connection opened (`1.0`) or closed (`-1.0`).
pub fn connections(change: f64) {
    metrics::gauge!(OPEN_CONNECTIONS).increment(change);
}

/// Counts a reload.
pub fn reloaded(ok: bool) {
    let result = if ok { "ok" } else { "refused" };
    metrics::counter!(RELOADS, "result" => result).increment(1);
}
