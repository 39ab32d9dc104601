//! One request's way through the gateway: judge it (steps 1 to 9), record
//! the decision, then answer it ourselves or forward it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;

use axum::body::Body;
use http::{request, Request, Response, StatusCode};
use http_body::Body as _;
use hyper::body::Incoming;

use crate::audit;
use crate::body::Tap;
use crate::caller::{presented_token, Caller, Callers};
use crate::config::{Config, ConfigError, Limits};
use crate::decision::{decide, Decision, Outcome, Permit, Standing, Step};
use crate::decision_cache::decide_kept;
use crate::forwarding::{
    self, header_problem, ClientBody, ForwardError, Forwarder, Peer, WatchEnds, Watched,
};
use crate::metrics;
use crate::protection_state::{self, ProtectionState};
use crate::responses;
use crate::table::Table;
use crate::target::{self, Target};
use crate::websocket;

#[path = "gateway_reload.rs"]
mod reloading;

pub use reloading::Reloaded;
pub use reloading::{load_shadow, load_table};
use reloading::{watched_paths, Fixed};

/// Everything a running gateway needs to decide and forward.
pub struct Gateway {
    policy: LivePolicy,
    forwarder: Forwarder,
    limits: Limits,
    fixed: Fixed,
    config_path: Option<PathBuf>,
    /// The files besides itself that the configuration named when it was
    /// last read, even if they could not be loaded: a reload watches for
    /// them to change or appear.
    named_files: Mutex<Vec<PathBuf>>,
    /// Where decisions are also written, one JSON line each.
    audit: Option<audit::Audit>,
    /// Protection mode as seen through successful toggles.
    protection: ProtectionState,
    /// Toggles are forwarded one at a time, so that the state recorded
    /// last is the one the upstream applied last.
    toggles: tokio::sync::Mutex<()>,
    /// Set when the server stops: every event stream and log followed
    /// then ends (see [`stopped`]).
    stopping: tokio::sync::watch::Sender<bool>,
}

/// What decides requests: the table, who holds which token, and the shadow
/// table. It is replaced whole on reload; a request keeps the one it started
/// with.
pub struct Policy {
    /// The table in force.
    pub table: Table,
    /// Every token holder.
    pub callers: Callers,
    /// A table decided alongside the active one and never enforced.
    pub shadow: Option<Table>,
}

/// The policy in force, for what outlives the request it was decided for
/// (a WebSocket relay, an event stream): it reads the policy when it needs
/// it, and learns of every reload.
#[derive(Clone)]
pub struct LivePolicy(Arc<Live>);

struct Live {
    current: ArcSwap<Policy>,
    reloaded: tokio::sync::watch::Sender<()>,
}

impl LivePolicy {
    /// `policy` in force, until replaced.
    pub fn new(policy: Policy) -> LivePolicy {
        LivePolicy(Arc::new(Live {
            current: ArcSwap::from_pointee(policy),
            reloaded: tokio::sync::watch::Sender::new(()),
        }))
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<Policy> {
        self.0.current.load_full()
    }

    /// Puts `policy` in force, tells whoever watches, and gives back the
    /// one it replaced.
    fn replace(&self, policy: Policy) -> Arc<Policy> {
        let old = self.0.current.swap(Arc::new(policy));
        self.0.reloaded.send_replace(());
        old
    }

    /// Changes each time a new policy is put in force (from now on).
    pub fn reloads(&self) -> tokio::sync::watch::Receiver<()> {
        self.0.reloaded.subscribe()
    }
}

/// A request that was allowed and goes on after its answer began (a
/// WebSocket, an event stream): after every reload it is decided again,
/// under the new policy, with the token it presented.
pub struct Grant {
    policy: LivePolicy,
    /// The policy the request was decided under (held weakly: only its
    /// address is compared, which the weak reference keeps from reuse).
    decided_under: std::sync::Weak<Policy>,
    caller: Caller,
    /// The token presented, if any (a public path needs none).
    token: Option<Vec<u8>>,
    method: http::Method,
    path: String,
}

impl Grant {
    /// The grant of a request decided under `decided_under` for `caller`
    /// on `path`, with the token headers in `parts`.
    pub fn new(
        policy: LivePolicy,
        decided_under: &Arc<Policy>,
        caller: &Caller,
        parts: &request::Parts,
        path: &str,
    ) -> Grant {
        let token = presented_token(&parts.headers).ok().flatten();
        Grant {
            policy,
            decided_under: Arc::downgrade(decided_under),
            caller: caller.clone(),
            token: token.map(<[u8]>::to_vec),
            method: parts.method.clone(),
            path: path.to_owned(),
        }
    }

