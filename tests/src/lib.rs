//! Support for the end-to-end tests in `tests/tests/`: the privileged-test rule, the repository
//! built by `scripts/test.sh`, and a static file server on loopback.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// Whether a privileged end-to-end test can run: root, and the repository that `scripts/test.sh`
/// builds (`PISTON_TEST_REPO`). When it cannot, prints why and returns `None` — or panics when
/// `PISTON_TEST_REQUIRE_PRIVILEGED=1`.
pub fn test_repo() -> Option<PathBuf> {
    let mut missing = Vec::new();
    if !rustix::process::geteuid().is_root() {
        missing.push("root".to_owned());
    }
    let repo = std::env::var_os("PISTON_TEST_REPO").map(PathBuf::from);
    match &repo {
        Some(r) if r.join("index.json").is_file() => {}
        Some(r) => missing.push(format!("a built repository at {}", r.display())),
        None => missing.push("PISTON_TEST_REPO (scripts/test.sh builds it)".to_owned()),
    }
    if missing.is_empty() {
        return repo;
    }
    let why = format!("needs {}", missing.join(" and "));
    if std::env::var("PISTON_TEST_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!("privileged end-to-end test cannot run: {why}");
    }
    eprintln!("skipped: {why} (set PISTON_TEST_REQUIRE_PRIVILEGED=1 to make this a failure)");
    None
}

/// The packages `scripts/test.sh` built into the test repository.
pub fn test_packages() -> Vec<String> {
    std::env::var("PISTON_TEST_PACKAGES")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// A static file server on 127.0.0.1 serving a directory, like any web server would publish a
/// repository. Stops when dropped.
#[derive(Debug)]
pub struct StaticServer {
    pub url: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StaticServer {
    pub fn start(root: &Path) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (root, flag) = (root.to_owned(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let root = root.clone();
                        std::thread::spawn(move || {
                            let _ = serve(stream, &root);
                        });
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        Ok(Self {
            url,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, root: &Path) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let rel = Path::new(path.trim_start_matches('/'));
    let safe = rel.components().all(|c| matches!(c, Component::Normal(_)));
    let mut out = stream;
    match std::fs::read(root.join(rel)) {
        Ok(body) if safe => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            out.write_all(&body)
        }
        _ => out
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    }
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

/// Lines of `/proc/self/mountinfo` (the test's mount namespace) that mention `path`.
pub fn mounts_under(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_owned)
        .collect()
}

/// Loop devices whose backing file lies under `path`.
pub fn loops_under(path: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return found;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        if let Ok(backing) = std::fs::read_to_string(e.path().join("loop/backing_file"))
            && Path::new(backing.trim()).starts_with(path)
        {
            found.push(format!("/dev/{name} -> {}", backing.trim()));
        }
    }
    found
}

pub use test_support::host_processes_with;

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
