//! Property tests of the canonical target and the decision: whatever the
//! spelling of a target, an accepted one is decided exactly as its
//! canonical form, and re-spelling it can only refuse it, never change the
//! decision.

use std::sync::{Arc, OnceLock};

use http::{Method, Uri};
use proptest::prelude::*;
use regex::bytes::Regex;

use supervisor_gateway::caller::Caller;
use supervisor_gateway::config::{Addon, Role};
use supervisor_gateway::decision::{decide, Decision};
use supervisor_gateway::table::Table;
use supervisor_gateway::target::{self, Target};

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| Table::builtin().expect("default table"))
}

fn callers() -> Vec<Caller> {
    let addon = |role, hassio_api, homeassistant_api| {
        Caller::Addon(Arc::new(Addon {
            slug: "probe".into(),
            hassio_api,
            role,
            homeassistant_api,
            auth_api: false,
        }))
    };
    let mut callers = vec![
        Caller::Anonymous,
        Caller::Unknown,
        Caller::HomeAssistant,
        Caller::Cli,
        Caller::Observer,
    ];
    callers.push(addon(Role::Default, false, false));
    for role in Role::ALL {
        callers.push(addon(role, true, role == Role::Homeassistant));
    }
    callers
}

/// Pieces that hostile and ordinary targets are made of.
const PIECES: &[&str] = &[
    "/",
    "/",
    "/",
    ".",
    "..",
    "%2e",
    "%2E",
    "%252e",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "%00",
    "%09",
    "%0a",
    "%41",
    "%61",
    "%73",
    "%25",
    "%",
    "%zz",
    "%C3%A9",
    "%ff",
    ";",
    "~",
    "_",
    "-",
    "*",
    "@",
    ":",
    "+",
    "a",
    "x",
    "self",
    "addons",
    "apps",
    "v2",
    "security",
    "SECURITY",
    "core_ssh",
    "os",
    "datadisk",
    "wipe",
    "info",
    "backups",
    "core",
    "api",
    "hassio",
    "hassio_auth",
    "discovery",
    "ingress",
    "sys_options",
    "update",
    "auth",
    "\\",
    "<",
    ">",
    "script",
];

/// Random pieces, or the shape of a route (the toggle's above all) with
/// each part spelled in one of many ways.
fn target_strategy() -> impl Strategy<Value = String> {
    let random = proptest::collection::vec(proptest::sample::select(PIECES), 1..12)
        .prop_map(|pieces| format!("/{}", pieces.concat()));
    const AREA: &[&str] = &[
        "/addons/",
        "/v2/apps/",
        "/addons/self/../",
        "/discovery/",
        "/ADDONS/",
        "/os/",
    ];
    const SLUG: &[&str] = &[
        "core_ssh",
        "self",
        "x",
        "%73elf",
        "core%5fssh",
        "a.b",
        "datadisk",
    ];
    const SEPARATOR: &[&str] = &["/", "//", "/./", "%2f", "/%2e/", "/x/../"];
    const LAST: &[&str] = &[
        "security",
        "SECURITY",
        "%73ecurity",
        "security/",
        "secur%69ty",
        "security%2f",
        "wipe",
        "info",
    ];
    let shaped = (
        proptest::sample::select(AREA),
        proptest::sample::select(SLUG),
        proptest::sample::select(SEPARATOR),
        proptest::sample::select(LAST),
    )
        .prop_map(|(a, b, c, d)| format!("{a}{b}{c}{d}"));
    prop_oneof![random, shaped]
}

fn parse(method: &Method, raw: &str) -> Option<Target> {
    let uri: Uri = raw.parse().ok()?;
    target::parse(method, &uri).ok()
}

fn decisions(method: &Method, path: &str) -> Vec<Decision> {
    callers()
        .iter()
        .map(|caller| decide(table(), caller, method, path))
        .collect()
}

fn same(a: &[Decision], b: &[Decision]) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| x.outcome == y.outcome && x.step == y.step && x.rule == y.rule)
}

fn toggle() -> &'static Regex {
    static TOGGLE: OnceLock<Regex> = OnceLock::new();
    TOGGLE.get_or_init(|| {
        Regex::new(r"(?i)^/(?:addons|v2/apps)/[^/]+/security/?$").expect("toggle regex")
    })
}

/// Percent-encodes the alphanumeric characters at the chosen positions.
fn respell(path: &str, positions: &[usize]) -> String {
    let mut out = String::new();
    for (index, c) in path.chars().enumerate() {
        if c.is_ascii_alphanumeric() && positions.contains(&index) {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn an_accepted_target_is_decided_as_its_canonical_form(raw in target_strategy()) {
        for method in [Method::GET, Method::POST] {
            let Some(target) = parse(&method, &raw) else { continue };
            let canonical = parse(&method, target.forward_path())
                .expect("the canonical form of an accepted target is accepted");
            prop_assert_eq!(&canonical.path, &target.path);
            prop_assert_eq!(canonical.forward_path(), target.forward_path());
            prop_assert!(same(&decisions(&method, &target.path), &decisions(&method, &canonical.path)));
        }
    }

    #[test]
    fn respelling_a_target_never_changes_its_decision(
        raw in target_strategy(),
        positions in proptest::collection::vec(0usize..40, 0..6),
    ) {
        let Some(original) = parse(&Method::POST, &raw) else { return Ok(()) };
        let respelled = respell(original.forward_path(), &positions);
        if let Some(other) = parse(&Method::POST, &respelled) {
            prop_assert_eq!(&other.path, &original.path);
            prop_assert!(same(&decisions(&Method::POST, &original.path), &decisions(&Method::POST, &other.path)));
        }
    }

    #[test]
    fn no_accepted_spelling_of_the_toggle_passes_below_admin(raw in target_strategy()) {
        let Some(target) = parse(&Method::POST, &raw) else { return Ok(()) };
        if toggle().is_match(target.path.as_bytes()) {
            for caller in callers() {
                let privileged = matches!(caller, Caller::HomeAssistant | Caller::Cli)
                    || caller.role() == Some(Role::Admin);
                let decision = decide(table(), &caller, &Method::POST, &target.path);
                prop_assert!(privileged || !decision.allowed(), "{} reached {}", caller.kind(), target.path);
            }
        }
    }
}

#[test]
fn the_generator_reaches_accepted_spellings_of_the_toggle() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = target_strategy();
    let hits = (0..2000)
        .filter_map(|_| strategy.new_tree(&mut runner).ok())
        .filter_map(|tree| parse(&Method::POST, &tree.current()))
        .filter(|target| toggle().is_match(target.path.as_bytes()))
        .count();
    assert!(
        hits >= 20,
        "only {hits} accepted toggle spellings in 2000 targets"
    );
}
