//! Hot reload: on SIGHUP, and when the configuration or a table file it
//! names changes, the gateway reads them again and swaps the new policy in
//! atomically. A file that fails to load or validate changes nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::gateway::Gateway;
use crate::signals::Signal;

/// Watches for reload triggers until its task is dropped.
pub struct Watcher {
    gateway: Arc<Gateway>,
    files: Vec<PathBuf>,
    seen: Vec<Option<[u8; 32]>>,
    hangup: Signal,
}

impl Watcher {
    /// Takes the files' fingerprint now: create the watcher right after the
    /// gateway has loaded them, so that no change in between goes unseen.
    /// `hangup` is SIGHUP taken over already ([`Signal::hangup`]); one
    /// that came since is a reload as soon as the watcher runs.
    pub fn new(gateway: Arc<Gateway>, hangup: Signal) -> Watcher {
        let files = gateway.watched_files();
        let seen = fingerprint(&files);
        Watcher {
            gateway,
            files,
            seen,
            hangup,
        }
    }

    /// Reloads on SIGHUP, and every `interval` if a file changed; with no
    /// interval, on SIGHUP only.
    pub async fn run(mut self, interval: Option<Duration>) {
        loop {
            let reason = tokio::select! {
                () = self.hangup.received() => "SIGHUP",
                () = tick(interval) => "file changed",
            };
            // The fingerprint is taken before reading the files: a change
            // made while the reload runs is seen on the next tick, never lost.
            let before = fingerprint(&self.files);
            if reason != "SIGHUP" && before == self.seen {
                continue;
            }
            let gateway = self.gateway.clone();
            let _ = tokio::task::spawn_blocking(move || reload(&gateway, reason)).await;
            let now = self.gateway.watched_files();
            self.seen = if now == self.files {
                before
            } else {
                fingerprint(&now)
            };
            self.files = now;
        }
    }
}

/// Reloads once and logs the outcome: the old and new table digests, or
/// every problem that kept the running table in force.
pub fn reload(gateway: &Gateway, reason: &str) {
    let result = gateway.reload();
    crate::metrics::reloaded(result.is_ok());
    match result {
        Ok(reloaded) => {
            tracing::info!(
                reason,
                old_digest = %reloaded.old_digest,
                new_digest = %reloaded.new_digest,
                old_shadow_digest = %reloaded.shadow_digests.0,
                new_shadow_digest = %reloaded.shadow_digests.1,
                callers = reloaded.callers,
                revoked_tokens = %reloaded.revoked.map_or("-".to_owned(), |n| n.to_string()),
                "policy reloaded"
            );
            for key in reloaded.needs_restart {
                tracing::warn!(
                    key,
                    "changed in the configuration; it takes effect after a restart"
                );
            }
        }
        Err(problems) => {
            let digest = gateway.policy().table.digest.clone();
            for problem in problems {
                tracing::error!(reason, %problem, running_digest = %digest, "reload refused; the running policy stays");
            }
        }
    }
}

async fn tick(interval: Option<Duration>) {
    match interval {
        Some(interval) => tokio::time::sleep(interval).await,
        None => std::future::pending().await,
    }
}

/// The SHA-256 of each file's content (`None` where it cannot be read), so
/// that an editor's rename-and-replace counts as a change like any other.
fn fingerprint(files: &[PathBuf]) -> Vec<Option<[u8; 32]>> {
    files
        .iter()
        .map(|file| {
            std::fs::read(file)
                .ok()
                .map(|bytes| Sha256::digest(bytes).into())
        })
        .collect()
}
