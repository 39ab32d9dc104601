//! Add-on manifests read from a directory laid out like an add-on
//! repository: one folder per add-on holding its `config.yaml`, `config.yml`
//! or `config.json`. The fields of SPEC.md are read with the Supervisor's
//! defaults; a manifest with an invalid field is reported with its path and
//! field, and the others still load.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::{is_slug, Role};
use crate::rating::{AppArmor, Privileges};

/// The capabilities a manifest's `privileged` list may name (the
/// Supervisor's list).
const CAPABILITIES: &[&str] = &[
    "BPF",
    "CHECKPOINT_RESTORE",
    "DAC_READ_SEARCH",
    "IPC_LOCK",
    "NET_ADMIN",
    "NET_RAW",
    "PERFMON",
    "SYS_ADMIN",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
];

/// The largest manifest read; real ones are a few KiB.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Manifest file names, in the order they are looked for.
const FILE_NAMES: [&str; 3] = ["config.yaml", "config.yml", "config.json"];

/// What the gateway reads from one add-on's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Where it was read from; `None` for an inline `addons` entry.
    pub path: Option<PathBuf>,
    /// `slug`.
    pub slug: String,
    /// `hassio_api` (default: false).
    pub hassio_api: bool,
    /// `hassio_role` (default: default).
    pub role: Role,
    /// `homeassistant_api` (default: false).
    pub homeassistant_api: bool,
    /// `auth_api` (default: false).
    pub auth_api: bool,
    /// `apparmor` (default: true), and whether the folder holds its own
    /// `apparmor.txt`.
    pub apparmor: AppArmor,
    /// `ingress` (default: false).
    pub ingress: bool,
    /// `host_network` (default: false).
    pub host_network: bool,
    /// `host_pid` (default: false).
    pub host_pid: bool,
    /// `host_uts` (default: false).
    pub host_uts: bool,
    /// `privileged` (default: empty): capabilities.
    pub privileged: Vec<String>,
    /// `full_access` (default: false).
    pub full_access: bool,
    /// `docker_api` (default: false).
    pub docker_api: bool,
    /// `kernel_modules` (default: false).
    pub kernel_modules: bool,
    /// Whether the image is signed (`codenotary` set).
    pub signed: bool,
    /// Folders mapped read-write (`map` entries with `:rw` or
    /// `read_only: false`).
    pub read_write_maps: Vec<String>,
}

impl Manifest {
    /// A manifest with the Supervisor's defaults for everything but the
    /// four fields an inline `addons` entry gives.
    pub fn inline(addon: &crate::config::Addon) -> Manifest {
        Manifest {
            path: None,
            slug: addon.slug.clone(),
            hassio_api: addon.hassio_api,
            role: addon.role,
            homeassistant_api: addon.homeassistant_api,
            auth_api: addon.auth_api,
            apparmor: AppArmor::Default,
            ingress: false,
            host_network: false,
            host_pid: false,
            host_uts: false,
            privileged: Vec::new(),
            full_access: false,
            docker_api: false,
            kernel_modules: false,
            signed: false,
            read_write_maps: Vec::new(),
        }
    }

    /// The fields the decision reads.
    pub fn addon(&self) -> crate::config::Addon {
        crate::config::Addon {
            slug: self.slug.clone(),
            hassio_api: self.hassio_api,
            role: self.role,
            homeassistant_api: self.homeassistant_api,
            auth_api: self.auth_api,
        }
    }

    /// The privileges the add-on's container actually gets: with protection
    /// mode on, the Supervisor withholds full access, the Docker API and the
    /// host's PID namespace.
    pub fn effective(&self, protected: bool) -> Privileges<'_> {
        Privileges {
            role: self.role.name(),
            apparmor: self.apparmor,
            ingress: self.ingress,
            auth_api: self.auth_api,
            signed: self.signed,
            privileged: &[],
            kernel_modules: self.kernel_modules,
            host_network: self.host_network,
            host_pid: self.host_pid && !protected,
            host_uts: self.host_uts,
            docker_api: self.docker_api && !protected,
            full_access: self.full_access && !protected,
        }
    }

    /// The security rating (SPEC.md) of what is effective under `protected`.
    pub fn rating(&self, protected: bool) -> u8 {
        let privileged: Vec<&str> = self.privileged.iter().map(String::as_str).collect();
        let privileges = Privileges {
            privileged: &privileged,
            ..self.effective(protected)
        };
        crate::rating::rating(&privileges)
    }

    /// The secure-add-on practices this manifest misses, in words.
    pub fn missed_practices(&self) -> Vec<String> {
        let mut missed = Vec::new();
        if self.host_network {
            missed.push("host network".to_owned());
        }
        match self.apparmor {
            AppArmor::Disabled => missed.push("AppArmor disabled".to_owned()),
            AppArmor::Default => missed.push("no AppArmor profile of its own".to_owned()),
            AppArmor::Custom => {}
        }
        for folder in &self.read_write_maps {
            missed.push(format!("{folder} mapped read-write"));
        }
        if self.full_access {
            missed.push("full hardware access".to_owned());
        }
        if self.docker_api {
            missed.push("Docker API".to_owned());
        }
        if !self.signed {
            missed.push("unsigned image".to_owned());
        }
        missed
    }
}

