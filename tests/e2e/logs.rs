//! The log as JSON lines, and the audit stream in a file of its own.

use crate::helpers::*;

/// The test config in front of `upstream`, with an audit log
/// (`audit.jsonl`, beside the config).
fn audit_config(upstream: std::net::SocketAddr) -> String {
    format!("{}audit_log: audit.jsonl\n", test_config_yaml(upstream))
}

#[tokio::test]
async fn json_logs_and_an_audit_file_with_every_decision_and_no_query() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = write(dir.path(), "gateway.yaml", &audit_config(mock.addr()));
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

#[tokio::test]
async fn sighup_reopens_a_rotated_audit_log() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = write(dir.path(), "gateway.yaml", &audit_config(mock.addr()));
    let served = spawn_serve(&path, "info");
    let backups = RawRequest::new("GET", "/backups").token(TOK_BACKUP);
    assert_eq!(served.send(&backups).await.status, 200);
    let audit = dir.path().join("audit.jsonl");
    let rotated = dir.path().join("audit.jsonl.1");
    assert_eq!(audit_entries(&audit, 1).await.len(), 1);

    // As logrotate does: move the file away, then SIGHUP.
    std::fs::rename(&audit, &rotated).expect("rotate");
    served.signal("HUP");
    assert!(served.wait_for_log("policy reloaded", 1, std::time::Duration::from_secs(10)));
    let denied = RawRequest::new("POST", "/os/update").token(TOK_BACKUP);
    assert_eq!(served.send(&denied).await.status, 403);
    let entries = audit_entries(&audit, 1).await;
    assert_eq!(
        entries.len(),
        1,
        "the new file has the line after the SIGHUP"
    );
    assert_eq!(
        (entries[0].path.as_str(), entries[0].status),
        ("/os/update", 403)
    );
    assert_eq!(audit_entries(&rotated, 1).await.len(), 1);
    let (code, _) = served.stop();
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn a_start_refused_for_a_taken_port_leaves_no_audit_file() {
    let mock = start_mock().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    let dir = tempfile::tempdir().expect("dir");
    let text = audit_config(mock.addr())
        .replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"));
    let path = write(dir.path(), "gateway.yaml", &text);
    let output = run_bin(&["serve", "--config", path.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert!(!dir.path().join("audit.jsonl").exists());
}

#[tokio::test]
async fn an_audit_log_on_stdout_reaches_a_socket_as_under_systemd() {
    use std::io::BufRead;
    // systemd gives a service's standard output as a socket to the
    // journal, which cannot be opened by the name /dev/stdout.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socket pair");
    ours.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("dir");
    let text = format!("{}audit_log: /dev/stdout\n", test_config_yaml(mock.addr()));
    let path = write(dir.path(), "gateway.yaml", &text);
    let stdout = std::process::Stdio::from(std::os::fd::OwnedFd::from(theirs));
    let served = spawn_serve_to(&path, "info", &[], stdout);
    let backups = RawRequest::new("GET", "/backups").token(TOK_BACKUP);
    assert_eq!(served.send(&backups).await.status, 200);
    let denied = RawRequest::new("POST", "/os/update").token(TOK_BACKUP);
    assert_eq!(served.send(&denied).await.status, 403);
    let mut lines = std::io::BufReader::new(ours).lines();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let line = lines.next().expect("an audit line").expect("read");
        let entry: supervisor_gateway::audit::Entry =
            serde_json::from_str(&line).expect("an entry");
        statuses.push((entry.path, entry.status));
    }
    assert_eq!(
        statuses,
        [("/backups".to_owned(), 200), ("/os/update".to_owned(), 403)]
    );
    let (code, _) = served.stop();
    assert_eq!(code, Some(0));
}

#[test]
fn the_standalone_mock_logs_each_bodys_length_and_sha256_at_debug() {
    use sha2::{Digest, Sha256};
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};

    let mut mock = Command::new(BIN)
        .args(["mock-upstream", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .spawn()
        .expect("the mock starts");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = mock.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let within = std::time::Duration::from_secs(10);
    // The next line holding `needle`, each waited for at most `within`.
    let line_with = |needle: &str| {
        std::iter::from_fn(|| lines.recv_timeout(within).ok()).find(|line| line.contains(needle))
    };
    let listening = line_with("mock upstream listening").expect("the mock says where it listens");
    let addr = listening
        .split_whitespace()
        .find_map(|word| word.strip_prefix("addr="))
        .expect("an address")
        .to_owned();

    let body = b"a backup's bytes, to be checked on the other side";
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    stream.set_read_timeout(Some(within)).expect("timeout");
    let head = format!(
        "POST /backups/new/upload HTTP/1.1\r\nHost: mock\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("head");
    stream.write_all(body).expect("body");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");

    let digest = hex::encode(Sha256::digest(body));
    let answered = line_with("mock upstream answered");
    let _ = mock.kill();
    let _ = mock.wait();
    let answered = answered.expect("a line for the upload");
    assert!(
        answered.contains(&format!("body_bytes={}", body.len())),
        "{answered}"
    );
    assert!(answered.contains(&digest), "{answered}");
}

#[tokio::test]
async fn a_refused_target_is_logged_cut_where_a_hidden_query_or_parameters_begin() {
    let mock = start_mock().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = write(dir.path(), "gateway.yaml", &audit_config(mock.addr()));
    let served = spawn_serve(&path, "info");
    // Each is refused at step 2 and must not show what follows its cut.
    let targets = [
        ("/backups;token=s3cr3t-semicolon", "/backups…"),
        ("/backups%3Ftoken=s3cr3t-encoded", "/backups…"),
        ("/backups%253ftoken=s3cr3t-twice", "/backups…"),
        ("/backups/..%2F%23s3cr3t-fragment", "/backups/..…"),
        ("/backups%25%33%46token=s3cr3t-each-byte", "/backups…"),
        ("/backups%%33Ftoken=s3cr3t-loose", "/backups…"),
    ];
    for (target, _) in targets {
        let request = RawRequest::new("GET", target).token(TOK_BACKUP);
        assert_eq!(served.send(&request).await.status, 400, "{target}");
    }
    // A method of the client's own making is logged as OTHER (405).
    let odd = RawRequest::new("S3CR3TMETHOD", "/backups").token(TOK_BACKUP);
    assert_eq!(served.send(&odd).await.status, 405);
    let audit = audit_entries(&dir.path().join("audit.jsonl"), targets.len() + 1).await;
    let logged: Vec<&str> = audit.iter().map(|entry| entry.path.as_str()).collect();
    let mut expected: Vec<&str> = targets.iter().map(|(_, shown)| *shown).collect();
    expected.push("/backups");
    assert_eq!(logged, expected);
    assert_eq!(
        audit.last().map(|entry| entry.method.as_str()),
        Some("OTHER")
    );
    let (code, log) = served.stop();
    assert_eq!(code, Some(0));
    assert!(log.contains("path=/backups…"), "{log}");
    let audit_text = std::fs::read_to_string(dir.path().join("audit.jsonl")).expect("audit");
    assert!(
        !log.to_lowercase().contains("s3cr3t") && !audit_text.to_lowercase().contains("s3cr3t"),
        "{log}\n{audit_text}"
    );
    assert!(mock.state().take().is_empty(), "refused, so never sent on");
}