    /// Who the request was allowed for.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.current()
    }

    /// Whether the request would still be allowed now: its token names the
    /// same caller, and the table still lets that caller make it.
    pub fn still_allowed(&self) -> bool {
        let policy = self.policy.current();
        let caller = policy.callers.identify(self.token.as_deref());
        caller.kind() == self.caller.kind()
            && caller.slug() == self.caller.slug()
            && decide(&policy.table, &caller, &self.method, &self.path).allowed()
    }

    /// Changes each time a new policy is put in force, and has changed
    /// already if one was since the request was decided.
    pub fn reloads(&self) -> tokio::sync::watch::Receiver<()> {
        let mut reloads = self.policy.reloads();
        // (After subscribing: a reload from now on is seen either way.)
        if self.reloaded_since_decided() {
            reloads.mark_changed();
        }
        reloads
    }

    /// Whether another policy is in force than the request was decided
    /// under.
    pub fn reloaded_since_decided(&self) -> bool {
        let now = self.policy.current();
        !std::ptr::eq(self.decided_under.as_ptr(), Arc::as_ptr(&now))
    }

    /// Resolves once a reload no longer allows the request.
    pub async fn revoked(&self) {
        let mut reloads = self.reloads();
        while reloads.changed().await.is_ok() {
            if !self.still_allowed() {
                return;
            }
        }
        // The gateway is gone: nothing will be reloaded.
        std::future::pending().await
    }
}

/// The error an event stream ends with when a reload no longer allows its
/// request.
#[derive(Debug, thiserror::Error)]
#[error("the request is no longer allowed")]
struct NoLongerAllowed;

/// How a reload ends an event stream: cut off once `grant` no longer allows
/// its request.
async fn revoked(grant: Grant) -> WatchEnds {
    grant.revoked().await;
    tracing::info!(
        caller = grant.caller().kind(),
        slug = grant.caller().slug().unwrap_or("-"),
        "event stream cut off: after a reload its token no longer allows it"
    );
    WatchEnds::Fail(axum::Error::new(NoLongerAllowed))
}

/// How the server's stop ends an answer with no end of its own (an event
/// stream or a log followed, see [`is_endless`]; `None` for another):
/// cleanly, so that the client sees the end of the answer (an
/// `EventSource` connects again, to whatever serves then), and the
/// upstream's connection is let go. A client that takes nothing of what
/// was sent does not see the end: it holds its connection until the send
/// timeout or the shutdown grace time, whichever comes first.
async fn stopped(stopping: Option<tokio::sync::watch::Receiver<bool>>) -> WatchEnds {
    if let Some(mut stopping) = stopping {
        // (An error: the gateway is gone without stopping.)
        if stopping.wait_for(|stopping| *stopping).await.is_ok() {
            return WatchEnds::End;
        }
    }
    std::future::pending().await
}

/// Whether `path` (canonical) follows a log, as the Supervisor's
/// `/{service}/logs/follow`, `…/logs/boots/{boot}/follow`,
/// `…/logs/identifiers/{identifier}/follow` and
/// `…/logs/boots/{boot}/identifiers/{identifier}/follow` do (also under
/// `/addons/{slug}`): an answer that goes on for as long as the client
/// stays, like an event stream. Not `/host/logs/identifiers/follow`, the
/// finite log of an identifier named `follow` (helper 75).
fn is_log_follow(path: &str) -> bool {
    // (One slash after it is let through, and forwarded: helper 76.)
    let path = path.strip_suffix('/').unwrap_or(path);
    let Some(before) = path.strip_suffix("/follow") else {
        return false;
    };
    // The segments before `follow`, the last first; a service (or the
    // add-on's slug) must come before `logs`.
    let mut back = before.rsplit('/');
    let mut next = || back.next().unwrap_or("");
    let segments = [next(), next(), next(), next(), next(), next()];
    let logs_of_something = |at: usize| segments[at] == "logs" && !segments[at + 1].is_empty();
    match segments {
        ["logs", ..] => logs_of_something(0),
        [_, "boots" | "identifiers", "logs", ..] => logs_of_something(2),
        [_, "identifiers", _, "boots", "logs", _] => logs_of_something(4),
        _ => false,
    }
}

