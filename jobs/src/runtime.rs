//! Runtimes: the languages of ppman's installed packages, and the choice of one for a language
//! name and a version selector.
//!
//! The list is read from ppman's state when [`Runtimes`] is made and again whenever the state
//! file changed (a `ppman install` next to a running server replaces it): one `stat` per look-up
//! otherwise.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use ppman::{InstalledPackage, PackageManager, Selector};
use runner::Limits;
use semver::Version;

use crate::error::JobError;
use crate::job::{JobFile, JobSpec};

/// One language that can run: a language (or one of the languages a package provides) of an
/// installed package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// Canonical language name (what `/execute` answers with).
    pub language: String,
    /// The package's version.
    pub version: Version,
    /// Other names clients may use for the language.
    pub aliases: Vec<String>,
    /// Name of the package that provides the language.
    pub package: String,
    /// Whether the package has a compile stage.
    pub compiled: bool,
    /// The package's limit overrides (package-wide values, overlaid with the language's own), by
    /// Piston's key names (`run_timeout`, `max_process_count`, …).
    pub limit_overrides: BTreeMap<String, i64>,
}

impl Runtime {
    /// Piston's `runtime` field: the package name when it differs from the language (e.g. `gcc`
    /// for `c`), left out otherwise.
    pub fn runtime_field(&self) -> Option<&str> {
        (self.package != self.language).then_some(self.package.as_str())
    }

    /// Whether `name` is the language or one of its aliases.
    pub fn answers_to(&self, name: &str) -> bool {
        self.language == name || self.aliases.iter().any(|a| a == name)
    }
}

/// Picks the runtime for `language` (name or alias) and an npm-style `version` selector: the
/// highest matching version. An unparsable selector matches nothing, as with npm's `satisfies`.
pub fn find_runtime<'a>(
    runtimes: &'a [Runtime],
    language: &str,
    version: &str,
) -> Option<&'a Runtime> {
    let selector = Selector::parse(version).ok()?;
    runtimes
        .iter()
        .filter(|rt| rt.answers_to(language) && selector.matches(&rt.version))
        .max_by(|a, b| a.version.cmp_precedence(&b.version))
}

/// The runtimes of one installed package: one per language it provides.
pub fn runtimes_of(package: &InstalledPackage) -> Vec<Runtime> {
    let entry = &package.entry;
    entry
        .provides
        .iter()
        .map(|provide| {
            let mut limits: BTreeMap<String, i64> = entry.limit_overrides.clone();
            limits.extend(provide.limit_overrides.clone());
            Runtime {
                language: provide.language.clone(),
                version: entry.version.clone(),
                aliases: provide.aliases.clone(),
                package: entry.name.clone(),
                compiled: entry.compiled,
                limit_overrides: limits,
            }
        })
        .collect()
}

/// What a job on a runtime brings besides the runtime: the files, arguments, stdin and the
/// limits of each stage.
#[derive(Debug, Clone)]
pub struct JobInput {
    pub files: Vec<JobFile>,
    pub args: Vec<String>,
    pub stdin: Vec<u8>,
    /// Used iff the runtime is compiled; `None` means [`crate::compile_limits`].
    pub compile: Option<Limits>,
    pub run: Limits,
}

/// The installed runtimes of a [`PackageManager`], kept current with its state file.
#[derive(Debug)]
pub struct Runtimes {
    pm: Arc<PackageManager>,
    installed: RwLock<Vec<(Runtime, Arc<InstalledPackage>)>>,
    /// Identity of the ppman state file the list was read from.
    seen: Mutex<Option<StateStamp>>,
}

