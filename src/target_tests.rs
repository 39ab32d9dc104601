use super::*;

fn parse_target(method: &str, target: &str) -> Result<Target, TargetError> {
    let method = Method::from_bytes(method.as_bytes()).expect("test method");
    let uri: Uri = target.parse().expect("test target parses as a URI");
    parse(&method, &uri)
}

fn refused(target: &str) -> TargetError {
    parse_target("GET", target).expect_err(target)
}

#[test]
fn a_plain_path_is_decided_and_forwarded_as_written() {
    let target = parse_target("GET", "/addons/self/info?x=1").expect("plain target");
    assert_eq!(target.path, "/addons/self/info");
    assert_eq!(target.forward_path(), "/addons/self/info");
    assert_eq!(target.query.as_deref(), Some("x=1"));
}

#[test]
fn an_encoded_letter_is_decided_decoded_and_forwarded_canonically() {
    let target = parse_target("GET", "/addons/self/%69nfo").expect("encoded letter");
    assert_eq!(target.path, "/addons/self/info");
    assert_eq!(target.forward_path(), "/addons/self/info");
}

#[test]
fn non_ascii_is_forwarded_percent_encoded_and_decodes_to_the_decided_path() {
    let target = parse_target("GET", "/core/api/states/sensor.caf%C3%A9").expect("utf-8");
    assert_eq!(target.path, "/core/api/states/sensor.café");
    assert_eq!(target.forward_path(), "/core/api/states/sensor.caf%C3%A9");
}

#[test]
fn one_trailing_slash_is_kept() {
    assert_eq!(
        parse_target("GET", "/core/api/").expect("trailing").path,
        "/core/api/"
    );
}

#[test]
fn the_hostile_filter_sees_through_repeated_encoding() {
    for target in [
        "/discovery/.%252e/addons/x/security",
        "/ingress/abc/.%25252e/.%25252e/backups",
        "/core/api/%2e%2e/%2e%2e/os/info",
        "/x?file=%252e%252e%252fetc",
        "/x?q=%3Cscript%3Ealert(1)%3C/script%3E",
        "/proc/self/environ",
        "/x?q=1%20UNION%20SELECT%20password(",
        "/x?v=/a/b",
    ] {
        assert_eq!(refused(target).step(), 1, "{target}");
    }
}

#[test]
fn ambiguous_spellings_are_refused_at_step_two() {
    let cases = [
        ("/os/datadisk%2Fwipe", TargetError::EncodedSeparator),
        ("/os%5Cdatadisk", TargetError::EncodedSeparator),
        ("/a%3Fb", TargetError::EncodedSeparator),
        ("/a%23b", TargetError::EncodedSeparator),
        ("/os//datadisk/wipe", TargetError::EmptySegment),
        ("//os/datadisk/wipe", TargetError::EmptySegment),
        ("/os/./datadisk/wipe", TargetError::DotSegment),
        ("/os/datadisk/..", TargetError::DotSegment),
        ("/os/datadisk/%2e", TargetError::DotSegment),
        ("/discovery/.%09./x", TargetError::ControlByte),
        ("/a%00b", TargetError::ControlByte),
        ("/a%7fb", TargetError::ControlByte),
        ("/a%ffb", TargetError::InvalidUtf8),
        ("/a%zzb", TargetError::MalformedEncoding),
        ("/a%2", TargetError::MalformedEncoding),
        ("/addons/x/security;x=1", TargetError::PathParameter),
        ("/a%2541", TargetError::DoubleEncoded),
        ("/addons/self/%25%37%33ecurity", TargetError::DoubleEncoded),
        ("/discovery/x%25%32%46y", TargetError::DoubleEncoded),
        ("/x%25%30%30", TargetError::DoubleEncoded),
    ];
    for (target, expected) in cases {
        assert_eq!(refused(target), expected, "{target}");
        assert_eq!(expected.step(), 2);
    }
}

#[test]
fn targets_not_in_origin_form_are_refused() {
    assert_eq!(
        refused("http://evil/addons/self/info"),
        TargetError::NotOriginForm
    );
    assert_eq!(
        parse_target("OPTIONS", "*").expect_err("asterisk"),
        TargetError::NotOriginForm
    );
}

#[test]
fn connect_trace_and_unknown_methods_are_refused() {
    for method in ["TRACE", "WIPE", "post", "PROPFIND"] {
        assert_eq!(
            parse_target(method, "/info").expect_err(method),
            TargetError::MethodNotAllowed
        );
    }
}

#[test]
fn encoding_round_trips_every_decoded_path() {
    for path in ["/a b", "/100%", "/x\"y", "/é/ü", "/a+b=c@d:e"] {
        let encoded = encode_path(path);
        assert_eq!(
            decode_path_once(encoded.as_bytes()).expect("canonical encoding decodes"),
            path.as_bytes(),
            "{path}"
        );
    }
}

#[test]
fn the_bytes_a_path_keeps_unencoded_are_letters_digits_and_the_listed_marks() {
    let marks = b"-._~!$&'()*+,=:@/";
    for byte in 0..=255u8 {
        let expected = byte.is_ascii_alphanumeric() || marks.contains(&byte);
        assert_eq!(stays_as_is(byte), expected, "{byte:#04x}");
    }
    assert_eq!(encode_path("/a b/ü;%"), "/a%20b/%C3%BC%3B%25");
}
