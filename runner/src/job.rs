//! The runner and its sandboxes: a [`Sandbox`] is one writable layer (a tmpfs holding the job's
//! files in [`BOX_DIR`]) over read-only layers, with a uid of its own; processes run in it one
//! after another and see what earlier ones left there. [`Runner::run_command`] and
//! [`Runner::start_command`] are the one-process forms.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, fchown};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::cgroup::{CgroupConfig, CgroupVersion, Cgroups, SharedLimits};
use crate::error::RunnerError;
use crate::ids::{self, HostIds};
use crate::pool::{Janitor, Pool, Task};
use crate::process::{
    Process, ProcessEvent, ProcessSpec, ResourceUsage, SandboxPlace, StdinGauge, Stream,
};
use crate::stale::name_of_dead_runner;
use crate::sys;
use crate::types::{KillReason, StageResult};

/// Where the job's files are inside the sandbox (isolate's convention).
pub const BOX_DIR: &str = "/box";

/// How the runner is set up. The uid range is Piston's `PISTON_RUNNER_UID_MIN/MAX`, by default
/// far from any account's ([`crate::ids`]).
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The `piston-sandbox` helper; `None` = next to the current executable (or its parent
    /// directory, for test binaries in `target/*/deps`).
    pub sandbox_binary: Option<PathBuf>,
    /// Host directory under which each job's tmpfs is mounted.
    pub work_dir: PathBuf,
    /// uid range for concurrent jobs; gid = gid_min + (uid - uid_min).
    pub uid_min: u32,
    pub uid_max: u32,
    pub gid_min: u32,
    pub cgroup: CgroupConfig,
    /// Size of the job's writable layer (its tmpfs): the disk limit, bytes.
    pub disk_bytes: u64,
    /// Size of the private /tmp and of /dev/shm (each), bytes.
    pub tmp_bytes: u64,
    /// Files and directories each of /tmp and /dev/shm may hold (tmpfs `nr_inodes`; without it
    /// the kernel's default lets an inode bomb take half the host's pages in inodes).
    pub tmp_inodes: u64,
    /// RLIMIT_STACK, bytes (0 = unlimited).
    pub stack_bytes: u64,
    pub hostname: String,
    /// Install the seccomp deny list (on by default).
    pub seccomp: bool,
    /// Helpers kept pre-spawned inside a fresh cgroup (0 = spawn per stage).
    pub warm_helpers: usize,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            sandbox_binary: None,
            work_dir: PathBuf::from("/run/piston-runner"),
            uid_min: ids::DEFAULT_UID_MIN,
            uid_max: ids::DEFAULT_UID_MAX,
            gid_min: ids::DEFAULT_UID_MIN,
            cgroup: CgroupConfig::default(),
            disk_bytes: 256 << 20,
            tmp_bytes: 64 << 20,
            tmp_inodes: 16_384,
            stack_bytes: 256 << 20,
            hostname: "piston".into(),
            seccomp: true,
            warm_helpers: 4,
        }
    }
}

/// A `PATH` for programs started in a sandbox, when the caller has none of its own.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A file put in the sandbox's [`BOX_DIR`] before anything runs there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxFile<'a> {
    /// Relative path inside [`BOX_DIR`] (see [`check_file_name`]); sub-directories are created
    /// (mode 0700).
    pub name: &'a str,
    pub content: &'a [u8],
}

/// The runner: owns the configuration, the cgroup set-up, the helper pool and the janitor.
#[derive(Debug)]
pub struct Runner {
    config: RunnerConfig,
    helper: PathBuf,
    cgroups: Cgroups,
    pool: Option<Arc<Pool>>,
    janitor: Janitor,
}

/// uids in use by jobs of this process (shared by every `Runner` in it), and a signal for when
/// one is released.
static UIDS_IN_USE: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());
static UID_RELEASED: Condvar = Condvar::new();

/// How long a job waits for a uid when every one is taken (finished jobs release theirs as the
/// janitor tears them down) before it is refused.
const UID_WAIT: Duration = Duration::from_secs(10);
static JOB_COUNTER: AtomicU64 = AtomicU64::new(0);

struct UidLease(u32);

impl UidLease {
    fn take(min: u32, max: u32) -> Result<UidLease, RunnerError> {
        Self::take_within(min, max, UID_WAIT)
    }

