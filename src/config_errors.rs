//! YAML parse errors said in a user's words, with the file, key and line,
//! and for files that may hold secrets, without any key that could be one.

use std::cell::RefCell;
use std::fmt::Write as _;

use serde::de::DeserializeOwned;
use serde_path_to_error::{Path, Segment};

use super::{is_slug, ConfigError};

/// Reads a YAML file that holds no secrets (a table, policy cases); an
/// error is said with the file, the key's full path (`roles.manager[2]`)
/// and its line, and a reason with any value the parser quoted taken out.
pub fn from_yaml<T: DeserializeOwned>(text: &str, file: &str) -> Result<T, ConfigError> {
    read_yaml(text, file, false)
}

/// The same for a file that may hold secrets (the configuration, the
/// secrets file, the revocation list): a key is shown only where it cannot
/// be a secret (see `near_miss` and `KNOWN_KEYS`), else `(key)` in its
/// place. A token pasted without its key, or `token:s3cr3t` (flow style
/// without a space after the colon) read as one key, never reaches the
/// message.
pub fn from_guarded_yaml<T: DeserializeOwned>(text: &str, file: &str) -> Result<T, ConfigError> {
    read_yaml(text, file, true)
}

fn read_yaml<T: DeserializeOwned>(
    text: &str,
    file: &str,
    may_hold_secrets: bool,
) -> Result<T, ConfigError> {
    if let Some(error) = refused_tag(text, file, may_hold_secrets) {
        return Err(error);
    }
    // The parser's error knows the line; the path to the value being read
    // when it failed is known only to the wrapper around the deserializer.
    let failed_at = RefCell::new(None);
    // (`refused_tag` has refused every tag but `!!str` already; the
    // parser's own refusal of tags it does not know stays behind it:
    // unquoted, `token: !sha256 <hex>` would be the token `<hex>`.)
    let mut options = serde_saphyr::Options::default();
    options.reject_unsupported_tags = true;
    options.strict_booleans = true;
    serde_saphyr::with_deserializer_from_str_with_options(text, options, |deserializer| {
        serde_path_to_error::deserialize(deserializer).map_err(|error| {
            failed_at.replace(Some(error.path().clone()));
            error.into_inner()
        })
    })
    .map_err(|error| {
        let path = failed_at.take();
        parse_error(&error, text, file, path.as_ref(), may_hold_secrets)
    })
}

/// Where a walk over the YAML's events is: in a mapping (with the key of
/// the value being read, and the key's line, once that key has been read)
/// or in a sequence, at the index of the next item.
enum Level {
    Map { key: Option<(String, u64)> },
    Seq { index: usize },
}

/// The first tag in a YAML text that the gateway's files do not take,
/// refused with its whole path and line. Only `!!str` on a scalar is
/// taken, and a null tag on a plain null (`!!null ~`, `!!null`): YAML
/// gives the other tags meanings a reader of the file may not see (its
/// parser reads `!!null x`, and `!null x`, as no value, so an optional key
/// so written is as if left out: no revocation list, the built-in table;
/// `!!binary` decodes base64), and tags of its own (`!sha256 x`) would be
/// dropped.
pub(super) fn refused_tag(text: &str, file: &str, may_hold_secrets: bool) -> Option<ConfigError> {
    let refused = first_refused_tag(text)?;
    let path: Vec<&Segment> = refused.path.iter().collect();
    let key = match path.is_empty() {
        true => "(document)".to_owned(),
        false => dotted(&path, may_hold_secrets),
    };
    let reason = match refused.null {
        true => {
            "`!!null` makes this value no value at all, as if the key were left out; \
             drop the tag, or write `null` where none is meant"
        }
        false => {
            "a YAML tag (`!...`) is not taken here (only `!!str`); a value starting \
             with `!` must be quoted"
        }
    };
    Some(ConfigError {
        file: file.to_owned(),
        line: refused.line,
        key,
        reason: reason.to_owned(),
    })
}

/// A tag [`first_refused_tag`] found: its line (that of its key, for a
/// mapping's value), its path, and whether it is a null tag.
struct RefusedTag {
    line: u64,
    path: Vec<Segment>,
    null: bool,
}

