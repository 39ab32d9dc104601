//! The gateway's configuration file: listener, upstream, tokens and add-ons.
//! It is checked in full before anything listens, and every error names the
//! file, the key and the line, never a secret value.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::caller::{Caller, Callers, TokenDigest};
use crate::manifests::{self, Manifest, ManifestProblem, ProblemCost};

#[path = "config_errors.rs"]
mod errors;
#[path = "config_limits.rs"]
mod limits;
#[path = "config_signing.rs"]
mod signing;

pub use errors::{from_guarded_yaml, from_yaml};

/// The first YAML tag in `text` that the gateway's files do not take
/// (only `!!str` is, and `!!null` on a null), with its line and whole key
/// path, for YAML read another way than [`from_yaml`] (an add-on's
/// manifest).
pub fn refused_yaml_tag(text: &str, file: &str) -> Option<ConfigError> {
    errors::refused_tag(text, file, false)
}
pub use limits::Limits;
use limits::{check_limits, RawLimits};
use signing::RawSigning;

/// An add-on's declared role (`hassio_role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `/<something>/info` only.
    #[default]
    Default,
    /// The core's endpoints.
    Homeassistant,
    /// The backup endpoints.
    Backup,
    /// Most of the API, but not protection mode.
    Manager,
    /// Everything.
    Admin,
}

impl Role {
    /// Every role, from least to most privileged.
    pub const ALL: [Role; 5] = [
        Role::Default,
        Role::Homeassistant,
        Role::Backup,
        Role::Manager,
        Role::Admin,
    ];

    /// The role's name as the manifest writes it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Default => "default",
            Role::Homeassistant => "homeassistant",
            Role::Backup => "backup",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }

    /// The role with this manifest name.
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.name() == name)
    }
}

/// The manifest fields of one add-on that the decision reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addon {
    /// The add-on's slug.
    pub slug: String,
    /// `hassio_api`: whether the role table applies at all.
    pub hassio_api: bool,
    /// `hassio_role`.
    pub role: Role,
    /// `homeassistant_api`: access to the core proxy.
    pub homeassistant_api: bool,
    /// `auth_api`: access to `/auth`.
    pub auth_api: bool,
}

/// A checked configuration.
pub struct Config {
    /// Where the configuration came from (a path or a description).
    pub source: String,
    /// The file it was read from, when it was read from one: what a reload
    /// reads again.
    pub path: Option<PathBuf>,
    /// The gateway's listen address.
    pub listen: SocketAddr,
    /// The upstream's authority (`host:port`); the scheme is always http.
    pub upstream: http::uri::Authority,
    /// The permission table file; `None` means the built-in default table.
    pub table: Option<PathBuf>,
    /// A second table decided in shadow mode: logged, never enforced.
    pub shadow_table: Option<PathBuf>,
    /// How often the config and table files are checked for changes; `None`
    /// means only SIGHUP reloads.
    pub watch_interval: Option<Duration>,
    /// Where the admin listener (`/healthz`, `/readyz`, `/metrics`)
    /// listens; `None` when it is turned off.
    pub admin_listen: Option<SocketAddr>,
    /// Every configured add-on's manifest, inline entries first (with the
    /// Supervisor's defaults for what they do not say), then those read
    /// from `addon_manifests`.
    pub manifests: Vec<Manifest>,
    /// Manifests (or secrets) that could not be used; the rest still load.
    pub manifest_problems: Vec<ManifestProblem>,
    /// The manifest files and the secrets file, watched for changes.
    pub manifest_files: Vec<PathBuf>,
    /// Where the protection mode of toggled add-ons is kept, if anywhere.
    pub state_file: Option<PathBuf>,
    /// The line of each key that names a file, for errors found when the
    /// file is used (an audit log that cannot be opened).
    file_lines: Vec<(&'static str, u64)>,
    /// The audit log file, when decisions are also written there.
    pub audit_log: Option<PathBuf>,
    /// How many threads serve connections, each with its own event loop and
    /// its own upstream connections.
    pub workers: usize,
    /// Each worker accepts on a listener of its own, bound to `listen` with
    /// `SO_REUSEPORT` (see [`crate::server::serve_each_worker_on`]).
    pub reuse_port: bool,
    /// Every token holder.
    pub callers: Callers,
    /// The configured add-ons, in file order.
    pub addons: Vec<Arc<Addon>>,
    /// When set, the upstream gets this token instead of the caller's.
    pub upstream_token: Option<UpstreamToken>,
    /// Whether the upstream is told who calls (`X-Gateway-Caller`,
    /// `-Addon`, `-Role`): always with `upstream_token`, else only when
    /// the file asks for it.
    pub identity_headers: bool,
    /// Timeouts and limits.
    pub limits: Limits,
}

/// The gateway's own credential for the upstream; its Debug form is redacted.
#[derive(Clone)]
pub struct UpstreamToken(pub String);

impl fmt::Debug for UpstreamToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UpstreamToken(<redacted>)")
    }
}

