//! Signed tokens end to end: `token keygen`, `issue`, `inspect` and `revoke`
//! against a running `serve`, with requests through it to the mock upstream.

use std::path::Path;
use std::time::Duration;

use crate::helpers::*;

/// `supervisor-gateway token ARGS...`, which must succeed; its output.
pub(crate) fn token_command(args: &[&str]) -> String {
    succeeded(&run_bin(&[&["token"][..], args].concat()))
}

/// A config with an Ed25519 key made by `token keygen`, an HMAC key that
/// may no longer sign, a revocation file and no clock leeway.
pub(crate) fn signing_config(dir: &Path, upstream: std::net::SocketAddr) -> String {
    let prefix = dir.join("ed-2026");
    let made = run_bin(&["token", "keygen", "--out", prefix.to_str().expect("utf-8")]);
    assert!(succeeded(&made).contains("ed-2026.pub.pem"));
    let mut text = test_config_yaml(upstream);
    text.push_str(
        "watch_interval_ms: 100\n\
         signing:\n  \
           leeway_s: 0\n  \
           revocation_file: revoked.yaml\n  \
           keys:\n    \
             - { kid: ed-2026, algorithm: EdDSA, public_key: ed-2026.pub.pem, private_key: ed-2026.pem }\n    \
             - { kid: hs-old, algorithm: HS256, secret: an-old-shared-secret-of-32-bytes-or-more, sign: false }\n",
    );
    let path = write(dir, "gateway.yaml", &text);
    path.to_str().expect("utf-8").to_owned()
}

/// The `jti` of a signed token, as `token inspect` shows it.
pub(crate) fn jti_of(token: &str) -> String {
    let shown = token_command(&["inspect", token]);
    shown
        .lines()
        .find_map(|line| line.trim().strip_prefix("\"jti\": \""))
        .and_then(|rest| rest.split('"').next())
        .expect("a jti line")
        .to_owned()
}

fn get(path: &str, token: &str) -> Vec<u8> {
    RawRequest::new("GET", path)
        .header("Authorization", format!("Bearer {token}"))
        .to_bytes()
}

fn assert_invalid_token(response: &RawResponse, reason: &str) {
    assert_eq!(response.status, 401, "{reason}");
    assert_eq!(response.json()["message"], reason);
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
}

