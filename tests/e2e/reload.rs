//! Hot reload and shadow mode: tables swapped under load, invalid files
//! never enforced, role changes and token rotation taking effect at once,
//! and shadow decisions logged but never enforced.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use supervisor_gateway::table::DEFAULT_TABLE;

use crate::helpers::*;

/// The default table with the default role's `/**/info` rule removed.
fn table_without_info() -> String {
    let changed = DEFAULT_TABLE.replacen(
        "  default:\n    allow:\n      - /**/info\n",
        "  default:\n    allow:\n      - /never/matches/anything\n",
        1,
    );
    assert_ne!(changed, DEFAULT_TABLE);
    changed
}

/// A table that would let the default role create backups, and that is
/// invalid because it also opens the protection toggle to manager.
fn invalid_table() -> String {
    DEFAULT_TABLE
        .replacen(
            "  default:\n    allow:\n      - /**/info\n",
            "  default:\n    allow:\n      - /**/info\n      - /backups*\n",
            1,
        )
        .replacen(
            "      - /addons/reload\n",
            "      - /addons/reload\n      - /addons/<slug>/security\n",
            1,
        )
}

fn config_with_table(upstream: std::net::SocketAddr) -> String {
    format!(
        "{}table: table.yaml\nwatch_interval_ms: 0\n",
        test_config_yaml(upstream)
    )
}

#[tokio::test]
async fn tables_swap_under_load_and_an_invalid_file_is_never_enforced() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let table_path = write(dir.path(), "table.yaml", DEFAULT_TABLE);
    let config = write(dir.path(), "gateway.yaml", &config_with_table(mock.addr()));
    let gateway = TestGateway::from_file(&config, mock).await;

    let running = Arc::new(AtomicBool::new(true));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let load = {
        let (running, seen, addr) = (running.clone(), seen.clone(), gateway.addr);
        tokio::spawn(async move {
            let info = RawRequest::new("GET", "/os/info")
                .token(TOK_DEFAULT)
                .to_bytes();
            let backup = RawRequest::new("POST", "/backups/new/full")
                .token(TOK_DEFAULT)
                .to_bytes();
            let mut sent = 0;
            while running.load(Ordering::Relaxed) && sent < 5000 {
                let (a, b) = (send_raw(addr, &info).await, send_raw(addr, &backup).await);
                seen.lock().expect("lock").push((a.status, b.status));
                sent += 2;
            }
        })
    };
    for round in 0..4 {
        std::fs::write(&table_path, table_without_info()).expect("write");
        gateway.gateway.reload().expect("a valid table reloads");
        let info = gateway
            .send(&RawRequest::new("GET", "/os/info").token(TOK_DEFAULT))
            .await;
        assert_eq!(
            info.status, 403,
            "round {round}: the new table is in force at once"
        );

        std::fs::write(&table_path, invalid_table()).expect("write");
        let problems = gateway
            .gateway
            .reload()
            .expect_err("an invalid table is refused");
        assert!(
            problems[0].reason.contains("protection-mode toggle"),
            "{problems:?}"
        );
        let info = gateway
            .send(&RawRequest::new("GET", "/os/info").token(TOK_DEFAULT))
            .await;
        assert_eq!(info.status, 403, "round {round}: the running table stays");

        std::fs::write(&table_path, DEFAULT_TABLE).expect("write");
        gateway.gateway.reload().expect("the default table reloads");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.store(false, Ordering::Relaxed);
    load.await.expect("load task");

    let seen = seen.lock().expect("lock");
    assert!(seen.len() > 20, "only {} rounds of load", seen.len());
    for (info, backup) in seen.iter() {
        assert!([200, 403].contains(info), "GET /os/info got {info}");
        assert_eq!(*backup, 403, "the invalid table was enforced");
    }
    assert!(seen.iter().any(|(info, _)| *info == 200) && seen.iter().any(|(info, _)| *info == 403));
}