    fn take_within(min: u32, max: u32, wait: Duration) -> Result<UidLease, RunnerError> {
        let deadline = std::time::Instant::now() + wait;
        let mut used = UIDS_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(uid) = (min..=max).find(|u| !used.contains(u)) {
                used.insert(uid);
                return Ok(UidLease(uid));
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(RunnerError::NoFreeUid { min, max });
            }
            used = UID_RELEASED
                .wait_timeout(used, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for UidLease {
    fn drop(&mut self) {
        UIDS_IN_USE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
        UID_RELEASED.notify_one();
    }
}

/// Checks a submitted file name: relative, no `..`, no `.`-only or empty components, no NUL.
pub fn check_file_name(name: &str) -> Result<PathBuf, RunnerError> {
    let bad = |reason| RunnerError::BadFileName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("empty name"));
    }
    if name.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    let p = Path::new(name);
    if p.is_absolute() {
        return Err(bad("absolute paths are not allowed"));
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir => return Err(bad("`..` would leave the job directory")),
            _ => return Err(bad("not a plain relative path")),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(bad("names no file"));
    }
    Ok(out)
}

/// A prepared job directory: a tmpfs on the host holding the writable layer. Unmounting it is
/// the whole clean-up, so nothing the job wrote (symlinks, FIFOs, devices, odd modes) is ever
/// walked, followed, chowned or chmodded by the host.
struct JobDir {
    path: PathBuf,
    mounted: bool,
}

impl JobDir {
    fn create(
        path: PathBuf,
        size: u64,
        uid: u32,
        gid: u32,
        files: &[BoxFile<'_>],
    ) -> Result<JobDir, RunnerError> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| RunnerError::io("create job directory", &path, e))?;
        let mut dir = JobDir {
            path,
            mounted: false,
        };
        let p = dir.path.to_string_lossy().into_owned();
        sys::mount(
            "tmpfs",
            &p,
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(&format!("size={size},mode=0700,nr_inodes=65536")),
        )
        .map_err(|e| RunnerError::io("mount job tmpfs on", &dir.path, e))?;
        dir.mounted = true;
        // Nothing untrusted has run yet: this tree is ours alone.
        for (d, mode) in [("upper", 0o755), ("work", 0o700), ("root", 0o755)] {
            let dp = dir.path.join(d);
            fs::DirBuilder::new()
                .mode(mode)
                .create(&dp)
                .map_err(|e| RunnerError::io("create", &dp, e))?;
        }
        let boxd = dir.path.join("upper").join(BOX_DIR.trim_start_matches('/'));
        mkdir_owned(&boxd, uid, gid)?;
        for f in files {
            let rel = check_file_name(f.name)?;
            let mut cur = boxd.clone();
            let comps: Vec<_> = rel.components().collect();
            for c in &comps[..comps.len() - 1] {
                cur.push(c);
                if !cur.is_dir() {
                    mkdir_owned(&cur, uid, gid)?;
                }
            }
            cur.push(comps[comps.len() - 1]);
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&cur)
                .map_err(|e| RunnerError::io("create job file", &cur, e))?;
            fchown(&file, Some(uid), Some(gid))
                .map_err(|e| RunnerError::io("chown job file", &cur, e))?;
            file.write_all(f.content)
                .map_err(|e| RunnerError::io("write job file", &cur, e))?;
        }
        Ok(dir)
    }
}

fn mkdir_owned(p: &Path, uid: u32, gid: u32) -> Result<(), RunnerError> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(p)
        .map_err(|e| RunnerError::io("create directory", p, e))?;
    let f = File::open(p).map_err(|e| RunnerError::io("open directory", p, e))?;
    fchown(&f, Some(uid), Some(gid)).map_err(|e| RunnerError::io("chown directory", p, e))
}

impl Drop for JobDir {
    fn drop(&mut self) {
        if self.mounted {
            let p = self.path.to_string_lossy().into_owned();
            if let Err(e) = sys::umount(&p, libc::MNT_DETACH) {
                tracing::warn!(path = %p, error = %e, "job tmpfs not unmounted");
                return;
            }
        }
        let _ = fs::remove_dir(&self.path);
    }
}

