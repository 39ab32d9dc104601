//! Steps 3 to 9 of the evaluation: from a caller, a method and a canonical
//! path to a [`Decision`]. An allowed decision yields the [`Permit`] that
//! forwarding requires, so nothing reaches the upstream undecided.

use std::fmt;
use std::sync::Arc;

use http::{Method, StatusCode};

use crate::caller::Caller;
use crate::config::Role;
use crate::signed::Rejection;
use crate::table::{Gate, Rule, Table};
use crate::target::{Target, TargetError};

/// The evaluation step that settled a request (SPEC.md numbers them 1 to 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// 1: the hostile-input filter.
    HostileInput,
    /// 2: the canonical target (and the request's own form: method, headers).
    CanonicalTarget,
    /// 3: paths refused to everyone.
    AlwaysDenied,
    /// 4: paths open without a token, and the v1 core proxy.
    Public,
    /// 5: who is calling (no token, an unknown one, a malformed one).
    Caller,
    /// 6: paths only the Home Assistant core may reach.
    CoreOnly,
    /// 7: the core, CLI and observer tokens.
    Plugins,
    /// 8: add-ons: self-service paths and the role table.
    Addons,
    /// 9: anything else.
    DefaultDeny,
}

impl Step {
    /// The step's number in SPEC.md.
    pub fn number(self) -> u8 {
        self as u8 + 1
    }

    /// The step's short name, as logs and `check` show it.
    pub fn name(self) -> &'static str {
        match self {
            Step::HostileInput => "hostile-input",
            Step::CanonicalTarget => "canonical-target",
            Step::AlwaysDenied => "always-denied",
            Step::Public => "public",
            Step::Caller => "caller",
            Step::CoreOnly => "core-only",
            Step::Plugins => "plugins",
            Step::Addons => "add-ons",
            Step::DefaultDeny => "default-deny",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.number(), self.name())
    }
}

/// What was decided, and for a refusal why (the client reads the reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The request may pass.
    Allowed,
    /// The target failed step 1 or 2.
    BadTarget(TargetError),
    /// The request's headers are ambiguous or hostile.
    BadHeaders(String),
    /// Refused for everyone.
    AlwaysDenied,
    /// No token on a path that needs one.
    MissingToken,
    /// A token that belongs to nobody.
    UnknownToken,
    /// A signed token that is expired, revoked or does not verify (401).
    BadToken(Rejection),
    /// The core proxy needs an add-on with `homeassistant_api`.
    NeedsHomeassistantApi,
    /// Only the Home Assistant core may reach this path.
    CoreOnly,
    /// The add-on's manifest does not say `hassio_api: true`.
    NoHassioApi,
    /// `/auth` needs `auth_api: true`.
    NeedsAuthApi,
    /// No rule lets this caller reach this method and path.
    RouteDenied,
}

impl Outcome {
    /// The status code the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Outcome::Allowed => StatusCode::OK,
            Outcome::BadTarget(TargetError::MethodNotAllowed) => StatusCode::METHOD_NOT_ALLOWED,
            Outcome::BadTarget(_) | Outcome::BadHeaders(_) => StatusCode::BAD_REQUEST,
            Outcome::MissingToken | Outcome::NeedsHomeassistantApi | Outcome::BadToken(_) => {
                StatusCode::UNAUTHORIZED
            }
            Outcome::AlwaysDenied
            | Outcome::UnknownToken
            | Outcome::CoreOnly
            | Outcome::NoHassioApi
            | Outcome::NeedsAuthApi
            | Outcome::RouteDenied => StatusCode::FORBIDDEN,
        }
    }

    /// The outcome's short name for logs: `allowed` or `denied`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            _ => "denied",
        }
    }

    /// What the client is told; it names no secret.
    pub fn message(&self) -> String {
        match self {
            Outcome::Allowed => "allowed".into(),
            Outcome::BadTarget(error) => error.to_string(),
            Outcome::BadHeaders(reason) => reason.clone(),
            Outcome::AlwaysDenied => "this path is never forwarded".into(),
            Outcome::MissingToken => "a token is required".into(),
            Outcome::UnknownToken => "unknown token".into(),
            Outcome::BadToken(rejection) => rejection.reason().into(),
            Outcome::NeedsHomeassistantApi => {
                "the Home Assistant API needs an add-on token with homeassistant_api".into()
            }
            Outcome::CoreOnly => "only Home Assistant may reach this path".into(),
            Outcome::NoHassioApi => "the add-on has no access to the Supervisor API".into(),
            Outcome::NeedsAuthApi => "the add-on has no access to the auth API".into(),
            Outcome::RouteDenied => "the caller's role does not allow this request".into(),
        }
    }
}

