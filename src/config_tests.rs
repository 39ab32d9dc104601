use super::errors::{edits, near_miss, not_a_number, KNOWN_KEYS};
use super::*;

const MINIMAL: &str = "upstream: http://127.0.0.1:8081\n";

fn error_of(text: &str) -> ConfigError {
    match Config::from_yaml(text, "test.yaml") {
        Ok(_) => panic!("config should be refused:\n{text}"),
        Err(error) => error,
    }
}

/// The error of a config that must be refused at `key` on `line`.
fn refused_at(text: &str, key: &str, line: u64) -> ConfigError {
    let error = error_of(text);
    assert_eq!(
        (error.key.as_str(), error.line),
        (key, line),
        "{text}\n{error}"
    );
    error
}

#[test]
fn a_minimal_config_takes_the_defaults() {
    let config = Config::from_yaml(MINIMAL, "test.yaml").expect("minimal config");
    assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
    assert_eq!(config.upstream.as_str(), "127.0.0.1:8081");
    assert!(config.table.is_none());
    assert_eq!(config.limits, Limits::default());
}

#[test]
fn addon_fields_default_as_in_the_supervisor() {
    let text = format!("{MINIMAL}addons:\n  - slug: example\n    token: t0k3n\n");
    let config = Config::from_yaml(&text, "test.yaml").expect("config");
    let addon = &config.addons[0];
    assert_eq!(addon.role, Role::Default);
    assert!(!addon.hassio_api && !addon.homeassistant_api && !addon.auth_api);
    assert_eq!(
        config.callers.identify(Some(b"t0k3n")).slug(),
        Some("example")
    );
}

#[test]
fn a_token_may_be_given_as_its_sha256() {
    let digest = hex::encode(TokenDigest::of(b"hashed-token").0);
    let text = format!("{MINIMAL}tokens:\n  cli: {{ sha256: {digest} }}\n");
    let config = Config::from_yaml(&text, "test.yaml").expect("config");
    assert_eq!(config.callers.identify(Some(b"hashed-token")).kind(), "cli");
}

#[test]
fn errors_name_file_key_and_line() {
    let cases = [
        ("listen: nowhere\nupstream: http://127.0.0.1:1\n", "listen", 1),
        ("upstream: https://127.0.0.1:1\n", "upstream", 1),
        ("upstream: http://127.0.0.1:1/api\n", "upstream", 1),
        (
            "upstream: http://127.0.0.1:1\naddons:\n  - slug: bad/slug\n    token: x1\n",
            "addons[0].slug",
            3,
        ),
        (
            "upstream: http://127.0.0.1:1\naddons:\n  - slug: a\n    token: x1\n  - slug: a\n    token: x2\n",
            "addons[1].slug",
            5,
        ),
        (
            "upstream: http://127.0.0.1:1\ntokens:\n  cli: { sha256: nothex }\n",
            "tokens.cli",
            3,
        ),
    ];
    for (text, key, line) in cases {
        let error = error_of(text);
        assert_eq!((error.key.as_str(), error.line), (key, line), "{text}");
        assert_eq!(error.file, "test.yaml");
    }
}

#[test]
fn parse_errors_name_the_key_by_its_path_and_line() {
    let text = "upstream: http://127.0.0.1:1\naddons:\n  - slug: a\n    token: x1\n    hassio_api: maybe\n";
    let error = error_of(text);
    assert_eq!(
        (error.key.as_str(), error.line),
        ("addons[0].hassio_api", 5)
    );
    // In flow style too (it said `(document)`), and in the second entry.
    let text = "upstream: http://127.0.0.1:1\naddons:\n  - { slug: a, token: x1 }\n  - { slug: b, token: x2, hassio_role: root }\n";
    let error = error_of(text);
    assert_eq!(
        (error.key.as_str(), error.line),
        ("addons[1].hassio_role", 4)
    );
    // A key given twice, below the top.
    let text =
        "upstream: http://127.0.0.1:1\nlimits:\n  send_timeout_ms: 1\n  send_timeout_ms: 2\n";
    let error = error_of(text);
    assert_eq!(
        (error.key.as_str(), error.line),
        ("limits.send_timeout_ms", 4)
    );
    assert_eq!(error.reason, "this key is given twice");
    // A missing key, below the top.
    let text =
        "upstream: http://127.0.0.1:1\nsigning:\n  keys:\n    - kid: a\n      algorithm: HS256\n";
    let error = error_of(text);
    assert!(error.key.starts_with("signing.keys[0]."), "{error}");
    let unknown = error_of("upstream: http://127.0.0.1:1\nlistn: 1\n");
    assert_eq!(unknown.line, 2);
    assert_eq!(unknown.key, "listn");
}

#[test]
fn a_limit_that_is_not_a_whole_number_says_so() {
    for value in ["\"abc\"", "-5", "1.5", "99999999999999999999999"] {
        let text = format!("upstream: http://127.0.0.1:1\nlimits:\n  send_timeout_ms: {value}\n");
        let error = error_of(&text);
        assert_eq!(
            (error.key.as_str(), error.line),
            ("limits.send_timeout_ms", 3),
            "{value}"
        );
        assert_eq!(
            error.reason, "not a whole number of 0 or more (or too large)",
            "{value}"
        );
    }
    // Other messages are left as they were.
    assert_eq!(not_a_number("invalid type, expected a boolean"), None);
    assert_eq!(not_a_number("invalid user"), None);
}

#[test]
fn a_shared_token_is_refused_without_showing_it() {
    let text = "upstream: http://127.0.0.1:1\ntokens:\n  cli: s3cr3t-value\naddons:\n  - slug: a\n    token: s3cr3t-value\n";
    let error = error_of(text);
    assert_eq!(error.key, "addons[0].token");
    assert!(error.reason.contains("tokens.cli"));
    assert!(!error.to_string().contains("s3cr3t"));
}

