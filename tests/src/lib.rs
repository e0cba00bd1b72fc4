//! Support for the end-to-end tests in `tests/tests/`: the repository built by
//! `scripts/test.sh` (behind the privileged-test rule) and a ppman installation of it served
//! over HTTP on loopback. The rule, the static file server and the leak checks are
//! `test_support`'s.

use std::path::{Path, PathBuf};

pub use test_support::{StaticServer, host_processes_with, loop_devices_backed_by, mounts_under};

/// Whether a privileged end-to-end test can run: root, and the repository that `scripts/test.sh`
/// builds (`PISTON_TEST_REPO`). When it cannot, prints why and returns `None` — or panics when
/// `PISTON_TEST_REQUIRE_PRIVILEGED=1`.
pub fn test_repo() -> Option<PathBuf> {
    let mut missing = test_support::privileged::unmet(&[test_support::Need::Root]);
    let repo = std::env::var_os("PISTON_TEST_REPO").map(PathBuf::from);
    match &repo {
        Some(r) if r.join("index.json").is_file() => {}
        Some(r) => missing.push(format!("a built repository at {}", r.display())),
        None => missing.push("PISTON_TEST_REPO (scripts/test.sh builds it)".to_owned()),
    }
    if test_support::gate(&test_support::current_test(), &missing) {
        repo
    } else {
        None
    }
}

/// The packages `scripts/test.sh` built into the test repository.
pub fn test_packages() -> Vec<String> {
    std::env::var("PISTON_TEST_PACKAGES")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// A ppman data directory in a temp dir with packages of the test repository installed from a
/// [`StaticServer`] on loopback (the repository registered as `test`). Dropping it uninstalls
/// everything and collects garbage, so no mount or loop device outlives a test.
pub struct Installation {
    pub pm: ppman::PackageManager,
    pub data: tempfile::TempDir,
    pub server: StaticServer,
}

impl Installation {
    /// Installs `packages` (names, each its highest version) with their dependencies; `None`
    /// when privileged tests cannot run here (see [`test_repo`]).
    pub fn new(packages: &[&str]) -> Option<Self> {
        let repo = test_repo()?;
        let data = tempfile::Builder::new()
            .prefix("piston-e2e-")
            .tempdir()
            .expect("temp data dir");
        let server = StaticServer::start(&repo).expect("static server");
        let pm = ppman::PackageManager::open(data.path()).expect("open data dir");
        let key = std::fs::read_to_string(repo.join("piston.pub")).expect("repository public key");
        pm.repo_add("test", &server.url, &key).expect("repo add");
        pm.sync(None).expect("sync");
        let requests: Vec<(String, ppman::Selector)> = packages
            .iter()
            .map(|p| ((*p).to_owned(), ppman::Selector::any()))
            .collect();
        if !requests.is_empty() {
            pm.install_many(&requests, None).expect("install");
        }
        Some(Self { pm, data, server })
    }

    /// The installed runtime called `name`.
    pub fn package(&self, name: &str) -> ppman::InstalledPackage {
        self.pm
            .installed()
            .expect("installed packages")
            .into_iter()
            .find(|p| p.entry.name == name)
            .unwrap_or_else(|| panic!("{name} is not installed"))
    }
}

impl Drop for Installation {
    fn drop(&mut self) {
        if let Ok(installed) = self.pm.installed() {
            for p in installed.iter().filter(|p| p.root) {
                if let Ok(sel) = ppman::Selector::parse(&p.entry.version.to_string()) {
                    let _ = self.pm.uninstall(&p.entry.name, &sel, true);
                }
            }
        }
        let _ = self.pm.gc();
    }
}

/// A built repository's index, read directly (the tests compare what ppman and the server say
/// with it). Parsed as trusted: the tests that check signatures do so through ppman.
pub fn read_index(repo: &Path) -> ppman::schema::Index {
    let raw = std::fs::read(repo.join("index.json")).expect("index.json");
    ppman::schema::Index::parse_trusted(&raw).expect("index.json parses")
}

/// The highest version of `name` in `index`.
pub fn index_entry<'i>(
    index: &'i ppman::schema::Index,
    name: &str,
) -> &'i ppman::schema::IndexEntry {
    index
        .packages
        .iter()
        .filter(|p| p.name == name)
        .max_by(|a, b| a.version.cmp_precedence(&b.version))
        .unwrap_or_else(|| panic!("{name} is not in the test repository"))
}
