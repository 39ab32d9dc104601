//! The gateway's rules for headers: which describe one connection and are
//! never forwarded, which only the gateway may set, which refuse a request
//! outright, and how comma-separated values are read.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::caller::{normalized_name, TOKEN_HEADERS};

/// Headers that describe one connection, never forwarded in either direction.
/// `content-length` is not one, but the gateway never copies the client's:
/// the upstream request gets framing of the gateway's own, from the body.
/// (A `match`, not a list searched in turn: every header of every request
/// and answer is asked.)
pub(super) fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "content-length"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Headers that the gateway sets for the upstream to say who is calling.
pub const IDENTITY_HEADERS: [&str; 3] = ["x-gateway-caller", "x-gateway-addon", "x-gateway-role"];

pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(super) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(super) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(super) const X_GATEWAY_CALLER: HeaderName = HeaderName::from_static(IDENTITY_HEADERS[0]);
pub(super) const X_GATEWAY_ADDON: HeaderName = HeaderName::from_static(IDENTITY_HEADERS[1]);
pub(super) const X_GATEWAY_ROLE: HeaderName = HeaderName::from_static(IDENTITY_HEADERS[2]);

/// Whether a header, its name normalized, would override the method
/// judged.
fn is_method_override(normalized: &str) -> bool {
    matches!(
        normalized,
        "x-http-method-override" | "x-http-method" | "x-method-override"
    )
}

/// Whether a header name starts with `x` in either case, as every reserved
/// and method-override header does but `forwarded`: most headers are
/// settled by that alone, before their name is normalized.
fn starts_with_x(name: &str) -> bool {
    name.as_bytes()
        .first()
        .is_some_and(|first| first.eq_ignore_ascii_case(&b'x'))
}

/// Whether a client header carries identity or forwarding information that
/// only the gateway may set (any case, with `_` or `.` for `-`).
pub fn is_reserved_header(name: &str) -> bool {
    if !starts_with_x(name) && !name.eq_ignore_ascii_case("forwarded") {
        return false;
    }
    let name = normalized_name(name);
    name.starts_with("x-hass-")
        || name.starts_with("x-remote-user-")
        || name.starts_with("x-forwarded-")
        || name.starts_with("x-gateway-")
        || matches!(name.as_ref(), "x-ingress-path" | "forwarded" | "x-real-ip")
}

/// A reason to refuse the request for its headers alone (400), if any. One
/// pass over the headers.
pub fn header_problem(headers: &HeaderMap) -> Option<&'static str> {
    let (mut hosts, mut codings, mut plain_chunked) = (0, 0, true);
    for (name, value) in headers {
        match name.as_str() {
            "host" => hosts += 1,
            "transfer-encoding" => {
                codings += 1;
                plain_chunked &= value.as_bytes().eq_ignore_ascii_case(b"chunked");
            }
            "connection" if names_a_protected_header(value) => {
                return Some("Connection names a header the gateway relies on");
            }
            other if starts_with_x(other) && is_method_override(&normalized_name(other)) => {
                return Some("method override headers are not accepted");
            }
            _ => {}
        }
    }
    if hosts > 1 {
        return Some("more than one Host header");
    }
    if codings > 1 || !plain_chunked {
        // hyper accepts any list ending in chunked; anything but one plain
        // chunked would reach the upstream de-chunked but not decoded.
        return Some("only Transfer-Encoding: chunked is accepted");
    }
    None
}

/// Whether a `Connection` value lists a credential, forwarding or gateway
/// header, or `Host`.
fn names_a_protected_header(value: &HeaderValue) -> bool {
    list_items(value).any(|name| {
        let name = String::from_utf8_lossy(name);
        is_reserved_header(&name)
            || TOKEN_HEADERS.contains(&normalized_name(&name).as_ref())
            || name.eq_ignore_ascii_case("host")
    })
}

/// The items of a comma-separated header value, trimmed, empty ones left
/// out. Read as bytes: a value may hold bytes over 0x7F (obs-text), and an
/// item with them must not hide the others, as it would if the whole value
/// were dropped for not being ASCII.
fn list_items(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    value
        .as_bytes()
        .split(|byte| *byte == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|item| !item.is_empty())
}

/// Whether any `name` header lists `token` (case-insensitively) in its
/// comma-separated value.
pub(crate) fn lists(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    values_of(headers, &name).any(|value| value_lists(value, token))
}

/// The values of the `name` headers of a head, in order, found by a look at
/// each of its names: for a standard name that is a comparison of two
/// numbers, cheaper than the hashed lookup of `HeaderMap::get_all` for the
/// few headers a head has (at most `limits.max_headers`).
pub(crate) fn values_of<'a>(
    headers: &'a HeaderMap,
    name: &'a HeaderName,
) -> impl Iterator<Item = &'a HeaderValue> {
    headers
        .iter()
        .filter(move |(each, _)| *each == name)
        .map(|(_, value)| value)
}

/// A length as a `Content-Length` item gives it: ASCII digits only, no
/// sign, no spaces (the caller trims them), at most `most_digits` of them
/// (19 keep any such number within a `u64`); `None` for anything else.
pub(crate) fn plain_decimal(digits: &[u8], most_digits: usize) -> Option<u64> {
    if digits.is_empty() || digits.len() > most_digits.min(19) {
        return None;
    }
    digits.iter().try_fold(0u64, |sum, digit| {
        digit
            .is_ascii_digit()
            .then(|| sum * 10 + u64::from(digit - b'0'))
    })
}

/// Whether a comma-separated header value lists `token`
/// (case-insensitively).
pub(crate) fn value_lists(value: &HeaderValue, token: &str) -> bool {
    list_items(value).any(|item| item.eq_ignore_ascii_case(token.as_bytes()))
}

/// The header names listed in `Connection`, lower-cased.
pub(super) fn connection_names(headers: &HeaderMap) -> Vec<String> {
    values_of(headers, &header::CONNECTION)
        .flat_map(list_items)
        .map(|name| String::from_utf8_lossy(name).to_ascii_lowercase())
        .collect()
}

/// Removes hop-by-hop headers and those the `Connection` header names.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // The upstream's own Content-Length describes the body it sends, which
    // is passed on as it is (a HEAD answer has no body to count).
    let hop = |name: &HeaderName| *name != header::CONTENT_LENGTH && is_hop_by_hop(name.as_str());
    // Most answers have nothing to remove, which a look at each name
    // settles: `Connection` is itself hop-by-hop, so without one no name
    // is listed in one.
    if !headers.keys().any(hop) {
        return;
    }
    let named = connection_names(headers);
    let dropped: Vec<HeaderName> = headers
        .keys()
        .filter(|name| hop(name) || named.iter().any(|named| named == name.as_str()))
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(name);
    }
}