/// A manifest that could not be used, or an entry of the secrets file that
/// was not: its file, the field at fault, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestProblem {
    /// What the problem cost.
    pub cost: ProblemCost,
    /// The manifest (or folder) at fault.
    pub path: PathBuf,
    /// The field, or `(file)` when the file as a whole is at fault.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// What a [`ManifestProblem`] cost: a manifest, or only an entry of the
/// secrets file (a token for no add-on in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemCost {
    /// The add-on is left out: it has no token.
    ManifestLeftOut,
    /// The secrets file's entry is not used; no add-on lost anything.
    SecretUnused,
}

impl ProblemCost {
    /// How messages introduce the problem.
    pub fn headline(self) -> &'static str {
        match self {
            ProblemCost::ManifestLeftOut => "manifest left out",
            ProblemCost::SecretUnused => "secrets file entry not used",
        }
    }
}

impl fmt::Display for ManifestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.path.display(),
            self.field,
            self.reason
        )
    }
}

/// Reads every add-on folder under `dir`, in name order. Folders without a
/// manifest are skipped; a manifest with a problem is reported and left out.
pub fn load_dir(dir: &Path) -> (Vec<Manifest>, Vec<ManifestProblem>) {
    let mut manifests = Vec::new();
    let mut problems = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            problems.push(ManifestProblem {
                cost: ProblemCost::ManifestLeftOut,
                path: dir.to_owned(),
                field: "(file)".into(),
                reason: format!("cannot read the directory: {error}"),
            });
            return (manifests, problems);
        }
    };
    let mut folders: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect();
    folders.sort();
    for folder in folders {
        let Some(path) = FILE_NAMES
            .iter()
            .map(|name| folder.join(name))
            // Any file there, not only a regular one: a FIFO or a device
            // in its place is refused by name, not passed over in silence;
            // so is a link to nothing (helper 79).
            .find(|path| path.symlink_metadata().is_ok())
        else {
            continue;
        };
        match load_file(&path) {
            Ok(manifest) => manifests.push(manifest),
            Err(problem) => problems.push(problem),
        }
    }
    (manifests, problems)
}

/// Reads one manifest file.
pub fn load_file(path: &Path) -> Result<Manifest, ManifestProblem> {
    let problem = |field: &str, reason: String| ManifestProblem {
        cost: ProblemCost::ManifestLeftOut,
        path: path.to_owned(),
        field: field.to_owned(),
        reason,
    };
    let read = read_value(path).map_err(|reason| problem("(file)", reason))?;
    let Value::Object(fields) = &read.typed else {
        return Err(problem(
            "(file)",
            "a manifest is a mapping of fields".into(),
        ));
    };
    let flag = |name: &str, default: bool| match read.as_written.get(name) {
        None => Ok(default),
        Some(written) => supervisor_boolean(written).ok_or_else(|| {
            let value = &written.value;
            problem(name, format!("expected {BOOLEAN_WORDS}, found {value}"))
        }),
    };
    let slug = match fields.get("slug") {
        Some(Value::String(slug)) if is_slug(slug) && slug != "self" => slug.clone(),
        Some(other) => return Err(problem("slug", format!("not a slug: {other}"))),
        None => return Err(problem("slug", "missing".into())),
    };
    let role = role(fields.get("hassio_role")).map_err(|reason| problem("hassio_role", reason))?;
    let apparmor = if !flag("apparmor", true)? {
        AppArmor::Disabled
    } else if path.with_file_name("apparmor.txt").is_file() {
        AppArmor::Custom
    } else {
        AppArmor::Default
    };
    let privileged =
        privileged(fields.get("privileged")).map_err(|reason| problem("privileged", reason))?;
    let signed =
        signed(fields.get("codenotary")).map_err(|reason| problem("codenotary", reason))?;
    let read_write_maps =
        read_write_maps(fields.get("map")).map_err(|reason| problem("map", reason))?;
    Ok(Manifest {
        path: Some(path.to_owned()),
        slug,
        hassio_api: flag("hassio_api", false)?,
        role,
        homeassistant_api: flag("homeassistant_api", false)?,
        auth_api: flag("auth_api", false)?,
        apparmor,
        ingress: flag("ingress", false)?,
        host_network: flag("host_network", false)?,
        host_pid: flag("host_pid", false)?,
        host_uts: flag("host_uts", false)?,
        privileged,
        full_access: flag("full_access", false)?,
        docker_api: flag("docker_api", false)?,
        kernel_modules: flag("kernel_modules", false)?,
        signed,
        read_write_maps,
    })
}

