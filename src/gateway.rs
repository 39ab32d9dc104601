//! One request's way through the gateway: judge it (steps 1 to 9), record
//! the decision, then answer it ourselves or forward it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use http::{request, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::caller::{presented_token, Caller, Callers};
use crate::config::{Config, Limits};
use crate::decision::{decide, Decision, Step};
use crate::forwarding::{header_problem, ForwardError, Forwarder};
use crate::responses;
use crate::table::Table;
use crate::target::{self, Target};

/// Everything a running gateway needs to decide and forward.
pub struct Gateway {
    table: Arc<Table>,
    callers: Callers,
    forwarder: Forwarder,
    limits: Limits,
}

/// A judged request: the decision, who asked, and the target if it parsed.
pub struct Judgement {
    /// The decision.
    pub decision: Decision,
    /// The caller, as identified from the token.
    pub caller: Caller,
    /// The canonical target, when steps 1 and 2 passed.
    pub target: Option<Target>,
}

impl Gateway {
    /// A gateway for a checked configuration and table.
    pub fn new(config: Config, table: Table) -> Gateway {
        Gateway {
            forwarder: Forwarder::new(&config),
            table: Arc::new(table),
            callers: config.callers,
            limits: config.limits,
        }
    }

    /// The table in force.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Answers one request, from the client's bytes to the response head.
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let (parts, body) = request.into_parts();
        let judgement = self.judge(&parts);

        let Judgement {
            decision,
            caller,
            target,
        } = judgement;
        let logged_path = log_path(&parts, target.as_ref());
        let method = parts.method.clone();
        let response = match target.and_then(|target| decision.permit(target)) {
            Some(permit) => {
                let forwarded = self.forwarder.forward(permit, &caller, parts, body, peer);
                forwarded.await.unwrap_or_else(upstream_failure)
            }
            None => {
                let status = decision.outcome.status();
                let mut response = responses::error(status, &decision.outcome.message());
                if status == StatusCode::BAD_REQUEST {
                    close_after(&mut response);
                }
                response
            }
        };
        record(
            &decision,
            &caller,
            &method,
            &logged_path,
            response.status(),
            started,
        );
        response
    }

    /// Steps 1 to 9 for a request head.
    pub fn judge(&self, parts: &request::Parts) -> Judgement {
        let target = match target::parse(&parts.method, &parts.uri) {
            Ok(target) => target,
            Err(error) => return judgement(Decision::bad_target(error), Caller::Anonymous, None),
        };
        if let Some(problem) = header_problem(&parts.headers) {
            let decision = Decision::bad_headers(Step::CanonicalTarget, problem);
            return judgement(decision, Caller::Anonymous, Some(target));
        }
        let caller = match presented_token(&parts.headers) {
            Ok(token) => self.callers.identify(token),
            Err(error) => {
                let decision = Decision::bad_headers(Step::Caller, error.to_string());
                return judgement(decision, Caller::Anonymous, Some(target));
            }
        };
        let decision = decide(&self.table, &caller, &parts.method, &target.path);
        judgement(decision, caller, Some(target))
    }
}

fn judgement(decision: Decision, caller: Caller, target: Option<Target>) -> Judgement {
    Judgement {
        decision,
        caller,
        target,
    }
}

fn upstream_failure(error: ForwardError) -> Response<Body> {
    let client_fault = error.status().is_client_error();
    if !client_fault {
        tracing::warn!(error = %error, "upstream request failed");
    }
    let mut response = responses::error(error.status(), &error.to_string());
    if client_fault {
        close_after(&mut response);
    }
    response
}

/// Asks hyper to close the connection after this response: the client's
/// body was not read, or its framing cannot be trusted.
fn close_after(response: &mut Response<Body>) {
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
}

/// The path as it may be logged: the canonical path when there is one,
/// otherwise the raw path with control bytes escaped. Never the query, which
/// may carry a token.
fn log_path(parts: &request::Parts, target: Option<&Target>) -> String {
    match target {
        Some(target) => target.path.escape_debug().to_string(),
        None => parts.uri.path().escape_debug().to_string(),
    }
}

/// The one event per decision, with the same fields every time.
fn record(
    decision: &Decision,
    caller: &Caller,
    method: &http::Method,
    path: &str,
    status: StatusCode,
    started: Instant,
) {
    let rule = decision.rule.as_ref().map(|rule| rule.to_string());
    let rule = rule.as_deref().unwrap_or("-");
    let slug = caller.slug().unwrap_or("-");
    let role = caller.role().map_or("-", |role| role.name());
    let latency_us = started.elapsed().as_micros() as u64;
    macro_rules! event {
        ($level:ident) => {
            tracing::$level!(
                method = method.as_str(),
                path,
                caller = caller.kind(),
                slug,
                role,
                step = decision.step.name(),
                rule,
                outcome = decision.outcome.name(),
                status = status.as_u16(),
                latency_us,
                "decision"
            )
        };
    }
    if decision.allowed() {
        event!(info);
    } else {
        event!(warn);
    }
}
