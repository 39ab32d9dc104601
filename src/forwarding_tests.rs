use super::*;

/// The headers of a head as written on the wire, in order.
fn written_headers(head: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut slots = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut slots);
    assert!(request.parse(head).expect("a valid head").is_complete());
    request
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect()
}

/// An add-on with the Supervisor API, of `role`.
fn addon(slug: &str, role: crate::config::Role) -> Caller {
    Caller::Addon(Arc::new(crate::config::Addon {
        slug: slug.into(),
        hassio_api: true,
        role,
        homeassistant_api: false,
        auth_api: false,
    }))
}

#[tokio::test]
async fn the_head_written_directly_has_the_headers_hyper_would_be_given() {
    let config = crate::config::Config::from_yaml(
        "upstream: http://127.0.0.1:8081\nidentity_headers: true\n",
        "test.yaml",
    )
    .expect("config");
    let forwarder = Forwarder::new(&config);
    let peer = Peer::new("192.0.2.7:4000".parse().expect("address"));
    let addon = |slug: &str| addon(slug, crate::config::Role::Manager);
    let request = http::Request::get("/os/info?x=1")
        .header("host", "supervisor")
        .header("x-supervisor-token", "abc")
        .header("accept", "application/json")
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "1")
        .header("x-forwarded-for", "203.0.113.9")
        .body(())
        .expect("request");
    let (parts, ()) = request.into_parts();
    let target = crate::target::parse(&parts.method, &parts.uri).expect("target");
    let decision = crate::decision::decide_for(
        &crate::table::Table::builtin().expect("table"),
        crate::decision::Standing::Cli,
        &parts.method,
        &target.path,
    );
    let permit = decision.permit(target).expect("allowed");
    // A slug that cannot be a header value is left out by both paths.
    for caller in [addon("bench"), addon("bad\u{1}slug"), Caller::Cli] {
        let head = forwarder
            .upstream_head(&permit, &parts, &caller, &peer, None)
            .expect("head");
        let given: Vec<(String, Vec<u8>)> = forwarder
            .upstream_headers(&parts.headers, &caller, &peer)
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect();
        let written = written_headers(&head);
        assert_eq!(written, given, "{:?}", caller.kind());
        let slug = written.iter().find(|(name, _)| name == "x-gateway-addon");
        match caller.slug() {
            Some("bench") => assert_eq!(slug.map(|s| &s.1[..]), Some(&b"bench"[..])),
            _ => assert!(slug.is_none()),
        }
        assert!(written.iter().all(|(name, _)| name != "x-drop-me"));
        // A short body read whole goes out behind the same head, framed by
        // its length alone.
        let body = Bytes::from_static(b"{}");
        let with_body = forwarder
            .upstream_head(&permit, &parts, &caller, &peer, Some(&body))
            .expect("head");
        let mut written_with = written_headers(&with_body);
        let length = written_with.pop();
        assert_eq!(written_with, written, "{:?}", caller.kind());
        assert_eq!(length, Some(("content-length".to_owned(), b"2".to_vec())));
        assert_eq!(
            with_body.len(),
            head.len() + "content-length: 2\r\n".len() + 2
        );
        assert!(with_body.ends_with(b"\r\n\r\n{}"));
    }
}

#[test]
fn identity_headers_go_out_with_upstream_token_or_when_asked_for_only() {
    let peer = Peer::new("192.0.2.7:4000".parse().expect("address"));
    let caller = addon("bench", crate::config::Role::Backup);
    let incoming = headers(&[("host", "supervisor")]);
    for (extra, sent) in [
        ("", false),
        ("identity_headers: false\n", false),
        ("identity_headers: true\n", true),
        ("upstream_token: own-credential-0123\n", true),
        (
            "upstream_token: own-credential-0123\nidentity_headers: true\n",
            true,
        ),
    ] {
        let text = format!("upstream: http://127.0.0.1:8081\n{extra}");
        let config = crate::config::Config::from_yaml(&text, "test.yaml").expect("config");
        let given = Forwarder::new(&config).upstream_headers(&incoming, &caller, &peer);
        let identity: Vec<&str> = given
            .keys()
            .map(HeaderName::as_str)
            .filter(|name| name.starts_with("x-gateway-"))
            .collect();
        let expected: &[&str] = if sent { &IDENTITY_HEADERS } else { &[] };
        assert_eq!(identity, expected, "{extra:?}");
        assert!(given.contains_key("x-forwarded-for"), "{extra:?}");
    }
    let refused = crate::config::Config::from_yaml(
        "upstream: http://127.0.0.1:8081\nupstream_token: own-credential-0123\nidentity_headers: false\n",
        "test.yaml",
    )
    .err()
    .expect("refused");
    assert_eq!(
        (refused.key.as_str(), refused.line),
        ("identity_headers", 3)
    );
}