#[test]
fn a_token_of_the_wrong_type_is_not_echoed() {
    let text = "upstream: http://127.0.0.1:1\naddons:\n  - slug: a\n    token: [s3cr3t-value]\n";
    let error = error_of(text);
    assert!(!error.to_string().contains("s3cr3t"), "{error}");
    let role = error_of("upstream: http://127.0.0.1:1\naddons:\n  - slug: a\n    token: x1\n    hassio_role: s3cr3t\n");
    assert!(!role.to_string().contains("s3cr3t"), "{role}");
    assert_eq!(role.key, "addons[0].hassio_role");
}

#[test]
fn empty_tokens_and_the_slug_self_are_refused() {
    assert_eq!(
        error_of("upstream: http://127.0.0.1:1\ntokens:\n  cli: ''\n").key,
        "tokens.cli"
    );
    let text = "upstream: http://127.0.0.1:1\naddons:\n  - slug: self\n    token: x1\n";
    assert_eq!(error_of(text).key, "addons[0].slug");
}

#[test]
fn the_upstream_token_debug_form_is_redacted() {
    let text = format!("{MINIMAL}upstream_token: gw-s3cr3t\n");
    let config = Config::from_yaml(&text, "test.yaml").expect("config");
    assert!(!format!("{:?}", config.upstream_token).contains("s3cr3t"));
}

#[test]
fn missing_unknown_and_duplicate_keys_are_named() {
    let missing =
        error_of("upstream: http://127.0.0.1:1\naddons:\n  - slug: a\n    hassio_api: true\n");
    assert_eq!((missing.key.as_str(), missing.line), ("addons[0].token", 3));
    assert!(
        missing.reason.contains("needs a token"),
        "{}",
        missing.reason
    );
    let no_upstream = error_of("addons: []\n");
    assert_eq!(
        (no_upstream.key.as_str(), no_upstream.line),
        ("upstream", 1)
    );
    let duplicate = error_of("upstream: http://127.0.0.1:1\nupstream: http://127.0.0.1:2\n");
    assert_eq!((duplicate.key.as_str(), duplicate.line), ("upstream", 2));
    assert_eq!(duplicate.reason, "this key is given twice");
    let unknown = error_of("upstream: http://127.0.0.1:1\nlistn: 1\n");
    assert_eq!(unknown.key, "listn");
    assert!(
        unknown
            .reason
            .starts_with("unknown key; expected one of listen, upstream"),
        "{}",
        unknown.reason
    );
}

#[test]
fn an_upstream_with_credentials_is_refused_without_echoing_them() {
    let error = error_of("upstream: http://user:s3cr3t@127.0.0.1:1\n");
    assert_eq!(error.key, "upstream");
    assert!(!error.to_string().contains("s3cr3t"));
}

#[test]
fn an_upstream_port_or_host_the_gateway_cannot_connect_to_is_refused() {
    for upstream in [
        "http://127.0.0.1:notaport",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:0",
        "http://127.0.0.1:+8081",
        "'http://127.0.0.1:'",
        "http://[garbage]:1",
        "http://a..b:1",
        // Numbers a resolver reads as 127.0.0.1, and others no host has.
        "http://127.1:8081",
        "http://2130706433:8081",
        "http://0x7f000001:8081",
        "http://999.1.1.1",
        "http://1.2.3.4.5",
        "http://host.0",
        "http://-a-",
        "http://0.0.0.0:8081",
        "http://[::]:8081",
        "http://0.1.2.3:8081",
        "http://255.255.255.255:8081",
        "http://224.0.0.1:8081",
        "http://[ff02::1]:8081",
        "http://[fe80::1]:8081",
        "http://[::127.0.0.1]:8081",
    ] {
        let error = refused_at(&format!("\nupstream: {upstream}\n"), "upstream", 2);
        let text = error.to_string();
        assert!(
            text.contains("port") || text.contains("host"),
            "{upstream}: {text}"
        );
    }
    for upstream in [
        "http://supervisor",
        "http://my_addon.local:80",
        "http://[::1]:8081",
        "http://10.0.0.1:65535",
        "http://[fd00::1]:8081",
        "http://[::ffff:10.0.0.1]:8081",
        "http://172.30.32.2:80",
    ] {
        let text = format!("upstream: {upstream}\n");
        let loaded = Config::from_yaml(&text, "test.yaml");
        assert!(loaded.is_ok(), "{upstream}: {:?}", loaded.err());
    }
}

#[test]
fn an_upstream_that_is_the_gateways_own_listener_is_refused() {
    for (listen, upstream) in [
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080"),
        ("0.0.0.0:8080", "http://localhost:8080"),
        ("[::]:8080", "http://[::1]:8080"),
        ("127.0.0.1:80", "http://127.0.0.1"),
        ("127.0.0.1:8080", "http://[::ffff:127.0.0.1]:8080"),
        ("0.0.0.0:8080", "http://127.0.0.2:8080"),
    ] {
        let text = format!("listen: '{listen}'\nupstream: {upstream}\n");
        let error = refused_at(&text, "upstream", 2);
        assert!(error.to_string().contains("own listen address"), "{error}");
    }
    // Another port, or another address the gateway does not listen on.
    for (listen, upstream) in [
        ("127.0.0.1:8080", "http://127.0.0.1:8081"),
        ("127.0.0.1:8080", "http://10.0.0.1:8080"),
        ("127.0.0.1:8080", "http://supervisor:8080"),
        ("127.0.0.1:8080", "http://127.0.0.2:8080"),
    ] {
        let text = format!("listen: {listen}\nupstream: {upstream}\n");
        assert!(Config::from_yaml(&text, "test.yaml").is_ok(), "{text}");
    }
    // One of the machine's own addresses while the gateway listens on all
    // of them (helper 81: the machine's eth0 address looped). Loopback is
    // always one; an address of TEST-NET-2 is no machine's.
    assert!(is_local("127.0.0.1".parse().expect("ip")));
    assert!(!is_local("198.51.100.77".parse().expect("ip")));
    // Nor may it be the admin listener.
    let text = "admin_listen: 127.0.0.1:8099\nupstream: http://127.0.0.1:8099\n";
    let error = refused_at(text, "upstream", 2);
    assert!(error.to_string().contains("admin listener"), "{error}");
}