/// Whether a tag is taken on a node: `!!str` on a scalar, or a null tag on
/// a plain null (`~`, `null` or nothing; a quoted `""` or `"null"` is
/// text, which the tag would make no value).
fn is_taken(tag: &granit_parser::Tag, scalar: bool, plain_null: bool) -> bool {
    scalar && (tag.is_yaml_core_schema_tag("str") || (is_null_tag(tag) && plain_null))
}

/// A tag YAML's parser reads as null: `!!null`, and the spellings it takes
/// for it (`!null`, `!<!!null>`, a `%TAG` handle for either).
fn is_null_tag(tag: &granit_parser::Tag) -> bool {
    ["tag:yaml.org,2002:", "!"].iter().any(|namespace| {
        tag.suffix_in_namespace(namespace)
            .is_some_and(|suffix| suffix.trim_start_matches('!') == "null")
    })
}

/// Walks the YAML's events to the first tag that is not taken. A syntax
/// error ends the walk: the parser says it next.
fn first_refused_tag(text: &str) -> Option<RefusedTag> {
    use granit_parser::{Event, Parser, ScalarStyle};

    let mut stack: Vec<Level> = Vec::new();
    let mut parser = Parser::new_from_str(text);
    while let Some(Ok((event, span))) = parser.next_event() {
        let at = span.start.line() as u64;
        let (tag, scalar, plain_null, opens) = match &event {
            Event::Scalar(value, style, _, tag) => {
                let plain_null = *style == ScalarStyle::Plain
                    && matches!(value.as_ref(), "" | "~" | "null" | "Null" | "NULL");
                (tag.as_deref(), Some(value.as_ref()), plain_null, None)
            }
            Event::MappingStart(_, _, tag) => {
                (tag.as_deref(), None, false, Some(Level::Map { key: None }))
            }
            Event::SequenceStart(_, _, tag) => {
                (tag.as_deref(), None, false, Some(Level::Seq { index: 0 }))
            }
            Event::Alias(_) => (None, None, false, None),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                // (A collection that was a key is said at the line it ends.)
                node_read(&mut stack, None, at);
                continue;
            }
            _ => continue,
        };
        if let Some(tag) = tag.filter(|tag| !is_taken(tag, scalar.is_some(), plain_null)) {
            let mut path = walked_path(&stack);
            // A tagged key is named by itself, a value by its key's line
            // (the tag may stand there, the value below it).
            let line = match stack.last() {
                Some(Level::Map { key: None }) => {
                    if let Some(key) = scalar {
                        path.push(Segment::Map {
                            key: key.to_owned(),
                        });
                    }
                    at
                }
                Some(Level::Map {
                    key: Some((_, line)),
                }) => *line,
                _ => at,
            };
            let null = is_null_tag(tag);
            return Some(RefusedTag { line, path, null });
        }
        match opens {
            Some(level) => stack.push(level),
            None => node_read(&mut stack, scalar, at),
        }
    }
    None
}

/// Moves the walk on past a node just read at `line`: a mapping's key
/// (its text, if a scalar) or value, or a sequence's item.
fn node_read(stack: &mut [Level], scalar: Option<&str>, line: u64) {
    match stack.last_mut() {
        Some(Level::Map { key }) => {
            *key = match key {
                None => Some((scalar.unwrap_or("(key)").to_owned(), line)),
                Some(_) => None,
            }
        }
        Some(Level::Seq { index }) => *index += 1,
        None => {}
    }
}

/// The path of the node the walk is at, as the parser's own paths are
/// written (for [`dotted`]).
fn walked_path(stack: &[Level]) -> Vec<Segment> {
    stack
        .iter()
        .filter_map(|level| match level {
            Level::Map {
                key: Some((key, _)),
            } => Some(Segment::Map { key: key.clone() }),
            Level::Map { key: None } => None,
            Level::Seq { index } => Some(Segment::Seq { index: *index }),
        })
        .collect()
}