#[tokio::test]
async fn a_role_change_and_a_token_rotation_apply_on_sighup() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!("{}watch_interval_ms: 0\n", test_config_yaml(mock.addr()));
    let path = write(dir.path(), "gateway.yaml", &text);
    let served = spawn_serve(&path, "info");
    let restart = || {
        RawRequest::new("POST", "/addons/core_ssh/restart")
            .token(TOK_MANAGER)
            .to_bytes()
    };
    assert_eq!(send_raw(served.addr, &restart()).await.status, 200);

    let demoted = text.replace("hassio_role: manager", "hassio_role: default");
    std::fs::write(&path, &demoted).expect("write");
    served.signal("HUP");
    assert!(
        served.wait_for_log("policy reloaded", 1, Duration::from_secs(10)),
        "{}",
        served.log()
    );
    assert_eq!(
        send_raw(served.addr, &restart()).await.status,
        403,
        "the demoted add-on lost the route"
    );

    let rotated = demoted.replace(TOK_MANAGER, "rotated-manager-token-0123456789");
    std::fs::write(&path, &rotated).expect("write");
    served.signal("HUP");
    assert!(served.wait_for_log("policy reloaded", 2, Duration::from_secs(10)));
    assert_eq!(
        send_raw(served.addr, &restart()).await.status,
        403,
        "the old token is unknown"
    );
    let new_token =
        RawRequest::new("GET", "/addons/self/info").token("rotated-manager-token-0123456789");
    assert_eq!(served.send(&new_token).await.status, 200);

    std::fs::write(
        &path,
        rotated.replace("hassio_role: default", "hassio_role: superuser"),
    )
    .expect("write");
    served.signal("HUP");
    assert!(served.wait_for_log("reload refused", 1, Duration::from_secs(10)));
    assert_eq!(
        served.send(&new_token).await.status,
        200,
        "the running policy stays"
    );

    let (code, log) = served.stop();
    assert_eq!(code, Some(0));
    assert!(
        log.contains("old_digest=") && log.contains("new_digest="),
        "{log}"
    );
    assert!(
        !log.contains("rotated-manager-token"),
        "a token reached the log"
    );
    mock.stop().await;
}

#[tokio::test]
async fn a_changed_table_file_is_picked_up_without_a_signal() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "table.yaml", DEFAULT_TABLE);
    let text =
        config_with_table(mock.addr()).replace("watch_interval_ms: 0", "watch_interval_ms: 100");
    let path = write(dir.path(), "gateway.yaml", &text);
    let served = spawn_serve(&path, "info");
    let info = RawRequest::new("GET", "/os/info")
        .token(TOK_DEFAULT)
        .to_bytes();
    assert_eq!(send_raw(served.addr, &info).await.status, 200);

    let renamed = dir.path().join("table.yaml.new");
    std::fs::write(&renamed, table_without_info()).expect("write");
    std::fs::rename(&renamed, dir.path().join("table.yaml"))
        .expect("replace the table like an editor");
    assert!(
        served.wait_for_log("policy reloaded", 1, Duration::from_secs(10)),
        "{}",
        served.log()
    );
    assert!(
        served.log().contains("reason=\"file changed\"")
            || served.log().contains("reason=file changed")
    );
    assert_eq!(send_raw(served.addr, &info).await.status, 403);
    let (code, _) = served.stop();
    assert_eq!(code, Some(0));
    mock.stop().await;
}

