//! An in-memory [`Engine`] for tests of the HTTP layer: no sandbox, no packages on disk.
//!
//! Programs are the first code file's content, one of:
//! * `echo` (default): stdout is `args=<args joined by ,>;stdin=<stdin>;files=<names joined by ,>`;
//! * `print:<text>`: stdout is `<text>`; `stderr:<text>`: stderr is `<text>`, exit code 1;
//! * `compile-error`: the compile stage fails (code 1, stderr `error`);
//! * `timeout`: status `TO`, signal `SIGKILL`; `internal`: the engine fails;
//! * `wait`: blocks until [`FakeEngine::release`] is called.
//!
//! Interactive jobs echo stdin to stdout line by line (`cat`), end with code 0 on stdin EOF or
//! with the signal's name when signalled; `spam` writes 4 KiB chunks to stdout until signalled.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use ppman::Selector;
use semver::Version;

use api::engine::{
    ALL_REPOS, Engine, EngineError, InstallReport, InteractiveJob, JobEvent, JobOutcome,
    JobRequest, OutputStream, PackageDetail, PackageRef, PackageSummary, ProvidedLanguage,
    RepoInfo, Runtime, StageName, StageOutcome, Status, UninstallReport,
};
use api::signals;

/// A package of the fake repositories.
#[derive(Debug, Clone)]
struct FakePackage {
    repo: &'static str,
    name: String,
    version: Version,
    languages: Vec<(String, Vec<String>)>,
    compiled: bool,
    installed: bool,
    limit_overrides: BTreeMap<String, i64>,
}

/// The fake engine. See the module documentation for its programs.
pub struct FakeEngine {
    packages: Mutex<Vec<FakePackage>>,
    jobs: Mutex<Vec<JobRequest>>,
    released: Mutex<bool>,
    release_signal: Condvar,
    purged: Mutex<Vec<String>>,
}

impl Default for FakeEngine {
    fn default() -> Self {
        Self::new()
    }
}

fn pkg(
    repo: &'static str,
    name: &str,
    version: &str,
    languages: &[(&str, &[&str])],
    compiled: bool,
) -> FakePackage {
    FakePackage {
        repo,
        name: name.to_owned(),
        version: version.parse().expect("fake version"),
        languages: languages
            .iter()
            .map(|(l, a)| ((*l).to_owned(), a.iter().map(|s| (*s).to_owned()).collect()))
            .collect(),
        compiled,
        installed: true,
        limit_overrides: BTreeMap::new(),
    }
}

impl FakeEngine {
    /// Repository `main` with python 3.10.0 and 3.12.0, gcc 10.2.0 (c, c++; compiled), bash 5.2.0,
    /// zig 0.10.1 (compile_timeout override 15000), file 0.0.1 installed and ruby 3.0.1 not
    /// installed; repository `extra` with lua 5.4.4, not installed.
    pub fn new() -> Self {
        let mut zig = pkg("main", "zig", "0.10.1", &[("zig", &[])], true);
        zig.limit_overrides
            .insert("compile_timeout".to_owned(), 15000);
        let mut ruby = pkg("main", "ruby", "3.0.1", &[("ruby", &["rb"])], false);
        ruby.installed = false;
        let mut lua = pkg("extra", "lua", "5.4.4", &[("lua", &[])], false);
        lua.installed = false;
        let packages = vec![
            pkg(
                "main",
                "python",
                "3.10.0",
                &[("python", &["py", "py3"])],
                false,
            ),
            pkg(
                "main",
                "python",
                "3.12.0",
                &[("python", &["py", "py3"])],
                false,
            ),
            pkg(
                "main",
                "gcc",
                "10.2.0",
                &[("c", &["gcc"]), ("c++", &["cpp", "g++"])],
                true,
            ),
            pkg("main", "bash", "5.2.0", &[("bash", &["sh"])], false),
            pkg("main", "file", "0.0.1", &[("file", &[])], false),
            zig,
            ruby,
            lua,
        ];
        Self {
            packages: Mutex::new(packages),
            jobs: Mutex::new(Vec::new()),
            released: Mutex::new(false),
            release_signal: Condvar::new(),
            purged: Mutex::new(Vec::new()),
        }
    }