#[test]
fn the_upstream_token_may_not_be_a_callers_token() {
    let error = error_of(
        "upstream: http://127.0.0.1:1\nupstream_token: same-token\ntokens:\n  cli: same-token\n",
    );
    assert_eq!(error.key, "upstream_token");
    assert!(error.reason.contains("tokens.cli") && !error.reason.contains("same-token"));
}

#[test]
fn limits_that_cannot_work_are_refused() {
    for (line, key) in [
        (
            "upstream_response_timeout_ms: 0",
            "limits.upstream_response_timeout_ms",
        ),
        ("header_read_timeout_ms: 0", "limits.header_read_timeout_ms"),
        ("send_timeout_ms: 0", "limits.send_timeout_ms"),
        // (Not "none": every pause in a body was a 408; helper 71.)
        ("body_idle_timeout_ms: 0", "limits.body_idle_timeout_ms"),
        ("max_header_bytes: 100", "limits.max_header_bytes"),
        ("max_connections: 0", "limits.max_connections"),
        (
            "max_websocket_message_bytes: 1000",
            "limits.max_websocket_message_bytes",
        ),
        // Too large to work: a semaphore of that many permits panics, a
        // header array of that many entries is allocated per request.
        (
            "max_connections: 18446744073709551615",
            "limits.max_connections",
        ),
        ("max_connections: 1000001", "limits.max_connections"),
        ("max_headers: 100000000", "limits.max_headers"),
        ("max_header_bytes: 1048577", "limits.max_header_bytes"),
        (
            "max_websocket_message_bytes: 268435457",
            "limits.max_websocket_message_bytes",
        ),
        ("upstream_pool_size: 100001", "limits.upstream_pool_size"),
        (
            "max_websockets_per_addon: 1000001",
            "limits.max_websockets_per_addon",
        ),
        (
            "max_event_streams_per_addon: 1000001",
            "limits.max_event_streams_per_addon",
        ),
        (
            "max_held_body_bytes: 1099511627777",
            "limits.max_held_body_bytes",
        ),
    ] {
        let text = format!("{MINIMAL}limits:\n  {line}\n");
        let error = error_of(&text);
        assert_eq!(error.key, key, "{line}");
        assert_eq!(error.line, 3, "{line}");
    }
    // The bounds themselves are allowed.
    let text = format!(
        "{MINIMAL}limits:\n  max_connections: 1000000\n  max_headers: 1000\n  \
         max_header_bytes: 1048576\n  max_websocket_message_bytes: 268435456\n  \
         upstream_pool_size: 100000\n  max_event_streams_per_addon: 1000000\n  \
         max_held_body_bytes: 1099511627776\n"
    );
    let limits = Config::from_yaml(&text, "test.yaml")
        .expect("config")
        .limits;
    assert_eq!(
        (
            limits.max_connections,
            limits.max_headers,
            limits.upstream_pool_size,
            limits.max_event_streams_per_addon,
            limits.max_held_body_bytes,
        ),
        (1_000_000, 1000, 100_000, 1_000_000, 1 << 40)
    );
}

#[test]
fn a_limit_that_cannot_work_is_named_with_its_own_line() {
    // Not the line of the first key under `limits` (helper 61).
    for (text, key, line) in [
        (
            "limits:\n  send_timeout_ms: 4000\n  max_body_bytes: 100\n  max_held_body_bytes: 1099511627777\n",
            "limits.max_held_body_bytes",
            5,
        ),
        (
            "limits:\n  max_headers: 10\n\n  max_header_bytes: 100\n",
            "limits.max_header_bytes",
            5,
        ),
        (
            "limits: {max_headers: 10,\n  upload_paths: [a]}\n",
            "limits.upload_paths",
            3,
        ),
    ] {
        let error = error_of(&format!("{MINIMAL}{text}"));
        assert_eq!((error.key.as_str(), error.line), (key, line), "{text}");
    }
}

#[test]
fn workers_default_to_one_per_cpu_and_are_capped() {
    let workers = |line: &str| {
        let text = format!("{MINIMAL}{line}");
        Config::from_yaml(&text, "test.yaml")
            .expect("config")
            .workers
    };
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(workers(""), cpus);
    assert_eq!(workers("workers: 0\n"), cpus);
    assert_eq!(workers("workers: 3\n"), 3);
    assert_eq!(workers("workers: 100000\n"), MAX_WORKERS);
    assert_eq!(error_of(&format!("{MINIMAL}workers: -1\n")).line, 2);
}

#[test]
fn reuse_port_is_off_unless_asked_for() {
    let reuse_port = |line: &str| {
        let text = format!("{MINIMAL}{line}");
        Config::from_yaml(&text, "test.yaml")
            .expect("config")
            .reuse_port
    };
    assert!(!reuse_port(""));
    assert!(!reuse_port("reuse_port: false\n"));
    assert!(reuse_port("reuse_port: true\n"));
    assert!(reuse_port("reuse_port: TRUE\n"));
    // Only true and false: YAML 1.1's other spellings are refused by key
    // and line, in every yes-or-no setting.
    for (line, key) in [
        ("reuse_port: sometimes\n", "reuse_port"),
        ("reuse_port: yes\n", "reuse_port"),
        ("reuse_port: on\n", "reuse_port"),
        ("reuse_port: y\n", "reuse_port"),
        ("identity_headers: off\n", "identity_headers"),
        ("reuse_port: 1\n", "reuse_port"),
    ] {
        let error = error_of(&format!("{MINIMAL}{line}"));
        assert_eq!(error.line, 2, "{line}");
        assert!(error.to_string().contains(key), "{error}");
    }
}

