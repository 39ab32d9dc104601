//! `validate`: the checks a loaded table must also pass before it is used.
//! Each is exact, by automata: a pattern that matches no path the gateway
//! accepts, an exception that removes nothing, and a rule that an earlier
//! rule of the same list already settles for every path it matches.

use crate::automata::{self, Dfa, Term};
use crate::config::ConfigError;
use crate::table::{Rule, RuleSet, Section, Table};

/// Every path step 2 accepts: segments of bytes other than `/`, `;`, `\` and
/// control bytes, none of them `.` or `..`, with one optional trailing slash.
const CANONICAL: &str = concat!(
    r"(?s-u)^(?:/|(?:/(?:[^/.;\\\x00-\x1f\x7f][^/;\\\x00-\x1f\x7f]*",
    r"|\.[^/.;\\\x00-\x1f\x7f][^/;\\\x00-\x1f\x7f]*",
    r"|\.\.[^/;\\\x00-\x1f\x7f]+))+/?)$"
);

/// One rule as automata: its path, the union of its exceptions, and each
/// exception on its own.
struct Compiled {
    path: Dfa,
    except: Option<Dfa>,
    each_except: Vec<Dfa>,
}

/// The problems of a table, each with its file, line, rule and a one-line
/// reason; empty when the table is clean.
pub fn lint(table: &Table) -> Vec<ConfigError> {
    let canonical = Dfa::new(&[CANONICAL]).expect("the canonical-path pattern is fixed and valid");
    let literals: Vec<&str> = table
        .sections()
        .into_iter()
        .flat_map(|(_, set)| set.rules())
        .flat_map(|rule| {
            std::iter::once(rule.pattern.as_str()).chain(rule.except.iter().map(String::as_str))
        })
        .collect();
    let alphabet = automata::alphabet_for(literals);
    let mut problems = Vec::new();
    for (owner, set) in table.sections() {
        let checker = Checker {
            canonical: &canonical,
            alphabet: &alphabet,
        };
        problems.extend(checker.set(owner, set));
    }
    problems
}

struct Checker<'a> {
    canonical: &'a Dfa,
    alphabet: &'a [u8],
}

impl Checker<'_> {
    fn set(&self, owner: Section, set: &RuleSet) -> Vec<ConfigError> {
        let compiled: Vec<Result<Compiled, String>> = set.sources.iter().map(compile).collect();
        let mut problems = Vec::new();
        for (j, rule) in set.rules().iter().enumerate() {
            if rule.section != owner {
                continue;
            }
            let reason = match &compiled[j] {
                Err(reason) => Some(reason.clone()),
                Ok(this) => self
                    .unmatchable(rule, this)
                    .or_else(|| self.useless_exception(rule, this))
                    .or_else(|| self.shadowing(set, &compiled, j)),
            };
            if let Some(reason) = reason {
                problems.push(rule.error(reason));
            }
        }
        problems
    }

    fn exists(&self, terms: &[Term<'_>]) -> Result<bool, String> {
        automata::find(terms, self.alphabet).map(|found| found.is_some())
    }

    fn granted_terms<'t>(&'t self, rule: &'t Compiled) -> Vec<Term<'t>> {
        let mut terms: Vec<Term<'t>> = vec![(&rule.path, true), (self.canonical, true)];
        if let Some(except) = &rule.except {
            terms.push((except, false));
        }
        terms
    }

    fn unmatchable(&self, rule: &Rule, this: &Compiled) -> Option<String> {
        let plain = [(&this.path, true), (self.canonical, true)];
        match (self.exists(&plain), self.exists(&self.granted_terms(this))) {
            (Err(reason), _) | (_, Err(reason)) => Some(reason),
            (Ok(false), _) => Some("this pattern matches no path the gateway accepts".into()),
            (Ok(true), Ok(false)) => Some(format!(
                "the exceptions of {} remove every path it matches",
                rule.pattern
            )),
            (Ok(true), Ok(true)) => None,
        }
    }

    fn useless_exception(&self, rule: &Rule, this: &Compiled) -> Option<String> {
        for (exception, dfa) in rule.except.iter().zip(&this.each_except) {
            let terms = [(&this.path, true), (dfa, true), (self.canonical, true)];
            match self.exists(&terms) {
                Err(reason) => return Some(reason),
                Ok(false) => {
                    return Some(format!(
                        "exception {exception} removes nothing from this rule"
                    ))
                }
                Ok(true) => {}
            }
        }
        None
    }

    /// The first earlier rule of the list that settles every path this one
    /// matches (for all of this rule's methods), if any.
    fn shadowing(
        &self,
        set: &RuleSet,
        compiled: &[Result<Compiled, String>],
        j: usize,
    ) -> Option<String> {
        let rule = &set.rules()[j];
        let Ok(this) = &compiled[j] else { return None };
        for (i, earlier) in set.rules()[..j].iter().enumerate() {
            let Ok(other) = &compiled[i] else { continue };
            if !covers_methods(earlier, rule) || !prefixes_overlap(earlier, rule) {
                continue;
            }
            let mut outside = self.granted_terms(this);
            outside.push((&other.path, false));
            let mut excepted = self.granted_terms(this);
            excepted.push((&other.path, true));
            let escapes = match &other.except {
                Some(except) => {
                    excepted.push((except, true));
                    self.exists(&outside)
                        .map(|a| a || self.exists(&excepted).unwrap_or(true))
                }
                None => self.exists(&outside),
            };
            if let Ok(false) = escapes {
                return Some(format!(
                    "shadowed by {}[{}] {} (line {}): it already settles every path this rule matches",
                    earlier.section, earlier.index, earlier.pattern, earlier.line
                ));
            }
        }
        None
    }
}

/// Whether two rules' literal beginnings allow a common path: when neither
/// is a prefix of the other, the rules match no path in common, and the
/// automata need not be asked. (Lower-cased, since deny patterns ignore
/// case.) This keeps `validate` fast on large tables of distinct routes.
fn prefixes_overlap(a: &Rule, b: &Rule) -> bool {
    let literal = |rule: &Rule| {
        let end = rule
            .pattern
            .find(['*', '<', '{'])
            .unwrap_or(rule.pattern.len());
        rule.pattern[..end].to_ascii_lowercase()
    };
    let (a, b) = (literal(a), literal(b));
    a.starts_with(&b) || b.starts_with(&a)
}

/// Whether `earlier` covers every method `later` does.
fn covers_methods(earlier: &Rule, later: &Rule) -> bool {
    match (&earlier.methods, &later.methods) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(outer), Some(inner)) => inner.iter().all(|method| outer.contains(method)),
    }
}

fn compile((path, exceptions): &(String, Vec<String>)) -> Result<Compiled, String> {
    let except = if exceptions.is_empty() {
        None
    } else {
        Some(Dfa::new(exceptions)?)
    };
    let each_except = exceptions
        .iter()
        .map(|exception| Dfa::new(&[exception]))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Compiled {
        path: Dfa::new(&[path])?,
        except,
        each_except,
    })
}

#[cfg(test)]
#[path = "lint_tests.rs"]
mod tests;