/// Whether an answer's body has no end of its own the client knows of: it
/// is not over, and has no `Content-Length` (one with a length is let run
/// to it, within the grace time: ending it early would break it off;
/// helper 75).
fn is_endless(response: &Response<Body>) -> bool {
    !http_body::Body::is_end_stream(response.body())
        && !response
            .headers()
            .contains_key(http::header::CONTENT_LENGTH)
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
    /// A gateway for a checked configuration and table, with no shadow table.
    pub fn new(config: Config, table: Table) -> Gateway {
        Gateway::with_policy(config, table, None, ProtectionState::in_memory())
    }

    /// A gateway with the validated table and shadow table its
    /// configuration names: what `serve` runs.
    pub fn from_config(config: Config) -> Result<Gateway, Vec<ConfigError>> {
        let table = load_table(&config)?;
        let shadow = load_shadow(&config)?;
        let protection = ProtectionState::load(config.state_file.clone())
            .map_err(|reason| vec![config.file_error("state_file", reason)])?;
        Ok(Gateway::with_policy(config, table, shadow, protection))
    }

    fn with_policy(
        config: Config,
        table: Table,
        shadow: Option<Table>,
        protection: ProtectionState,
    ) -> Gateway {
        let fixed = Fixed::of(&config);
        Gateway {
            forwarder: Forwarder::new(&config),
            limits: config.limits.clone(),
            config_path: config.path.clone(),
            named_files: Mutex::new(watched_paths(&config)),
            audit: None,
            protection,
            toggles: tokio::sync::Mutex::new(()),
            stopping: tokio::sync::watch::Sender::new(false),
            policy: LivePolicy::new(Policy {
                table,
                callers: config.callers,
                shadow,
            }),
            fixed,
        }
    }

    /// Also writes every decision to `audit`.
    pub fn with_audit(mut self, audit: audit::Audit) -> Gateway {
        self.audit = Some(audit);
        self
    }

    /// Opens the audit log by its name again, if there is one (after log
    /// rotation moved it away); never waits.
    pub fn reopen_audit(&self) {
        if let Some(audit) = &self.audit {
            audit.reopen();
        }
    }

    /// Waits, at most `within`, for the audit log (if any) to take every
    /// decision recorded so far; logs how many it did not take in time.
    /// What a stopping gateway does last, off the runtime (it blocks).
    pub fn finish_audit(&self, within: std::time::Duration) {
        if let Some(Err(lines)) = self.audit.as_ref().map(|audit| audit.finish(within)) {
            tracing::warn!(
                lines,
                "the audit log did not take its last lines in time; they are lost"
            );
        }
    }

    /// Ends every event stream and log followed, open or yet to come: the
    /// server stops. (WebSockets are closed by their relays, with 1001.)
    /// Such an answer would otherwise keep its connection, and the process,
    /// for the whole shutdown grace time, which is as long as Docker waits
    /// before it kills (helpers 71 and 72).
    pub fn end_streams(&self) {
        self.stopping.send_replace(true);
    }

    /// Whether protection mode is on for `slug`, as far as the gateway saw.
    pub fn protected(&self, slug: &str) -> bool {
        self.protection.protected(slug)
    }

    /// After a successful protection-mode toggle, records the state it
    /// asked for and says who changed it.
    fn note_toggle(
        &self,
        response: &Response<Body>,
        caller: &Caller,
        named: &str,
        tap: &Tap,
        read_as_sent: bool,
    ) {
        if !response.status().is_success() {
            return;
        }
        let slug = match (named, caller.slug()) {
            ("self", Some(own)) => own,
            ("self", None) => return,
            (slug, _) => slug,
        };
        let asked = match tap.bytes() {
            Some(body) if read_as_sent => protection_state::requested(&body),
            _ => protection_state::Asked::Unreadable,
        };
        let protected = match asked {
            protection_state::Asked::Set(protected) => protected,
            protection_state::Asked::Nothing => return,
            // The state is not known: recorded as off, the worse of the two
            // for what `addons` rates (with protection on, privileges
            // are counted as withheld), until a toggle it can read.
            protection_state::Asked::Unreadable => {
                tracing::warn!(slug, "a protection-mode toggle succeeded with a body the gateway could not read as the Supervisor did; its state is unknown, recorded as off");
                false
            }
        };
        if let Err(error) = self.protection.set(slug, protected) {
            tracing::error!(slug, %error, "cannot write the protection state file");
        }
        tracing::info!(
            slug,
            protected,
            by = caller.kind(),
            by_slug = caller.slug().unwrap_or("-"),
            "protection mode changed"
        );
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.current()
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The grant of a request allowed by `permit` under `policy`, for what
    /// of it goes on after its answer began.
    fn grant(
        &self,
        policy: &Arc<Policy>,
        caller: &Caller,
        parts: &request::Parts,
        permit: &Permit,
    ) -> Grant {
        let path = &permit.target().path;
        Grant::new(self.policy.clone(), policy, caller, parts, path)
    }

    /// An event stream's grant, once the upstream's head came. If a reload
    /// took the request's grant away while the upstream was answering, the
    /// request is decided again under the policy now, and that judgement
    /// given back: the client then gets the answer the request gets now,
    /// not a stream cut off before its head. It may be allowed: its token
    /// names another caller, who may make it; the stream is then theirs.
    fn stream_grant(
        &self,
        policy: &Arc<Policy>,
        caller: &Caller,
        parts: &request::Parts,
        permit: &Permit,
    ) -> (Grant, Option<Judgement>) {
        let grant = self.grant(policy, caller, parts, permit);
        if !grant.reloaded_since_decided() || grant.still_allowed() {
            return (grant, None);
        }
        let current = self.policy();
        let now = judge(&current, parts);
        tracing::info!(
            caller = caller.kind(),
            slug = caller.slug().unwrap_or("-"),
            now_caller = now.caller.kind(),
            now_slug = now.caller.slug().unwrap_or("-"),
            allowed = now.decision.allowed(),
            "event stream decided again: a reload took its grant away while the upstream answered"
        );
        let grant = self.grant(&current, &now.caller, parts, permit);
        (grant, Some(now))
    }

    /// Answers one request, from the client's bytes to the response head.
    ///
    /// The request is taken apart here and its head lent to the steps
    /// after: an async function keeps its moved arguments twice, and hyper
    /// keeps room for this future in every connection, busy or idle.
    pub fn handle(
        self: &Arc<Self>,
        request: Request<Incoming>,
        peer: Peer,
    ) -> impl std::future::Future<Output = Response<Body>> + Send + 'static {
        let (parts, body) = request.into_parts();
        self.handle_parts(parts, Some(ClientBody::Streamed(body)), peer)
    }

    /// [`Gateway::handle`] for a request already taken apart; no `body`, or
    /// a whole one, is a GET read by the server's own code rather than
    /// hyper's (see `plain.rs`).
    pub(crate) fn handle_parts(
        self: &Arc<Self>,
        mut parts: request::Parts,
        body: Option<ClientBody>,
        peer: Peer,
    ) -> impl std::future::Future<Output = Response<Body>> + Send + 'static {
        let gateway = self.clone();
        let started = Instant::now();
        async move { gateway.answer(started, &mut parts, body, &peer).await }
    }

    async fn answer(
        &self,
        started: Instant,
        parts: &mut request::Parts,
        body: Option<ClientBody>,
        peer: &Peer,
    ) -> Response<Body> {
        let policy = self.policy();
        // (Heads over `max_header_bytes` never get here: hyper counts them
        // as sent and answers 431 itself; see `server::hyper_builder`.)
        let judgement = if parts.version == http::Version::HTTP_11
            && forwarding::values_of(&parts.headers, &http::header::HOST)
                .next()
                .is_none()
        {
            // RFC 9112, 3.2: an HTTP/1.1 request without Host gets 400.
            let decision =
                Decision::bad_headers(Step::CanonicalTarget, "HTTP/1.1 request without Host");
            judgement(decision, Caller::Anonymous, None)
        } else {
            judge(&policy, parts)
        };
        let decided_in = started.elapsed();
        if let Some(shadow) = &policy.shadow {
            compare_shadow(shadow, &judgement, &parts.method);
        }

        let Judgement {
            mut decision,
            mut caller,
            target,
        } = judgement;
        let mut logged_path = (logged(&decision) || self.audit.is_some()).then(|| match &target {
            Some(target) => target.path.clone(),
            None => refused_path_for_log(parts.uri.path()),
        });
        let method = parts.method.clone();
        // (A body read whole with its head leaves nothing unread.)
        let had_body = matches!(&body, Some(ClientBody::Streamed(body)) if !body.is_end_stream());
        let response = match target.and_then(|target| decision.permit(target)) {
            Some(permit) if websocket::is_upgrade(parts, &permit.target().path) => {
                let grant = self.grant(&policy, &caller, parts, &permit);
                let upgraded = self.forwarder.forward_upgrade(&permit, grant, parts, peer);
                upgraded
                    .await
                    .unwrap_or_else(|error| upstream_failure(error, had_body))
            }
            Some(permit) => {
                let toggled = (parts.method == http::Method::POST)
                    .then(|| protection_state::toggle_slug(&permit.target().path))
                    .flatten()
                    .map(str::to_owned);
                let one_at_a_time = match toggled {
                    Some(_) => Some(self.toggles.lock().await),
                    None => None,
                };
                // A toggle's body is kept, so that a success can be recorded
                // with the state it asked for.
                let tap = toggled.as_ref().map(|_| Tap::default());
                let read_as_sent =
                    toggled.is_some() && protection_state::read_as_sent(&parts.headers);
                let forwarded =
                    self.forwarder
                        .forward(&permit, &caller, parts, body, tap.clone(), peer);
                let mut response = forwarded
                    .await
                    .unwrap_or_else(|error| upstream_failure(error, had_body));
                if forwarding::is_event_stream(response.headers()) {
                    let (grant, again) = self.stream_grant(&policy, &caller, parts, &permit);
                    // Decided again: the client's answer, the metrics, the
                    // audit and the log follow the decision of now.
                    if let Some(now) = again {
                        (decision, caller) = (now.decision, now.caller);
                        if logged(&decision) {
                            logged_path.get_or_insert_with(|| permit.target().path.clone());
                        }
                    }
                    let stopping = is_endless(&response).then(|| self.stopping.subscribe());
                    response = match decision.allowed() {
                        true => response.map(|body| {
                            let ends = async move {
                                tokio::select! {
                                    ends = revoked(grant) => ends,
                                    ends = stopped(stopping) => ends,
                                }
                            };
                            Body::new(Watched::new(body, ends, false))
                        }),
                        false => refusal(&decision, had_body),
                    };
                } else if is_log_follow(&permit.target().path) && is_endless(&response) {
                    // A log followed never ends of itself either (helper 72).
                    let stopping = Some(self.stopping.subscribe());
                    response = response
                        .map(|body| Body::new(Watched::new(body, stopped(stopping), false)));
                }
                forwarding::keep_spare_header_map(std::mem::take(&mut parts.headers));
                if let (Some(named), Some(tap)) = (toggled, tap) {
                    self.note_toggle(&response, &caller, &named, &tap, read_as_sent);
                }
                drop(one_at_a_time);
                response
            }
            None => refusal(&decision, had_body),
        };
        metrics::request(&decision, &caller, response.status(), decided_in);
        if let (Some(audit), Some(path)) = (&self.audit, &logged_path) {
            audit.record(&audit_entry(
                &decision, &caller, &method, path, &response, started,
            ));
        }
        if let Some(path) = logged_path.as_ref().filter(|_| logged(&decision)) {
            let path = LogPath(path);
            record(
                &decision,
                &caller,
                &method,
                &path,
                response.status(),
                started,
            );
        }
        response
    }
}

