//! The protection-mode invariant: only admin (and the core and CLI tokens,
//! which no table governs) may reach `POST /addons/<slug>/security`.
//!
//! The check is exact, not a sample of paths: each granting rule is turned
//! into a finite automaton and intersected with the toggle's own language,
//! minus the rule's exceptions. A non-empty intersection refuses the table
//! and names the rule with a path it would let through.

use std::collections::{HashMap, VecDeque};
use std::sync::OnceLock;

use http::Method;
use regex_automata::dfa::{dense, Automaton};
use regex_automata::util::primitives::StateID;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind};

use crate::config::{ConfigError, Role};
use crate::table::{Rule, RuleSet, Table};

/// Every spelling of the toggle the upstream could act on, as a canonical
/// path: `self` is a slug, one trailing slash counts, and so does any ASCII
/// case, in case the upstream's router ignores it. (`;` never reaches a
/// decision: step 2 refuses it.)
const TOGGLE: &str = r"(?s-u)(?i)^/(?:addons|v2/apps)/[A-Za-z0-9._-]+/security/?$";

/// How many product states the search may visit before it gives up on a
/// rule as too complex to prove safe (and refuses it).
const MAX_STATES: usize = 200_000;

type Dfa = dense::DFA<Vec<u32>>;

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
        return Err(rule_error(rule, reason));
    }
    Ok(())
}

fn rule_error(rule: &Rule, reason: String) -> ConfigError {
    ConfigError {
        file: rule.file.to_string(),
        line: rule.line,
        key: format!("{}[{}]", rule.section, rule.index),
        reason,
    }
}

/// A toggle path that `path` matches and no exception does, if one exists.
fn toggle_witness(path: &str, exceptions: &[String]) -> Result<Option<String>, String> {
    let toggle = toggle_dfa();
    let allow = build(&[path])?;
    let except = if exceptions.is_empty() {
        None
    } else {
        Some(build(exceptions)?)
    };
    Search {
        toggle,
        allow: &allow,
        except: except.as_ref(),
    }
    .run()
}

fn toggle_dfa() -> &'static Dfa {
    static TOGGLE_DFA: OnceLock<Dfa> = OnceLock::new();
    TOGGLE_DFA.get_or_init(|| build(&[TOGGLE]).expect("the toggle pattern is fixed and valid"))
}

fn build<P: AsRef<str>>(patterns: &[P]) -> Result<Dfa, String> {
    dense::Builder::new()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .configure(dense::Config::new().match_kind(MatchKind::All))
        .build_many(patterns)
        .map_err(|error| {
            format!("cannot check this rule against the protection invariant: {error}")
        })
}

/// A breadth-first search of the product of three automata: the toggle, the
/// rule's path, and (negated) its exceptions.
struct Search<'a> {
    toggle: &'a Dfa,
    allow: &'a Dfa,
    except: Option<&'a Dfa>,
}

type State = (StateID, StateID, Option<StateID>);

impl Search<'_> {
    fn run(&self) -> Result<Option<String>, String> {
        let start = self.start()?;
        let mut parents: HashMap<State, Option<(State, u8)>> = HashMap::from([(start, None)]);
        let mut queue = VecDeque::from([start]);
        while let Some(state) = queue.pop_front() {
            if self.accepts(state) {
                return Ok(Some(witness(&parents, state)));
            }
            for byte in byte_order() {
                let Some(next) = self.step(state, byte) else {
                    continue;
                };
                if let std::collections::hash_map::Entry::Vacant(slot) = parents.entry(next) {
                    slot.insert(Some((state, byte)));
                    queue.push_back(next);
                }
            }
            if parents.len() > MAX_STATES {
                return Err(
                    "this rule is too complex to prove it keeps the protection-mode toggle closed"
                        .into(),
                );
            }
        }
        Ok(None)
    }

    fn start(&self) -> Result<State, String> {
        let input = Input::new("").anchored(Anchored::Yes);
        let start = |dfa: &Dfa| dfa.start_state_forward(&input).map_err(|e| e.to_string());
        let except = match self.except {
            Some(dfa) => Some(start(dfa)?),
            None => None,
        };
        Ok((start(self.toggle)?, start(self.allow)?, except))
    }

    /// The next product state, or `None` where the toggle or the rule can no
    /// longer match.
    fn step(&self, (toggle, allow, except): State, byte: u8) -> Option<State> {
        let toggle = self.toggle.next_state(toggle, byte);
        let allow = self.allow.next_state(allow, byte);
        if self.toggle.is_dead_state(toggle) || self.allow.is_dead_state(allow) {
            return None;
        }
        let except = self
            .except
            .zip(except)
            .map(|(dfa, state)| dfa.next_state(state, byte));
        Some((toggle, allow, except))
    }

    fn accepts(&self, (toggle, allow, except): State) -> bool {
        let ends_in_match =
            |dfa: &Dfa, state: StateID| dfa.is_match_state(dfa.next_eoi_state(state));
        let excepted = self
            .except
            .zip(except)
            .is_some_and(|(dfa, state)| ends_in_match(dfa, state));
        ends_in_match(self.toggle, toggle) && ends_in_match(self.allow, allow) && !excepted
    }
}

/// Every byte, lower-case letters first, so that witnesses read naturally.
fn byte_order() -> impl Iterator<Item = u8> {
    (b'a'..=b'z').chain((0..=255u8).filter(|b| !b.is_ascii_lowercase()))
}

fn witness(parents: &HashMap<State, Option<(State, u8)>>, mut state: State) -> String {
    let mut bytes = Vec::new();
    while let Some(Some((parent, byte))) = parents.get(&state) {
        bytes.push(*byte);
        state = *parent;
    }
    bytes.reverse();
    String::from_utf8_lossy(&bytes).into_owned()
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
