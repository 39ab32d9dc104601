//! Steps 1 and 2 of the evaluation: the hostile-input filter and the canonical
//! target. A request target that passes both becomes a [`Target`], whose path
//! is the one the policy decides on and the one that is forwarded.

use std::sync::OnceLock;

use http::{Method, Uri};
use regex::bytes::Regex;

use crate::byte_set::byte_set;

/// How many decoding rounds the hostile-input filter runs before it calls a
/// target hostile for being encoded too deeply to judge.
const MAX_DECODE_ROUNDS: usize = 8;

/// The methods the gateway forwards; anything else is refused with 405.
pub const FORWARDED_METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// A request target that passed steps 1 and 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The decoded, canonical path: what the policy decides on.
    pub path: String,
    /// The same path percent-encoded canonically, when that differs from
    /// `path` (most paths need no encoding, and then share it).
    encoded_path: Option<String>,
    /// The query string as the client sent it, without the `?`.
    pub query: Option<String>,
}

impl Target {
    /// The path percent-encoded canonically: what the upstream receives.
    /// Decoding it once gives back `path` exactly.
    pub fn forward_path(&self) -> &str {
        self.encoded_path.as_deref().unwrap_or(&self.path)
    }
}

/// Why a request target was refused at step 1 or 2 (always 400, or 405 for
/// the method).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The hostile-input filter matched (step 1).
    #[error("request target refused by the hostile-input filter: {0}")]
    Hostile(&'static str),
    /// The target is still changing after many decoding rounds (step 1).
    #[error("request target is percent-encoded too many times")]
    EncodedTooDeeply,
    /// Absolute form, authority form or `*` (step 2).
    #[error("request target must be in origin form (a path starting with /)")]
    NotOriginForm,
    /// A `%` not followed by two hex digits (step 2).
    #[error("request path has a malformed percent-encoding")]
    MalformedEncoding,
    /// `%2F`, `%5C`, `%3F` or `%23` in the path (step 2).
    #[error("request path has an encoded separator (/, \\, ? or #)")]
    EncodedSeparator,
    /// The path still holds an escape after one decoding (step 2).
    #[error("request path is percent-encoded twice")]
    DoubleEncoded,
    /// `.` or `..` as a path segment (step 2).
    #[error("request path has a dot segment")]
    DotSegment,
    /// `//` inside the path (step 2).
    #[error("request path has an empty segment")]
    EmptySegment,
    /// A backslash in the path (step 2).
    #[error("request path has a backslash")]
    Backslash,
    /// A `;` path parameter, which upstreams split differently (step 2).
    #[error("request path has a ; parameter")]
    PathParameter,
    /// NUL, another control byte or DEL in the decoded path (step 2).
    #[error("request path has a control character")]
    ControlByte,
    /// The decoded path is not UTF-8 (step 2).
    #[error("request path is not valid UTF-8")]
    InvalidUtf8,
    /// CONNECT, TRACE or a method outside [`FORWARDED_METHODS`] (405).
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl TargetError {
    /// The evaluation step that refused the target: 1 for the filter, 2 for the
    /// canonical-target rule.
    pub fn step(&self) -> u8 {
        match self {
            TargetError::Hostile(_) | TargetError::EncodedTooDeeply => 1,
            _ => 2,
        }
    }
}

/// Runs steps 1 and 2 on a method and a request target.
pub fn parse(method: &Method, uri: &Uri) -> Result<Target, TargetError> {
    if !FORWARDED_METHODS.contains(method) {
        return Err(TargetError::MethodNotAllowed);
    }
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(TargetError::NotOriginForm);
    }
    let raw_path = uri.path();
    if !raw_path.starts_with('/') {
        return Err(TargetError::NotOriginForm);
    }

    hostile_filter(raw_path.as_bytes())?;
    if let Some(query) = uri.query() {
        hostile_filter(query.as_bytes())?;
    }

    let path = canonical_path(raw_path)?;
    Ok(Target {
        encoded_path: encoded(&path),
        path,
        query: uri.query().map(str::to_owned),
    })
}

/// Step 1: decode until stable, then look for the hostile shapes of SPEC.md.
fn hostile_filter(raw: &[u8]) -> Result<(), TargetError> {
    if let Some(shape) = hostile_shape(raw) {
        return Err(TargetError::Hostile(shape));
    }
    if !raw.contains(&b'%') {
        return Ok(());
    }
    let mut current = raw.to_vec();
    for _ in 0..MAX_DECODE_ROUNDS {
        let next = percent_decode_lenient(&current);
        if next == current {
            return Ok(());
        }
        if let Some(shape) = hostile_shape(&next) {
            return Err(TargetError::Hostile(shape));
        }
        current = next;
    }
    Err(TargetError::EncodedTooDeeply)
}

/// The name of the first hostile shape found in already-decoded bytes. One
/// combined expression answers the common "none" in a single pass.
fn hostile_shape(decoded: &[u8]) -> Option<&'static str> {
    const SHAPES: [(&str, &str); 5] = [
        (r"proc/self/environ", "environment file access"),
        (r"(?:<|%3C).*script.*(?:>|%3E)", "script injection"),
        (r"\.\.[/\\]", "path traversal"),
        (r"[a-z0-9_]=/(?:[a-z0-9_.]//?)+", "file injection"),
        (
            r"union.*select.*\(|union.*all.*select|concat.*\(",
            "sql injection",
        ),
    ];
    static ANY: OnceLock<Regex> = OnceLock::new();
    static EACH: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    let build = |pattern: &str| {
        Regex::new(&format!("(?is-u){pattern}"))
            .expect("the hostile-input patterns are fixed and valid")
    };
    if !may_be_hostile(decoded) {
        return None;
    }
    let any = ANY.get_or_init(|| {
        let joined: Vec<String> = SHAPES.iter().map(|(p, _)| format!("(?:{p})")).collect();
        build(&joined.join("|"))
    });
    if !any.is_match(decoded) {
        return None;
    }
    let each = EACH.get_or_init(|| SHAPES.iter().map(|(p, name)| (build(p), *name)).collect());
    each.iter()
        .find(|(regex, _)| regex.is_match(decoded))
        .map(|(_, name)| *name)
}

