//! The `check` command: one decision explained, without sending anything.

use std::fmt::Write;

use http::{HeaderValue, Method, Request};

use crate::caller::Caller;
use crate::config::{Config, Role};
use crate::decision::{decide, Decision, Outcome};
use crate::gateway::{judge, Judgement, Policy};
use crate::table::Table;
use crate::target;

/// Who the checked request comes from.
pub enum Who {
    /// A request carrying this token in `X-Supervisor-Token`.
    Token(String),
    /// The configured add-on with this slug.
    Addon(String),
    /// A caller named by kind: homeassistant, cli, observer or anonymous.
    Kind(String),
}

/// Why a check could not be run (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// `--addon` names no configured add-on.
    #[error("no add-on with slug {0} is configured")]
    UnknownAddon(String),
    /// `--caller` names no caller kind.
    #[error("unknown caller kind {0}: use homeassistant, cli, observer or anonymous")]
    UnknownKind(String),
    /// The method or token cannot form a request.
    #[error("cannot form a request from this method and token")]
    BadRequest,
}

/// Decides one request as the gateway would and describes the outcome.
pub fn run(
    config: Config,
    table: Table,
    who: Who,
    method: &str,
    target: &str,
) -> Result<(Judgement, String), CheckError> {
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| CheckError::BadRequest)?;
    // A target that does not even parse would get 400 on the wire; it is
    // decided as a target that is not in origin form.
    let uri: http::Uri = target
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("*"));
    let mut builder = Request::builder().method(method.clone()).uri(uri);
    if let Who::Token(token) = &who {
        let value = HeaderValue::from_str(token).map_err(|_| CheckError::BadRequest)?;
        builder = builder.header("x-supervisor-token", value);
    }
    let (parts, ()) = builder
        .body(())
        .map_err(|_| CheckError::BadRequest)?
        .into_parts();
    let fixed_caller = match &who {
        Who::Token(_) => None,
        Who::Addon(slug) => Some(
            config
                .callers
                .addon(slug)
                .ok_or_else(|| CheckError::UnknownAddon(slug.clone()))?,
        ),
        Who::Kind(kind) => Some(caller_of_kind(kind)?),
    };
    let policy = Policy {
        table,
        callers: config.callers,
        shadow: None,
    };
    let judgement = match fixed_caller {
        None => judge(&policy, &parts),
        Some(caller) => judge_as(&policy.table, caller, &parts),
    };
    let text = describe(&judgement, &policy.table, &method);
    Ok((judgement, text))
}

fn caller_of_kind(kind: &str) -> Result<Caller, CheckError> {
    match kind {
        "homeassistant" => Ok(Caller::HomeAssistant),
        "cli" => Ok(Caller::Cli),
        "observer" => Ok(Caller::Observer),
        "anonymous" => Ok(Caller::Anonymous),
        other => Err(CheckError::UnknownKind(other.to_owned())),
    }
}

/// Steps 1 to 9 with the caller given rather than read from a token.
fn judge_as(table: &Table, caller: Caller, parts: &http::request::Parts) -> Judgement {
    match target::parse(&parts.method, &parts.uri) {
        Err(error) => Judgement {
            decision: Decision::bad_target(error),
            caller,
            target: None,
        },
        Ok(target) => Judgement {
            decision: decide(table, &caller, &parts.method, &target.path),
            caller,
            target: Some(target),
        },
    }
}

/// For a refusal, what would have allowed it: the nearest rule (in the
/// least privileged role that has one) or the manifest flag that is missing.
pub fn nearest(judgement: &Judgement, table: &Table, method: &Method) -> Option<String> {
    let decision = &judgement.decision;
    let path = &judgement.target.as_ref()?.path;
    let flag = match decision.outcome {
        Outcome::Allowed | Outcome::BadTarget(_) | Outcome::BadHeaders(_) => return None,
        Outcome::AlwaysDenied => return Some("nothing: this path is refused to everyone".into()),
        Outcome::CoreOnly => return Some("only the Home Assistant core's token".into()),
        Outcome::NeedsHomeassistantApi => {
            return Some("an add-on token whose manifest says homeassistant_api: true".into())
        }
        Outcome::NeedsAuthApi => return Some("the same add-on with auth_api: true".into()),
        Outcome::BadToken(_) => return Some("a signed token that verifies now".into()),
        Outcome::NoHassioApi => " with hassio_api: true",
        Outcome::MissingToken | Outcome::UnknownToken | Outcome::RouteDenied => "",
    };
    Role::ALL.into_iter().find_map(|role| {
        let rule = table.role(role).find(method, path)?;
        Some(format!("{rule} (an add-on of role {}{flag})", role.name()))
    })
}

/// The human-readable explanation `check` prints.
pub fn describe(judgement: &Judgement, table: &Table, method: &Method) -> String {
    let decision = &judgement.decision;
    let status = decision.outcome.status();
    let mut out = String::new();
    let verdict = if decision.allowed() {
        "allowed (forwarded to the upstream)".to_owned()
    } else {
        format!("denied: {} {}", status.as_u16(), decision.outcome.message())
    };
    let _ = writeln!(out, "decision: {verdict}");
    let caller = &judgement.caller;
    let who = match (caller.slug(), caller.role()) {
        (Some(slug), Some(role)) => format!("addon {slug} (role {})", role.name()),
        _ => caller.kind().to_owned(),
    };
    let _ = writeln!(out, "caller:   {who}");
    if let Some(target) = &judgement.target {
        let _ = writeln!(out, "path:     {}", target.path.escape_debug());
    }
    let _ = writeln!(out, "step:     {}", decision.step);
    let rule = decision
        .rule
        .as_ref()
        .map_or("-".to_owned(), |rule| rule.to_string());
    let _ = writeln!(out, "rule:     {rule}");
    if let Some(nearest) = nearest(judgement, table, method) {
        let _ = writeln!(out, "nearest:  {nearest}");
    }
    out
}
