//! Protection mode as the gateway sees it: when an allowed
//! `POST /addons/<slug>/security` (or `/v2/apps/<slug>/security`) succeeds
//! upstream, the new state is recorded here, in memory and, when
//! `state_file` is set, in that file, which `addons` reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The file's shape.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    /// Per add-on slug: whether protection mode is on.
    protected: BTreeMap<String, bool>,
}

/// The protection mode of every add-on the gateway has seen toggled; the
/// rest are on, the Supervisor's default.
#[derive(Debug)]
pub struct ProtectionState {
    file: Option<PathBuf>,
    states: Mutex<BTreeMap<String, bool>>,
}

impl ProtectionState {
    /// A state kept in memory only.
    pub fn in_memory() -> ProtectionState {
        ProtectionState {
            file: None,
            states: Mutex::new(BTreeMap::new()),
        }
    }

    /// The state kept in `file` (empty if it does not exist yet), or in
    /// memory only.
    pub fn load(file: Option<PathBuf>) -> Result<ProtectionState, String> {
        let states = match &file {
            Some(path) => {
                folder_exists(path)?;
                read(path)?
            }
            None => BTreeMap::new(),
        };
        Ok(ProtectionState {
            file,
            states: Mutex::new(states),
        })
    }

    /// Whether protection mode is on for `slug`.
    pub fn protected(&self, slug: &str) -> bool {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.get(slug).copied().unwrap_or(true)
    }

    /// Records a change and writes the file, if there is one.
    pub fn set(&self, slug: &str, protected: bool) -> std::io::Result<()> {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.insert(slug.to_owned(), protected);
        let Some(path) = &self.file else {
            return Ok(());
        };
        let text = serde_json::to_string_pretty(&StateFile {
            protected: states.clone(),
        })
        .map_err(std::io::Error::other)?;
        crate::files::replace(path, &(text + "\n"))
    }
}

/// A state file not written yet needs its folder, for the first toggle to
/// write it: refused at start rather than at that toggle.
fn folder_exists(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() && !folder.is_dir() => Err(format!(
            "{}: its folder {} does not exist",
            path.display(),
            folder.display()
        )),
        _ => Ok(()),
    }
}

/// Reads a state file; one that does not exist is empty.
pub fn read(path: &Path) -> Result<BTreeMap<String, bool>, String> {
    match crate::files::read_text(path, crate::files::MAX_FILE_BYTES) {
        Ok(text) => serde_json::from_str::<StateFile>(&text)
            .map(|file| file.protected)
            .map_err(|error| format!("{}: not a protection state file: {error}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(error) => Err(format!("cannot read {}: {error}", path.display())),
    }
}

/// The slug a canonical toggle path names (`self` left as it is).
pub fn toggle_slug(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("/addons/")
        .or_else(|| path.strip_prefix("/v2/apps/"))?;
    let slug = rest.strip_suffix("/security")?;
    (!slug.is_empty() && !slug.contains('/')).then_some(slug)
}

/// Whether a toggle request's body reaches the Supervisor as the bytes the
/// gateway sees, read as UTF-8: no `Content-Encoding` but `identity` (the
/// Supervisor's server inflates gzip and deflate), and at most one
/// `Content-Type`, with no parameter but `charset=utf-8` (it decodes the
/// text with the charset named, in any of its spellings: in UTF-7, `+AGQ-`
/// is a `d`). Otherwise the gateway cannot tell what the Supervisor read.
pub fn read_as_sent(headers: &http::HeaderMap) -> bool {
    let identity = headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .all(|value| {
            value
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"identity")
        });
    let mut types = headers.get_all(http::header::CONTENT_TYPE).iter();
    let utf8 = match (types.next(), types.next()) {
        (None, _) => true,
        // No parameter but `charset=utf-8`: any other (`charset*0=utf-7`,
        // RFC 2231's spelling, which aiohttp reads as a charset; helper 80)
        // may change how the Supervisor reads the body.
        (Some(value), None) => value.to_str().is_ok_and(|value| {
            value.split(';').skip(1).all(|parameter| {
                let Some((name, charset)) = parameter.split_once('=') else {
                    return parameter.trim().is_empty();
                };
                let charset = charset.trim();
                let charset = charset
                    .strip_prefix('"')
                    .and_then(|quoted| quoted.strip_suffix('"'))
                    .unwrap_or(charset);
                name.trim().eq_ignore_ascii_case("charset")
                    && (charset.eq_ignore_ascii_case("utf-8")
                        || charset.eq_ignore_ascii_case("utf8"))
            })
        }),
        (Some(_), Some(_)) => false,
    };
    identity && utf8
}

/// What a protection-mode toggle's JSON body asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// Protection mode on (`true`) or off.
    Set(bool),
    /// No `protected` field: the Supervisor changes nothing.
    Nothing,
    /// Not a JSON object, or a `protected` the Supervisor refuses.
    Unreadable,
}