/// What tells one version of the state file from another: it is replaced by rename, so its inode
/// changes with every commit (mtime and size guard against inode reuse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StateStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl StateStamp {
    fn of(path: &std::path::Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(Self {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }
}

impl Runtimes {
    /// Reads the installed runtimes of `pm`.
    pub fn new(pm: Arc<PackageManager>) -> Result<Runtimes, JobError> {
        let runtimes = Runtimes {
            pm,
            installed: RwLock::new(Vec::new()),
            seen: Mutex::new(None),
        };
        runtimes.refresh()?;
        Ok(runtimes)
    }

    /// The package manager the runtimes come from.
    pub fn package_manager(&self) -> &PackageManager {
        &self.pm
    }

    /// Reads the installed packages again (after an install or uninstall).
    pub fn refresh(&self) -> Result<(), JobError> {
        let stamp = StateStamp::of(&self.pm.state_path());
        let installed = self.pm.installed().map_err(JobError::Installed)?;
        let runtimes = installed
            .into_iter()
            .map(Arc::new)
            .flat_map(|p| {
                runtimes_of(&p)
                    .into_iter()
                    .map(move |rt| (rt, Arc::clone(&p)))
            })
            .collect();
        *self.installed.write().unwrap_or_else(|e| e.into_inner()) = runtimes;
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = stamp;
        Ok(())
    }

    /// Reads the list again when the state file changed since it was read.
    fn refresh_if_changed(&self) {
        let now = StateStamp::of(&self.pm.state_path());
        if *self.seen.lock().unwrap_or_else(|e| e.into_inner()) == now {
            return;
        }
        if let Err(e) = self.refresh() {
            tracing::warn!(error = %e, "cannot re-read the installed packages");
        }
    }

    /// Every runtime of every installed package.
    pub fn list(&self) -> Vec<Runtime> {
        self.refresh_if_changed();
        let installed = self.installed.read().unwrap_or_else(|e| e.into_inner());
        installed.iter().map(|(rt, _)| rt.clone()).collect()
    }

    /// The runtime for `language` (name or alias) and the `version` selector: see
    /// [`find_runtime`].
    pub fn resolve(&self, language: &str, version: &str) -> Result<Runtime, JobError> {
        find_runtime(&self.list(), language, version)
            .cloned()
            .ok_or_else(|| JobError::UnknownRuntime {
                language: language.to_owned(),
                version: version.to_owned(),
            })
    }

    /// The job of `input` on `runtime`: its package's layers and directory, the code files
    /// first (the run script receives the first code file).
    pub fn job(&self, runtime: &Runtime, input: JobInput) -> Result<JobSpec, JobError> {
        self.refresh_if_changed();
        let installed = self.installed.read().unwrap_or_else(|e| e.into_inner());
        let package = installed
            .iter()
            .find(|(rt, _)| rt.package == runtime.package && rt.version == runtime.version)
            .map(|(_, p)| Arc::clone(p))
            .ok_or_else(|| JobError::NoLongerInstalled {
                package: runtime.package.clone(),
                version: runtime.version.clone(),
            })?;
        let mut files = input.files;
        files.sort_by_key(|f| !f.code);
        Ok(JobSpec {
            layers: package.layers.clone(),
            package_dir: PathBuf::from(&package.package_dir),
            language: runtime.language.clone(),
            files,
            args: input.args,
            stdin: input.stdin,
            compile: runtime
                .compiled
                .then(|| input.compile.unwrap_or_else(crate::compile_limits)),
            run: input.run,
        })
    }
}

#[cfg(test)]
mod tests {
    use ppman::schema::{BuildFileRef, CachePolicy, IndexEntry, Provide};

    use super::*;

    fn gcc() -> InstalledPackage {
        let provide = |language: &str, aliases: &[&str], overrides: &[(&str, i64)]| Provide {
            language: language.to_owned(),
            aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            limit_overrides: overrides
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
        };
        InstalledPackage {
            entry: IndexEntry {
                name: "gcc".to_owned(),
                version: "10.2.0".parse().unwrap(),
                author: String::new(),
                description: String::new(),
                provides: vec![
                    provide("c", &["gcc"], &[]),
                    provide("c++", &["cpp", "g++"], &[("max_process_count", 128)]),
                ],
                dependencies: BTreeMap::new(),
                limit_overrides: BTreeMap::from([
                    ("compile_timeout".to_owned(), 15000),
                    ("max_process_count".to_owned(), 32),
                ]),
                compiled: true,
                cache: CachePolicy::Compiled,
                size: 1,
                sha256: String::new(),
                url: String::new(),
                signature: String::new(),
                build_file: BuildFileRef {
                    sha256: String::new(),
                    url: String::new(),
                },
            },
            repo: "local".to_owned(),
            tree: PathBuf::from("/tmp/tree"),
            layers: vec![PathBuf::from("/a"), PathBuf::from("/b")],
            package_dir: "/piston/packages/gcc/10.2.0".to_owned(),
            root: true,
        }
    }

    #[test]
    fn one_runtime_per_provided_language() {
        let runtimes = runtimes_of(&gcc());
        let (c, cpp) = (&runtimes[0], &runtimes[1]);
        assert_eq!((c.language.as_str(), c.runtime_field()), ("c", Some("gcc")));
        assert_eq!(cpp.aliases, ["cpp", "g++"]);
        assert!(cpp.compiled);
        assert_eq!(
            c.limit_overrides["max_process_count"], 32,
            "package-wide value"
        );
        assert_eq!(
            cpp.limit_overrides["max_process_count"], 128,
            "the language's own wins"
        );
        assert_eq!(cpp.limit_overrides["compile_timeout"], 15000);
    }

    #[test]
    fn the_highest_matching_version_answers_to_names_and_aliases() {
        let rt = |version: &str| Runtime {
            version: version.parse().unwrap(),
            ..runtimes_of(&gcc())[1].clone()
        };
        let all = [rt("9.3.0"), rt("10.2.0")];
        let pick = |language, version| find_runtime(&all, language, version).map(|r| &r.version);
        assert_eq!(pick("c++", "*").unwrap().to_string(), "10.2.0");
        assert_eq!(pick("g++", "9.x").unwrap().to_string(), "9.3.0");
        assert_eq!(pick("cpp", "10").unwrap().to_string(), "10.2.0");
        assert_eq!(pick("c", "*"), None, "another language");
        assert_eq!(pick("c++", "not a range"), None);
    }
}
