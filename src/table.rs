//! The route permission table: the file format, the compiled rule sets and
//! the lookup that finds the rule settling a request. The protection-mode
//! invariant is checked on every table before it can be used.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::Method;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};

use crate::config::{from_yaml, read_file, ConfigError, Role};
use crate::pathset::{Hits, PathSet};
use crate::pattern::{to_regex, PatternKind};

/// The default table of SPEC.md, compiled into the binary.
pub const DEFAULT_TABLE: &str = include_str!("../config/default-table.yaml");

/// The name the built-in table goes by in messages.
pub const DEFAULT_TABLE_NAME: &str = "config/default-table.yaml (built in)";

/// Where a rule stands in the table: its section of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Step 3.
    AlwaysDenied,
    /// Step 4.
    Public,
    /// Step 4: core proxy paths that skip the role table.
    CoreProxyPublic,
    /// After the role table: core proxy paths that go through it.
    CoreProxyChecked,
    /// Step 6.
    CoreOnly,
    /// Step 7.
    Observer,
    /// Step 8: paths for every known add-on.
    SelfService,
    /// Step 8: paths that need `auth_api`.
    NeedsAuthApi,
    /// Step 8: a role's own rules.
    Role(Role),
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Section::AlwaysDenied => f.write_str("always_denied"),
            Section::Public => f.write_str("public"),
            Section::CoreProxyPublic => f.write_str("core_proxy.public"),
            Section::CoreProxyChecked => f.write_str("core_proxy.checked"),
            Section::CoreOnly => f.write_str("core_only"),
            Section::Observer => f.write_str("observer"),
            Section::SelfService => f.write_str("self_service"),
            Section::NeedsAuthApi => f.write_str("needs_auth_api"),
            Section::Role(role) => write!(f, "roles.{}", role.name()),
        }
    }
}

/// One rule of the table, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The section that holds it.
    pub section: Section,
    /// Its position in the section, from 0.
    pub index: usize,
    /// The path pattern as written.
    pub pattern: String,
    /// The methods it covers; `None` is every method.
    pub methods: Option<Vec<Method>>,
    /// Exception patterns as written.
    pub except: Vec<String>,
    /// The table file.
    pub file: Arc<str>,
    /// The line of the rule in the file.
    pub line: u64,
}

impl Rule {
    /// Whether the rule covers `method`; HEAD is judged as GET.
    pub fn covers(&self, method: &Method) -> bool {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.methods
            .as_ref()
            .is_none_or(|methods| methods.contains(method))
    }
}

impl Rule {
    /// A problem with this rule, reported at its line under its key.
    pub fn error(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: self.line,
            key: format!("{}[{}]", self.section, self.index),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}] {}", self.section, self.index, self.pattern)?;
        if let Some(methods) = &self.methods {
            let names: Vec<&str> = methods.iter().map(Method::as_str).collect();
            write!(f, " ({})", names.join(","))?;
        }
        if !self.except.is_empty() {
            write!(f, " except {}", self.except.join(", "))?;
        }
        write!(f, " at {}:{}", self.file, self.line)
    }
}

/// A compiled list of rules: one pass over the path finds every rule that
/// matches, however many rules there are.
#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Arc<Rule>>,
    paths: PathSet,
    exceptions: PathSet,
    exception_owner: Vec<usize>,
    /// Where this set's rules start in the table's [`Gate`], for the fixed
    /// sections (role sets are searched on their own).
    gate_offset: Option<usize>,
    /// The anchored regular expressions, kept for the invariant check.
    pub(crate) sources: Vec<(String, Vec<String>)>,
}

/// Which rules of the fixed sections match one path: one pass over the path
/// for all of them, however many rules they hold.
pub struct Gate {
    hits: Option<Hits>,
}

