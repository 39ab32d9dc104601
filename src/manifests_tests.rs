use super::*;

fn write(dir: &Path, folder: &str, name: &str, text: &str) -> PathBuf {
    let folder = dir.join(folder);
    std::fs::create_dir_all(&folder).expect("folder");
    let path = folder.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn parsed(text: &str) -> Manifest {
    let dir = tempfile::tempdir().expect("dir");
    let path = write(dir.path(), "a", "config.yaml", text);
    load_file(&path).expect("valid manifest")
}

#[test]
fn a_directory_loads_yaml_yml_and_json_and_reports_the_invalid_one() {
    let dir = tempfile::tempdir().expect("dir");
    write(
        dir.path(),
        "one",
        "config.yaml",
        "slug: one\nhassio_api: true\nhassio_role: backup\n",
    );
    write(
        dir.path(),
        "two",
        "config.yml",
        "slug: two\nname: Two\nversion: 1.0.0\n",
    );
    write(
        dir.path(),
        "three",
        "config.json",
        r#"{"slug": "three", "hassio_role": "manager", "ingress": true}"#,
    );
    write(
        dir.path(),
        "bad",
        "config.yaml",
        "slug: bad\nhassio_role: superuser\n",
    );
    std::fs::create_dir_all(dir.path().join(".github")).expect("not an add-on");
    let (manifests, problems) = load_dir(dir.path());
    let slugs: Vec<&str> = manifests.iter().map(|m| m.slug.as_str()).collect();
    assert_eq!(slugs, ["one", "three", "two"]);
    assert_eq!(manifests[0].role, Role::Backup);
    assert!(manifests[0].hassio_api);
    assert!(manifests[1].ingress && manifests[1].role == Role::Manager);
    assert!(!manifests[2].hassio_api && manifests[2].role == Role::Default);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].field, "hassio_role");
    assert!(problems[0].path.ends_with("bad/config.yaml"));
    assert!(problems[0].to_string().contains("superuser"));
}

#[test]
fn invalid_fields_are_named() {
    let dir = tempfile::tempdir().expect("dir");
    for (text, field) in [
        ("name: no slug\n", "slug"),
        ("slug: self\n", "slug"),
        ("slug: a b\n", "slug"),
        ("slug: a\nhassio_api: yes please\n", "hassio_api"),
        (
            "slug: a\nprivileged: [SYS_ADMIN, MAKE_COFFEE]\n",
            "privileged",
        ),
        ("slug: a\nprivileged: SYS_ADMIN\n", "privileged"),
        ("slug: a\nmap: [\"share:rwx\"]\n", "map"),
        ("slug: a\nmap: [{read_only: false}]\n", "map"),
        ("slug: a\ncodenotary: 7\n", "codenotary"),
        ("- not\n- a mapping\n", "(file)"),
        ("slug: [unclosed\n", "(file)"),
    ] {
        let path = write(dir.path(), "x", "config.yaml", text);
        let problem = load_file(&path).expect_err(text);
        assert_eq!(problem.field, field, "{text}");
    }
}

#[test]
fn a_problem_says_what_is_wrong_with_the_value() {
    let dir = tempfile::tempdir().expect("dir");
    for (name, text, field, said) in [
        (
            "config.yaml",
            "slug: a\nhassio_role: 7\n",
            "hassio_role",
            "expected a role name, found 7",
        ),
        (
            "config.yaml",
            "slug: a\nhassio_role: root\n",
            "hassio_role",
            "\"root\" is not one of",
        ),
        (
            "config.yaml",
            "slug: a\nprivileged: [NET_RAW, MAKE_COFFEE]\n",
            "privileged",
            "\"MAKE_COFFEE\" is not a capability",
        ),
        (
            "config.yaml",
            "slug: a\nprivileged: {NET_RAW: true}\n",
            "privileged",
            "expected a list of capabilities",
        ),
        (
            "config.yaml",
            "slug: a\ncodenotary: [x]\n",
            "codenotary",
            "expected the signer's address",
        ),
        (
            "config.yaml",
            "slug: 'unclosed\n",
            "(file)",
            "a quoted scalar not closed",
        ),
        ("config.yaml", "slug: [a, b\n", "(file)", "not closed"),
        ("config.json", "{\"slug\": \"a\",}", "(file)", "not JSON: "),
    ] {
        let path = write(dir.path(), "x", name, text);
        let problem = load_file(&path).expect_err(text);
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(problem.field, field, "{text}");
        assert!(problem.reason.contains(said), "{text}: {}", problem.reason);
    }
    let big = format!("slug: a\n#{}\n", "x".repeat(1 << 20));
    let path = write(dir.path(), "x", "config.yaml", &big);
    let problem = load_file(&path).expect_err("too large");
    assert_eq!(problem.field, "(file)");
    assert!(
        problem.reason.contains("a manifest is at most 1048576"),
        "{}",
        problem.reason
    );
}

