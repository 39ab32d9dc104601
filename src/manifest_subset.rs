//! The YAML a manifest may be written in: a subset of YAML that PyYAML (the
//! Supervisor's reader) and serde-saphyr (the gateway's) read alike, held to
//! line by line before either reads the file.
//!
//! Until 2026-12-06 the gateway refused only what helpers had found the two
//! readers to read differently (`manifests::read_otherwise_by_pyyaml`): a
//! list of what was found, and each round of helpers found more. This is
//! the other way round: a manifest is read only if every line is one of a
//! few plain shapes, so that what was not thought of is refused rather than
//! read. A manifest left out gives no access; an inline `addons` entry is
//! the way around a false refusal.
//!
//! The shapes (after the indentation, spaces only):
//!
//! - an empty line, or a comment (`# ...`);
//! - `---` before anything else (a document start);
//! - `key:` or `key: value`, where the key is a plain word of letters,
//!   digits, `_`, `.`, `/`, `+` and `-` (not first), or is quoted without
//!   escapes;
//! - `- value` or `- key: value` (a sequence entry, also `-` alone and
//!   `- - ...`);
//!
//! where a value is one of: nothing (a nested block follows, or a plain
//! scalar on the lines below); a plain scalar (not starting with an
//! indicator, with no `: ` or ` #` in it, not ending in `:`, and no word
//! PyYAML cannot make a value of, see [`unmakeable`]), which may go on over
//! lines indented past its key that are plain text too; a quoted scalar
//! (double quotes with no escapes but `\\`, `\"`, `\/`, `\n`, `\t` and a
//! `\` ending a line, over lines indented past its key; single quotes with
//! `''`, on one line); a flow collection closed on its line (`[a, "b"]`,
//! `{k: v}`, two levels at most, no trailing comma, its plain scalars held
//! to the rules above and its keys without `:`); or a block scalar's header
//! (`|`, `>`, with `-` or `+`), whose lines, more indented than its key,
//! are text. A comment may follow a value after a space. Anchors, aliases,
//! tags, merge keys, explicit keys, directives, single-quoted scalars and
//! flow collections over several lines, and every character PyYAML will
//! not read are outside it.

/// The first line (counted from 1) of a YAML manifest outside the subset,
/// and why.
pub(crate) fn outside(text: &str) -> Option<(usize, &'static str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut open: Option<Open> = None;
    // The line the open scalar began on.
    let mut opened_on = 0;
    let mut started = false;
    for (index, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let refused = |why| Some((index + 1, why));
        if line.chars().any(not_printable) {
            return refused("a character PyYAML does not read (a control character)");
        }
        match &mut open {
            Some(Open::Block(block)) => match block.takes(line) {
                Ok(true) => continue,
                Ok(false) => open = None,
                Err(why) => return refused(why),
            },
            Some(Open::Quoted { parent }) => match quoted_goes_on(line, *parent) {
                Ok(true) => continue,
                Ok(false) => {
                    open = None;
                    continue;
                }
                Err(why) => return refused(why),
            },
            Some(Open::Plain { parent }) => match plain_goes_on(line, *parent) {
                Ok(true) => continue,
                Ok(false) => open = None,
                Err(why) => return refused(why),
            },
            Some(Open::Nothing { .. }) | None => {}
        }
        let column = line.len() - line.trim_start_matches(' ').len();
        let rest = &line[column..];
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        if !started && column == 0 && is_document_start(rest) {
            started = true;
            continue;
        }
        started = true;
        let opened = match (entry(rest, column), &open) {
            // After `key:` (or `-`) alone, a line past it that is neither
            // begins a plain scalar (`description:` and its text below).
            (Err(NEITHER), Some(Open::Nothing { parent })) if column > *parent => {
                plain_value(rest, *parent)
            }
            (read, _) => read,
        };
        match opened {
            Ok(opened) => (open, opened_on) = (opened, index + 1),
            Err(why) => return refused(why),
        }
    }
    match open {
        Some(Open::Quoted { .. }) => Some((opened_on, "a quoted scalar not closed")),
        _ => None,
    }
}

/// What a line leaves open for the lines after it, past the column
/// `parent` of its key (or `-`).
enum Open {
    /// A block scalar: its lines are text.
    Block(BlockScalar),
    /// A double-quoted scalar not closed on its line.
    Quoted { parent: usize },
    /// A plain scalar, which may go on over lines indented past its key.
    Plain { parent: usize },
    /// Nothing after `key:` or `-`: a nested block follows, or a plain
    /// scalar.
    Nothing { parent: usize },
}

