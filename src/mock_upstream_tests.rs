//! Tests of the mock upstream over real loopback TCP.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::{
    spawn, MockAddon, MockHandle, MockState, Recorded, WsRecord, RECORDED_BYTES, RECORDED_LIMIT,
};

#[path = "mock_upstream_route_tests.rs"]
mod actions;

#[path = "mock_upstream_live_tests.rs"]
mod live;

/// What a test client got back.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("mock answered with invalid JSON")
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }
}

async fn start() -> MockHandle {
    start_with(MockState::new()).await
}

async fn start_with(state: MockState) -> MockHandle {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("loopback port 0 must bind");
    spawn(listener, state).expect("spawn inside a runtime")
}

async fn send(
    mock: &MockHandle,
    method: Method,
    target: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{}{target}", mock.addr()));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .expect("test request is well formed");
    let response = client.request(request).await.expect("mock answers");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("mock body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

async fn get(mock: &MockHandle, target: &str, headers: &[(&str, &str)]) -> Answer {
    send(mock, Method::GET, target, headers, Vec::new()).await
}

/// `method target` with an empty body and no headers.
async fn call(mock: &MockHandle, method: &str, target: &str) -> Answer {
    let method = Method::from_bytes(method.as_bytes()).expect("test method is a token");
    send(mock, method, target, &[], Vec::new()).await
}

#[tokio::test]
async fn info_answers_inside_the_ok_envelope_as_json() {
    let mock = start().await;
    let answer = get(&mock, "/info", &[]).await;

    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.content_type(), "application/json");
    let body = answer.json();
    assert_eq!(body["result"], "ok");
    assert!(body["data"]["supervisor"].is_string());
    assert!(body["data"]["supported_arch"].is_array());
    assert_eq!(body["data"]["state"], "running");
    mock.stop().await;
}

#[tokio::test]
async fn self_info_follows_the_gateway_headers() {
    let mock = start().await;
    let headers = [("x-gateway-addon", "core_ssh"), ("x-gateway-role", "admin")];
    let named = get(&mock, "/addons/self/info", &headers).await.json();
    let anonymous = get(&mock, "/addons/self/info", &[]).await.json();

    assert_eq!(named["data"]["slug"], "core_ssh");
    assert_eq!(named["data"]["hassio_role"], "admin");
    assert_eq!(named["data"]["advanced"], false);
    assert_eq!(anonymous["data"]["slug"], "self_unknown");
    assert_eq!(anonymous["data"]["hassio_role"], "default");
    mock.stop().await;
}

#[tokio::test]
async fn foreign_options_are_redacted_for_plain_add_ons() {
    let mock = start().await;
    let plain = [
        ("x-gateway-addon", "local_probe"),
        ("x-gateway-caller", "addon"),
    ];
    let core = [("x-gateway-caller", "homeassistant")];
    let foreign = get(&mock, "/addons/core_ssh/info", &plain).await.json();
    let own = get(&mock, "/addons/local_probe/info", &plain).await.json();
    let by_core = get(&mock, "/addons/core_ssh/info", &core).await.json();

    assert_eq!(foreign["data"]["options"], json!({}));
    assert_eq!(foreign["data"]["hassio_role"], "manager");
    assert_ne!(own["data"]["options"], json!({}));
    assert_ne!(by_core["data"]["options"], json!({}));
    mock.stop().await;
}

#[tokio::test]
async fn security_toggle_is_remembered_and_shown_in_info() {
    let mock = start().await;
    let headers = [("x-gateway-addon", "local_probe")];
    let body = br#"{"protected": false}"#.to_vec();
    let set = send(&mock, Method::POST, "/addons/self/security", &headers, body).await;

    assert_eq!(set.status, StatusCode::OK);
    assert_eq!(set.json(), json!({"result": "ok", "data": {}}));
    assert!(!mock.state().protected("local_probe"));
    assert!(mock.state().protected("core_ssh"));
    let info = get(&mock, "/addons/local_probe/info", &[]).await.json();
    assert_eq!(info["data"]["protected"], false);
    let list = get(&mock, "/addons", &[]).await.json();
    let probe = list["data"]["addons"]
        .as_array()
        .and_then(|all| all.iter().find(|a| a["slug"] == "local_probe"))
        .cloned();
    assert_eq!(probe.map(|a| a["protected"].clone()), Some(json!(false)));
    mock.stop().await;
}

#[tokio::test]
async fn an_unrecorded_mock_answers_by_headers_and_body_but_keeps_nothing() {
    let mock = start_with(MockState::unrecorded()).await;
    let headers = [("x-gateway-addon", "local_probe")];
    let body = br#"{"protected": false}"#.to_vec();
    let set = send(&mock, Method::POST, "/addons/self/security", &headers, body).await;
    assert_eq!(set.status, StatusCode::OK);
    assert!(!mock.state().protected("local_probe"));
    let info = get(&mock, "/addons/self/info", &headers).await.json();
    assert_eq!(info["data"]["slug"], "local_probe");

    assert!(mock.state().requests().is_empty());
    assert!(mock.state().take().is_empty());
    mock.stop().await;

    // The same two requests to a recording mock are kept, headers and all.
    let mock = start().await;
    let body = br#"{"protected": false}"#.to_vec();
    send(&mock, Method::POST, "/addons/self/security", &headers, body).await;
    get(&mock, "/addons/self/info", &headers).await;
    let kept = mock.state().requests();
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[1].header("x-gateway-addon"), Some(&b"local_probe"[..]));
    mock.stop().await;
}

