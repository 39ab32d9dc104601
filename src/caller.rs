//! Who is calling: the token headers of a request, and the caller a token
//! belongs to. Tokens are kept only as SHA-256 digests and compared in
//! constant time.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::{Addon, Role};
use crate::signed::{looks_signed, Rejection, SignedTokens};

/// The longest token accepted; anything longer is malformed (400). Real
/// tokens are a few hundred bytes at most.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The token headers, in the order SPEC.md checks them.
pub const TOKEN_HEADERS: [&str; 3] = ["x-supervisor-token", "x-hassio-key", "authorization"];

/// The SHA-256 digest of a token: the only form in which the gateway keeps one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenDigest(pub [u8; 32]);

impl TokenDigest {
    /// Digests a presented token.
    pub fn of(token: &[u8]) -> Self {
        TokenDigest(Sha256::digest(token).into())
    }

    /// Parses a digest written as 64 hex digits.
    pub fn from_hex(hex_digits: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_digits.trim(), &mut bytes).ok()?;
        Some(TokenDigest(bytes))
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest(<redacted>)")
    }
}

/// The caller of a request, as identified from its token.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No token at all (or only empty ones).
    Anonymous,
    /// A token that belongs to nobody.
    Unknown,
    /// The Home Assistant core.
    HomeAssistant,
    /// The host CLI plugin.
    Cli,
    /// The observer plugin.
    Observer,
    /// An add-on, with its manifest fields.
    Addon(Arc<Addon>),
    /// A signed token that failed verification (401).
    Rejected(Rejection),
}

impl Caller {
    /// The caller kind as it appears in logs and `check` output.
    pub fn kind(&self) -> &'static str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::Unknown => "unknown",
            Caller::HomeAssistant => "homeassistant",
            Caller::Cli => "cli",
            Caller::Observer => "observer",
            Caller::Addon(_) => "addon",
            Caller::Rejected(_) => "rejected",
        }
    }

    /// The add-on's slug, for add-on callers.
    pub fn slug(&self) -> Option<&str> {
        match self {
            Caller::Addon(addon) => Some(&addon.slug),
            _ => None,
        }
    }

    /// The add-on's declared role, for add-on callers.
    pub fn role(&self) -> Option<Role> {
        match self {
            Caller::Addon(addon) => Some(addon.role),
            _ => None,
        }
    }
}

/// Why the token headers of a request were refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// One token header appears twice.
    #[error("token header sent more than once")]
    RepeatedHeader,
    /// Two token headers carry different tokens.
    #[error("conflicting tokens in different headers")]
    Conflicting,
    /// A token with bytes that no token can have.
    #[error("malformed token")]
    Malformed,
    /// A token header spelled with `_` or `.`, which some servers read as `-`.
    #[error("token header name spelled ambiguously")]
    AmbiguousHeaderName,
}

/// The token a request carries, if any, from the headers of SPEC.md.
///
/// An empty value is no token; `Authorization` counts only with the Bearer
/// scheme. Refuses a header sent twice, two different tokens and tokens with
/// bytes outside visible ASCII.
pub fn presented_token(headers: &HeaderMap) -> Result<Option<&[u8]>, TokenError> {
    let mut values: [Option<&[u8]>; 3] = [None; 3];
    for (name, value) in headers {
        let Some(slot) = token_header_slot(name.as_str()) else {
            if is_ambiguous_token_header(name) {
                return Err(TokenError::AmbiguousHeaderName);
            }
            continue;
        };
        if values[slot].replace(value.as_bytes()).is_some() {
            return Err(TokenError::RepeatedHeader);
        }
    }
    let mut found: Option<&[u8]> = None;
    for (name, value) in TOKEN_HEADERS.iter().zip(values) {
        let Some(token) = value
            .map(|value| token_in(name, value))
            .transpose()?
            .flatten()
        else {
            continue;
        };
        match found {
            Some(earlier) if earlier != token => return Err(TokenError::Conflicting),
            _ => found = Some(token),
        }
    }
    Ok(found)
}

/// The token inside one header value; `None` for an empty value or another
/// `Authorization` scheme.
fn token_in<'a>(name: &str, value: &'a [u8]) -> Result<Option<&'a [u8]>, TokenError> {
    let token = if name == "authorization" {
        match bearer_token(value) {
            Some(token) => token,
            None => return Ok(None),
        }
    } else {
        value.trim_ascii()
    };
    if token.is_empty() {
        return Ok(None);
    }
    // (Every byte looked at, with no early way out: a fold the compiler
    // makes into a few wide comparisons, where `all` went byte by byte.)
    let graphic = token
        .iter()
        .fold(true, |graphic, byte| graphic & byte.is_ascii_graphic());
    if token.len() > MAX_TOKEN_LEN || !graphic {
        return Err(TokenError::Malformed);
    }
    Ok(Some(token))
}