/// A configuration that cannot be used: file, key, line and a reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {key}: {reason}")]
pub struct ConfigError {
    /// The file (or description of the source).
    pub file: String,
    /// The line, 1-based; 0 when the whole file is at fault.
    pub line: u64,
    /// The key at fault, as a dotted path.
    pub key: String,
    /// What is wrong, without any secret value.
    pub reason: String,
}

impl Config {
    /// An error with a file one of its keys names (`audit_log`,
    /// `state_file`, ...), found when the file is used: said with this
    /// configuration's file and the key's line.
    pub fn file_error(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        let line = self
            .file_lines
            .iter()
            .find(|(named, _)| *named == key)
            .map_or(0, |(_, line)| *line);
        ConfigError {
            file: self.source.clone(),
            line,
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let (text, file) = read_file(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Config::parse(&text, &file, base)?;
        for table in [&mut config.table, &mut config.shadow_table]
            .into_iter()
            .flatten()
        {
            if table.is_relative() {
                *table = base.join(&*table);
            }
        }
        config.path = Some(path.to_owned());
        Ok(config)
    }

    /// Parses and checks configuration text; `file` names it in errors.
    /// Files it names (keys, the revocation list) are read relative to the
    /// working directory.
    pub fn from_yaml(text: &str, file: &str) -> Result<Config, ConfigError> {
        Config::parse(text, file, Path::new("."))
    }

    fn parse(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = from_guarded_yaml(text, file)?;
        Checker { file, base }.check(raw)
    }
}

/// A file's text and its name for messages; a file that cannot be read is
/// reported as a [`ConfigError`] on the file as a whole.
pub fn read_file(path: &Path) -> Result<(String, String), ConfigError> {
    let file = path.display().to_string();
    match crate::files::read_text(path, crate::files::MAX_FILE_BYTES) {
        Ok(text) => Ok((text, file)),
        Err(error) => Err(ConfigError {
            file,
            line: 0,
            key: "(file)".into(),
            reason: format!("cannot read: {error}"),
        }),
    }
}

/// The shortest interval between two checks of the watched files.
const MIN_WATCH_INTERVAL_MS: u64 = 100;

/// The most worker threads the gateway starts, whatever the file says.
const MAX_WORKERS: usize = 256;

/// One worker thread per CPU the process may use.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// What a manifest directory gave.
struct LoadedManifests {
    addons: Vec<(Manifest, Arc<Addon>)>,
    problems: Vec<ManifestProblem>,
    files: Vec<PathBuf>,
}

/// A secret read from a file, without the newline an editor leaves.
fn trim_newline(mut secret: Vec<u8>) -> Vec<u8> {
    while secret
        .last()
        .is_some_and(|byte| matches!(byte, b'\n' | b'\r'))
    {
        secret.pop();
    }
    secret
}

// ---- raw file shape ------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    upstream: Spanned<String>,
    table: Option<Spanned<String>>,
    shadow_table: Option<Spanned<String>>,
    watch_interval_ms: Option<Spanned<u64>>,
    workers: Option<usize>,
    reuse_port: Option<bool>,
    admin_listen: Option<Spanned<String>>,
    audit_log: Option<Spanned<String>>,
    addon_manifests: Option<Spanned<String>>,
    addon_secrets: Option<Spanned<String>>,
    state_file: Option<Spanned<String>>,
    #[serde(default)]
    tokens: RawTokens,
    #[serde(default)]
    addons: Vec<Spanned<RawAddon>>,
    upstream_token: Option<Spanned<RawSecret>>,
    identity_headers: Option<Spanned<bool>>,
    limits: Option<Spanned<RawLimits>>,
    signing: Option<Spanned<RawSigning>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    homeassistant: Option<Spanned<RawSecret>>,
    cli: Option<Spanned<RawSecret>>,
    observer: Option<Spanned<RawSecret>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAddon {
    slug: Spanned<String>,
    token: Option<Spanned<RawSecret>>,
    #[serde(default)]
    hassio_api: bool,
    #[serde(default)]
    hassio_role: Role,
    #[serde(default)]
    homeassistant_api: bool,
    #[serde(default)]
    auth_api: bool,
}

/// A token as written in the file: the token itself, or `{sha256: HEX}`.
enum RawSecret {
    Plain(String),
    Sha256(String),
}

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

const UNQUOTED_TOKEN: &str = "YAML reads this token as a number or a yes/no value \
                              (true or false), which may not keep it as written: \
                              put it in quotes";

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = RawSecret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a token string or a map with the key sha256")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<RawSecret, E> {
        Ok(RawSecret::Plain(value.to_owned()))
    }