/// Steps 1 to 9 for a request head, under one policy. The caller is
/// identified even when the headers are refused, so that the log says who
/// sent them.
pub fn judge(policy: &Policy, parts: &request::Parts) -> Judgement {
    let target = match target::parse(&parts.method, &parts.uri) {
        Ok(target) => target,
        Err(error) => return judgement(Decision::bad_target(error), Caller::Anonymous, None),
    };
    let token = presented_token(&parts.headers);
    let caller = match token {
        Ok(token) => policy.callers.identify(token),
        Err(_) => Caller::Anonymous,
    };
    if let Some(problem) = header_problem(&parts.headers) {
        let decision = Decision::bad_headers(Step::CanonicalTarget, problem);
        return judgement(decision, caller, Some(target));
    }
    if let Err(error) = token {
        let decision = Decision::bad_headers(Step::Caller, error.to_string());
        return judgement(decision, caller, Some(target));
    }
    let standing = Standing::of(&caller);
    let decision = decide_kept(&policy.table, standing, &parts.method, &target.path);
    judgement(decision, caller, Some(target))
}

/// Decides the request again under the shadow table and logs where the two
/// disagree; the shadow decision is never enforced.
fn compare_shadow(shadow: &Table, judgement: &Judgement, method: &http::Method) {
    let Some(target) = &judgement.target else {
        return;
    };
    let active = &judgement.decision;
    if matches!(active.outcome, Outcome::BadHeaders(_)) {
        return;
    }
    let shadowed = decide(shadow, &judgement.caller, method, &target.path);
    if shadowed.outcome.status() == active.outcome.status() {
        return;
    }
    let rule = |decision: &Decision| {
        decision
            .rule
            .as_ref()
            .map_or("-".to_owned(), |r| r.to_string())
    };
    tracing::warn!(
        method = logged_method(method),
        path = %target.path.escape_debug(),
        caller = judgement.caller.kind(),
        slug = judgement.caller.slug().unwrap_or("-"),
        active_status = active.outcome.status().as_u16(),
        active_rule = %rule(active),
        shadow_status = shadowed.outcome.status().as_u16(),
        shadow_rule = %rule(&shadowed),
        "shadow table disagrees"
    );
}

