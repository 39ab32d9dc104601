//! A set of path expressions searched in one pass for which of them match,
//! as `regex::bytes::RegexSet` does, but with the list of hits lent from a
//! per-thread spare instead of allocated (and zeroed) for every search: a
//! decision searches two or three sets per request.

use std::cell::RefCell;

use regex_automata::meta::{self, Regex};
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternSet};

use crate::spares;

/// The expressions, compiled as `RegexSet::new` compiles them: every match
/// reported, over bytes, with its size limits.
#[derive(Debug)]
pub(crate) struct PathSet {
    regex: Regex,
}

impl PathSet {
    /// The expressions compiled, or the compiler's message.
    pub(crate) fn new<P: AsRef<str>>(patterns: &[P]) -> Result<PathSet, String> {
        let config = meta::Config::new()
            .match_kind(MatchKind::All)
            .utf8_empty(false)
            .nfa_size_limit(Some(10 * (1 << 20)))
            .hybrid_cache_capacity(2 * (1 << 20));
        let regex = meta::Builder::new()
            .configure(config)
            .syntax(syntax::Config::new().utf8(false))
            .build_many(patterns)
            .map_err(|error| error.to_string())?;
        Ok(PathSet { regex })
    }

    /// A set that matches nothing.
    pub(crate) fn empty() -> PathSet {
        PathSet::new::<&str>(&[]).expect("an empty set compiles")
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.regex.pattern_len() == 0
    }

    /// Which expressions match all of `path` or part of it (each is
    /// anchored where it must be).
    pub(crate) fn matches(&self, path: &[u8]) -> Hits {
        let mut set = spare(self.regex.pattern_len());
        self.regex
            .which_overlapping_matches(&Input::new(path), &mut set);
        Hits { set: Some(set) }
    }
}

/// The expressions of a [`PathSet`] that matched one path.
pub(crate) struct Hits {
    /// Always `Some` until dropped.
    set: Option<PatternSet>,
}

impl Hits {
    fn set(&self) -> &PatternSet {
        self.set.as_ref().expect("hits are kept until dropped")
    }

    pub(crate) fn matched(&self, index: usize) -> bool {
        let set = self.set();
        index < set.capacity()
            && regex_automata::PatternID::new(index).is_ok_and(|id| set.contains(id))
    }

    pub(crate) fn matched_any(&self) -> bool {
        !self.set().is_empty()
    }

    /// The matched expressions' indexes, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.set().iter().map(|id| id.as_usize())
    }
}

impl Drop for Hits {
    fn drop(&mut self) {
        if let Some(set) = self.set.take() {
            give_back(set);
        }
    }
}

thread_local! {
    static SPARES: RefCell<Vec<PatternSet>> = const { RefCell::new(Vec::new()) };
}

/// Spares kept per thread: a decision holds at most three hit lists at once.
const SPARES_KEPT: usize = 4;

/// An empty hit list with room for `patterns` expressions.
fn spare(patterns: usize) -> PatternSet {
    spares::take(&SPARES, |set| set.capacity() >= patterns)
        .unwrap_or_else(|| PatternSet::new(patterns))
}

fn give_back(mut set: PatternSet) {
    set.clear();
    spares::keep(&SPARES, set, SPARES_KEPT);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_hits_as_regex_set_for_every_path() {
        let patterns = [
            r"^/addons/[^/]+/info$",
            r"^/addons/self/.*$",
            r"^/addons/(?:self|[^/]+)/(?:info|stats)$",
            r"^/os(?:/.*)?$",
            r"^/core/api/websocket$",
        ];
        let ours = PathSet::new(&patterns).expect("compiles");
        let theirs = regex::bytes::RegexSet::new(patterns).expect("compiles");
        let paths = [
            "/addons/self/info",
            "/addons/other/info",
            "/addons/self/stats",
            "/os",
            "/os/info",
            "/osx",
            "/core/api/websocket",
            "/",
            "",
            "/addons/\u{e9}/info",
        ];
        for path in paths {
            let hits = ours.matches(path.as_bytes());
            let expected = theirs.matches(path.as_bytes());
            let got: Vec<usize> = hits.iter().collect();
            let want: Vec<usize> = expected.iter().collect();
            assert_eq!(got, want, "{path:?}");
            assert_eq!(hits.matched_any(), expected.matched_any(), "{path:?}");
            for index in 0..patterns.len() + 2 {
                assert_eq!(
                    hits.matched(index),
                    index < patterns.len() && expected.matched(index),
                    "{path:?} {index}"
                );
            }
        }
    }

    #[test]
    fn hit_lists_are_lent_and_come_back_empty() {
        let small = PathSet::new(&["^/a$"]).expect("compiles");
        let large = PathSet::new(&["^/a$", "^/b$", "^/.*$"]).expect("compiles");
        // Held at once, then reused in either order: never a stale hit.
        {
            let first = large.matches(b"/b");
            let second = small.matches(b"/a");
            assert_eq!(first.iter().collect::<Vec<_>>(), [1, 2]);
            assert_eq!(second.iter().collect::<Vec<_>>(), [0]);
        }
        for _ in 0..3 {
            assert_eq!(small.matches(b"/b").iter().count(), 0);
            assert_eq!(large.matches(b"/a").iter().collect::<Vec<_>>(), [0, 2]);
        }
        assert!(PathSet::empty().is_empty());
        assert!(!PathSet::empty().matches(b"/a").matched_any());
    }
}
