//! Path patterns of the permission table and their translation to anchored,
//! byte-oriented regular expressions.
//!
//! A pattern reads like the route it guards:
//!
//! | syntax | matches |
//! | --- | --- |
//! | `addons`, `info` | the literal text |
//! | `<slug>` | one segment of letters, digits, `-`, `_` and `.` |
//! | `<name>` (any other name) | one non-empty segment |
//! | `**` | one or more characters of any kind, `/` included |
//! | `*` | zero or more characters of any kind, `/` included |
//! | `{logo,icon}` | one of the listed literals |
//!
//! So `/backups*` is `/backups` and anything after it, `/core/**` is
//! `/core/` followed by at least one character, `/**/info` is any path ending
//! in `/info` below the root.

/// What a pattern is for. Deny-kind patterns (always-denied paths,
/// exceptions, core-only paths) are widened so that no spelling an upstream
/// might read as the same route slips past them: they also match their path
/// with one trailing slash, and they ignore ASCII case (`/os/datadisk/WIPE`
/// is refused like `/os/datadisk/wipe`, whatever the upstream's router does
/// with case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternKind {
    /// A path that is granted: matched as written.
    Grant,
    /// A path that is denied or excepted: matched with or without one
    /// trailing slash.
    Deny,
}

/// Why a pattern cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Patterns are absolute paths.
    #[error("a pattern starts with /")]
    NotAbsolute,
    /// `<` without a closing `>`, or a name that is not lower-case letters.
    #[error("a named segment is written <name>, with lower-case letters and _")]
    BadName,
    /// `<name>` that does not fill a whole segment.
    #[error("a named segment like <slug> must be a whole segment")]
    NamePartOfSegment,
    /// `{` without a closing `}`, or an empty alternative.
    #[error("alternatives are written {{a,b}} with non-empty literals")]
    BadAlternatives,
    /// Characters that a canonical path never holds.
    #[error("a pattern cannot hold {0:?}: the canonical path never does")]
    ForbiddenCharacter(char),
    /// Three or more `*` in a row.
    #[error("use * or **, not more stars")]
    TooManyStars,
}

/// Translates a pattern to an anchored regular expression over the bytes of
/// a canonical path.
pub fn to_regex(pattern: &str, kind: PatternKind) -> Result<String, PatternError> {
    if !pattern.starts_with('/') {
        return Err(PatternError::NotAbsolute);
    }
    let mut out = String::from(match kind {
        PatternKind::Grant => "(?s-u)^",
        PatternKind::Deny => "(?s-u)(?i)^",
    });
    let chars: Vec<char> = pattern.chars().collect();
    let mut index = 0;
    while index < chars.len() {
        index = translate_at(&chars, index, &mut out)?;
    }
    if kind == PatternKind::Deny && !pattern.ends_with('*') {
        out.push_str("/?");
    }
    out.push('$');
    Ok(out)
}

/// Translates the token starting at `index` and returns the index after it.
fn translate_at(chars: &[char], index: usize, out: &mut String) -> Result<usize, PatternError> {
    match chars[index] {
        '*' => stars(chars, index, out),
        '<' => named_segment(chars, index, out),
        '{' => alternatives(chars, index, out),
        c if is_forbidden(c) => Err(PatternError::ForbiddenCharacter(c)),
        c => {
            out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
            Ok(index + 1)
        }
    }
}

fn stars(chars: &[char], index: usize, out: &mut String) -> Result<usize, PatternError> {
    let count = chars[index..].iter().take_while(|&&c| c == '*').count();
    match count {
        1 => out.push_str(".*"),
        2 => out.push_str(".+"),
        _ => return Err(PatternError::TooManyStars),
    }
    Ok(index + count)
}

fn named_segment(chars: &[char], index: usize, out: &mut String) -> Result<usize, PatternError> {
    let close = chars[index..]
        .iter()
        .position(|&c| c == '>')
        .ok_or(PatternError::BadName)?
        + index;
    let name: String = chars[index + 1..close].iter().collect();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        return Err(PatternError::BadName);
    }
    let starts_segment = chars[index - 1] == '/';
    let ends_segment = chars.get(close + 1).is_none_or(|&c| c == '/');
    if !starts_segment || !ends_segment {
        return Err(PatternError::NamePartOfSegment);
    }
    out.push_str(if name == "slug" {
        "[A-Za-z0-9._-]+"
    } else {
        "[^/]+"
    });
    Ok(close + 1)
}