#[test]
fn the_gateways_credential_goes_only_with_a_caller_it_identified() {
    let config = crate::config::Config::from_yaml(
        "upstream: http://127.0.0.1:8081\nupstream_token: own-credential-0123\n",
        "test.yaml",
    )
    .expect("config");
    let forwarder = Forwarder::new(&config);
    let peer = Peer::new("192.0.2.7:4000".parse().expect("address"));
    let incoming = headers(&[
        ("host", "supervisor"),
        ("x-supervisor-token", "nobody-holds-this"),
    ]);
    for (caller, credential) in [
        (Caller::Anonymous, false),
        (Caller::Unknown, false),
        (Caller::Cli, true),
        (Caller::HomeAssistant, true),
    ] {
        let given = forwarder.upstream_headers(&incoming, &caller, &peer);
        let authorization = given.get("authorization").map(HeaderValue::as_bytes);
        let expected: Option<&[u8]> = credential.then_some(b"Bearer own-credential-0123");
        assert_eq!(authorization, expected, "{}", caller.kind());
        // The client's own token never goes on with upstream_token.
        assert!(
            !given.contains_key("x-supervisor-token"),
            "{}",
            caller.kind()
        );
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
            HeaderValue::from_str(value).expect("test header value"),
        );
    }
    map
}

#[test]
fn identity_headers_are_reserved_in_every_spelling() {
    for name in [
        "x-hass-is-admin",
        "X_Hass_User_ID",
        "x.remote.user.id",
        "x-ingress-path",
        "X-Forwarded-For",
        "forwarded",
        "Forwarded",
        "FORWARDED",
        "x-real-ip",
        "x_gateway_role",
    ] {
        assert!(is_reserved_header(name), "{name}");
    }
    assert!(!is_reserved_header("forwarded-by"));
    assert!(!is_reserved_header("f"));
    assert!(!is_reserved_header("x-hassio-key"));
    assert!(!is_reserved_header("content-type"));
}

#[test]
fn connection_may_not_name_a_header_the_gateway_relies_on() {
    for named in [
        "X-Supervisor-Token",
        "authorization",
        "x-forwarded-for",
        "X-Gateway-Role",
    ] {
        let map = headers(&[("connection", &format!("keep-alive, {named}"))]);
        assert!(header_problem(&map).is_some(), "{named}");
    }
    let plain = headers(&[("connection", "keep-alive, x-custom")]);
    assert_eq!(header_problem(&plain), None);
}

#[test]
fn method_override_headers_are_refused() {
    for name in [
        "x-http-method-override",
        "X_HTTP_Method",
        "x.method.override",
    ] {
        let map = headers(&[(name, "POST")]);
        assert!(header_problem(&map).is_some(), "{name}");
    }
    let map = headers(&[("x-http-method-overridden", "POST"), ("method", "POST")]);
    assert_eq!(header_problem(&map), None);
}

#[test]
fn response_hop_by_hop_headers_and_connection_named_ones_are_dropped() {
    let mut map = headers(&[
        ("connection", "x-secret-hop"),
        ("x-secret-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("content-type", "application/json"),
    ]);
    strip_hop_by_hop(&mut map);
    assert_eq!(map.len(), 1);
    assert!(map.contains_key("content-type"));
}

/// The hop-by-hop headers an answer loses (its `content-length` stays).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

#[test]
fn each_hop_by_hop_header_is_dropped_even_alone_and_an_answer_without_any_is_left_as_it_is() {
    for name in HOP_BY_HOP {
        let mut map = headers(&[("content-type", "text/plain"), (name, "1"), ("date", "d")]);
        strip_hop_by_hop(&mut map);
        let left: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["content-type", "date"], "{name} alone");
    }
    let plain = [
        ("content-type", "application/json"),
        ("content-length", "2"),
        ("x-kept", "1"),
        ("x-kept", "2"),
    ];
    let mut map = headers(&plain);
    strip_hop_by_hop(&mut map);
    assert_eq!(map, headers(&plain));
}

#[test]
fn an_item_with_bytes_over_0x7f_does_not_hide_the_rest_of_a_list() {
    let value = |text: &str| HeaderValue::from_str(text).expect("value");
    assert!(value_lists(&value("close, café"), "close"));
    let named = headers(&[("connection", "keep-alive, x-forwarded-for, café")]);
    assert!(header_problem(&named).is_some());
    let mut answer = headers(&[
        ("connection", "x-secret-hop, café"),
        ("x-secret-hop", "1"),
        ("content-type", "application/json"),
    ]);
    strip_hop_by_hop(&mut answer);
    assert_eq!(answer.len(), 1);
    assert!(answer.contains_key("content-type"));
}

#[test]
fn a_kept_header_map_comes_back_empty_and_a_huge_one_is_not_kept() {
    let used = headers(&[("host", "a"), ("x-one", "1"), ("x-two", "2")]);
    let room = used.capacity();
    keep_spare_header_map(used);
    let spare = spare_header_map(2);
    assert!(spare.is_empty());
    assert!(spare.capacity() >= room);
    let mut huge = HeaderMap::with_capacity(SPARE_HEADER_MAP_CAPACITY * 2);
    huge.insert("x-big", HeaderValue::from_static("1"));
    keep_spare_header_map(huge);
    let next = spare_header_map(2);
    assert!(
        next.capacity() < SPARE_HEADER_MAP_CAPACITY,
        "the huge map was kept"
    );
}