    // A token of digits (or `true`) written bare is read by YAML as a
    // number (or a boolean), which may not keep it as written (`007` is 7):
    // it must be quoted. The value is not said, as it is a token.
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawSecret, E> {
        Err(E::custom(UNQUOTED_TOKEN))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawSecret, E> {
        Err(E::custom(UNQUOTED_TOKEN))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawSecret, E> {
        Err(E::custom(UNQUOTED_TOKEN))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawSecret, E> {
        Err(E::custom(UNQUOTED_TOKEN))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSecret, A::Error> {
        let mut digest = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "sha256" || digest.is_some() {
                return Err(de::Error::custom("a token map takes the one key sha256"));
            }
            digest = Some(map.next_value::<String>()?);
        }
        digest
            .map(RawSecret::Sha256)
            .ok_or_else(|| de::Error::custom("a token map needs the key sha256"))
    }
}

// ---- checking --------------------------------------------------------------

struct Checker<'a> {
    file: &'a str,
    base: &'a Path,
}

impl Checker<'_> {
    fn error(&self, line: u64, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            line,
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    fn check(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let files = [
            (&raw.table, "table"),
            (&raw.shadow_table, "shadow_table"),
            (&raw.audit_log, "audit_log"),
            (&raw.state_file, "state_file"),
            (&raw.addon_manifests, "addon_manifests"),
            (&raw.addon_secrets, "addon_secrets"),
        ];
        let mut file_lines = Vec::new();
        for (file, key) in files {
            if let Some(file) = file {
                self.names_a_file(file, key)?;
                file_lines.push((key, line_of(file)));
            }
        }
        let listen = match &raw.listen {
            Some(listen) => listen.value.parse().map_err(|_| {
                self.error(
                    line_of(listen),
                    "listen",
                    "expected an address like 127.0.0.1:8080",
                )
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let upstream = self.upstream(&raw.upstream)?;
        if upstream_is_listener(&upstream, listen) {
            return Err(self.error(
                line_of(&raw.upstream),
                "upstream",
                "is the gateway's own listen address: every request would be sent back to the gateway",
            ));
        }
        let admin_listen = match &raw.admin_listen {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 8099))),
            Some(text) if text.value == "none" => None,
            Some(text) => Some(text.value.parse().map_err(|_| {
                let reason = "expected an address like 127.0.0.1:8099, or none";
                self.error(line_of(text), "admin_listen", reason)
            })?),
        };
        if admin_listen.is_some_and(|admin| upstream_is_listener(&upstream, admin)) {
            return Err(self.error(
                line_of(&raw.upstream),
                "upstream",
                "is the gateway's own admin listener (admin_listen), not a Supervisor API",
            ));
        }
        if admin_listen == Some(listen) && listen.port() != 0 {
            let line = raw.admin_listen.as_ref().map_or(0, line_of);
            return Err(self.error(
                line,
                "admin_listen",
                "the admin listener needs an address of its own, not listen's",
            ));
        }
        let mut callers = Callers::default();
        let mut seen = Vec::new();
        self.plugin_tokens(&raw.tokens, &mut callers, &mut seen)?;
        let mut addons =
            self.addons(&raw.addons, raw.signing.is_some(), &mut callers, &mut seen)?;
        let mut manifests: Vec<Manifest> =
            addons.iter().map(|addon| Manifest::inline(addon)).collect();
        let (mut manifest_problems, mut manifest_files) = (Vec::new(), Vec::new());
        if let Some(dir) = &raw.addon_manifests {
            let inline: Vec<String> = addons.iter().map(|addon| addon.slug.clone()).collect();
            let loaded = self.manifest_addons(
                dir,
                raw.addon_secrets.as_ref(),
                raw.signing.is_some(),
                &inline,
                &mut callers,
                &mut seen,
            )?;
            for (manifest, addon) in loaded.addons {
                manifests.push(manifest);
                addons.push(addon);
            }
            manifest_problems.extend(loaded.problems);
            manifest_files = loaded.files;
        }
        if let Some(signing) = &raw.signing {
            callers.signed = Some(Arc::new(self.signing(signing, &addons)?));
        }
        let upstream_token = match &raw.upstream_token {
            Some(spanned) => Some(self.upstream_token(spanned, &seen)?),
            None => None,
        };
        // With the gateway's own credential the identity headers are the
        // upstream's only way to know the caller; without it they are sent
        // only when asked for (the upstream checks the caller's own token).
        let identity_headers = match &raw.identity_headers {
            Some(flag) if !flag.value && upstream_token.is_some() => {
                let reason = "cannot be false with upstream_token: the upstream would not \
                              know who is calling";
                return Err(self.error(line_of(flag), "identity_headers", reason));
            }
            Some(flag) => flag.value,
            None => upstream_token.is_some(),
        };
        let limits_line = raw.limits.as_ref().map_or(0, line_of);
        let limits = raw
            .limits
            .as_ref()
            .map_or_else(Limits::default, |spanned| limits::from_raw(&spanned.value));
        check_limits(&limits).map_err(|(key, reason)| {
            let line = raw
                .limits
                .as_ref()
                .and_then(|spanned| spanned.value.line_of(key))
                .unwrap_or(limits_line);
            self.error(line, key, reason)
        })?;
        let watch_interval = match &raw.watch_interval_ms {
            None => Some(Duration::from_secs(2)),
            Some(ms) if ms.value == 0 => None,
            Some(ms) if ms.value < MIN_WATCH_INTERVAL_MS => {
                let reason = "at least 100 (every check reads and hashes the watched files), \
                              or 0 for SIGHUP only";
                return Err(self.error(line_of(ms), "watch_interval_ms", reason));
            }
            Some(ms) => Some(Duration::from_millis(ms.value)),
        };
        Ok(Config {
            source: self.file.to_owned(),
            path: None,
            listen,
            upstream,
            table: raw.table.map(|table| PathBuf::from(table.value)),
            shadow_table: raw.shadow_table.map(|table| PathBuf::from(table.value)),
            watch_interval,
            admin_listen,
            audit_log: raw.audit_log.map(|file| self.resolve(&file.value)),
            state_file: raw.state_file.map(|file| self.resolve(&file.value)),
            file_lines,
            manifests,
            manifest_problems,
            manifest_files,
            workers: match raw.workers {
                None | Some(0) => default_workers(),
                Some(workers) => workers.min(MAX_WORKERS),
            },
            reuse_port: raw.reuse_port.unwrap_or(false),
            callers,
            addons,
            upstream_token,
            identity_headers,
            limits,
        })
    }

    fn upstream(&self, spanned: &Spanned<String>) -> Result<http::uri::Authority, ConfigError> {
        let bad = |reason: &str| self.error(line_of(spanned), "upstream", reason);
        let uri: http::Uri = spanned
            .value
            .parse()
            .map_err(|_| bad("expected a URL like http://127.0.0.1:8081"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// upstreams are supported"));
        }
        if uri
            .authority()
            .is_some_and(|authority| authority.as_str().contains('@'))
        {
            return Err(bad(
                "the upstream URL takes no user or password (use upstream_token)",
            ));
        }
        let has_path = !matches!(uri.path(), "" | "/") || uri.query().is_some();
        if has_path {
            return Err(bad("the upstream URL takes no path or query"));
        }
        let authority = uri
            .authority()
            .filter(|authority| !authority.host().is_empty())
            .ok_or_else(|| bad("the upstream URL needs a host"))?;
        if !upstream_host_ok(authority.host()) {
            return Err(bad(
                "the upstream's host must be a name, an IPv4 address or an IPv6 address in brackets",
            ));
        }
        // (`Authority::port` is `None` for a port it cannot read: the text
        // after the host is looked at instead.)
        let after_host = authority.as_str().strip_prefix(authority.host());
        if let Some(port) = after_host.filter(|rest| !rest.is_empty()) {
            let number = port
                .strip_prefix(':')
                .filter(|digits| digits.bytes().all(|byte| byte.is_ascii_digit()))
                .and_then(|digits| digits.parse::<u16>().ok());
            if !matches!(number, Some(1..=u16::MAX)) {
                return Err(bad("the upstream's port must be a number from 1 to 65535"));
            }
        }
        Ok(authority.clone())
    }

    fn plugin_tokens(
        &self,
        tokens: &RawTokens,
        callers: &mut Callers,
        seen: &mut Vec<(TokenDigest, String)>,
    ) -> Result<(), ConfigError> {
        let plugins = [
            (
                &tokens.homeassistant,
                "tokens.homeassistant",
                Caller::HomeAssistant,
            ),
            (&tokens.cli, "tokens.cli", Caller::Cli),
            (&tokens.observer, "tokens.observer", Caller::Observer),
        ];
        for (secret, key, caller) in plugins {
            if let Some(secret) = secret {
                let digest = self.digest(secret, key, seen)?;
                callers.insert(digest, caller);
            }
        }
        Ok(())
    }

    fn addons(
        &self,
        raw: &[Spanned<RawAddon>],
        signing: bool,
        callers: &mut Callers,
        seen: &mut Vec<(TokenDigest, String)>,
    ) -> Result<Vec<Arc<Addon>>, ConfigError> {
        let mut addons: Vec<Arc<Addon>> = Vec::new();
        for (index, entry) in raw.iter().enumerate() {
            let slug = &entry.value.slug;
            let key = format!("addons[{index}].slug");
            if !is_slug(&slug.value) || slug.value == "self" {
                let reason = "a slug is letters, digits, -, _ and . (and not the word self)";
                return Err(self.error(line_of(slug), &key, reason));
            }
            if addons.iter().any(|addon| addon.slug == slug.value) {
                return Err(self.error(line_of(slug), &key, "this slug is configured twice"));
            }
            let token_key = format!("addons[{index}].token");
            let digest = match &entry.value.token {
                Some(token) => Some(self.digest(token, &token_key, seen)?),
                None if signing => None,
                None => {
                    let reason = "an add-on needs a token, unless signing keys are configured";
                    return Err(self.error(line_of(entry), &token_key, reason));
                }
            };
            let addon = Arc::new(Addon {
                slug: slug.value.clone(),
                hassio_api: entry.value.hassio_api,
                role: entry.value.hassio_role,
                homeassistant_api: entry.value.homeassistant_api,
                auth_api: entry.value.auth_api,
            });
            if let Some(digest) = digest {
                callers.insert(digest, Caller::Addon(addon.clone()));
            }
            addons.push(addon);
        }
        Ok(addons)
    }

    /// The add-ons of a manifest directory, with their tokens from the
    /// secrets file. A manifest with a problem, or without a token where one
    /// is needed, is reported and left out; a bad secrets file is an error.
    fn manifest_addons(
        &self,
        dir: &Spanned<String>,
        secrets: Option<&Spanned<String>>,
        signing: bool,
        inline: &[String],
        callers: &mut Callers,
        seen: &mut Vec<(TokenDigest, String)>,
    ) -> Result<LoadedManifests, ConfigError> {
        let dir_path = self.resolve(&dir.value);
        if !dir_path.is_dir() {
            let reason = format!("{} is not a directory", dir_path.display());
            return Err(self.error(line_of(dir), "addon_manifests", reason));
        }
        let (found, mut problems) = manifests::load_dir(&dir_path);
        // Those that could not be used are watched too: mending one reloads.
        let mut files: Vec<PathBuf> = found
            .iter()
            .filter_map(|m| m.path.clone())
            .chain(
                problems
                    .iter()
                    .map(|p| p.path.clone())
                    .filter(|p| p.is_file()),
            )
            .collect();
        let secrets = match secrets {
            Some(file) => {
                files.push(self.resolve(&file.value));
                Some(self.secrets_file(file)?)
            }
            None => None,
        };
        let mut addons = Vec::new();
        let mut taken: Vec<(String, PathBuf)> = Vec::new();
        for manifest in found {
            let path = manifest.path.clone().unwrap_or_default();
            // A slug already configured (inline, or by an earlier folder) is
            // left out whole: its token must not log in either.
            if let Some(reason) = configured_before(&manifest.slug, inline, &taken) {
                problems.push(ManifestProblem {
                    cost: ProblemCost::ManifestLeftOut,
                    path,
                    field: "slug".into(),
                    reason: format!("{} {reason}", manifest.slug),
                });
                continue;
            }
            taken.push((manifest.slug.clone(), path));
            let secret = secrets
                .as_ref()
                .and_then(|(raw, name)| raw.get(&manifest.slug).map(|secret| (secret, name)));
            let digest = match secret {
                Some((secret, name)) => {
                    let checker = Checker {
                        file: name,
                        base: self.base,
                    };
                    Some(checker.digest(secret, &manifest.slug, seen)?)
                }
                None if signing => None,
                None => {
                    problems.push(ManifestProblem {
                        cost: ProblemCost::ManifestLeftOut,
                        path: manifest.path.clone().unwrap_or_default(),
                        field: "slug".into(),
                        reason: format!(
                            "no token for {} in addon_secrets (and no signing keys)",
                            manifest.slug
                        ),
                    });
                    continue;
                }
            };
            let addon = Arc::new(manifest.addon());
            if let Some(digest) = digest {
                callers.insert(digest, Caller::Addon(addon.clone()));
            }
            addons.push((manifest, addon));
        }
        if let Some((raw, name)) = &secrets {
            problems.extend(unused_secrets(raw, name, &addons));
        }
        Ok(LoadedManifests {
            addons,
            problems,
            files,
        })
    }

    /// The secrets file's entries (slug to token) and its name for messages.
    /// An entry is named by its line only: its key is a slug, or, written
    /// the wrong way round, a token.
    fn secrets_file(&self, file: &Spanned<String>) -> Result<(Secrets, String), ConfigError> {
        let path = self.resolve(&file.value);
        let (text, name) = read_file(&path).map_err(|error| {
            let reason = format!("{}: {}", path.display(), error.reason);
            self.error(line_of(file), "addon_secrets", reason)
        })?;
        let raw: Secrets = from_guarded_yaml(&text, &name).map_err(|error| ConfigError {
            key: "(entry)".to_owned(),
            ..error
        })?;
        Ok((raw, name))
    }

    /// Refuses an empty file name, which would name the config's own folder
    /// (or nothing) rather than a file.
    fn names_a_file(&self, file: &Spanned<String>, key: &str) -> Result<(), ConfigError> {
        if file.value.trim().is_empty() {
            return Err(self.error(line_of(file), key, "names no file (it is empty)"));
        }
        // A name that is not the file it seems to be: `|` keeps the line
        // end, a paste a tab or an invisible character; for the revocation
        // list a missing file is an empty one (helper 40).
        let unseen = |c: char| c.is_control() || (c.is_whitespace() && c != ' ') || is_invisible(c);
        if file.value.chars().any(unseen) || file.value.trim() != file.value {
            let reason = "the file name has a line end, tab, invisible character or space at \
                          its ends; write it plainly on the key's line";
            return Err(self.error(line_of(file), key, reason));
        }
        Ok(())
    }

    fn resolve(&self, file: &str) -> PathBuf {
        let path = PathBuf::from(file);
        if path.is_relative() {
            self.base.join(path)
        } else {
            path
        }
    }

    /// A key file's bytes; the message names the file, never its contents.
    /// A key file of a secret (`secret_file`, `private_key`) is not named
    /// in the message: a secret pasted in place of its file's name would be.
    fn read_key_file(&self, file: &Spanned<String>, key: &str) -> Result<Vec<u8>, ConfigError> {
        self.names_a_file(file, key)?;
        let path = self.resolve(&file.value);
        crate::files::read_bounded(&path, crate::files::MAX_KEY_FILE_BYTES).map_err(|error| {
            let public = key.ends_with("public_key");
            let reason = match public {
                true => format!("cannot read {}: {error}", path.display()),
                false => format!(
                    "cannot read the file named on this line (its name is not shown: \
                     it may be a secret written in its place): {error}"
                ),
            };
            self.error(line_of(file), key, reason)
        })
    }

    /// The digest of a configured token, refusing empty tokens, bad digests and
    /// a token that two callers share (named by key, never by value).
    fn digest(
        &self,
        secret: &Spanned<RawSecret>,
        key: &str,
        seen: &mut Vec<(TokenDigest, String)>,
    ) -> Result<TokenDigest, ConfigError> {
        let line = line_of(secret);
        let digest = match &secret.value {
            RawSecret::Plain(token) if token.trim().is_empty() => {
                return Err(self.error(line, key, "the token is empty"))
            }
            RawSecret::Plain(token) if !token.bytes().all(|b| b.is_ascii_graphic()) => {
                let reason = "a token is visible ASCII without spaces";
                return Err(self.error(line, key, reason));
            }
            RawSecret::Plain(token) => TokenDigest::of(token.as_bytes()),
            RawSecret::Sha256(hex_digits) => TokenDigest::from_hex(hex_digits)
                .ok_or_else(|| self.error(line, key, "sha256 must be 64 hex digits"))?,
        };
        if let Some((_, other)) = seen.iter().find(|(known, _)| *known == digest) {
            let reason = format!("the same token is already used by {other}");
            return Err(self.error(line, key, reason));
        }
        seen.push((digest, key.to_owned()));
        Ok(digest)
    }

    fn upstream_token(
        &self,
        secret: &Spanned<RawSecret>,
        seen: &[(TokenDigest, String)],
    ) -> Result<UpstreamToken, ConfigError> {
        if let RawSecret::Plain(token) = &secret.value {
            let digest = TokenDigest::of(token.as_bytes());
            if let Some((_, other)) = seen.iter().find(|(known, _)| *known == digest) {
                let reason = format!("the gateway's own token must differ from every caller's; this one is {other}'s");
                return Err(self.error(line_of(secret), "upstream_token", reason));
            }
        }
        match &secret.value {
            RawSecret::Plain(token)
                if !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Ok(UpstreamToken(token.clone()))
            }
            RawSecret::Plain(_) => Err(self.error(
                line_of(secret),
                "upstream_token",
                "the token must be non-empty visible ASCII",
            )),
            RawSecret::Sha256(_) => Err(self.error(
                line_of(secret),
                "upstream_token",
                "the gateway must send this token, so it cannot be given as a digest",
            )),
        }
    }
}

/// Whether `value` is a slug: letters, digits, `-`, `_` and `.`.
pub fn is_slug(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Characters that show as nothing, or change how the text around them
/// shows: soft hyphen, joiners and zero widths, direction controls, filler
/// letters, variation selectors, tags (Unicode's format characters and
/// their like).
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{34f}'
            | '\u{61c}'
            | '\u{115f}'..='\u{1160}'
            | '\u{17b4}'..='\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{13430}'..='\u{1345f}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e0fff}'
    )
}

/// The secrets file as read: a token (or its digest) for each slug.
type Secrets = std::collections::BTreeMap<String, Spanned<RawSecret>>;

/// Why a manifest's slug is left out because it was configured before:
/// inline (`addons`), or by an earlier manifest (`taken`).
fn configured_before(slug: &str, inline: &[String], taken: &[(String, PathBuf)]) -> Option<String> {
    if inline.iter().any(|other| other == slug) {
        return Some("is also configured inline; the inline entry is used".to_owned());
    }
    taken
        .iter()
        .find(|(other, _)| other == slug)
        .map(|(_, path)| format!("is also the slug of {}, which is used", path.display()))
}

/// A problem for each secrets-file entry whose slug has no manifest in use,
/// named by its line only: an entry written the wrong way round (token:
/// slug) has the token for its key.
fn unused_secrets(
    raw: &Secrets,
    name: &str,
    addons: &[(Manifest, Arc<Addon>)],
) -> Vec<ManifestProblem> {
    raw.iter()
        .filter(|(slug, _)| !addons.iter().any(|(manifest, _)| &manifest.slug == *slug))
        .map(|(_, secret)| ManifestProblem {
            cost: ProblemCost::SecretUnused,
            path: PathBuf::from(name),
            field: format!("line {}", line_of(secret)),
            reason: "a token for a slug with no manifest in use in addon_manifests \
                     (the key is not shown: it may be a token)"
                .to_owned(),
        })
        .collect()
}

/// Whether `host`, as written in the upstream URL, is one the gateway can
/// connect to: an IPv6 address in brackets, an IPv4 address as four
/// decimal numbers, or a name of letters, digits, `-` (not at either end of
/// a label) and `_` (Docker's service names) between dots, whose last label
/// does not start with a digit. A name ending in a number is read as an
/// IPv4 address by URL parsers and resolvers (`127.1`, `2130706433`,
/// `0x7f000001` are 127.0.0.1 to them): it must then be one, in the one
/// plain spelling. Addresses that name no host (`0.0.0.0`, `[::]`) are not
/// taken either.
fn upstream_host_ok(host: &str) -> bool {
    if let Some(ip) = upstream_ip(host) {
        return one_host(ip);
    }
    if host.starts_with('[') {
        return false;
    }
    let labels: Vec<&str> = host.split('.').collect();
    let last_is_number = labels.last().is_some_and(|label| {
        label
            .bytes()
            .next()
            .is_some_and(|byte| byte.is_ascii_digit())
    });
    host.len() <= 253
        && !last_is_number
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        })
}

