//! [`PackageManager`]: every command, under the lock, with the state file as the only commit point.
//!
//! Mutating commands take the lock exclusively and first repair the mounts (a crash or a reboot may
//! have left them behind the state file). Readers take it shared.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use semver::Version;

use crate::error::{Error, Result};
use crate::fsutil::{Lock, atomic_write};
use crate::mounts::{
    self, IMAGE_MOUNTS, Mounter, Plan, ReconcileReport, SystemMounter, TREE_MOUNTS,
};
use crate::package::PackageId;
use crate::progress::{NoProgress, Progress};
use crate::resolve::Catalog;
use crate::schema::{
    INDEX_FILE, INDEX_SIG_FILE, Index, IndexEntry, TrustedKey, meta::check_name, package_dir,
};
use crate::source::Location;
use crate::state::{CachedIndex, InstalledRecord, RepoConfig, State};
use crate::store;
use crate::version::Selector;

/// Name of the meta-repository that spans every repository.
pub const ALL_REPOS: &str = "all";
/// Largest index accepted (bytes).
const MAX_INDEX: u64 = 64 << 20;
/// Largest index signature accepted (bytes).
const MAX_SIGNATURE: u64 = 64 << 10;

/// An installed runtime as the api server and the runner see it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstalledPackage {
    /// Name, version, provides, limit overrides, compiled, cache policy…
    pub entry: IndexEntry,
    pub repo: String,
    /// Read-only tree of the whole stack, mounted by ppman.
    pub tree: PathBuf,
    /// Mounted image directories, top-most first: the package, then its dependency closure.
    pub layers: Vec<PathBuf>,
    /// `/piston/packages/<name>/<version>`: the package's files, inside the tree.
    pub package_dir: String,
    /// Whether the user asked for it (false: installed as a dependency).
    pub root: bool,
}

/// A package a repository offers.
#[derive(Debug, Clone, PartialEq)]
pub struct AvailablePackage {
    pub repo: String,
    pub entry: IndexEntry,
    pub installed: bool,
}

/// Everything `info` tells about one package.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageInfo {
    pub repo: String,
    pub entry: IndexEntry,
    pub installed: bool,
    /// Where the image is downloaded from.
    pub download_url: String,
    /// Where its build files are.
    pub build_file_url: String,
    /// For an installed package: its resolved direct dependencies and the packages that need it.
    pub resolved_deps: Vec<PackageId>,
    pub dependents: Vec<PackageId>,
}

/// A configured repository and its synced index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInfo {
    pub name: String,
    pub url: String,
    /// Version of the synced index, if any.
    pub index_version: Option<u64>,
    /// When the synced index was generated (unix seconds).
    pub generated: Option<u64>,
    pub packages: usize,
}

/// Result of syncing one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub repo: String,
    pub version: u64,
    pub previous: Option<u64>,
    pub packages: usize,
}

/// A package version and the repository it came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RepoPackage {
    pub repo: String,
    pub id: PackageId,
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallOutcome {
    /// The exact versions the requests resolved to, in request order.
    pub roots: Vec<RepoPackage>,
    /// Every package newly installed, dependencies included (empty when all were installed).
    pub added: Vec<RepoPackage>,
}

/// What an uninstall did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UninstallOutcome {
    /// The installed version the request matched.
    pub package: RepoPackage,
    /// Every package removed: the package, its dependents with `cascade`, and the dependencies
    /// nothing needs any more.
    pub removed: Vec<RepoPackage>,
}

/// What `gc` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub packages: Vec<PackageId>,
    pub files: Vec<PathBuf>,
    pub freed_bytes: u64,
    pub unmounted: Vec<PathBuf>,
}

/// An installed image that no longer matches its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyProblem {
    pub package: PackageId,
    pub path: PathBuf,
    pub expected: String,
    /// `None` when the file is missing.
    pub actual: Option<String>,
}

/// The package manager of one data directory.
pub struct PackageManager {
    root: PathBuf,
    mounter: Arc<dyn Mounter>,
    progress: Arc<dyn Progress>,
}