#[tokio::test]
async fn shadow_disagreements_are_logged_and_never_enforced() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "shadow.yaml", &table_without_info());
    let text = format!(
        "{}shadow_table: shadow.yaml\nwatch_interval_ms: 0\n",
        test_config_yaml(mock.addr())
    );
    let path = write(dir.path(), "gateway.yaml", &text);
    let served = spawn_serve(&path, "info");

    let info = RawRequest::new("GET", "/os/info")
        .token(TOK_DEFAULT)
        .to_bytes();
    assert_eq!(
        send_raw(served.addr, &info).await.status,
        200,
        "the active table is enforced"
    );
    let agreed = RawRequest::new("GET", "/backups")
        .token(TOK_DEFAULT)
        .to_bytes();
    assert_eq!(send_raw(served.addr, &agreed).await.status, 403);
    assert!(served.wait_for_log("shadow table disagrees", 1, Duration::from_secs(5)));
    let (_, log) = served.stop();
    let disagreements: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("shadow table disagrees"))
        .collect();
    assert_eq!(disagreements.len(), 1, "{log}");
    assert!(
        disagreements[0].contains("active_status=200")
            && disagreements[0].contains("shadow_status=403"),
        "{}",
        disagreements[0]
    );
    assert!(
        disagreements[0].contains("path=/os/info"),
        "{}",
        disagreements[0]
    );
    assert_eq!(
        mock.state().requests().len(),
        1,
        "only the allowed request was forwarded"
    );
    mock.stop().await;
}

#[tokio::test]
async fn a_table_file_that_appears_after_a_refused_reload_is_picked_up() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "table.yaml", DEFAULT_TABLE);
    let text =
        config_with_table(mock.addr()).replace("watch_interval_ms: 0", "watch_interval_ms: 100");
    let path = write(dir.path(), "gateway.yaml", &text);
    let served = spawn_serve(&path, "info");
    std::fs::write(
        &path,
        text.replace("table: table.yaml", "table: later.yaml"),
    )
    .expect("write");
    assert!(
        served.wait_for_log("reload refused", 1, Duration::from_secs(10)),
        "{}",
        served.log()
    );
    write(dir.path(), "later.yaml", &table_without_info());
    assert!(
        served.wait_for_log("policy reloaded", 1, Duration::from_secs(10)),
        "{}",
        served.log()
    );
    let info = RawRequest::new("GET", "/os/info")
        .token(TOK_DEFAULT)
        .to_bytes();
    assert_eq!(send_raw(served.addr, &info).await.status, 403);
    let (code, _) = served.stop();
    assert_eq!(code, Some(0));
    mock.stop().await;
}

#[tokio::test]
async fn a_reload_names_each_changed_key_that_needs_a_restart_and_still_swaps_the_rest() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("dir");
    let base = test_config_yaml(mock.addr());
    let config = write(dir.path(), "gateway.yaml", &base);
    let gateway = TestGateway::from_file(&config, mock).await;

    let unchanged = gateway.gateway.reload().expect("reloads");
    assert!(
        unchanged.needs_restart.is_empty(),
        "{:?}",
        unchanged.needs_restart
    );

    let changed = base
        .replace("listen: 127.0.0.1:0", "listen: 127.0.0.1:1")
        .replace("admin_listen: none", "admin_listen: 127.0.0.1:2")
        + "workers: 3\nreuse_port: true\nwatch_interval_ms: 250\nstate_file: state.json\naudit_log: audit.jsonl\n";
    write(dir.path(), "gateway.yaml", &changed);
    let reloaded = gateway.gateway.reload().expect("reloads");
    let mut keys = reloaded.needs_restart.clone();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "admin_listen",
            "audit_log",
            "listen",
            "reuse_port",
            "state_file",
            "watch_interval_ms",
            "workers"
        ]
    );
    // Requests are still served at the running address.
    let response = gateway
        .send(&RawRequest::new("GET", "/addons/self/info").token(TOK_DEFAULT))
        .await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn a_sighup_as_soon_as_the_gateway_listens_reloads_it_and_does_not_end_it() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!("{}watch_interval_ms: 0\n", test_config_yaml(mock.addr()));
    let served = spawn_serve(&write(dir.path(), "gateway.yaml", &text), "info");
    // (spawn_serve returns once "gateway listening" is logged.)
    served.signal("HUP");
    assert!(
        served.wait_for_log("policy reloaded", 1, Duration::from_secs(10)),
        "{}",
        served.log()
    );
    let ping = RawRequest::new("GET", "/supervisor/ping").to_bytes();
    assert_eq!(send_raw(served.addr, &ping).await.status, 200);
}