/// Whether `ip` names one host the gateway can reach by it alone: not the
/// address of none (`0.0.0.0`, `::`, or any in 0.0.0.0/8), of many
/// (multicast, IPv4's broadcast), nor a link-local IPv6 address, which
/// needs an interface the URL cannot name; nor an IPv4 address written in
/// IPv6's deprecated compatible form (`[::127.0.0.1]`).
fn one_host(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(ip) => ip.octets()[0] != 0 && !ip.is_multicast() && !ip.is_broadcast(),
        std::net::IpAddr::V6(ip) => {
            let segments = ip.segments();
            let compatible = segments[..6].iter().all(|segment| *segment == 0)
                && !ip.is_loopback()
                && !ip.is_unspecified();
            !ip.is_unspecified() && !ip.is_multicast() && !ip.is_unicast_link_local() && !compatible
        }
    }
}

/// The address `host` names, if it is an IPv6 address in brackets or an
/// IPv4 address in its plain spelling; an IPv4 address written as IPv6
/// (`[::ffff:127.0.0.1]`) is taken as the IPv4 address it is.
fn upstream_ip(host: &str) -> Option<std::net::IpAddr> {
    match host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        Some(inside) => inside
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|ip| std::net::IpAddr::V6(ip).to_canonical()),
        None => host
            .parse::<std::net::Ipv4Addr>()
            .ok()
            .map(std::net::IpAddr::V4),
    }
}

