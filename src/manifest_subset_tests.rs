use super::outside;

/// A manifest in the shapes real add-ons use: every one inside the subset.
const USUAL: &str = "---
# An add-on's manifest
name: \"Example add-on\"
version: 1.2.3
slug: example
description: >-
  Does things, and: more things.
  # not a comment: text
url: https://example.com/addon#readme
arch:
  - armhf
  - aarch64
  - amd64
init: false
startup: application
boot: auto
hassio_api: true
hassio_role: manager
homeassistant_api: yes
ports:
  8080/tcp: 8080
ports_description:
  8080/tcp: 'Web UI (it''s here)'
map:
  - share:rw
  - ssl
  - type: addon_config
    read_only: false
options:
  log_level: info
  users: []
  servers: [a.example, \"b.example\"]
  nested: {name: x, list: [1, 2]}
schema:
  log_level: list(trace|debug|info|notice|warning|error|fatal)?
  users:
    - name: str
      password: password
  note: |
    Several lines
      kept as written.

    With an empty line.
  provider: \"list(dns-a|dns-b|\\
    dns-c|dns-d)?\"
  folded: \"one
    two\"  # and a comment
image: \"ghcr.io/example/{arch}-addon\"   # a comment
privileged:
  - NET_ADMIN
codenotary: notary@example.com
";

#[test]
fn the_shapes_real_manifests_use_are_inside() {
    assert_eq!(outside(USUAL), None);
    // With CRLF line ends and a byte order mark first.
    let windows = format!("\u{feff}{}", USUAL.replace('\n', "\r\n"));
    assert_eq!(outside(&windows), None);
}

#[test]
fn what_is_not_among_the_shapes_is_outside_on_its_line() {
    for (case, text, line) in [
        ("an anchor", "slug: x\nbase: &a true\n", 2),
        ("an alias", "slug: x\nhassio_api: *a\n", 2),
        ("a tag", "slug: x\nhassio_api: !!bool yes\n", 2),
        ("a merge key", "slug: x\n<<: {hassio_api: true}\n", 2),
        ("an explicit key", "slug: x\n? hassio_api\n: true\n", 2),
        ("a directive", "%YAML 1.1\n---\nslug: x\n", 1),
        ("a second document", "slug: x\n---\nslug: y\n", 2),
        (
            "`: ` on a plain scalar's next line",
            "slug: x\ndescription: one\n  two: three\n",
            3,
        ),
        (
            "`-` first on a plain scalar's next line",
            "slug: x\ndescription: one\n  - two\n",
            3,
        ),
        (
            "a comment inside a plain scalar",
            "slug: x\ndescription: one\n  # c\n  two\n",
            3,
        ),
        (
            "a plain scalar's next line after a comment",
            "slug: x\ndescription: one # c\n  two\n",
            3,
        ),
        (
            "a plain scalar below `key:` with `: ` in it",
            "slug: x\ndescription:\n  one two: three four\n",
            3,
        ),
        ("`=`, a value PyYAML cannot make", "slug: x\nurl: =\n", 2),
        ("a date that is none", "slug: x\nsince: 2023-02-29\n", 2),
        ("a date as a key", "slug: x\nports:\n  2001-02-30: 1\n", 3),
        ("a date as an item", "slug: x\nlist:\n  - 2001-13-45\n", 3),
        (
            "a date in a flow collection",
            "slug: x\nlist: [a, 2001-13-45]\n",
            2,
        ),
        ("hex of underscores", "slug: x\ntag: 0x_\n", 2),
        ("binary of underscores as a key", "slug: x\n-0b__: 1\n", 2),
        ("a fraction of underscores", "slug: x\nv: ._e+1\n", 2),
        ("`=` as a flow key", "slug: x\nm: {=: 1}\n", 2),
        (
            "a quoted scalar's next line not indented past its key",
            "slug: x\nname: \"one\ntwo\"\n",
            3,
        ),
        (
            "a quoted scalar never closed",
            "slug: x\nname: \"one\n  two\n",
            2,
        ),
        (
            "a bad escape on a quoted scalar's next line",
            "slug: x\nname: \"one\\\n  \\u0041\"\n",
            3,
        ),
        (
            "text after a quoted scalar closed on a later line",
            "slug: x\nname: \"one\n  two\" x\n",
            3,
        ),
        (
            "a flow collection over two lines",
            "slug: x\narch: [armhf,\n  amd64]\n",
            2,
        ),
        ("an escape but the few", "slug: x\nname: \"\\x41\"\n", 2),
        (
            "a unicode escape",
            "slug: x\nhassio_role: \"\\u0061dmin\"\n",
            2,
        ),
        (
            "a key without a space after `:`",
            "slug: x\nhassio_api:true\n",
            2,
        ),
        ("`: ` inside a plain scalar", "slug: x\nname: a: b\n", 2),
        (
            "a plain scalar ending in `:`",
            "slug: x\nlist:\n  - a b:\n",
            3,
        ),
        ("a key with a space", "slug: x\nmy key: 1\n", 2),
        (
            "a flow collection three deep",
            "slug: x\noptions: [[[1]]]\n",
            2,
        ),
        ("a trailing comma", "slug: x\narch: [a, b,]\n", 2),
        (
            "a collection as a flow key",
            "slug: x\noptions: {[a]: b}\n",
            2,
        ),
        ("text after a quoted scalar", "slug: x\nname: \"a\" b\n", 2),
        ("an indentation indicator", "slug: x\nnote: |2\n  text\n", 2),
        (
            "spaces on an empty line before a block scalar's text",
            "note: |\n   \n  text\n",
            2,
        ),
        (
            "a block scalar line indented less than its first",
            "note: |\n    a\n  b\n",
            3,
        ),
        ("a control character", "slug: x\nname: a\u{1}b\n", 2),
        ("a C1 control character", "slug: x\n# \u{9b}\n", 2),
        ("DEL", "slug: x\nname: a\u{7f}\n", 2),
        (
            "a scalar alone, not in a sequence",
            "slug: x\njust text\n",
            2,
        ),
        ("an indicator first", "slug: x\nname: @x\n", 2),
        (
            "a quoted key without `: `",
            "slug: x\n\"hassio_api\":true\n",
            2,
        ),
    ] {
        let found = outside(text);
        assert_eq!(found.map(|(at, _)| at), Some(line), "{case}: {found:?}");
    }
}