/// A config in `dir` that reads add-on manifests (`addons/<folder>/config.yaml`
/// for each of `manifests`) and the secrets file `secrets`, plus `more`.
fn with_manifests(
    dir: &std::path::Path,
    manifests: &[(&str, &str)],
    secrets: &str,
    more: &str,
) -> std::path::PathBuf {
    for (folder, text) in manifests {
        let folder = dir.join("addons").join(folder);
        std::fs::create_dir_all(&folder).expect("dir");
        std::fs::write(folder.join("config.yaml"), text).expect("manifest");
    }
    std::fs::write(dir.join("secrets.yaml"), secrets).expect("secrets");
    let path = dir.join("gateway.yaml");
    let text =
        "upstream: http://127.0.0.1:1\naddon_manifests: addons\naddon_secrets: secrets.yaml\n";
    std::fs::write(&path, format!("{text}{more}")).expect("config");
    path
}

#[test]
fn a_manifest_left_out_for_its_slug_gives_its_token_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let path = with_manifests(
        dir.path(),
        &[
            ("a", "slug: dup\nhassio_api: true\nhassio_role: manager\n"),
            ("b", "slug: dup\nhassio_api: true\nhassio_role: admin\n"),
            (
                "c",
                "slug: inline_one\nhassio_api: true\nhassio_role: admin\n",
            ),
        ],
        "dup: dup-token\ninline_one: manifest-token\n",
        "addons:\n  - { slug: inline_one, token: inline-token }\n",
    );
    let config = Config::load(&path).expect("loads, with problems");
    // The inline entry wins and the manifest's token opens nothing.
    assert_eq!(
        config.callers.identify(Some(b"manifest-token")).kind(),
        "unknown"
    );
    let inline = config.callers.identify(Some(b"inline-token"));
    assert_eq!(
        (inline.slug(), inline.role()),
        (Some("inline_one"), Some(Role::Default))
    );
    // Of two folders with one slug, the first (by name) is used.
    let dup = config.callers.identify(Some(b"dup-token"));
    assert_eq!(dup.role(), Some(Role::Manager));
    let problems: Vec<String> = config
        .manifest_problems
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("secrets.yaml: line 2: ") && p.contains("no manifest in use")),
        "{problems:?}"
    );
    // The unused secret cost no manifest, and is not said to have.
    let costs: Vec<ProblemCost> = config.manifest_problems.iter().map(|p| p.cost).collect();
    let unused = costs
        .iter()
        .filter(|cost| **cost == ProblemCost::SecretUnused);
    assert_eq!(unused.count(), 1, "{costs:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("c/config.yaml") && p.contains("configured inline")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("b/config.yaml") && p.contains("a/config.yaml")),
        "{problems:?}"
    );
}

#[test]
fn the_admin_listener_needs_its_own_address() {
    let error = error_of(
        "upstream: http://127.0.0.1:1\nlisten: 127.0.0.1:8080\nadmin_listen: 127.0.0.1:8080\n",
    );
    assert_eq!((error.key.as_str(), error.line), ("admin_listen", 3));
    let off = Config::from_yaml(
        "upstream: http://127.0.0.1:1\nadmin_listen: none\n",
        "t.yaml",
    )
    .expect("config");
    assert_eq!(off.admin_listen, None);
    let ephemeral =
        "upstream: http://127.0.0.1:1\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n";
    assert!(
        Config::from_yaml(ephemeral, "t.yaml").is_ok(),
        "two ephemeral ports differ"
    );
}

#[test]
fn a_leeway_over_an_hour_is_refused_not_cut() {
    let text = "upstream: http://127.0.0.1:1\nsigning:\n  leeway_s: 4000\n  keys:\n    - { kid: a, algorithm: HS256, secret: 0123456789abcdef0123456789abcdef }\n";
    let error = error_of(text);
    assert_eq!(error.key, "signing.leeway_s");
}

#[test]
fn a_key_file_that_is_a_device_is_refused_without_reading_it() {
    let text = "upstream: http://127.0.0.1:1\naddons:\n  - slug: a\n    hassio_api: true\nsigning:\n  keys:\n    - { kid: k, algorithm: HS256, secret_file: /dev/zero }\n";
    let error = error_of(text);
    assert_eq!(error.key, "signing.keys[0].secret_file");
    assert!(error.reason.contains("not a regular file"), "{error}");
}

#[test]
fn a_key_run_into_its_value_is_not_echoed() {
    // Flow style without a space after the colon makes one long key of
    // "token:value"; so do `=` and a missing colon.
    for written in [
        "token:s3cr3t-value",
        "token=s3cr3t-value",
        "token s3cr3t-value",
    ] {
        let text = format!("upstream: http://127.0.0.1:1\naddons:\n  - {{ slug: a, {written} }}\n");
        let error = error_of(&text);
        assert!(!error.to_string().contains("s3cr3t"), "{error}");
        assert_eq!(error.key, "addons[0].token...", "{error}");
        assert_eq!(error.line, 3, "{error}");
        assert!(error.reason.contains("not a key"), "{error}");
    }
    // A token pasted without its key, in any mapping, is not shown either.
    for text in [
        "upstream: http://127.0.0.1:1\naddons:\n  - { slug: a, S3cr3tZz9876543210abcdef }\n",
        "upstream: http://127.0.0.1:1\naddons:\n  - { slug: a, example-s3cr3t-token }\n",
        "upstream: http://127.0.0.1:1\ntokens: { homeassistant: x1, s3cr3t-key: 5 }\n",
        "upstream: http://127.0.0.1:1\naddons:\n  - { slug: a, S3cr3t:abc }\n",
    ] {
        let error = error_of(text);
        assert!(!error.to_string().contains("3cr3t"), "{error}");
        assert!(error.key.ends_with("(key)"), "{error}");
    }
    // A plain misspelt key is still named.
    let error = error_of("upstream: http://127.0.0.1:1\naddons:\n  - { slug: a, tokn: x1 }\n");
    assert_eq!(error.key, "addons[0].tokn");
    assert!(error.reason.starts_with("unknown key; expected"), "{error}");
}

#[test]
fn a_watch_interval_under_100_ms_is_refused_and_0_turns_watching_off() {
    let error = error_of(&format!("{MINIMAL}watch_interval_ms: 1\n"));
    assert_eq!((error.key.as_str(), error.line), ("watch_interval_ms", 2));
    let interval = |ms: u64| {
        let text = format!("{MINIMAL}watch_interval_ms: {ms}\n");
        Config::from_yaml(&text, "test.yaml")
            .expect("config")
            .watch_interval
    };
    assert_eq!(interval(0), None);
    assert_eq!(interval(100), Some(Duration::from_millis(100)));
}

