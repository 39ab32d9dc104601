//! The protection-mode invariant: only admin (and the core and CLI tokens,
//! which no table governs) may reach `POST /addons/<slug>/security`.
//!
//! The check is exact, not a sample of paths: each granting rule is turned
//! into a finite automaton and intersected with the toggle's own language,
//! minus the rule's exceptions. A non-empty intersection refuses the table
//! and names the rule with a path it would let through.

use std::sync::OnceLock;

use http::Method;

use crate::automata::{self, Dfa, Term};
use crate::config::{ConfigError, Role};
use crate::table::{RuleSet, Table};

/// Every spelling of the toggle the upstream could act on, as a canonical
/// path: `self` is a slug, one trailing slash counts, and so does any ASCII
/// case, in case the upstream's router ignores it. (`;` never reaches a
/// decision: step 2 refuses it.)
const TOGGLE: &str = r"(?s-u)(?i)^/(?:addons|v2/apps)/[A-Za-z0-9._-]+/security/?$";

/// Refuses a table in which any caller but admin reaches the toggle.
pub fn check(table: &Table) -> Result<(), ConfigError> {
    let mut granting: Vec<(&str, &RuleSet)> = vec![
        ("anyone without a token", &table.public),
        ("add-ons with homeassistant_api", &table.core_proxy_public),
        ("the observer", &table.observer),
        ("every add-on", &table.self_service),
    ];
    for role in Role::ALL.into_iter().filter(|role| *role != Role::Admin) {
        granting.push((role.name(), table.role(role)));
    }
    for (who, rules) in granting {
        check_rules(who, rules)?;
    }
    Ok(())
}

fn check_rules(who: &str, rules: &RuleSet) -> Result<(), ConfigError> {
    for (rule, (path, exceptions)) in rules.rules().iter().zip(&rules.sources) {
        if !rule.covers(&Method::POST) {
            continue;
        }
        let outcome = toggle_witness(path, exceptions);
        let reason = match outcome {
            Ok(None) => continue,
            Ok(Some(witness)) => format!(
                "this rule lets {who} reach the protection-mode toggle (POST {witness}); only admin may"
            ),
            Err(reason) => reason,
        };
        return Err(rule.error(reason));
    }
    Ok(())
}

/// A toggle path that `path` matches and no exception does, if one exists.
fn toggle_witness(path: &str, exceptions: &[String]) -> Result<Option<String>, String> {
    let allow = Dfa::new(&[path])?;
    let mut terms: Vec<Term<'_>> = vec![(toggle_dfa(), true), (&allow, true)];
    let except = if exceptions.is_empty() {
        None
    } else {
        Some(Dfa::new(exceptions)?)
    };
    if let Some(except) = &except {
        terms.push((except, false));
    }
    let found = automata::find(&terms, &automata::all_bytes()).map_err(|_| {
        "this rule is too complex to prove it keeps the protection-mode toggle closed".to_owned()
    })?;
    Ok(found.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

fn toggle_dfa() -> &'static Dfa {
    static TOGGLE_DFA: OnceLock<Dfa> = OnceLock::new();
    TOGGLE_DFA.get_or_init(|| Dfa::new(&[TOGGLE]).expect("the toggle pattern is fixed and valid"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::{to_regex, PatternKind};

    fn witness_for(pattern: &str, exceptions: &[&str]) -> Option<String> {
        let path = to_regex(pattern, PatternKind::Grant).expect("valid pattern");
        let exceptions: Vec<String> = exceptions
            .iter()
            .map(|e| to_regex(e, PatternKind::Deny).expect("valid exception"))
            .collect();
        toggle_witness(&path, &exceptions).expect("small automata")
    }

    #[test]
    fn a_rule_over_every_addon_path_reaches_the_toggle() {
        let found = witness_for("/addons/<slug>/**", &[]).expect("reaches the toggle");
        assert!(
            found.starts_with("/addons/") && found.contains("/security"),
            "{found}"
        );
    }

    #[test]
    fn an_exception_for_security_closes_the_toggle() {
        assert_eq!(
            witness_for("/addons/<slug>/**", &["/addons/<slug>/security*"]),
            None
        );
    }

    #[test]
    fn an_exception_for_one_slug_leaves_the_others_open() {
        let found = witness_for("/addons/<slug>/**", &["/addons/core_ssh/security*"]);
        assert!(found.is_some_and(|path| !path.contains("core_ssh")));
    }

    #[test]
    fn prefix_and_wildcard_spellings_are_caught() {
        for pattern in [
            "/addons/co*",
            "/*",
            "/**/security",
            "/v2/apps/<name>/sec*",
            "/addons/x/SECURITY",
        ] {
            assert!(witness_for(pattern, &[]).is_some(), "{pattern}");
        }
    }

    #[test]
    fn unrelated_rules_do_not_reach_the_toggle() {
        for pattern in [
            "/backups*",
            "/**/info",
            "/addons/<slug>/{logo,icon}",
            "/addons",
        ] {
            assert_eq!(witness_for(pattern, &[]), None, "{pattern}");
        }
    }
}
