//! `supervisor-gateway advise`: least privilege, measured. For each
//! configured add-on, the smallest role (and which of `hassio_api`,
//! `homeassistant_api` and `auth_api`) under which the table would have
//! allowed every request the audit log shows it was allowed.

use std::collections::BTreeSet;
use std::sync::Arc;

use http::Method;
use serde::Serialize;

use crate::audit::Entry;
use crate::caller::Caller;
use crate::config::{Addon, Config, Role};
use crate::decision::decide;
use crate::table::Table;

/// The advice for one add-on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Advice {
    /// The slug.
    pub slug: String,
    /// What the add-on declares.
    pub declared_role: String,
    /// Distinct allowed requests (method and path) seen for it.
    pub requests: usize,
    /// Whether any request needed `hassio_api` (the role table) at all.
    pub needs_hassio_api: bool,
    /// The smallest role that allows them all, when `hassio_api` is needed.
    pub smallest_role: Option<String>,
    /// Whether any request needed `homeassistant_api`.
    pub needs_homeassistant_api: bool,
    /// Whether any request needed `auth_api`.
    pub needs_auth_api: bool,
    /// Allowed requests that no role allows under the table now (the table
    /// changed since they were logged).
    pub unexplained: Vec<String>,
    /// The advice in words.
    pub summary: String,
}

/// Advice for every configured add-on, from the audit `entries`, under
/// `table`.
pub fn advise(config: &Config, table: &Table, entries: &[Entry]) -> Vec<Advice> {
    config
        .manifests
        .iter()
        .map(|manifest| {
            let declared = manifest.addon();
            let seen: BTreeSet<(String, String)> = entries
                .iter()
                .filter(|entry| entry.caller == "addon" && entry.slug == declared.slug)
                // Allowed by the gateway and not refused by the upstream.
                .filter(|entry| entry.decision == "allowed" && !matches!(entry.status, 401 | 403))
                .map(|entry| (entry.method.clone(), entry.path.clone()))
                .collect();
            advice_for(table, &declared, &seen)
        })
        .collect()
}

fn allows_all(table: &Table, addon: &Addon, seen: &[(Method, String)]) -> bool {
    let caller = Caller::Addon(Arc::new(addon.clone()));
    seen.iter()
        .all(|(method, path)| decide(table, &caller, method, path).allowed())
}

fn advice_for(table: &Table, declared: &Addon, seen: &BTreeSet<(String, String)>) -> Advice {
    let requests: Vec<(Method, String)> = seen
        .iter()
        .filter_map(|(method, path)| {
            Some((Method::from_bytes(method.as_bytes()).ok()?, path.clone()))
        })
        .collect();
    let everything = Addon {
        hassio_api: true,
        role: Role::Admin,
        homeassistant_api: true,
        auth_api: true,
        ..declared.clone()
    };
    let (explained, unexplained): (Vec<_>, Vec<_>) = requests
        .iter()
        .cloned()
        .partition(|request| allows_all(table, &everything, std::slice::from_ref(request)));
    let unexplained: Vec<String> = unexplained
        .iter()
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    let without = |change: fn(&mut Addon)| {
        let mut candidate = everything.clone();
        change(&mut candidate);
        !allows_all(table, &candidate, &explained)
    };
    let needs_homeassistant_api = without(|addon| addon.homeassistant_api = false);
    let needs_auth_api = without(|addon| addon.auth_api = false);
    let needs_hassio_api = without(|addon| addon.hassio_api = false);
    let smallest_role = needs_hassio_api
        .then(|| {
            Role::ALL.into_iter().find(|role| {
                let candidate = Addon {
                    role: *role,
                    homeassistant_api: needs_homeassistant_api,
                    auth_api: needs_auth_api,
                    ..everything.clone()
                };
                allows_all(table, &candidate, &explained)
            })
        })
        .flatten();
    let summary = summary(
        declared,
        &requests,
        needs_hassio_api,
        smallest_role,
        needs_homeassistant_api,
        needs_auth_api,
    );
    Advice {
        slug: declared.slug.clone(),
        declared_role: declared.role.name().to_owned(),
        requests: requests.len(),
        needs_hassio_api,
        smallest_role: smallest_role.map(|role| role.name().to_owned()),
        needs_homeassistant_api,
        needs_auth_api,
        unexplained,
        summary,
    }
}

/// A role's place in the order advice picks from.
fn rank(role: Role) -> usize {
    Role::ALL
        .iter()
        .position(|known| *known == role)
        .unwrap_or(0)
}

fn summary(
    declared: &Addon,
    requests: &[(Method, String)],
    needs_hassio_api: bool,
    smallest: Option<Role>,
    needs_homeassistant_api: bool,
    needs_auth_api: bool,
) -> String {
    if requests.is_empty() {
        return "no allowed request in the log: nothing to go by".to_owned();
    }
    let mut parts = Vec::new();
    match (declared.hassio_api, needs_hassio_api, smallest) {
        (true, false, _) => {
            parts.push("hassio_api is not needed (only self-service paths used)".to_owned())
        }
        (_, true, Some(role)) if role == declared.role => {
            parts.push(format!("keeps {}: its requests need it", role.name()))
        }
        (_, true, Some(role)) if rank(role) > rank(declared.role) || !declared.hassio_api => {
            parts.push(format!(
                "its requests needed {} with hassio_api, more than it declares (did the table or the add-on change since they were logged?)",
                role.name()
            ))
        }
        (_, true, Some(role)) => parts.push(format!(
            "declares {}, {} would do",
            declared.role.name(),
            role.name()
        )),
        _ => {}
    }
    if needs_homeassistant_api && !declared.homeassistant_api {
        parts.push("its requests needed homeassistant_api, which it does not declare".to_owned());
    }
    if needs_auth_api && !declared.auth_api {
        parts.push("its requests needed auth_api, which it does not declare".to_owned());
    }
    if declared.homeassistant_api && !needs_homeassistant_api {
        parts.push("homeassistant_api is not needed".to_owned());
    }
    if declared.auth_api && !needs_auth_api {
        parts.push("auth_api is not needed".to_owned());
    }
    if parts.is_empty() {
        "uses what it declares".to_owned()
    } else {
        parts.join("; ")
    }
}

/// The advice as text, one line per add-on.
pub fn text(advice: &[Advice]) -> String {
    let mut out = String::new();
    for item in advice {
        out.push_str(&format!(
            "{}: {} ({} distinct allowed requests)\n",
            item.slug, item.summary, item.requests
        ));
        for request in &item.unexplained {
            out.push_str(&format!(
                "  not allowed under the current table: {request}\n"
            ));
        }
    }
    out
}

#[cfg(test)]
#[path = "advise_tests.rs"]
mod tests;