#[test]
fn a_second_yaml_document_is_named_as_such() {
    let error = error_of(&format!("{MINIMAL}---\nlisten: 127.0.0.1:9\n"));
    assert_eq!((error.key.as_str(), error.line), ("(document)", 3));
    assert!(error.reason.contains("one document"), "{error}");
    assert!(!error.reason.contains("from_str"), "{error}");
}

#[test]
fn unknown_keys_are_shown_only_as_misspellings_of_known_ones() {
    let known = ["slug", "token", "hassio_api", "listen"];
    // Only misspellings: a key with a known word in it may be a token.
    for (key, shown) in [
        ("tokn", true),
        ("listen_on", false),
        ("example-addon-token", false),
        ("mysecretpassword", false),
        ("hasio_api", true),
        ("hassio-api", true),
        ("slgu", true),
        ("sl", false),
        ("a1b2c3d4e5f6a7b8", false),
        ("token:abc", false),
    ] {
        assert_eq!(near_miss(key, &known), shown, "{key}");
    }
    assert_eq!(edits("kitten", "sitting"), 3);
    assert_eq!(edits("", "abc"), 3);
    assert_eq!(edits("same", "same"), 0);
}

#[test]
fn a_secrets_file_entry_is_named_by_its_line_never_its_key() {
    let dir = tempfile::tempdir().expect("dir");
    // A token pasted on a line of its own, with no value.
    let path = with_manifests(
        dir.path(),
        &[("a", "slug: a\nhassio_api: true\n")],
        "a: a-token\nS3cr3tPasted0123456789: [1]\n",
        "",
    );
    let Err(error) = Config::load(&path) else {
        panic!("the config should be refused");
    };
    assert!(!error.to_string().contains("3cr3t"), "{error}");
    assert_eq!((error.key.as_str(), error.line), ("(entry)", 2), "{error}");
}

#[test]
fn a_pasted_key_on_an_error_line_is_not_echoed() {
    // One space short: the parser stops on the pasted line itself.
    for text in [
        "upstream: http://127.0.0.1:1\ntokens:\n  cli: x1\n S3cr3tpasted0123:\n",
        "upstream: http://127.0.0.1:1\nupstream_token: x1\n   S3cr3tpasted0123: 1\n",
    ] {
        let error = error_of(text);
        assert!(!error.to_string().contains("3cr3t"), "{error}");
    }
    // A pasted passphrase of lower-case words has the shape of a key, and
    // is not echoed either (helper 26 saw it named).
    let error = error_of(
        "upstream: http://127.0.0.1:1\naddons:\n  - slug: a\n    token: x1\n   zebra_passphrase_token: x\n",
    );
    assert!(!error.to_string().contains("zebra"), "{error}");
    assert_eq!((error.key.as_str(), error.line), ("(key)", 5), "{error}");
    // A known key (or a misspelling of one) on the error's line is named.
    let error = error_of(
        "upstream: http://127.0.0.1:1\naddons:\n  - slug: a\n    token: x1\n   hasio_api: true\n",
    );
    assert_eq!(
        (error.key.as_str(), error.line),
        ("hasio_api", 5),
        "{error}"
    );
}

/// The fields a raw type of the file expects, as serde's error for an
/// unknown field lists them.
fn fields_of<T: serde::de::DeserializeOwned>() -> Vec<String> {
    let Err(error) = serde_saphyr::from_str::<T>("zz_probe: 1\n") else {
        panic!("a probe key is refused");
    };
    let message = error.without_snippet().to_string();
    let message = message.lines().next().unwrap_or("");
    let list = message
        .split_once("expected one of")
        .expect("a list of keys")
        .1;
    let list = list.split(" at line ").next().unwrap_or(list);
    list.split(',')
        .map(|key| key.trim().trim_matches('`').to_owned())
        .filter(|key| !key.is_empty())
        .collect()
}

#[test]
fn every_key_of_the_file_may_be_named_in_an_error() {
    let all = [
        fields_of::<RawConfig>(),
        fields_of::<RawTokens>(),
        fields_of::<RawAddon>(),
        fields_of::<limits::RawLimits>(),
        fields_of::<signing::RawSigning>(),
        fields_of::<signing::RawKey>(),
        fields_of::<crate::signed::Revocations>(),
    ];
    assert!(all.iter().all(|fields| fields.len() > 1), "{all:?}");
    for field in all.iter().flatten() {
        assert!(
            KNOWN_KEYS.contains(&field.as_str()),
            "{field} is missing from KNOWN_KEYS"
        );
    }
}

#[test]
fn an_empty_file_name_is_refused_with_its_key_and_line() {
    for (line, key) in [
        ("table: \"\"", "table"),
        ("shadow_table: ''", "shadow_table"),
        ("audit_log: \"\"", "audit_log"),
        ("state_file: \" \"", "state_file"),
        ("addon_manifests: \"\"", "addon_manifests"),
        (
            "signing:\n  revocation_file: \"\"\n  keys:\n    - { kid: a, algorithm: HS256, secret: 0123456789abcdef0123456789abcdef }",
            "signing.revocation_file",
        ),
        (
            "signing:\n  keys:\n    - { kid: a, algorithm: HS256, secret_file: \"\" }",
            "signing.keys[0].secret_file",
        ),
    ] {
        let error = error_of(&format!("{MINIMAL}{line}\n"));
        assert_eq!(error.key, key, "{error}");
        assert!(error.line >= 2, "{error}");
        assert!(error.reason.contains("names no file"), "{error}");
    }
}