/// Logs each manifest that could not be used (the others are in force),
/// each entry of the secrets file no add-on uses, and a revocation file
/// that does not exist.
pub fn warn_config_problems(config: &Config) {
    for problem in &config.manifest_problems {
        tracing::warn!(%problem, "add-on {}", problem.cost.headline());
    }
    // A missing revocation list is an empty one (so that a first `token
    // revoke` can make it); said, in case it is not where it was meant.
    // (The name as Debug shows it: escaped, so that a character that shows
    // as nothing is seen.)
    let Some(signed) = config.callers.signed.as_ref() else {
        return;
    };
    if let Some(file) = signed
        .revocation_file()
        .filter(|_| signed.revocations_missing())
    {
        tracing::warn!(
            file = ?file,
            "the revocation file does not exist: no signed token is revoked until `token revoke` makes it"
        );
    }
    // (Counted, not named: an entry could be a token pasted by mistake.)
    let unknown = signed.revoked_unknown_addons();
    if unknown > 0 {
        tracing::warn!(
            entries = unknown,
            "issued_before in the revocation file names add-ons this configuration does not have; they revoke nothing"
        );
    }
}

fn judgement(decision: Decision, caller: Caller, target: Option<Target>) -> Judgement {
    Judgement {
        decision,
        caller,
        target,
    }
}

