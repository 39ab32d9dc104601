//! The binary itself: `serve` with good and bad files, `check`, the demo's
//! printed curl lines, and a trace-level log that must hold no token.

use supervisor_gateway::demo;

use crate::helpers::*;
use crate::matrix::{every_row, request_for, Via};

/// The test configuration written into `dir`, by path (nothing listens on
/// its upstream: these commands never forward).
fn test_config_file(dir: &std::path::Path) -> String {
    let upstream = "127.0.0.1:9".parse().expect("addr");
    let path = write(dir, "gateway.yaml", &test_config_yaml(upstream));
    path.to_str().expect("utf-8 path").to_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn serve_refuses_an_unusable_file_the_config_names_by_the_config_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("a-folder")).expect("dir");
    for (key, line) in [
        ("state_file", 4),
        ("audit_log", 4),
        ("table", 4),
        ("shadow_table", 4),
    ] {
        let config = format!(
            "upstream: http://127.0.0.1:9\nlisten: 127.0.0.1:0\nadmin_listen: none\n{key}: a-folder\n"
        );
        let path = write(dir.path(), "gw.yaml", &config);
        let output = run_bin(&["serve", "--config", path.to_str().expect("utf-8 path")]);
        assert_eq!(output.status.code(), Some(2));
        let stderr = text(&output.stderr);
        let said = format!("config error: {}:{line}: {key}: ", path.display());
        assert!(stderr.contains(&said), "{stderr}");
    }
}

#[tokio::test]
async fn the_table_commands_say_an_unreadable_table_as_serve_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("a-folder")).expect("dir");
    let cases = write(
        dir.path(),
        "cases.yaml",
        "cases:\n  - { caller: anonymous, method: GET, target: /supervisor/ping, status: 200 }\n",
    );
    let cases = cases.to_str().expect("utf-8 path");
    for key in ["table", "shadow_table"] {
        let config = format!("upstream: http://127.0.0.1:9\nadmin_listen: none\n{key}: a-folder\n");
        let path = write(dir.path(), "gw.yaml", &config);
        let path = path.to_str().expect("utf-8 path");
        let mut commands = vec![vec!["validate", "--config", path]];
        // (`routes` and `test` use the table only.)
        if key == "table" {
            commands.push(vec!["routes", "--config", path]);
            commands.push(vec!["test", "--config", path, cases]);
        }
        for command in commands {
            let output = run_bin(&command);
            assert_eq!(output.status.code(), Some(2), "{command:?}");
            let stderr = text(&output.stderr);
            let said = format!("config error: {path}:3: {key}: ");
            assert!(stderr.contains(&said), "{command:?}: {stderr}");
        }
    }
}

