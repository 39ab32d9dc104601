use std::sync::Arc;

use super::*;
use crate::config::Role;
use crate::decision::{Outcome, Step};
use crate::signed::Rejection;
use crate::table::DEFAULT_TABLE;

/// Every path the default table's own cases name (plain paths only).
fn case_paths() -> Vec<String> {
    let cases = include_str!("../config/default-table.tests.yaml");
    let mut paths: Vec<String> = cases
        .split("target: ")
        .skip(1)
        .filter_map(|rest| rest.split([',', ' ', '}']).next())
        .filter(|path| path.starts_with('/') && !path.contains(['?', '%']))
        .map(str::to_owned)
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

fn standings() -> Vec<Standing> {
    let mut all = vec![
        Standing::Anonymous,
        Standing::Unknown,
        Standing::HomeAssistant,
        Standing::Cli,
        Standing::Observer,
        Standing::Rejected(Rejection::Revoked),
    ];
    for role in [
        Role::Default,
        Role::Homeassistant,
        Role::Backup,
        Role::Manager,
        Role::Admin,
    ] {
        for flags in 0..8 {
            all.push(Standing::Addon {
                hassio_api: flags & 1 != 0,
                role,
                homeassistant_api: flags & 2 != 0,
                auth_api: flags & 4 != 0,
            });
        }
    }
    all
}

/// A decision as it can be compared: outcome, step and rule.
fn seen(decision: &Decision) -> (Outcome, Step, Option<String>) {
    (
        decision.outcome.clone(),
        decision.step,
        decision.rule.as_ref().map(|rule| rule.to_string()),
    )
}

fn kept_count() -> usize {
    KEPT.with(|kept| kept.borrow().decisions.len())
}

/// The default table and a rule for GET alone, since none of its own rules
/// names a method.
fn table_with_a_get_rule() -> Table {
    let text = DEFAULT_TABLE.replacen(
        "      - /addons/reload\n",
        "      - /addons/reload\n      - { path: /gateway/probe, methods: [GET] }\n",
        1,
    );
    Table::from_yaml(&text, "table.yaml").expect("table")
}

#[test]
fn a_kept_decision_is_the_one_the_table_gives_for_every_caller_method_and_path() {
    let table = table_with_a_get_rule();
    let mut paths = case_paths();
    assert!(paths.len() > 60, "{} paths", paths.len());
    paths.push("/gateway/probe".into());
    let methods = [Method::GET, Method::POST, Method::DELETE, Method::HEAD];
    // Each question asked twice, all of them before any is asked again:
    // the second round is answered from what the first kept, so a key that
    // left out the caller, the method or the path would give one question
    // another's answer.
    let (mut by_caller, mut by_method) = (0, 0);
    for round in 0..2 {
        for path in &paths {
            let mut first_caller = None;
            for &caller in &standings() {
                let mut first_method = None;
                for method in &methods {
                    let fresh = seen(&decide_for(&table, caller, method, path));
                    let kept = seen(&decide_kept(&table, caller, method, path));
                    assert_eq!(kept, fresh, "round {round}: {caller:?} {method} {path}");
                    match &first_method {
                        None => first_method = Some(fresh.clone()),
                        Some(first) => by_method += usize::from(*first != fresh),
                    }
                    if *method == Method::GET {
                        match &first_caller {
                            None => first_caller = Some(fresh),
                            Some(first) => by_caller += usize::from(*first != fresh),
                        }
                    }
                }
            }
        }
        assert!(kept_count() <= MOST_KEPT);
    }
    // Questions that differ in one of them do get different answers, so the
    // test can tell.
    assert!(by_caller > 1000 && by_method > 0, "{by_caller} {by_method}");
}

#[test]
fn a_second_asking_is_answered_from_what_was_kept() {
    let table = Table::builtin().expect("default table");
    let manager = Standing::Addon {
        hassio_api: true,
        role: Role::Manager,
        homeassistant_api: false,
        auth_api: false,
    };
    let first = decide_kept(&table, manager, &Method::GET, "/os/info");
    assert_eq!(kept_count(), 1);
    let again = decide_kept(&table, manager, &Method::GET, "/os/info");
    assert_eq!(kept_count(), 1);
    assert!(first.allowed() && again.allowed());
    let (Some(first), Some(again)) = (&first.rule, &again.rule) else {
        panic!("allowed by a rule");
    };
    // The kept decision itself, not a second search that found the rule.
    assert!(Arc::ptr_eq(first, again));
    decide_kept(&table, manager, &Method::POST, "/os/info");
    assert_eq!(kept_count(), 2);
}

#[test]
fn a_decision_of_one_table_is_never_given_under_another() {
    let plain = Table::builtin().expect("default table");
    let wider = Table::from_yaml(
        &DEFAULT_TABLE.replacen(
            "      - /addons/reload\n",
            "      - /addons/reload\n      - /gateway/probe\n",
            1,
        ),
        "wider.yaml",
    )
    .expect("wider table");
    let manager = Standing::Addon {
        hassio_api: true,
        role: Role::Manager,
        homeassistant_api: false,
        auth_api: false,
    };
    let ask = |table: &Table| decide_kept(table, manager, &Method::GET, "/gateway/probe").allowed();
    assert!(!ask(&plain));
    assert!(ask(&wider));
    assert!(!ask(&plain));
    // The same text loaded again is another table: a reload of an unchanged
    // file starts afresh too.
    let reloaded = Table::builtin().expect("default table");
    assert_ne!(reloaded.id(), plain.id());
    assert!(!ask(&reloaded));
    assert_eq!(kept_count(), 1);
}

#[test]
fn a_thread_keeps_at_most_so_many_decisions_and_none_for_long_paths() {
    let table = Table::builtin().expect("default table");
    for n in 0..MOST_KEPT + 10 {
        let path = format!("/addons/addon_{n}/info");
        decide_kept(&table, Standing::Anonymous, &Method::GET, &path);
        assert!(kept_count() <= MOST_KEPT);
    }
    // Full, it forgot all and kept what came after.
    assert_eq!(kept_count(), 10);
    let long = format!("/addons/{}/info", "a".repeat(LONGEST_PATH));
    let decision = decide_kept(&table, Standing::Anonymous, &Method::GET, &long);
    assert_eq!(decision.outcome, Outcome::MissingToken);
    assert_eq!(kept_count(), 10);
}