#[tokio::test]
async fn security_refuses_a_body_that_is_not_the_flag() {
    let mock = start().await;
    for body in [&b"{}"[..], b"not json", br#"{"protected": "no"}"#] {
        let path = "/v2/apps/core_ssh/security";
        let answer = send(&mock, Method::POST, path, &[], body.to_vec()).await;

        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "body {body:?}");
        assert_eq!(answer.json()["result"], "error");
    }
    assert!(mock.state().protected("core_ssh"));
    mock.stop().await;
}

#[tokio::test]
async fn v2_paths_say_apps_where_v1_says_addons() {
    let mock = start().await;
    let headers = [("x-gateway-addon", "core_mosquitto")];
    let info = get(&mock, "/v2/apps/self/info", &headers).await.json();
    let store = get(&mock, "/v2/store/apps", &[]).await;
    let v2 = get(&mock, "/v2/backups", &[]).await.json();
    let v1 = get(&mock, "/backups", &[]).await.json();

    assert_eq!(info["data"]["slug"], "core_mosquitto");
    assert!(info["data"].get("advanced").is_none());
    assert_eq!(store.status, StatusCode::OK);
    assert!(store.json()["data"]["apps"].is_array());
    assert!(v2["data"]["backups"][0]["content"]["apps"].is_array());
    assert!(v2["data"]["backups"][0]["content"].get("addons").is_none());
    assert!(v1["data"]["backups"][0]["content"]["addons"].is_array());
    let mixed = get(&mock, "/v2/addons/self/info", &[]).await;
    assert_eq!(mixed.status, StatusCode::NOT_FOUND);
    mock.stop().await;
}

#[tokio::test]
async fn unknown_paths_get_the_error_envelope_and_are_still_recorded() {
    let mock = start().await;
    let unknown = get(&mock, "/made/up/route", &[]).await;
    let action = send(&mock, Method::POST, "/nowhere/reload", &[], Vec::new()).await;
    let known = send(&mock, Method::POST, "/os/datadisk/wipe", &[], Vec::new()).await;

    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json()["result"], "error");
    assert!(unknown.json()["message"].is_string());
    assert_eq!(action.status, StatusCode::NOT_FOUND);
    assert_eq!(known.json(), json!({"result": "ok", "data": {}}));
    let paths: Vec<String> = mock.state().take().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        ["/made/up/route", "/nowhere/reload", "/os/datadisk/wipe"]
    );
    assert!(mock.state().requests().is_empty());
    mock.stop().await;
}