#[test]
fn capabilities_and_a_signer_are_read() {
    let manifest =
        parsed("slug: a\nprivileged: [SYS_ADMIN, NET_RAW]\ncodenotary: dev@example.com\n");
    assert_eq!(manifest.privileged, ["SYS_ADMIN", "NET_RAW"]);
    assert!(manifest.signed);
    assert!(!parsed("slug: a\ncodenotary: \"  \"\n").signed);
}

#[test]
fn defaults_are_the_supervisors() {
    let manifest = parsed("slug: plain\n");
    assert_eq!(manifest.role, Role::Default);
    assert!(!manifest.hassio_api && !manifest.homeassistant_api && !manifest.auth_api);
    assert_eq!(manifest.apparmor, AppArmor::Default);
    assert!(manifest.privileged.is_empty() && !manifest.signed);
    assert_eq!(manifest.rating(true), 5);
}

#[test]
fn a_dozen_manifests_rate_as_the_formula_says() {
    // Each expectation is worked out by hand from SPEC.md's formula.
    for (text, protected, expected) in [
        ("slug: a\n", true, 5),
        ("slug: a\napparmor: false\n", true, 4),
        ("slug: a\ningress: true\nauth_api: true\n", true, 7),
        ("slug: a\nauth_api: true\n", true, 6),
        ("slug: a\ncodenotary: dev@example.com\n", true, 6),
        ("slug: a\nprivileged: [NET_ADMIN, SYS_TIME]\n", true, 4),
        ("slug: a\nprivileged: [SYS_NICE]\n", true, 5),
        ("slug: a\nkernel_modules: true\nprivileged: [SYS_MODULE]\n", true, 4),
        ("slug: a\nhassio_role: manager\n", true, 4),
        ("slug: a\nhassio_role: admin\nhost_network: true\n", true, 2),
        ("slug: a\nhost_uts: true\nprivileged: [SYS_ADMIN]\n", true, 3),
        ("slug: a\nhost_uts: true\n", true, 5),
        // host_pid costs two, but only when protection mode lets it through.
        ("slug: a\nhost_pid: true\n", false, 3),
        ("slug: a\nhost_pid: true\n", true, 5),
        // Docker or full access make it 1, unless protection mode withholds them.
        ("slug: a\ndocker_api: true\ningress: true\n", false, 1),
        ("slug: a\ndocker_api: true\ningress: true\n", true, 7),
        ("slug: a\nfull_access: true\n", false, 1),
        // Clamped at 8 and at 1.
        ("slug: a\ningress: true\ncodenotary: x@y\n", true, 8),
        ("slug: a\napparmor: false\nhassio_role: admin\nhost_network: true\nhost_pid: true\nprivileged: [SYS_ADMIN]\nhost_uts: true\n", false, 1),
    ] {
        assert_eq!(parsed(text).rating(protected), expected, "{text} protected={protected}");
    }
}

#[test]
fn a_custom_apparmor_profile_is_found_beside_the_manifest() {
    let dir = tempfile::tempdir().expect("dir");
    let path = write(dir.path(), "a", "config.yaml", "slug: a\n");
    std::fs::write(dir.path().join("a/apparmor.txt"), "profile a {}\n").expect("profile");
    let manifest = load_file(&path).expect("valid");
    assert_eq!(manifest.apparmor, AppArmor::Custom);
    assert_eq!(manifest.rating(true), 6);
    let disabled = write(dir.path(), "a", "config.yaml", "slug: a\napparmor: false\n");
    assert_eq!(
        load_file(&disabled).expect("valid").apparmor,
        AppArmor::Disabled
    );
}