/// The decision on one request: outcome, the step that settled it and the
/// rule it settled on, when a rule did.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Allowed or why not.
    pub outcome: Outcome,
    /// The settling step.
    pub step: Step,
    /// The settling rule, if any.
    pub rule: Option<Arc<Rule>>,
}

impl Decision {
    fn new(outcome: Outcome, step: Step, rule: Option<&Arc<Rule>>) -> Decision {
        Decision {
            outcome,
            step,
            rule: rule.cloned(),
        }
    }

    /// A refusal at steps 1 or 2.
    pub fn bad_target(error: TargetError) -> Decision {
        let step = if error.step() == 1 {
            Step::HostileInput
        } else {
            Step::CanonicalTarget
        };
        Decision::new(Outcome::BadTarget(error), step, None)
    }

    /// A refusal for the request's headers.
    pub fn bad_headers(step: Step, reason: impl Into<String>) -> Decision {
        Decision::new(Outcome::BadHeaders(reason.into()), step, None)
    }

    /// Whether the request may pass.
    pub fn allowed(&self) -> bool {
        self.outcome == Outcome::Allowed
    }

    /// The permit to forward `target`, only for an allowed decision.
    pub fn permit(&self, target: Target) -> Option<Permit> {
        self.allowed().then_some(Permit { target })
    }
}

/// Proof that a request was allowed: the only way to obtain the target that
/// forwarding sends upstream.
#[derive(Debug)]
pub struct Permit {
    target: Target,
}

impl Permit {
    /// The target that was decided on.
    pub fn target(&self) -> &Target {
        &self.target
    }
}

/// All that a decision reads of its caller. A decision is a function of the
/// table, this, the method and the path, and of nothing else, which is what
/// lets [`crate::decision_cache`] keep one and give it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Standing {
    /// No token.
    Anonymous,
    /// A token that belongs to nobody.
    Unknown,
    /// The Home Assistant core.
    HomeAssistant,
    /// The host CLI plugin.
    Cli,
    /// The observer plugin.
    Observer,
    /// An add-on, by the manifest fields that grant access (not by name).
    Addon {
        /// `hassio_api`.
        hassio_api: bool,
        /// `hassio_role`.
        role: Role,
        /// `homeassistant_api`.
        homeassistant_api: bool,
        /// `auth_api`.
        auth_api: bool,
    },
    /// A signed token that failed verification.
    Rejected(Rejection),
}

impl Standing {
    /// The standing of `caller`.
    pub fn of(caller: &Caller) -> Standing {
        match caller {
            Caller::Anonymous => Standing::Anonymous,
            Caller::Unknown => Standing::Unknown,
            Caller::HomeAssistant => Standing::HomeAssistant,
            Caller::Cli => Standing::Cli,
            Caller::Observer => Standing::Observer,
            Caller::Addon(addon) => Standing::Addon {
                hassio_api: addon.hassio_api,
                role: addon.role,
                homeassistant_api: addon.homeassistant_api,
                auth_api: addon.auth_api,
            },
            Caller::Rejected(rejection) => Standing::Rejected(*rejection),
        }
    }
}

/// Runs steps 3 to 9 for a canonical path.
pub fn decide(table: &Table, caller: &Caller, method: &Method, path: &str) -> Decision {
    decide_for(table, Standing::of(caller), method, path)
}