/// The answer to a refused request.
fn refusal(decision: &Decision, had_body: bool) -> Response<Body> {
    let status = decision.outcome.status();
    let mut response = responses::error(status, &decision.outcome.message());
    // A refused request's body is never read, so the connection cannot
    // carry another request: say so, rather than let the client find a
    // closed socket. Malformed requests close too.
    if status == StatusCode::BAD_REQUEST || had_body {
        close_after(&mut response);
    }
    if let Outcome::BadToken(_) = decision.outcome {
        responses::invalid_token(&mut response);
    }
    response
}

/// The answer to a request whose forwarding failed. It closes the
/// connection when the client was at fault, or when the request had a body
/// (`had_body`), which may not have been read to its end: hyper then
/// closes the connection, so the client is told.
fn upstream_failure(error: ForwardError, had_body: bool) -> Response<Body> {
    metrics::upstream_error(error);
    let client_fault = error.status().is_client_error();
    if error == ForwardError::HeldBodiesFull {
        // Nothing went upstream: the gateway's own cap refused the body.
        tracing::warn!(
            "request refused: the request bodies held whole take all of limits.max_held_body_bytes"
        );
    } else if !client_fault {
        tracing::warn!(error = %error, "upstream request failed");
    }
    let mut response = responses::error(error.status(), &error.to_string());
    if client_fault || had_body {
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

/// Whether this decision's event would be written: allowed requests log at
/// info, refusals at warn.
fn logged(decision: &Decision) -> bool {
    if decision.allowed() {
        tracing::enabled!(tracing::Level::INFO)
    } else {
        tracing::enabled!(tracing::Level::WARN)
    }
}

/// The path as it may be logged: the canonical path when there is one,
/// otherwise the raw path, with control bytes escaped either way. Never the
/// query, which may carry a token.
struct LogPath<'a>(&'a str);

/// A request's method as the logs show it: one of HTTP's own, or `OTHER`
/// (any other token is the client's text, which may be anything it likes,
/// a token even: helper 80).
fn logged_method(method: &http::Method) -> &str {
    use http::Method;
    match *method {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::PATCH
        | Method::OPTIONS
        | Method::CONNECT
        | Method::TRACE => method.as_str(),
        _ => "OTHER",
    }
}

/// A target refused at steps 1 and 2, as the logs show it: as it came,
/// but cut short (with `…`) at its first `;`, `?`, `#` or `%`: where
/// parameters, a query or a fragment would begin, or any percent-encoding,
/// which may hide one of them however many times over it is encoded (and
/// however loosely: `%%33F`). A query is never logged, and a client that
/// hides one (with a token in it, say) in a target refused for that is not
/// logged either.
fn refused_path_for_log(path: &str) -> String {
    match path.find([';', '?', '#', '%']) {
        Some(at) => format!("{}…", &path[..at]),
        None => path.to_owned(),
    }
}

impl std::fmt::Display for LogPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0.escape_debug(), f)
    }
}

