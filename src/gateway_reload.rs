//! Reloading a running gateway: the configuration read again and checked
//! in full, its policy swapped in at once, and what a reload cannot change
//! (it needs a restart) named.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{warn_config_problems, Gateway, Policy};
use crate::config::{Config, ConfigError, Limits};
use crate::table::Table;

/// The settings a reload cannot change (they need a restart).
#[derive(PartialEq)]
pub(super) struct Fixed {
    listen: SocketAddr,
    upstream: http::uri::Authority,
    limits: Limits,
    upstream_token: Option<String>,
    identity_headers: bool,
    admin_listen: Option<SocketAddr>,
    workers: usize,
    reuse_port: bool,
    audit_log: Option<PathBuf>,
    state_file: Option<PathBuf>,
    watch_interval: Option<std::time::Duration>,
}

impl Fixed {
    pub(super) fn of(config: &Config) -> Fixed {
        Fixed {
            listen: config.listen,
            upstream: config.upstream.clone(),
            limits: config.limits.clone(),
            upstream_token: config.upstream_token.as_ref().map(|token| token.0.clone()),
            identity_headers: config.identity_headers,
            admin_listen: config.admin_listen,
            workers: config.workers,
            reuse_port: config.reuse_port,
            audit_log: config.audit_log.clone(),
            state_file: config.state_file.clone(),
            watch_interval: config.watch_interval,
        }
    }

    /// The keys that differ, for the reload's warning.
    fn changed(&self, other: &Fixed) -> Vec<&'static str> {
        [
            (self.listen != other.listen, "listen"),
            (self.upstream != other.upstream, "upstream"),
            (self.limits != other.limits, "limits"),
            (self.admin_listen != other.admin_listen, "admin_listen"),
            (self.workers != other.workers, "workers"),
            (self.reuse_port != other.reuse_port, "reuse_port"),
            (self.audit_log != other.audit_log, "audit_log"),
            (self.state_file != other.state_file, "state_file"),
            (
                self.watch_interval != other.watch_interval,
                "watch_interval_ms",
            ),
            (
                self.upstream_token != other.upstream_token,
                "upstream_token",
            ),
            (
                self.identity_headers != other.identity_headers,
                "identity_headers",
            ),
        ]
        .into_iter()
        .filter_map(|(differs, key)| differs.then_some(key))
        .collect()
    }
}

/// What a successful reload did.
#[derive(Debug)]
pub struct Reloaded {
    /// The digest of the table that was in force.
    pub old_digest: String,
    /// The digest of the table now in force.
    pub new_digest: String,
    /// The shadow table's digest before and after (`-` for none).
    pub shadow_digests: (String, String),
    /// How many callers hold static tokens now.
    pub callers: usize,
    /// How many signed tokens are revoked by id now (`None` without signing).
    pub revoked: Option<usize>,
    /// Keys that changed in the file but need a restart to apply.
    pub needs_restart: Vec<&'static str>,
}

impl Gateway {
    /// The files a reload reads: the configuration and the files it named
    /// when it was last read (tables, manifests in use, the secrets file,
    /// signing key files, the revocation list).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let Some(config) = &self.config_path else {
            return Vec::new();
        };
        let mut files = vec![config.clone()];
        files.extend(
            self.named_files
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        files
    }

    /// The files besides the configuration that it names as it reads now
    /// (none if it does not load): what a reload would watch next.
    pub fn files_named_now(&self) -> Vec<PathBuf> {
        let Some(path) = &self.config_path else {
            return Vec::new();
        };
        Config::load(path)
            .map(|config| watched_paths(&config))
            .unwrap_or_default()
    }

    /// Reads the configuration file again and swaps in its tokens, add-ons,
    /// table and shadow table at once, after checking them in full. On any
    /// error the running policy stays as it is.
    pub fn reload(&self) -> Result<Reloaded, Vec<ConfigError>> {
        let path = self.config_path.as_deref().ok_or_else(|| {
            vec![ConfigError {
                file: "(none)".into(),
                line: 0,
                key: "(file)".into(),
                reason: "this gateway was not started from a configuration file".into(),
            }]
        })?;
        let config = Config::load(path).map_err(|error| vec![error])?;
        refuse_lost_revocations(&self.policy(), &config, path)?;
        warn_config_problems(&config);
        *self.named_files.lock().unwrap_or_else(|e| e.into_inner()) = watched_paths(&config);
        let table = load_table(&config)?;
        let shadow = load_shadow(&config)?;
        let needs_restart = self.fixed.changed(&Fixed::of(&config));
        let new_digest = table.digest.clone();
        let shadow_digest = |shadow: &Option<Table>| {
            shadow
                .as_ref()
                .map_or("-".to_owned(), |table| table.digest.clone())
        };
        let new_shadow = shadow_digest(&shadow);
        let callers = config.callers.len();
        let revoked = config
            .callers
            .signed
            .as_ref()
            .map(|signed| signed.revoked());
        let policy = Policy {
            table,
            callers: config.callers,
            shadow,
        };
        let old = self.policy.replace(policy);
        Ok(Reloaded {
            old_digest: old.table.digest.clone(),
            new_digest,
            shadow_digests: (shadow_digest(&old.shadow), new_shadow),
            callers,
            revoked,
            needs_restart,
        })
    }
}

