//! Finite automata over the table's patterns, for the checks that must be
//! exact rather than sampled: the protection-mode invariant and `validate`.
//! A question like "is there a path this rule grants that its exceptions do
//! not remove and that is the toggle?" becomes a search of the product of a
//! few automata for a state where each one matches or does not.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use regex_automata::dfa::{dense, Automaton};
use regex_automata::util::primitives::StateID;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind};

/// How many product states one search may visit before it gives up.
const MAX_STATES: usize = 200_000;

/// A deterministic automaton for the union of some anchored patterns.
pub struct Dfa {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
}

impl Dfa {
    /// Builds the automaton of the union of `patterns` (anchored regexes as
    /// produced by [`crate::pattern::to_regex`]).
    pub fn new<P: AsRef<str>>(patterns: &[P]) -> Result<Dfa, String> {
        let dfa = dense::Builder::new()
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .configure(dense::Config::new().match_kind(MatchKind::All))
            .build_many(patterns)
            .map_err(|error| format!("cannot build an automaton: {error}"))?;
        let start = dfa
            .start_state_forward(&Input::new("").anchored(Anchored::Yes))
            .map_err(|error| format!("cannot start an automaton: {error}"))?;
        Ok(Dfa { dfa, start })
    }

    fn step(&self, state: StateID, byte: u8) -> StateID {
        self.dfa.next_state(state, byte)
    }

    fn is_dead(&self, state: StateID) -> bool {
        self.dfa.is_dead_state(state)
    }

    fn matches_at_end(&self, state: StateID) -> bool {
        self.dfa.is_match_state(self.dfa.next_eoi_state(state))
    }
}

/// One automaton of a search, and whether the path sought must be in its
/// language (`true`) or outside it (`false`).
pub type Term<'a> = (&'a Dfa, bool);

/// The shortest path (bytes from `alphabet`) that each term wants: in the
/// language of every `true` term and outside every `false` one. `Ok(None)`
/// means there is none.
pub fn find(terms: &[Term<'_>], alphabet: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let start: Vec<StateID> = terms.iter().map(|(dfa, _)| dfa.start).collect();
    let mut parents: HashMap<Vec<StateID>, Option<(Vec<StateID>, u8)>> = HashMap::new();
    parents.insert(start.clone(), None);
    let mut queue = VecDeque::from([start]);
    while let Some(state) = queue.pop_front() {
        if accepts(terms, &state) {
            return Ok(Some(path_to(&parents, state)));
        }
        for &byte in alphabet {
            let Some(next) = step(terms, &state, byte) else {
                continue;
            };
            if let Entry::Vacant(slot) = parents.entry(next.clone()) {
                slot.insert(Some((state.clone(), byte)));
                queue.push_back(next);
            }
        }
        if parents.len() > MAX_STATES {
            return Err("too complex to check exactly".into());
        }
    }
    Ok(None)
}

/// The next product state, or `None` where a term that must match is dead.
fn step(terms: &[Term<'_>], state: &[StateID], byte: u8) -> Option<Vec<StateID>> {
    let mut next = Vec::with_capacity(state.len());
    for ((dfa, wanted), &current) in terms.iter().zip(state) {
        let after = dfa.step(current, byte);
        if *wanted && dfa.is_dead(after) {
            return None;
        }
        next.push(after);
    }
    Some(next)
}

fn accepts(terms: &[Term<'_>], state: &[StateID]) -> bool {
    terms
        .iter()
        .zip(state)
        .all(|((dfa, wanted), &current)| dfa.matches_at_end(current) == *wanted)
}

fn path_to(
    parents: &HashMap<Vec<StateID>, Option<(Vec<StateID>, u8)>>,
    mut state: Vec<StateID>,
) -> Vec<u8> {
    let mut bytes = Vec::new();
    while let Some(Some((parent, byte))) = parents.get(&state) {
        bytes.push(*byte);
        state = parent.clone();
    }
    bytes.reverse();
    bytes
}

/// Every byte, lower-case letters first, so that found paths read naturally.
pub fn all_bytes() -> Vec<u8> {
    (b'a'..=b'z')
        .chain((0..=255u8).filter(|b| !b.is_ascii_lowercase()))
        .collect()
}

/// A smaller alphabet that is still exact for patterns made of the given
/// literal texts: every byte they spell (in both cases, since deny patterns
/// ignore case), `/`, and one byte of each class the patterns can tell apart
/// but do not spell (a slug character, another segment character).
pub fn alphabet_for<'a>(literals: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut bytes: Vec<u8> = vec![b'/'];
    for literal in literals {
        for byte in literal.bytes() {
            bytes.extend([byte.to_ascii_lowercase(), byte.to_ascii_uppercase()]);
        }
    }
    let unused = |class: &[u8]| class.iter().copied().find(|b| !bytes.contains(b));
    let slug_class: Vec<u8> = (b'a'..=b'z').chain(b'0'..=b'9').chain(*b"._-").collect();
    let other_class: &[u8] = b"~!$&'()+,=:@%*";
    let extra: Vec<u8> = [unused(&slug_class), unused(other_class)]
        .into_iter()
        .flatten()
        .collect();
    bytes.extend(extra);
    bytes.sort_unstable_by_key(|b| (!b.is_ascii_lowercase(), *b));
    bytes.dedup();
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dfa(pattern: &str) -> Dfa {
        Dfa::new(&[format!("(?s-u)^{pattern}$")]).expect("test automaton")
    }

    #[test]
    fn finds_the_shortest_path_in_one_language_and_not_another() {
        let (a, b) = (dfa("/x[a-z]+"), dfa("/xa.*"));
        let found = find(&[(&a, true), (&b, false)], &all_bytes()).expect("small");
        assert_eq!(found.as_deref(), Some(&b"/xb"[..]));
    }

    #[test]
    fn reports_an_empty_intersection() {
        let (a, b) = (dfa("/a.*"), dfa("/b.*"));
        assert_eq!(find(&[(&a, true), (&b, true)], &all_bytes()), Ok(None));
    }

    #[test]
    fn the_reduced_alphabet_keeps_one_byte_of_each_unspelled_class() {
        let alphabet = alphabet_for(["/addons/", "info"]);
        assert!(alphabet.contains(&b'/') && alphabet.contains(&b'A') && alphabet.contains(&b'o'));
        assert!(
            alphabet.contains(&b'b'),
            "a slug byte that no literal spells"
        );
        assert!(
            alphabet.contains(&b'~'),
            "a segment byte outside the slug class"
        );
    }
}