#[test]
fn a_block_scalar_holds_any_text_until_a_line_as_indented_as_its_key() {
    // Inside a block scalar, what would be outside elsewhere is text.
    let text = "slug: x\ndescription: |\n  hassio_api: *a\n  - [not, closed\n  ? key\n\n  %YAML\nhassio_api: true\n";
    assert_eq!(outside(text), None);
    // In a sequence entry, the text is indented past its `-`; past its
    // key when the entry is a mapping.
    assert_eq!(
        outside("slug: x\nlist:\n  - |\n   a\n  - k: >\n     b\n"),
        None
    );
    // After the scalar, lines are read as any others again.
    assert_eq!(
        outside("slug: x\nnote: |\n  text\nname: a: b\n").map(|(line, _)| line),
        Some(4)
    );
}

#[test]
fn plain_and_double_quoted_scalars_may_go_on_over_lines_indented_past_their_key() {
    // As real add-ons write descriptions (helper 73: ESPHome's, Music
    // Assistant's), and a double-quoted item of a sequence.
    for text in [
        "slug: x\ndescription: Build your own\n  experience, required\nhassio_api: true\n",
        "slug: x\ndescription:\n  The server that\n  connects\n\n  and more\nhassio_api: true\n",
        "slug: x\nlist:\n  - one\n    two\n  - three\n",
        "slug: x\nlist:\n  - \"a long\n    text\"\n  - b\n",
        "slug: x\nmap: [config:rw, ssl]\nservices: [mqtt:want]\nicons: {home: mdi:home, url: http://a/b}\n",
        "slug: x\nwords: [café, a@b, x|y]\nversion: 2023.1.0b1\nwhen: 20231-01\n",
    ] {
        assert_eq!(outside(text), None, "{text:?}");
    }
    // Below `key:`, a value with a comment after it (helper 74), which
    // then goes on no further.
    assert_eq!(outside("slug: x\nhassio_api:\n  true # c\nname: y\n"), None);
    assert_eq!(
        outside("slug: x\nnote:\n  text # c\n  more\n").map(|(line, _)| line),
        Some(4)
    );
    // A nested block after `key:` is a block, not text.
    assert_eq!(outside("slug: x\noptions:\n  a: 1\n  b:\n    - c\n"), None);
}