/// A manifest file read twice over.
struct Read {
    /// As YAML 1.1 types its scalars: an unquoted `yes` or `y` is a
    /// boolean (the Supervisor's reader, PyYAML, also reads `yes`, `on`,
    /// ... so, but `y` and `n` as strings). For the fields that are text.
    typed: Value,
    /// The top-level fields once more, for the yes-or-no ones, which are
    /// read from these as the Supervisor's schema reads them (see
    /// [`supervisor_boolean`]). Empty when `typed` is not a mapping.
    as_written: std::collections::BTreeMap<String, Written>,
}

/// A field as written: with only `true` and `false` (in any of their three
/// cases) read as booleans and every other word as text; and for a number
/// in a YAML file, the text it was written as (PyYAML reads fewer
/// spellings as numbers than serde-saphyr: `1e3` and `0o17` are text to it).
struct Written {
    value: Value,
    number_text: Option<String>,
}

/// A manifest file read and parsed: JSON for a `.json` file, else YAML, up
/// to [`MAX_MANIFEST_BYTES`].
fn read_value(path: &Path) -> Result<Read, String> {
    let size = std::fs::metadata(path).map_or(0, |meta| meta.len());
    if size > MAX_MANIFEST_BYTES {
        return Err(format!(
            "{size} bytes; a manifest is at most {MAX_MANIFEST_BYTES}"
        ));
    }
    let text = crate::files::read_text(path, MAX_MANIFEST_BYTES)
        .map_err(|error| format!("cannot read: {error}"))?;
    if path.extension().is_some_and(|ext| ext == "json") {
        let typed: Value =
            serde_json::from_str(&text).map_err(|error| format!("not JSON: {error}"))?;
        let as_written = match &typed {
            Value::Object(fields) => fields
                .iter()
                .map(|(name, value)| {
                    let value = value.clone();
                    let written = Written {
                        value,
                        number_text: None,
                    };
                    (name.clone(), written)
                })
                .collect(),
            _ => Default::default(),
        };
        return Ok(Read { typed, as_written });
    }
    // (A tag would change what a field says unseen: `full_access:
    // !!null true` reads as no full access, so a lower risk.)
    if let Some(error) = crate::config::refused_yaml_tag(&text, "") {
        return Err(format!(
            "line {}, {}: {}",
            error.line, error.key, error.reason
        ));
    }
    if let Some((line, what)) = read_otherwise_by_pyyaml(&text) {
        return Err(format!(
            "line {line}: {what}, which the Supervisor's YAML reader reads otherwise"
        ));
    }
    if let Some((line, what)) = crate::manifest_subset::outside(&text) {
        return Err(format!(
            "line {line}: {what}; manifests are read only in the YAML the Supervisor's reader and the gateway's read alike (README, \"Add-on manifests\")"
        ));
    }
    let options = |strict_booleans: bool| {
        let mut options = serde_saphyr::Options::default();
        options.strict_booleans = strict_booleans;
        options
    };
    let not_yaml = |error: serde_saphyr::Error| {
        let message = error.to_string();
        format!("not YAML: {}", message.lines().next().unwrap_or(""))
    };
    let typed: Value =
        serde_saphyr::from_str_with_options(&text, options(false)).map_err(not_yaml)?;
    if !typed.is_object() {
        return Ok(Read {
            typed,
            as_written: Default::default(),
        });
    }
    let fields: std::collections::BTreeMap<String, serde_saphyr::Spanned<Value>> =
        serde_saphyr::from_str_with_options(&text, options(true)).map_err(not_yaml)?;
    let as_written = fields
        .into_iter()
        .map(|(name, field)| {
            let span = field.defined.span();
            let number_text = match (&field.value, span.byte_offset(), span.byte_len()) {
                (Value::Number(_), Some(at), Some(length)) => text
                    .get(at as usize..(at + length) as usize)
                    .map(str::to_owned),
                _ => None,
            };
            let written = Written {
                value: field.value,
                number_text,
            };
            (name, written)
        })
        .collect();
    Ok(Read { typed, as_written })
}