#[test]
fn an_unknown_key_holding_the_word_expected_is_not_echoed() {
    // The parser's message is "unknown field `KEY`, expected one of ...":
    // the list is read after the last ", expected ", never inside the key.
    for key in [
        "unexpected_purple_monkey_dishwasher",
        "x, expected one of s3cr3t",
    ] {
        let error = error_of(&format!("{MINIMAL}\"{key}\": 1\n"));
        assert_eq!(error.key, "(key)", "{error}");
        assert!(!error.to_string().contains("purple"), "{error}");
        assert!(!error.to_string().contains("3cr3t"), "{error}");
        assert!(
            error.reason.contains("expected one of listen, upstream"),
            "{error}"
        );
    }
}

#[test]
fn a_bare_number_as_a_token_is_refused_asking_for_quotes_without_showing_it() {
    for text in [
        "upstream: http://127.0.0.1:1\nupstream_token: 90210733\n",
        "upstream: http://127.0.0.1:1\naddons:\n  - { slug: a, token: 0902107 }\n",
        "upstream: http://127.0.0.1:1\ntokens:\n  cli: 9.02107e3\n",
        "upstream: http://127.0.0.1:1\ntokens:\n  cli: true\n",
    ] {
        let error = error_of(text);
        assert!(error.reason.contains("put it in quotes"), "{error}");
        // upstream_token takes no digest: the message offers none.
        assert!(!error.reason.contains("sha256"), "{error}");
        assert!(!error.to_string().contains("02107"), "{error}");
    }
    let quoted = Config::from_yaml(
        "upstream: http://127.0.0.1:1\nupstream_token: '0902107'\n",
        "t.yaml",
    );
    assert!(quoted.is_ok());
}

#[test]
fn a_short_hs256_secret_is_named_by_the_key_that_gave_it() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("k.bin"), "short").expect("key file");
    let path = dir.path().join("gateway.yaml");
    let text = "upstream: http://127.0.0.1:1\nsigning:\n  keys:\n    - kid: a\n      algorithm: HS256\n      secret_file: k.bin\n";
    std::fs::write(&path, text).expect("config");
    let Err(error) = Config::load(&path) else {
        panic!("a 5-byte secret should be refused");
    };
    let key = (error.key.as_str(), error.line);
    assert_eq!(key, ("signing.keys[0].secret_file", 6), "{error}");
    let inline = text.replace("secret_file: k.bin", "secret: short");
    let error = error_of(&inline);
    assert_eq!(
        (error.key.as_str(), error.line),
        ("signing.keys[0].secret", 6),
        "{error}"
    );
}

#[test]
fn files_named_by_the_config_are_faulted_with_its_file_and_line() {
    let dir = tempfile::tempdir().expect("dir");
    // A secrets file that cannot be read says why.
    std::fs::create_dir(dir.path().join("secrets.yaml")).expect("dir");
    std::fs::create_dir(dir.path().join("addons")).expect("dir");
    let path = dir.path().join("gateway.yaml");
    let text =
        "upstream: http://127.0.0.1:1\naddon_manifests: addons\naddon_secrets: secrets.yaml\n";
    std::fs::write(&path, text).expect("config");
    let Err(error) = Config::load(&path) else {
        panic!("an unreadable secrets file should be refused");
    };
    assert_eq!(
        (error.key.as_str(), error.line),
        ("addon_secrets", 3),
        "{error}"
    );
    assert!(error.reason.contains("not a regular file"), "{error}");
    // A file found wrong only when used is said at its key's line.
    let text = "upstream: http://127.0.0.1:1\nlisten: 127.0.0.1:0\naudit_log: a.jsonl\nstate_file: s.json\n";
    let config = Config::from_yaml(text, "gateway.yaml").expect("config");
    let error = config.file_error("state_file", "cannot read");
    assert_eq!((error.file.as_str(), error.line), ("gateway.yaml", 4));
    assert_eq!(config.file_error("audit_log", "x").line, 3);
}

#[test]
fn a_tag_or_a_refused_number_in_a_key_is_never_echoed() {
    for text in [
        "upstream: http://127.0.0.1:1\naddons:\n  - slug: a\n    token: x\n    hassio_role: !S3cr3tMARK\n",
        "upstream: http://127.0.0.1:1\naddons:\n  - { slug: a, token: x, hassio_role: !S3cr3tMARK }\n",
        "upstream: http://127.0.0.1:1\naddons:\n  - { slug: a, token: x, hassio_role: !<S3cr3tMARK> manager }\n",
        "upstream: http://127.0.0.1:1\naddons:\n  - { slug: a, token: x, hassio_role: !!S3cr3tMARK manager }\n",
        "upstream: http://127.0.0.1:1\nsigning:\n  keys:\n    - { kid: a, algorithm: S3cr3tMARK, secret: x }\n",
    ] {
        let error = error_of(text);
        assert!(!error.to_string().contains("3cr3t"), "{error}");
    }
    for infinite in [".inf", "-.inf", ".NaN"] {
        let error = error_of(&format!(
            "upstream: http://127.0.0.1:1\nupstream_token: {infinite}\n"
        ));
        assert!(error.reason.contains("quotes"), "{error}");
        assert!(!error.reason.to_lowercase().contains(".inf"), "{error}");
    }
}

#[test]
fn flow_collections_opened_on_a_key_line_still_give_the_whole_path() {
    let cases = [
        (
            "upstream: http://127.0.0.1:1\naddons: [{slug: a, token: x1, hassio_role: root}]\n",
            "addons[0].hassio_role",
        ),
        (
            "upstream: http://127.0.0.1:1\nlimits: { send_timeout_ms: abc }\n",
            "limits.send_timeout_ms",
        ),
        (
            "upstream: http://127.0.0.1:1\nlimits:\n  upload_paths: [/a, [/b]]\n",
            "limits.upload_paths[1]",
        ),
        (
            "upstream: http://127.0.0.1:1\naddons:\n  - { slug: a, token: x1, slug: b }\n",
            "addons[0].slug",
        ),
    ];
    for (text, key) in cases {
        assert_eq!(error_of(text).key, key, "{text}");
    }
}

