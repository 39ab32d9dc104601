//! The log as JSON lines, and the audit stream in a file of its own.

use crate::helpers::*;

#[tokio::test]
async fn json_logs_and_an_audit_file_with_every_decision_and_no_query() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("dir");
    let text = format!("{}audit_log: audit.jsonl\n", test_config_yaml(mock.addr()));
    let path = write(dir.path(), "gateway.yaml", &text);
    let served = spawn_serve_with(&path, "info", &["--log-format", "json"]);

    let allowed = RawRequest::new("GET", "/backups?secret=q-s3cr3t").token(TOK_BACKUP);
    assert_eq!(served.send(&allowed).await.status, 200);
    let denied = RawRequest::new("POST", "/addons/local_probe/security").token(TOK_MANAGER);
    assert_eq!(served.send(&denied).await.status, 403);
    let anonymous = RawRequest::new("GET", "/os/info");
    assert_eq!(served.send(&anonymous).await.status, 401);

    let audit_path = dir.path().join("audit.jsonl");
    let entries = audit_entries(&audit_path, 3).await;
    assert_eq!(entries.len(), 3);
    let first = &entries[0];
    assert_eq!(
        (
            first.caller.as_str(),
            first.slug.as_str(),
            first.role.as_str()
        ),
        ("addon", "local_backup", "backup")
    );
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("GET", "/backups")
    );
    assert_eq!((first.decision.as_str(), first.status), ("allowed", 200));
    assert!(first.rule.starts_with("roles.backup"), "{}", first.rule);
    assert!(
        first.time.ends_with('Z') && first.time.len() == 24,
        "{}",
        first.time
    );
    assert_eq!(
        (entries[1].decision.as_str(), entries[1].status),
        ("denied", 403)
    );
    assert_eq!(entries[1].role, "manager");
    assert_eq!(
        (entries[2].caller.as_str(), entries[2].status),
        ("anonymous", 401)
    );

    let (code, log) = served.stop();
    assert_eq!(code, Some(0));
    let mut decisions = 0;
    for line in log.lines().filter(|line| !line.trim().is_empty()) {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON line: {line}"));
        assert!(
            event["level"].is_string() && event["timestamp"].is_string(),
            "{line}"
        );
        if event["fields"]["message"] == "decision" {
            decisions += 1;
            assert!(event["fields"]["status"].is_u64(), "{line}");
        }
    }
    assert_eq!(decisions, 3, "{log}");
    let audit_text = std::fs::read_to_string(&audit_path).expect("audit");
    for secret in ["q-s3cr3t", TOK_BACKUP, TOK_MANAGER] {
        assert!(
            !audit_text.contains(secret) && !log.contains(secret),
            "{secret} leaked"
        );
    }
}