/// The first line (counted from 1) of a YAML manifest with something
/// serde-saphyr and PyYAML (the Supervisor's reader) read differently, and
/// what it is. Each was found by helpers 62 and 63 giving an add-on access
/// or a role the Supervisor would not load it with: a tab (PyYAML refuses
/// most where YAML allows one: `hassio_api:<tab>1`; serde-saphyr reads
/// them); U+0085, U+2028 or U+2029 (line breaks to PyYAML, which end a
/// comment there and start a line that can set a field again; not to
/// serde-saphyr); a merge key `<<` (written twice, PyYAML keeps the last,
/// serde-saphyr the first); a byte order mark past the first character
/// (PyYAML skips only that one and reads another into the key after it,
/// which serde-saphyr skips too: helper 64); an anchor name written twice
/// (PyYAML refuses the file; serde-saphyr lets the second win: helper 64);
/// an anchor or alias name with characters besides letters, digits, `_`
/// and `-` (PyYAML refuses them, YAML 1.2 and serde-saphyr do not: helper
/// 65); a `?` after a `[` or `{` on its line (PyYAML ends a word there in
/// a flow collection and refuses the file: helper 65). From helper 66,
/// which found the `?` on a later line than its `[`, and anchors after a
/// lone carriage return, an explicit key or ending in a Unicode space: a
/// flow collection not closed on its line; a carriage return not followed
/// by a line feed; a Unicode space; an explicit key (`? `); and a `:` at
/// the start of a flow item or value (PyYAML refuses `[:x]`, and `{a: :x}`:
/// helper 67). And from helper 67, a document end (`...`), which before
/// any content PyYAML refuses and serde-saphyr passes over; from helper
/// 68, a directive (`%`; PyYAML refuses a name with other characters than
/// letters, digits, `-` and `_`, serde-saphyr skipped the line).
/// Each is refused wherever it is, in comments and quoted text too, where
/// the two readers agree (an `&` in text is taken for an anchor):
/// telling those apart takes a YAML reader, and a manifest left out gives
/// no access.
fn read_otherwise_by_pyyaml(text: &str) -> Option<(usize, &'static str)> {
    let text_after_bom = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut anchors = std::collections::HashSet::new();
    text_after_bom
        .split('\n')
        .enumerate()
        .find_map(|(index, line)| {
            let what = READ_OTHERWISE
                .iter()
                .find(|(_, found)| found(line))
                .map(|(what, _)| *what)
                .or_else(|| {
                    let again = line
                        .split('&')
                        .skip(1)
                        .map(anchor_name)
                        .any(|name| !name.is_empty() && !anchors.insert(name.to_owned()));
                    again.then_some("an anchor (`&name`) written twice")
                })?;
            Some((index + 1, what))
        })
}