#[tokio::test]
async fn serve_refuses_a_bad_config_with_file_key_and_line_and_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = "upstream: http://127.0.0.1:9\naddons:\n  - slug: probe\n    token: s3cr3t-token-value\n    hassio_role: superuser\n";
    let path = write(dir.path(), "bad.yaml", bad);
    let output = run_bin(&["serve", "--config", path.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:5: addons[0].hassio_role:", path.display())),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cr3t") && !stderr.contains("superuser"),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_refuses_a_table_that_opens_the_toggle_to_manager() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table = default_table_adding("      - /addons/<slug>/security\n");
    write(dir.path(), "table.yaml", &table);
    let config = "upstream: http://127.0.0.1:9\ntable: table.yaml\n";
    let path = write(dir.path(), "gateway.yaml", config);
    let output = run_bin(&["serve", "--config", path.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    let table_path = dir.path().join("table.yaml");
    let line = table
        .lines()
        .position(|l| l == "      - /addons/<slug>/security")
        .expect("added rule")
        + 1;
    let expected = format!("{}:{line}: roles.manager[2]:", table_path.display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("protection-mode toggle"), "{stderr}");
}

#[tokio::test]
async fn check_explains_the_decision_and_exits_by_outcome() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = &test_config_file(dir.path());

    let denied = run_bin(&[
        "check",
        "--config",
        config,
        "--addon",
        "local_manager",
        "POST",
        "/addons/core_ssh/security",
    ]);
    assert_eq!(denied.status.code(), Some(1));
    let out = text(&denied.stdout);
    assert!(out.contains("denied: 403"), "{out}");
    assert!(out.contains("addon local_manager (role manager)"), "{out}");
    assert!(out.contains("step:     9 (default-deny)"), "{out}");

    let allowed = run_bin(&[
        "check", "--config", config, "--token", TOK_BACKUP, "GET", "/backups",
    ]);
    assert_eq!(allowed.status.code(), Some(0));
    let out = text(&allowed.stdout);
    assert!(out.contains("step:     8 (add-ons)"), "{out}");
    assert!(
        out.contains("roles.backup[0] /backups* at config/default-table.yaml (built in):109"),
        "{out}"
    );
    assert!(!out.contains(TOK_BACKUP), "{out}");

    let public = run_bin(&[
        "check",
        "--config",
        config,
        "--caller",
        "anonymous",
        "GET",
        "/supervisor/ping",
    ]);
    assert_eq!(public.status.code(), Some(0));
    assert!(text(&public.stdout).contains("step:     4 (public)"));

    let hostile = run_bin(&[
        "check",
        "--config",
        config,
        "--caller",
        "cli",
        "GET",
        "/discovery/.%252e/os/info",
    ]);
    assert_eq!(hostile.status.code(), Some(1));
    assert!(text(&hostile.stdout).contains("step:     1 (hostile-input)"));

    let unknown = run_bin(&[
        "check", "--config", config, "--addon", "nobody", "GET", "/info",
    ]);
    assert_eq!(unknown.status.code(), Some(2));
}

/// Splits a curl line printed by the demo into words, honouring quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, ' ') => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (_, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The raw request a curl command line would send (the flags the demo uses).
fn curl_request(words: &[String]) -> (String, Vec<u8>) {
    let (mut method, mut url, mut headers, mut body) =
        ("GET".to_owned(), String::new(), Vec::new(), None);
    let mut args = words.iter().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-s" => {}
            "-X" => method = args.next().expect("method").clone(),
            "-H" => headers.push(args.next().expect("header").clone()),
            "-d" => body = Some(args.next().expect("body").clone()),
            other => url = other.to_owned(),
        }
    }
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_at(rest.find('/').expect("path"));
    let body = body.unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for header in headers {
        request.push_str(&format!("{header}\r\n"));
    }
    request.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    (host.to_owned(), request.into_bytes())
}

#[tokio::test]
async fn the_demos_printed_curl_lines_behave_as_printed() {
    let started = demo::start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("demo starts");
    let addr = started.listener.local_addr().expect("addr");
    let banner = demo::banner(addr, started.mock.addr());
    tokio::spawn(supervisor_gateway::server::serve(
        started.listener,
        started.gateway,
        std::future::pending(),
    ));

    let lines: Vec<&str> = banner.lines().map(str::trim).collect();
    let mut checked = 0;
    for pair in lines.windows(2) {
        let (comment, command) = (pair[0], pair[1]);
        let Some(code) = comment.split_once('(').and_then(|(_, rest)| rest.get(..3)) else {
            continue;
        };
        if !command.starts_with("curl ") {
            continue;
        }
        let expected: u16 = code.parse().expect("status in the comment");
        let (host, request) = curl_request(&shell_words(command));
        let response = send_raw(host.parse().expect("host is the demo address"), &request).await;
        assert_eq!(
            response.status,
            expected,
            "{command}\n{}",
            text(&response.body)
        );
        if comment.contains("\"protected\": false") {
            assert_eq!(response.json()["data"]["protected"], false, "{command}");
        }
        checked += 1;
    }
    assert!(
        checked >= 7,
        "only {checked} curl lines found in:\n{banner}"
    );
    started.mock.stop().await;
}

