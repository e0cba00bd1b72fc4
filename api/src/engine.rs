//! The seam between the HTTP layer and the machinery that runs jobs and manages packages.
//!
//! The server only talks to an [`Engine`]: the real one composes `ppman` (packages, mounts) and
//! the job layer (runtimes, jobs on the sandbox); the HTTP tests use an in-memory one
//! (`api/tests/common/fake.rs`). Every method is synchronous and
//! may block (downloads, mounts, running a program), so the server calls them on blocking threads.
//!
//! Validation, limit resolution and the wire format stay in the HTTP layer; the engine receives a
//! [`JobRequest`] that is already checked, decoded and has its limits resolved.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use semver::Version;
use serde::Serialize;

use ppman::Selector;

/// One language that can run (the job layer's runtime).
pub use jobs::Runtime;

/// Limits of one stage, already resolved (request value, else overrides, else global config):
/// the runner's own type, which the engine hands on unchanged.
pub type StageLimits = runner::Limits;

/// One submitted file, decoded; its name already normalised (no `..`, no leading `/`). Code
/// files (UTF-8 encoded, or any file for the `file` language) are passed to the compile script,
/// and the first one to the run script.
pub use jobs::JobFile;

/// A job, validated and ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    /// The runtime chosen for the request (highest version matching the selector).
    pub runtime: Runtime,
    pub files: Vec<JobFile>,
    pub args: Vec<String>,
    /// Bytes written to the program's stdin (batch jobs only; interactive jobs use
    /// [`InteractiveJob::write_stdin`]).
    pub stdin: Vec<u8>,
    /// Present iff the runtime is compiled.
    pub compile: Option<StageLimits>,
    pub run: StageLimits,
}

/// Piston's two-letter stage status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    /// Runtime error (non-zero exit).
    RE,
    /// Died on a signal.
    SG,
    /// Timed out (wall or CPU).
    TO,
    /// Stdout length exceeded.
    OL,
    /// Stderr length exceeded.
    EL,
    /// Internal error.
    XX,
}

impl Status {
    /// The two letters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RE => "RE",
            Self::SG => "SG",
            Self::TO => "TO",
            Self::OL => "OL",
            Self::EL => "EL",
            Self::XX => "XX",
        }
    }
}

/// Result of one stage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageOutcome {
    pub stdout: String,
    pub stderr: String,
    /// stdout and stderr interleaved in arrival order.
    pub output: String,
    pub code: Option<i32>,
    /// Signal name, e.g. `SIGKILL`.
    pub signal: Option<String>,
    pub message: Option<String>,
    pub status: Option<Status>,
    pub cpu_time_ms: f64,
    pub wall_time_ms: f64,
    pub memory_bytes: u64,
}

impl StageOutcome {
    /// Whether the stage succeeded as Piston judges a compile: exit code 0.
    pub fn succeeded(&self) -> bool {
        self.code == Some(0)
    }
}

/// Result of a whole job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobOutcome {
    /// Present iff the runtime is compiled.
    pub compile: Option<StageOutcome>,
    /// `None` when the run stage was skipped (failed compile); the server then reports the
    /// compile result as the run result, as Piston does.
    pub run: Option<StageOutcome>,
}

/// A stage of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageName {
    Compile,
    Run,
}

impl StageName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compile => "compile",
            Self::Run => "run",
        }
    }
}

/// An output stream of a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// What an interactive job reports, in order: for each stage `Stage`, any `Output`, `Exit`; then
/// `Done` once everything is cleaned up.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    Stage(StageName),
    Output {
        stream: OutputStream,
        data: Vec<u8>,
    },
    Exit {
        stage: StageName,
        outcome: StageOutcome,
    },
    Done,
}

/// A running interactive job. Methods take `&self` so that one thread can wait for events while
/// others write stdin or send signals. Dropping the job kills whatever still runs and cleans up.
pub trait InteractiveJob: Send + Sync {
    /// Writes to the current stage's stdin.
    fn write_stdin(&self, data: &[u8]) -> Result<(), EngineError>;
    /// Closes the current stage's stdin (the program reads end of file).
    fn close_stdin(&self) -> Result<(), EngineError>;
    /// Delivers signal number `signal` to the current stage's program.
    fn signal(&self, signal: i32) -> Result<(), EngineError>;
    /// Waits up to `timeout` for the next event; `Ok(None)` when nothing happened in time.
    /// After `Done` it keeps returning `Ok(Some(JobEvent::Done))`.
    fn next_event(&self, timeout: Duration) -> Result<Option<JobEvent>, EngineError>;
    /// Waits up to `timeout` until fewer than `bytes` written to stdin are still waiting for
    /// the program to read them; whether they are. A writer that waits for this before each
    /// write cannot make the server hold more than `bytes` for a program that does not read.
    fn wait_stdin_below(&self, bytes: u64, timeout: Duration) -> bool {
        let _ = (bytes, timeout);
        true
    }
}

/// A package of a repository, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackageSummary {
    pub repo: String,
    pub name: String,
    pub version: Version,
    pub description: String,
    /// Languages the package provides.
    pub languages: Vec<String>,
    pub installed: bool,
}

