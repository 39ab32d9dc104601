use super::*;
use crate::table::DEFAULT_TABLE;

fn lint_text(text: &str) -> Vec<String> {
    let table = Table::from_yaml(text, "table.yaml").expect("the table loads");
    lint(&table).iter().map(ToString::to_string).collect()
}

fn with_manager_rules(rules: &str) -> String {
    DEFAULT_TABLE.replacen(
        "      - /addons/reload\n",
        &format!("      - /addons/reload\n{rules}"),
        1,
    )
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|line| line == needle)
        .expect("rule in the table")
        + 1
}

#[test]
fn the_default_table_is_clean() {
    assert_eq!(lint_text(DEFAULT_TABLE), Vec::<String>::new());
}

#[test]
fn a_pattern_that_matches_no_accepted_path_is_reported() {
    let text = with_manager_rules("      - /addons//reload\n");
    let line = line_of(&text, "      - /addons//reload");
    assert_eq!(
        lint_text(&text),
        [format!(
            "table.yaml:{line}: roles.manager[2]: this pattern matches no path the gateway accepts"
        )]
    );
}

#[test]
fn exceptions_that_remove_everything_are_reported() {
    let text = with_manager_rules("      - { path: /mounts/<name>, except: [/mounts/*] }\n");
    let line = line_of(
        &text,
        "      - { path: /mounts/<name>, except: [/mounts/*] }",
    );
    assert_eq!(
        lint_text(&text),
        [format!("table.yaml:{line}: roles.manager[2]: the exceptions of /mounts/<name> remove every path it matches")]
    );
}

#[test]
fn an_exception_that_removes_nothing_is_reported() {
    let text = with_manager_rules("      - { path: /jobs/<name>, except: [/backups/x] }\n");
    let line = line_of(
        &text,
        "      - { path: /jobs/<name>, except: [/backups/x] }",
    );
    assert_eq!(
        lint_text(&text),
        [format!("table.yaml:{line}: roles.manager[2]: exception /backups/x removes nothing from this rule")]
    );
}

#[test]
fn a_rule_shadowed_by_an_earlier_one_is_reported() {
    let text = with_manager_rules("      - /audio/**\n      - /audio/volume/<name>\n");
    let first = line_of(&text, "      - /audio/**");
    let second = first + 1;
    let problems = lint_text(&text);
    assert!(
        problems.contains(&format!(
            "table.yaml:{second}: roles.manager[3]: shadowed by roles.manager[2] /audio/** (line {first}): it already settles every path this rule matches"
        )),
        "{problems:?}"
    );
}

#[test]
fn a_rule_for_more_methods_is_not_shadowed_by_a_narrower_one() {
    let text = with_manager_rules("      - { path: /jobs/x, methods: [GET] }\n      - /jobs/x\n");
    assert!(lint_text(&text)
        .iter()
        .all(|p| !p.contains("shadowed by roles.manager[2]")));
}

#[test]
fn an_exception_of_the_earlier_rule_keeps_a_later_rule_alive() {
    let text =
        with_manager_rules("      - { path: /jobs/**, except: [/jobs/x] }\n      - /jobs/x\n");
    assert!(
        lint_text(&text)
            .iter()
            .all(|p| !p.contains("roles.manager[3]")),
        "{:?}",
        lint_text(&text)
    );
}