/// The segments of a path the parser was on, up to where the path was
/// lost on the way (a syntax error, a key given twice), and whether it was
/// kept whole; without the `value` that [`serde_saphyr::Spanned`] puts
/// under each key it wraps (no file of ours has a key of that name).
fn segments(path: &Path) -> (Vec<&Segment>, bool) {
    let kept: Vec<&Segment> = path
        .iter()
        .filter(|segment| !matches!(segment, Segment::Map { key } if key == "value"))
        .take_while(|segment| !matches!(segment, Segment::Unknown))
        .collect();
    let whole = !path
        .iter()
        .any(|segment| matches!(segment, Segment::Unknown));
    (kept, whole)
}

/// Segments as the gateway's own checks write a path
/// (`addons[1].hassio_role`), empty at the top; in a file that may hold
/// secrets, a mapping key that is no known key (nor a misspelling of one)
/// is written `(key)`.
fn dotted(segments: &[&Segment], may_hold_secrets: bool) -> String {
    let mut out = String::new();
    for segment in segments {
        let name = match segment {
            Segment::Seq { index } => {
                let _ = write!(out, "[{index}]");
                continue;
            }
            Segment::Map { key } => shown(key, may_hold_secrets),
            Segment::Enum { variant } => variant.as_str(),
            Segment::Unknown => "?",
        };
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(name);
    }
    out
}

/// A key as a message may show it: in a file that may hold secrets, only
/// a known key or a misspelling of one, else `(key)`.
fn shown(key: &str, may_hold_secrets: bool) -> &str {
    match !may_hold_secrets || near_miss(key, KNOWN_KEYS) {
        true => key,
        false => "(key)",
    }
}

/// The last mapping key of a path, if it ends in one.
fn last_key<'a>(segments: &[&'a Segment]) -> Option<&'a str> {
    match segments.last()? {
        Segment::Map { key } => Some(key),
        _ => None,
    }
}

/// `parent.key`, or `key` at the top.
fn joined(parent: &str, key: &str) -> String {
    match parent {
        "" => key.to_owned(),
        _ => format!("{parent}.{key}"),
    }
}

fn parse_error(
    error: &serde_saphyr::Error,
    text: &str,
    file: &str,
    path: Option<&Path>,
    may_hold_secrets: bool,
) -> ConfigError {
    let line = error.location().map_or(0, |location| location.line());
    let written = key_on_line(text, line);
    // The key written on the error's line, where it may be shown.
    let line_key = || match &written {
        Some(key) => shown(key, may_hold_secrets).to_owned(),
        None => "(document)".to_owned(),
    };
    let message = error.without_snippet().to_string();
    let message = first_line(&message);
    // Where the parser was: the value at fault for a wrong value, the
    // mapping (and, for an unknown key, that key) for a key missing,
    // unknown or given twice. A path that does not pass through the key
    // written on the error's line (`addons: [{slug: a, ...}]` is on the
    // path `addons[0]...`) belongs to a syntax error, where the parser was
    // in a mapping above the fault: the line's key says more.
    let (segments, whole) = path.map(segments).unwrap_or_default();
    let on_line = whole
        && match &written {
            Some(written) => segments
                .iter()
                .any(|segment| matches!(segment, Segment::Map { key } if key == written)),
            None => !segments.is_empty(),
        };
    let value_key = || match on_line {
        true => dotted(&segments, may_hold_secrets),
        false => line_key(),
    };
    let parent = |field: &str| {
        let inner = match last_key(&segments) {
            Some(last) if last == field => &segments[..segments.len() - 1],
            _ => &segments[..],
        };
        dotted(inner, may_hold_secrets)
    };
    let (key, reason) = if let Some(field) = quoted_after(message, "missing field") {
        (
            joined(&dotted(&segments, may_hold_secrets), &field),
            "required key missing from the mapping that ends here".to_owned(),
        )
    } else if let Some(field) = quoted_after(message, "unknown field") {
        let parent = parent(&field);
        let (key, reason) = unknown_key(field, message, may_hold_secrets);
        (joined(&parent, &key), reason)
    } else if message.contains("multiple YAML documents") {
        (
            "(document)".to_owned(),
            "a second YAML document (after `---`); the file is one document".to_owned(),
        )
    } else if message.contains("DuplicateKeyPolicy") || message.contains("duplicate") {
        // The parser names the key (in flow style the line may hold several).
        let named = message
            .strip_prefix("duplicate mapping key: ")
            .and_then(|rest| rest.split_once(", set DuplicateKeyPolicy"))
            .map(|(named, _)| shown(named, may_hold_secrets).to_owned());
        let key = named.unwrap_or_else(line_key);
        (
            joined(&parent(&key), &key),
            "this key is given twice".to_owned(),
        )
    } else if let Some(reason) = not_a_number(message) {
        (value_key(), reason)
    } else if message.starts_with("cannot deserialize null") {
        // Said in Rust's words (`use Option<String>`) by the parser.
        (
            value_key(),
            "a value is required here; it is empty or null".to_owned(),
        )
    } else {
        (value_key(), redact_values(message))
    };
    ConfigError {
        file: file.to_owned(),
        line,
        key,
        reason,
    }
}