#[tokio::test]
async fn no_token_reaches_the_log_at_trace_level_over_the_whole_matrix() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(dir.path(), "gateway.yaml", &test_config_yaml(mock.addr()));
    let served = spawn_serve(&path, "trace");

    let mut sent = 0;
    for via in [Via::Supervisor, Via::Hassio, Via::Bearer] {
        for mut row in every_row() {
            row.via = via;
            send_raw(served.addr, &request_for(&row).to_bytes()).await;
            sent += 1;
        }
    }
    for token in ALL_TOKENS.iter().chain([&TOK_UNKNOWN]) {
        let in_query = format!("/core/api/states?token={token}");
        let forms = [
            RawRequest::new("GET", &in_query).header("Authorization", format!("Bearer {token}")),
            RawRequest::new("GET", "/info")
                .token(token)
                .header("X-Hassio-Key", TOK_UNKNOWN),
            RawRequest::new("GET", "/info").header("Authorization", format!("Basic {token}")),
        ];
        for request in forms {
            served.send(&request).await;
            sent += 1;
        }
    }
    let (code, log) = served.stop();
    assert_eq!(code, Some(0), "SIGTERM ends serve cleanly");
    assert!(
        log.matches("decision").count() >= sent,
        "one event per decision:\n{log}"
    );
    for token in ALL_TOKENS.iter().chain([&TOK_UNKNOWN]) {
        assert!(
            !log.contains(&token[..12]),
            "a token prefix appears in the log"
        );
    }
    mock.stop().await;
}

#[tokio::test]
async fn validate_reports_every_problem_with_file_line_and_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table = default_table_adding(
        "      - /audio/**\n      - { path: /jobs/<name>, except: [/backups/x] }\n",
    );
    let path = write(dir.path(), "table.yaml", &table);
    let output = run_bin(&["validate", "--table", path.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    let line = |needle: &str| table.lines().position(|l| l == needle).expect("rule") + 1;
    let (audio, jobs) = (
        line("      - /audio/**"),
        line("      - { path: /jobs/<name>, except: [/backups/x] }"),
    );
    let file = path.display();
    assert!(
        stderr.contains(&format!(
            "{file}:{jobs}: roles.manager[3]: exception /backups/x removes nothing from this rule"
        )),
        "{stderr}"
    );
    let shadowed = table
        .lines()
        .skip(audio)
        .position(|l| l == "      - /audio/**")
        .expect("the original rule")
        + audio
        + 1;
    assert!(
        stderr.contains(&format!("{file}:{shadowed}: roles.manager[")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "shadowed by roles.manager[2] /audio/** (line {audio})"
        )),
        "{stderr}"
    );

    let clean = run_bin(&["validate", "--table", "config/default-table.yaml"]);
    assert_eq!(clean.status.code(), Some(0));
    assert!(text(&clean.stdout).contains("toggle is closed"));

    // With --config, the shadow table is checked too, as serve would.
    let config = format!(
        "{}shadow_table: table.yaml\n",
        test_config_yaml("127.0.0.1:9".parse().expect("addr"))
    );
    let config = write(dir.path(), "gateway.yaml", &config);
    let output = run_bin(&["validate", "--config", config.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stdout));
    assert!(text(&output.stderr).contains("removes nothing"));
}

#[tokio::test]
async fn test_with_a_config_refuses_a_table_serve_would_refuse() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table = default_table_adding("      - { path: /jobs/<name>, except: [/backups/x] }\n");
    write(dir.path(), "table.yaml", &table);
    let config = format!(
        "{}table: table.yaml\n",
        test_config_yaml("127.0.0.1:9".parse().expect("addr"))
    );
    let config = write(dir.path(), "gateway.yaml", &config);
    let cases = write(
        dir.path(),
        "cases.yaml",
        "cases:\n  - { caller: anonymous, method: GET, target: /supervisor/ping, status: 200 }\n",
    );
    let output = run_bin(&[
        "test",
        "--config",
        config.to_str().expect("utf-8 path"),
        cases.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stdout));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("table error:") && stderr.contains("removes nothing"),
        "{stderr}"
    );
    assert!(!text(&output.stdout).contains("passed"), "no case ran");
}

