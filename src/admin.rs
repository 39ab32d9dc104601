//! The admin listener, on an address of its own (loopback by default):
//! `/healthz` (the process is up), `/readyz` (a table is loaded and the
//! upstream accepts connections) and `/metrics` (Prometheus text format).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::{TcpListener, TcpStream};

use crate::gateway::Gateway;

/// What the admin routes read.
#[derive(Clone)]
struct Admin {
    gateway: Arc<Gateway>,
    upstream: http::uri::Authority,
    metrics: PrometheusHandle,
}

/// How long `/readyz` waits for the upstream to accept a connection.
const READY_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves the admin routes on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    upstream: http::uri::Authority,
    metrics: PrometheusHandle,
) -> std::io::Result<()> {
    let state = Admin {
        gateway,
        upstream,
        metrics,
    };
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(state);
    axum::serve(listener, router).await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(admin): State<Admin>) -> Response {
    let digest = admin.gateway.policy().table.digest.clone();
    let connect = TcpStream::connect(admin.upstream.as_str());
    let reachable = matches!(
        tokio::time::timeout(READY_CONNECT_TIMEOUT, connect).await,
        Ok(Ok(_))
    );
    let body = serde_json::json!({
        "ready": reachable,
        "table_digest": digest,
        "upstream": if reachable { "reachable" } else { "unreachable" },
    });
    let status = if reachable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn render_metrics(State(admin): State<Admin>) -> Response {
    let text = crate::metrics::render(&admin.metrics);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