/// Whether an upstream at `authority` is one of the gateway's own
/// listeners at `listen`, so that every request would be sent back to the
/// gateway: the same port, and the same address, or a loopback one (or
/// `localhost`) while the gateway listens on every address. A name that
/// resolves to the gateway is not seen.
fn upstream_is_listener(authority: &http::uri::Authority, listen: SocketAddr) -> bool {
    if authority.port_u16().unwrap_or(80) != listen.port() {
        return false;
    }
    let host = authority.host();
    let listen_ip = listen.ip().to_canonical();
    let ip = match upstream_ip(host) {
        Some(ip) => ip,
        None if host.eq_ignore_ascii_case("localhost") => {
            return listen_ip.is_loopback() || listen_ip.is_unspecified();
        }
        None => return false,
    };
    ip == listen_ip
        || (listen_ip.is_unspecified()
            // (One on every IPv4 address is not on IPv6 ones.)
            && (listen_ip.is_ipv6() || ip.is_ipv4())
            && (ip.is_loopback() || is_local(ip)))
}

/// Whether `ip` is one of this machine's own addresses: one a socket may
/// be bound to. (A UDP socket bound to it and dropped: nothing is sent.)
fn is_local(ip: std::net::IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

fn line_of<T>(spanned: &Spanned<T>) -> u64 {
    spanned.referenced.line()
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
