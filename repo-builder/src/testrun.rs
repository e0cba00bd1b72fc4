//! `repo-builder test`: installs a built package into a scratch data directory with ppman (from
//! this builder's own signed output, as any host would install it) and runs each of its `test.*`
//! files as a job through the job layer (as the server does); a test passes when it prints `OK`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jobs::{JobFile, JobInput, Jobs, JobsConfig, Runtimes};
use ppman::{PackageManager, Selector};
use runner::{Limits, Runner, RunnerConfig};

use crate::Error;
use crate::build::Built;
use crate::layout::Layout;
use crate::sign::PUBLIC_KEY_FILE;

/// Sandbox user ids of test jobs: apart from a server's default range (1990000001–1990000500), so tests can
/// run on a host that serves jobs.
const TEST_UID_MIN: u32 = 61001;
const TEST_UID_MAX: u32 = 61100;
/// Groups this builder's job cgroups (leftovers under it are swept when a test run starts).
const TEST_CGROUP: &str = "repo-builder-test";

/// The result of one test file.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    pub file: String,
    pub language: String,
    pub passed: bool,
    /// What the job printed (stdout, then stderr and the status when it failed).
    pub output: String,
}

/// Runs every `test.*` file in `build_dir` against `pkg`, installed from `layout`'s index.
pub fn run_tests(
    layout: &Layout,
    pkg: &Built,
    build_dir: &Path,
) -> Result<Vec<TestOutcome>, Error> {
    let tests = test_files(build_dir)?;
    let scratch = tempfile::Builder::new()
        .prefix("repo-builder-test-")
        .tempdir()
        .map_err(|source| Error::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    let id = format!("{}-{}", pkg.meta.name, pkg.meta.version);
    let install = ScratchInstall::new(layout, scratch.path(), &pkg.meta.name, &pkg.meta.version)
        .map_err(|source| Error::TestInstall {
            id: id.clone(),
            source,
        })?;
    let result = run_all(&install, pkg, &tests, scratch.path());
    install.remove();
    result
}

fn run_all(
    install: &ScratchInstall,
    pkg: &Built,
    tests: &[PathBuf],
    scratch: &Path,
) -> Result<Vec<TestOutcome>, Error> {
    let mut config = RunnerConfig {
        work_dir: scratch.join("jobs"),
        uid_min: TEST_UID_MIN,
        uid_max: TEST_UID_MAX,
        gid_min: TEST_UID_MIN,
        warm_helpers: 0,
        ..RunnerConfig::default()
    };
    config.cgroup.name = TEST_CGROUP.to_owned();
    let jobs = Jobs::new(
        Runner::new(config).map_err(Error::TestRunner)?,
        JobsConfig::default(),
    );
    let installed = Runtimes::new(Arc::clone(&install.pm)).map_err(Error::TestJob)?;
    let runtimes: Vec<_> = installed
        .list()
        .into_iter()
        .filter(|rt| rt.package == pkg.meta.name && rt.version == pkg.meta.version)
        .collect();
    let mut outcomes = Vec::new();
    for test in tests {
        let file = test
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let ext = file.trim_start_matches("test.");
        let runtime = runtimes
            .iter()
            .find(|rt| rt.answers_to(ext))
            .ok_or_else(|| Error::TestLanguage {
                file: file.clone(),
                package: pkg.meta.name.clone(),
            })?;
        let language = runtime.language.clone();
        let (compile_limits, run_limits) = test_limits(&runtime.limit_overrides);
        let content = std::fs::read(test).map_err(|source| Error::Io {
            path: test.clone(),
            source,
        })?;
        let input = JobInput {
            files: vec![JobFile {
                name: file.clone(),
                content,
                code: true,
            }],
            args: Vec::new(),
            stdin: Vec::new(),
            compile: Some(compile_limits),
            run: run_limits,
        };
        let job = installed.job(runtime, input).map_err(Error::TestJob)?;
        let result = jobs.run(&job).map_err(Error::TestJob)?;
        let run = &result.run;
        let passed = run.code == Some(0) && run.stdout.trim() == "OK";
        let mut output = run.stdout.clone();
        if !passed {
            output.push_str(&run.stderr);
            output.push_str(&format!(
                "[status {:?}, code {:?}, signal {:?}{}]\n",
                run.status,
                run.code,
                run.signal,
                run.message
                    .as_deref()
                    .map(|m| format!(", {m}"))
                    .unwrap_or_default()
            ));
        }
        outcomes.push(TestOutcome {
            passed,
            file,
            language,
            output,
        });
    }
    Ok(outcomes)
}

/// A test runs under the limits a server gives the package by default: Piston's defaults with the
/// package's own overrides (so a runtime that needs more processes, a bigger file or more output
/// must say so in its `package.toml`), except that time limits are at least two minutes: a test
/// shows the runtime works in the sandbox, not how fast a loaded build host runs it.
fn test_limits(overrides: &BTreeMap<String, i64>) -> (Limits, Limits) {
    const MIN_TIME_MS: u64 = 120_000;
    let get = |key: &str| overrides.get(key).copied().filter(|v| *v != 0);
    let stage = |base: Limits, stage: &str| {
        let ms = |key: &str, default: u64| {
            get(&format!("{stage}_{key}"))
                .map_or(default, |v| v.max(0) as u64)
                .max(MIN_TIME_MS)
        };
        Limits {
            wall_timeout_ms: ms("timeout", base.wall_timeout_ms),
            cpu_time_ms: ms("cpu_time", base.cpu_time_ms),
            memory_bytes: match get(&format!("{stage}_memory_limit")) {
                Some(v) if v > 0 => Some(v as u64),
                Some(_) => None,
                None => base.memory_bytes,
            },
            max_processes: get("max_process_count").map_or(base.max_processes, |v| v.max(1) as u64),
            max_open_files: get("max_open_files").map_or(base.max_open_files, |v| v.max(1) as u64),
            max_file_size: get("max_file_size").map_or(base.max_file_size, |v| v.max(0) as u64),
            output_max_size: get("output_max_size")
                .map_or(base.output_max_size, |v| v.max(0) as u64),
        }
    };
    (
        stage(jobs::compile_limits(), "compile"),
        stage(Limits::piston_run(), "run"),
    )
}

/// The `test.*` files of a build directory, sorted.
fn test_files(build_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut tests: Vec<PathBuf> = std::fs::read_dir(build_dir)
        .map_err(|source| Error::Io {
            path: build_dir.to_owned(),
            source,
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("test."))
        })
        .collect();
    tests.sort();
    Ok(tests)
}