/// A job's sandbox: job dir, uid, and the identity used for cgroup names.
struct PreparedJob {
    place: SandboxPlace,
    id: String,
    /// This job's lane of the janitor.
    janitor: Janitor,
    _dir: JobDir,
    _uid: UidLease,
}

impl PreparedJob {
    /// Hands the job's directory and uid to its janitor lane, after its stages' teardown.
    fn retire(self) {
        let janitor = self.janitor.clone();
        janitor.submit(Task::Drop(Box::new(self)));
    }
}

impl Runner {
    /// Checks privileges, finds the helper, detects cgroups and prepares the work directory.
    pub fn new(config: RunnerConfig) -> Result<Runner, RunnerError> {
        if !sys::is_root() {
            return Err(RunnerError::NotRoot);
        }
        if config.uid_min == 0 || config.gid_min == 0 || config.uid_max < config.uid_min {
            return Err(RunnerError::Config(format!(
                "uid range {}..={} / gid_min {} must be non-empty and exclude 0",
                config.uid_min, config.uid_max, config.gid_min
            )));
        }
        // Held through the scan: a job of this process that leased a uid after a snapshot
        // would otherwise be taken for someone else's process.
        let ours = UIDS_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
        let gid_max = config
            .gid_min
            .saturating_add(config.uid_max - config.uid_min);
        if let Some(user) = ids::check(
            &HostIds::system(),
            config.uid_min..=config.uid_max,
            config.gid_min..=gid_max,
            &ours,
        ) {
            return Err(RunnerError::IdsInUse {
                uid_min: config.uid_min,
                uid_max: config.uid_max,
                gid_min: config.gid_min,
                gid_max,
                user,
            });
        }
        drop(ours);
        let helper = match &config.sandbox_binary {
            Some(p) => p.clone(),
            None => default_helper_path(),
        };
        if !helper.is_file() {
            return Err(RunnerError::HelperMissing { path: helper });
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.work_dir)
            .map_err(|e| RunnerError::io("create work directory", &config.work_dir, e))?;
        let cgroups = Cgroups::init(&config.cgroup)?;
        let stale = (
            cgroups.remove_stale(),
            remove_stale_job_dirs(&config.work_dir),
        );
        if stale != (0, 0) {
            tracing::info!(
                cgroups = stale.0,
                job_dirs = stale.1,
                "removed leftovers of a runner that died"
            );
        }
        cgroups.apply_shared()?;
        let shared = cgroups.shared_limits();
        tracing::info!(
            version = ?cgroups.version(),
            jobs_memory_bytes = ?shared.memory_bytes,
            jobs_max_processes = ?shared.pids,
            "cgroups ready: caps shared by all jobs"
        );
        if let Ok(pattern) = fs::read_to_string(CORE_PATTERN)
            && let Some(helper) = piped_core_helper(&pattern)
        {
            tracing::warn!(
                core_pattern = helper,
                "kernel.core_pattern pipes crashes to a program on the host: the jobs' core \
                     limit of 1 byte keeps it from starting, but the kernel may log a line per \
                     crashing job; on a host that runs jobs, set kernel.core_pattern=core \
                     (docs/sandbox.md, \"what the host must provide\")"
            );
        }
        tracing::debug!(helper = %helper.display(), "runner ready");
        let pool = Arc::new(Pool::new(
            helper.clone(),
            cgroups.clone(),
            config.warm_helpers,
        ));
        Ok(Runner {
            config,
            helper,
            cgroups,
            pool: Some(pool),
            janitor: Janitor::start()?,
        })
    }

    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    fn pool(&self) -> &Arc<Pool> {
        self.pool
            .as_ref()
            .expect("pool lives as long as the runner")
    }

    /// Waits until every finished job has been torn down in the background (processes reaped,
    /// cgroups removed, job tmpfs unmounted, uids released).
    pub fn flush(&self) {
        self.janitor.flush();
    }

    pub fn cgroup_version(&self) -> CgroupVersion {
        self.cgroups.version()
    }

    /// The memory and process caps all jobs of this runner share.
    pub fn shared_limits(&self) -> SharedLimits {
        self.cgroups.shared_limits()
    }