/// Runs steps 3 to 9 for a canonical path, for a caller of this standing.
pub fn decide_for(table: &Table, caller: Standing, method: &Method, path: &str) -> Decision {
    let gate = table.gate(path);
    if let Some(rule) = table.always_denied.find_gated(&gate, method, path) {
        return Decision::new(Outcome::AlwaysDenied, Step::AlwaysDenied, Some(rule));
    }
    if let Some(rule) = table.public.find_gated(&gate, method, path) {
        return Decision::new(Outcome::Allowed, Step::Public, Some(rule));
    }
    if let Some(rule) = table.core_proxy_public.find_gated(&gate, method, path) {
        return core_proxy_check(
            caller,
            Decision::new(Outcome::Allowed, Step::Public, Some(rule)),
        );
    }
    let decision = match caller {
        Standing::Anonymous => Decision::new(Outcome::MissingToken, Step::Caller, None),
        Standing::Unknown => Decision::new(Outcome::UnknownToken, Step::Caller, None),
        Standing::Rejected(rejection) => {
            Decision::new(Outcome::BadToken(rejection), Step::Caller, None)
        }
        _ => decide_known(table, &gate, caller, method, path),
    };
    let checked = || {
        table
            .core_proxy_checked
            .find_gated(&gate, method, path)
            .is_some()
    };
    if decision.allowed() && checked() {
        return core_proxy_check(caller, decision);
    }
    decision
}

/// Steps 6 to 9, for a caller whose token is known.
fn decide_known(
    table: &Table,
    gate: &Gate,
    caller: Standing,
    method: &Method,
    path: &str,
) -> Decision {
    if let Some(rule) = table.core_only.find_gated(gate, method, path) {
        let outcome = match caller {
            Standing::HomeAssistant => Outcome::Allowed,
            _ => Outcome::CoreOnly,
        };
        return Decision::new(outcome, Step::CoreOnly, Some(rule));
    }
    match caller {
        Standing::HomeAssistant | Standing::Cli => {
            Decision::new(Outcome::Allowed, Step::Plugins, None)
        }
        Standing::Observer => match table.observer.find_gated(gate, method, path) {
            Some(rule) => Decision::new(Outcome::Allowed, Step::Plugins, Some(rule)),
            None => Decision::new(Outcome::RouteDenied, Step::Plugins, None),
        },
        Standing::Addon {
            hassio_api,
            role,
            auth_api,
            ..
        } => decide_addon(table, gate, (hassio_api, role, auth_api), method, path),
        Standing::Anonymous | Standing::Unknown | Standing::Rejected(_) => {
            Decision::new(Outcome::MissingToken, Step::Caller, None)
        }
    }
}

/// Step 8 (and 9) for an add-on with these `hassio_api`, role and
/// `auth_api`.
fn decide_addon(
    table: &Table,
    gate: &Gate,
    (hassio_api, role, auth_api): (bool, Role, bool),
    method: &Method,
    path: &str,
) -> Decision {
    let granted = table
        .self_service
        .find_gated(gate, method, path)
        .or_else(|| match hassio_api {
            true => table.role(role).find(method, path),
            false => None,
        });
    let Some(rule) = granted else {
        let outcome = match hassio_api {
            true => Outcome::RouteDenied,
            false => Outcome::NoHassioApi,
        };
        let step = match hassio_api {
            true => Step::DefaultDeny,
            false => Step::Addons,
        };
        return Decision::new(outcome, step, None);
    };
    if !auth_api {
        if let Some(needs) = table.needs_auth_api.find_gated(gate, method, path) {
            return Decision::new(Outcome::NeedsAuthApi, Step::Addons, Some(needs));
        }
    }
    Decision::new(Outcome::Allowed, Step::Addons, Some(rule))
}

/// The core proxy's own check: an add-on with `homeassistant_api`, else 401.
fn core_proxy_check(caller: Standing, decision: Decision) -> Decision {
    match caller {
        Standing::Addon {
            homeassistant_api: true,
            ..
        } => decision,
        _ => Decision {
            outcome: Outcome::NeedsHomeassistantApi,
            ..decision
        },
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