const NEITHER: &str = "a line that is neither `key: value` nor `- item`";
const PLAIN_OUTSIDE: &str = "a plain scalar outside the subset (an indicator first, `: ` or ` #` in it, `:` last, or a word PyYAML cannot make a value of)";

/// Reads a line after one with a plain scalar (`parent`: the column of its
/// key or `-`): whether the scalar goes on on it. A line indented past the
/// key goes on with it, and must itself be plain text with no comment,
/// not starting with `-` or `#`.
fn plain_goes_on(line: &str, parent: usize) -> Result<bool, &'static str> {
    let column = line.len() - line.trim_start_matches(' ').len();
    let rest = &line[column..];
    if rest.is_empty() {
        return Ok(true);
    }
    if column <= parent {
        return Ok(false);
    }
    let text = rest.trim_end_matches(' ');
    let fits = !rest.starts_with(['-', '#'])
        && !text.contains(": ")
        && !text.contains(" #")
        && !text.ends_with(':');
    match fits {
        true => Ok(true),
        false => Err("a line of a plain scalar over several lines outside the subset (`: ` or a comment in it, or `-` or `#` first)"),
    }
}

/// Reads a line inside a double-quoted scalar begun on an earlier line:
/// whether the scalar goes on past it. Its lines are indented past its
/// key, and hold no `"` but the closing one and no escapes but the few
/// (a `\` at a line's end joins the next).
fn quoted_goes_on(line: &str, parent: usize) -> Result<bool, &'static str> {
    let column = line.len() - line.trim_start_matches(' ').len();
    if column == line.len() {
        return Ok(true);
    }
    if column <= parent {
        return Err("a line of a quoted scalar not indented past its key");
    }
    match double_quoted_end(&line[column..]) {
        Some(Some(end)) if comment_or_nothing(&line[column + end + 1..]) => Ok(false),
        Some(Some(_)) => Err("text after a quoted scalar or flow collection"),
        Some(None) => Ok(true),
        None => Err("an escape in a quoted scalar other than `\\\\`, `\\\"`, `\\/`, `\\n`, `\\t`"),
    }
}

/// Where a double-quoted scalar's body (past its opening quote, or a line
/// of it) closes: `Some(Some(at))` at the closing quote, `Some(None)` if
/// it goes on past the line, `None` for an escape outside the few (and a
/// `\` ending the line, which joins the next).
fn double_quoted_end(body: &str) -> Option<Option<usize>> {
    let bytes = body.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => match bytes.get(at + 1) {
                Some(b'\\' | b'"' | b'/' | b'n' | b't') => at += 2,
                None => return Some(None),
                _ => return None,
            },
            b'"' => return Some(Some(at)),
            _ => at += 1,
        }
    }
    Some(None)
}

/// What PyYAML will not read anywhere in a file: control characters but
/// tab, line feed and carriage return, DEL, the C1 controls but U+0085
/// (which the rules in `manifests` refuse), and U+FFFE and U+FFFF.
fn not_printable(c: char) -> bool {
    matches!(c, '\0'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}')
        || ('\u{80}'..='\u{9f}').contains(&c) && c != '\u{85}'
        || matches!(c, '\u{fffe}' | '\u{ffff}')
}

/// `---`, alone or before a comment.
fn is_document_start(rest: &str) -> bool {
    rest.strip_prefix("---").is_some_and(|after| {
        let trimmed = after.trim_start_matches(' ');
        trimmed.is_empty() || (trimmed.starts_with('#') && trimmed.len() < after.len())
    })
}

/// A block scalar being read: the column of the key (or `-`) it belongs
/// to, and the indentation of its first line of text, once seen.
struct BlockScalar {
    parent: usize,
    content: Option<usize>,
}

impl BlockScalar {
    /// Whether `line` is the scalar's (`Ok(false)`: the scalar has ended
    /// before it), or why it cannot be told.
    fn takes(&mut self, line: &str) -> Result<bool, &'static str> {
        let column = line.len() - line.trim_start_matches(' ').len();
        if column == line.len() {
            // An empty line before the first line of text may not hold
            // spaces (YAML refuses more than the text's indentation).
            return match (self.content, column) {
                (None, 0) | (Some(_), _) => Ok(true),
                (None, _) => Err("spaces on an empty line before a block scalar's first line"),
            };
        }
        match self.content {
            None if column > self.parent => {
                self.content = Some(column);
                Ok(true)
            }
            Some(content) if column >= content => Ok(true),
            _ if column > self.parent => {
                Err("a line of a block scalar indented less than its first line")
            }
            _ => Ok(false),
        }
    }
}

