//! Dependency resolution: the whole closure of a request, decided before anything is downloaded.
//!
//! Each package name gets one version per closure (two versions of the same layer cannot be stacked
//! in one tree). Dependencies are looked up in the repository of the package that needs them: an
//! index is one signed snapshot, and mixing snapshots is what signing rules out. The highest
//! version satisfying every selector seen for a name wins; when a later selector excludes the version
//! already picked, resolution restarts with that selector known, and reports a conflict if no
//! version satisfies them all. Packages already installed keep their recorded dependencies.

// Resolution errors carry whole chains for the user; they are rare, so their size does not matter.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, VecDeque};

use semver::Version;

use crate::package::{PackageId, stack_order};
use crate::schema::IndexEntry;
use crate::version::{Selector, SelectorError};

/// Why a request cannot be resolved. Chains read `ts 5.4.0 -> node 20.1.0`.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no package {name} in {repo}")]
    UnknownPackage { name: String, repo: String },
    #[error("no version of {name} matches {selector:?} in {repo} (available: {available})")]
    NoMatch {
        name: String,
        selector: String,
        repo: String,
        available: String,
    },
    #[error("{chain} needs {name} {selector}, repository {repo} has {available}")]
    MissingDependency {
        chain: String,
        name: String,
        selector: String,
        repo: String,
        available: String,
    },
    #[error(
        "dependency conflict on {name}: {first_chain} needs {name} {first_selector}, {second_chain} needs {name} {second_selector}; \
         repository {repo} has {available} and none satisfies both"
    )]
    Conflict {
        name: String,
        first_chain: String,
        first_selector: String,
        second_chain: String,
        second_selector: String,
        repo: String,
        available: String,
    },
    #[error("dependency cycle: {chain}")]
    Cycle { chain: String },
    #[error("{chain} has an invalid selector for {name}")]
    InvalidSelector {
        chain: String,
        name: String,
        #[source]
        source: SelectorError,
    },
}

/// What resolution may pick from: every repository's entries, and what is installed.
#[derive(Debug, Default)]
pub struct Catalog<'a> {
    /// (repository name, entries), in configuration order (earlier wins ties).
    pub repos: Vec<(&'a str, &'a [IndexEntry])>,
    /// Installed packages: repository, entry, recorded direct dependencies.
    pub installed: BTreeMap<PackageId, (&'a str, &'a IndexEntry, &'a [PackageId])>,
}

/// One package of a resolved closure.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub repo: String,
    pub entry: IndexEntry,
    /// Direct dependencies, in metadata order (by name).
    pub deps: Vec<PackageId>,
    /// Whether it is installed already.
    pub installed: bool,
}

impl Resolved {
    pub fn id(&self) -> PackageId {
        PackageId::new(self.entry.name.clone(), self.entry.version.clone())
    }
}

/// A resolved request: the root first, then the rest of the closure in stack order.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub packages: Vec<Resolved>,
}

impl Resolution {
    pub fn root(&self) -> &Resolved {
        &self.packages[0]
    }
}

fn list_versions(versions: &[&Version]) -> String {
    if versions.is_empty() {
        return "no version".to_owned();
    }
    versions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn chain_text(chain: &[PackageId]) -> String {
    chain
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" -> ")
}