#[test]
fn missed_practices_are_named() {
    let manifest = parsed(
        "slug: a\nhost_network: true\nmap: [\"share:rw\", ssl, {type: media, read_only: false}, {type: backup}]\nfull_access: true\ndocker_api: true\n",
    );
    assert_eq!(
        manifest.missed_practices(),
        [
            "host network",
            "no AppArmor profile of its own",
            "share mapped read-write",
            "media mapped read-write",
            "full hardware access",
            "Docker API",
            "unsigned image",
        ]
    );
    let careful = {
        let dir = tempfile::tempdir().expect("dir");
        let path = write(
            dir.path(),
            "a",
            "config.yaml",
            "slug: a\ncodenotary: dev@example.com\nmap: [ssl]\n",
        );
        std::fs::write(dir.path().join("a/apparmor.txt"), "profile a {}\n").expect("profile");
        load_file(&path).expect("valid")
    };
    assert!(careful.missed_practices().is_empty());
}

#[test]
fn protection_mode_withholds_full_access_docker_and_host_pid() {
    let manifest = parsed(
        "slug: a\nfull_access: true\ndocker_api: true\nhost_pid: true\nhost_network: true\n",
    );
    let on = manifest.effective(true);
    assert!(!on.full_access && !on.docker_api && !on.host_pid && on.host_network);
    let off = manifest.effective(false);
    assert!(off.full_access && off.docker_api && off.host_pid);
}

#[cfg(unix)]
#[test]
fn a_manifest_that_is_not_a_regular_file_is_a_problem_not_passed_over() {
    let dir = tempfile::tempdir().expect("dir");
    write(dir.path(), "good", "config.yaml", "slug: good\n");
    std::fs::create_dir_all(dir.path().join("piped")).expect("folder");
    let fifo = crate::files::fifo(&dir.path().join("piped"), "config.yaml");
    // A link to nothing is named too (it was passed over as no manifest).
    std::fs::create_dir_all(dir.path().join("linked")).expect("folder");
    let dangling = dir.path().join("linked").join("config.yaml");
    std::os::unix::fs::symlink(dir.path().join("gone.yaml"), &dangling).expect("link");
    let (manifests, problems) = load_dir(dir.path());
    assert_eq!(manifests.len(), 1);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0].path, dangling);
    assert_eq!(problems[1].path, fifo);
}

#[test]
fn a_manifest_with_a_yaml_tag_is_left_out_with_its_line_and_field() {
    // As written, each would read as a lower risk or another role than the
    // add-on's file seems to say (helper 39).
    let dir = tempfile::tempdir().expect("dir");
    for (text, said) in [
        (
            "slug: a\nfull_access: !!null true\n",
            "line 2, full_access:",
        ),
        (
            "slug: a\nhassio_role: !null manager\n",
            "line 2, hassio_role:",
        ),
        ("slug: a\ndocker_api: !Foo true\n", "line 2, docker_api:"),
    ] {
        let path = write(dir.path(), "x", "config.yaml", text);
        let problem = load_file(&path).expect_err(text);
        assert_eq!(problem.field, "(file)", "{text}");
        assert!(
            problem.reason.starts_with(said),
            "{text}: {}",
            problem.reason
        );
    }
    // Without the tag the same manifest loads. (`!!str`, which both
    // readers take alike, was read until 2026-12-06; no tag is in the
    // YAML manifests are read in since, see `manifest_subset`.)
    assert!(parsed("slug: a\nfull_access: true\n").full_access);
    let path = write(
        dir.path(),
        "x",
        "config.yaml",
        "slug: a\nhassio_role: !!str manager\n",
    );
    assert!(load_file(&path).is_err());
}

