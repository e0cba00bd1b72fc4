//! Jobs: a compile stage (when the package has one) then a run stage in one [`runner::Sandbox`],
//! whose writable layer persists between the stages; synchronous ([`Jobs::run`]) or interactive
//! ([`Jobs::start`]).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use runner::{
    BOX_DIR, BoxFile, KillReason, Limits, ProcessEvent, ProcessSpec, Runner, Sandbox, StageResult,
    StdinGauge, Stream,
};

use crate::error::JobError;
use crate::package::ScriptCache;
use crate::script::PackageInfo;

/// The default compile limits: the run limits with 10 s of wall and CPU time (Piston's) and
/// 1 GiB of memory (compilers need more than programs).
pub fn compile_limits() -> Limits {
    Limits {
        wall_timeout_ms: 10_000,
        cpu_time_ms: 10_000,
        memory_bytes: Some(1 << 30),
        ..Limits::piston_run()
    }
}

/// How jobs are set up, on top of the runner's own configuration.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// PATH given to the stages (the package's `environment` usually extends it).
    pub path_env: String,
    /// Extra environment for every stage.
    pub extra_env: Vec<(String, String)>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            path_env: runner::DEFAULT_PATH.into(),
            extra_env: Vec::new(),
        }
    }
}

impl JobsConfig {
    /// The environment of a stage of `language` before the package's `environment` adds to it.
    pub fn stage_env(&self, language: &str) -> Vec<(String, String)> {
        let mut env = vec![
            ("PATH".to_string(), self.path_env.clone()),
            ("HOME".into(), "/tmp".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("PISTON_LANGUAGE".into(), language.to_string()),
        ];
        env.extend(self.extra_env.iter().cloned());
        env
    }
}

/// A submitted file, already decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFile {
    /// Relative path inside the job directory; sub-directories are created (mode 0700).
    pub name: String,
    pub content: Vec<u8>,
    /// A code file (Piston: one sent as utf8): the compile stage gets every code file, the run
    /// stage the first one. Other files (data sent as base64 or hex) only land in the job
    /// directory.
    pub code: bool,
}

/// One job, on a runtime's layers.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Read-only lower dirs, top-most first.
    pub layers: Vec<PathBuf>,
    /// Package directory inside the tree: holds `run`, optional `compile`, optional `environment`.
    pub package_dir: PathBuf,
    /// Exported as PISTON_LANGUAGE.
    pub language: String,
    pub files: Vec<JobFile>,
    pub args: Vec<String>,
    pub stdin: Vec<u8>,
    /// Some iff the package has a compile script.
    pub compile: Option<Limits>,
    pub run: Limits,
}

impl JobSpec {
    fn box_files(&self) -> Vec<BoxFile<'_>> {
        self.files
            .iter()
            .map(|f| BoxFile {
                name: &f.name,
                content: &f.content,
            })
            .collect()
    }
}

/// Which stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Compile,
    Run,
}

/// A whole job: the compile stage (if any) and the run stage. After a failed compile, `run` is
/// the compile's result (Piston reports it so).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobResult {
    pub compile: Option<StageResult>,
    pub run: StageResult,
}

/// What an interactive job reports, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Stage(Stage),
    Output { stream: Stream, data: Vec<u8> },
    Exit { stage: Stage, result: StageResult },
    Done(JobResult),
}

/// Runs jobs: the runner, and what has been read of the packages.
#[derive(Debug)]
pub struct Jobs {
    runner: Runner,
    config: JobsConfig,
    scripts: ScriptCache,
}

impl Jobs {
    pub fn new(runner: Runner, config: JobsConfig) -> Jobs {
        Jobs {
            runner,
            config,
            scripts: ScriptCache::default(),
        }
    }

    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    pub fn config(&self) -> &JobsConfig {
        &self.config
    }

    /// The package's scripts and environment for `job`, read once and then cached (see
    /// [`ScriptCache`]); when reading them failed, what the job gets instead.
    fn package(&self, job: &JobSpec) -> Result<Result<Arc<PackageInfo>, StageResult>, JobError> {
        self.scripts.get(
            &self.runner,
            &job.layers,
            &job.package_dir,
            &job.language,
            &self.config.stage_env(&job.language),
        )
    }

