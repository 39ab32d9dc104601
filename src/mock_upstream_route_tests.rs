//! Tests of the mock upstream's action table over loopback TCP: real routes
//! answer, misspelt ones get 404 and wrong methods 405.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{call, send, start};

/// Action routes that must answer ok: every one the gateway's tests rely on,
/// and at least one of each area of supervisor-api.md, v1 and v2.
const ACTIONS: &[(&str, &str, &str)] = &[
    ("own options", "POST", "/addons/self/options"),
    ("options by slug", "POST", "/addons/core_ssh/options"),
    (
        "options validate",
        "POST",
        "/addons/core_ssh/options/validate",
    ),
    ("sys_options", "POST", "/addons/core_ssh/sys_options"),
    ("add-on restart", "POST", "/addons/core_ssh/restart"),
    ("own update", "POST", "/addons/self/update"),
    ("add-ons reload", "POST", "/addons/reload"),
    ("upload", "POST", "/backups/new/upload"),
    ("backup delete", "DELETE", "/backups/abc123"),
    ("backup restore", "POST", "/backups/abc123/restore/partial"),
    ("backups freeze", "POST", "/backups/freeze"),
    ("auth", "POST", "/auth"),
    ("auth reset", "POST", "/auth/reset"),
    ("auth cache", "DELETE", "/auth/cache"),
    ("service set", "POST", "/services/mqtt"),
    ("service delete", "DELETE", "/services/mqtt"),
    ("discovery set", "POST", "/discovery"),
    ("discovery delete", "DELETE", "/discovery/6f1b0c2e9d3a4b5c"),
    ("datadisk wipe", "POST", "/os/datadisk/wipe"),
    ("datadisk move", "POST", "/os/datadisk/move"),
    ("boot slot", "POST", "/os/boot-slot"),
    ("refresh updates", "POST", "/refresh_updates"),
    ("reload updates", "POST", "/reload_updates"),
    ("supervisor update", "POST", "/supervisor/update"),
    ("core restart", "POST", "/core/restart"),
    ("legacy core restart", "POST", "/homeassistant/restart"),
    ("store reload", "POST", "/store/reload"),
    ("store install", "POST", "/store/addons/core_ssh/install"),
    (
        "repository delete",
        "DELETE",
        "/store/repositories/a0d7b954",
    ),
    ("host reboot", "POST", "/host/reboot"),
    ("host service", "POST", "/host/service/ssh/reload"),
    (
        "network interface",
        "POST",
        "/network/interface/end0/update",
    ),
    ("network vlan", "POST", "/network/interface/end0/vlan/10"),
    ("dns reset", "POST", "/dns/reset"),
    ("cli update", "POST", "/cli/update"),
    ("multicast restart", "POST", "/multicast/restart"),
    ("observer update", "POST", "/observer/update"),
    ("audio volume", "POST", "/audio/volume/output"),
    ("audio app mute", "POST", "/audio/mute/input/application"),
    ("jobs reset", "POST", "/jobs/reset"),
    ("healthcheck", "POST", "/resolution/healthcheck"),
    ("dismiss suggestion", "DELETE", "/resolution/suggestion/abc"),
    ("run check", "POST", "/resolution/check/free_space/run"),
    ("integrity", "POST", "/security/integrity"),
    ("mount update", "PUT", "/mounts/media"),
    ("mount reload", "POST", "/mounts/media/reload"),
    ("registry add", "POST", "/docker/registries"),
    ("ingress session", "POST", "/ingress/session"),
    ("v2 app restart", "POST", "/v2/apps/core_ssh/restart"),
    ("v2 own options", "POST", "/v2/apps/self/options"),
    ("v2 apps reload", "POST", "/v2/apps/reload"),
    (
        "v2 store install",
        "POST",
        "/v2/store/apps/core_ssh/install",
    ),
    ("v2 backup delete", "DELETE", "/v2/backups/abc123"),
    ("v2 datadisk wipe", "POST", "/v2/os/datadisk/wipe"),
    ("v2 auth cache", "DELETE", "/v2/auth/cache"),
    ("v2 refresh updates", "POST", "/v2/refresh_updates"),
    ("v2 supervisor reload", "POST", "/v2/supervisor/reload"),
];

