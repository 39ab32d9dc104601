//! Hot reload: on SIGHUP, and when the configuration or a file it names
//! changes, the gateway reads them again and swaps the new policy in
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
    seen: Vec<Print>,
    /// A change seen at the last check and not loaded yet, and at how many
    /// checks in a row the files have read differently; see [`settled`].
    changing: Option<(Vec<Print>, u32)>,
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
            changing: None,
            hangup,
        }
    }

    /// Reloads on SIGHUP at once; and, checking every `interval`, when the
    /// files have changed and then read the same at two checks in a row, so
    /// that a file caught half-written (an editor or a script writing in
    /// place) is not loaded as it is then. With no interval, on SIGHUP only.
    pub async fn run(mut self, interval: Option<Duration>) {
        loop {
            let reason = tokio::select! {
                () = self.hangup.received() => "SIGHUP",
                () = tick(interval) => "file changed",
            };
            // The fingerprint is taken before reading the files: a change
            // made while the reload runs is seen on the next tick, never lost.
            let before = fingerprint(&self.files);
            if reason != "SIGHUP" && !settled(&self.seen, &mut self.changing, &before) {
                continue;
            }
            self.changing = None;
            let gateway = self.gateway.clone();
            let watched = self.files.clone();
            let reloaded = tokio::task::spawn_blocking(move || {
                // Files the configuration names now that were not watched
                // (a new table, say) are fingerprinted before the reload
                // reads them too: one created or changed while it runs
                // must not be taken for what it read.
                let mut named = gateway.files_named_now();
                named.retain(|file| !watched.contains(file));
                let named_prints = fingerprint(&named);
                if reason == "SIGHUP" {
                    // What log rotation sends once it moved the file away.
                    gateway.reopen_audit();
                }
                reload(&gateway, reason);
                (named, named_prints)
            })
            .await;
            let (named, named_prints) = reloaded.unwrap_or_default();
            let now = self.gateway.watched_files();
            self.seen = if now == self.files {
                before
            } else {
                let read_before = [(&self.files, &before), (&named, &named_prints)];
                seen_after(&read_before, &now)
            };
            self.files = now;
        }
    }
}

/// What a reload read of each file now watched: its print taken before the
/// reload, from the first list in `read_before` (files and their prints)
/// that has it. A file in none of them (the configuration changed while
/// the reload ran, and names it) is fingerprinted now: the configuration's
/// own print, taken before, already differs, so the next check reloads
/// anyway.
fn seen_after(read_before: &[(&Vec<PathBuf>, &Vec<Print>)], now: &[PathBuf]) -> Vec<Print> {
    now.iter()
        .map(|file| {
            read_before
                .iter()
                .find_map(|(files, prints)| {
                    let index = files.iter().position(|known| known == file)?;
                    prints.get(index).copied()
                })
                .unwrap_or_else(|| fingerprint(std::slice::from_ref(file))[0])
        })
        .collect()
}

/// A watched file's fingerprint: the SHA-256 of its content, `None` where
/// it cannot be read.
type Print = Option<[u8; 32]>;

/// At how many checks in a row a change may read differently before it is
/// loaded as it stands: files rewritten at every check (a tool stamping a
/// table, `token revoke` run in a loop) must not hold every change back,
/// revocations included.
const MOST_UNSETTLED_CHECKS: u32 = 4;

/// Whether the files read now are a change to load: different from what
/// was last loaded (`seen`), and either the same as at the check before (a
/// file caught half-written in place is not loaded as it stood), or still
/// changing after [`MOST_UNSETTLED_CHECKS`] checks. `changing` keeps the
/// change seen last and at how many checks it has read differently.
fn settled(seen: &[Print], changing: &mut Option<(Vec<Print>, u32)>, now: &[Print]) -> bool {
    if now == seen {
        *changing = None;
        return false;
    }
    match changing {
        Some((last, _)) if last.as_slice() == now => true,
        Some((_, checks)) if *checks + 1 >= MOST_UNSETTLED_CHECKS => true,
        Some((last, checks)) => {
            *last = now.to_vec();
            *checks += 1;
            false
        }
        None => {
            *changing = Some((now.to_vec(), 1));
            false
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
fn fingerprint(files: &[PathBuf]) -> Vec<Print> {
    files
        .iter()
        .map(|file| {
            crate::files::read_bounded(file, crate::files::MAX_FILE_BYTES)
                .ok()
                .map(|bytes| Sha256::digest(bytes).into())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Print = Some([1; 32]);
    const B: Print = Some([2; 32]);
    const C: Print = Some([3; 32]);

    #[test]
    fn a_file_newly_watched_keeps_the_print_taken_before_the_reload() {
        let dir = tempfile::tempdir().expect("dir");
        let (config, old, new) = (
            dir.path().join("gateway.yaml"),
            dir.path().join("old.yaml"),
            dir.path().join("new.yaml"),
        );
        // Read before the reload: the configuration and the old table as
        // the watcher knew them, the new table missing.
        let known = vec![config.clone(), old.clone()];
        let named = vec![new.clone()];
        let read_before = [(&known, &vec![A, B]), (&named, &vec![None])];
        // The new table appears once the reload has read it as missing.
        std::fs::write(&new, "created meanwhile").expect("write");
        let seen = seen_after(&read_before, &[config, new.clone()]);
        assert_eq!(seen, vec![A, None], "the new table was never read");
        // So the next checks see it as a change.
        let mut changing = None;
        let now = [A, fingerprint(std::slice::from_ref(&new))[0]];
        assert!(!settled(&seen, &mut changing, &now));
        assert!(settled(&seen, &mut changing, &now));
        // A file no list has is read now.
        let other = dir.path().join("other.yaml");
        std::fs::write(&other, "x").expect("write");
        let seen = seen_after(&read_before, std::slice::from_ref(&other));
        assert_eq!(seen, fingerprint(&[other]));
    }

    #[test]
    fn a_change_loads_once_two_checks_in_a_row_read_it() {
        let (seen, mut changing) = (vec![A], None);
        assert!(!settled(&seen, &mut changing, &[A]), "nothing changed");
        assert!(!settled(&seen, &mut changing, &[B]), "first seen");
        assert!(settled(&seen, &mut changing, &[B]), "read the same again");
    }

    #[test]
    fn a_file_still_being_written_waits_until_it_stops_changing() {
        let (seen, mut changing) = (vec![A], None);
        assert!(!settled(&seen, &mut changing, &[B]));
        assert!(!settled(&seen, &mut changing, &[C]), "changed again");
        assert!(
            !settled(&seen, &mut changing, &[None]),
            "replaced: gone a moment"
        );
        assert!(settled(&seen, &mut changing, &[None]), "and still gone");
    }

    #[test]
    fn files_that_change_at_every_check_are_loaded_at_the_fourth() {
        let (seen, mut changing) = (vec![A], None);
        let prints = [B, C, B, C, B];
        let loaded: Vec<bool> = prints
            .iter()
            .map(|print| settled(&seen, &mut changing, &[*print]))
            .collect();
        assert_eq!(loaded, [false, false, false, true, true]);
    }

    #[test]
    fn a_change_undone_before_the_next_check_loads_nothing() {
        let (seen, mut changing) = (vec![A, B], None);
        assert!(!settled(&seen, &mut changing, &[A, C]));
        assert!(!settled(&seen, &mut changing, &[A, B]), "back as loaded");
        assert!(changing.is_none());
        assert!(
            !settled(&seen, &mut changing, &[A, C]),
            "a new change starts over"
        );
    }
}
