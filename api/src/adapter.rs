//! The real [`Engine`]: `ppman` for packages and mounted trees, the job layer (`jobs`) for
//! runtimes and jobs on the `runner`'s sandbox.
//!
//! Runtimes are read from ppman's installed packages at start-up (after reconciling the mounts),
//! after every install or uninstall through the API, and whenever ppman's state file changed
//! (a `ppman install` next to the running server).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ppman::manager::PackageManager;
use ppman::{Selector, schema::IndexEntry};

use crate::config::Config;
use crate::engine::{
    ALL_REPOS, Engine, EngineError, InstallReport, InteractiveJob, JobEvent, JobOutcome,
    JobRequest, OutputStream, PackageDetail, PackageRef, PackageSummary, ProvidedLanguage,
    RepoInfo, Runtime, StageName, StageOutcome, Status, UninstallReport,
};

/// Why the engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("cannot open the package manager in {}", path.display())]
    Ppman {
        path: PathBuf,
        #[source]
        source: ppman::Error,
    },
    #[error("cannot reconcile the package mounts")]
    Reconcile(#[source] ppman::Error),
    #[error("cannot read the installed runtimes")]
    Installed(#[source] jobs::JobError),
    #[error("cannot set up the sandbox runner")]
    Runner(#[source] runner::RunnerError),
}

/// Builds the engine for `config`: opens ppman on the data directory, reconciles its mounts, sets
/// up the runner.
pub fn build(config: &Config) -> Result<Arc<dyn Engine>, AdapterError> {
    let pm =
        PackageManager::open(&config.data_directory).map_err(|source| AdapterError::Ppman {
            path: config.data_directory.clone(),
            source,
        })?;
    let report = pm.reconcile().map_err(AdapterError::Reconcile)?;
    tracing::info!(?report, "package mounts reconciled");
    if let Some(url) = &config.repo_url {
        register_default_repo(&pm, url, config.repo_key.as_deref());
    }
    let mut runner_config = runner::RunnerConfig {
        uid_min: config.runner_uid_min,
        uid_max: config.runner_uid_max,
        gid_min: config.runner_gid_min,
        work_dir: config.runner_work_directory.clone(),
        ..runner::RunnerConfig::default()
    };
    runner_config
        .cgroup
        .name
        .clone_from(&config.runner_cgroup_name);
    runner_config.cgroup.cpu_max_percent = config.runner_cpu_max_percent;
    runner_config.cgroup.jobs_memory_percent = config.runner_jobs_memory_percent;
    runner_config.cgroup.jobs_max_processes = config.runner_jobs_max_processes;
    let runner = runner::Runner::new(runner_config).map_err(AdapterError::Runner)?;
    let runtimes = jobs::Runtimes::new(Arc::new(pm)).map_err(AdapterError::Installed)?;
    Ok(Arc::new(RealEngine {
        runtimes,
        jobs: jobs::Jobs::new(runner, jobs::JobsConfig::default()),
    }))
}

/// Piston's `PISTON_REPO_URL`: registers the repository as `default` when ppman has none, and
/// syncs it. Problems are logged, not fatal: the server still serves what is installed.
fn register_default_repo(pm: &PackageManager, url: &str, key: Option<&str>) {
    match pm.repos() {
        Ok(repos) if !repos.is_empty() => {
            tracing::info!("repo_url not registered: ppman already has repositories");
            return;
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot list repositories; repo_url not registered");
            return;
        }
    }
    let Some(key) = key else {
        tracing::warn!(
            "repo_url is not registered: set repo_key (PISTON_REPO_KEY) to its minisign public key"
        );
        return;
    };
    if let Err(e) = pm.repo_add("default", url, key) {
        tracing::warn!(error = %e, url, "cannot register repo_url");
        return;
    }
    match pm.sync(Some("default")) {
        Ok(_) => tracing::info!(url, "registered and synced repository default"),
        Err(e) => tracing::warn!(error = %e, url, "repository default registered but not synced"),
    }
}

struct RealEngine {
    /// The installed runtimes, and the package manager they come from.
    runtimes: jobs::Runtimes,
    jobs: jobs::Jobs,
}

fn repo_arg(repo: &str) -> Option<&str> {
    (repo != ALL_REPOS).then_some(repo)
}

fn map_error(error: ppman::Error, name: &str, selector: &Selector) -> EngineError {
    match error {
        ppman::Error::UnknownRepo(repo) => EngineError::UnknownRepo(repo),
        ppman::Error::NotInstalled { name, selector } => {
            EngineError::NotInstalled { name, selector }
        }
        ppman::Error::Resolve(ref inner)
            if matches!(
                **inner,
                ppman::resolve::ResolveError::UnknownPackage { .. }
                    | ppman::resolve::ResolveError::NoMatch { .. }
            ) =>
        {
            EngineError::UnknownPackage {
                name: name.to_owned(),
                selector: selector.to_string(),
            }
        }
        ppman::Error::HasDependents { .. } => EngineError::Conflict(error.to_string()),
        other => EngineError::internal(format!("ppman failed for {name} {selector}"), other),
    }
}

fn status(status: runner::Status) -> Status {
    match status {
        runner::Status::RE => Status::RE,
        runner::Status::SG => Status::SG,
        runner::Status::TO => Status::TO,
        runner::Status::OL => Status::OL,
        runner::Status::EL => Status::EL,
        runner::Status::XX => Status::XX,
    }
}

fn stage(result: runner::StageResult) -> StageOutcome {
    StageOutcome {
        stdout: result.stdout,
        stderr: result.stderr,
        output: result.output,
        code: result.code,
        signal: result.signal,
        message: result.message,
        status: result.status.map(status),
        cpu_time_ms: result.cpu_time_ms as f64,
        wall_time_ms: result.wall_time_ms as f64,
        memory_bytes: result.memory_bytes,
    }
}

fn stage_name(stage: jobs::Stage) -> StageName {
    match stage {
        jobs::Stage::Compile => StageName::Compile,
        jobs::Stage::Run => StageName::Run,
    }
}

fn package_ref(repo: &str, id: &ppman::PackageId) -> PackageRef {
    PackageRef {
        repo: repo.to_owned(),
        name: id.name.clone(),
        version: id.version.clone(),
    }
}

fn summary(repo: &str, entry: &IndexEntry, installed: bool) -> PackageSummary {
    PackageSummary {
        repo: repo.to_owned(),
        name: entry.name.clone(),
        version: entry.version.clone(),
        description: entry.description.clone(),
        languages: entry.provides.iter().map(|p| p.language.clone()).collect(),
        installed,
    }
}

impl RealEngine {
    fn pm(&self) -> &PackageManager {
        self.runtimes.package_manager()
    }

    fn refresh(&self) -> Result<(), EngineError> {
        self.runtimes
            .refresh()
            .map_err(|e| EngineError::internal("cannot list the installed packages", e))
    }

    fn spec(&self, job: JobRequest) -> Result<jobs::JobSpec, EngineError> {
        let input = jobs::JobInput {
            files: job.files,
            args: job.args,
            stdin: job.stdin,
            compile: job.compile,
            run: job.run,
        };
        self.runtimes
            .job(&job.runtime, input)
            .map_err(|e| EngineError::message(e.to_string()))
    }
}

impl Engine for RealEngine {
    fn runtimes(&self) -> Vec<Runtime> {
        self.runtimes.list()
    }

    fn jobs_memory(&self) -> Option<u64> {
        self.jobs.runner().shared_limits().memory_bytes
    }

    fn execute(&self, job: JobRequest) -> Result<JobOutcome, EngineError> {
        let spec = self.spec(job)?;
        let result = self
            .jobs
            .run(&spec)
            .map_err(|e| EngineError::internal("the job failed", e))?;
        Ok(JobOutcome {
            compile: result.compile.map(stage),
            run: Some(stage(result.run)),
        })
    }

    fn start(&self, job: JobRequest) -> Result<Box<dyn InteractiveJob>, EngineError> {
        let spec = self.spec(job)?;
        let handle = self
            .jobs
            .start(spec)
            .map_err(|e| EngineError::internal("the job failed", e))?;
        Ok(Box::new(RealJob {
            stdin: handle.stdin_gauge(),
            handle,
        }))
    }

    fn repositories(&self) -> Result<Vec<RepoInfo>, EngineError> {
        let repos = self
            .pm()
            .repos()
            .map_err(|e| EngineError::internal("cannot list repositories", e))?;
        Ok(repos
            .into_iter()
            .map(|r| RepoInfo {
                name: r.name,
                url: r.url,
                index_version: r.index_version,
                generated: r.generated,
                packages: r.packages,
            })
            .collect())
    }

    fn packages(&self, repo: &str, sync: bool) -> Result<Vec<PackageSummary>, EngineError> {
        let any = Selector::any();
        if sync {
            self.pm()
                .sync(repo_arg(repo))
                .map_err(|e| map_error(e, repo, &any))?;
        }
        let available = self
            .pm()
            .available(repo_arg(repo))
            .map_err(|e| map_error(e, repo, &any))?;
        Ok(available
            .iter()
            .map(|p| summary(&p.repo, &p.entry, p.installed))
            .collect())
    }

    fn package(
        &self,
        repo: &str,
        name: &str,
        selector: &Selector,
    ) -> Result<PackageDetail, EngineError> {
        let info = self
            .pm()
            .info(name, selector, repo_arg(repo))
            .map_err(|e| map_error(e, name, selector))?;
        let e = info.entry;
        Ok(PackageDetail {
            repo: info.repo,
            name: e.name,
            version: e.version,
            author: e.author,
            description: e.description,
            size: e.size,
            checksums: BTreeMap::from([("sha256".to_owned(), e.sha256)]),
            dependencies: e.dependencies,
            provides: e
                .provides
                .into_iter()
                .map(|p| ProvidedLanguage {
                    language: p.language,
                    aliases: p.aliases,
                    limit_overrides: p.limit_overrides,
                })
                .collect(),
            limit_overrides: e.limit_overrides,
            compiled: e.compiled,
            cache: serde_json::to_value(e.cache)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            build_file_url: info.build_file_url,
            build_file_sha256: e.build_file.sha256,
            download_url: info.download_url,
            installed: info.installed,
        })
    }

    fn install(
        &self,
        repo: &str,
        name: &str,
        selector: &Selector,
    ) -> Result<InstallReport, EngineError> {
        let info = self
            .pm()
            .info(name, selector, repo_arg(repo))
            .map_err(|e| map_error(e, name, selector))?;
        if info.installed {
            return Err(EngineError::AlreadyInstalled {
                name: info.entry.name,
                version: info.entry.version,
            });
        }
        let outcome = self
            .pm()
            .install_many(&[(name.to_owned(), selector.clone())], repo_arg(repo))
            .map_err(|e| map_error(e, name, selector))?;
        self.refresh()?;
        let root = outcome
            .roots
            .first()
            .map(|r| package_ref(&r.repo, &r.id))
            .ok_or_else(|| EngineError::message("ppman installed nothing"))?;
        Ok(InstallReport {
            package: root,
            installed: outcome
                .added
                .iter()
                .map(|r| package_ref(&r.repo, &r.id))
                .collect(),
        })
    }

    fn uninstall(
        &self,
        name: &str,
        selector: &Selector,
        cascade: bool,
    ) -> Result<UninstallReport, EngineError> {
        let outcome = self.pm().uninstall(name, selector, cascade).map_err(|e| {
            // Piston looks the package up in the index first: a package no repository has
            // "does not exist" (404) rather than being "not installed".
            if matches!(e, ppman::Error::NotInstalled { .. })
                && let Err(info) = self.pm().info(name, selector, None)
            {
                let unknown = map_error(info, name, selector);
                if matches!(unknown, EngineError::UnknownPackage { .. }) {
                    return unknown;
                }
            }
            map_error(e, name, selector)
        })?;
        self.refresh()?;
        Ok(UninstallReport {
            package: package_ref(&outcome.package.repo, &outcome.package.id),
            removed: outcome
                .removed
                .iter()
                .map(|r| package_ref(&r.repo, &r.id))
                .collect(),
        })
    }

    fn purge_cache(&self, name: &str, selector: &Selector) -> Result<u64, EngineError> {
        // A package no repository has is still a 404; any other answers that there is no cache.
        self.pm()
            .info(name, selector, None)
            .map_err(|e| map_error(e, name, selector))?;
        Err(EngineError::Unsupported(
            "this server has no job cache yet: there is nothing to purge".to_owned(),
        ))
    }
}

/// An interactive runner job: the handle serves the event thread, the stdin writer and the
/// signals at once.
struct RealJob {
    handle: jobs::JobHandle,
    /// Waited on apart from the handle (cheap to clone).
    stdin: runner::StdinGauge,
}

impl InteractiveJob for RealJob {
    fn wait_stdin_below(&self, bytes: u64, timeout: Duration) -> bool {
        self.stdin.wait_below(bytes, timeout)
    }

    fn write_stdin(&self, data: &[u8]) -> Result<(), EngineError> {
        self.handle
            .write_stdin(data)
            .map_err(|e| EngineError::internal("cannot write stdin", e))
    }

    fn close_stdin(&self) -> Result<(), EngineError> {
        self.handle
            .close_stdin()
            .map_err(|e| EngineError::internal("cannot close stdin", e))
    }

    fn signal(&self, signal: i32) -> Result<(), EngineError> {
        self.handle
            .signal(signal)
            .map_err(|e| EngineError::internal("cannot signal", e))
    }

    fn next_event(&self, timeout: Duration) -> Result<Option<JobEvent>, EngineError> {
        let event = self.handle.next_event(timeout);
        Ok(event.map(|event| match event {
            jobs::Event::Stage(s) => JobEvent::Stage(stage_name(s)),
            jobs::Event::Output { stream, data } => JobEvent::Output {
                stream: match stream {
                    runner::Stream::Stdout => OutputStream::Stdout,
                    runner::Stream::Stderr => OutputStream::Stderr,
                },
                data,
            },
            jobs::Event::Exit { stage: s, result } => JobEvent::Exit {
                stage: stage_name(s),
                outcome: stage(result),
            },
            jobs::Event::Done(_) => JobEvent::Done,
        }))
    }
}
