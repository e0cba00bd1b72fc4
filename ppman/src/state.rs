//! The state file: the single commit point of every change.
//!
//! It lists the configured repositories, the highest index version seen per repository, the roots
//! (packages the user asked for) and every installed package with its resolved dependencies.
//! Everything else (mounts, image files) is derived from it and repaired by `reconcile`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::atomic_write;
use crate::package::{PackageId, stack_order};
use crate::schema::IndexEntry;

/// Schema of the state file.
pub const STATE_SCHEMA: u32 = 1;

/// A configured repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    pub name: String,
    /// Root of the published tree: `http(s)://…`, `file://…` or a local path.
    pub url: String,
    /// The minisign public key, as given (base64 or key-file text).
    pub key: String,
}

/// A verified index on disk. The raw bytes live in a content-addressed file, so the state file
/// (the commit point) switches from one whole index to the next in one rename.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedIndex {
    /// File name under `indexes/` (`<repo>-<sha256 of the bytes>.json`).
    pub file: String,
    /// The minisign signature (`.minisig` text) of those bytes.
    pub signature: String,
    pub version: u64,
}

/// An installed package as recorded in the state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstalledRecord {
    pub repo: String,
    /// The index entry at install time (kept so the package stays usable if the index changes).
    pub entry: IndexEntry,
    /// Direct dependencies as resolved, in the order the metadata lists them (by name).
    pub deps: Vec<PackageId>,
}

impl InstalledRecord {
    pub fn id(&self) -> PackageId {
        PackageId::new(self.entry.name.clone(), self.entry.version.clone())
    }
}

/// The whole state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub schema: u32,
    #[serde(default)]
    pub repos: Vec<RepoConfig>,
    /// Highest index version accepted per repository (rollback protection).
    #[serde(default)]
    pub seen: BTreeMap<String, u64>,
    /// The verified index kept for each synced repository.
    #[serde(default)]
    pub indexes: BTreeMap<String, CachedIndex>,
    /// Packages the user asked for.
    #[serde(default)]
    pub roots: BTreeSet<PackageId>,
    /// Every installed package.
    #[serde(default)]
    pub packages: Vec<InstalledRecord>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            schema: STATE_SCHEMA,
            repos: Vec::new(),
            seen: BTreeMap::new(),
            indexes: BTreeMap::new(),
            roots: BTreeSet::new(),
            packages: Vec::new(),
        }
    }
}

impl State {
    /// Reads the state file; a missing file is the empty state.
    pub fn load(path: &Path) -> Result<Self> {
        let raw = match std::fs::read(path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::io("read", path)(e)),
        };
        let state: Self = serde_json::from_slice(&raw).map_err(|source| Error::State {
            path: path.to_owned(),
            source,
        })?;
        if state.schema != STATE_SCHEMA {
            return Err(Error::StateSchema {
                path: path.to_owned(),
                found: state.schema,
                known: STATE_SCHEMA,
            });
        }
        Ok(state)
    }

    /// Commits the state: atomic replace, durable when this returns.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut raw = serde_json::to_vec_pretty(self).expect("state always serialises");
        raw.push(b'\n');
        atomic_write(path, &raw)
    }

    pub fn repo(&self, name: &str) -> Option<&RepoConfig> {
        self.repos.iter().find(|r| r.name == name)
    }

    pub fn package(&self, id: &PackageId) -> Option<&InstalledRecord> {
        self.packages
            .iter()
            .find(|p| p.entry.name == id.name && p.entry.version == id.version)
    }

    /// Installed packages by id.
    pub fn by_id(&self) -> BTreeMap<PackageId, &InstalledRecord> {
        self.packages.iter().map(|p| (p.id(), p)).collect()
    }

    /// Everything reachable from the roots through recorded dependencies.
    pub fn reachable(&self) -> BTreeSet<PackageId> {
        let by_id = self.by_id();
        let mut seen = BTreeSet::new();
        let mut stack: Vec<PackageId> = self.roots.iter().cloned().collect();
        while let Some(id) = stack.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            if let Some(rec) = by_id.get(&id) {
                stack.extend(rec.deps.iter().cloned());
            }
        }
        seen
    }

    /// Installed packages that depend directly on `id`.
    pub fn dependents(&self, id: &PackageId) -> Vec<PackageId> {
        self.packages
            .iter()
            .filter(|p| p.deps.contains(id))
            .map(InstalledRecord::id)
            .collect()
    }

    /// Drops installed packages no root reaches; returns what was dropped.
    pub fn drop_unreachable(&mut self) -> Vec<PackageId> {
        let reachable = self.reachable();
        let mut dropped = Vec::new();
        self.packages.retain(|p| {
            let keep = reachable.contains(&p.id());
            if !keep {
                dropped.push(p.id());
            }
            keep
        });
        dropped
    }

    /// The layer stack of an installed package, top-most first (see [`stack_order`]).
    pub fn stack(&self, id: &PackageId) -> Vec<PackageId> {
        let by_id = self.by_id();
        stack_order(id, |p| {
            by_id.get(p).map(|r| r.deps.as_slice()).unwrap_or(&[])
        })
        .unwrap_or_else(|cycle| cycle.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use semver::Version;

    use super::*;
    use crate::schema::{BuildFileRef, CachePolicy};

    fn record(name: &str, deps: &[&str]) -> InstalledRecord {
        let id = |n: &str| PackageId::new(n, Version::new(1, 0, 0));
        InstalledRecord {
            repo: "main".into(),
            entry: IndexEntry {
                name: name.into(),
                version: Version::new(1, 0, 0),
                author: String::new(),
                description: String::new(),
                provides: vec![],
                dependencies: BTreeMap::new(),
                limit_overrides: BTreeMap::new(),
                compiled: false,
                cache: CachePolicy::None,
                size: 0,
                sha256: String::new(),
                url: String::new(),
                signature: String::new(),
                build_file: BuildFileRef {
                    sha256: String::new(),
                    url: String::new(),
                },
            },
            deps: deps.iter().map(|d| id(d)).collect(),
        }
    }

    #[test]
    fn reachability_decides_what_stays() {
        let id = |n: &str| PackageId::new(n, Version::new(1, 0, 0));
        let mut state = State {
            packages: vec![
                record("base", &[]),
                record("node", &["base"]),
                record("ts", &["node"]),
                record("py", &["base"]),
                record("orphan", &["base"]),
            ],
            ..State::default()
        };
        state.roots.extend([id("ts"), id("py")]);
        assert_eq!(state.dependents(&id("base")).len(), 3);
        assert_eq!(state.stack(&id("ts")), [id("ts"), id("node"), id("base")]);
        assert_eq!(state.drop_unreachable(), [id("orphan")]);
        state.roots.remove(&id("ts"));
        let mut dropped = state.drop_unreachable();
        dropped.sort();
        assert_eq!(dropped, [id("node"), id("ts")]);
        assert!(state.package(&id("base")).is_some(), "py still needs base");
    }

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(
            State::load(&path).unwrap(),
            State::default(),
            "missing file is the empty state"
        );
        let mut state = State::default();
        state.packages.push(record("base", &[]));
        state.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap(), state);
        std::fs::write(&path, b"{\"schema\": 99}").unwrap();
        assert!(matches!(
            State::load(&path),
            Err(Error::StateSchema { found: 99, .. })
        ));
    }
}