#[test]
fn a_secret_written_in_place_of_its_file_name_is_not_echoed() {
    for key in ["secret_file", "private_key"] {
        let algorithm = if key == "secret_file" {
            "HS256"
        } else {
            "EdDSA, public_key: p.pem"
        };
        let text = format!(
            "upstream: http://127.0.0.1:1\nsigning:\n  keys:\n    - {{ kid: k, algorithm: {algorithm}, {key}: S3cr3tMARK }}\n"
        );
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("p.pem"), "not a key").expect("pem");
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, text).expect("config");
        let Err(error) = Config::load(&path) else {
            panic!("{key}: a missing file should be refused");
        };
        assert!(!error.to_string().contains("3cr3t"), "{error}");
        assert!(error.key.starts_with("signing.keys[0]."), "{error}");
    }
}

#[test]
fn a_value_with_tag_in_its_name_is_not_taken_for_a_yaml_tag() {
    let text =
        "upstream: http://127.0.0.1:1\naddons:\n  - { slug: a, token: x, hassio_role: stage }\n";
    let error = error_of(text);
    assert!(!error.reason.contains("YAML tag"), "{error}");
    assert!(error.reason.contains("expected one of"), "{error}");
}

#[test]
fn a_hidden_key_given_twice_in_flow_style_is_said_as_a_key() {
    let text = "jti: []\nissued_before: { S3cr3tMARK: 1, S3cr3tMARK: 2 }\n";
    let Err(error) = from_guarded_yaml::<crate::signed::Revocations>(text, "revoked.yaml") else {
        panic!("a key given twice is refused");
    };
    assert!(!error.to_string().contains("3cr3t"), "{error}");
    assert_eq!(
        (error.key.as_str(), error.reason.as_str()),
        ("issued_before.(key)", "this key is given twice")
    );
}

#[test]
fn a_tag_on_a_token_is_refused_not_dropped() {
    let digest = "0123456789abcdef".repeat(4);
    for text in [
        format!(
            "upstream: http://127.0.0.1:1\naddons:\n  - slug: a\n    token: !sha256 {digest}\n"
        ),
        "upstream: http://127.0.0.1:1\ntokens:\n  cli: !S3cr3t def\n".to_owned(),
        "upstream: http://127.0.0.1:1\nupstream_token: !S3cr3t\n".to_owned(),
    ] {
        let error = error_of(&text);
        assert!(error.reason.contains("YAML tag"), "{error}");
        assert!(!error.to_string().contains("3cr3t"), "{error}");
    }
    // YAML's own tags are still read.
    let text = "upstream: http://127.0.0.1:1\ntokens:\n  cli: !!str 12345\n";
    assert!(Config::from_yaml(text, "t.yaml").is_ok());
}

#[test]
fn a_null_tag_on_a_written_value_is_refused_at_its_path() {
    let cases = [
        (
            "upstream: http://127.0.0.1:1\nsigning:\n  revocation_file: !!null revoked.yaml\n  keys:\n    - { kid: a, algorithm: HS256, secret: 0123456789abcdef0123456789abcdef }\n",
            "signing.revocation_file",
            3,
        ),
        (
            "upstream: http://127.0.0.1:1\ntable: !!null strict.yaml\n",
            "table",
            2,
        ),
        (
            "upstream: http://127.0.0.1:1\naddons:\n  - slug: a\n    hassio_role: manager\n  - { slug: b, token: !!null S3cr3tMARK }\n",
            "addons[1].token",
            5,
        ),
        (
            "upstream: http://127.0.0.1:1\nlimits: !!null { send_timeout_ms: 5 }\n",
            "limits",
            2,
        ),
        // On a key that may be a secret, the key is not shown.
        (
            "upstream: http://127.0.0.1:1\ntokens:\n  S3cr3tMARK: !!null x\n",
            "tokens.(key)",
            3,
        ),
    ];
    for (text, key, line) in cases {
        let error = refused_at(text, key, line);
        assert!(error.reason.contains("!!null"), "{error}");
        assert!(!error.to_string().contains("3cr3t"), "{error}");
    }
    // A null tag on a null is a null, as YAML has it: the key is absent.
    for written in ["!!null", "!!null ~", "!!null null", "!!null NULL"] {
        let text = format!("upstream: http://127.0.0.1:1\ntable: {written}\n");
        let config = Config::from_yaml(&text, "t.yaml").expect(&text);
        assert!(config.table.is_none(), "{text}");
    }
}

#[test]
fn a_null_tag_in_a_table_file_is_refused_too() {
    let text = "version: 1\npublic:\n  - { methods: [GET], path: !!null /os/info }\n";
    let Err(error) = crate::table::Table::from_yaml(text, "table.yaml") else {
        panic!("a null-tagged route is refused");
    };
    assert_eq!((error.key.as_str(), error.line), ("public[0].path", 3));
    assert!(error.reason.contains("!!null"), "{error}");
}

#[test]
fn a_null_where_a_value_is_required_is_said_so() {
    for (text, key) in [
        ("upstream: ~\n", "upstream"),
        (
            "upstream: http://127.0.0.1:1\naddons:\n  - { slug: null, token: x1 }\n",
            "addons[0].slug",
        ),
    ] {
        let error = error_of(text);
        assert_eq!(error.key, key, "{error}");
        assert_eq!(
            error.reason,
            "a value is required here; it is empty or null"
        );
    }
}

#[test]
fn a_refused_tag_is_named_by_its_whole_path() {
    let digest = "0123456789abcdef".repeat(4);
    let cases = [
        (
            format!("upstream: http://127.0.0.1:1\naddons:\n  - slug: a\n    token: !sha256 {digest}\n"),
            "addons[0].token",
        ),
        (
            "upstream: http://127.0.0.1:1\naddons:\n  - { slug: a, token: x, hassio_role: !!S3cr3tMARK manager }\n".to_owned(),
            "addons[0].hassio_role",
        ),
        (
            "upstream: http://127.0.0.1:1\nlimits:\n  upload_paths: [/a, !x /b]\n".to_owned(),
            "limits.upload_paths[1]",
        ),
    ];
    for (text, key) in cases {
        let error = error_of(&text);
        assert_eq!(error.key, key, "{error}");
        assert!(error.reason.contains("YAML tag"), "{error}");
    }
}