    /// The jobs received so far (batch and interactive).
    pub fn jobs(&self) -> Vec<JobRequest> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Lets every `wait` program (now and later) finish.
    pub fn release(&self) {
        *self.released.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.release_signal.notify_all();
    }

    /// The packages whose cache was purged, as `name-version`.
    pub fn purged(&self) -> Vec<String> {
        self.purged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn program(job: &JobRequest) -> String {
        job.files
            .iter()
            .find(|f| f.code)
            .map(|f| String::from_utf8_lossy(&f.content).into_owned())
            .unwrap_or_default()
    }

    fn find(
        &self,
        repo: &str,
        name: &str,
        selector: &Selector,
    ) -> Result<FakePackage, EngineError> {
        self.check_repo(repo)?;
        let packages = self.packages.lock().unwrap_or_else(|e| e.into_inner());
        packages
            .iter()
            .filter(|p| {
                (repo == ALL_REPOS || p.repo == repo)
                    && p.name == name
                    && selector.matches(&p.version)
            })
            .max_by(|a, b| a.version.cmp_precedence(&b.version))
            .cloned()
            .ok_or_else(|| EngineError::UnknownPackage {
                name: name.to_owned(),
                selector: selector.to_string(),
            })
    }

    fn check_repo(&self, repo: &str) -> Result<(), EngineError> {
        if ["main", "extra", ALL_REPOS].contains(&repo) {
            Ok(())
        } else {
            Err(EngineError::UnknownRepo(repo.to_owned()))
        }
    }
}

fn stage_ok(stdout: String) -> StageOutcome {
    StageOutcome {
        output: stdout.clone(),
        stdout,
        code: Some(0),
        cpu_time_ms: 1.0,
        wall_time_ms: 2.0,
        memory_bytes: 1_000_000,
        ..StageOutcome::default()
    }
}

impl Engine for FakeEngine {
    fn runtimes(&self) -> Vec<Runtime> {
        let packages = self.packages.lock().unwrap_or_else(|e| e.into_inner());
        packages
            .iter()
            .filter(|p| p.installed)
            .flat_map(|p| {
                p.languages.iter().map(|(language, aliases)| Runtime {
                    language: language.clone(),
                    version: p.version.clone(),
                    aliases: aliases.clone(),
                    package: p.name.clone(),
                    compiled: p.compiled,
                    limit_overrides: p.limit_overrides.clone(),
                })
            })
            .collect()
    }

    fn execute(&self, job: JobRequest) -> Result<JobOutcome, EngineError> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(job.clone());
        let program = Self::program(&job);
        let compile = job.compile.map(|_| stage_ok(String::new()));
        let run = match program.as_str() {
            "internal" => return Err(EngineError::message("the fake sandbox failed")),
            "compile-error" if compile.is_some() => {
                let failed = StageOutcome {
                    stderr: "error".to_owned(),
                    output: "error".to_owned(),
                    code: Some(1),
                    status: Some(Status::RE),
                    message: Some("Exited with error status 1".to_owned()),
                    ..StageOutcome::default()
                };
                return Ok(JobOutcome {
                    compile: Some(failed),
                    run: None,
                });
            }
            "timeout" => StageOutcome {
                status: Some(Status::TO),
                signal: Some("SIGKILL".to_owned()),
                message: Some("Time limit exceeded (wall clock)".to_owned()),
                ..StageOutcome::default()
            },
            "wait" => {
                let mut released = self.released.lock().unwrap_or_else(|e| e.into_inner());
                while !*released {
                    released = self
                        .release_signal
                        .wait(released)
                        .unwrap_or_else(|e| e.into_inner());
                }
                stage_ok("released".to_owned())
            }
            p if p.starts_with("print:") => stage_ok(p["print:".len()..].to_owned()),
            p if p.starts_with("stderr:") => StageOutcome {
                stderr: p["stderr:".len()..].to_owned(),
                output: p["stderr:".len()..].to_owned(),
                code: Some(1),
                status: Some(Status::RE),
                ..StageOutcome::default()
            },
            _ => {
                let names: Vec<&str> = job.files.iter().map(|f| f.name.as_str()).collect();
                stage_ok(format!(
                    "args={};stdin={};files={}",
                    job.args.join(","),
                    String::from_utf8_lossy(&job.stdin),
                    names.join(",")
                ))
            }
        };
        Ok(JobOutcome {
            compile,
            run: Some(run),
        })
    }