#[tokio::test]
async fn every_real_action_route_answers_ok_v1_and_v2() {
    let mock = start().await;
    let mut failures = Vec::new();
    for (name, method, target) in ACTIONS {
        let answer = call(&mock, method, target).await;
        let body: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        if answer.status != StatusCode::OK || body["result"] != "ok" {
            failures.push(format!("{name}: {method} {target} got {}", answer.status));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(mock.state().requests().len(), ACTIONS.len());
    mock.stop().await;
}

#[tokio::test]
async fn v2_backups_answer_with_a_new_slug_and_v1_words_stay_out_of_v2() {
    let mock = start().await;
    let first = call(&mock, "POST", "/v2/backups/new/partial").await.json();
    let second = call(&mock, "POST", "/backups/new/full").await.json();
    let v1_word = call(&mock, "POST", "/v2/addons/core_ssh/restart").await;
    let v2_word = call(&mock, "POST", "/store/apps/core_ssh/install").await;

    assert!(first["data"]["slug"].is_string(), "{first}");
    assert_ne!(first["data"]["slug"], second["data"]["slug"]);
    assert_eq!(v1_word.status, StatusCode::NOT_FOUND);
    assert_eq!(v2_word.status, StatusCode::NOT_FOUND);
    mock.stop().await;
}

#[tokio::test]
async fn a_misspelt_action_gets_404_changes_nothing_and_is_still_recorded() {
    let mock = start().await;
    let body = br#"{"protected": false}"#.to_vec();
    let typos = [
        "/os/datadisk/WIPE",
        "/addons/core_ssh/Security",
        "/addons/core_ssh/security/",
        "/addons//core_ssh/security",
        "/v2/apps/core_ssh/securty",
        "/supervisor/updates",
        "/Os/datadisk/wipe",
    ];
    for target in typos {
        let answer = send(&mock, Method::POST, target, &[], body.clone()).await;

        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{target}");
        assert_eq!(answer.json()["result"], "error", "{target}");
    }
    assert!(mock.state().protected("core_ssh"));
    let paths: Vec<String> = mock.state().take().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, typos);
    mock.stop().await;
}

#[tokio::test]
async fn a_known_path_with_the_wrong_method_gets_405_naming_the_right_ones() {
    let mock = start().await;
    let rows = [
        ("GET", "/os/datadisk/wipe", "POST"),
        ("DELETE", "/addons/core_ssh/security", "POST"),
        ("PUT", "/backups/abc123", "DELETE"),
        ("POST", "/info", "GET, HEAD"),
        ("DELETE", "/addons/self/info", "GET, HEAD"),
        ("PATCH", "/auth", "GET, HEAD, POST"),
        ("PUT", "/services/mqtt", "POST, DELETE"),
        ("GET", "/v2/apps/core_ssh/restart", "POST"),
    ];
    for (method, target, allow) in rows {
        let answer = call(&mock, method, target).await;

        assert_eq!(
            answer.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {target}"
        );
        let allowed = answer.headers.get(http::header::ALLOW);
        assert_eq!(
            allowed.and_then(|v| v.to_str().ok()),
            Some(allow),
            "{target}"
        );
        let body = answer.json();
        assert_eq!(body["result"], "error", "{method} {target}");
        assert!(body["message"].is_string(), "{method} {target}");
    }
    let head = call(&mock, "HEAD", "/os/datadisk/wipe").await;
    assert_eq!(head.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(head.body.is_empty());
    let nowhere = call(&mock, "PATCH", "/made/up/route").await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    assert_eq!(mock.state().requests().len(), 10);
    mock.stop().await;
}

#[tokio::test]
async fn the_core_proxy_still_takes_any_method_and_path() {
    let mock = start().await;
    for (method, target) in [
        ("PATCH", "/core/api/states/light.kitchen"),
        ("DELETE", "/homeassistant/api/anything/at/all"),
        ("PUT", "/v2/core/api/config"),
    ] {
        let answer = call(&mock, method, target).await;

        assert_eq!(answer.status, StatusCode::OK, "{method} {target}");
        assert_eq!(answer.json(), json!({"message": "ok"}), "{method} {target}");
    }
    mock.stop().await;
}
