//! Decisions kept per thread, so that a request asking what an earlier one
//! asked gets the earlier answer instead of a new search of the table.
//!
//! A decision is a function of the table, the caller's [`Standing`], the
//! method and the canonical path, and of nothing else ([`decide_for`] takes
//! only these), so the three and the table's number are the whole key. A
//! thread keeps at most `MOST_KEPT` decisions, for paths of at most
//! `LONGEST_PATH` bytes; it forgets them all when it is full, and when it
//! decides under another table than the one it kept them for, so a decision
//! of a table that a reload replaced is never given again.

use std::cell::RefCell;

use hashbrown::{Equivalent, HashMap};
use http::Method;

use crate::decision::{decide_for, Decision, Standing};
use crate::table::Table;

/// The most decisions one thread keeps.
pub(crate) const MOST_KEPT: usize = 1024;

/// Decisions on longer paths are made anew every time.
pub(crate) const LONGEST_PATH: usize = 256;

/// What a decision was asked, as kept.
#[derive(PartialEq, Eq, Hash)]
struct Question {
    caller: Standing,
    method: Method,
    path: Box<str>,
}

/// What a decision is asked, borrowed from the request: hashed as the
/// [`Question`] it equals, so it finds a kept one without being copied.
#[derive(Hash)]
struct Asked<'a> {
    caller: Standing,
    method: &'a Method,
    path: &'a str,
}

impl Equivalent<Question> for Asked<'_> {
    fn equivalent(&self, kept: &Question) -> bool {
        self.caller == kept.caller && *self.method == kept.method && self.path == &*kept.path
    }
}

#[derive(Default)]
struct Kept {
    /// The number of the table the decisions were made under.
    table: Option<u64>,
    decisions: HashMap<Question, Decision>,
}

thread_local! {
    static KEPT: RefCell<Kept> = RefCell::new(Kept::default());
}

/// What [`decide_for`] answers, from this thread's kept decisions when it
/// was asked the same under the same table before.
pub fn decide_kept(table: &Table, caller: Standing, method: &Method, path: &str) -> Decision {
    if path.len() > LONGEST_PATH {
        return decide_for(table, caller, method, path);
    }
    KEPT.with(|kept| {
        let mut kept = kept.borrow_mut();
        if kept.table != Some(table.id()) {
            kept.decisions.clear();
            kept.table = Some(table.id());
        }
        let asked = Asked {
            caller,
            method,
            path,
        };
        if let Some(decision) = kept.decisions.get(&asked) {
            return decision.clone();
        }
        let decision = decide_for(table, caller, method, path);
        if kept.decisions.len() >= MOST_KEPT {
            kept.decisions.clear();
        }
        let question = Question {
            caller,
            method: method.clone(),
            path: path.into(),
        };
        kept.decisions.insert(question, decision.clone());
        decision
    })
}

#[cfg(test)]
#[path = "decision_cache_tests.rs"]
mod tests;