impl std::fmt::Debug for PackageManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackageManager")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn parse_key(repo: &RepoConfig) -> Result<TrustedKey> {
    TrustedKey::parse(&repo.key).map_err(|source| Error::Key {
        repo: repo.name.clone(),
        source,
    })
}

fn selected_repo(repo: Option<&str>) -> Option<&str> {
    repo.filter(|r| *r != ALL_REPOS)
}

impl PackageManager {
    /// Opens (creating if needed) ppman's files under `<data_dir>/ppman/`.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Self> {
        let root = data_dir.as_ref().join("ppman");
        for sub in ["", "images", "indexes", IMAGE_MOUNTS, TREE_MOUNTS] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        }
        // Mount points are compared with the kernel's table, which holds canonical paths.
        let root = root.canonicalize().map_err(Error::io("resolve", &root))?;
        Ok(Self {
            root,
            mounter: Arc::new(SystemMounter),
            progress: Arc::new(NoProgress),
        })
    }

    /// Uses another kernel seam (tests).
    pub fn with_mounter(mut self, mounter: Arc<dyn Mounter>) -> Self {
        self.mounter = mounter;
        self
    }

    /// Reports download progress to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// `<data>/ppman`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The state file (the commit point).
    pub fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }

    fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    fn indexes_dir(&self) -> PathBuf {
        self.root.join("indexes")
    }

    fn lock(&self, exclusive: bool) -> Result<Lock> {
        Lock::acquire(&self.root.join("lock"), exclusive)
    }

    /// Reads the state file (without locking; for tests and diagnostics).
    pub fn load_state(&self) -> Result<State> {
        State::load(&self.state_path())
    }

    // ---- repositories -------------------------------------------------------------------------

    /// Adds a repository. `key` is a minisign public key: base64 or the text of a `.pub` file.
    pub fn repo_add(&self, name: &str, url: &str, key: &str) -> Result<()> {
        if name == ALL_REPOS || check_name(name).is_err() {
            return Err(Error::RepoName(name.to_owned()));
        }
        let config = RepoConfig {
            name: name.to_owned(),
            url: url.to_owned(),
            key: key.trim().to_owned(),
        };
        parse_key(&config)?;
        let _lock = self.lock(true)?;
        let mut state = self.load_state()?;
        if state.repo(name).is_some() {
            return Err(Error::RepoExists(name.to_owned()));
        }
        state.repos.push(config);
        state.save(&self.state_path())
    }

    /// Removes a repository and its synced index. Packages installed from it stay installed.
    pub fn repo_remove(&self, name: &str) -> Result<()> {
        let _lock = self.lock(true)?;
        let mut state = self.load_state()?;
        if state.repo(name).is_none() {
            return Err(Error::UnknownRepo(name.to_owned()));
        }
        state.repos.retain(|r| r.name != name);
        let cached = state.indexes.remove(name);
        state.seen.remove(name);
        state.save(&self.state_path())?;
        if let Some(c) = cached {
            let _ = fs::remove_file(self.indexes_dir().join(c.file));
        }
        Ok(())
    }

    /// Configured repositories.
    pub fn repos(&self) -> Result<Vec<RepoInfo>> {
        let _lock = self.lock(false)?;
        let state = self.load_state()?;
        let indexes = self.indexes(&state)?;
        Ok(state
            .repos
            .iter()
            .map(|r| {
                let index = indexes
                    .iter()
                    .find(|(name, _)| name == &r.name)
                    .map(|(_, i)| i);
                RepoInfo {
                    name: r.name.clone(),
                    url: r.url.clone(),
                    index_version: index.map(|i| i.version),
                    generated: index.map(|i| i.generated),
                    packages: index.map_or(0, |i| i.packages.len()),
                }
            })
            .collect())
    }

    fn repos_selected<'s>(
        &self,
        state: &'s State,
        repo: Option<&str>,
    ) -> Result<Vec<&'s RepoConfig>> {
        match selected_repo(repo) {
            Some(name) => Ok(vec![
                state
                    .repo(name)
                    .ok_or_else(|| Error::UnknownRepo(name.to_owned()))?,
            ]),
            None if state.repos.is_empty() => Err(Error::NoRepos),
            None => Ok(state.repos.iter().collect()),
        }
    }

    /// Downloads, verifies and keeps the index of `repo` (or of every repository).
    pub fn sync(&self, repo: Option<&str>) -> Result<Vec<SyncReport>> {
        let _lock = self.lock(true)?;
        let mut state = self.load_state()?;
        let mut reports = Vec::new();
        let mut replaced = Vec::new();
        for config in self
            .repos_selected(&state, repo)?
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
        {
            let key = parse_key(&config)?;
            let base = Location::parse(&config.url);
            let index_loc = base.join(INDEX_FILE);
            let raw = index_loc.read_all(MAX_INDEX)?;
            let sig_raw = base.join(INDEX_SIG_FILE).read_all(MAX_SIGNATURE)?;
            let refused = |source| Error::Index {
                repo: config.name.clone(),
                url: index_loc.to_string(),
                source,
            };
            let signature = String::from_utf8_lossy(&sig_raw).into_owned();
            // Signature over the raw bytes first; nothing is parsed before it holds.
            let index = Index::verify(&raw, &signature, &key).map_err(refused)?;
            let previous = state.seen.get(&config.name).copied();
            index.check_fresh(previous, now()).map_err(refused)?;
            let file = format!("{}-{}.json", config.name, crate::digest::sha256_hex(&raw));
            atomic_write(&self.indexes_dir().join(&file), &raw)?;
            if let Some(old) = state.indexes.insert(
                config.name.clone(),
                CachedIndex {
                    file: file.clone(),
                    signature,
                    version: index.version,
                },
            ) && old.file != file
            {
                replaced.push(old.file);
            }
            let seen = state.seen.entry(config.name.clone()).or_insert(0);
            *seen = (*seen).max(index.version);
            tracing::info!(repo = %config.name, version = index.version, packages = index.packages.len(), "synced");
            reports.push(SyncReport {
                repo: config.name.clone(),
                version: index.version,
                previous,
                packages: index.packages.len(),
            });
        }
        state.save(&self.state_path())?;
        for file in replaced {
            let _ = fs::remove_file(self.indexes_dir().join(file));
        }
        Ok(reports)
    }

    /// The synced indexes, re-verified from disk, in repository order.
    fn indexes(&self, state: &State) -> Result<Vec<(String, Index)>> {
        let mut out = Vec::new();
        for config in &state.repos {
            let Some(cached) = state.indexes.get(&config.name) else {
                continue;
            };
            let path = self.indexes_dir().join(&cached.file);
            let raw = fs::read(&path).map_err(Error::io("read", &path))?;
            let key = parse_key(config)?;
            let index = Index::verify(&raw, &cached.signature, &key).map_err(|source| {
                Error::CachedIndex {
                    repo: config.name.clone(),
                    path: path.clone(),
                    source,
                }
            })?;
            out.push((config.name.clone(), index));
        }
        Ok(out)
    }

    // ---- queries ------------------------------------------------------------------------------

    /// Every package of every synced index (or of `repo`), with whether it is installed.
    pub fn available(&self, repo: Option<&str>) -> Result<Vec<AvailablePackage>> {
        let _lock = self.lock(false)?;
        let state = self.load_state()?;
        if state.repos.is_empty() && selected_repo(repo).is_none() {
            return Ok(Vec::new());
        }
        let wanted = self.repos_selected(&state, repo)?;
        let installed: BTreeSet<PackageId> =
            state.packages.iter().map(InstalledRecord::id).collect();
        let mut out = Vec::new();
        for (name, index) in self.indexes(&state)? {
            if !wanted.iter().any(|r| r.name == name) {
                continue;
            }
            for entry in index.packages {
                let id = PackageId::new(entry.name.clone(), entry.version.clone());
                out.push(AvailablePackage {
                    repo: name.clone(),
                    installed: installed.contains(&id),
                    entry,
                });
            }
        }
        Ok(out)
    }

    fn installed_view(&self, state: &State, rec: &InstalledRecord) -> InstalledPackage {
        let id = rec.id();
        let by_id = state.by_id();
        let layers = state
            .stack(&id)
            .iter()
            .filter_map(|p| by_id.get(p))
            .map(|r| self.image_mount(&r.entry.sha256))
            .collect();
        InstalledPackage {
            entry: rec.entry.clone(),
            repo: rec.repo.clone(),
            tree: self.tree_mount(&id),
            layers,
            package_dir: package_dir(&id.name, &id.version),
            root: state.roots.contains(&id),
        }
    }

    /// Every installed package with its tree and layers.
    pub fn installed(&self) -> Result<Vec<InstalledPackage>> {
        let _lock = self.lock(false)?;
        let state = self.load_state()?;
        Ok(state
            .packages
            .iter()
            .map(|r| self.installed_view(&state, r))
            .collect())
    }

    /// Details of the highest version of `name` matching `selector`, among the synced indexes and
    /// the installed packages.
    pub fn info(&self, name: &str, selector: &Selector, repo: Option<&str>) -> Result<PackageInfo> {
        let _lock = self.lock(false)?;
        let state = self.load_state()?;
        let indexes = self.indexes(&state)?;
        let catalog = Self::catalog(&state, &indexes);
        let (repo_name, entry) = catalog.best(name, selector, selected_repo(repo))?;
        let (repo_name, entry) = (repo_name.to_owned(), entry.clone());
        let id = PackageId::new(entry.name.clone(), entry.version.clone());
        let base = state.repo(&repo_name).map(|r| Location::parse(&r.url));
        let url_of = |rel: &str| {
            base.as_ref()
                .map_or(rel.to_owned(), |b| b.join(rel).to_string())
        };
        let record = state.package(&id);
        Ok(PackageInfo {
            download_url: url_of(&entry.url),
            build_file_url: url_of(&entry.build_file.url),
            installed: record.is_some(),
            resolved_deps: record.map(|r| r.deps.clone()).unwrap_or_default(),
            dependents: state.dependents(&id),
            repo: repo_name,
            entry,
        })
    }

    /// What resolution may pick from: the synced indexes and the installed packages.
    fn catalog<'s>(state: &'s State, indexes: &'s [(String, Index)]) -> Catalog<'s> {
        Catalog {
            repos: indexes
                .iter()
                .map(|(n, i)| (n.as_str(), i.packages.as_slice()))
                .collect(),
            installed: state
                .packages
                .iter()
                .map(|r| (r.id(), (r.repo.as_str(), &r.entry, r.deps.as_slice())))
                .collect(),
        }
    }

    // ---- changes ------------------------------------------------------------------------------

    fn image_mount(&self, sha256: &str) -> PathBuf {
        self.root
            .join(IMAGE_MOUNTS)
            .join(&sha256[..sha256.len().min(12)])
    }

    fn tree_mount(&self, id: &PackageId) -> PathBuf {
        self.root
            .join(TREE_MOUNTS)
            .join(format!("{}@{}", id.name, id.version))
    }

    /// The mounts `state` implies.
    fn plan(&self, state: &State) -> Plan {
        let mut plan = Plan::default();
        let by_id = state.by_id();
        for rec in &state.packages {
            plan.images.insert(
                self.image_mount(&rec.entry.sha256),
                store::image_path(&self.images_dir(), &rec.entry.sha256),
            );
            let lowers = state
                .stack(&rec.id())
                .iter()
                .filter_map(|p| by_id.get(p))
                .map(|r| self.image_mount(&r.entry.sha256))
                .collect();
            plan.trees.insert(self.tree_mount(&rec.id()), lowers);
        }
        plan
    }

    /// Makes the mounts match `state`. Mounts that fail are logged and reported; the command goes
    /// on (a broken image must not block its own uninstall), except where the caller needs them.
    fn repair(&self, state: &State) -> Result<ReconcileReport> {
        let report = mounts::reconcile(self.mounter.as_ref(), &self.root, &self.plan(state))?;
        if !report.is_empty() {
            tracing::info!(
                mounted = report.mounted.len(),
                unmounted = report.unmounted.len(),
                "repaired mounts"
            );
        }
        Ok(report)
    }

    /// Rebuilds every mount from the state file and removes stray ones. Idempotent.
    pub fn reconcile(&self) -> Result<ReconcileReport> {
        let _lock = self.lock(true)?;
        let state = self.load_state()?;
        self.repair(&state)
    }

    /// Installs the best match of `name` for `selector` from any repository; returns its version.
    pub fn install(&self, name: &str, selector: &Selector) -> Result<Version> {
        let outcome = self.install_many(&[(name.to_owned(), selector.clone())], None)?;
        let root = outcome
            .roots
            .into_iter()
            .next()
            .expect("one request, one root");
        Ok(root.id.version)
    }

    /// Resolves `requests` against `state`: the exact roots and the packages to add.
    fn plan_install(
        &self,
        state: &State,
        requests: &[(String, Selector)],
        repo: Option<&str>,
    ) -> Result<(Vec<PackageId>, BTreeMap<PackageId, InstalledRecord>)> {
        if let Some(name) = selected_repo(repo)
            && state.repo(name).is_none()
        {
            return Err(Error::UnknownRepo(name.to_owned()));
        }
        if state.repos.is_empty() {
            return Err(Error::NoRepos);
        }
        let indexes = self.indexes(state)?;
        let unsynced = state.repos.iter().find(|r| {
            selected_repo(repo).is_none_or(|w| w == r.name) && !state.indexes.contains_key(&r.name)
        });
        if let Some(unsynced) = unsynced
            && (selected_repo(repo).is_some() || indexes.is_empty())
        {
            return Err(Error::NotSynced(unsynced.name.clone()));
        }
        let catalog = Self::catalog(state, &indexes);
        // Resolve everything first.
        let mut roots = Vec::new();
        let mut new: BTreeMap<PackageId, InstalledRecord> = BTreeMap::new();
        for (name, selector) in requests {
            let resolution = catalog.resolve(name, selector, selected_repo(repo))?;
            roots.push(resolution.root().id());
            for p in resolution.packages {
                if !p.installed {
                    new.entry(p.id()).or_insert(InstalledRecord {
                        repo: p.repo,
                        entry: p.entry,
                        deps: p.deps,
                    });
                }
            }
        }
        // Only fresh indexes may add packages.
        for rec in new.values() {
            if let Some((_, index)) = indexes.iter().find(|(n, _)| n == &rec.repo) {
                index
                    .check_fresh(None, now())
                    .map_err(|source| Error::Index {
                        repo: rec.repo.clone(),
                        url: format!("{INDEX_FILE} (synced copy)"),
                        source,
                    })?;
            }
        }
        Ok((roots, new))
    }

    /// Downloads and verifies every image of `new` missing from the store.
    fn fetch_all(&self, state: &State, new: &BTreeMap<PackageId, InstalledRecord>) -> Result<()> {
        // Download and verify every missing image.
        for rec in new.values() {
            let config = state
                .repo(&rec.repo)
                .ok_or_else(|| Error::UnknownRepo(rec.repo.clone()))?;
            let key = parse_key(config)?;
            let from = Location::parse(&config.url).join(&rec.entry.url);
            store::ensure_image(
                &self.images_dir(),
                &rec.entry,
                &from,
                &key,
                self.progress.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Installs several packages with their dependencies in one commit; returns the exact roots.
    /// The whole closure is resolved before anything is downloaded.
    pub fn install_many(
        &self,
        requests: &[(String, Selector)],
        repo: Option<&str>,
    ) -> Result<InstallOutcome> {
        // Downloads happen under no lock, so readers (the api listing runtimes) and other
        // installs are not held up for the length of a download; the store is content-addressed
        // and a download only lands once verified, so racing downloads are harmless.
        {
            let _shared = self.lock(false)?;
            let state = self.load_state()?;
            let (_, new) = self.plan_install(&state, requests, repo)?;
            drop(_shared);
            self.fetch_all(&state, &new)?;
        }
        // The change itself: resolve again against the current state (it may have moved), fetch
        // what a concurrent gc may have removed, mount, commit.
        let _lock = self.lock(true)?;
        let state = self.load_state()?;
        self.repair(&state)?;
        let (roots, new) = self.plan_install(&state, requests, repo)?;
        self.fetch_all(&state, &new)?;
        let repo_of = |id: &PackageId| {
            new.get(id)
                .map(|r| r.repo.clone())
                .or_else(|| state.package(id).map(|r| r.repo.clone()))
                .unwrap_or_default()
        };
        let outcome = InstallOutcome {
            roots: roots
                .iter()
                .map(|id| RepoPackage {
                    repo: repo_of(id),
                    id: id.clone(),
                })
                .collect(),
            added: new
                .values()
                .map(|r| RepoPackage {
                    repo: r.repo.clone(),
                    id: r.id(),
                })
                .collect(),
        };
        let mut next = state.clone();
        next.packages.extend(new.into_values());
        next.roots.extend(roots.iter().cloned());
        // Mount first (derived state; a crash here leaves strays that the next command removes),
        // then commit.
        // The new packages' mounts must all work; otherwise nothing is committed.
        let failure = match self.repair(&next) {
            Ok(report) => report
                .failed
                .iter()
                .find(|f| {
                    outcome.added.iter().any(|p| {
                        f.target == self.tree_mount(&p.id)
                            || next
                                .package(&p.id)
                                .is_some_and(|r| f.target == self.image_mount(&r.entry.sha256))
                    })
                })
                .map(mounts::MountFailure::to_error),
            Err(e) => Some(e),
        };
        if let Some(e) = failure {
            let _ = self.repair(&state);
            return Err(e);
        }
        next.save(&self.state_path())?;
        tracing::info!(roots = ?roots.iter().map(ToString::to_string).collect::<Vec<_>>(), "installed");
        Ok(outcome)
    }

    /// Uninstalls the highest installed version of `name` matching `selector`, and the dependencies
    /// nothing else needs. Refused when another package needs it, unless `cascade` (which removes
    /// those too).
    pub fn uninstall(
        &self,
        name: &str,
        selector: &Selector,
        cascade: bool,
    ) -> Result<UninstallOutcome> {
        let _lock = self.lock(true)?;
        let state = self.load_state()?;
        self.repair(&state)?;
        let versions: Vec<&Version> = state
            .packages
            .iter()
            .filter(|p| p.entry.name == name)
            .map(|p| &p.entry.version)
            .collect();
        let Some(version) = selector.best(versions.iter().copied()).cloned() else {
            return Err(Error::NotInstalled {
                name: name.to_owned(),
                selector: selector.to_string(),
            });
        };
        let target = PackageId::new(name, version);
        let mut next = state.clone();
        let dependents = state.dependents(&target);
        let mut doomed = BTreeSet::from([target.clone()]);
        if !dependents.is_empty() {
            if !cascade {
                return Err(Error::HasDependents {
                    package: target.to_string(),
                    dependents: dependents.iter().map(ToString::to_string).collect(),
                });
            }
            // Everything that needs the target, transitively.
            let mut stack = dependents;
            while let Some(id) = stack.pop() {
                if doomed.insert(id.clone()) {
                    stack.extend(state.dependents(&id));
                }
            }
        }
        next.roots.retain(|r| !doomed.contains(r));
        next.packages.retain(|p| !doomed.contains(&p.id()));
        next.drop_unreachable();
        let removed: Vec<RepoPackage> = state
            .packages
            .iter()
            .filter(|p| next.package(&p.id()).is_none())
            .map(|p| RepoPackage {
                repo: p.repo.clone(),
                id: p.id(),
            })
            .collect();
        let package = removed
            .iter()
            .find(|p| p.id == target)
            .cloned()
            .expect("the target is removed");
        next.save(&self.state_path())?;
        // After the commit: detach lazily (jobs using the runtime keep their view) and delete files.
        self.repair(&next)?;
        self.remove_unreferenced_files(&next)?;
        tracing::info!(removed = ?removed.iter().map(|p| p.id.to_string()).collect::<Vec<_>>(), "uninstalled");
        Ok(UninstallOutcome { package, removed })
    }

    /// Removes packages no root needs, their mounts, unreferenced images, partial downloads and
    /// old index copies.
    pub fn gc(&self) -> Result<GcReport> {
        let _lock = self.lock(true)?;
        let mut state = self.load_state()?;
        let packages = state.drop_unreachable();
        if !packages.is_empty() {
            state.save(&self.state_path())?;
        }
        let report = self.repair(&state)?;
        let (files, freed_bytes) = self.remove_unreferenced_files(&state)?;
        Ok(GcReport {
            packages,
            files,
            freed_bytes,
            unmounted: report.unmounted,
        })
    }

    /// Deletes files in `images/` and `indexes/` that `state` does not reference.
    fn remove_unreferenced_files(&self, state: &State) -> Result<(Vec<PathBuf>, u64)> {
        let mut keep: BTreeSet<PathBuf> = state
            .packages
            .iter()
            .map(|p| store::image_path(&self.images_dir(), &p.entry.sha256))
            .collect();
        keep.extend(
            state
                .indexes
                .values()
                .map(|c| self.indexes_dir().join(&c.file)),
        );
        let mut removed = Vec::new();
        let mut freed = 0;
        for dir in [self.images_dir(), self.indexes_dir()] {
            let entries = fs::read_dir(&dir).map_err(Error::io("list", &dir))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if keep.contains(&path) {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(store::PARTIAL_SUFFIX) && !store::is_abandoned_partial(&path) {
                    continue; // another process is downloading it
                }
                let size = entry.metadata().map_or(0, |m| m.len());
                if fs::remove_file(&path).is_ok() {
                    freed += size;
                    removed.push(path);
                }
            }
        }
        // Temporary state files left by a crash.
        if let Ok(entries) = fs::read_dir(&self.root) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("state.tmp.")
                {
                    let _ = fs::remove_file(entry.path());
                    removed.push(entry.path());
                }
            }
        }
        Ok((removed, freed))
    }

    /// Re-hashes every installed image.
    pub fn verify(&self) -> Result<Vec<VerifyProblem>> {
        let _lock = self.lock(false)?;
        let state = self.load_state()?;
        let mut problems = Vec::new();
        let mut checked = BTreeSet::new();
        for rec in &state.packages {
            let path = store::image_path(&self.images_dir(), &rec.entry.sha256);
            if !checked.insert(path.clone()) {
                continue;
            }
            let actual = if path.exists() {
                match store::check_image(&path, &rec.entry.sha256)? {
                    None => continue,
                    Some(actual) => Some(actual),
                }
            } else {
                None
            };
            problems.push(VerifyProblem {
                package: rec.id(),
                path,
                expected: rec.entry.sha256.clone(),
                actual,
            });
        }
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shareable_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<PackageManager>();
    }

    #[test]
    fn repository_names() {
        let dir = tempfile::tempdir().unwrap();
        let pm = PackageManager::open(dir.path()).unwrap();
        assert!(matches!(
            pm.repo_add("all", "/x", "k"),
            Err(Error::RepoName(_))
        ));
        assert!(matches!(
            pm.repo_add("Bad Name", "/x", "k"),
            Err(Error::RepoName(_))
        ));
        assert!(matches!(
            pm.repo_add("ok", "/x", "not a key"),
            Err(Error::Key { .. })
        ));
        assert!(
            pm.available(None).unwrap().is_empty(),
            "no repositories, nothing available"
        );
        assert!(matches!(pm.sync(None), Err(Error::NoRepos)));
        assert!(matches!(pm.sync(Some("nope")), Err(Error::UnknownRepo(_))));
    }
}