#[tokio::test]
async fn issue_use_inspect_revoke_through_the_running_gateway() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("dir");
    let config = signing_config(dir.path(), mock.addr());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("ed-2026.pem"))
            .expect("private key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the private key is the owner's alone");
    }
    let served = spawn_serve(Path::new(&config), "info");
    let addr = served.addr;

    // Issue and use: the role is the add-on's configured one (backup).
    let token = token_command(&[
        "issue",
        "--config",
        &config,
        "--addon",
        "local_backup",
        "--ttl",
        "1h",
    ]);
    assert_eq!(send_raw(addr, &get("/backups", &token)).await.status, 200);
    let seen = mock.state().take();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/backups");
    let toggle = RawRequest::new("POST", "/addons/local_probe/security")
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .body(br#"{"protected": false}"#);
    assert_eq!(send_raw(addr, &toggle.to_bytes()).await.status, 403);

    // Inspect: says it did not verify, shows who and the jti.
    let shown = token_command(&["inspect", &token]);
    assert!(shown.starts_with("NOT VERIFIED"), "{shown}");
    assert!(shown.contains("\"sub\": \"local_backup\""), "{shown}");
    assert!(shown.contains("\"kid\": \"ed-2026\""), "{shown}");
    let jti = jti_of(&token);
    assert!(!shown.contains(token.split('.').nth(2).expect("signature")));

    // Revoke by jti: the running gateway reloads the list and refuses it.
    let revoked = token_command(&["revoke", "--config", &config, "--jti", &jti]);
    assert!(revoked.contains(&jti));
    assert!(
        served.wait_for_log("policy reloaded", 1, Duration::from_secs(10)),
        "{}",
        served.log()
    );
    assert!(
        served.log().contains("revoked_tokens=1"),
        "the reload says so"
    );
    let refused = send_raw(addr, &get("/backups", &token)).await;
    assert_invalid_token(&refused, "token revoked");
    assert!(
        mock.state().take().is_empty(),
        "a refused request never reaches the upstream"
    );

    // Deleting the revocation file does not lift what it revoked.
    std::fs::remove_file(dir.path().join("revoked.yaml")).expect("remove");
    assert!(
        served.wait_for_log("the revocation file is gone", 1, Duration::from_secs(10)),
        "{}",
        served.log()
    );
    assert_invalid_token(
        &send_raw(addr, &get("/backups", &token)).await,
        "token revoked",
    );

    // Nor does a config that no longer names it.
    let original = std::fs::read_to_string(&config).expect("config");
    let without: String = original
        .lines()
        .filter(|line| !line.contains("revocation_file"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&config, without).expect("config without the list");
    assert!(
        served.wait_for_log("no longer named", 1, Duration::from_secs(10)),
        "{}",
        served.log()
    );
    assert_invalid_token(
        &send_raw(addr, &get("/backups", &token)).await,
        "token revoked",
    );
    std::fs::write(&config, original).expect("config restored");

    // Revoke by add-on: every token it held until now is refused.
    let second = token_command(&["issue", "--config", &config, "--addon", "local_backup"]);
    assert_eq!(send_raw(addr, &get("/backups", &second)).await.status, 200);
    token_command(&["revoke", "--config", &config, "--addon", "local_backup"]);
    assert!(served.wait_for_log("policy reloaded", 2, Duration::from_secs(10)));
    assert_invalid_token(
        &send_raw(addr, &get("/backups", &second)).await,
        "token revoked",
    );

    // Other add-ons are untouched; a short-lived token expires.
    let short = token_command(&[
        "issue",
        "--config",
        &config,
        "--addon",
        "local_manager",
        "--ttl",
        "1s",
    ]);
    assert_eq!(send_raw(addr, &get("/backups", &short)).await.status, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_invalid_token(
        &send_raw(addr, &get("/backups", &short)).await,
        "token expired",
    );

    // A key that may no longer sign issues nothing; garbage is invalid; a
    // token that is not JWT-shaped stays an unknown static token (403).
    let refused = run_bin(&[
        "token",
        "issue",
        "--config",
        &config,
        "--addon",
        "local_manager",
        "--kid",
        "hs-old",
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("may no longer sign"));
    assert_invalid_token(
        &send_raw(addr, &get("/backups", "eyJ.eyJ.sig")).await,
        "invalid token",
    );
    assert_eq!(
        send_raw(addr, &get("/backups", "not-a-jwt")).await.status,
        403
    );

    let (code, log) = served.stop();
    assert_eq!(code, Some(0));
    for secret in [token.as_str(), second.as_str(), short.as_str()] {
        assert!(!log.contains(secret), "a token reached the log");
    }
}

#[tokio::test]
async fn a_bad_signing_section_is_refused_with_file_key_and_line() {
    let dir = tempfile::tempdir().expect("dir");
    for name in ["a", "b"] {
        let prefix = dir.path().join(name);
        token_command(&["keygen", "--out", prefix.to_str().expect("utf-8")]);
    }
    let base = test_config_yaml("127.0.0.1:9".parse().expect("addr"));
    // The section's third line, where its one key starts.
    let key_line = base.lines().count() + 3;
    let at_line = |line: usize, key: &str| format!("gateway.yaml:{line}: {key}");
    for (section, key, reason) in [
        (
            "signing:\n  keys:\n    - { kid: a, algorithm: HS256, secret: short }\n",
            at_line(key_line, "signing.keys[0].secret"),
            "at least 32 bytes",
        ),
        (
            "signing:\n  keys:\n    - { kid: a, algorithm: EdDSA, public_key: missing.pem, sign: false }\n",
            "signing.keys[0].public_key".to_owned(),
            "missing.pem",
        ),
        (
            "signing:\n  keys:\n    - { kid: a, algorithm: RS256, secret: x }\n",
            at_line(key_line, "signing.keys[0].algorithm"),
            // The value is not echoed: a token pasted there would be.
            ": not one of EdDSA, HS256",
        ),
        (
            "signing:\n  keys:\n    - { kid: a, algorithm: EdDSA, public_key: b.pub.pem }\n",
            "signing.keys[0].private_key".to_owned(),
            "needs private_key",
        ),
        (
            "signing:\n  keys:\n    - { kid: a, algorithm: EdDSA, public_key: b.pub.pem,\n        private_key: a.pem }\n",
            at_line(key_line + 1, "signing.keys[0].private_key"),
            "does not belong to public_key",
        ),
    ] {
        let path = write(dir.path(), "gateway.yaml", &format!("{base}{section}"));
        let output = run_bin(&["token", "issue", "--config", path.to_str().expect("utf-8"), "--addon", "local_probe"]);
        assert_eq!(output.status.code(), Some(2), "{section}");
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(message.contains("gateway.yaml:"), "{message}");
        assert!(message.contains(key.as_str()), "{message}");
        assert!(message.contains(reason), "{message}");
    }
}

#[tokio::test]
async fn a_missing_revocation_file_is_said_at_start_and_a_hidden_name_refused() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = signing_config(dir.path(), mock.addr());
    // No revocation file yet: an empty list, said once the gateway runs.
    let served = spawn_serve(Path::new(&config), "info");
    assert!(
        served.wait_for_log(
            "the revocation file does not exist",
            1,
            Duration::from_secs(10)
        ),
        "{}",
        served.log()
    );
    let (code, _) = served.stop();
    assert_eq!(code, Some(0));

    // A name with a line end in it (`|` keeps one) names no file one can
    // see: refused at its line (helper 40).
    let text = std::fs::read_to_string(&config).expect("config");
    let hidden = text.replace(
        "revocation_file: revoked.yaml",
        "revocation_file: |\n    revoked.yaml",
    );
    std::fs::write(&config, hidden).expect("write");
    let output = run_bin(&["validate", "--config", &config]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("signing.revocation_file: the file name has a line end"),
        "{stderr}"
    );
    mock.stop().await;
}