/// An unknown key and what to say of it: shown with the keys expected,
/// unless the file may hold secrets and the key is no misspelling of one
/// (then only its start, where that is a key run into its value, or not
/// at all).
fn unknown_key(field: String, message: &str, may_hold_secrets: bool) -> (String, String) {
    // The list after the last ", expected ": the key itself may hold the
    // word (`unexpected_...`), the list of known keys never does.
    let expected = message
        .rsplit_once(", expected ")
        .map_or("", |(_, rest)| rest);
    let expected = expected
        .split(" at line ")
        .next()
        .unwrap_or(expected)
        .trim();
    let known: Vec<&str> = expected
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        .filter(|word| !word.is_empty() && !matches!(*word, "one" | "of"))
        .collect();
    let start = field.split(|c: char| !is_key_char(c)).next().unwrap_or("");
    if !may_hold_secrets || near_miss(&field, &known) {
        (field, format!("unknown key; expected {expected}"))
    } else if start.len() < field.len() && near_miss(start, &known) {
        (
            format!("{start}..."),
            format!(
                "not a key: a space missing after `:`? (the rest is not shown: \
                 it may be a value); expected {expected}"
            ),
        )
    } else {
        (
            "(key)".to_owned(),
            format!(
                "an unknown key, not shown: it is no misspelling of a known key, \
                 and may be a secret (a token pasted without its key?); expected {expected}"
            ),
        )
    }
}

/// Whether an unknown key in a file that may hold secrets may be shown: only
/// as a misspelling of one of the `known` keys (at most two edits away, one
/// for keys under four characters). A key that merely contains a known
/// word may be a token (`example-addon-token`).
pub(super) fn near_miss(key: &str, known: &[&str]) -> bool {
    let most = if key.len() < 4 { 1 } else { 2 };
    key.len() <= 64
        && key.chars().all(is_key_char)
        && known.iter().any(|known| edits(key, known) <= most)
}