/// Replaces `name` in `dir` with `text` as an editor does: a new file
/// renamed over the old one.
fn replace(dir: &std::path::Path, name: &str, text: &str) {
    let fresh = dir.join(format!("{name}.new"));
    std::fs::write(&fresh, text).expect("write");
    std::fs::rename(&fresh, dir.join(name)).expect("rename");
}

#[tokio::test]
async fn a_changed_secrets_file_manifest_or_key_file_is_picked_up_without_a_signal() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let addon = dir.path().join("addons").join("m1");
    std::fs::create_dir_all(&addon).expect("manifest folder");
    std::fs::write(
        addon.join("config.yaml"),
        "slug: m1\nhassio_api: true\nhassio_role: backup\n",
    )
    .expect("manifest");
    write(dir.path(), "secrets.yaml", "m1: m1-token-first\n");
    write(
        dir.path(),
        "hs.key",
        "a-first-shared-secret-of-32-bytes-or-more\n",
    );
    let text = format!(
        "listen: 127.0.0.1:0\nupstream: http://{}\nadmin_listen: none\nwatch_interval_ms: 100\n\
         addon_manifests: addons\naddon_secrets: secrets.yaml\n\
         addons:\n  - {{ slug: signed, hassio_api: true, hassio_role: backup }}\n\
         signing:\n  keys:\n    - {{ kid: hs1, algorithm: HS256, secret_file: hs.key }}\n",
        mock.addr()
    );
    let config = write(dir.path(), "gateway.yaml", &text);
    let signed = crate::tokens::token_command(&[
        "issue",
        "--config",
        config.to_str().expect("utf-8"),
        "--addon",
        "signed",
    ]);
    let signed = signed.trim();
    let served = spawn_serve(&config, "info");
    let status = |token: &str| {
        let request = RawRequest::new("GET", "/backups")
            .header("Authorization", format!("Bearer {token}"))
            .to_bytes();
        async move { send_raw(served.addr, &request).await.status }
    };
    let reloaded = |times: usize| {
        assert!(
            served.wait_for_log("policy reloaded", times, Duration::from_secs(10)),
            "{}",
            served.log()
        );
    };
    for token in ["m1-token-first", signed] {
        assert_eq!(status(token).await, 200);
    }

    // The secrets file: the add-on's token rotated.
    replace(dir.path(), "secrets.yaml", "m1: m1-token-second\n");
    reloaded(1);
    // An unknown token is refused (403, as the SPEC has it).
    assert_eq!(status("m1-token-first").await, 403);
    assert_eq!(status("m1-token-second").await, 200);

    // The manifest: the add-on no longer asks for the Supervisor API.
    replace(&addon, "config.yaml", "slug: m1\nhassio_api: false\n");
    reloaded(2);
    assert_eq!(status("m1-token-second").await, 403);

    // A manifest that cannot be used is left out, and still watched: once
    // mended, the add-on is back.
    replace(
        &addon,
        "config.yaml",
        "slug: m1\nhassio_api: true\nhassio_role: root\n",
    );
    reloaded(3);
    assert!(served.log().contains("add-on manifest left out"));
    replace(
        &addon,
        "config.yaml",
        "slug: m1\nhassio_api: true\nhassio_role: backup\n",
    );
    reloaded(4);
    assert_eq!(status("m1-token-second").await, 200);

    // The key file: a new secret, so tokens signed with the old one fail.
    replace(
        dir.path(),
        "hs.key",
        "a-second-shared-secret-of-32-bytes-or-more\n",
    );
    reloaded(5);
    assert_eq!(status(signed).await, 401);
    let log = served.log();
    assert!(!log.contains("m1-token-"), "no token in the log: {log}");
    let (code, _) = served.stop();
    assert_eq!(code, Some(0));
    mock.stop().await;
}
