use super::*;

fn table_with_manager_rule(rule: &str) -> String {
    DEFAULT_TABLE.replacen(
        "      - /addons/reload\n",
        &format!("      - /addons/reload\n{rule}"),
        1,
    )
}

fn refused(text: &str) -> ConfigError {
    match Table::from_yaml(text, "table.yaml") {
        Ok(_) => panic!("table should be refused"),
        Err(error) => error,
    }
}

#[test]
fn the_default_table_loads() {
    let table = Table::builtin().expect("default table");
    assert_eq!(table.digest.len(), 16);
    assert!(table.role(Role::Manager).rules().len() > table.role(Role::Default).rules().len());
}

#[test]
fn a_table_granting_the_toggle_to_manager_is_refused_naming_the_rule() {
    let text = table_with_manager_rule("      - /addons/<slug>/security\n");
    let error = refused(&text);
    assert_eq!(error.key, "roles.manager[2]");
    let line = text
        .lines()
        .position(|l| l == "      - /addons/<slug>/security")
        .expect("rule")
        + 1;
    assert_eq!(error.line, line as u64);
    assert!(
        error.reason.contains("protection-mode toggle"),
        "{}",
        error.reason
    );
}

#[test]
fn dropping_the_security_exception_is_refused() {
    let text = DEFAULT_TABLE.replacen(
        "      - path: /addons/<slug>/**\n        except: [/addons/<slug>/security*]\n",
        "      - /addons/<slug>/**\n",
        1,
    );
    assert_ne!(text, DEFAULT_TABLE);
    assert_eq!(refused(&text).key, "roles.manager[2]");
}

#[test]
fn a_toggle_rule_limited_to_get_is_accepted() {
    let text =
        table_with_manager_rule("      - { path: /addons/<slug>/security, methods: [GET] }\n");
    assert!(Table::from_yaml(&text, "table.yaml").is_ok());
}

#[test]
fn a_default_role_including_admin_is_refused() {
    let text = DEFAULT_TABLE.replacen(
        "  default:\n    allow:",
        "  default:\n    includes: [admin]\n    allow:",
        1,
    );
    let error = refused(&text);
    assert!(error.key.starts_with("roles.admin"), "{}", error.key);
    assert!(error.reason.contains("default"), "{}", error.reason);
}

#[test]
fn a_self_service_path_to_the_toggle_is_refused() {
    let text = DEFAULT_TABLE.replacen(
        "  - /addons/self/options/config\n",
        "  - /addons/self/*\n",
        1,
    );
    assert!(refused(&text).key.starts_with("self_service"));
}

#[test]
fn bad_patterns_roles_and_methods_name_their_line() {
    let bad_pattern = table_with_manager_rule("      - addons/x\n");
    assert_eq!(refused(&bad_pattern).key, "roles.manager[2]");
    let bad_method = table_with_manager_rule("      - { path: /x, methods: [FETCH] }\n");
    assert_eq!(refused(&bad_method).key, "roles.manager[2].methods");
    // A value of the wrong type, which the YAML reader refuses before the
    // table's own checks, is named by its path as written in the file.
    let wrong_type = table_with_manager_rule("      - { path: /x, methods: 5 }\n");
    let error = refused(&wrong_type);
    assert_eq!(error.key, "roles.manager.allow[2].methods", "{error}");
    let unknown_role =
        DEFAULT_TABLE.replacen("  admin:\n", "  superuser:\n    allow: []\n  admin:\n", 1);
    assert_eq!(refused(&unknown_role).key, "roles.superuser");
    let cycle = DEFAULT_TABLE
        .replacen(
            "  admin:\n    allow:",
            "  admin:\n    includes: [manager]\n    allow:",
            1,
        )
        .replacen(
            "  manager:\n    includes: [default]",
            "  manager:\n    includes: [admin]",
            1,
        );
    assert!(refused(&cycle).reason.contains("cycle"));
}

#[test]
fn head_is_judged_as_get() {
    let table = Table::builtin().expect("default table");
    let text = table_with_manager_rule("      - { path: /only-get, methods: [GET] }\n");
    let custom = Table::from_yaml(&text, "table.yaml").expect("table");
    let rules = custom.role(Role::Manager);
    assert!(rules.find(&Method::HEAD, "/only-get").is_some());
    assert!(rules.find(&Method::POST, "/only-get").is_none());
    assert!(table
        .role(Role::Default)
        .find(&Method::HEAD, "/os/info")
        .is_some());
}

#[test]
fn exceptions_remove_paths_from_their_rule_only() {
    let table = Table::builtin().expect("default table");
    let manager = table.role(Role::Manager);
    assert!(manager.find(&Method::POST, "/os/datadisk/wipe").is_none());
    assert!(manager.find(&Method::POST, "/os/datadisk/wipe/").is_none());
    assert!(manager.find(&Method::POST, "/os/datadisk/move").is_some());
    assert!(manager
        .find(&Method::GET, "/addons/x/security/info")
        .is_some());
}

#[test]
fn every_load_refusal_has_its_exact_message() {
    let toggle = table_with_manager_rule("      - /addons/<slug>/security\n");
    let line = toggle
        .lines()
        .position(|l| l == "      - /addons/<slug>/security")
        .expect("rule")
        + 1;
    assert_eq!(
        refused(&toggle).to_string(),
        format!("table.yaml:{line}: roles.manager[2]: this rule lets manager reach the protection-mode toggle (POST /addons/a/security); only admin may")
    );

    let unknown_role =
        DEFAULT_TABLE.replacen("  admin:\n", "  superuser:\n    allow: []\n  admin:\n", 1);
    let line = unknown_role
        .lines()
        .position(|l| l == "  superuser:")
        .expect("role")
        + 2;
    assert_eq!(
        refused(&unknown_role).to_string(),
        format!("table.yaml:{line}: roles.superuser: unknown role: the roles are default, homeassistant, backup, manager and admin")
    );

    let bad_method = table_with_manager_rule("      - { path: /x, methods: [FETCH] }\n");
    let line = bad_method
        .lines()
        .position(|l| l.contains("FETCH"))
        .expect("rule")
        + 1;
    assert_eq!(
        refused(&bad_method).to_string(),
        format!("table.yaml:{line}: roles.manager[2].methods: unknown method FETCH: use GET, POST, PUT, PATCH, DELETE or OPTIONS (HEAD is judged as GET)")
    );

    let bad_pattern = table_with_manager_rule("      - addons/x\n");
    let line = bad_pattern
        .lines()
        .position(|l| l == "      - addons/x")
        .expect("rule")
        + 1;
    assert_eq!(
        refused(&bad_pattern).to_string(),
        format!("table.yaml:{line}: roles.manager[2]: a pattern starts with /")
    );

    let version = DEFAULT_TABLE.replacen("version: 1", "version: 2", 1);
    let line = version
        .lines()
        .position(|l| l == "version: 2")
        .expect("version")
        + 1;
    assert_eq!(
        refused(&version).to_string(),
        format!("table.yaml:{line}: version: this gateway reads table version 1")
    );
}

#[test]
fn an_unknown_key_in_a_table_is_named_as_written() {
    // Tables hold no secrets: the key is shown whatever it looks like.
    let text = DEFAULT_TABLE.replacen("roles:", "my_rules: []\nroles:", 1);
    let error = refused(&text);
    assert_eq!(error.key, "my_rules", "{error}");
}