#[tokio::test]
async fn requests_are_recorded_raw_with_body_length_and_digest() {
    let mock = start().await;
    let body: Vec<u8> = (0..100_000u32).map(|n| (n % 251) as u8).collect();
    let target = "/addons/core%5Fssh/options?a=%2F1&b";
    let headers = [("x-probe", "one"), ("x-probe", "two"), ("X-Mixed", "v")];
    send(&mock, Method::POST, target, &headers, body.clone()).await;

    let recorded = mock.state().requests();
    assert_eq!(recorded.len(), 1);
    let seen = &recorded[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/addons/core%5Fssh/options");
    assert_eq!(seen.query.as_deref(), Some("a=%2F1&b"));
    let probes: Vec<&[u8]> = seen
        .headers
        .iter()
        .filter(|(name, _)| name == "x-probe")
        .map(|(_, value)| value.as_slice())
        .collect();
    assert_eq!(probes, [&b"one"[..], b"two"]);
    assert_eq!(seen.header("x-MIXED"), Some(&b"v"[..]));
    assert_eq!(seen.body_len, 100_000);
    assert_eq!(seen.body_sha256, hex::encode(Sha256::digest(&body)));
    assert_eq!(seen.body_head, body[..64 * 1024]);
    mock.stop().await;
}

#[tokio::test]
async fn head_answers_like_get_without_a_body() {
    let mock = start().await;
    let answer = send(&mock, Method::HEAD, "/info", &[], Vec::new()).await;

    let full = get(&mock, "/info", &[]).await;

    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.is_empty());
    let length = answer.headers.get(http::header::CONTENT_LENGTH);
    assert_eq!(
        length.and_then(|v| v.to_str().ok()),
        Some(full.body.len().to_string().as_str())
    );
    assert_eq!(mock.state().requests()[0].method, "HEAD");
    mock.stop().await;
}

#[tokio::test]
async fn core_api_answers_like_home_assistant_not_the_envelope() {
    let mock = start().await;
    let root = get(&mock, "/core/api/", &[]).await.json();
    let states = get(&mock, "/homeassistant/api/states", &[]).await.json();

    assert_eq!(root, json!({"message": "API running."}));
    assert!(states.as_array().is_some_and(|all| all.len() >= 2));
    assert!(states[0]["entity_id"].is_string());
    mock.stop().await;
}

#[tokio::test]
async fn logs_are_text_and_backup_downloads_are_tar() {
    let mock = start().await;
    let logs = get(
        &mock,
        "/addons/self/logs",
        &[("x-gateway-addon", "core_ssh")],
    )
    .await;
    let tar = get(&mock, "/backups/a1b2c3d4/download", &[]).await;

    assert_eq!(logs.status, StatusCode::OK);
    assert!(logs.content_type().starts_with("text/plain"));
    assert!(String::from_utf8_lossy(&logs.body).contains("(core_ssh)"));
    assert_eq!(tar.content_type(), "application/x-tar");
    assert_eq!(tar.body.len() % 512, 0);
    assert_eq!(&tar.body[257..263], b"ustar\0");
    mock.stop().await;
}

#[tokio::test]
async fn a_broken_body_is_recorded_and_the_mock_keeps_serving() {
    let mock = start().await;
    let mut stream = TcpStream::connect(mock.addr()).await.expect("connect");
    let head = "POST /supervisor/options HTTP/1.1\r\nHost: mock\r\nContent-Length: 100\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(b"0123456789").await.expect("write body");
    stream.shutdown().await.expect("half close");

    let mut recorded = Vec::new();
    for _ in 0..100 {
        recorded = mock.state().requests();
        if !recorded.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].body_len, 10);
    assert_eq!(
        get(&mock, "/supervisor/ping", &[]).await.status,
        StatusCode::OK
    );
    mock.stop().await;
}

#[tokio::test]
async fn stop_closes_the_listener() {
    let mock = start().await;
    let addr = mock.addr();
    assert_eq!(
        get(&mock, "/supervisor/ping", &[]).await.status,
        StatusCode::OK
    );
    mock.stop().await;

    assert!(TcpStream::connect(addr).await.is_err());
}