impl<'a> Catalog<'a> {
    /// Candidate entries for `name` in `repo`: the index's and installed ones from that repository.
    fn candidates(&self, repo: &str, name: &str) -> Vec<&'a IndexEntry> {
        let mut out: Vec<&'a IndexEntry> = self
            .repos
            .iter()
            .filter(|(r, _)| *r == repo)
            .flat_map(|(_, entries)| entries.iter().filter(|e| e.name == name))
            .collect();
        for (id, (r, entry, _)) in &self.installed {
            if id.name == name && *r == repo && !out.iter().any(|e| e.version == id.version) {
                out.push(entry);
            }
        }
        out
    }

    /// The highest version of `name` matching `selector`, in `repo` or (None) every repository,
    /// installed packages included (also those of repositories no longer synced).
    pub fn best(
        &self,
        name: &str,
        selector: &Selector,
        repo: Option<&str>,
    ) -> Result<(&'a str, &'a IndexEntry), ResolveError> {
        let wanted = |r: &str| repo.is_none_or(|want| want == r);
        let mut found: Vec<(&'a str, &'a IndexEntry)> = Vec::new();
        for (r, _) in self.repos.iter().filter(|(r, _)| wanted(r)) {
            found.extend(self.candidates(r, name).into_iter().map(|e| (*r, e)));
        }
        for (id, (r, entry, _)) in &self.installed {
            if id.name == name && wanted(r) && !self.repos.iter().any(|(known, _)| known == r) {
                found.push((*r, *entry));
            }
        }
        let repo_label = repo.unwrap_or("any repository").to_owned();
        if found.is_empty() {
            return Err(ResolveError::UnknownPackage {
                name: name.to_owned(),
                repo: repo_label,
            });
        }
        // Highest precedence wins; on a tie the earlier repository wins.
        let best = found
            .iter()
            .filter(|(_, e)| selector.matches(&e.version))
            .fold(
                None::<(&'a str, &'a IndexEntry)>,
                |best, &(r, e)| match best {
                    Some((_, b)) if !e.version.cmp_precedence(&b.version).is_gt() => best,
                    _ => Some((r, e)),
                },
            );
        best.ok_or_else(|| {
            let mut versions: Vec<&Version> = found.iter().map(|(_, e)| &e.version).collect();
            versions.sort();
            versions.dedup();
            ResolveError::NoMatch {
                name: name.to_owned(),
                selector: selector.to_string(),
                repo: repo_label,
                available: list_versions(&versions),
            }
        })
    }

    /// Resolves `name` matching `selector`, in `repo` or (None) every repository, with its whole
    /// dependency closure.
    pub fn resolve(
        &self,
        name: &str,
        selector: &Selector,
        repo: Option<&str>,
    ) -> Result<Resolution, ResolveError> {
        let (root_repo, root) = self.best(name, selector, repo)?;
        self.closure(root_repo, root)
    }

    /// The closure of one chosen package.
    fn closure(&self, repo: &'a str, root: &'a IndexEntry) -> Result<Resolution, ResolveError> {
        // Selectors learnt from conflicts, kept across restarts.
        let mut learnt = Wanted::new();
        for _attempt in 0..32 {
            match self.attempt(repo, root, &learnt)? {
                Attempt::Done(res) => return Ok(res),
                Attempt::Learn(name, sel, chain) => {
                    learnt.entry(name).or_default().push((sel, chain));
                }
            }
        }
        Err(ResolveError::Cycle {
            chain: format!("{} {} (resolution did not settle)", root.name, root.version),
        })
    }

    /// One pass over the closure of `root`, with the selectors `learnt` from earlier passes.
    fn attempt(
        &self,
        repo: &'a str,
        root: &'a IndexEntry,
        learnt: &Wanted,
    ) -> Result<Attempt, ResolveError> {
        let mut walk = Walk::new(self, repo, root, learnt);
        while let Some((entry, chain)) = walk.queue.pop_front() {
            if let Some(learn) = walk.visit(entry, chain)? {
                return Ok(learn);
            }
        }
        walk.finish(root).map(Attempt::Done)
    }
}

/// Every selector seen per name, each with the chain that asked for it.
type Wanted = BTreeMap<String, Vec<(Selector, Vec<PackageId>)>>;

enum Attempt {
    Done(Resolution),
    Learn(String, Selector, Vec<PackageId>),
}