    fn start(&self, job: JobRequest) -> Result<Box<dyn InteractiveJob>, EngineError> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(job.clone());
        let program = Self::program(&job);
        let (events_tx, events_rx) = mpsc::channel();
        let (control_tx, control_rx) = mpsc::channel();
        std::thread::spawn(move || {
            fake_program(job.compile.is_some(), &program, &events_tx, &control_rx);
        });
        Ok(Box::new(FakeJob {
            events: Mutex::new(events_rx),
            control: Mutex::new(control_tx),
        }))
    }

    fn repositories(&self) -> Result<Vec<RepoInfo>, EngineError> {
        let packages = self.packages.lock().unwrap_or_else(|e| e.into_inner());
        Ok(["main", "extra"]
            .iter()
            .map(|repo| RepoInfo {
                name: (*repo).to_owned(),
                url: format!("https://repo.invalid/{repo}/index.json"),
                index_version: Some(1),
                generated: Some(1_700_000_000),
                packages: packages.iter().filter(|p| p.repo == *repo).count(),
            })
            .collect())
    }

    fn packages(&self, repo: &str, _sync: bool) -> Result<Vec<PackageSummary>, EngineError> {
        self.check_repo(repo)?;
        let packages = self.packages.lock().unwrap_or_else(|e| e.into_inner());
        Ok(packages
            .iter()
            .filter(|p| repo == ALL_REPOS || p.repo == repo)
            .map(|p| PackageSummary {
                repo: p.repo.to_owned(),
                name: p.name.clone(),
                version: p.version.clone(),
                description: format!("{} for tests", p.name),
                languages: p.languages.iter().map(|(l, _)| l.clone()).collect(),
                installed: p.installed,
            })
            .collect())
    }

    fn package(
        &self,
        repo: &str,
        name: &str,
        selector: &Selector,
    ) -> Result<PackageDetail, EngineError> {
        let p = self.find(repo, name, selector)?;
        Ok(PackageDetail {
            repo: p.repo.to_owned(),
            name: p.name.clone(),
            version: p.version.clone(),
            author: "Piston tests".to_owned(),
            description: format!("{} for tests", p.name),
            size: 4096,
            checksums: BTreeMap::from([("sha256".to_owned(), "00".repeat(32))]),
            dependencies: BTreeMap::from([("base".to_owned(), "1.x".to_owned())]),
            provides: p
                .languages
                .iter()
                .map(|(language, aliases)| ProvidedLanguage {
                    language: language.clone(),
                    aliases: aliases.clone(),
                    limit_overrides: BTreeMap::new(),
                })
                .collect(),
            limit_overrides: p.limit_overrides.clone(),
            compiled: p.compiled,
            cache: if p.compiled { "compiled" } else { "none" }.to_owned(),
            build_file_url: format!(
                "https://repo.invalid/{}/build/{}/{}/",
                p.repo, p.name, p.version
            ),
            build_file_sha256: "11".repeat(32),
            download_url: format!(
                "https://repo.invalid/{}/{}-{}.sqfs",
                p.repo, p.name, p.version
            ),
            installed: p.installed,
        })
    }

    fn install(
        &self,
        repo: &str,
        name: &str,
        selector: &Selector,
    ) -> Result<InstallReport, EngineError> {
        let found = self.find(repo, name, selector)?;
        if found.installed {
            return Err(EngineError::AlreadyInstalled {
                name: found.name,
                version: found.version,
            });
        }
        let mut packages = self.packages.lock().unwrap_or_else(|e| e.into_inner());
        for p in packages.iter_mut() {
            if p.name == found.name && p.version == found.version {
                p.installed = true;
            }
        }
        let package = PackageRef {
            repo: found.repo.to_owned(),
            name: found.name,
            version: found.version,
        };
        Ok(InstallReport {
            installed: vec![package.clone()],
            package,
        })
    }

    fn uninstall(
        &self,
        name: &str,
        selector: &Selector,
        _cascade: bool,
    ) -> Result<UninstallReport, EngineError> {
        let mut packages = self.packages.lock().unwrap_or_else(|e| e.into_inner());
        let found = packages
            .iter_mut()
            .filter(|p| p.installed && p.name == name && selector.matches(&p.version))
            .max_by(|a, b| a.version.cmp_precedence(&b.version));
        let Some(found) = found else {
            let known = packages
                .iter()
                .any(|p| p.name == name && selector.matches(&p.version));
            return Err(if known {
                EngineError::NotInstalled {
                    name: name.to_owned(),
                    selector: selector.to_string(),
                }
            } else {
                EngineError::UnknownPackage {
                    name: name.to_owned(),
                    selector: selector.to_string(),
                }
            });
        };
        found.installed = false;
        let package = PackageRef {
            repo: found.repo.to_owned(),
            name: found.name.clone(),
            version: found.version.clone(),
        };
        Ok(UninstallReport {
            removed: vec![package.clone()],
            package,
        })
    }

    fn purge_cache(&self, name: &str, selector: &Selector) -> Result<u64, EngineError> {
        let found = self.find(ALL_REPOS, name, selector)?;
        self.purged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{}-{}", found.name, found.version));
        Ok(3)
    }
}