    fn prepare(
        &self,
        layers: &[PathBuf],
        files: &[BoxFile<'_>],
    ) -> Result<PreparedJob, RunnerError> {
        if layers.is_empty() {
            return Err(RunnerError::InvalidJob("no layers".into()));
        }
        for f in files {
            check_file_name(f.name)?;
        }
        let c = &self.config;
        let lease = UidLease::take(c.uid_min, c.uid_max)?;
        let uid = lease.0;
        let gid = c.gid_min + (uid - c.uid_min);
        let seq = JOB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{seq}", std::process::id());
        let path = c.work_dir.join(format!("job-{id}"));
        let dir = JobDir::create(path.clone(), c.disk_bytes, uid, gid, files)?;
        Ok(PreparedJob {
            place: SandboxPlace {
                helper: self.helper.clone(),
                job_dir: path,
                layers: layers.to_vec(),
                uid,
                gid,
                hostname: c.hostname.clone(),
                tmp_bytes: c.tmp_bytes,
                tmp_inodes: c.tmp_inodes,
                stack_bytes: c.stack_bytes,
                seccomp: c.seccomp,
            },
            id,
            janitor: self.janitor.for_job(seq),
            _dir: dir,
            _uid: lease,
        })
    }

    /// A new sandbox on `layers` (read-only, top-most first) with `files` in [`BOX_DIR`]. It
    /// holds a uid and a job directory until it is dropped (or [`Sandbox::run_last`] ends it).
    pub fn sandbox(
        &self,
        layers: &[PathBuf],
        files: &[BoxFile<'_>],
    ) -> Result<Sandbox, RunnerError> {
        Ok(Sandbox {
            job: self.prepare(layers, files)?,
            pool: Arc::clone(self.pool()),
        })
    }

    /// Runs one command in a fresh sandbox and tears it down in the background: `files` land in
    /// [`BOX_DIR`], `stdin` is written then closed.
    pub fn run_command(
        &self,
        layers: &[PathBuf],
        files: &[BoxFile<'_>],
        spec: &ProcessSpec,
        stdin: &[u8],
    ) -> Result<StageResult, RunnerError> {
        let t0 = std::time::Instant::now();
        let job = self.prepare(layers, files)?;
        let t1 = t0.elapsed();
        let mut p = Process::spawn(
            &job.place,
            self.pool(),
            spec,
            false,
            Some(job.janitor.clone()),
        )?;
        let t2 = t0.elapsed();
        p.write_stdin(stdin);
        p.close_stdin();
        let r = p.wait();
        let t3 = t0.elapsed();
        job.retire();
        tracing::debug!(prepare = ?t1, spawned = ?t2, ended = ?t3, cleaned = ?t0.elapsed(), "run_command timings");
        Ok(r)
    }

    /// Starts a raw command and returns the live process (streaming stdin/stdout, `peek`).
    /// The sandbox is torn down when the returned [`Program`] is dropped.
    pub fn start_command(
        &self,
        layers: &[PathBuf],
        files: &[BoxFile<'_>],
        spec: &ProcessSpec,
    ) -> Result<Program, RunnerError> {
        let job = self.prepare(layers, files)?;
        let p = Process::spawn(&job.place, self.pool(), spec, true, None)?;
        Ok(Program {
            process: Some(p),
            _job: job,
        })
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.janitor.flush();
        drop(self.pool.take());
        self.cgroups.remove_base();
    }
}

/// Unmounts and removes job directories left by dead runner processes.
fn remove_stale_job_dirs(work_dir: &Path) -> usize {
    let Ok(rd) = fs::read_dir(work_dir) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name_of_dead_runner(&name, "job-") {
            continue;
        }
        let p = e.path();
        // Unmounting drops the whole tmpfs: nothing in it is walked or followed.
        let _ = sys::umount(&p.to_string_lossy(), libc::MNT_DETACH);
        if fs::remove_dir(&p).is_ok() {
            n += 1;
        }
    }
    n
}

fn default_helper_path() -> PathBuf {
    let name = "piston-sandbox";
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let here = dir.join(name);
        if here.is_file() {
            return here;
        }
        if let Some(up) = dir.parent() {
            let p = up.join(name);
            if p.is_file() {
                return p;
            }
        }
        return here;
    }
    PathBuf::from(name)
}

/// A live sandboxed program (seed 004's Process): streaming stdin/stdout and live figures.
#[derive(Debug)]
pub struct Program {
    process: Option<Process>,
    _job: PreparedJob,
}

impl std::fmt::Debug for PreparedJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedJob").field("id", &self.id).finish()
    }
}