impl RuleSet {
    fn new(rules: Vec<Arc<Rule>>, kind: PatternKind) -> Result<RuleSet, (Arc<Rule>, String)> {
        let mut sources = Vec::with_capacity(rules.len());
        for rule in &rules {
            let path = to_regex(&rule.pattern, kind).map_err(|e| (rule.clone(), e.to_string()))?;
            let mut excepts = Vec::new();
            for exception in &rule.except {
                let regex = to_regex(exception, PatternKind::Deny)
                    .map_err(|e| (rule.clone(), format!("except {exception}: {e}")))?;
                excepts.push(regex);
            }
            sources.push((path, excepts));
        }
        let build =
            |patterns: Vec<&String>| PathSet::new(&patterns).map_err(|e| (rules[0].clone(), e));
        let paths = build(sources.iter().map(|(path, _)| path).collect())?;
        let exceptions = build(sources.iter().flat_map(|(_, e)| e).collect())?;
        let exception_owner = sources
            .iter()
            .enumerate()
            .flat_map(|(owner, (_, e))| std::iter::repeat_n(owner, e.len()))
            .collect();
        Ok(RuleSet {
            rules,
            paths,
            exceptions,
            exception_owner,
            gate_offset: None,
            sources,
        })
    }

    /// Like [`RuleSet::find`], with this set's path matches read from a
    /// [`Gate`] computed once for the request.
    pub fn find_gated(&self, gate: &Gate, method: &Method, path: &str) -> Option<&Arc<Rule>> {
        let Some(offset) = self.gate_offset else {
            return self.find(method, path);
        };
        let hits = gate.hits.as_ref()?;
        let mut excepted: Option<Vec<usize>> = None;
        for (index, rule) in self.rules.iter().enumerate() {
            if !hits.matched(offset + index) || !rule.covers(method) {
                continue;
            }
            if !rule.except.is_empty() {
                let excepted = excepted.get_or_insert_with(|| self.excepted(path));
                if excepted.contains(&index) {
                    continue;
                }
            }
            return Some(rule);
        }
        None
    }

    /// The first rule, in table order, that matches this method and path and
    /// whose exceptions do not.
    pub fn find(&self, method: &Method, path: &str) -> Option<&Arc<Rule>> {
        // One pass: the sets searched here (a role's) mostly match, so a
        // quick test first would mostly mean two passes.
        let hits = self.paths.matches(path.as_bytes());
        if !hits.matched_any() {
            return None;
        }
        let excepted = self.excepted(path);
        // Bound first: the iterator borrows `hits`, which a tail expression
        // would outlive.
        let found = hits
            .iter()
            .map(|index| (index, &self.rules[index]))
            .find(|(index, rule)| rule.covers(method) && !excepted.contains(index))
            .map(|(_, rule)| rule);
        found
    }

    /// The rules an exception removes this path from.
    fn excepted(&self, path: &str) -> Vec<usize> {
        if self.exceptions.is_empty() {
            return Vec::new();
        }
        self.exceptions
            .matches(path.as_bytes())
            .iter()
            .map(|index| self.exception_owner[index])
            .collect()
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }
}

/// A loaded, checked permission table.
#[derive(Debug)]
pub struct Table {
    /// The file it came from.
    pub file: Arc<str>,
    /// The first 16 hex digits of the SHA-256 of its text.
    pub digest: String,
    /// Step 3.
    pub always_denied: RuleSet,
    /// Step 4.
    pub public: RuleSet,
    /// Step 4, core proxy paths skipping the table.
    pub core_proxy_public: RuleSet,
    /// After the table, core proxy paths checked by it.
    pub core_proxy_checked: RuleSet,
    /// Step 6.
    pub core_only: RuleSet,
    /// Step 7.
    pub observer: RuleSet,
    /// Step 8.
    pub self_service: RuleSet,
    /// Step 8.
    pub needs_auth_api: RuleSet,
    roles: Vec<(Role, RuleSet)>,
    gate: PathSet,
    /// This table's number, never given to another table of this process.
    id: u64,
}