/// One resolution pass: a breadth-first walk from the root, choosing one version per name.
struct Walk<'c, 'a> {
    catalog: &'c Catalog<'a>,
    /// The repository of the root, where every dependency is looked up.
    repo: &'a str,
    /// Selectors learnt from conflicts in earlier passes.
    learnt: &'c Wanted,
    /// name -> the version chosen.
    chosen: BTreeMap<String, &'a IndexEntry>,
    /// name -> every selector seen, with the chain that asked (the learnt ones first).
    wanted: Wanted,
    /// The direct dependencies of every package visited.
    deps_of: BTreeMap<PackageId, Vec<PackageId>>,
    /// Packages still to visit, each with the chain that leads to it (itself last).
    queue: VecDeque<(&'a IndexEntry, Vec<PackageId>)>,
}

/// What a dependency gets.
enum Pick {
    /// This version (chosen now or earlier).
    Version(PackageId),
    /// A restart, knowing this selector from the start.
    Learn(String, Selector),
}

impl<'c, 'a> Walk<'c, 'a> {
    fn new(
        catalog: &'c Catalog<'a>,
        repo: &'a str,
        root: &'a IndexEntry,
        learnt: &'c Wanted,
    ) -> Self {
        let root_id = PackageId::new(root.name.clone(), root.version.clone());
        Self {
            catalog,
            repo,
            learnt,
            chosen: BTreeMap::from([(root.name.clone(), root)]),
            wanted: learnt.clone(),
            deps_of: BTreeMap::new(),
            queue: VecDeque::from([(root, vec![root_id])]),
        }
    }

    /// Picks a version for each requirement of `entry`, reached through `chain`; `Some` when the
    /// pass must restart.
    fn visit(
        &mut self,
        entry: &'a IndexEntry,
        chain: Vec<PackageId>,
    ) -> Result<Option<Attempt>, ResolveError> {
        let id = PackageId::new(entry.name.clone(), entry.version.clone());
        if self.deps_of.contains_key(&id) {
            return Ok(None);
        }
        let mut direct = Vec::new();
        for (name, sel) in self.requirements(&id, entry, &chain)? {
            match self.pick(name, sel, &chain)? {
                Pick::Version(dep) => direct.push(dep),
                Pick::Learn(name, sel) => return Ok(Some(Attempt::Learn(name, sel, chain))),
            }
        }
        self.deps_of.insert(id, direct);
        Ok(None)
    }

    /// What `entry` needs. Installed packages keep exactly the dependencies they were installed with.
    fn requirements(
        &self,
        id: &PackageId,
        entry: &IndexEntry,
        chain: &[PackageId],
    ) -> Result<Vec<(String, Selector)>, ResolveError> {
        match self.catalog.installed.get(id) {
            Some((_, _, deps)) => Ok(deps
                .iter()
                .map(|d| {
                    let sel = Selector::parse(&format!("={}", d.version))
                        .expect("a version is a selector");
                    (d.name.clone(), sel)
                })
                .collect()),
            None => entry
                .dependencies
                .iter()
                .map(|(name, text)| {
                    Selector::parse(text)
                        .map(|sel| (name.clone(), sel))
                        .map_err(|source| ResolveError::InvalidSelector {
                            chain: chain_text(chain),
                            name: name.clone(),
                            source,
                        })
                })
                .collect(),
        }
    }