/// What [`read_otherwise_by_pyyaml`] refuses in a line (besides an anchor
/// written twice, which takes the lines before), and how it says so.
type LineRule = (&'static str, fn(&str) -> bool);

const READ_OTHERWISE: &[LineRule] = &[
    ("a tab", |line| line.contains('\t')),
    ("a Unicode line break (U+0085, U+2028 or U+2029)", |line| {
        line.contains(['\u{85}', '\u{2028}', '\u{2029}'])
    }),
    ("`<<` (a merge key, or text that could be one)", |line| {
        line.contains("<<")
    }),
    (
        "a byte order mark (U+FEFF) past the first character",
        |line| line.contains('\u{feff}'),
    ),
    (
        "an anchor or alias name with characters besides letters, digits, `_` and `-`",
        |line| {
            node_properties(line).any(|name| {
                !name
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-'))
            })
        },
    ),
    ("a `?` after a `[` or `{`", |line| {
        line.find(['[', '{'])
            .is_some_and(|at| line[at..].contains('?'))
    }),
    ("a carriage return not followed by a line feed", |line| {
        line.trim_end_matches('\r').contains('\r')
    }),
    ("a Unicode space (past ASCII)", |line| {
        line.chars().any(|c| c.is_whitespace() && !c.is_ascii())
    }),
    ("an explicit key (`? `)", explicit_key),
    (
        "a `[` or `{` not closed on its line (or closed without one)",
        |line| line.matches(['[', '{']).count() != line.matches([']', '}']).count(),
    ),
    (
        "a `:` at the start of an item or value in `[...]` or `{...}`",
        |line| {
            line.contains(['[', '{'])
                && line.match_indices(['[', '{', ',', ':']).any(|(at, mark)| {
                    let after = &line[at + mark.len()..];
                    let spaced = mark != ":" || after.starts_with(' ');
                    spaced && after.trim_start_matches(' ').starts_with(':')
                })
        },
    ),
    ("a document end (`...`)", |line| {
        line.strip_prefix("...").is_some_and(|rest| {
            let rest = rest.trim_start_matches(' ').trim_end_matches('\r');
            rest.is_empty() || rest.starts_with('#')
        })
    }),
    ("a directive (`%`)", |line| line.starts_with('%')),
];

/// Whether a line holds an explicit key: `?` and a space (or nothing) as
/// its first word past the indentation and any `- `.
fn explicit_key(line: &str) -> bool {
    let mut rest = line.trim_start_matches(' ');
    while let Some(item) = rest.strip_prefix("- ") {
        rest = item.trim_start_matches(' ');
    }
    rest == "?" || rest.starts_with("? ")
}

/// The anchor and alias names (after `&` or `*`) where a line could start
/// a node: at its first character past the indentation, and after `- `,
/// `: `, `[`, `{` or `,` (and spaces).
fn node_properties(line: &str) -> impl Iterator<Item = &str> {
    let marks = line.match_indices(['-', ':', '[', '{', ',']);
    let after_marks = marks.filter_map(|(at, mark)| {
        let after = at + mark.len();
        let spaced = line[after..].starts_with(' ');
        (matches!(mark, "[" | "{" | ",") || spaced).then_some(after)
    });
    std::iter::once(0).chain(after_marks).filter_map(move |at| {
        let rest = line[at..].trim_start_matches(' ');
        let name = rest.strip_prefix(['&', '*'])?;
        Some(anchor_name(name))
    })
}

/// The anchor name at the start of what follows an `&`: up to a space or
/// a flow indicator.
fn anchor_name(after: &str) -> &str {
    let end = after
        .find(|c: char| c.is_whitespace() || matches!(c, ',' | '[' | ']' | '{' | '}'))
        .unwrap_or(after.len());
    &after[..end]
}

/// Whether a number written `text` in a YAML manifest is true to the
/// Supervisor, when PyYAML reads it as a number this way: a decimal
/// integer (with a leading zero, an octal one to PyYAML, so only digits 0
/// to 7 then), true unless all its digits are zero, or a decimal fraction,
/// true unless it is zero as a float; either with an optional sign. `None`
/// for any other spelling: PyYAML reads
/// `1e3`, `1.0e5` or `0o17` as text, which the Supervisor's schema refuses;
/// `0x1f` or `1_000` it reads as numbers, but these are left out rather
/// than read (a manifest left out gives no access).
fn written_number_truth(text: &str) -> Option<bool> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let decimal = |digits: &str| digits.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty() || !decimal(whole) || !fraction.is_none_or(decimal) {
        return None;
    }
    if fraction.is_some() {
        // As a float, as PyYAML reads it: a fraction too small for one is
        // zero (helper 62: 0.000…01 with 400 zeros was read as true).
        return Some(unsigned.parse::<f64>().ok()? != 0.0);
    }
    let octal = whole.bytes().all(|byte| (b'0'..=b'7').contains(&byte));
    if whole.len() > 1 && whole.starts_with('0') && !octal {
        return None;
    }
    Some(whole.bytes().any(|byte| byte != b'0'))
}