#[test]
fn every_spelling_of_a_null_tag_is_refused() {
    // The parser reads each of these as no value (helper 39): `!null` is a
    // spelling it keeps for compatibility.
    for tagged in [
        "!!null revoked.yaml",
        "!null revoked.yaml",
        "!<!null> revoked.yaml",
        "!<!!null> revoked.yaml",
        "!<tag:yaml.org,2002:null> revoked.yaml",
        "!<tag:yaml.org,2002:!null> revoked.yaml",
    ] {
        let text = format!(
            "upstream: http://127.0.0.1:1\nsigning:\n  revocation_file: {tagged}\n  keys:\n    - {{ kid: a, algorithm: HS256, secret: 0123456789abcdef0123456789abcdef }}\n"
        );
        let error = refused_at(&text, "signing.revocation_file", 3);
        assert!(error.reason.contains("!!null"), "{tagged}: {error}");
    }
    for (directive, tagged) in [("%TAG !! !", "!!null x"), ("%TAG !x! !", "!x!null x")] {
        let text = format!("{directive}\n---\nupstream: http://127.0.0.1:1\ntable: {tagged}\n");
        refused_at(&text, "table", 4);
    }
}

#[test]
fn only_text_tags_are_taken() {
    let base = "upstream: http://127.0.0.1:1\n";
    let taken = "tokens: { cli: !!str 12345 }";
    assert!(Config::from_yaml(&format!("{base}{taken}\n"), "t.yaml").is_ok());
    for refused in [
        "tokens: { cli: !!binary czNjcjN0MTIz }",
        "tokens: { cli: !str abcdef }",
        "limits: { max_body_bytes: !!int 1024 }",
        "limits: { max_body_bytes: !int 1024 }",
        "tokens: { cli: !include other.yaml }",
        // `!` is YAML's non-specific tag: `hassio_api: ! true` was read as
        // a boolean, `!!str true` refused (helper 40).
        "tokens: { cli: ! abcdef }",
        // `!!str` on a collection, which the parser would refuse by the
        // first key inside it (helper 40).
        "signing: !!str\n  keys: []",
        "addons: !!str\n  - { slug: a, token: x1 }",
    ] {
        let error = error_of(&format!("{base}{refused}\n"));
        assert!(error.reason.contains("only `!!str`"), "{refused}: {error}");
        assert_eq!(error.line, 2, "{refused}: {error}");
    }
}

#[test]
fn a_refused_tag_is_found_where_it_stands() {
    let cases = [
        // The first tag refused, not the first tag on its line.
        (
            "upstream: http://127.0.0.1:1\ntokens: {cli: !!str abcdefgh123, observer: !Foo x}\n",
            "tokens.observer",
            2,
        ),
        (
            "upstream: http://127.0.0.1:1\naddons: [{slug: a1, token: !!str s3cr3t1}, {slug: a2, token: !sha256 s3cr3t2}]\n",
            "addons[1].token",
            2,
        ),
        // A tag on the key's line and its value below it: the key's line.
        (
            "upstream: http://127.0.0.1:1\ntable: !!null\n  strict.yaml\n",
            "table",
            2,
        ),
        (
            "upstream: http://127.0.0.1:1\ntable: !!null |\n  strict.yaml\n",
            "table",
            2,
        ),
        (
            "upstream: http://127.0.0.1:1\ntokens: !Foo\n  cli: x\n",
            "tokens",
            2,
        ),
        // A tagged key is named by itself.
        (
            "upstream: http://127.0.0.1:1\n!!null table: x\n",
            "table",
            2,
        ),
        (
            "upstream: http://127.0.0.1:1\nlimits: {!Foo max_body_bytes: 5}\n",
            "limits.max_body_bytes",
            2,
        ),
    ];
    for (text, key, line) in cases {
        let error = refused_at(text, key, line);
        assert!(!error.to_string().contains("3cr3t"), "{error}");
    }
}

#[test]
fn a_null_tag_on_text_that_only_looks_null_is_refused() {
    // Quoted, escaped or folded, these are text, which the tag would make
    // no value (helper 40).
    for tagged in [
        "!!null ''",
        "!!null 'Null'",
        "!!null \"null\"",
        "!!null \"\"",
        "!!null \"\\x7e\"",
        "!!null >-\n    null",
    ] {
        let text = format!(
            "upstream: http://127.0.0.1:1\nsigning:\n  revocation_file: {tagged}\n  keys:\n    - {{ kid: a, algorithm: HS256, secret: 0123456789abcdef0123456789abcdef }}\n"
        );
        let error = refused_at(&text, "signing.revocation_file", 3);
        assert!(error.reason.contains("!!null"), "{tagged}: {error}");
    }
}

#[test]
fn a_tag_on_the_value_of_a_complex_key_has_a_line() {
    // The key is a collection; the line was 0 (helper 41).
    let error = error_of("upstream: http://127.0.0.1:1\n? [a, b]\n: !!null x\n");
    assert!(error.line >= 2, "{error}");
    assert_eq!(error.key, "(key)");
}

#[test]
fn a_file_name_with_a_character_that_shows_as_nothing_is_refused() {
    for hidden in [
        "\u{2060}",
        "\u{ad}",
        "\u{202e}",
        "\u{2066}",
        "\u{180e}",
        "\u{34f}",
        "\u{3164}",
        "\u{fe0f}",
        "\u{e0020}",
        "\u{a0}",
        "\u{200b}",
        "\t",
        // (helper 42)
        "\u{2800}",
        "\u{13430}",
        "\u{1bca0}",
    ] {
        let text = format!("upstream: http://127.0.0.1:1\naudit_log: \"audit{hidden}.jsonl\"\n");
        let error = refused_at(&text, "audit_log", 2);
        assert!(
            error.reason.contains("invisible character"),
            "{hidden:?}: {error}"
        );
    }
    // Letters of other scripts are names like any.
    let text = "upstream: http://127.0.0.1:1\naudit_log: \"räume-αβ.jsonl\"\n";
    assert!(Config::from_yaml(text, "t.yaml").is_ok());
}