/// The one event per decision, with the same fields every time.
fn record(
    decision: &Decision,
    caller: &Caller,
    method: &http::Method,
    path: &LogPath<'_>,
    status: StatusCode,
    started: Instant,
) {
    // The fields are only formatted when the event is enabled, so a quiet
    // log costs nothing per request.
    macro_rules! event {
        ($level:ident) => {
            tracing::$level!(
                method = logged_method(method),
                path = %path,
                caller = caller.kind(),
                slug = caller.slug().unwrap_or("-"),
                role = caller.role().map_or("-", |role| role.name()),
                step = decision.step.name(),
                rule = %RuleLabel(decision.rule.as_deref()),
                outcome = decision.outcome.name(),
                reason = %decision.outcome.message(),
                status = status.as_u16(),
                latency_us = started.elapsed().as_micros() as u64,
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

fn audit_entry(
    decision: &Decision,
    caller: &Caller,
    method: &http::Method,
    path: &str,
    response: &Response<Body>,
    started: Instant,
) -> audit::Entry {
    audit::Entry {
        time: audit::now_rfc3339(),
        caller: caller.kind().to_owned(),
        slug: caller.slug().unwrap_or("-").to_owned(),
        role: caller.role().map_or("-", |role| role.name()).to_owned(),
        method: logged_method(method).to_owned(),
        path: path.to_owned(),
        decision: decision.outcome.name().to_owned(),
        step: decision.step.name().to_owned(),
        rule: RuleLabel(decision.rule.as_deref()).to_string(),
        status: response.status().as_u16(),
        latency_us: started.elapsed().as_micros() as u64,
    }
}

/// A rule as the log shows it, `-` for none.
struct RuleLabel<'a>(Option<&'a crate::table::Rule>);

impl std::fmt::Display for RuleLabel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(rule) => rule.fmt(f),
            None => f.write_str("-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            table: Table::builtin().expect("the built-in table"),
            callers: Callers::default(),
            shadow: None,
        }
    }

    fn grant(live: &LivePolicy, decided_under: &Arc<Policy>) -> Grant {
        let (parts, ()) = Request::get("/core/api/stream")
            .body(())
            .expect("request")
            .into_parts();
        Grant::new(
            live.clone(),
            decided_under,
            &Caller::Anonymous,
            &parts,
            "/core/api/stream",
        )
    }

    #[test]
    fn a_refused_target_is_logged_up_to_where_parameters_or_a_query_begin() {
        for (path, logged) in [
            ("/a/b", "/a/b"),
            ("/a//b", "/a//b"),
            ("/a/../b", "/a/../b"),
            ("/a/%2e%2e/b", "/a/…"),
            ("/a;t=x", "/a…"),
            ("/a%3Bt=x", "/a…"),
            ("/a%3ft=x", "/a…"),
            ("/a%25253Ft=x", "/a…"),
            ("/a%25%33%46t=x", "/a…"),
            ("/a%%33Ft=x", "/a…"),
            ("/a%3%46t=x", "/a…"),
            ("/a#t", "/a…"),
            ("%3F", "…"),
        ] {
            assert_eq!(refused_path_for_log(path), logged, "{path}");
        }
    }

    #[test]
    fn a_request_without_a_token_on_a_public_path_stays_allowed_after_a_reload() {
        let live = LivePolicy::new(policy());
        let decided_under = live.current();
        let path = "/ingress/session/ui/events";
        let (parts, ()) = Request::get(path).body(()).expect("request").into_parts();
        let judged = judge(&decided_under, &parts);
        assert!(judged.decision.allowed(), "the path is not public");
        let grant = Grant::new(live.clone(), &decided_under, &judged.caller, &parts, path);
        live.replace(policy());
        assert!(
            grant.still_allowed(),
            "cut off by a reload that changed nothing"
        );
    }

    #[test]
    fn a_reload_between_the_decision_and_the_grant_is_seen() {
        let live = LivePolicy::new(policy());
        let decided_under = live.current();
        assert!(!grant(&live, &decided_under)
            .reloads()
            .has_changed()
            .expect("open"));
        live.replace(policy());
        let reloads = grant(&live, &decided_under).reloads();
        assert!(
            reloads.has_changed().expect("open"),
            "the reload was missed"
        );
        // A grant decided under the policy now in force has seen nothing.
        let now = live.current();
        assert!(!grant(&live, &now).reloads().has_changed().expect("open"));
    }

    #[test]
    fn the_supervisors_log_follows_are_told_from_logs_of_things_named_follow() {
        for path in [
            "/supervisor/logs/follow",
            "/core/logs/follow",
            "/addons/core_ssh/logs/follow",
            "/host/logs/boots/-1/follow",
            "/addons/a/logs/boots/0/follow",
            "/host/logs/identifiers/sshd/follow",
            "/host/logs/boots/0/identifiers/sshd/follow",
            // The log of an identifier named `follow`, followed.
            "/host/logs/identifiers/follow/follow",
            // With the one slash after it the gateway lets through.
            "/supervisor/logs/follow/",
        ] {
            assert!(is_log_follow(path), "{path}");
        }
        for path in [
            // The finite log of an identifier named `follow` (helper 75).
            "/host/logs/identifiers/follow",
            "/host/logs/boots/0/identifiers/follow",
            "/logs/follow",
            "/addons/follow/info",
            "/supervisor/logs",
            "/supervisor/logs/latest",
            "/host/logs/boots/follow",
            "/addons/a/logs/x/follow",
        ] {
            assert!(!is_log_follow(path), "{path}");
        }
    }

    #[test]
    fn an_answer_with_a_length_is_not_endless() {
        let streaming = || {
            Body::from_stream(futures_util::stream::pending::<
                Result<bytes::Bytes, std::io::Error>,
            >())
        };
        assert!(is_endless(&Response::new(streaming())));
        let mut with_length = Response::new(streaming());
        with_length.headers_mut().insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from_static("4000"),
        );
        assert!(!is_endless(&with_length));
        assert!(!is_endless(&Response::new(Body::empty())));
    }
}