/// A package installed by ppman into a scratch data directory from the builder's output folder.
struct ScratchInstall {
    pm: Arc<PackageManager>,
    name: String,
    version: semver::Version,
}

impl ScratchInstall {
    fn new(
        layout: &Layout,
        scratch: &Path,
        name: &str,
        version: &semver::Version,
    ) -> Result<Self, ppman::Error> {
        let pm = PackageManager::open(scratch.join("data"))?;
        let key_path = layout.out.join(PUBLIC_KEY_FILE);
        let key =
            std::fs::read_to_string(&key_path).map_err(ppman::Error::io("read", &key_path))?;
        pm.repo_add("build", &layout.out.to_string_lossy(), &key)?;
        pm.sync(None)?;
        let selector = Selector::parse(&version.to_string())?;
        pm.install(name, &selector)?;
        Ok(Self {
            pm: Arc::new(pm),
            name: name.to_owned(),
            version: version.clone(),
        })
    }

    /// Uninstalls everything (unmounting the images) before the scratch directory goes.
    fn remove(self) {
        let selector =
            Selector::parse(&self.version.to_string()).unwrap_or_else(|_| Selector::any());
        if let Err(e) = self.pm.uninstall(&self.name, &selector, true) {
            tracing::warn!(error = %e, "scratch uninstall failed");
        }
        if let Err(e) = self.pm.gc() {
            tracing::warn!(error = %e, "scratch gc failed");
        }
    }
}
