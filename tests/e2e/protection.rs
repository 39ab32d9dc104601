//! Protection mode through the gateway: only admin (and the core and CLI)
//! may change it, and a refused toggle leaves the state as it was.

use crate::helpers::*;

fn toggle(token: &'static str, slug_path: &'static str, protected: bool) -> RawRequest<'static> {
    let body = format!(r#"{{"protected": {protected}}}"#);
    RawRequest::new("POST", slug_path)
        .token(token)
        .header("Content-Type", "application/json")
        .body(body.as_bytes())
}

#[tokio::test]
async fn a_manager_cannot_turn_protection_off_and_the_state_stays() {
    let gateway = TestGateway::start().await;
    let response = gateway
        .send(&toggle(TOK_MANAGER, "/addons/core_ssh/security", false))
        .await;
    assert_refused(&response, 403, "manager toggle");
    assert_upstream_silent(&gateway, "manager toggle");
    assert!(gateway.mock.state().protected("core_ssh"));
}

#[tokio::test]
async fn an_admin_turns_protection_off_and_the_upstream_reports_it() {
    let gateway = TestGateway::start().await;
    let response = gateway
        .send(&toggle(TOK_ADMIN, "/addons/core_ssh/security", false))
        .await;
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert!(!gateway.mock.state().protected("core_ssh"));

    let info = gateway
        .send(&RawRequest::new("GET", "/addons/core_ssh/info").token(TOK_ADMIN))
        .await;
    assert_eq!(info.json()["data"]["protected"], false);
}

#[tokio::test]
async fn no_spelling_of_the_toggle_passes_for_a_non_admin() {
    let gateway = TestGateway::start().await;
    let spellings = [
        "/addons/self/security",
        "/addons/core_ssh/security/",
        "/addons/core_ssh%2Fsecurity",
        "/addons/core_ssh/security;x=1",
        "/addons/core_ssh/%73ecurity",
        "/addons/self/../core_ssh/security",
        "/addons/self/./security",
        "/v2/apps/core_ssh/security",
        "/v2/apps/self/security",
    ];
    for token in [
        TOK_DEFAULT,
        TOK_NOAPI,
        TOK_HA,
        TOK_BACKUP,
        TOK_MANAGER,
        TOK_OBSERVER,
        TOK_UNKNOWN,
    ] {
        for path in spellings {
            let response = gateway.send(&toggle(token, path, false)).await;
            assert!(
                [400, 401, 403].contains(&response.status),
                "{path} with {}: {}",
                &token[..4],
                response.status
            );
        }
    }
    assert_upstream_silent(&gateway, "toggle spellings");
    assert!(gateway.mock.state().protected("core_ssh"));
    assert!(gateway.mock.state().protected("local_manager"));
}

/// The `addons --format json` row of `slug`.
fn addons_row(config: &std::path::Path, slug: &str) -> serde_json::Value {
    let config = config.to_str().expect("utf-8");
    let output = run_bin(&["addons", "--format", "json", "--config", config]);
    let rows: serde_json::Value = serde_json::from_str(&succeeded(&output)).expect("json rows");
    row_where(&rows, "slug", slug).clone()
}

#[tokio::test]
async fn the_gateway_records_protection_mode_set_by_admin_and_addons_reports_it() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("dir");
    let text = format!(
        "{}state_file: protection.json\n",
        test_config_yaml(mock.addr())
    );
    let config = write(dir.path(), "gateway.yaml", &text);
    let served = spawn_serve(&config, "info");

    let before = addons_row(&config, "local_probe");
    assert_eq!(before["protected"], true);

    // A manager's toggle is refused; nothing is recorded.
    let refused = send_raw(
        served.addr,
        &toggle(TOK_MANAGER, "/addons/local_probe/security", false).to_bytes(),
    )
    .await;
    assert_eq!(refused.status, 403);
    assert!(!dir.path().join("protection.json").exists());
    assert_eq!(addons_row(&config, "local_probe")["protected"], true);

    // An admin's succeeds upstream and is recorded, with who did it.
    let done = send_raw(
        served.addr,
        &toggle(TOK_ADMIN, "/addons/local_probe/security", false).to_bytes(),
    )
    .await;
    assert_eq!(done.status, 200, "{}", String::from_utf8_lossy(&done.body));
    assert!(!mock.state().protected("local_probe"));
    let after = addons_row(&config, "local_probe");
    assert_eq!(after["protected"], false);
    assert!(served.wait_for_log(
        "protection mode changed",
        1,
        std::time::Duration::from_secs(5)
    ));
    let log = served.log();
    let line = log
        .lines()
        .find(|line| line.contains("protection mode changed"))
        .expect("logged");
    assert!(
        line.contains("slug=\"local_probe\"") || line.contains("slug=local_probe"),
        "{line}"
    );
    assert!(
        line.contains("by_slug=\"local_admin\"") || line.contains("by_slug=local_admin"),
        "{line}"
    );
    assert!(line.contains("protected=false"), "{line}");

    // And back on; the other add-ons were never touched.
    let on = send_raw(
        served.addr,
        &toggle(TOK_ADMIN, "/v2/apps/local_probe/security", true).to_bytes(),
    )
    .await;
    assert_eq!(on.status, 200);
    assert_eq!(addons_row(&config, "local_probe")["protected"], true);
    assert_eq!(addons_row(&config, "local_backup")["protected"], true);

    // A body the Supervisor would read in another charset: the gateway
    // cannot tell what it applied, and records the worse state, off.
    let utf7 = RawRequest::new("POST", "/addons/local_probe/security")
        .token(TOK_ADMIN)
        .header("Content-Type", "application/json; charset=utf-7")
        .body(br#"{"protected": true}"#);
    assert_eq!(send_raw(served.addr, &utf7.to_bytes()).await.status, 200);
    assert_eq!(addons_row(&config, "local_probe")["protected"], false);
    assert!(served.wait_for_log(
        "its state is unknown, recorded as off",
        1,
        std::time::Duration::from_secs(5)
    ));
    let (code, _) = served.stop();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_admin_toggles_leave_the_recorded_state_equal_to_the_upstreams() {
    let gateway = TestGateway::start().await;
    for round in 0..10 {
        let sends: Vec<_> = (0..32)
            .map(|index| {
                let bytes =
                    toggle(TOK_ADMIN, "/addons/core_ssh/security", index % 2 == 0).to_bytes();
                spawn_send(gateway.addr, bytes)
            })
            .collect();
        for send in sends {
            assert_eq!(send.await.expect("task").status, 200);
        }
        assert_eq!(
            gateway.gateway.protected("core_ssh"),
            gateway.mock.state().protected("core_ssh"),
            "round {round}"
        );
    }
}