/// Reads one line's entry past its indentation (`column`); what scalar it
/// leaves open for the lines after it, if any.
fn entry(mut rest: &str, mut column: usize) -> Result<Option<Open>, &'static str> {
    // The column of the last `-`, if any.
    let mut dash = None;
    while rest == "-" || rest.starts_with("- ") {
        let after = rest[1..].trim_start_matches(' ');
        if after.is_empty() || after.starts_with('#') {
            return Ok(Some(Open::Nothing { parent: column }));
        }
        dash = Some(column);
        column += rest.len() - after.len();
        rest = after;
    }
    match (key(rest)?, dash) {
        (Some(after), _) => value(after, column),
        (None, Some(dash)) => value_text(rest, dash),
        (None, None) => Err(NEITHER),
    }
}

/// The text after a mapping key's `:`, if `rest` starts with a key.
fn key(rest: &str) -> Result<Option<&str>, &'static str> {
    let after = match rest.as_bytes().first() {
        Some(b'"') | Some(b'\'') => match quoted(rest) {
            Some((_, after)) if after.starts_with(':') => after,
            // A quoted scalar that is not a key: a sequence's value (a
            // double-quoted one may go on over lines).
            Some(_) => return Ok(None),
            None if rest.starts_with('"') && double_quoted_end(&rest[1..]) == Some(None) => {
                return Ok(None)
            }
            None => return Err("a quoted scalar not closed on its line, or with an escape"),
        },
        _ => {
            let word = rest
                .find(|c: char| !is_key_char(c))
                .map_or(rest, |end| &rest[..end]);
            if word.is_empty() || word.starts_with('-') {
                return Ok(None);
            }
            match rest[word.len()..].strip_prefix(':') {
                Some(_) if unmakeable(word) => return Err(PLAIN_OUTSIDE),
                Some(after) if after.is_empty() || after.starts_with(' ') => {
                    return Ok(Some(after))
                }
                _ => return Ok(None),
            }
        }
    };
    let after = &after[1..];
    if after.is_empty() || after.starts_with(' ') {
        Ok(Some(after))
    } else {
        Err("a quoted key not followed by `: `")
    }
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '+' | '-')
}

/// Reads a mapping's value: `after` is what follows the key's `:`. The key
/// is at `column`.
fn value(after: &str, column: usize) -> Result<Option<Open>, &'static str> {
    let text = after.trim_start_matches(' ');
    if text.is_empty() || text.starts_with('#') {
        return Ok(Some(Open::Nothing { parent: column }));
    }
    value_text(text, column)
}

/// Reads a value that starts at `text` (past the spaces after `:` or `-`),
/// belonging to the key or `-` at `column`.
fn value_text(text: &str, column: usize) -> Result<Option<Open>, &'static str> {
    let first = text.chars().next().unwrap_or(' ');
    let after = match first {
        '|' | '>' => {
            let header = text[1..].strip_prefix(['-', '+']).unwrap_or(&text[1..]);
            if !comment_or_nothing(header) {
                return Err("a block scalar header other than `|`, `>`, `|-`, `>-`, `|+` or `>+`");
            }
            return Ok(Some(Open::Block(BlockScalar {
                parent: column,
                content: None,
            })));
        }
        // A double-quoted scalar may go on over lines (as the Supervisor's
        // own manifests have one), a single-quoted one may not.
        '"' => match double_quoted_end(&text[1..]) {
            Some(Some(at)) => &text[at + 2..],
            Some(None) => return Ok(Some(Open::Quoted { parent: column })),
            None => return Err("a quoted scalar not closed on its line, or with an escape"),
        },
        '\'' => match quoted(text) {
            Some((_, after)) => after,
            None => return Err("a quoted scalar not closed on its line, or with an escape"),
        },
        '[' | '{' => match flow(text, 0) {
            Some(after) => after,
            None => return Err("a flow collection outside the subset (`[a, b]`, `{k: v}`)"),
        },
        _ => return plain_value(text, column),
    };
    if comment_or_nothing(after) {
        Ok(None)
    } else {
        Err("text after a quoted scalar or flow collection")
    }
}

/// Nothing but spaces, or spaces and then a comment.
fn comment_or_nothing(rest: &str) -> bool {
    let trimmed = rest.trim_start_matches(' ');
    trimmed.is_empty() || (trimmed.starts_with('#') && trimmed.len() < rest.len())
}

