use super::*;
use http::HeaderValue;

type Pair<'a> = (&'a str, &'a [u8]);

fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
            HeaderValue::from_bytes(value).expect("test header value"),
        );
    }
    map
}

#[test]
fn each_token_header_is_read() {
    for (name, value) in [
        ("x-supervisor-token", &b"abc"[..]),
        ("x-hassio-key", b"abc"),
        ("authorization", b"Bearer abc"),
        ("authorization", b"bearer   abc "),
    ] {
        let map = headers(&[(name, value)]);
        assert_eq!(presented_token(&map), Ok(Some(&b"abc"[..])), "{name}");
    }
}

#[test]
fn empty_tokens_and_other_schemes_are_no_token() {
    for (name, value) in [
        ("x-supervisor-token", &b""[..]),
        ("authorization", b"Bearer"),
        ("authorization", b"Bearer "),
        ("authorization", b"Basic abc"),
        ("authorization", b"Bearerabc"),
    ] {
        let map = headers(&[(name, value)]);
        assert_eq!(presented_token(&map), Ok(None), "{name}: {value:?}");
    }
}

#[test]
fn the_same_token_in_two_headers_is_one_token() {
    let map = headers(&[
        ("x-supervisor-token", b"abc"),
        ("authorization", b"Bearer abc"),
    ]);
    assert_eq!(presented_token(&map), Ok(Some(&b"abc"[..])));
}

#[test]
fn conflicting_repeated_and_malformed_tokens_are_refused() {
    let cases: [(&[Pair], TokenError); 6] = [
        (
            &[
                ("x-supervisor-token", b"abc"),
                ("authorization", b"Bearer xyz"),
            ],
            TokenError::Conflicting,
        ),
        (
            &[
                ("x-supervisor-token", b"abc"),
                ("x-supervisor-token", b"abc"),
            ],
            TokenError::RepeatedHeader,
        ),
        (
            &[("authorization", b"Bearer \xff\xfe\x80")],
            TokenError::Malformed,
        ),
        (
            &[("x_supervisor_token", b"abc")],
            TokenError::AmbiguousHeaderName,
        ),
        (&[("authorization", b"Bearer\tabc")], TokenError::Malformed),
        (&[("authorization", b"Bearer \tabc")], TokenError::Malformed),
    ];
    for (pairs, expected) in cases {
        assert_eq!(presented_token(&headers(pairs)), Err(expected));
    }
}

#[test]
fn identify_finds_the_holder_and_nobody_else() {
    let mut callers = Callers::default();
    callers.insert(TokenDigest::of(b"core-token"), Caller::HomeAssistant);
    callers.insert(TokenDigest::of(b"cli-token"), Caller::Cli);
    assert_eq!(callers.identify(Some(b"cli-token")).kind(), "cli");
    assert_eq!(
        callers.identify(Some(b"core-token")).kind(),
        "homeassistant"
    );
    assert_eq!(callers.identify(Some(b"cli-toke")).kind(), "unknown");
    assert_eq!(callers.identify(None).kind(), "anonymous");
}

#[test]
fn a_digest_never_shows_in_debug_output() {
    let digest = TokenDigest::of(b"secret");
    assert!(!format!("{digest:?}").contains(&hex::encode(digest.0)[..8]));
}

#[test]
fn each_token_header_has_its_own_slot_and_no_other_header_has_one() {
    for (slot, name) in TOKEN_HEADERS.iter().enumerate() {
        assert_eq!(token_header_slot(name), Some(slot), "{name}");
    }
    for name in [
        "x-supervisor_token",
        "x-hassio-keys",
        "authorisation",
        "host",
        "",
    ] {
        assert_eq!(token_header_slot(name), None, "{name}");
    }
}

#[test]
fn normalizing_a_name_changes_exactly_underscores_dots_and_capitals() {
    for byte in 0..=127u8 {
        let name = format!("x{}y", byte as char);
        let changed = matches!(normalized_name(&name), Cow::Owned(_));
        let expected = byte == b'_' || byte == b'.' || byte.is_ascii_uppercase();
        assert_eq!(changed, expected, "{byte:#04x}");
    }
    assert_eq!(normalized_name("X_Hassio.Key"), "x-hassio-key");
    assert_eq!(normalized_name("x-supervisor-token"), "x-supervisor-token");
}