fn alternatives(chars: &[char], index: usize, out: &mut String) -> Result<usize, PatternError> {
    let close = chars[index..]
        .iter()
        .position(|&c| c == '}')
        .ok_or(PatternError::BadAlternatives)?
        + index;
    let inner: String = chars[index + 1..close].iter().collect();
    let options: Vec<&str> = inner.split(',').collect();
    let valid = |option: &&str| {
        !option.is_empty()
            && !option
                .chars()
                .any(|c| "*<>{}".contains(c) || is_forbidden(c))
    };
    if !options.iter().all(valid) {
        return Err(PatternError::BadAlternatives);
    }
    let escaped: Vec<String> = options.iter().map(|option| regex::escape(option)).collect();
    out.push_str(&format!("(?:{})", escaped.join("|")));
    Ok(close + 1)
}

/// Characters step 2 never lets into a canonical path.
fn is_forbidden(c: char) -> bool {
    c.is_control() || c.is_whitespace() || matches!(c, '?' | '#' | '\\' | ';' | '}' | '>')
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::bytes::Regex;

    fn matches(pattern: &str, kind: PatternKind, path: &str) -> bool {
        let regex = Regex::new(&to_regex(pattern, kind).expect("valid pattern")).expect("regex");
        regex.is_match(path.as_bytes())
    }

    #[test]
    fn a_star_suffix_is_the_bare_word_and_anything_after() {
        for path in ["/backups", "/backups/new/full", "/backupsx"] {
            assert!(matches("/backups*", PatternKind::Grant, path), "{path}");
        }
        assert!(!matches("/backups*", PatternKind::Grant, "/backup"));
    }

    #[test]
    fn double_star_needs_at_least_one_character_and_spans_segments() {
        assert!(matches("/core/**", PatternKind::Grant, "/core/api/states"));
        assert!(!matches("/core/**", PatternKind::Grant, "/core/"));
        assert!(matches("/**/info", PatternKind::Grant, "/addons/x/info"));
        assert!(!matches("/**/info", PatternKind::Grant, "/info"));
    }

    #[test]
    fn slug_is_one_segment_of_slug_characters() {
        assert!(matches(
            "/addons/<slug>/info",
            PatternKind::Grant,
            "/addons/a.b-c_d/info"
        ));
        assert!(!matches(
            "/addons/<slug>/info",
            PatternKind::Grant,
            "/addons/a/b/info"
        ));
        assert!(!matches(
            "/addons/<slug>/info",
            PatternKind::Grant,
            "/addons/a~b/info"
        ));
        assert!(matches(
            "/ingress/<session>/x",
            PatternKind::Grant,
            "/ingress/a~b/x"
        ));
    }

    #[test]
    fn alternatives_match_one_literal() {
        let pattern = "/addons/<slug>/{logo,icon}";
        assert!(matches(pattern, PatternKind::Grant, "/addons/x/icon"));
        assert!(!matches(pattern, PatternKind::Grant, "/addons/x/iconx"));
    }

    #[test]
    fn deny_patterns_ignore_case_and_grants_do_not() {
        assert!(matches(
            "/addons/<slug>/security*",
            PatternKind::Deny,
            "/addons/X/SeCuRiTy"
        ));
        assert!(!matches(
            "/addons/<slug>/security",
            PatternKind::Grant,
            "/addons/x/SECURITY"
        ));
    }

    #[test]
    fn deny_patterns_also_match_one_trailing_slash_and_grants_do_not() {
        assert!(matches(
            "/os/datadisk/wipe",
            PatternKind::Deny,
            "/os/datadisk/wipe/"
        ));
        assert!(!matches(
            "/os/datadisk/wipe",
            PatternKind::Grant,
            "/os/datadisk/wipe/"
        ));
    }

    #[test]
    fn regex_metacharacters_are_literal() {
        assert!(!matches("/a.b", PatternKind::Grant, "/axb"));
        assert!(matches("/a+b", PatternKind::Grant, "/a+b"));
    }

    #[test]
    fn malformed_patterns_are_refused_with_a_reason() {
        let cases = [
            ("addons", PatternError::NotAbsolute),
            ("/addons/<Slug>", PatternError::BadName),
            ("/addons/x<slug>", PatternError::NamePartOfSegment),
            ("/addons/{a,}", PatternError::BadAlternatives),
            ("/a?b", PatternError::ForbiddenCharacter('?')),
            ("/a***", PatternError::TooManyStars),
        ];
        for (pattern, expected) in cases {
            assert_eq!(
                to_regex(pattern, PatternKind::Grant),
                Err(expected),
                "{pattern}"
            );
        }
    }
}