impl Table {
    /// A number that tells this table from every other this process loads,
    /// also from a later one at the same address.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The built-in default table.
    pub fn builtin() -> Result<Table, ConfigError> {
        Table::from_yaml(DEFAULT_TABLE, DEFAULT_TABLE_NAME)
    }

    /// Loads a table file, or the built-in table when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Table, ConfigError> {
        let Some(path) = path else {
            return Table::builtin();
        };
        let (text, file) = read_file(path)?;
        Table::from_yaml(&text, &file)
    }

    /// Loads a table and runs `validate`'s checks on it: the form in which
    /// `serve` and a reload accept a table. Every problem is returned.
    pub fn load_validated(path: Option<&Path>) -> Result<Table, Vec<ConfigError>> {
        let table = Table::load(path).map_err(|error| vec![error])?;
        let problems = crate::lint::lint(&table);
        if problems.is_empty() {
            Ok(table)
        } else {
            Err(problems)
        }
    }

    /// How many rules the table holds, counting each once.
    pub fn rule_count(&self) -> usize {
        self.sections()
            .into_iter()
            .map(|(owner, set)| {
                set.rules()
                    .iter()
                    .filter(|rule| rule.section == owner)
                    .count()
            })
            .sum()
    }

    /// Parses, compiles and checks table text; `file` names it in messages.
    pub fn from_yaml(text: &str, file: &str) -> Result<Table, ConfigError> {
        let raw: RawTable = from_yaml(text, file)?;
        let table = Compiler::new(file).compile(raw, text)?;
        crate::protection::check(&table)?;
        Ok(table)
    }

    /// The fixed sections' matches for a path, for [`RuleSet::find_gated`].
    pub fn gate(&self, path: &str) -> Gate {
        let hits = self.gate.matches(path.as_bytes());
        Gate {
            hits: hits.matched_any().then_some(hits),
        }
    }

    /// Every rule set with the section it belongs to, in evaluation order.
    pub fn sections(&self) -> Vec<(Section, &RuleSet)> {
        let mut sections = vec![
            (Section::AlwaysDenied, &self.always_denied),
            (Section::Public, &self.public),
            (Section::CoreProxyPublic, &self.core_proxy_public),
            (Section::CoreProxyChecked, &self.core_proxy_checked),
            (Section::CoreOnly, &self.core_only),
            (Section::Observer, &self.observer),
            (Section::SelfService, &self.self_service),
            (Section::NeedsAuthApi, &self.needs_auth_api),
        ];
        sections.extend(
            self.roles
                .iter()
                .map(|(role, rules)| (Section::Role(*role), rules)),
        );
        sections
    }

    /// A role's rules, its own first and then those of the roles it includes.
    pub fn role(&self, role: Role) -> &RuleSet {
        self.roles
            .iter()
            .find(|(candidate, _)| *candidate == role)
            .map(|(_, rules)| rules)
            .expect("the compiler builds a rule set for every role")
    }
}

// ---- raw file shape ------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    version: Spanned<u32>,
    #[serde(default)]
    always_denied: Vec<Spanned<RawRule>>,
    #[serde(default)]
    public: Vec<Spanned<RawRule>>,
    #[serde(default)]
    core_proxy: RawCoreProxy,
    #[serde(default)]
    core_only: Vec<Spanned<RawRule>>,
    #[serde(default)]
    observer: Vec<Spanned<RawRule>>,
    #[serde(default)]
    self_service: Vec<Spanned<RawRule>>,
    #[serde(default)]
    needs_auth_api: Vec<Spanned<RawRule>>,
    roles: Spanned<HashMap<String, Spanned<RawRole>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCoreProxy {
    #[serde(default)]
    public: Vec<Spanned<RawRule>>,
    #[serde(default)]
    checked: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    #[serde(default)]
    includes: Vec<Spanned<String>>,
    #[serde(default)]
    allow: Vec<Spanned<RawRule>>,
}

/// A rule as written: a bare pattern, or a map.
struct RawRule {
    path: String,
    methods: Option<Vec<String>>,
    except: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuleMap {
    path: String,
    methods: Option<Vec<String>>,
    #[serde(default)]
    except: Vec<String>,
}

impl<'de> Deserialize<'de> for RawRule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RuleVisitor)
    }
}