/// A quick test that lets most paths skip the expressions: every hostile
/// shape needs one of `<`, `%`, `=`, `..`, or the words `environ`, `union`
/// or `concat` (in any case).
fn may_be_hostile(bytes: &[u8]) -> bool {
    let has_word = |word: &[u8]| {
        bytes
            .windows(word.len())
            .any(|window| window.eq_ignore_ascii_case(word))
    };
    bytes.iter().any(|b| matches!(b, b'<' | b'%' | b'='))
        || bytes.windows(2).any(|pair| pair == b"..")
        || has_word(b"environ")
        || has_word(b"union")
        || has_word(b"concat")
}

/// Step 2: decode the path once and refuse every spelling that an upstream
/// could read differently from us.
fn canonical_path(raw: &str) -> Result<String, TargetError> {
    let path = if raw.contains('%') {
        let decoded = decode_path_once(raw.as_bytes())?;
        refuse_bytes(&decoded)?;
        String::from_utf8(decoded).map_err(|_| TargetError::InvalidUtf8)?
    } else {
        // Already UTF-8: nothing to check again.
        refuse_bytes(raw.as_bytes())?;
        raw.to_owned()
    };
    check_segments(&path)?;
    Ok(path)
}

/// Refuses control bytes, backslashes and `;` in a decoded path.
fn refuse_bytes(decoded: &[u8]) -> Result<(), TargetError> {
    for &byte in decoded {
        match byte {
            0x00..=0x1f | 0x7f => return Err(TargetError::ControlByte),
            b'\\' => return Err(TargetError::Backslash),
            b';' => return Err(TargetError::PathParameter),
            _ => {}
        }
    }
    Ok(())
}

/// Refuses dot segments and empty segments; one trailing slash is allowed.
fn check_segments(path: &str) -> Result<(), TargetError> {
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        match segment {
            "." | ".." => return Err(TargetError::DotSegment),
            "" if segments.peek().is_some() => return Err(TargetError::EmptySegment),
            _ => {}
        }
    }
    Ok(())
}

/// Decodes `%XX` escapes once, refusing malformed escapes, encoded separators
/// and any result that would decode again (however the second escape was
/// spelled: `%2573` and `%25%37%33` alike).
fn decode_path_once(raw: &[u8]) -> Result<Vec<u8>, TargetError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut index = 0;
    while index < raw.len() {
        if raw[index] != b'%' {
            out.push(raw[index]);
            index += 1;
            continue;
        }
        let byte = hex_pair(raw, index + 1).ok_or(TargetError::MalformedEncoding)?;
        if matches!(byte, b'/' | b'\\' | b'?' | b'#') {
            return Err(TargetError::EncodedSeparator);
        }
        out.push(byte);
        index += 3;
    }
    let escapes_remain = out
        .iter()
        .enumerate()
        .any(|(at, &byte)| byte == b'%' && hex_pair(&out, at + 1).is_some());
    if escapes_remain {
        return Err(TargetError::DoubleEncoded);
    }
    Ok(out)
}

/// Decodes every valid `%XX` escape and keeps anything else as it is; used by
/// the filter, which must see through whatever the upstream might decode.
fn percent_decode_lenient(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut index = 0;
    while index < raw.len() {
        match (raw[index], hex_pair(raw, index + 1)) {
            (b'%', Some(byte)) => {
                out.push(byte);
                index += 3;
            }
            (other, _) => {
                out.push(other);
                index += 1;
            }
        }
    }
    out
}

/// The byte spelled by two hex digits at `at`, if there are two.
fn hex_pair(raw: &[u8], at: usize) -> Option<u8> {
    let high = (*raw.get(at)? as char).to_digit(16)?;
    let low = (*raw.get(at + 1)? as char).to_digit(16)?;
    Some((high * 16 + low) as u8)
}

/// Percent-encodes a decoded path so that it decodes back to itself exactly:
/// unreserved characters, sub-delimiters, `:`, `@` and `/` stay as they are.
pub fn encode_path(path: &str) -> String {
    encoded(path).unwrap_or_else(|| path.to_owned())
}

/// The canonical encoding of a decoded path, when it differs from the path.
fn encoded(path: &str) -> Option<String> {
    if path.bytes().all(stays_as_is) {
        return None;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(path.len() + 16);
    for byte in path.bytes() {
        if stays_as_is(byte) {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0xf)] as char);
        }
    }
    Some(out)
}

/// Whether a byte of a decoded path is written as it is in the canonical
/// encoding: letters, digits and `-._~!$&'()*+,=:@/`. (Looked up: every
/// byte of every forwarded path is asked.)
fn stays_as_is(byte: u8) -> bool {
    STAYS_AS_IS[usize::from(byte)]
}

/// The bytes [`stays_as_is`] answers yes for.
const STAYS_AS_IS: [bool; 256] =
    byte_set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,=:@/");

#[cfg(test)]
#[path = "target_tests.rs"]
mod tests;