impl Program {
    fn p(&mut self) -> &mut Process {
        self.process.as_mut().expect("process present until close")
    }

    pub fn write(&mut self, data: &[u8]) {
        self.p().write_stdin(data);
    }

    pub fn close_stdin(&mut self) {
        self.p().close_stdin();
    }

    /// Next output chunk or the exit, waiting at most `timeout`.
    pub fn next_event(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<ProcessEvent>, RunnerError> {
        self.p().next_event(timeout)
    }

    /// Reads until a full line arrived on stdout (returned without the newline), the program
    /// ended, or `timeout` passed; at most `max_len` bytes. Other output is dropped.
    pub fn read_line(
        &mut self,
        max_len: usize,
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, RunnerError> {
        let until = std::time::Instant::now() + timeout;
        let mut line = Vec::new();
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match self.p().next_event(Some(left))? {
                Some(ProcessEvent::Output {
                    stream: Stream::Stdout,
                    data,
                }) => {
                    line.extend_from_slice(&data);
                    if let Some(i) = line.iter().position(|&b| b == b'\n') {
                        line.truncate(i);
                        return Ok(Some(line));
                    }
                    if line.len() >= max_len {
                        line.truncate(max_len);
                        return Ok(Some(line));
                    }
                }
                Some(ProcessEvent::Exit(_)) => return Ok((!line.is_empty()).then_some(line)),
                _ => {}
            }
        }
    }

    pub fn peek(&self) -> ResourceUsage {
        self.process.as_ref().map(Process::peek).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) -> std::io::Result<()> {
        match &self.process {
            Some(p) => p.signal(sig),
            None => Ok(()),
        }
    }

    /// Waits up to `timeout` for the end, kills it after that, and returns the result.
    pub fn close(mut self, timeout: Duration) -> StageResult {
        let mut p = self.process.take().expect("process present until close");
        let until = std::time::Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || p.is_finished() {
                if !p.is_finished() {
                    p.kill(KillReason::Wall);
                }
                return p.wait();
            }
            match p.next_event(Some(left)) {
                Ok(Some(ProcessEvent::Exit(r))) => return *r,
                Ok(_) => {}
                Err(e) => return StageResult::internal_error(e.to_string()),
            }
        }
    }
}

/// A sandbox made by [`Runner::sandbox`]: processes run in it one at a time, on the same
/// writable layer. Dropping it tears it down (its job directory, cgroup leftovers, its uid).
#[derive(Debug)]
pub struct Sandbox {
    job: PreparedJob,
    pool: Arc<Pool>,
}

impl Sandbox {
    /// The sandbox's name among this process's (`<pid>-<n>`), as in its job directory's.
    pub fn id(&self) -> &str {
        &self.job.id
    }

    /// Runs `spec` to its end: `stdin` is written, then closed. The process is torn down before
    /// this returns, so the next one mounts the same writable layer afresh.
    pub fn run(&mut self, spec: &ProcessSpec, stdin: &[u8]) -> Result<StageResult, RunnerError> {
        let mut p = Process::spawn(&self.job.place, &self.pool, spec, false, None)?;
        p.write_stdin(stdin);
        p.close_stdin();
        Ok(p.wait())
    }

    /// Runs `spec` as the sandbox's last process: its result comes back as soon as it is known,
    /// and the process and then the sandbox are torn down in the background.
    pub fn run_last(self, spec: &ProcessSpec, stdin: &[u8]) -> Result<StageResult, RunnerError> {
        let mut p = Process::spawn(
            &self.job.place,
            &self.pool,
            spec,
            false,
            Some(self.job.janitor.clone()),
        )?;
        p.write_stdin(stdin);
        p.close_stdin();
        let result = p.wait();
        self.job.retire();
        Ok(result)
    }