/// Reads a plain scalar's first line (`text`, a comment after it
/// included), of the key or `-` at `parent`: without a comment, it may go
/// on on the next lines.
fn plain_value(text: &str, parent: usize) -> Result<Option<Open>, &'static str> {
    let (plain, comment) = match text.find(" #") {
        Some(at) => (&text[..at], true),
        None => (text, false),
    };
    match plain_scalar(plain.trim_end()) {
        true => Ok((!comment).then_some(Open::Plain { parent })),
        false => Err(PLAIN_OUTSIDE),
    }
}

/// A plain scalar in block context, as written on its line.
fn plain_scalar(text: &str) -> bool {
    let mut chars = text.chars();
    let (Some(first), second) = (chars.next(), chars.next()) else {
        return false;
    };
    let indicator = "-?:,[]{}#&*!|>'\"%@`".contains(first);
    let dash_word = first == '-' && second.is_some_and(|c| c != ' ');
    (!indicator || dash_word)
        && !text.contains(": ")
        && !text.ends_with(':')
        && !text.contains(" #")
        && !unmakeable(text.trim_end())
}

/// Whether PyYAML takes a plain scalar for a value of a type it then cannot
/// make, and so refuses the file, where serde-saphyr reads it as text
/// (helper 73): `=` (YAML 1.1's "value" type); anything shaped like a
/// date (four digits and `-`; PyYAML refuses `2023-02-29`, and a real
/// date would be a date, not text, to the Supervisor); and `0x`, `0b` or
/// `.` followed by underscores alone (`0x_`: `int('', 16)`).
fn unmakeable(word: &str) -> bool {
    let dated = word.len() > 4
        && word.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        && word.as_bytes()[4] == b'-';
    let unsigned = word.strip_prefix(['-', '+']).unwrap_or(word);
    let digits = ["0x", "0b", "."]
        .iter()
        .find_map(|prefix| unsigned.strip_prefix(prefix))
        .map(|rest| rest.split(['e', 'E']).next().unwrap_or(""));
    word == "=" || dated || digits.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b == b'_'))
}

/// A quoted scalar at the start of `text` (`"` or `'`) closed on its line:
/// its body and what follows it, or `None` if it is not closed there or
/// has an escape outside the few allowed.
fn quoted(text: &str) -> Option<(&str, &str)> {
    let body = text.get(1..)?;
    if text.starts_with('"') {
        let at = double_quoted_end(body)??;
        return Some((&body[..at], &body[at + 1..]));
    }
    let bytes = body.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'\'' if bytes.get(at + 1) == Some(&b'\'') => at += 2,
            b'\'' => return Some((&body[..at], &body[at + 1..])),
            _ => at += 1,
        }
    }
    None
}

/// A flow collection at the start of `text`, closed on its line, at most
/// two levels deep: what follows it.
fn flow(text: &str, depth: usize) -> Option<&str> {
    let close = match text.chars().next()? {
        '[' if depth < 2 => ']',
        '{' if depth < 2 => '}',
        _ => return None,
    };
    let mut rest = text[1..].trim_start_matches(' ');
    if let Some(after) = rest.strip_prefix(close) {
        return Some(after);
    }
    loop {
        if close == '}' {
            // A key: a scalar, never a collection.
            if rest.starts_with(['[', '{']) {
                return None;
            }
            rest = flow_item(rest, depth, true)?;
            rest = rest.strip_prefix(": ")?.trim_start_matches(' ');
        }
        rest = flow_item(rest, depth, false)?.trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix(close) {
            return Some(after);
        }
        rest = rest.strip_prefix(',')?.trim_start_matches(' ');
    }
}

/// One item of a flow collection: a nested collection, a quoted scalar or
/// a plain scalar (up to the next `,`, `[`, `]`, `{` or `}`, held to the
/// rules of [`plain_scalar`]; in a mapping's key, up to its `: `, with no
/// `:` in it); what follows it.
fn flow_item(text: &str, depth: usize, key: bool) -> Option<&str> {
    match text.chars().next()? {
        '[' | '{' => flow(text, depth + 1),
        '"' | '\'' => quoted(text).map(|(_, after)| after),
        _ => {
            let end = text.find([',', '[', ']', '{', '}']).unwrap_or(text.len());
            let end = match key {
                true => text[..end].find(": ")?,
                false => end,
            };
            let word = text[..end].trim_end_matches(' ');
            let fits = plain_scalar(word) && !(key && word.contains(':'));
            fits.then(|| &text[word.len()..])
        }
    }
}

#[cfg(test)]
#[path = "manifest_subset_tests.rs"]
mod tests;