    /// The version of `name` that `sel`, asked for by `chain`, gets: the one chosen earlier if it
    /// fits, else the highest that fits every selector seen (queued to be visited).
    fn pick(
        &mut self,
        name: String,
        sel: Selector,
        chain: &[PackageId],
    ) -> Result<Pick, ResolveError> {
        let seen = self.wanted.entry(name.clone()).or_default();
        seen.push((sel.clone(), chain.to_vec()));
        let candidates = self.catalog.candidates(self.repo, &name);
        let mut versions: Vec<&Version> = candidates.iter().map(|e| &e.version).collect();
        versions.sort();
        let satisfies_all = |e: &&&IndexEntry| seen.iter().all(|(s, _)| s.matches(&e.version));
        if let Some(current) = self.chosen.get(&name) {
            if sel.matches(&current.version) {
                return Ok(Pick::Version(PackageId::new(name, current.version.clone())));
            }
            // The version picked earlier does not fit this selector.
            if candidates.iter().any(|e| satisfies_all(&e))
                && !self
                    .learnt
                    .get(&name)
                    .is_some_and(|l| l.iter().any(|(s, _)| s == &sel))
            {
                return Ok(Pick::Learn(name, sel));
            }
            let first = seen
                .iter()
                .find(|(s, c)| s != &sel || c != chain)
                .unwrap_or(&seen[0]);
            return Err(conflict(name, first, &sel, chain, self.repo, &versions));
        }
        let best = candidates
            .iter()
            .filter(|e| satisfies_all(e))
            .max_by(|a, b| a.version.cmp_precedence(&b.version));
        let Some(best) = best else {
            if seen.len() > 1 && candidates.iter().any(|e| sel.matches(&e.version)) {
                return Err(conflict(name, &seen[0], &sel, chain, self.repo, &versions));
            }
            return Err(ResolveError::MissingDependency {
                chain: chain_text(chain),
                name,
                selector: sel.to_string(),
                repo: self.repo.to_owned(),
                available: list_versions(&versions),
            });
        };
        self.chosen.insert(name.clone(), best);
        let dep_id = PackageId::new(name, best.version.clone());
        let mut dep_chain = chain.to_vec();
        dep_chain.push(dep_id.clone());
        self.queue.push_back((best, dep_chain));
        Ok(Pick::Version(dep_id))
    }