/// What a yes-or-no field may say, for a problem's message.
const BOOLEAN_WORDS: &str = "true or false (or yes, no, on, off, 1, 0, enable, disable)";

/// A yes-or-no field's value as the Supervisor reads it (its schema's
/// `vol.Boolean()` over what PyYAML read): a boolean as it is; text
/// `1`, `true`, `yes`, `on` or `enable` in any case is true, `0`,
/// `false`, `no`, `off` or `disable` false, other text (`y`, `n`) no
/// value; a number is true unless zero, and null is false (even for a
/// field whose default is true: the default is for a field left out).
/// `None` for text not in those lists, a list or a mapping (the
/// Supervisor refuses the first; the gateway refuses all three).
fn supervisor_boolean(written: &Written) -> Option<bool> {
    match &written.value {
        Value::Bool(value) => Some(*value),
        Value::Null => Some(false),
        Value::Number(number) => match &written.number_text {
            Some(text) => written_number_truth(text.trim()),
            None => Some(number.as_f64().is_some_and(|n| n != 0.0)),
        },
        Value::String(text) => boolean_word(text),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// Text as voluptuous' `Boolean()`, the Supervisor's schema, reads it: `1`,
/// `true`, `yes`, `on` or `enable` in any case is true, `0`, `false`, `no`,
/// `off` or `disable` false, anything else refused. (Also how a toggle's
/// `protected` is read: see [`crate::protection_state::requested`].)
pub(crate) fn boolean_word(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "enable" => Some(true),
        "0" | "false" | "no" | "off" | "disable" => Some(false),
        _ => None,
    }
}

/// The `hassio_role` field; `default` when absent.
fn role(field: Option<&Value>) -> Result<Role, String> {
    match field {
        None => Ok(Role::Default),
        // (Written but empty: the Supervisor's schema refuses it; the
        // default is for a field left out. Helper 63.)
        Some(Value::Null) => Err("expected a role name, found null".to_owned()),
        Some(Value::String(name)) => Role::from_name(name).ok_or_else(|| {
            format!("{name:?} is not one of default, homeassistant, backup, manager, admin")
        }),
        Some(other) => Err(format!("expected a role name, found {other}")),
    }
}

/// The `privileged` field: capabilities the Supervisor grants, none when
/// absent.
fn privileged(field: Option<&Value>) -> Result<Vec<String>, String> {
    match field {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item.as_str() {
                Some(name) if CAPABILITIES.contains(&name) => Ok(name.to_owned()),
                _ => Err(format!("{item} is not a capability the Supervisor grants")),
            })
            .collect(),
        Some(other) => Err(format!("expected a list of capabilities, found {other}")),
    }
}

/// The `codenotary` field: whether the add-on names a signer.
fn signed(field: Option<&Value>) -> Result<bool, String> {
    match field {
        None | Some(Value::Null) => Ok(false),
        Some(Value::String(signer)) => Ok(!signer.trim().is_empty()),
        Some(other) => Err(format!("expected the signer's address, found {other}")),
    }
}

/// The folders a `map` field mounts read-write: the old form
/// (`"share:rw"`, read-only unless `:rw`) and the new one
/// (`{type: share, read_only: false}`, read-only unless said otherwise).
fn read_write_maps(map: Option<&Value>) -> Result<Vec<String>, String> {
    let items = match map {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(format!("expected a list of folders, found {other}")),
    };
    let mut read_write = Vec::new();
    for item in items {
        match item {
            Value::String(entry) => {
                let (folder, mode) = entry.split_once(':').unwrap_or((entry, "ro"));
                match mode {
                    "rw" => read_write.push(folder.to_owned()),
                    "ro" => {}
                    _ => return Err(format!("{entry:?}: the mode is ro or rw")),
                }
            }
            Value::Object(fields) => {
                let Some(Value::String(folder)) = fields.get("type") else {
                    return Err(format!("{item}: a folder needs its type"));
                };
                match fields.get("read_only") {
                    None | Some(Value::Null) | Some(Value::Bool(true)) => {}
                    Some(Value::Bool(false)) => read_write.push(folder.clone()),
                    Some(other) => {
                        return Err(format!("read_only: expected true or false, found {other}"))
                    }
                }
            }
            other => return Err(format!("{other} is not a folder")),
        }
    }
    Ok(read_write)
}

#[cfg(test)]
#[path = "manifests_tests.rs"]
mod tests;