#[test]
fn a_kept_head_buffer_comes_back_empty_and_a_huge_one_is_not_kept() {
    let mut used = Vec::with_capacity(1024);
    used.extend_from_slice(b"GET /os/info HTTP/1.1\r\n\r\n");
    let at = used.as_ptr();
    keep_spare_head(used);
    let spare = spare_head();
    assert!(spare.is_empty());
    assert_eq!(spare.as_ptr(), at, "the kept buffer was not the one given");
    assert!(spare.capacity() >= 1024);
    keep_spare_head(vec![b'x'; SPARE_HEAD_CAPACITY * 2]);
    let next = spare_head();
    assert!(
        next.capacity() <= SPARE_HEAD_CAPACITY,
        "the huge buffer was kept"
    );
}

#[test]
fn every_hop_by_hop_header_of_an_answer_goes_but_its_content_length() {
    let mut pairs: Vec<(&str, &str)> = std::iter::once("content-length")
        .chain(HOP_BY_HOP)
        .map(|name| (name, "1"))
        .collect();
    pairs.push(("keep-alive", "timeout=9"));
    pairs.push(("x-kept", "yes"));
    let mut map = headers(&pairs);
    strip_hop_by_hop(&mut map);
    let left: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
    assert_eq!(left, ["content-length", "x-kept"]);
}

#[test]
fn an_event_stream_is_told_by_its_media_type_alone() {
    let typed = |value: &'static str| {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
        is_event_stream(&headers)
    };
    for stream in [
        "text/event-stream",
        "text/event-stream; charset=utf-8",
        "Text/Event-Stream",
        " text/event-stream ;x=y",
    ] {
        assert!(typed(stream), "{stream}");
    }
    for other in [
        "text/plain",
        "text/event-streams",
        "application/json; text/event-stream",
        "",
    ] {
        assert!(!typed(other), "{other}");
    }
    assert!(!is_event_stream(&HeaderMap::new()));
}

#[test]
fn an_ipv4_peer_is_written_as_display_writes_it() {
    // Every octet value in every place, the others varied with it.
    for octet in 0..=255u8 {
        for place in 0..4 {
            let mut octets = [0u8; 4];
            for (index, other) in octets.iter_mut().enumerate() {
                *other = octet.wrapping_mul(7).wrapping_add(index as u8 * 61);
            }
            octets[place] = octet;
            let ip = Ipv4Addr::from(octets);
            assert_eq!(dotted_quad(ip).as_bytes(), ip.to_string().as_bytes());
        }
    }
    for ip in [
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        Ipv4Addr::LOCALHOST,
    ] {
        assert_eq!(dotted_quad(ip).as_bytes(), ip.to_string().as_bytes());
    }
}

#[test]
fn a_peer_is_forwarded_as_its_address_v4_or_v6() {
    for (addr, expected) in [
        ("203.0.113.9:5000", "203.0.113.9"),
        ("10.0.0.1:1", "10.0.0.1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[::ffff:192.0.2.1]:80", "::ffff:192.0.2.1"),
    ] {
        let peer = Peer::new(addr.parse().expect("an address"));
        assert_eq!(
            peer.forwarded_for.expect("an X-Forwarded-For value"),
            expected,
            "{addr}"
        );
    }
}

#[test]
fn values_of_a_name_are_found_in_order_among_the_others_as_get_all_finds_them() {
    let map = headers(&[
        ("content-length", "2"),
        ("connection", "keep-alive"),
        ("x-other", "1"),
        ("Connection", "close"),
        ("host", "h"),
    ]);
    for name in [header::CONNECTION, header::CONTENT_LENGTH, header::HOST] {
        let found: Vec<_> = values_of(&map, &name).collect();
        let looked_up: Vec<_> = map.get_all(&name).iter().collect();
        assert_eq!(found, looked_up, "{name}");
    }
    let connection: Vec<_> = values_of(&map, &header::CONNECTION).collect();
    assert_eq!(connection, ["keep-alive", "close"]);
    assert_eq!(values_of(&map, &header::DATE).count(), 0);
    assert!(lists(&map, header::CONNECTION, "close"));
    assert_eq!(declared_length(&map), Some(2));
}

#[test]
fn a_plain_decimal_is_digits_alone_within_their_bound() {
    assert_eq!(plain_decimal(b"2", 4), Some(2));
    assert_eq!(plain_decimal(b"0002", 4), Some(2));
    assert_eq!(plain_decimal(b"00002", 4), None, "over the digits allowed");
    assert_eq!(
        plain_decimal(b"9999999999999999999", 19),
        Some(9_999_999_999_999_999_999)
    );
    assert_eq!(
        plain_decimal(b"10000000000000000000", 40),
        None,
        "19 at most"
    );
    for not in [&b""[..], b"+2", b"-2", b" 2", b"2,2", b"0x2", b"2a"] {
        assert_eq!(plain_decimal(not, 19), None, "{not:?}");
    }
}