    /// The closure in stack order, once every package is visited.
    fn finish(mut self, root: &IndexEntry) -> Result<Resolution, ResolveError> {
        let order = stack_order(
            &PackageId::new(root.name.clone(), root.version.clone()),
            |p| self.deps_of.get(p).map(Vec::as_slice).unwrap_or(&[]),
        )
        .map_err(|cycle| ResolveError::Cycle {
            chain: chain_text(&cycle),
        })?;
        let packages = order
            .into_iter()
            .map(|id| {
                let entry = self.chosen[&id.name];
                let (repo, installed) = match self.catalog.installed.get(&id) {
                    Some((r, _, _)) => ((*r).to_owned(), true),
                    None => (self.repo.to_owned(), false),
                };
                Resolved {
                    repo,
                    entry: entry.clone(),
                    deps: self.deps_of.remove(&id).unwrap_or_default(),
                    installed,
                }
            })
            .collect();
        Ok(Resolution { packages })
    }
}

/// Two chains that ask for versions of `name` no version satisfies together.
fn conflict(
    name: String,
    (first_selector, first_chain): &(Selector, Vec<PackageId>),
    second_selector: &Selector,
    second_chain: &[PackageId],
    repo: &str,
    versions: &[&Version],
) -> ResolveError {
    ResolveError::Conflict {
        name,
        first_chain: chain_text(first_chain),
        first_selector: first_selector.to_string(),
        second_chain: chain_text(second_chain),
        second_selector: second_selector.to_string(),
        repo: repo.to_owned(),
        available: list_versions(versions),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{BuildFileRef, CachePolicy};

    fn entry(name: &str, version: &str, deps: &[(&str, &str)]) -> IndexEntry {
        IndexEntry {
            name: name.into(),
            version: Version::parse(version).unwrap(),
            author: String::new(),
            description: String::new(),
            provides: vec![],
            dependencies: deps
                .iter()
                .map(|(n, s)| ((*n).into(), (*s).into()))
                .collect(),
            limit_overrides: BTreeMap::new(),
            compiled: false,
            cache: CachePolicy::None,
            size: 1,
            sha256: format!("{name}{version}"),
            url: String::new(),
            signature: String::new(),
            build_file: BuildFileRef {
                sha256: String::new(),
                url: String::new(),
            },
        }
    }

    fn ids(r: &Resolution) -> Vec<String> {
        r.packages.iter().map(|p| p.id().to_string()).collect()
    }

    fn any() -> Selector {
        Selector::any()
    }

    #[test]
    fn highest_match_and_stack_order() {
        let entries = vec![
            entry("base", "12.0.0", &[]),
            entry("base", "12.5.0", &[]),
            entry("base", "13.0.0", &[]),
            entry("node", "20.1.0", &[("base", "12.x")]),
            entry("ts", "5.4.0", &[("node", ">=20"), ("base", "12")]),
        ];
        let cat = Catalog {
            repos: vec![("main", &entries)],
            installed: BTreeMap::new(),
        };
        let r = cat.resolve("ts", &any(), None).unwrap();
        assert_eq!(ids(&r), ["ts 5.4.0", "node 20.1.0", "base 12.5.0"]);
        assert_eq!(r.root().deps.len(), 2);
        assert_eq!(
            ids(&cat.resolve("base", &any(), Some("main")).unwrap()),
            ["base 13.0.0"]
        );
    }

    #[test]
    fn learns_from_a_late_selector() {
        // a picks base 2.x first (highest), b later needs exactly 1.0.0; no version fits both.
        let entries = vec![
            entry("base", "1.0.0", &[]),
            entry("base", "2.0.0", &[]),
            entry("a", "1.0.0", &[("base", "*")]),
            entry("b", "1.0.0", &[("base", "1.0.0")]),
            entry("c", "1.0.0", &[("b", "*"), ("base", "2.x")]),
            entry("top", "1.0.0", &[("a", "*"), ("b", "*")]),
        ];
        let cat = Catalog {
            repos: vec![("main", &entries)],
            installed: BTreeMap::new(),
        };
        let r = cat.resolve("top", &any(), None).unwrap();
        assert!(ids(&r).contains(&"base 1.0.0".to_owned()), "{:?}", ids(&r));
        let err = cat.resolve("c", &any(), None).unwrap_err();
        assert!(
            matches!(&err, ResolveError::Conflict { name, .. } if name == "base"),
            "{err}"
        );
    }

    #[test]
    fn installed_packages_keep_their_dependencies() {
        let entries = vec![
            entry("base", "1.0.0", &[]),
            entry("base", "1.1.0", &[]),
            entry("lang", "1.0.0", &[("base", "1.x")]),
        ];
        let deps = vec![PackageId::new("base", Version::new(1, 0, 0))];
        let lang = entries[2].clone();
        let mut installed = BTreeMap::new();
        installed.insert(
            PackageId::new("lang", Version::new(1, 0, 0)),
            ("main", &lang, deps.as_slice()),
        );
        let base = entries[0].clone();
        installed.insert(
            PackageId::new("base", Version::new(1, 0, 0)),
            ("main", &base, &[][..]),
        );
        let cat = Catalog {
            repos: vec![("main", &entries)],
            installed,
        };
        let r = cat.resolve("lang", &any(), None).unwrap();
        assert_eq!(ids(&r), ["lang 1.0.0", "base 1.0.0"], "not base 1.1.0");
        assert!(r.packages.iter().all(|p| p.installed));
    }

    #[test]
    fn errors_name_the_chain() {
        let entries = vec![
            entry("node", "18.19.0", &[]),
            entry("ts", "5.4.0", &[("node", ">=20")]),
            entry("x", "1.0.0", &[("ts", "*")]),
            entry("bad", "1.0.0", &[("node", "not a selector")]),
        ];
        let cat = Catalog {
            repos: vec![("main", &entries)],
            installed: BTreeMap::new(),
        };
        let err = cat.resolve("x", &any(), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "x 1.0.0 -> ts 5.4.0 needs node >=20, repository main has 18.19.0"
        );
        assert!(matches!(
            cat.resolve("bad", &any(), None),
            Err(ResolveError::InvalidSelector { .. })
        ));
        assert!(matches!(
            cat.resolve("node", &Selector::parse("20").unwrap(), None),
            Err(ResolveError::NoMatch { .. })
        ));
    }
}