enum Control {
    Stdin(Vec<u8>),
    Eof,
    Signal(i32),
}

struct FakeJob {
    events: Mutex<Receiver<JobEvent>>,
    control: Mutex<Sender<Control>>,
}

impl FakeJob {
    fn send(&self, control: Control) -> Result<(), EngineError> {
        self.control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(control)
            .map_err(|_| EngineError::Finished)
    }
}

impl InteractiveJob for FakeJob {
    fn write_stdin(&self, data: &[u8]) -> Result<(), EngineError> {
        self.send(Control::Stdin(data.to_vec()))
    }

    fn close_stdin(&self) -> Result<(), EngineError> {
        self.send(Control::Eof)
    }

    fn signal(&self, signal: i32) -> Result<(), EngineError> {
        self.send(Control::Signal(signal))
    }

    fn next_event(&self, timeout: Duration) -> Result<Option<JobEvent>, EngineError> {
        match self
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .recv_timeout(timeout)
        {
            Ok(event) => Ok(Some(event)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Ok(Some(JobEvent::Done)),
        }
    }
}

fn fake_program(
    compiled: bool,
    program: &str,
    events: &Sender<JobEvent>,
    control: &Receiver<Control>,
) {
    let send = |e: JobEvent| events.send(e).is_ok();
    if compiled {
        send(JobEvent::Stage(StageName::Compile));
        if program == "compile-error" {
            send(JobEvent::Output {
                stream: OutputStream::Stderr,
                data: b"error".to_vec(),
            });
            let outcome = StageOutcome {
                code: Some(1),
                ..StageOutcome::default()
            };
            send(JobEvent::Exit {
                stage: StageName::Compile,
                outcome,
            });
            send(JobEvent::Done);
            return;
        }
        send(JobEvent::Exit {
            stage: StageName::Compile,
            outcome: stage_ok(String::new()),
        });
    }
    send(JobEvent::Stage(StageName::Run));
    let exit = |outcome: StageOutcome| {
        send(JobEvent::Exit {
            stage: StageName::Run,
            outcome,
        });
        send(JobEvent::Done);
    };
    let spam = program == "spam";
    loop {
        let next = if spam {
            if !send(JobEvent::Output {
                stream: OutputStream::Stdout,
                data: vec![b'x'; 4096],
            }) {
                return;
            }
            match control.recv_timeout(Duration::from_millis(5)) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        } else {
            match control.recv() {
                Ok(c) => Some(c),
                Err(_) => return,
            }
        };
        match next {
            None => {}
            Some(Control::Stdin(data)) => {
                let sent = send(JobEvent::Output {
                    stream: OutputStream::Stdout,
                    data,
                });
                if !sent {
                    return;
                }
            }
            Some(Control::Eof) => {
                exit(StageOutcome {
                    code: Some(0),
                    ..StageOutcome::default()
                });
                return;
            }
            Some(Control::Signal(n)) => {
                exit(StageOutcome {
                    signal: signals::name(n),
                    status: Some(Status::SG),
                    ..StageOutcome::default()
                });
                return;
            }
        }
    }
}
