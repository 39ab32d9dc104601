//! `test`: policy test cases (caller, method, target, expected status) run
//! against a table, with the rules they exercise counted.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use http::{Method, Uri};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::caller::Caller;
use crate::config::{from_yaml, read_file, Addon, ConfigError, Role};
use crate::decision::{decide, Decision};
use crate::table::Table;
use crate::target;

/// A case file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    /// A table file, relative to the case file; the one given on the command
    /// line (or the built-in table) otherwise.
    table: Option<String>,
    cases: Vec<Spanned<Case>>,
}

/// One case: who asks, what, and the status expected (200 means allowed).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    caller: String,
    #[serde(default = "yes")]
    hassio_api: bool,
    #[serde(default)]
    homeassistant_api: bool,
    #[serde(default)]
    auth_api: bool,
    method: String,
    target: String,
    status: u16,
}

fn yes() -> bool {
    true
}

/// The outcome of running case files.
#[derive(Debug, Default)]
pub struct Report {
    /// Cases whose status was as expected.
    pub passed: usize,
    /// One line per case that was not.
    pub failures: Vec<String>,
    /// Rules no case exercised, as `section[index] pattern at file:line`.
    pub uncovered: Vec<String>,
    /// How many rules the tables hold.
    pub rules: usize,
}

/// Runs every case of the files against their table (or `default_table`).
pub fn run(files: &[&Path], default_table: Option<&Path>) -> Result<Report, ConfigError> {
    let mut report = Report::default();
    for file in files {
        let (cases, table) = load(file, default_table)?;
        let mut covered = BTreeSet::new();
        for case in &cases {
            run_case(file, case, &table, &mut report, &mut covered)?;
        }
        let rules = all_rules(&table);
        report.rules += rules.len();
        report.uncovered.extend(
            rules
                .into_iter()
                .filter(|(key, _)| !covered.contains(key))
                .map(|(_, text)| text),
        );
    }
    Ok(report)
}

fn load(
    file: &Path,
    default_table: Option<&Path>,
) -> Result<(Vec<Spanned<Case>>, Table), ConfigError> {
    let (text, name) = read_file(file)?;
    let parsed: CaseFile = from_yaml(&text, &name)?;
    let table_path = parsed
        .table
        .map(|table| file.parent().unwrap_or(Path::new(".")).join(table));
    if parsed.cases.is_empty() {
        return Err(ConfigError {
            file: name,
            line: 1,
            key: "cases".into(),
            reason: "a case file needs at least one case".into(),
        });
    }
    let table = Table::load(table_path.as_deref().or(default_table))?;
    Ok((parsed.cases, table))
}

fn run_case(
    file: &Path,
    case: &Spanned<Case>,
    table: &Table,
    report: &mut Report,
    covered: &mut BTreeSet<String>,
) -> Result<(), ConfigError> {
    let line = case.referenced.line();
    let bad = |key: &str, reason: String| ConfigError {
        file: file.display().to_string(),
        line,
        key: key.to_owned(),
        reason,
    };
    let case = &case.value;
    if !(100..=599).contains(&case.status) {
        return Err(bad(
            "status",
            format!("{} is not an HTTP status", case.status),
        ));
    }
    let caller = caller_of(case).ok_or_else(|| {
        bad(
            "caller",
            format!(
                "unknown caller {}: use anonymous, unknown, core, cli, observer or a role name",
                case.caller
            ),
        )
    })?;
    let method = Method::from_bytes(case.method.as_bytes())
        .map_err(|_| bad("method", "not a method".into()))?;
    let uri: Uri = case
        .target
        .parse()
        .map_err(|_| bad("target", "not a request target".into()))?;
    let decision = match target::parse(&method, &uri) {
        Ok(parsed) => {
            mark_filters(table, &method, &parsed.path, covered);
            decide(table, &caller, &method, &parsed.path)
        }
        Err(error) => Decision::bad_target(error),
    };
    if let Some(rule) = &decision.rule {
        covered.insert(format!("{}[{}]", rule.section, rule.index));
    }
    let status = decision.outcome.status().as_u16();
    if status == case.status {
        report.passed += 1;
    } else {
        let rule = decision
            .rule
            .as_ref()
            .map_or("-".to_owned(), |rule| rule.to_string());
        report.failures.push(format!(
            "{}:{line}: {} {} {}: expected {}, got {status} (step {}, rule {rule})",
            file.display(),
            case.caller,
            case.method,
            case.target,
            case.status,
            decision.step
        ));
    }
    Ok(())
}

/// Rules of the filter sections settle nothing themselves; a case counts
/// for them when it passes through them.
fn mark_filters(table: &Table, method: &Method, path: &str, covered: &mut BTreeSet<String>) {
    for set in [&table.core_proxy_checked, &table.needs_auth_api] {
        if let Some(rule) = set.find(method, path) {
            covered.insert(format!("{}[{}]", rule.section, rule.index));
        }
    }
}

fn caller_of(case: &Case) -> Option<Caller> {
    let caller = match case.caller.as_str() {
        "anonymous" => Caller::Anonymous,
        "unknown" => Caller::Unknown,
        "core" => Caller::HomeAssistant,
        "cli" => Caller::Cli,
        "observer" => Caller::Observer,
        role => Caller::Addon(Arc::new(Addon {
            slug: "case".into(),
            hassio_api: case.hassio_api,
            role: Role::from_name(role)?,
            homeassistant_api: case.homeassistant_api,
            auth_api: case.auth_api,
        })),
    };
    Some(caller)
}

/// Every rule of the table once: (key, description).
fn all_rules(table: &Table) -> Vec<(String, String)> {
    table
        .sections()
        .into_iter()
        .flat_map(|(owner, set)| {
            set.rules()
                .iter()
                .filter(move |rule| rule.section == owner)
                .map(|rule| {
                    (
                        format!("{}[{}]", rule.section, rule.index),
                        rule.to_string(),
                    )
                })
        })
        .collect()
}