struct RuleVisitor;

impl<'de> Visitor<'de> for RuleVisitor {
    type Value = RawRule;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a path pattern, or a map with path, methods and except")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<RawRule, E> {
        Ok(RawRule {
            path: value.to_owned(),
            methods: None,
            except: Vec::new(),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawRule, A::Error> {
        let map = RawRuleMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(RawRule {
            path: map.path,
            methods: map.methods,
            except: map.except,
        })
    }
}

// ---- compiling ---------------------------------------------------------------

/// Tables compiled so far, for [`Table::id`].
static TABLES_LOADED: AtomicU64 = AtomicU64::new(0);

struct Compiler {
    file: Arc<str>,
}

impl Compiler {
    fn new(file: &str) -> Compiler {
        Compiler { file: file.into() }
    }

    fn error(&self, line: u64, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line,
            key: key.into(),
            reason: reason.into(),
        }
    }

    fn compile(&self, raw: RawTable, text: &str) -> Result<Table, ConfigError> {
        if raw.version.value != 1 {
            let line = raw.version.referenced.line();
            return Err(self.error(line, "version", "this gateway reads table version 1"));
        }
        let roles = self.roles(&raw.roles.value, raw.roles.referenced.line())?;
        let mut table = Table {
            file: self.file.clone(),
            digest: hex::encode(&Sha256::digest(text.as_bytes())[..8]),
            always_denied: self.set(
                Section::AlwaysDenied,
                &raw.always_denied,
                PatternKind::Deny,
            )?,
            public: self.set(Section::Public, &raw.public, PatternKind::Grant)?,
            core_proxy_public: self.set(
                Section::CoreProxyPublic,
                &raw.core_proxy.public,
                PatternKind::Grant,
            )?,
            core_proxy_checked: self.set(
                Section::CoreProxyChecked,
                &raw.core_proxy.checked,
                PatternKind::Grant,
            )?,
            core_only: self.set(Section::CoreOnly, &raw.core_only, PatternKind::Deny)?,
            observer: self.set(Section::Observer, &raw.observer, PatternKind::Grant)?,
            self_service: self.set(Section::SelfService, &raw.self_service, PatternKind::Grant)?,
            needs_auth_api: self.set(
                Section::NeedsAuthApi,
                &raw.needs_auth_api,
                PatternKind::Deny,
            )?,
            roles,
            gate: PathSet::empty(),
            id: TABLES_LOADED.fetch_add(1, Ordering::Relaxed),
        };
        table.gate = self.gate(&mut table)?;
        Ok(table)
    }

    /// One set over the fixed sections' paths, each set told where its rules
    /// start in it.
    fn gate(&self, table: &mut Table) -> Result<PathSet, ConfigError> {
        let mut patterns: Vec<String> = Vec::new();
        let fixed = [
            &mut table.always_denied,
            &mut table.public,
            &mut table.core_proxy_public,
            &mut table.core_proxy_checked,
            &mut table.core_only,
            &mut table.observer,
            &mut table.self_service,
            &mut table.needs_auth_api,
        ];
        for set in fixed {
            set.gate_offset = Some(patterns.len());
            patterns.extend(set.sources.iter().map(|(path, _)| path.clone()));
        }
        PathSet::new(&patterns).map_err(|error| self.error(0, "(table)", error))
    }

    fn set(
        &self,
        section: Section,
        raw: &[Spanned<RawRule>],
        kind: PatternKind,
    ) -> Result<RuleSet, ConfigError> {
        let rules = raw
            .iter()
            .enumerate()
            .map(|(index, rule)| self.rule(section, index, rule).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        self.compiled(rules, kind)
    }

    fn compiled(&self, rules: Vec<Arc<Rule>>, kind: PatternKind) -> Result<RuleSet, ConfigError> {
        RuleSet::new(rules, kind).map_err(|(rule, reason)| {
            self.error(
                rule.line,
                format!("{}[{}]", rule.section, rule.index),
                reason,
            )
        })
    }

    fn rule(
        &self,
        section: Section,
        index: usize,
        raw: &Spanned<RawRule>,
    ) -> Result<Rule, ConfigError> {
        let line = raw.referenced.line();
        let methods = match &raw.value.methods {
            None => None,
            Some(names) => Some(self.methods(names, line, section, index)?),
        };
        Ok(Rule {
            section,
            index,
            pattern: raw.value.path.clone(),
            methods,
            except: raw.value.except.clone(),
            file: self.file.clone(),
            line,
        })
    }

    fn methods(
        &self,
        names: &[String],
        line: u64,
        section: Section,
        index: usize,
    ) -> Result<Vec<Method>, ConfigError> {
        let key = || format!("{section}[{index}].methods");
        if names.is_empty() {
            return Err(self.error(line, key(), "an empty method list matches nothing"));
        }
        names
            .iter()
            .map(|name| {
                let method = Method::from_bytes(name.as_bytes()).ok();
                method
                    .filter(|m| crate::target::FORWARDED_METHODS.contains(m) && m != Method::HEAD)
                    .ok_or_else(|| {
                        let reason = format!(
                            "unknown method {name}: use GET, POST, PUT, PATCH, DELETE or OPTIONS (HEAD is judged as GET)"
                        );
                        self.error(line, key(), reason)
                    })
            })
            .collect()
    }

    /// Every role's rules with its inclusions resolved; all five roles must
    /// be present and no other.
    fn roles(
        &self,
        raw: &HashMap<String, Spanned<RawRole>>,
        roles_line: u64,
    ) -> Result<Vec<(Role, RuleSet)>, ConfigError> {
        for (name, role) in raw {
            if Role::from_name(name).is_none() {
                let reason =
                    "unknown role: the roles are default, homeassistant, backup, manager and admin";
                return Err(self.error(role.referenced.line(), format!("roles.{name}"), reason));
            }
        }
        let mut own = HashMap::new();
        for role in Role::ALL {
            let entry = raw.get(role.name()).ok_or_else(|| {
                self.error(
                    roles_line,
                    format!("roles.{}", role.name()),
                    "every role must be defined",
                )
            })?;
            let rules = entry
                .value
                .allow
                .iter()
                .enumerate()
                .map(|(index, rule)| self.rule(Section::Role(role), index, rule).map(Arc::new))
                .collect::<Result<Vec<_>, _>>()?;
            own.insert(role, rules);
        }
        Role::ALL
            .into_iter()
            .map(|role| {
                let rules = self.flatten(role, raw, &own, &mut Vec::new())?;
                Ok((role, self.compiled(rules, PatternKind::Grant)?))
            })
            .collect()
    }

    fn flatten(
        &self,
        role: Role,
        raw: &HashMap<String, Spanned<RawRole>>,
        own: &HashMap<Role, Vec<Arc<Rule>>>,
        path: &mut Vec<Role>,
    ) -> Result<Vec<Arc<Rule>>, ConfigError> {
        let entry = &raw[role.name()];
        if path.contains(&role) {
            let key = format!("roles.{}.includes", role.name());
            return Err(self.error(
                entry.referenced.line(),
                key,
                "roles include each other in a cycle",
            ));
        }
        path.push(role);
        let mut rules = own[&role].clone();
        for included in &entry.value.includes {
            let key = format!("roles.{}.includes", role.name());
            let other = Role::from_name(&included.value).ok_or_else(|| {
                self.error(
                    included.referenced.line(),
                    key,
                    format!("unknown role {}", included.value),
                )
            })?;
            for rule in self.flatten(other, raw, own, path)? {
                if !rules.iter().any(|known| Arc::ptr_eq(known, &rule)) {
                    rules.push(rule);
                }
            }
        }
        path.pop();
        Ok(rules)
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