/// Every key of the configuration file and of the revocation list. A key
/// read from an error's line is shown only if it is one of these or a
/// misspelling of one: a key of any other shape may be a pasted token, even
/// one of lower-case words.
pub(super) const KNOWN_KEYS: &[&str] = &[
    "addon_manifests",
    "addon_secrets",
    "addons",
    "admin_listen",
    "algorithm",
    "audience",
    "audit_log",
    "auth_api",
    "body_idle_timeout_ms",
    "cli",
    "hassio_api",
    "hassio_role",
    "header_read_timeout_ms",
    "homeassistant",
    "homeassistant_api",
    "identity_headers",
    "issued_before",
    "issuer",
    "jti",
    "keep_alive_timeout_ms",
    "keys",
    "kid",
    "leeway_s",
    "limits",
    "listen",
    "max_body_bytes",
    "max_connections",
    "max_event_streams_per_addon",
    "max_header_bytes",
    "max_headers",
    "max_held_body_bytes",
    "max_upload_bytes",
    "max_websocket_message_bytes",
    "max_websockets_per_addon",
    "observer",
    "private_key",
    "public_key",
    "reuse_port",
    "revocation_file",
    "secret",
    "secret_file",
    "send_timeout_ms",
    "sha256",
    "shadow_table",
    "shutdown_grace_ms",
    "sign",
    "signing",
    "slug",
    "state_file",
    "table",
    "token",
    "tokens",
    "upload_paths",
    "upstream",
    "upstream_body_idle_timeout_ms",
    "upstream_connect_timeout_ms",
    "upstream_pool_size",
    "upstream_response_timeout_ms",
    "upstream_token",
    "watch_interval_ms",
    "workers",
];

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// How many single-character insertions, deletions and substitutions turn
/// `a` into `b` (Levenshtein distance), for short ASCII keys.
pub(super) fn edits(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &x) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(x != y))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The text between the first pair of backticks after `prefix`.
fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = &message[message.find(prefix)? + prefix.len()..];
    let start = rest.find('`')? + 1;
    let end = rest[start..].find('`')? + start;
    Some(rest[start..end].to_owned())
}

/// The mapping key written on a 1-based line, if the line has one.
fn key_on_line(text: &str, line: u64) -> Option<String> {
    let source = text
        .lines()
        .nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let trimmed = source.trim_start().trim_start_matches("- ");
    let (key, _) = trimmed.split_once(':')?;
    let key = key.trim().trim_matches(['"', '\'']);
    (!key.is_empty() && is_slug(&key.replace(' ', "_"))).then(|| key.to_owned())
}

/// The parser's "invalid u64 at line 5, column 20" (a scalar that is not
/// a number of the field's type: a word, a fraction, a negative or too
/// large a number), said in a user's words.
pub(super) fn not_a_number(message: &str) -> Option<String> {
    let kind = message
        .strip_prefix("invalid ")?
        .split_whitespace()
        .next()?;
    let bits = kind.strip_prefix('u').or_else(|| kind.strip_prefix('i'))?;
    let integer = bits == "size" || (!bits.is_empty() && bits.bytes().all(|b| b.is_ascii_digit()));
    if !integer {
        return None;
    }
    Some(match kind.starts_with('u') {
        true => "not a whole number of 0 or more (or too large)".to_owned(),
        false => "not a whole number (or too large)".to_owned(),
    })
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message)
}

/// Whether a parser message is about a tag it refused.
fn about_a_tag(message: &str) -> bool {
    ["tagged enum", "unsupported tag", "tag `"]
        .iter()
        .any(|start| message.starts_with(start))
}

/// Keeps a parser message but drops the quoted value it complains about:
/// "invalid type: string \"x\", expected a boolean" becomes
/// "invalid type, expected a boolean". Any other message the parser quotes
/// a part of the file in (a tag, a number it refused) is said without it.
fn redact_values(message: &str) -> String {
    if about_a_tag(message) {
        return "a YAML tag (`!...`) is not taken here; a value starting with `!` \
                must be quoted"
            .to_owned();
    }
    if message.contains("non-finite") || message.contains("not a finite number") {
        return "YAML reads this as a number (infinity or not-a-number): \
                put it in quotes if it is text"
            .to_owned();
    }
    let mentions_value = [
        "invalid type",
        "invalid value",
        "unknown variant",
        "invalid length",
    ]
    .iter()
    .any(|kind| message.contains(kind));
    if !mentions_value {
        return without_quoted(message);
    }
    let (head, expected) = match message.find("expected") {
        Some(at) => message.split_at(at),
        None => (message, ""),
    };
    let kind = head.split([':', '`', '"']).next().unwrap_or(head).trim();
    let kind = kind.trim_end_matches(',');
    if expected.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}, {expected}")
    }
}

/// A message with every part in backquotes or double quotes taken out.
fn without_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut open: Option<char> = None;
    for c in message.chars() {
        match open {
            Some(quote) if c == quote => open = None,
            Some(_) => {}
            None if c == '`' || c == '"' => open = Some(c),
            None => out.push(c),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}
