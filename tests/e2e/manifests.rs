//! Add-on manifests from a repository-like directory with tokens from a
//! secrets file, the `addons` view of the shipped examples, and `advise` on
//! an audit log the running gateway wrote.

use std::path::Path;
use std::time::Duration;

use crate::helpers::*;

fn manifest(dir: &Path, folder: &str, name: &str, text: &str) {
    let folder = dir.join("addons").join(folder);
    std::fs::create_dir_all(&folder).expect("folder");
    std::fs::write(folder.join(name), text).expect("manifest");
}

fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[tokio::test]
async fn manifests_and_secrets_by_token_and_by_hash_serve_and_advise() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("dir");
    manifest(
        dir.path(),
        "over",
        "config.yaml",
        "slug: over\nhassio_api: true\nhassio_role: manager\n",
    );
    manifest(
        dir.path(),
        "jsonic",
        "config.json",
        r#"{"slug": "jsonic", "hassio_api": true, "hassio_role": "backup"}"#,
    );
    manifest(
        dir.path(),
        "broken",
        "config.yaml",
        "slug: broken\nhassio_api: maybe\n",
    );
    std::fs::write(
        dir.path().join("secrets.yaml"),
        format!(
            "over: over-token-1\njsonic: {{ sha256: {} }}\nbroken: broken-token-1\n",
            sha256_hex("jsonic-token-1")
        ),
    )
    .expect("secrets");
    let text = format!(
        "listen: 127.0.0.1:0\nupstream: http://{}\nadmin_listen: none\naddon_manifests: addons\naddon_secrets: secrets.yaml\naudit_log: audit.jsonl\n",
        mock.addr()
    );
    let config = write(dir.path(), "gateway.yaml", &text);
    let served = spawn_serve(&config, "info");
    let log = served.log();
    assert!(
        log.contains("broken/config.yaml: hassio_api: expected true or false"),
        "{log}"
    );

    // By token: a manager; by hash: a backup add-on; the broken one is not loaded.
    for (token, method, path, status) in [
        ("over-token-1", "GET", "/backups", 200),
        ("over-token-1", "GET", "/addons/self/info", 200),
        ("jsonic-token-1", "GET", "/backups", 200),
        ("jsonic-token-1", "GET", "/os/info", 200),
        ("jsonic-token-1", "POST", "/os/update", 403), // backup may not update the OS
        ("broken-token-1", "GET", "/backups", 403),
    ] {
        let request = RawRequest::new(method, path).token(token).to_bytes();
        let answer = send_raw(served.addr, &request).await;
        assert_eq!(answer.status, status, "{token} {method} {path}");
    }

    // The audit log lands, then advise reads it: `over` only used what backup allows.
    let audit = dir.path().join("audit.jsonl");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while supervisor_gateway::audit::read(&audit).map_or(0, |(entries, _)| entries.len()) < 6
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, _) = served.stop();
    assert_eq!(code, Some(0));
    let config = config.to_str().expect("utf-8");
    let advice = run_bin(&[
        "advise",
        "--config",
        config,
        "--audit",
        audit.to_str().expect("utf-8"),
        "--format",
        "json",
    ]);
    assert!(
        advice.status.success(),
        "{}",
        String::from_utf8_lossy(&advice.stderr)
    );
    let advice: serde_json::Value = serde_json::from_slice(&advice.stdout).expect("json");
    let over = row_where(&advice, "slug", "over");
    assert_eq!(over["smallest_role"], "backup", "{over}");
    assert_eq!(over["requests"], 2);
    let jsonic = row_where(&advice, "slug", "jsonic");
    assert_eq!(jsonic["smallest_role"], "backup", "{jsonic}");
    assert!(jsonic["summary"]
        .as_str()
        .expect("summary")
        .contains("keeps backup"));
}

#[test]
fn the_addons_view_of_the_shipped_example_manifests() {
    let output = run_bin(&[
        "addons",
        "--config",
        "config/example-manifests.yaml",
        "--format",
        "json",
    ]);
    // The example's broken manifest is left out: its rows still print, and
    // the exit code says that one is missing.
    assert_eq!(output.status.code(), Some(1));
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let summary: Vec<(String, String, u64)> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            (
                row["slug"].as_str().expect("slug").to_owned(),
                row["role"].as_str().expect("role").to_owned(),
                row["rating"].as_u64().expect("rating"),
            )
        })
        .collect();
    // Ratings worked out by hand from SPEC.md for each example manifest.
    let expected = [
        ("backups_to_cloud", "backup", 7), // +1 own AppArmor profile, +1 signed
        ("legacy_admin", "admin", 3), // -1 AppArmor off, +1 auth_api, -2 admin; host_pid withheld
        ("mqtt_bridge", "default", 7), // +2 ingress
        ("system_tools", "manager", 2), // -1 capabilities, -1 manager, -1 host network
    ];
    let expected: Vec<(String, String, u64)> = expected
        .iter()
        .map(|(slug, role, rating)| ((*slug).to_owned(), (*role).to_owned(), *rating))
        .collect();
    assert_eq!(summary, expected);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("broken/config.yaml: hassio_role"),
        "{stderr}"
    );
    let text = run_bin(&["addons", "--config", "config/example-manifests.yaml"]);
    let table = String::from_utf8_lossy(&text.stdout);
    assert!(table.starts_with("slug "), "{table}");
    assert!(table.contains("full_access, docker_api"), "{table}");
}

#[test]
fn addons_exits_1_only_when_a_manifest_is_left_out() {
    let dir = tempfile::tempdir().expect("dir");
    manifest(
        dir.path(),
        "fine",
        "config.yaml",
        "slug: fine\nhassio_api: true\nhassio_role: backup\n",
    );
    // A token for an add-on that has no manifest: a warning, not a gap.
    std::fs::write(
        dir.path().join("secrets.yaml"),
        "fine: fine-token-1\nnobody: nobody-token-1\n",
    )
    .expect("secrets");
    let config = write(
        dir.path(),
        "gateway.yaml",
        "upstream: http://127.0.0.1:1\nadmin_listen: none\naddon_manifests: addons\naddon_secrets: secrets.yaml\n",
    );
    let config = config.to_str().expect("utf-8");
    let output = run_bin(&["addons", "--config", config]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("secrets file entry not used"), "{stderr}");
    assert!(!stderr.contains("nobody-token-1"), "{stderr}");

    manifest(
        dir.path(),
        "broken",
        "config.yaml",
        "slug: broken\nhassio_api: maybe\n",
    );
    let output = run_bin(&["addons", "--config", config]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("manifest left out"), "{stderr}");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.lines().any(|line| line.starts_with("fine ")),
        "{table}"
    );
}