/// What a toggle request's JSON body asks for, read as the Supervisor
/// reads it: its `protected` field is optional and passes through
/// voluptuous' `Boolean()`, so `true`, `false`, the words `1`, `true`,
/// `yes`, `on`, `enable` (true) and `0`, `false`, `no`, `off`, `disable`
/// (false) in any case, a number (true unless zero), null (false), and a
/// list or object (true unless empty) all set it; other text is refused.
pub fn requested(body: &[u8]) -> Asked {
    use serde_json::Value;
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Asked::Unreadable;
    };
    let Some(protected) = fields.get("protected") else {
        return Asked::Nothing;
    };
    let set = match protected {
        Value::Bool(value) => Some(*value),
        Value::Null => Some(false),
        Value::Number(number) => Some(number.as_f64().is_some_and(|n| n != 0.0)),
        Value::String(text) => crate::manifests::boolean_word(text),
        Value::Array(items) => Some(!items.is_empty()),
        Value::Object(members) => Some(!members.is_empty()),
    };
    set.map_or(Asked::Unreadable, Asked::Set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toggle_paths_name_their_slug() {
        assert_eq!(toggle_slug("/addons/core_ssh/security"), Some("core_ssh"));
        assert_eq!(toggle_slug("/v2/apps/core_ssh/security"), Some("core_ssh"));
        assert_eq!(toggle_slug("/addons/self/security"), Some("self"));
        for other in [
            "/addons/a/b/security",
            "/addons//security",
            "/addons/a/info",
            "/store/addons/a/security",
        ] {
            assert_eq!(toggle_slug(other), None, "{other}");
        }
    }

    #[test]
    fn a_body_is_read_only_when_it_reaches_the_supervisor_as_utf8_json() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut map = http::HeaderMap::new();
            for (name, value) in pairs {
                map.append(
                    http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                    http::HeaderValue::from_str(value).expect("value"),
                );
            }
            map
        };
        for plain in [
            headers(&[]),
            headers(&[("content-type", "application/json")]),
            headers(&[("content-type", "application/json; charset=UTF-8")]),
            headers(&[("content-type", "application/json;charset=\"utf8\"")]),
            headers(&[("content-encoding", "identity")]),
        ] {
            assert!(read_as_sent(&plain), "{plain:?}");
        }
        for other in [
            headers(&[("content-type", "application/json; charset=utf-7")]),
            headers(&[("content-type", "application/json; charset=utf-16")]),
            headers(&[("content-type", "text/plain; charset=latin-1")]),
            headers(&[("content-encoding", "gzip")]),
            headers(&[
                ("content-encoding", "identity"),
                ("content-encoding", "deflate"),
            ]),
            headers(&[
                ("content-type", "application/json"),
                ("content-type", "text/plain"),
            ]),
            headers(&[("content-type", "application/json; charset*0=utf-7")]),
            headers(&[("content-type", "application/json; charset*=utf-8''utf-7")]),
            headers(&[(
                "content-type",
                "application/json; charset=utf-8; charset*=''utf-7",
            )]),
            headers(&[("content-type", "application/json; x=1")]),
            headers(&[("content-type", "application/json; charset")]),
        ] {
            assert!(!read_as_sent(&other), "{other:?}");
        }
    }

    #[test]
    fn the_requested_state_is_read_as_the_supervisors_schema_reads_it() {
        for (body, asked) in [
            (r#"{"protected": false}"#, Asked::Set(false)),
            (r#"{"protected": true, "x": 1}"#, Asked::Set(true)),
            (r#"{"protected": "no"}"#, Asked::Set(false)),
            (r#"{"protected": "OFF"}"#, Asked::Set(false)),
            (r#"{"protected": "Disable"}"#, Asked::Set(false)),
            (r#"{"protected": "0"}"#, Asked::Set(false)),
            (r#"{"protected": "enable"}"#, Asked::Set(true)),
            (r#"{"protected": 0}"#, Asked::Set(false)),
            (r#"{"protected": 0.0}"#, Asked::Set(false)),
            (r#"{"protected": 2}"#, Asked::Set(true)),
            (r#"{"protected": null}"#, Asked::Set(false)),
            (r#"{"protected": []}"#, Asked::Set(false)),
            (r#"{"protected": [0]}"#, Asked::Set(true)),
            (
                r#"{"protected": true, "protected": false}"#,
                Asked::Set(false),
            ),
            (r#"{}"#, Asked::Nothing),
            (r#"{"protected": "y"}"#, Asked::Unreadable),
            (r#"{"protected": "offf"}"#, Asked::Unreadable),
            (r#"[{"protected": false}]"#, Asked::Unreadable),
            ("garbage", Asked::Unreadable),
        ] {
            assert_eq!(requested(body.as_bytes()), asked, "{body}");
        }
    }

    #[test]
    fn the_state_survives_in_its_file_and_defaults_to_protected() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("state.json");
        let state = ProtectionState::load(Some(path.clone())).expect("empty");
        assert!(state.protected("a"));
        state.set("a", false).expect("written");
        assert!(!state.protected("a"));
        let again = ProtectionState::load(Some(path.clone())).expect("read back");
        assert!(!again.protected("a") && again.protected("b"));
        std::fs::write(&path, "not json").expect("write");
        assert!(ProtectionState::load(Some(path)).is_err());
    }

    #[test]
    fn a_state_file_whose_folder_is_missing_is_refused_at_once() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("no-such-folder").join("state.json");
        let Err(error) = ProtectionState::load(Some(path)) else {
            panic!("a state file in a missing folder should be refused");
        };
        assert!(error.contains("does not exist"), "{error}");
        // A file name alone is in the working directory, which exists.
        assert!(folder_exists(Path::new("state-not-there.json")).is_ok());
        // `addons` only reads it: no file yet is no toggle yet.
        let missing = dir.path().join("no-such-folder").join("state.json");
        assert_eq!(read(&missing), Ok(BTreeMap::new()));
    }
}