/// Everything known about one package of a repository.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackageDetail {
    pub repo: String,
    pub name: String,
    pub version: Version,
    pub author: String,
    pub description: String,
    /// Image size in bytes.
    pub size: u64,
    /// Digests of the image, by algorithm (`sha256` → lowercase hex).
    pub checksums: BTreeMap<String, String>,
    /// name → version selector.
    pub dependencies: BTreeMap<String, String>,
    pub provides: Vec<ProvidedLanguage>,
    pub limit_overrides: BTreeMap<String, i64>,
    pub compiled: bool,
    /// Cache policy: `none`, `compiled` or `output`.
    pub cache: String,
    /// Where the build files can be read, absolute.
    pub build_file_url: String,
    /// Digest of the build files.
    pub build_file_sha256: String,
    /// Where the image is downloaded from, absolute.
    pub download_url: String,
    pub installed: bool,
}

/// One language of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvidedLanguage {
    pub language: String,
    pub aliases: Vec<String>,
    pub limit_overrides: BTreeMap<String, i64>,
}

/// A configured repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepoInfo {
    pub name: String,
    pub url: String,
    /// Version of the index held locally, if one was downloaded.
    pub index_version: Option<u64>,
    /// When the local index was generated (unix seconds).
    pub generated: Option<u64>,
    /// Number of packages in the local index.
    pub packages: usize,
}

/// A package version, as installed or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageRef {
    pub repo: String,
    pub name: String,
    pub version: Version,
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstallReport {
    /// The requested package.
    pub package: PackageRef,
    /// Every package newly installed, dependencies included.
    pub installed: Vec<PackageRef>,
}

/// What an uninstall did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UninstallReport {
    pub package: PackageRef,
    /// Every package removed (more than one with `cascade`).
    pub removed: Vec<PackageRef>,
}

/// Name of the meta-repository that stands for all repositories.
pub const ALL_REPOS: &str = "all";

/// Why the engine refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No repository has a package of that name matching the selector.
    #[error("Requested package {name}-{selector} does not exist")]
    UnknownPackage { name: String, selector: String },
    #[error("repository {0:?} is not configured")]
    UnknownRepo(String),
    #[error("Already installed")]
    AlreadyInstalled { name: String, version: Version },
    #[error("{name}-{selector} is not installed")]
    NotInstalled { name: String, selector: String },
    /// The operation conflicts with the current state (e.g. a package others depend on).
    #[error("{0}")]
    Conflict(String),
    /// The interactive job is no longer running.
    #[error("the job has finished")]
    Finished,
    /// This engine cannot do that (yet); the message says what is missing.
    #[error("{0}")]
    Unsupported(String),
    /// Anything else; `context` says what was being done.
    #[error("{context}")]
    Internal {
        context: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl EngineError {
    /// An internal error with a cause.
    pub fn internal(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Internal {
            context: context.into(),
            source: Some(Box::new(source)),
        }
    }

    /// An internal error without a cause.
    pub fn message(context: impl Into<String>) -> Self {
        Self::Internal {
            context: context.into(),
            source: None,
        }
    }
}

/// The error and its causes on one line, `a: b: c`, for responses to administrators.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    struct Chain<'a>(&'a (dyn std::error::Error + 'static));
    impl fmt::Display for Chain<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}", self.0)?;
            let mut source = self.0.source();
            while let Some(cause) = source {
                write!(f, ": {cause}")?;
                source = cause.source();
            }
            Ok(())
        }
    }
    Chain(error).to_string()
}

/// What the server needs from the machinery. All methods may block.
pub trait Engine: Send + Sync + 'static {
    /// Every runtime of every installed package. Called on each request: keep it cheap.
    fn runtimes(&self) -> Vec<Runtime>;

    /// Runs a job to completion.
    fn execute(&self, job: JobRequest) -> Result<JobOutcome, EngineError>;

    /// The memory all jobs together may use, bytes, when it is capped (sizes the default
    /// concurrency).
    fn jobs_memory(&self) -> Option<u64> {
        None
    }

    /// Starts an interactive job. Its stdin stays open until closed.
    fn start(&self, job: JobRequest) -> Result<Box<dyn InteractiveJob>, EngineError>;

    /// The configured repositories.
    fn repositories(&self) -> Result<Vec<RepoInfo>, EngineError>;

    /// The packages of `repo` ([`ALL_REPOS`] for every repository); with `sync`, the index is
    /// downloaded again first.
    fn packages(&self, repo: &str, sync: bool) -> Result<Vec<PackageSummary>, EngineError>;

    /// The highest version of `name` in `repo` matching `selector`.
    fn package(
        &self,
        repo: &str,
        name: &str,
        selector: &Selector,
    ) -> Result<PackageDetail, EngineError>;

    /// Installs the highest version of `name` in `repo` matching `selector`, with its dependencies.
    fn install(
        &self,
        repo: &str,
        name: &str,
        selector: &Selector,
    ) -> Result<InstallReport, EngineError>;

    /// Uninstalls the highest installed version of `name` matching `selector`; with `cascade`, also
    /// the installed packages that depend on it.
    fn uninstall(
        &self,
        name: &str,
        selector: &Selector,
        cascade: bool,
    ) -> Result<UninstallReport, EngineError>;

    /// Drops the cache entries of the installed package `name` matching `selector`; returns how
    /// many entries were removed. An engine without a cache answers
    /// [`EngineError::Unsupported`].
    fn purge_cache(&self, name: &str, selector: &Selector) -> Result<u64, EngineError>;
}