    /// Runs a whole job: compile (if any), then run unless the compile failed.
    pub fn run(&self, job: &JobSpec) -> Result<JobResult, JobError> {
        let package = match self.package(job)? {
            Ok(info) => info,
            Err(failed) => {
                return Ok(JobResult {
                    compile: job.compile.map(|_| failed.clone()),
                    run: failed,
                });
            }
        };
        let mut sandbox = self.runner.sandbox(&job.layers, &job.box_files())?;
        let mut compile = None;
        if let Some(limits) = job.compile {
            let spec = stage_spec(job, &package, Stage::Compile, limits);
            let r = sandbox.run(&spec, b"")?;
            if !r.succeeded() {
                return Ok(JobResult {
                    run: r.clone(),
                    compile: Some(r),
                });
            }
            compile = Some(r);
        }
        let spec = stage_spec(job, &package, Stage::Run, job.run);
        let run = sandbox.run_last(&spec, &job.stdin)?;
        Ok(JobResult { compile, run })
    }

    /// Starts a job in a background thread and returns a handle to talk to it. `job.stdin` is
    /// written to the run stage first; stdin stays open until [`JobHandle::close_stdin`].
    pub fn start(&self, job: JobSpec) -> Result<JobHandle, JobError> {
        let package = self
            .package(&job)?
            .map_err(|r| JobError::PackageUnreadable {
                package_dir: job.package_dir.clone(),
                message: r.message.unwrap_or_else(|| r.stderr.trim().to_owned()),
            })?;
        let sandbox = self.runner.sandbox(&job.layers, &job.box_files())?;
        let specs: Vec<(Stage, ProcessSpec)> = job
            .compile
            .map(|l| {
                (
                    Stage::Compile,
                    stage_spec(&job, &package, Stage::Compile, l),
                )
            })
            .into_iter()
            .chain(std::iter::once((
                Stage::Run,
                stage_spec(&job, &package, Stage::Run, job.run),
            )))
            .collect();
        let (ev_tx, ev_rx) = mpsc::channel();
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let (wake_r, wake_w) = std::io::pipe().map_err(JobError::WakePipe)?;
        rustix::fs::fcntl_setfl(&wake_r, rustix::fs::OFlags::NONBLOCK)
            .map_err(|e| JobError::WakePipe(e.into()))?;
        let stdin = job.stdin;
        let gauge = StdinGauge::default();
        let channels = Channels {
            events: ev_tx,
            cmds: cmd_rx,
            gauge: gauge.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("job-{}", sandbox.id()))
            .spawn(move || drive(sandbox, specs, &stdin, &channels, wake_r))
            .map_err(JobError::Thread)?;
        Ok(JobHandle {
            events: Mutex::new(ev_rx),
            cmds: cmd_tx,
            wake: wake_w,
            gauge,
            thread: Some(thread),
        })
    }
}

/// A stage: `<shell> <package_dir>/<stage> ARGS...` (or, for a plain `exec` script, the program
/// it execs: see [`crate::StageScript`]) in the job directory, in the package's environment.
/// compile gets the code files, run the first code file and the arguments.
fn stage_spec(job: &JobSpec, package: &PackageInfo, stage: Stage, limits: Limits) -> ProcessSpec {
    let (name, script, args): (&str, _, Vec<String>) = match stage {
        Stage::Compile => (
            "compile",
            &package.compile,
            job.files
                .iter()
                .filter(|f| f.code)
                .map(|f| f.name.clone())
                .collect(),
        ),
        Stage::Run => (
            "run",
            &package.run,
            job.files
                .iter()
                .find(|f| f.code)
                .map(|f| f.name.clone())
                .into_iter()
                .chain(job.args.iter().cloned())
                .collect(),
        ),
    };
    let pkg = job.package_dir.to_string_lossy();
    let path = format!("{}/{name}", pkg.trim_end_matches('/'));
    ProcessSpec {
        argv: script.argv(&path, &args),
        env: script.env(&package.env, &args, BOX_DIR),
        cwd: BOX_DIR.into(),
        limits,
    }
}

enum Cmd {
    Stdin(Vec<u8>),
    CloseStdin,
    Signal(i32),
    /// The handle is gone: kill the job, run no further stage.
    Abort,
}

/// Talks to a job started with [`Jobs::start`]. Dropping it kills the job. Shared between
/// threads, one may wait for events while others write stdin or send signals: neither holds
/// the other up.
#[derive(Debug)]
pub struct JobHandle {
    /// Only the thread that waits for events locks it.
    events: Mutex<mpsc::Receiver<Event>>,
    cmds: mpsc::Sender<Cmd>,
    wake: std::io::PipeWriter,
    /// Stdin written and not yet taken by the program.
    gauge: StdinGauge,
    thread: Option<JoinHandle<()>>,
}

impl JobHandle {
    fn send(&self, c: Cmd) -> Result<(), JobError> {
        self.cmds.send(c).map_err(|_| JobError::Ended)?;
        let _ = (&self.wake).write(&[1]);
        Ok(())
    }