/// The token of a `Bearer` credential (scheme matched case-insensitively).
/// The scheme and the token are separated by spaces only (RFC 9110, 11.4):
/// a tab there stays part of the token, which is then refused as malformed,
/// rather than read as a separator a server behind might not take it for.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let scheme = value.get(..6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let rest = &value[6..];
    if rest.is_empty() {
        return Some(rest);
    }
    if !rest[0].is_ascii_whitespace() {
        return None;
    }
    let spaces = rest.iter().take_while(|byte| **byte == b' ').count();
    Some(&rest[spaces..])
}

/// Which of [`TOKEN_HEADERS`] `name` is, if any. (A `match`: every header of
/// every request is asked.)
fn token_header_slot(name: &str) -> Option<usize> {
    match name {
        "x-supervisor-token" => Some(0),
        "x-hassio-key" => Some(1),
        "authorization" => Some(2),
        _ => None,
    }
}

/// A header that is not a token header but reads as one once `_` and `.`
/// become `-`.
fn is_ambiguous_token_header(name: &http::HeaderName) -> bool {
    let name = name.as_str();
    name.bytes()
        .fold(false, |any, byte| any | (byte == b'_') | (byte == b'.'))
        && TOKEN_HEADERS.contains(&normalized_name(name).as_ref())
}

/// A header name lower-cased with `_` and `.` spelled `-`, as some servers
/// read them; borrowed when it is already in that form (the common case).
pub fn normalized_name(name: &str) -> Cow<'_, str> {
    // (A fold with no early way out, as in `token_in`: the names of most
    // headers of every request are asked.)
    let changes = name.bytes().fold(false, |changes, byte| {
        changes | (byte == b'_') | (byte == b'.') | byte.is_ascii_uppercase()
    });
    if changes {
        Cow::Owned(name.to_ascii_lowercase().replace(['_', '.'], "-"))
    } else {
        Cow::Borrowed(name)
    }
}

/// The bitwise difference of two digests, folded into one word: zero
/// exactly when they are equal. Every byte is looked at, with no branch on
/// any of them.
fn digest_difference(a: &TokenDigest, b: &TokenDigest) -> u64 {
    a.0.chunks_exact(8)
        .zip(b.0.chunks_exact(8))
        .map(|(x, y)| word(x) ^ word(y))
        .fold(0, |difference, word| difference | word)
}

fn word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

/// Everyone who holds a token, by digest.
#[derive(Debug, Default)]
pub struct Callers {
    entries: Vec<(TokenDigest, Caller)>,
    /// Signed tokens, when signing keys are configured.
    pub signed: Option<Arc<SignedTokens>>,
}

impl Callers {
    /// Adds the holder of a token digest.
    pub fn insert(&mut self, digest: TokenDigest, caller: Caller) {
        self.entries.push((digest, caller));
    }

    /// The caller that holds `token`: every digest is compared in constant
    /// time, with no early exit, so timing tells nothing about which (if any)
    /// matched or how much of it did.
    pub fn identify(&self, token: Option<&[u8]>) -> Caller {
        let Some(token) = token else {
            return Caller::Anonymous;
        };
        let presented = TokenDigest::of(token);
        let mut found = usize::MAX as u64;
        for (index, (digest, _)) in self.entries.iter().enumerate() {
            let equal = digest_difference(digest, &presented).ct_eq(&0);
            found = u64::conditional_select(&found, &(index as u64), equal);
        }
        if let Some((_, caller)) = self.entries.get(found as usize) {
            return caller.clone();
        }
        match &self.signed {
            Some(signed) if looks_signed(token) => {
                // Only base64url and dots: the shape check made it ASCII.
                let text = std::str::from_utf8(token).unwrap_or_default();
                match signed.verify(text, crate::signed::now()) {
                    Ok(addon) => Caller::Addon(addon),
                    Err(rejection) => Caller::Rejected(rejection),
                }
            }
            _ => Caller::Unknown,
        }
    }

    /// How many token holders there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nobody holds a token.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The add-on caller with this slug, for `check --addon`.
    pub fn addon(&self, slug: &str) -> Option<Caller> {
        self.entries
            .iter()
            .find(|(_, caller)| caller.slug() == Some(slug))
            .map(|(_, caller)| caller.clone())
            .or_else(|| {
                let signed = self.signed.as_ref()?;
                signed.addon(slug).map(Caller::Addon)
            })
    }
}

#[cfg(test)]
#[path = "caller_tests.rs"]
mod tests;