/// Every field supervisor-api.md lists for each of these answers.
const FIELDS: &[(&str, &[&str])] = &[
    (
        "/info",
        &[
            "supervisor",
            "homeassistant",
            "hassos",
            "docker",
            "hostname",
            "operating_system",
            "features",
            "machine",
            "machine_id",
            "arch",
            "supported_arch",
            "supported",
            "channel",
            "logging",
            "state",
            "timezone",
        ],
    ),
    (
        "/addons/self/info",
        &[
            "name",
            "slug",
            "hostname",
            "description",
            "long_description",
            "version",
            "version_latest",
            "update_available",
            "state",
            "repository",
            "protected",
            "rating",
            "boot",
            "boot_config",
            "options",
            "schema",
            "arch",
            "machine",
            "hassio_api",
            "hassio_role",
            "homeassistant_api",
            "auth_api",
            "ingress",
            "ingress_entry",
            "ingress_url",
            "ingress_port",
            "ingress_panel",
            "host_network",
            "host_pid",
            "host_ipc",
            "host_uts",
            "host_dbus",
            "privileged",
            "full_access",
            "apparmor",
            "docker_api",
            "kernel_modules",
            "devicetree",
            "udev",
            "gpio",
            "usb",
            "uart",
            "video",
            "audio",
            "audio_input",
            "audio_output",
            "stdin",
            "signed",
            "webui",
            "ip_address",
            "watchdog",
            "auto_update",
            "devices",
            "dns",
            "network",
            "network_description",
            "services",
            "discovery",
            "translations",
            "icon",
            "logo",
            "changelog",
            "documentation",
            "startup",
            "detached",
            "available",
            "build",
            "url",
            "homeassistant",
            "system_managed",
            "system_managed_config_entry",
            "advanced",
        ],
    ),
    (
        "/core/info",
        &[
            "version",
            "version_latest",
            "update_available",
            "machine",
            "ip_address",
            "arch",
            "image",
            "boot",
            "port",
            "ssl",
            "watchdog",
            "audio_input",
            "audio_output",
            "backups_exclude_database",
            "duplicate_log_file",
        ],
    ),
    (
        "/supervisor/info",
        &[
            "version",
            "version_latest",
            "update_available",
            "channel",
            "arch",
            "supported",
            "healthy",
            "ip_address",
            "timezone",
            "logging",
            "debug",
            "debug_block",
            "diagnostics",
            "auto_update",
            "detect_blocking_io",
            "country",
            "feature_flags",
            "wait_boot",
            "addons",
            "addons_repositories",
        ],
    ),
    ("/backups/info", &["backups", "days_until_stale"]),
];

/// One row per info endpoint: path and a field its data must hold.
const ENDPOINTS: &[(&str, &str)] = &[
    ("/supervisor/stats", "cpu_percent"),
    ("/addons", "addons"),
    ("/addons/core_ssh/info", "slug"),
    ("/addons/core_ssh/stats", "memory_usage"),
    ("/homeassistant/info", "version"),
    ("/core/stats", "memory_percent"),
    ("/backups", "backups"),
    ("/backups/a1b2c3d4/info", "supervisor_version"),
    ("/host/info", "hostname"),
    ("/os/info", "boot_slots"),
    ("/network/info", "interfaces"),
    ("/dns/info", "servers"),
    ("/audio/info", "audio"),
    ("/cli/info", "version"),
    ("/multicast/info", "version"),
    ("/observer/info", "version"),
    ("/store", "repositories"),
    ("/store/addons", "addons"),
    ("/jobs/info", "jobs"),
    ("/resolution/info", "checks"),
    ("/security/info", "content_trust"),
    ("/mounts", "mounts"),
    ("/docker/info", "storage"),
    ("/hardware/info", "devices"),
    ("/available_updates", "available_updates"),
    ("/services", "services"),
    ("/discovery", "discovery"),
    ("/auth/list", "users"),
    ("/ingress/panels", "panels"),
    ("/ingress/info", "version"),
];