/// A revocation file that was there with revocations in it and is now gone,
/// or no longer named while signed tokens are still accepted, would lift
/// them all: refuse such a reload (a restart drops them on purpose). A file
/// that was never there is an empty list, so a first `token revoke` can
/// create it.
fn refuse_lost_revocations(
    running: &Policy,
    config: &Config,
    config_file: &Path,
) -> Result<(), Vec<ConfigError>> {
    let (Some(old), Some(new)) = (&running.callers.signed, &config.callers.signed) else {
        return Ok(());
    };
    if !old.has_revocations() {
        return Ok(());
    }
    let (file, reason) = match new.revocation_file() {
        Some(file) if new.revocations_missing() => (
            file.display().to_string(),
            "the revocation file is gone; the running revocations stay in force",
        ),
        Some(_) => return Ok(()),
        None => (
            config_file.display().to_string(),
            "no longer named, which would accept every revoked token again; the running \
             revocations stay in force (a restart without it drops them)",
        ),
    };
    Err(vec![ConfigError {
        file,
        line: 0,
        key: "signing.revocation_file".into(),
        reason: reason.into(),
    }])
}

/// The files besides the configuration whose change reloads it: the
/// tables, the manifests in use and the secrets file, the signing key
/// files and the revocation list.
pub(super) fn watched_paths(config: &Config) -> Vec<PathBuf> {
    let signing = config
        .callers
        .signed
        .as_ref()
        .map(|signed| signed.watched_files())
        .unwrap_or_default();
    let mut paths: Vec<PathBuf> = [config.table.clone(), config.shadow_table.clone()]
        .into_iter()
        .flatten()
        .chain(config.manifest_files.iter().cloned())
        .chain(signing)
        .collect();
    // One key file may serve two keys: read and compared once.
    let mut seen = std::collections::HashSet::new();
    paths.retain(|path| seen.insert(path.clone()));
    paths
}

/// The shadow table a configuration names, if any, validated.
pub fn load_shadow(config: &Config) -> Result<Option<Table>, Vec<ConfigError>> {
    config
        .shadow_table
        .as_deref()
        .map(|path| {
            Table::load_validated(Some(path)).map_err(|e| unreadable(config, "shadow_table", e))
        })
        .transpose()
}

/// The table a configuration names, validated.
pub fn load_table(config: &Config) -> Result<Table, Vec<ConfigError>> {
    Table::load_validated(config.table.as_deref()).map_err(|e| unreadable(config, "table", e))
}

/// A table file that cannot be read is the configuration's error: said
/// with its file and the line of the key that names the table.
fn unreadable(config: &Config, key: &str, problems: Vec<ConfigError>) -> Vec<ConfigError> {
    problems
        .into_iter()
        .map(|problem| match (problem.line, problem.key.as_str()) {
            (0, "(file)") => {
                config.file_error(key, format!("{}: {}", problem.file, problem.reason))
            }
            _ => problem,
        })
        .collect()
}