    /// Writes to the current stage's stdin. It is queued without limit: a writer that must
    /// not outrun the program waits on [`JobHandle::stdin_gauge`] first.
    pub fn write_stdin(&self, data: &[u8]) -> Result<(), JobError> {
        let n = data.len() as u64;
        self.gauge.add(n);
        self.send(Cmd::Stdin(data.to_vec()))
            .inspect_err(|_| self.gauge.sub(n))
    }

    /// The bytes written to stdin that the program has not taken yet (the job's own stdin
    /// included), with a wait for them to drain.
    pub fn stdin_gauge(&self) -> StdinGauge {
        self.gauge.clone()
    }

    pub fn close_stdin(&self) -> Result<(), JobError> {
        self.send(Cmd::CloseStdin)
    }

    /// Sends a signal (number) to the current stage's program. SIGKILL kills it: the stage
    /// ends with status SG and signal SIGKILL, and a killed compile stage ends the job.
    pub fn signal(&self, sig: i32) -> Result<(), JobError> {
        self.send(Cmd::Signal(sig))
    }

    /// The next event, waiting at most `timeout`; `None` on timeout or after [`Event::Done`].
    pub fn next_event(&self, timeout: Duration) -> Option<Event> {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events.recv_timeout(timeout).ok()
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        let _ = self.cmds.send(Cmd::Abort);
        let _ = self.wake.write(&[1]);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The job thread's ends of the handle's channels.
struct Channels {
    events: mpsc::Sender<Event>,
    cmds: mpsc::Receiver<Cmd>,
    gauge: StdinGauge,
}

/// The job's thread: each stage in turn, its output and exit as events, the handle's commands
/// (woken through `wake`) passed on to the stage that runs.
fn drive(
    mut sandbox: Sandbox,
    specs: Vec<(Stage, ProcessSpec)>,
    stdin: &[u8],
    channels: &Channels,
    mut wake: std::io::PipeReader,
) {
    let Channels {
        events: ev,
        cmds,
        gauge,
    } = channels;
    let mut compile = None;
    let mut aborted = false;
    for (stage, spec) in specs {
        let _ = ev.send(Event::Stage(stage));
        let mut p = match sandbox.start(&spec) {
            Ok(p) => p,
            Err(e) => {
                let r = StageResult::internal_error(e.to_string());
                let _ = ev.send(Event::Exit {
                    stage,
                    result: r.clone(),
                });
                let _ = ev.send(Event::Done(JobResult { compile, run: r }));
                return;
            }
        };
        p.set_wake_fd(Some(wake.as_raw_fd()));
        p.set_stdin_gauge(gauge.clone());
        if stage == Stage::Compile {
            p.close_stdin();
        } else {
            gauge.add(stdin.len() as u64);
            p.write_stdin(stdin);
        }
        let result = loop {
            if aborted {
                p.kill(KillReason::Wall);
            }
            match p.next_event(None) {
                Ok(Some(ProcessEvent::Output { stream, data })) => {
                    let _ = ev.send(Event::Output { stream, data });
                }
                Ok(Some(ProcessEvent::Exit(r))) => break *r,
                Ok(None) => {
                    let mut b = [0u8; 64];
                    while matches!(wake.read(&mut b), Ok(n) if n > 0) {}
                    loop {
                        match cmds.try_recv() {
                            Ok(Cmd::Stdin(d)) => p.write_stdin(&d),
                            Ok(Cmd::CloseStdin) => p.close_stdin(),
                            Ok(Cmd::Abort) => aborted = true,
                            // SIGKILL included: the stage ends killed by the caller's signal
                            // (SG), not by a limit.
                            Ok(Cmd::Signal(s)) => {
                                let _ = p.signal(s);
                            }
                            Err(mpsc::TryRecvError::Empty) => break,
                            Err(mpsc::TryRecvError::Disconnected) => {
                                aborted = true;
                                break;
                            }
                        }
                    }
                }
                Err(e) => break StageResult::internal_error(e.to_string()),
            }
        };
        let _ = ev.send(Event::Exit {
            stage,
            result: result.clone(),
        });
        if stage == Stage::Compile {
            if !result.succeeded() || aborted {
                let _ = ev.send(Event::Done(JobResult {
                    run: result.clone(),
                    compile: Some(result),
                }));
                return;
            }
            compile = Some(result);
        } else {
            let _ = ev.send(Event::Done(JobResult {
                compile,
                run: result,
            }));
            return;
        }
    }
}
