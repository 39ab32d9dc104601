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

/// The `protected` value of a toggle request's JSON body.
pub fn requested(body: &[u8]) -> Option<bool> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("protected")?.as_bool()
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
    fn the_requested_state_comes_from_the_json_body() {
        assert_eq!(requested(br#"{"protected": false}"#), Some(false));
        assert_eq!(requested(br#"{"protected": true, "x": 1}"#), Some(true));
        assert_eq!(requested(br#"{"protected": "no"}"#), None);
        assert_eq!(requested(b"garbage"), None);
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