#[tokio::test]
async fn info_answers_carry_every_documented_field() {
    let mock = start().await;
    for (path, fields) in FIELDS {
        let data = get(&mock, path, &[("x-gateway-addon", "core_ssh")])
            .await
            .json()["data"]
            .take();
        let missing: Vec<&str> = fields
            .iter()
            .copied()
            .filter(|f| data.get(f).is_none())
            .collect();
        assert!(missing.is_empty(), "{path} lacks {missing:?}");
    }
    mock.stop().await;
}

#[tokio::test]
async fn every_info_endpoint_answers_ok_with_its_field() {
    let mock = start().await;
    for (path, field) in ENDPOINTS {
        let answer = get(&mock, path, &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        let body = answer.json();
        assert_eq!(body["result"], "ok", "{path}");
        assert!(body["data"].get(field).is_some(), "{path} lacks {field}");
    }
    let ping = get(&mock, "/supervisor/ping", &[]).await.json();
    assert_eq!(ping, json!({"result": "ok", "data": {}}));
    mock.stop().await;
}

fn addon(slug: &str, role: &str, apis: [bool; 3]) -> MockAddon {
    let [hassio_api, homeassistant_api, auth_api] = apis;
    MockAddon {
        slug: slug.to_owned(),
        role: role.to_owned(),
        hassio_api,
        homeassistant_api,
        auth_api,
    }
}

#[tokio::test]
async fn known_add_ons_report_their_registered_role_and_api_flags() {
    let known = vec![
        addon("local_admin", "admin", [true, false, false]),
        addon("local_auth", "default", [false, false, true]),
        addon("core_mosquitto", "backup", [true, true, false]),
    ];
    let mock = start_with(MockState::with_addons(known.clone())).await;
    let admin = get(&mock, "/addons/local_admin/info", &[]).await.json();
    let auth = get(&mock, "/v2/apps/local_auth/info", &[]).await.json();
    let seed = get(&mock, "/addons/core_mosquitto/info", &[]).await.json();

    assert_eq!(admin["data"]["hassio_role"], "admin");
    assert_eq!(admin["data"]["rating"], 3);
    assert_eq!(auth["data"]["hassio_role"], "default");
    assert_eq!(auth["data"]["hassio_api"], false);
    assert_eq!(auth["data"]["auth_api"], true);
    assert_eq!(auth["data"]["rating"], 6);
    assert_eq!(seed["data"]["name"], "Mosquitto broker");
    assert_eq!(seed["data"]["hassio_role"], "backup");
    assert_eq!(seed["data"]["homeassistant_api"], true);
    assert_eq!(mock.state().known_addons(), known);
    mock.stop().await;
}

#[tokio::test]
async fn self_resolves_to_the_known_add_on_and_falls_back_to_the_role_header() {
    let known = vec![addon("local_manager", "manager", [true, false, false])];
    let mock = start_with(MockState::with_addons(known)).await;
    let registered = [
        ("x-gateway-addon", "local_manager"),
        ("x-gateway-role", "default"),
    ];
    let unregistered = [
        ("x-gateway-addon", "local_other"),
        ("x-gateway-role", "admin"),
    ];
    let own = get(&mock, "/addons/self/info", &registered).await.json();
    let other = get(&mock, "/addons/self/info", &unregistered).await.json();

    assert_eq!(own["data"]["slug"], "local_manager");
    assert_eq!(own["data"]["hassio_role"], "manager");
    assert_eq!(own["data"]["rating"], 4);
    assert_eq!(other["data"]["slug"], "local_other");
    assert_eq!(other["data"]["hassio_role"], "admin");
    assert_eq!(other["data"]["rating"], 3);
    mock.stop().await;
}

#[tokio::test]
async fn the_add_on_list_holds_the_seeds_and_the_known_add_ons_once_each() {
    let known = vec![
        addon("local_manager", "manager", [true, false, false]),
        addon("core_ssh", "admin", [true, false, false]),
    ];
    let mock = start_with(MockState::with_addons(known)).await;
    let v1 = get(&mock, "/addons", &[]).await.json();
    let v2 = get(&mock, "/v2/apps", &[]).await.json();

    let slugs = |list: &Value| -> Vec<String> {
        list.as_array()
            .map(|all| all.iter().map(|a| a["slug"].to_string()).collect())
            .unwrap_or_default()
    };
    let listed = slugs(&v1["data"]["addons"]);
    assert_eq!(listed.iter().filter(|s| *s == "\"core_ssh\"").count(), 1);
    assert_eq!(listed.last().map(String::as_str), Some("\"local_manager\""));
    assert_eq!(slugs(&v2["data"]["apps"]), listed);
    mock.stop().await;
}

#[tokio::test]
async fn ratings_follow_role_and_ingress_for_the_seeds() {
    let mock = start().await;
    let rows = [
        ("/addons/core_mosquitto/info", 5),
        ("/addons/core_ssh/info", 6),
        ("/addons/never_seen/info", 5),
    ];
    for (path, rating) in rows {
        let info = get(&mock, path, &[]).await.json();
        assert_eq!(info["data"]["rating"], rating, "{path}");
    }
    let admin = [
        ("x-gateway-addon", "local_probe"),
        ("x-gateway-role", "admin"),
    ];
    let own = get(&mock, "/addons/self/info", &admin).await.json();
    assert_eq!(own["data"]["rating"], 3);
    mock.stop().await;
}

fn record(n: usize, body: usize) -> Recorded {
    Recorded {
        method: "GET".into(),
        path: format!("/r/{n}"),
        query: None,
        headers: Vec::new(),
        body_len: body as u64,
        body_sha256: String::new(),
        body_head: vec![b'x'; body],
    }
}

#[test]
fn the_log_keeps_the_latest_requests_up_to_its_limit() {
    let state = MockState::default();
    for n in 0..RECORDED_LIMIT + 5 {
        state.push(record(n, 0));
    }
    let kept = state.requests();
    assert_eq!(kept.len(), RECORDED_LIMIT);
    assert_eq!(kept[0].path, "/r/5");
    assert_eq!(
        kept[RECORDED_LIMIT - 1].path,
        format!("/r/{}", RECORDED_LIMIT + 4)
    );
    let taken = state.take();
    assert_eq!(taken.len(), RECORDED_LIMIT);
    assert_eq!(taken[0].path, "/r/5");
    assert!(state.requests().is_empty());
}

#[test]
fn the_log_keeps_the_latest_requests_within_its_bytes() {
    // Records of 64 KiB bodies: far fewer than the count limit fit.
    let state = MockState::default();
    let body = 64 << 10;
    for n in 0..1000 {
        state.push(record(n, body));
    }
    let kept = state.requests();
    let bytes: usize = kept
        .iter()
        .map(|r| r.body_head.len() + r.path.len() + 3)
        .sum();
    assert!(bytes <= RECORDED_BYTES, "{bytes}");
    assert!(kept.len() >= RECORDED_BYTES / (body + 16), "{}", kept.len());
    assert_eq!(kept.last().map(|r| r.path.as_str()), Some("/r/999"));
    // One entry over the whole budget is still kept, alone.
    state.push(record(1000, RECORDED_BYTES + 1));
    assert_eq!(state.requests().len(), 1);
    state.push(record(1001, 0));
    assert_eq!(state.requests().len(), 1);
    assert_eq!(state.requests()[0].path, "/r/1001");
}

#[test]
fn the_websocket_log_is_bounded_too() {
    let state = MockState::default();
    for n in 0..RECORDED_LIMIT + 1 {
        state.push_ws(WsRecord::Text(n.to_string()));
    }
    let kept = state.ws_messages();
    assert_eq!(kept.len(), RECORDED_LIMIT);
    assert_eq!(kept[0], WsRecord::Text("1".into()));
    let big = vec![0; 1 << 20];
    for _ in 0..40 {
        state.push_ws(WsRecord::Binary(big.clone()));
    }
    assert_eq!(state.ws_messages().len(), RECORDED_BYTES / big.len());
}