#[tokio::test]
async fn routes_prints_the_matrix_in_three_formats() {
    let text_out = run_bin(&["routes", "--table", "config/default-table.yaml"]);
    assert_eq!(text_out.status.code(), Some(0));
    let stdout = text(&text_out.stdout);
    let toggle = stdout
        .lines()
        .find(|line| line.starts_with("POST /addons/core_ssh/security "))
        .expect("toggle row");
    let cells: Vec<&str> = toggle.split_whitespace().skip(2).collect();
    assert_eq!(
        cells,
        ["401", "403", "yes", "yes", "403", "403", "403", "403", "yes"],
        "{toggle}"
    );

    let json = run_bin(&[
        "routes",
        "--table",
        "config/default-table.yaml",
        "--format",
        "json",
    ]);
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    let wipe = row_where(&parsed, "path", "/os/datadisk/wipe");
    assert_eq!(wipe["status"]["manager"], 403);
    assert_eq!(wipe["status"]["admin"], 200);

    let markdown = run_bin(&[
        "routes",
        "--table",
        "config/default-table.yaml",
        "--format",
        "markdown",
    ]);
    assert!(text(&markdown.stdout).starts_with("| route | anonymous |"));
}

#[tokio::test]
async fn test_runs_cases_and_reports_failures_and_coverage() {
    let shipped = run_bin(&[
        "test",
        "--require-coverage",
        "config/default-table.tests.yaml",
    ]);
    assert_eq!(shipped.status.code(), Some(0), "{}", text(&shipped.stdout));
    assert!(text(&shipped.stdout).ends_with(" passed, 0 failed\n"));

    let dir = tempfile::tempdir().expect("temp dir");
    let cases = "cases:\n  - { caller: manager, method: POST, target: /addons/x/security, status: 200 }\n  - { caller: backup, method: GET, target: /backups, status: 200 }\n";
    let path = write(dir.path(), "cases.yaml", cases);
    let output = run_bin(&["test", path.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(&format!(
            "FAIL {}:2: manager POST /addons/x/security: expected 200, got 403",
            path.display()
        )),
        "{stdout}"
    );
    assert!(stdout.ends_with("1 passed, 1 failed\n"), "{stdout}");

    let partial = run_bin(&[
        "test",
        "--require-coverage",
        path.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(partial.status.code(), Some(1));
    assert!(text(&partial.stdout).contains("not exercised: public[0] /supervisor/ping"));
}

#[tokio::test]
async fn check_names_the_nearest_rule_for_a_refusal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = &test_config_file(dir.path());
    let output = run_bin(&[
        "check",
        "--config",
        config,
        "--addon",
        "local_backup",
        "POST",
        "/os/update",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("nearest:  roles.manager[19] /os/** except /os/datadisk/wipe"),
        "{stdout}"
    );
    assert!(stdout.contains("(an add-on of role manager)"), "{stdout}");
    let noapi = run_bin(&[
        "check",
        "--config",
        config,
        "--addon",
        "local_noapi",
        "GET",
        "/os/info",
    ]);
    assert!(text(&noapi.stdout).contains("(an add-on of role default with hassio_api: true)"));
}

#[tokio::test]
async fn test_refuses_empty_case_files_and_impossible_statuses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = write(dir.path(), "empty.yaml", "cases: []\n");
    let output = run_bin(&["test", empty.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("empty.yaml:1: cases: a case file needs at least one case")
    );
    let odd = write(
        dir.path(),
        "odd.yaml",
        "cases:\n  - { caller: admin, method: GET, target: /info, status: 999 }\n",
    );
    let output = run_bin(&["test", odd.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("odd.yaml:2: status: 999 is not an HTTP status"));
}

/// The default table with `lines` (rule lines, each ending in a line end)
/// added to a role's list, after its `/addons/reload`.
fn default_table_adding(lines: &str) -> String {
    let anchor = "      - /addons/reload\n";
    let added = format!("{anchor}{lines}");
    supervisor_gateway::table::DEFAULT_TABLE.replacen(anchor, &added, 1)
}