#[test]
fn yes_or_no_fields_are_read_as_the_supervisors_schema_reads_them() {
    // What the Supervisor makes of each (PyYAML reads the YAML 1.1 words
    // it knows as booleans and the rest as text, then its schema's
    // `vol.Boolean()` reads text and numbers), worked out by hand.
    for (value, expected) in [
        ("true", true),
        ("TRUE", true),
        ("yes", true),
        ("Yes", true),
        ("ON", true),
        ("yEs", true),
        ("\"yes\"", true),
        ("'enable'", true),
        ("Enable", true),
        ("1", true),
        ("\"1\"", true),
        ("2", true),
        ("false", false),
        ("no", false),
        ("Off", false),
        ("disable", false),
        ("0", false),
        ("\"0\"", false),
        ("0.0", false),
        ("-1", true),
        ("+0", false),
        ("1.", true),
        // A leading zero is octal to PyYAML (017 is 15).
        ("017", true),
        ("00", false),
        ("~", false),
        ("", false),
    ] {
        let manifest = parsed(&format!(
            "slug: a\nhassio_api: {value}\napparmor: {value}\n"
        ));
        assert_eq!(manifest.hassio_api, expected, "hassio_api: {value}");
        let apparmor = if expected {
            AppArmor::Default
        } else {
            AppArmor::Disabled
        };
        assert_eq!(manifest.apparmor, apparmor, "apparmor: {value}");
    }
    // The same in a JSON manifest.
    let dir = tempfile::tempdir().expect("dir");
    for (value, expected) in [
        ("\"yes\"", true),
        ("1", true),
        ("\"off\"", false),
        ("null", false),
    ] {
        let text = format!(r#"{{"slug": "a", "homeassistant_api": {value}}}"#);
        let path = write(dir.path(), "a", "config.json", &text);
        let manifest = load_file(&path).expect("valid manifest");
        assert_eq!(manifest.homeassistant_api, expected, "{text}");
    }
}

#[test]
fn a_yes_or_no_field_the_supervisor_refuses_leaves_the_manifest_out() {
    // PyYAML reads `y` and `n` as text, which `vol.Boolean()` refuses
    // (YAML 1.1 parsers that read them as booleans would give `y` access).
    let dir = tempfile::tempdir().expect("dir");
    // `1e3`, `1.0e5` and `0o17` are numbers to serde-saphyr but text to
    // PyYAML (its floats have a point and a signed exponent, its octals
    // a leading 0), and `08` is neither octal nor decimal to it (helper
    // 61 found the first three granting access). `0x1f` and `1_000` PyYAML
    // reads as numbers; the gateway leaves them out rather than read them.
    for value in [
        "y",
        "Y",
        "n",
        "N",
        "\"y\"",
        "maybe",
        "[true]",
        "{on: true}",
        "1e3",
        "1.0e5",
        "0o17",
        "08",
        "0x1f",
        "1_000",
    ] {
        let path = write(
            dir.path(),
            "a",
            "config.yaml",
            &format!("slug: a\nhassio_api: {value}\n"),
        );
        let problem = load_file(&path).expect_err(value);
        assert_eq!(problem.field, "hassio_api", "{value}");
        assert!(
            problem.reason.contains("expected true or false"),
            "{value}: {}",
            problem.reason
        );
    }
}

#[test]
fn what_pyyaml_reads_otherwise_leaves_the_manifest_out() {
    // Each of these gave an add-on access or a role the Supervisor (PyYAML)
    // would not: found by helpers 62 and 63.
    let dir = tempfile::tempdir().expect("dir");
    for (text, said) in [
        // A tab: PyYAML refuses the file; serde-saphyr read hassio_api.
        ("slug: a\nhassio_api: 1\t\n", "a tab"),
        ("slug: a\nhassio_api:\t017\n", "a tab"),
        // Behind a `#` in quotes, which is no comment.
        ("slug: a\nx: \"a #\"\t\nhassio_api: true\n", "a tab"),
        // In a comment too, where the two agree: refused to be safe.
        ("slug: a\nhassio_api: true # yes\tindeed\n", "a tab"),
        // A line break to PyYAML ends the comment: hassio_role is then
        // `default` to it, `admin` to serde-saphyr.
        (
            "slug: a\nhassio_role: admin # c\u{2028}hassio_role: default\n",
            "a Unicode line break",
        ),
        (
            "slug: a\nhassio_api: true # c\u{85}hassio_api: false\n",
            "a Unicode line break",
        ),
        // A byte order mark past the first character: PyYAML reads it into
        // the key, serde-saphyr skipped it.
        ("slug: a\n\u{feff}hassio_role: admin\n", "byte order mark"),
        // An anchor written twice: PyYAML refuses the file.
        (
            "slug: a\nx: [&r admin, &r manager]\nhassio_role: *r\n",
            "anchor",
        ),
        // Anchor names with characters PyYAML refuses (the file with
        // them), and a `?` in a flow collection, which ends a word to it.
        (
            "slug: a\nx: &a.b admin\nhassio_role: *a.b\n",
            "anchor or alias name",
        ),
        ("slug: a\nx: [a?b]\nhassio_role: admin\n", "`?`"),
        // Helper 66: a `?` on a later line of a flow collection; `[:x]`;
        // an anchor after an explicit key, after a lone carriage return, or
        // ending in a Unicode space.
        ("slug: a\narch: [amd64,\n  aarch64?]\n", "not closed"),
        ("slug: a\nfoo: [:x]\n", "`:` at the start"),
        ("slug: a\n? &a.b foo\n: bar\n", "explicit key"),
        ("slug: a\nfoo:\r  &a.b x\n", "carriage return"),
        (
            "slug: a\nx: &r\u{a0} admin\nhassio_role: admin\n",
            "Unicode space",
        ),
        // Helper 67: a `:` starting a flow value; a document end.
        ("slug: a\nfoo: {a: :x}\n", "`:` at the start"),
        ("slug: a\n... # end\nhassio_api: true\n", "document end"),
        // Helper 68: a directive PyYAML refuses.
        ("slug: a\n%\"YAML 1.1\n---\nhassio_api: true\n", "directive"),
        // Merge keys written twice: PyYAML keeps the last.
        (
            "slug: a\n<<: {hassio_role: admin}\n<<: {hassio_role: default}\nhassio_api: true\n",
            "`<<`",
        ),
    ] {
        let path = write(dir.path(), "a", "config.yaml", text);
        let problem = load_file(&path).expect_err(text);
        assert_eq!(problem.field, "(file)", "{text:?}");
        assert!(
            problem.reason.starts_with("line 2: ") && problem.reason.contains(said),
            "{text:?}: {}",
            problem.reason
        );
    }
    // Text that only looks like these is read.
    let manifest = parsed(
        "slug: a\r\ndescription: Why? R&D *.txt, A & B\r\narch: [amd64, aarch64]\r\nmap: [\"config:rw\", ssl]\r\nports: {8080/tcp: 8080}\r\nhassio_api: true\r\n",
    );
    assert!(manifest.hassio_api);
    // A byte order mark as the first character is skipped by both.
    let manifest = parsed("\u{feff}slug: a\nhassio_role: manager\n");
    assert_eq!(manifest.role, Role::Manager);
    // An anchor used once, which both read alike, was read until
    // 2026-12-06; no anchor is in the YAML manifests are read in since.
    let path = write(
        dir.path(),
        "a",
        "config.yaml",
        "slug: a\nr: &r manager\nhassio_role: *r\n",
    );
    let problem = load_file(&path).expect_err("an anchor");
    assert!(problem.reason.starts_with("line 2: "), "{}", problem.reason);
    // A document end before any content: PyYAML refuses the file,
    // serde-saphyr passed over it (helper 67).
    let path = write(
        dir.path(),
        "a",
        "config.yaml",
        "...\nslug: a\nhassio_api: true\n",
    );
    let problem = load_file(&path).expect_err("a leading document end");
    assert!(
        problem.reason.starts_with("line 1: a document end"),
        "{}",
        problem.reason
    );
    // A role written but empty: the Supervisor's schema refuses it.
    for text in ["slug: a\nhassio_role: ~\n", "slug: a\nhassio_role:\n"] {
        let path = write(dir.path(), "a", "config.yaml", text);
        assert_eq!(load_file(&path).expect_err(text).field, "hassio_role");
    }
}

#[test]
fn a_fraction_too_small_for_a_float_is_zero_as_pyyaml_reads_it() {
    let tiny = format!("0.{}1", "0".repeat(400));
    let manifest = parsed(&format!("slug: a\nhassio_api: {tiny}\n"));
    assert!(!manifest.hassio_api, "{tiny}");
    assert!(parsed("slug: a\nhassio_api: 0.5\n").hassio_api);
}