    /// Starts `spec` as a live process: output comes as [`ProcessEvent`]s, stdin stays open until
    /// [`Running::close_stdin`]. The sandbox stays borrowed while it runs.
    pub fn start(&mut self, spec: &ProcessSpec) -> Result<Running<'_>, RunnerError> {
        Ok(Running {
            process: Process::spawn(&self.job.place, &self.pool, spec, true, None)?,
            _sandbox: PhantomData,
        })
    }
}

/// A live process of a [`Sandbox`]. Dropping it kills the process and tears it down.
#[derive(Debug)]
pub struct Running<'a> {
    process: Process,
    _sandbox: PhantomData<&'a mut Sandbox>,
}

impl Running<'_> {
    pub fn write_stdin(&mut self, data: &[u8]) {
        self.process.write_stdin(data);
    }

    pub fn close_stdin(&mut self) {
        self.process.close_stdin();
    }

    /// Counts stdin down on `gauge` as the program takes it (see [`StdinGauge`]).
    pub fn set_stdin_gauge(&mut self, gauge: StdinGauge) {
        self.process.set_stdin_gauge(gauge);
    }

    /// Sends signal number `sig` to the program. A SIGKILL ends it with status SG.
    pub fn signal(&self, sig: i32) -> std::io::Result<()> {
        self.process.signal(sig)
    }

    /// Kills the process, reporting `reason` as the limit it hit.
    pub fn kill(&mut self, reason: KillReason) {
        self.process.kill(reason);
    }

    /// The next output chunk or the exit, waiting at most `timeout` (`None`: until one comes or
    /// the wake fd becomes readable, when that returns `Ok(None)`).
    pub fn next_event(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<ProcessEvent>, RunnerError> {
        self.process.next_event(timeout)
    }

    /// A file descriptor whose readability interrupts [`Running::next_event`] (so another thread
    /// can hand over stdin or a signal).
    pub fn set_wake_fd(&mut self, fd: Option<RawFd>) {
        self.process.set_wake_fd(fd);
    }

    pub fn peek(&self) -> ResourceUsage {
        self.process.peek()
    }

    pub fn is_finished(&self) -> bool {
        self.process.is_finished()
    }

    /// Waits for the end and returns the result.
    pub fn wait(self) -> StageResult {
        self.process.wait()
    }
}

const CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";

/// The program a `core_pattern` pipes core dumps to (`|/usr/share/apport/apport %p …`), if it
/// pipes them.
fn piped_core_helper(pattern: &str) -> Option<&str> {
    let helper = pattern.trim().strip_prefix('|')?.trim_start();
    Some(helper.split_whitespace().next().unwrap_or(helper))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piped_core_patterns_are_recognised() {
        assert_eq!(
            piped_core_helper("|/usr/share/apport/apport -p%p -s%s -c%c\n"),
            Some("/usr/share/apport/apport")
        );
        assert_eq!(
            piped_core_helper("| /usr/lib/systemd/systemd-coredump %P %u"),
            Some("/usr/lib/systemd/systemd-coredump")
        );
        for file in ["core\n", "/var/crash/core.%e.%p", ""] {
            assert_eq!(piped_core_helper(file), None, "{file:?}");
        }
    }

    #[test]
    fn file_names() {
        assert_eq!(check_file_name("a.py").unwrap(), PathBuf::from("a.py"));
        assert_eq!(
            check_file_name("./src/main.c").unwrap(),
            PathBuf::from("src/main.c")
        );
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a/..", ".", "a\0b"] {
            assert!(check_file_name(bad).is_err(), "{bad:?} accepted");
        }
        let e = check_file_name("../x").unwrap_err().to_string();
        assert!(e.contains("leave the job directory"), "{e}");
    }

    #[test]
    fn uid_leases_are_distinct_and_released() {
        let a = UidLease::take(60001, 60002).unwrap();
        let b = UidLease::take(60001, 60002).unwrap();
        assert_ne!(a.0, b.0);
        assert!(matches!(
            UidLease::take_within(60001, 60002, Duration::from_millis(20)),
            Err(RunnerError::NoFreeUid { .. })
        ));
        // A job waits for a uid that a finishing job releases.
        let released = a.0;
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(a);
        });
        let c = UidLease::take_within(60001, 60002, Duration::from_secs(10)).unwrap();
        assert_eq!(c.0, released);
        t.join().unwrap();
        drop((b, c));
    }
}
