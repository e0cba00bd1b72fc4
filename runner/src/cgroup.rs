//! Job cgroups on cgroup v1 (memory, pids, cpuacct hierarchies) or v2 (unified), detected at
//! start-up. Host roots are parameters so unit tests drive the logic against a fake tree.
//!
//! Placement: job cgroups live under `<parent>/<name>/`, where `<parent>` is the configured
//! parent or, by default, the cgroup this process is in (read from `/proc/self/cgroup`), so the
//! runner also works inside a container's cgroup. On v2 the controllers must be enabled in the
//! parent's `cgroup.subtree_control`; when the parent holds processes ("no internal processes"
//! rule: EBUSY) they are first moved into a `<parent>/<name>-supervisor` leaf (the others are
//! named in a warning). When the runner stops, it puts the parent back as it found it: the
//! controllers it enabled disabled again, the leaf's processes moved back, the leaf removed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::RunnerError;

/// Which cgroup hierarchy is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// Where to find cgroups and where to put the job cgroups.
#[derive(Debug, Clone)]
pub struct CgroupConfig {
    /// Mount root of the cgroup file systems (`/sys/fs/cgroup`).
    pub root: PathBuf,
    /// The file describing this process's cgroups (`/proc/self/cgroup`).
    pub proc_self_cgroup: PathBuf,
    /// Parent cgroup path relative to the hierarchy root (for v1: to each controller's root);
    /// `None` = this process's own cgroup.
    pub parent: Option<String>,
    /// Force a version instead of detecting it.
    pub version: Option<CgroupVersion>,
    /// Name of the directory that groups this runner's job cgroups.
    pub name: String,
    /// Refuse to start without the memory and pids controllers (v2). Only tests turn this
    /// off, to drive the v2 code on a hybrid host whose unified hierarchy has no controllers.
    pub require_controllers: bool,
    /// The CPU a job may use at most, in percent of one CPU (CFS bandwidth: v2 `cpu.max`, v1
    /// `cpu.cfs_quota_us`); 0 = no cap. Without one, a many-threaded job takes every core and
    /// its neighbours get false time-outs.
    pub cpu_max_percent: u32,
    /// The memory all jobs together may use, percent of what this host (or the cgroup the
    /// runner is placed in, when it has a lower limit) has: the limit of `<parent>/<name>`, so
    /// the host and the server survive whatever the jobs do. 0 = no cap.
    pub jobs_memory_percent: u32,
    /// Processes and threads of all jobs together (`pids.max` of `<parent>/<name>`); 0 = no cap.
    pub jobs_max_processes: u64,
    /// The host's `/proc/meminfo` (its `MemTotal` is what `jobs_memory_percent` is of).
    pub meminfo: PathBuf,
}

/// CFS bandwidth period of the CPU cap, microseconds (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

impl Default for CgroupConfig {
    fn default() -> Self {
        CgroupConfig {
            root: PathBuf::from("/sys/fs/cgroup"),
            proc_self_cgroup: PathBuf::from("/proc/self/cgroup"),
            parent: None,
            version: None,
            name: "piston-runner".into(),
            require_controllers: true,
            cpu_max_percent: 100,
            jobs_memory_percent: 75,
            jobs_max_processes: 8192,
            meminfo: PathBuf::from("/proc/meminfo"),
        }
    }
}

/// The limits a job cgroup enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupLimits {
    pub memory_bytes: Option<u64>,
    pub pids: u64,
}

/// CPU time used by a cgroup, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuUsage {
    pub total_us: u64,
    pub user_us: u64,
    pub system_us: u64,
}

#[derive(Debug, Clone)]
enum Layout {
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpuacct: PathBuf,
        /// The cpu controller's directory when it is a hierarchy apart from cpuacct's (not
        /// co-mounted as `cpu,cpuacct`); `None` when co-mounted or absent (see `cpu_dir`).
        cpu: Option<PathBuf>,
    },
    V2 {
        dir: PathBuf,
    },
}

impl Layout {
    fn dirs(&self) -> Vec<&Path> {
        match self {
            Layout::V1 {
                memory,
                pids,
                cpuacct,
                cpu,
            } => {
                let mut dirs: Vec<&Path> = vec![memory, pids, cpuacct];
                dirs.extend(cpu.as_deref());
                dirs
            }
            Layout::V2 { dir } => vec![dir],
        }
    }

    fn join(&self, name: &str) -> Layout {
        match self {
            Layout::V1 {
                memory,
                pids,
                cpuacct,
                cpu,
            } => Layout::V1 {
                memory: memory.join(name),
                pids: pids.join(name),
                cpuacct: cpuacct.join(name),
                cpu: cpu.as_ref().map(|c| c.join(name)),
            },
            Layout::V2 { dir } => Layout::V2 {
                dir: dir.join(name),
            },
        }
    }
}

fn cg_err(path: &Path, source: io::Error) -> RunnerError {
    RunnerError::Cgroup {
        path: path.to_path_buf(),
        source,
    }
}

fn write(path: &Path, value: &str) -> Result<(), RunnerError> {
    fs::write(path, value).map_err(|e| cg_err(path, e))
}

/// A small control file. Read through `take`, which skips `File::read_to_string`'s size probe
/// (a `statx` and an `lseek` per call): a stage reads several of these while it runs.
fn read(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    fs::File::open(path)?
        .take(1 << 20)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// A control file holding one number.
fn read_number(dir: &Path, file: &str) -> io::Result<u64> {
    read(&dir.join(file))?
        .trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{file}: not a number")))
}

/// Value of `key` in a flat-keyed file (`key value` lines).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key)).then(|| it.next()?.parse().ok())?
    })
}

/// This process's cgroup path for `controller` (`None` = the v2 unified line).
pub fn own_cgroup(proc_self_cgroup: &str, controller: Option<&str>) -> Option<String> {
    proc_self_cgroup.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let _id = it.next()?;
        let ctrls = it.next()?;
        let path = it.next()?;
        let hit = match controller {
            None => ctrls.is_empty(),
            Some(c) => ctrls.split(',').any(|x| x == c),
        };
        hit.then(|| path.to_string())
    })
}

/// The detected cgroup set-up: where job cgroups are created.
#[derive(Debug, Clone)]
pub struct Cgroups {
    version: CgroupVersion,
    base: Layout,
    strict: bool,
    cpu_max_percent: u32,
    /// The caps of all jobs together, on `base`.
    shared: SharedLimits,
    /// v2: what was changed in the parent to make room for `base`, undone at the end.
    supervised: Option<Supervised>,
}

/// What the runner changed in a v2 parent that held processes: it moved them into `leaf` and
/// enabled `enabled` in the parent's `cgroup.subtree_control`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Supervised {
    parent: PathBuf,
    leaf: PathBuf,
    /// Controllers (`memory`, …) that were not enabled before.
    enabled: Vec<String>,
    /// The processes moved besides this one.
    others: Vec<String>,
}

/// The cgroup v2 operations whose effect a plain file cannot show (a move, the rule that a
/// cgroup with processes cannot enable controllers for its children), so that unit tests can
/// drive the supervisor logic against a model of the kernel.
trait V2Kernel {
    /// Writes `change` (`+memory +pids`, `-cpu`) to `cgroup`'s `cgroup.subtree_control`.
    fn subtree_control(&self, cgroup: &Path, change: &str) -> io::Result<()>;
    /// The processes of `cgroup` (its `cgroup.procs`).
    fn procs(&self, cgroup: &Path) -> io::Result<Vec<String>>;
    /// Moves process `pid` into `cgroup`.
    fn move_into(&self, cgroup: &Path, pid: &str) -> io::Result<()>;
}

/// The real kernel: the control files.
struct SysV2;

impl V2Kernel for SysV2 {
    fn subtree_control(&self, cgroup: &Path, change: &str) -> io::Result<()> {
        fs::write(cgroup.join("cgroup.subtree_control"), change)
    }
    fn procs(&self, cgroup: &Path) -> io::Result<Vec<String>> {
        Ok(read(&cgroup.join("cgroup.procs"))?
            .lines()
            .map(str::to_owned)
            .collect())
    }
    fn move_into(&self, cgroup: &Path, pid: &str) -> io::Result<()> {
        fs::write(cgroup.join("cgroup.procs"), pid)
    }
}

/// The limits of `<parent>/<name>`, which every job of the runner shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedLimits {
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
}

impl Cgroups {
    /// Detects the version and prepares `<parent>/<name>` (created if missing).
    pub fn init(cfg: &CgroupConfig) -> Result<Cgroups, RunnerError> {
        let version = match cfg.version {
            Some(v) => v,
            None if cfg.root.join("cgroup.controllers").exists() => CgroupVersion::V2,
            None if cfg
                .root
                .join("memory")
                .join("memory.limit_in_bytes")
                .exists() =>
            {
                CgroupVersion::V1
            }
            None => {
                return Err(RunnerError::NoCgroups {
                    root: cfg.root.clone(),
                });
            }
        };
        let selfcg = read(&cfg.proc_self_cgroup).map_err(|e| cg_err(&cfg.proc_self_cgroup, e))?;
        let parent_of = |ctrl: Option<&str>| -> Result<String, RunnerError> {
            match &cfg.parent {
                Some(p) => Ok(p.clone()),
                None => own_cgroup(&selfcg, ctrl).ok_or_else(|| RunnerError::NoCgroups {
                    root: cfg.proc_self_cgroup.clone(),
                }),
            }
        };
        let rel = |p: String| p.trim_start_matches('/').to_string();
        // The lowest memory limit of the cgroups the jobs' cgroups are placed in.
        let above: Option<u64>;
        let mut supervised = None;
        let base = match version {
            CgroupVersion::V1 => {
                let m = cfg
                    .root
                    .join("memory")
                    .join(rel(parent_of(Some("memory"))?));
                let p = cfg.root.join("pids").join(rel(parent_of(Some("pids"))?));
                let c = cfg
                    .root
                    .join("cpuacct")
                    .join(rel(parent_of(Some("cpuacct"))?));
                // The cpu controller, for the CPU cap: its own hierarchy, or co-mounted with
                // cpuacct (the same directory, already in the list), or not there.
                let cpu_root = cfg.root.join("cpu");
                let cpu = (cfg.cpu_max_percent > 0
                    && cpu_root.join("cpu.cfs_quota_us").exists()
                    && fs::canonicalize(&cpu_root).ok()
                        != fs::canonicalize(cfg.root.join("cpuacct")).ok())
                .then(|| parent_of(Some("cpu")).map(|p| cpu_root.join(rel(p))))
                .transpose()?;
                above = v1_memory_limit(&m);
                let base = Layout::V1 {
                    memory: m.join(&cfg.name),
                    pids: p.join(&cfg.name),
                    cpuacct: c.join(&cfg.name),
                    cpu: cpu.map(|c| c.join(&cfg.name)),
                };
                for d in base.dirs() {
                    mkdir(d)?;
                }
                if let Layout::V1 { memory, .. } = &base {
                    // Children inherit hierarchical accounting (a no-op on modern kernels).
                    let _ = fs::write(memory.join("memory.use_hierarchy"), "1");
                }
                base
            }
            CgroupVersion::V2 => {
                let mut parent = cfg.root.join(rel(parent_of(None)?));
                // A supervisor leaf that a runner which died left behind (with the shell that
                // started it, say): its parent is the cgroup that runner was started in.
                if cfg.parent.is_none()
                    && parent.file_name() == Some(supervisor_leaf(&cfg.name).as_ref())
                    && let Some(up) = parent.parent().filter(|up| up.starts_with(&cfg.root))
                {
                    parent = up.to_path_buf();
                }
                above = v2_memory_limit(&cfg.root, &parent);
                // Missing cgroup.controllers (fake trees): assume everything is available.
                let avail = read(&parent.join("cgroup.controllers")).ok();
                let has = |c: &str| {
                    avail
                        .as_deref()
                        .is_none_or(|a| a.split_whitespace().any(|x| x == c))
                };
                if cfg.require_controllers && !(has("memory") && has("pids")) {
                    return Err(RunnerError::Config(format!(
                        "cgroup v2 controllers memory and pids are not available in {}",
                        parent.display()
                    )));
                }
                let wanted: Vec<String> = ["memory", "pids", "cpu"]
                    .into_iter()
                    .filter(|c| has(c))
                    .map(|c| format!("+{c}"))
                    .collect();
                let wanted = wanted.join(" ");
                supervised = enable_controllers(
                    &SysV2,
                    &parent,
                    &cfg.name,
                    &wanted,
                    &std::process::id().to_string(),
                )?;
                if let Some(s) = supervised.as_ref().filter(|s| !s.others.is_empty()) {
                    tracing::warn!(
                        cgroup = %s.parent.display(),
                        moved = %s.others.join(" "),
                        "cgroup v2 lets only a cgroup without processes enable controllers for its \
                         children, so the other processes of this one were moved into {} with \
                         the server; they go back when it stops. Start the server in a cgroup of \
                         its own (the systemd unit, Delegate=yes) to leave them alone",
                        s.leaf.display()
                    );
                }
                let dir = parent.join(&cfg.name);
                mkdir(&dir)?;
                if !wanted.is_empty() {
                    write(&dir.join("cgroup.subtree_control"), &wanted)?;
                }
                Layout::V2 { dir }
            }
        };
        let host = read(&cfg.meminfo)
            .ok()
            .and_then(|m| keyed(&m, "MemTotal:"))
            .map(|kib| kib * 1024);
        let shared = SharedLimits {
            memory_bytes: memory_share(host, above, cfg.jobs_memory_percent),
            pids: (cfg.jobs_max_processes > 0).then_some(cfg.jobs_max_processes),
        };
        Ok(Cgroups {
            version,
            base,
            strict: cfg.require_controllers,
            cpu_max_percent: cfg.cpu_max_percent,
            shared,
            supervised,
        })
    }

    /// The caps every job of this runner shares (the memory one sized from the host).
    pub fn shared_limits(&self) -> SharedLimits {
        self.shared
    }

    /// Writes the shared caps on `<parent>/<name>`. After [`Cgroups::remove_stale`]: a v1
    /// memory limit below what leftover jobs still use would be refused (EBUSY).
    pub fn apply_shared(&self) -> Result<(), RunnerError> {
        set_shared(&self.base, self.shared, self.strict)
    }

    /// Removes job cgroups left by runner processes that no longer exist (`h-<pid>-<n>` whose
    /// pid is gone): their processes are killed first. Returns how many were removed.
    pub fn remove_stale(&self) -> usize {
        let first = self.base.dirs()[0].to_path_buf();
        let Ok(rd) = fs::read_dir(&first) else {
            return 0;
        };
        let mut n = 0;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !crate::stale::name_of_dead_runner(&name, "h-") {
                continue;
            }
            let job = JobCgroup {
                layout: self.base.join(&name),
                strict: self.strict,
            };
            job.kill_all();
            if job.remove().is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Removes the (empty) base directories, and puts a v2 parent back as it was found (see
    /// the module's documentation); harmless when jobs still exist (then nothing is undone).
    pub fn remove_base(&self) {
        let mut removed = true;
        for d in self.base.dirs() {
            removed &= fs::remove_dir(d).is_ok() || !d.exists();
        }
        if let Some(s) = &self.supervised
            && removed
            && let Err(e) = restore(&SysV2, s)
        {
            tracing::warn!(error = %e, cgroup = %s.parent.display(), "cgroup not put back as found");
        }
    }

    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// Creates the job cgroup `name` (limits are set later with [`JobCgroup::set_limits`]).
    pub fn create_job(&self, name: &str) -> Result<JobCgroup, RunnerError> {
        let layout = self.base.join(name);
        for (d, base) in layout.dirs().into_iter().zip(self.base.dirs()) {
            if let Err(e) = fs::create_dir(d) {
                match e.kind() {
                    io::ErrorKind::AlreadyExists => {}
                    // Another runner of this process removed the shared base when it was dropped.
                    io::ErrorKind::NotFound => {
                        mkdir(base)?;
                        if let Layout::V2 { .. } = self.base {
                            let sc = base.join("cgroup.subtree_control");
                            write(&sc, "+memory +pids +cpu")
                                .or_else(|_| write(&sc, "+memory +pids"))?;
                        }
                        set_shared(&self.base, self.shared, self.strict)?;
                        mkdir(d)?;
                    }
                    _ => return Err(cg_err(d, e)),
                }
            }
        }
        let job = JobCgroup {
            layout,
            strict: self.strict,
        };
        job.set_fixed(self.cpu_max_percent)?;
        Ok(job)
    }
}

/// `percent` of the host's memory, or of the limit above when that is lower; `None` when there
/// is no cap (0 %) or nothing to take a share of.
fn memory_share(host: Option<u64>, above: Option<u64>, percent: u32) -> Option<u64> {
    if percent == 0 {
        return None;
    }
    let whole = match (host, above) {
        (Some(h), Some(a)) => h.min(a),
        (h, a) => h.or(a)?,
    };
    let share = u128::from(whole) * u128::from(percent.min(100)) / 100;
    let share = u64::try_from(share).unwrap_or(whole);
    // Whole pages, as the kernel keeps it (so what is reported is what holds).
    Some(share - share % PAGE)
}

/// The unit of cgroup memory limits.
const PAGE: u64 = 4096;

/// A limit as a cgroup file holds it; v1 says "no limit" with a number near `i64::MAX`, v2 with
/// `max`.
fn parse_limit(text: &str) -> Option<u64> {
    text.trim().parse::<u64>().ok().filter(|&n| n < NO_LIMIT)
}

/// Memory limits from here up mean "none" (v1's is `i64::MAX` rounded down to a page).
const NO_LIMIT: u64 = 1 << 62;

/// v1: the memory limit that applies to `dir` through its ancestors (`memory.stat`'s
/// `hierarchical_memory_limit`).
fn v1_memory_limit(dir: &Path) -> Option<u64> {
    let stat = read(&dir.join("memory.stat")).ok()?;
    keyed(&stat, "hierarchical_memory_limit").filter(|&n| n < NO_LIMIT)
}

/// v2: the lowest `memory.max` of `dir` and its ancestors below `root`.
fn v2_memory_limit(root: &Path, dir: &Path) -> Option<u64> {
    dir.ancestors()
        .take_while(|d| d.starts_with(root) && *d != root)
        .filter_map(|d| parse_limit(&read(&d.join("memory.max")).ok()?))
        .min()
}

/// Writes the caps of all jobs together on the base directory; "no cap" is written too, so a
/// cap of an earlier start with other settings does not stay.
fn set_shared(base: &Layout, shared: SharedLimits, strict: bool) -> Result<(), RunnerError> {
    let (memory, no_memory_cap, pids) = match base {
        Layout::V1 { memory, pids, .. } => (memory.join("memory.limit_in_bytes"), "-1", pids),
        Layout::V2 { dir } => (dir.join("memory.max"), "max", dir),
    };
    let pids = pids.join("pids.max");
    // Non-strict (tests only): skip controllers the hierarchy does not have.
    let usable = |f: &Path| strict || f.exists();
    if usable(&memory) {
        let value = shared.memory_bytes.map(|n| n.to_string());
        write(&memory, value.as_deref().unwrap_or(no_memory_cap))?;
    }
    if usable(&pids) {
        let value = shared.pids.map(|n| n.to_string());
        write(&pids, value.as_deref().unwrap_or("max"))?;
    }
    Ok(())
}

fn mkdir(d: &Path) -> Result<(), RunnerError> {
    match fs::create_dir(d) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(cg_err(d, e)),
    }
}

fn supervisor_leaf(name: &str) -> String {
    format!("{name}-supervisor")
}

/// v2: make memory/pids (and cpu when available) usable by `parent`'s children. When `parent`
/// holds processes, they (this one, `own_pid`, among them) first move into a leaf; what was
/// changed is returned, for [`restore`].
fn enable_controllers(
    k: &dyn V2Kernel,
    parent: &Path,
    name: &str,
    wanted: &str,
    own_pid: &str,
) -> Result<Option<Supervised>, RunnerError> {
    let sc = parent.join("cgroup.subtree_control");
    let enabled = read(&sc).unwrap_or_default();
    let missing: Vec<String> = wanted
        .split_whitespace()
        .map(|w| w.trim_start_matches('+').to_owned())
        .filter(|w| !enabled.split_whitespace().any(|e| e == w))
        .collect();
    if missing.is_empty() {
        return Ok(None);
    }
    match k.subtree_control(parent, wanted) {
        Ok(()) => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            // No internal processes: move the parent's processes into a leaf, then retry.
            let leaf = parent.join(supervisor_leaf(name));
            mkdir(&leaf)?;
            let procs = k.procs(parent).map_err(|e| cg_err(parent, e))?;
            let mut others = Vec::new();
            for pid in &procs {
                // A process may have exited meanwhile; that is fine.
                if k.move_into(&leaf, pid).is_ok() && pid != own_pid {
                    others.push(pid.clone());
                }
            }
            let supervised = Supervised {
                parent: parent.to_path_buf(),
                leaf,
                enabled: missing,
                others,
            };
            match k.subtree_control(parent, wanted) {
                Ok(()) => Ok(Some(supervised)),
                Err(e) => {
                    let _ = restore(k, &supervised);
                    Err(cg_err(&sc, e))
                }
            }
        }
        Err(e) => Err(cg_err(&sc, e)),
    }
}

/// Undoes [`enable_controllers`]' changes once `<parent>/<name>` is gone: the controllers it
/// enabled are disabled (in turn: one a child still uses stays), the leaf's processes (those
/// started meanwhile too) move back, the leaf is removed.
fn restore(k: &dyn V2Kernel, s: &Supervised) -> Result<(), RunnerError> {
    let mut first_error = None;
    for c in s.enabled.iter().rev() {
        if let Err(e) = k.subtree_control(&s.parent, &format!("-{c}")) {
            first_error.get_or_insert(cg_err(&s.parent.join("cgroup.subtree_control"), e));
        }
    }
    let procs = k.procs(&s.leaf).map_err(|e| cg_err(&s.leaf, e))?;
    let mut stayed = false;
    for pid in &procs {
        if let Err(e) = k.move_into(&s.parent, pid)
            && e.raw_os_error() != Some(libc::ESRCH)
        {
            stayed = true;
            first_error.get_or_insert(cg_err(&s.parent.join("cgroup.procs"), e));
        }
    }
    if !stayed && let Err(e) = fs::remove_dir(&s.leaf) {
        first_error.get_or_insert(cg_err(&s.leaf, e));
    }
    first_error.map_or(Ok(()), Err)
}

/// A job cgroup's memory figures at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemorySample {
    /// The charge (`memory.usage_in_bytes`, `memory.current`).
    pub usage: u64,
    /// How often the charge hit the limit (v1 `memory.failcnt`, v2 `memory.events` `max`).
    pub limit_hits: u64,
    /// Page cache the kernel can reclaim (`active_file` + `inactive_file`).
    pub file: u64,
    /// Major page faults (`pgmajfault`): pages read back from the file systems.
    pub major_faults: u64,
}

/// One job's cgroup (one directory per v1 hierarchy, or one v2 directory).
#[derive(Debug)]
pub struct JobCgroup {
    layout: Layout,
    strict: bool,
}

impl JobCgroup {
    /// What every job gets, written when the cgroup is made (ahead of time, in the pool): no
    /// swap, on v2 an OOM kill takes the whole job, and the CPU cap.
    fn set_fixed(&self, cpu_max_percent: u32) -> Result<(), RunnerError> {
        let quota = (cpu_max_percent > 0).then(|| CPU_PERIOD_US * u64::from(cpu_max_percent) / 100);
        match &self.layout {
            Layout::V1 { memory, .. } => {
                let _ = fs::write(memory.join("memory.swappiness"), "0");
                if let Some(quota) = quota
                    && let Some(cpu) = self.cpu_dir()
                {
                    write(&cpu.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                    write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
            }
            Layout::V2 { dir } => {
                if let Some(quota) = quota
                    && (self.strict || dir.join("cpu.max").exists())
                {
                    write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
                }
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write(&swap, "0")?;
                }
                if self.strict || dir.join("memory.oom.group").exists() {
                    let _ = fs::write(dir.join("memory.oom.group"), "1");
                }
            }
        }
        Ok(())
    }

    /// v1: where the job's `cpu.cfs_*` files are: the cpu hierarchy's directory, or cpuacct's
    /// when the two are co-mounted; `None` without a cpu controller.
    fn cpu_dir(&self) -> Option<&Path> {
        match &self.layout {
            Layout::V1 { cpu: Some(cpu), .. } => Some(cpu),
            Layout::V1 { cpuacct, .. } => cpuacct
                .join("cpu.cfs_quota_us")
                .exists()
                .then_some(cpuacct.as_path()),
            Layout::V2 { .. } => None,
        }
    }

    /// The job's own limits, written when a job takes the cgroup (before anything of it runs).
    pub fn set_limits(&self, l: CgroupLimits) -> Result<(), RunnerError> {
        match &self.layout {
            Layout::V1 { memory, pids, .. } => {
                if let Some(m) = l.memory_bytes {
                    write(&memory.join("memory.limit_in_bytes"), &m.to_string())?;
                    let memsw = memory.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        // Swap off: memory+swap may not exceed memory.
                        write(&memsw, &m.to_string())?;
                    }
                }
                write(&pids.join("pids.max"), &l.pids.to_string())?;
            }
            Layout::V2 { dir } => {
                // Non-strict (tests only): skip controllers the hierarchy does not have.
                let usable = |f: &str| self.strict || dir.join(f).exists();
                if let Some(m) = l.memory_bytes
                    && usable("memory.max")
                {
                    write(&dir.join("memory.max"), &m.to_string())?;
                }
                if usable("pids.max") {
                    write(&dir.join("pids.max"), &l.pids.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// v1: the `cgroup.procs` files a process writes its pid into to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        match &self.layout {
            Layout::V1 { .. } => self
                .layout
                .dirs()
                .iter()
                .map(|d| d.join("cgroup.procs"))
                .collect(),
            Layout::V2 { .. } => Vec::new(),
        }
    }

    /// v2: the directory for clone3(CLONE_INTO_CGROUP).
    pub fn v2_dir(&self) -> Option<&Path> {
        match &self.layout {
            Layout::V2 { dir } => Some(dir),
            Layout::V1 { .. } => None,
        }
    }

    /// Total CPU time of every process that ever ran in the cgroup, µs: one file on both
    /// versions, for the limit checks while the stage runs.
    pub fn cpu_total_us(&self) -> io::Result<u64> {
        match &self.layout {
            Layout::V1 { cpuacct, .. } => Ok(read_number(cpuacct, "cpuacct.usage")? / 1000),
            Layout::V2 { .. } => self.cpu().map(|c| c.total_us),
        }
    }

    /// CPU time of every process that ever ran in the cgroup.
    pub fn cpu(&self) -> io::Result<CpuUsage> {
        match &self.layout {
            Layout::V1 { cpuacct, .. } => {
                let ns = |f| read_number(cpuacct, f);
                let total = ns("cpuacct.usage")?;
                let (user, sys) = match (ns("cpuacct.usage_user"), ns("cpuacct.usage_sys")) {
                    (Ok(u), Ok(s)) => (u, s),
                    _ => {
                        // cpuacct.stat is in USER_HZ (100) ticks.
                        let st = read(&cpuacct.join("cpuacct.stat"))?;
                        let t = |k| keyed(&st, k).unwrap_or(0) * 10_000_000;
                        (t("user"), t("system"))
                    }
                };
                Ok(CpuUsage {
                    total_us: total / 1000,
                    user_us: user / 1000,
                    system_us: sys / 1000,
                })
            }
            Layout::V2 { dir } => {
                let st = read(&dir.join("cpu.stat"))?;
                Ok(CpuUsage {
                    total_us: keyed(&st, "usage_usec").unwrap_or(0),
                    user_us: keyed(&st, "user_usec").unwrap_or(0),
                    system_us: keyed(&st, "system_usec").unwrap_or(0),
                })
            }
        }
    }

    /// Current memory charge, bytes.
    pub fn memory_current(&self) -> u64 {
        match &self.layout {
            Layout::V1 { memory, .. } => read_number(memory, "memory.usage_in_bytes"),
            Layout::V2 { dir } => read_number(dir, "memory.current"),
        }
        .unwrap_or(0)
    }

    /// Peak memory charge, bytes (v2 without `memory.peak`: the current charge).
    pub fn memory_peak(&self) -> u64 {
        match &self.layout {
            Layout::V1 { memory, .. } => read_number(memory, "memory.max_usage_in_bytes"),
            Layout::V2 { dir } => read_number(dir, "memory.peak"),
        }
        .unwrap_or_else(|_| self.memory_current())
    }

    /// Resets the peak to the current charge where the kernel allows it (v1), so a pre-spawned
    /// helper's own start-up does not count.
    pub fn reset_peak(&self) {
        if let Layout::V1 { memory, .. } = &self.layout {
            let _ = fs::write(memory.join("memory.max_usage_in_bytes"), "0");
        }
    }

    /// What tells a job stuck at its memory limit (see `process.rs`), with `usage` as just
    /// read; `None` when the files cannot be read.
    pub(crate) fn memory_sample(&self, usage: u64) -> Option<MemorySample> {
        let (hits, stat) = match &self.layout {
            Layout::V1 { memory, .. } => (
                read_number(memory, "memory.failcnt").ok()?,
                read(&memory.join("memory.stat")).ok()?,
            ),
            Layout::V2 { dir } => (
                keyed(&read(&dir.join("memory.events")).ok()?, "max")?,
                read(&dir.join("memory.stat")).ok()?,
            ),
        };
        Some(MemorySample {
            usage,
            limit_hits: hits,
            file: keyed(&stat, "active_file").unwrap_or(0)
                + keyed(&stat, "inactive_file").unwrap_or(0),
            major_faults: keyed(&stat, "pgmajfault").unwrap_or(0),
        })
    }

    /// Whether the kernel OOM-killed a process of this cgroup.
    pub fn oom_killed(&self) -> bool {
        let (p, key) = match &self.layout {
            Layout::V1 { memory, .. } => (memory.join("memory.oom_control"), "oom_kill"),
            Layout::V2 { dir } => (dir.join("memory.events"), "oom_kill"),
        };
        read(&p)
            .ok()
            .and_then(|s| keyed(&s, key))
            .is_some_and(|n| n > 0)
    }

    /// Whether a fork failed because of pids.max.
    pub fn pids_limit_hit(&self) -> bool {
        let p = match &self.layout {
            Layout::V1 { pids, .. } => pids.join("pids.events"),
            Layout::V2 { dir } => dir.join("pids.events"),
        };
        read(&p)
            .ok()
            .and_then(|s| keyed(&s, "max"))
            .is_some_and(|n| n > 0)
    }

    /// Pids currently in the cgroup.
    pub fn procs(&self) -> Vec<i32> {
        let d = self.layout.dirs()[0];
        read(&d.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// SIGKILLs every process in the cgroup until it is empty (or ~2 s passed).
    ///
    /// Normally a no-op: the job's PID namespace dies with its init. v2 uses `cgroup.kill`;
    /// v1 kills the listed pids one by one, repeated until the list is empty.
    pub fn kill_all(&self) {
        if let Layout::V2 { dir } = &self.layout {
            let _ = fs::write(dir.join("cgroup.kill"), "1");
        }
        for i in 0..2000 {
            let procs = self.procs();
            if procs.is_empty() {
                return;
            }
            for p in procs {
                let _ = crate::sys::kill(p, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_micros(if i < 10 { 100 } else { 1000 }));
        }
    }

    /// The end of a job's cgroup, once its helper is reaped: kill stragglers, remove the
    /// directories; a failure is logged (the next runner start sweeps leftovers).
    pub fn dispose(self) {
        self.kill_all();
        if let Err(e) = self.remove() {
            tracing::warn!(error = %e, "job cgroup not removed");
        }
    }

    /// Removes the cgroup directories (after [`JobCgroup::kill_all`]); retries while the kernel
    /// still counts exiting tasks.
    pub fn remove(&self) -> Result<(), RunnerError> {
        for d in self.layout.dirs() {
            let mut last = None;
            for i in 0..1000 {
                match fs::remove_dir(d) {
                    Ok(()) => {
                        last = None;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        last = None;
                        break;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        last = Some(e);
                        std::thread::sleep(Duration::from_micros(if i < 10 { 100 } else { 2000 }));
                    }
                    Err(e) => {
                        last = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = last {
                return Err(cg_err(d, e));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_v2(own: &str) -> (tempfile::TempDir, CgroupConfig) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("cg");
        fs::create_dir_all(root.join(own.trim_start_matches('/'))).unwrap();
        fs::write(root.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let selfcg = t.path().join("self-cgroup");
        fs::write(&selfcg, format!("0::{own}\n")).unwrap();
        let cfg = CgroupConfig {
            root,
            proc_self_cgroup: selfcg,
            ..CgroupConfig::default()
        };
        (t, cfg)
    }

    #[test]
    fn parses_proc_self_cgroup() {
        let s = "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/x\n0::/user.slice\n";
        assert_eq!(own_cgroup(s, None).as_deref(), Some("/user.slice"));
        assert_eq!(
            own_cgroup(s, Some("memory")).as_deref(),
            Some("/process_api/abc")
        );
        assert_eq!(own_cgroup(s, Some("cpuacct")).as_deref(), Some("/x"));
        assert_eq!(own_cgroup(s, Some("pids")), None);
    }

    #[test]
    fn v2_detects_and_creates_under_own_cgroup() {
        let (_t, cfg) = fake_v2("/docker/abc");
        let cg = Cgroups::init(&cfg).unwrap();
        assert_eq!(cg.version(), CgroupVersion::V2);
        let own = cfg.root.join("docker/abc");
        assert_eq!(
            fs::read_to_string(own.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids +cpu"
        );
        let base = own.join("piston-runner");
        assert_eq!(
            fs::read_to_string(base.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids +cpu"
        );
        // A swap file present (as on a real tree) must be set to 0.
        let job_dir = base.join("job-1");
        fs::create_dir(&job_dir).unwrap();
        fs::write(job_dir.join("memory.swap.max"), "max").unwrap();
        let job = cg.create_job("job-1").unwrap();
        job.set_limits(CgroupLimits {
            memory_bytes: Some(64 << 20),
            pids: 66,
        })
        .unwrap();
        assert_eq!(job.v2_dir(), Some(job_dir.as_path()));
        assert!(job.procs_files().is_empty());
        let r = |f: &str| fs::read_to_string(job_dir.join(f)).unwrap();
        assert_eq!(r("memory.max"), "67108864");
        assert_eq!(r("memory.swap.max"), "0");
        assert_eq!(r("pids.max"), "66");
        assert_eq!(r("memory.oom.group"), "1");
        assert_eq!(r("cpu.max"), "100000 100000", "one CPU by default");

        fs::write(
            job_dir.join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n",
        )
        .unwrap();
        assert_eq!(
            job.cpu().unwrap(),
            CpuUsage {
                total_us: 1500,
                user_us: 1000,
                system_us: 500
            }
        );
        fs::write(job_dir.join("memory.current"), "4096\n").unwrap();
        assert_eq!(job.memory_peak(), 4096, "falls back to memory.current");
        fs::write(job_dir.join("memory.peak"), "8192\n").unwrap();
        assert_eq!(job.memory_peak(), 8192);
        assert!(!job.oom_killed());
        fs::write(
            job_dir.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert!(job.oom_killed());
        fs::write(job_dir.join("pids.events"), "max 2\n").unwrap();
        assert!(job.pids_limit_hit());
        // kill_all on an empty cgroup returns at once and asks the kernel to kill.
        fs::write(job_dir.join("cgroup.procs"), "").unwrap();
        job.kill_all();
        assert_eq!(r("cgroup.kill"), "1");
    }

    /// All jobs together get a share of the host's memory, or of the lowest limit above them
    /// when that is lower, and a pids cap; "no cap" is written too.
    #[test]
    fn shared_caps_v2() {
        let (t, mut cfg) = fake_v2("/system.slice/piston.service");
        cfg.meminfo = t.path().join("meminfo");
        fs::write(&cfg.meminfo, "MemTotal:       16777216 kB\nMemFree: 1 kB\n").unwrap();
        let slice = cfg.root.join("system.slice");
        let base = slice.join("piston.service/piston-runner");
        let read = |f: &str| fs::read_to_string(base.join(f)).unwrap();

        fs::write(slice.join("memory.max"), "max\n").unwrap();
        let cg = Cgroups::init(&cfg).unwrap();
        cg.apply_shared().unwrap();
        assert_eq!(
            read("memory.max"),
            (12u64 << 30).to_string(),
            "75 % of 16 GiB"
        );
        assert_eq!(read("pids.max"), "8192");
        assert_eq!(cg.shared_limits().memory_bytes, Some(12 << 30));

        // The service has a lower limit of its own (systemd's MemoryMax=): a share of that.
        fs::write(slice.join("piston.service/memory.max"), "8589934592\n").unwrap();
        Cgroups::init(&cfg).unwrap().apply_shared().unwrap();
        assert_eq!(read("memory.max"), (6u64 << 30).to_string());

        cfg.jobs_memory_percent = 0;
        cfg.jobs_max_processes = 0;
        let cg = Cgroups::init(&cfg).unwrap();
        cg.apply_shared().unwrap();
        assert_eq!(
            (read("memory.max"), read("pids.max")),
            ("max".into(), "max".into())
        );
        assert_eq!(
            cg.shared_limits(),
            SharedLimits {
                memory_bytes: None,
                pids: None
            }
        );
    }

    #[test]
    fn shared_caps_v1() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("cg");
        for c in ["memory/svc", "pids/svc", "cpuacct"] {
            fs::create_dir_all(root.join(c)).unwrap();
        }
        fs::write(root.join("memory/memory.limit_in_bytes"), "0").unwrap();
        fs::write(
            root.join("memory/svc/memory.stat"),
            "cache 0\nhierarchical_memory_limit 9223372036854771712\n",
        )
        .unwrap();
        let selfcg = t.path().join("self");
        fs::write(&selfcg, "8:pids:/svc\n4:memory:/svc\n2:cpuacct:/\n0::/\n").unwrap();
        let meminfo = t.path().join("meminfo");
        fs::write(&meminfo, "MemTotal:        1048576 kB\n").unwrap();
        let cfg = CgroupConfig {
            root: root.clone(),
            proc_self_cgroup: selfcg,
            meminfo,
            jobs_memory_percent: 50,
            jobs_max_processes: 100,
            ..CgroupConfig::default()
        };
        let read = |f: &str| fs::read_to_string(root.join(f)).unwrap();
        Cgroups::init(&cfg).unwrap().apply_shared().unwrap();
        assert_eq!(
            read("memory/svc/piston-runner/memory.limit_in_bytes"),
            (512u64 << 20).to_string(),
            "no limit above: half the host"
        );
        assert_eq!(read("pids/svc/piston-runner/pids.max"), "100");
        fs::write(
            root.join("memory/svc/memory.stat"),
            "hierarchical_memory_limit 104857600\n",
        )
        .unwrap();
        let cg = Cgroups::init(&cfg).unwrap();
        assert_eq!(cg.shared_limits().memory_bytes, Some(50 << 20));
    }

    #[test]
    fn memory_share_of_the_smaller() {
        let p = PAGE;
        assert_eq!(memory_share(Some(1000 * p), None, 75), Some(750 * p));
        assert_eq!(
            memory_share(Some(1000 * p), Some(400 * p), 50),
            Some(200 * p)
        );
        assert_eq!(memory_share(None, Some(400 * p), 100), Some(400 * p));
        assert_eq!(memory_share(Some(1000 * p), None, 0), None);
        assert_eq!(memory_share(None, None, 75), None);
        assert_eq!(
            memory_share(Some(1000 * p), None, 250),
            Some(1000 * p),
            "at most all of it"
        );
        assert_eq!(
            memory_share(Some(10 * p), None, 33),
            Some(3 * p),
            "whole pages"
        );
    }

    /// A model of the kernel's cgroup v2 rules that matter to the supervisor leaf: a
    /// non-root cgroup with processes cannot enable controllers for its children, nor take
    /// processes while it has enabled them; a move takes a process out of its cgroup.
    #[derive(Default)]
    struct Model {
        procs: std::cell::RefCell<std::collections::BTreeMap<PathBuf, Vec<String>>>,
        /// Controllers that cannot be disabled (a child still uses them).
        in_use: Vec<String>,
    }

    impl Model {
        fn procs_of(&self, cgroup: &Path) -> Vec<String> {
            self.procs.borrow().get(cgroup).cloned().unwrap_or_default()
        }
        fn enabled(cgroup: &Path) -> Vec<String> {
            fs::read_to_string(cgroup.join("cgroup.subtree_control"))
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        }
    }

    impl V2Kernel for Model {
        fn subtree_control(&self, cgroup: &Path, change: &str) -> io::Result<()> {
            let mut enabled = Model::enabled(cgroup);
            for token in change.split_whitespace() {
                let (sign, c) = token.split_at(1);
                if sign == "+" {
                    if !self.procs_of(cgroup).is_empty() {
                        return Err(io::Error::from_raw_os_error(libc::EBUSY));
                    }
                    if !enabled.iter().any(|e| e == c) {
                        enabled.push(c.to_owned());
                    }
                } else {
                    if self.in_use.iter().any(|u| u == c) {
                        return Err(io::Error::from_raw_os_error(libc::EBUSY));
                    }
                    enabled.retain(|e| e != c);
                }
            }
            fs::write(cgroup.join("cgroup.subtree_control"), enabled.join(" "))
        }
        fn procs(&self, cgroup: &Path) -> io::Result<Vec<String>> {
            Ok(self.procs_of(cgroup))
        }
        fn move_into(&self, cgroup: &Path, pid: &str) -> io::Result<()> {
            if !Model::enabled(cgroup).is_empty() {
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            let mut procs = self.procs.borrow_mut();
            for list in procs.values_mut() {
                list.retain(|p| p != pid);
            }
            procs
                .entry(cgroup.to_path_buf())
                .or_default()
                .push(pid.to_owned());
            Ok(())
        }
    }

    /// Started in a cgroup with other processes (a login shell's scope): they move into the
    /// supervisor leaf with the runner, and when it stops everything is as it was found — the
    /// controllers disabled, every process (one started meanwhile too) back, the leaf gone.
    #[test]
    fn v2_a_cgroup_with_processes_is_put_back_as_found() {
        let t = tempfile::tempdir().unwrap();
        let parent = t.path().join("user.slice/session-1.scope");
        fs::create_dir_all(&parent).unwrap();
        let k = Model::default();
        k.procs
            .borrow_mut()
            .insert(parent.clone(), vec!["42".into(), "100".into()]);
        let s = enable_controllers(&k, &parent, "piston-runner", "+memory +pids +cpu", "100")
            .unwrap()
            .expect("supervised");
        let leaf = parent.join("piston-runner-supervisor");
        assert_eq!(
            s,
            Supervised {
                parent: parent.clone(),
                leaf: leaf.clone(),
                enabled: vec!["memory".into(), "pids".into(), "cpu".into()],
                others: vec!["42".into()],
            }
        );
        assert_eq!(Model::enabled(&parent), ["memory", "pids", "cpu"]);
        assert_eq!(k.procs_of(&leaf), ["42", "100"]);
        assert!(k.procs_of(&parent).is_empty());
        // The shell starts a process while the server runs.
        k.move_into(&leaf, "43").unwrap();
        restore(&k, &s).unwrap();
        assert!(Model::enabled(&parent).is_empty());
        assert_eq!(k.procs_of(&parent), ["42", "100", "43"]);
        assert!(!leaf.exists());
    }

    /// A cgroup without processes (a delegated parent of its own, the root) needs no leaf.
    #[test]
    fn v2_an_empty_cgroup_needs_no_supervisor_leaf() {
        let t = tempfile::tempdir().unwrap();
        let k = Model::default();
        let s = enable_controllers(&k, t.path(), "piston-runner", "+memory +pids", "100").unwrap();
        assert_eq!(s, None);
        assert_eq!(Model::enabled(t.path()), ["memory", "pids"]);
        assert!(!t.path().join("piston-runner-supervisor").exists());
    }

    /// A controller that cannot be disabled (another runner's cgroup under the same parent
    /// still uses it) is reported, and the processes still go back.
    #[test]
    fn v2_restore_goes_on_past_a_controller_in_use() {
        let t = tempfile::tempdir().unwrap();
        let parent = t.path().to_path_buf();
        let mut k = Model::default();
        k.procs
            .borrow_mut()
            .insert(parent.clone(), vec!["100".into()]);
        let s = enable_controllers(&k, &parent, "piston-runner", "+memory +pids", "100")
            .unwrap()
            .expect("supervised");
        k.in_use = vec!["memory".into()];
        let e = restore(&k, &s).unwrap_err().to_string();
        assert!(e.contains("cgroup.subtree_control"), "{e}");
        assert_eq!(Model::enabled(&parent), ["memory"]);
        // With a controller still enabled, the kernel refuses the move back; the leaf stays
        // with its process in it, which is where it can be.
        assert_eq!(k.procs_of(&s.leaf), ["100"]);
        assert!(s.leaf.is_dir());
    }

    /// A runner started from inside the supervisor leaf a dead runner left (by the shell that
    /// was moved there) places its cgroups beside the leaf, not inside it.
    #[test]
    fn v2_a_leftover_supervisor_leaf_is_not_nested_into() {
        let (_t, cfg) = fake_v2("/user.slice/s.scope/piston-runner-supervisor");
        Cgroups::init(&cfg).unwrap();
        assert!(cfg.root.join("user.slice/s.scope/piston-runner").is_dir());
        assert!(
            !cfg.root
                .join("user.slice/s.scope/piston-runner-supervisor/piston-runner")
                .exists()
        );
    }

    #[test]
    fn v2_configured_parent_and_existing_controllers() {
        let (_t, mut cfg) = fake_v2("/");
        cfg.parent = Some("/piston.slice".into());
        fs::create_dir(cfg.root.join("piston.slice")).unwrap();
        fs::write(
            cfg.root.join("piston.slice/cgroup.subtree_control"),
            "cpu memory pids",
        )
        .unwrap();
        Cgroups::init(&cfg).unwrap();
        // Already enabled: left alone.
        assert_eq!(
            fs::read_to_string(cfg.root.join("piston.slice/cgroup.subtree_control")).unwrap(),
            "cpu memory pids"
        );
        assert!(cfg.root.join("piston.slice/piston-runner").is_dir());
    }

    #[test]
    fn v2_missing_controllers() {
        let (_t, mut cfg) = fake_v2("/ctr");
        fs::write(cfg.root.join("ctr/cgroup.controllers"), "cpu pids\n").unwrap();
        let e = Cgroups::init(&cfg).unwrap_err().to_string();
        assert!(e.contains("memory and pids are not available"), "{e}");
        // Non-strict (tests on hybrid hosts): only what exists is enabled and limited.
        cfg.require_controllers = false;
        let cg = Cgroups::init(&cfg).unwrap();
        assert_eq!(
            fs::read_to_string(cfg.root.join("ctr/cgroup.subtree_control")).unwrap(),
            "+pids +cpu"
        );
        let job = cg.create_job("j").unwrap();
        let dir = cfg.root.join("ctr/piston-runner/j");
        fs::write(dir.join("pids.max"), "max").unwrap();
        job.set_limits(CgroupLimits {
            memory_bytes: Some(1 << 20),
            pids: 9,
        })
        .unwrap();
        assert!(!dir.join("memory.max").exists());
        assert_eq!(fs::read_to_string(dir.join("pids.max")).unwrap(), "9");
    }

    /// v1: the CPU cap goes into the cpu hierarchy when it is one of its own (and init joins it),
    /// into cpuacct's directory when the two are co-mounted, nowhere without a cpu controller.
    #[test]
    fn v1_cpu_cap() {
        for layout in ["separate", "co-mounted", "none"] {
            let t = tempfile::tempdir().unwrap();
            let root = t.path().join("cg");
            for c in ["memory", "pids", "cpuacct"] {
                fs::create_dir_all(root.join(c)).unwrap();
            }
            fs::write(root.join("memory/memory.limit_in_bytes"), "0").unwrap();
            match layout {
                "separate" => {
                    fs::create_dir_all(root.join("cpu/svc")).unwrap();
                    fs::write(root.join("cpu/cpu.cfs_quota_us"), "-1").unwrap();
                }
                "co-mounted" => {
                    std::os::unix::fs::symlink("cpuacct", root.join("cpu")).unwrap();
                    fs::write(root.join("cpuacct/cpu.cfs_quota_us"), "-1").unwrap();
                }
                _ => {}
            }
            let selfcg = t.path().join("self");
            fs::write(
                &selfcg,
                "8:pids:/\n4:memory:/\n3:cpu:/svc\n2:cpuacct:/\n0::/\n",
            )
            .unwrap();
            let cfg = CgroupConfig {
                root: root.clone(),
                proc_self_cgroup: selfcg,
                cpu_max_percent: 250,
                ..CgroupConfig::default()
            };
            let cg = Cgroups::init(&cfg).unwrap();
            if layout == "co-mounted" {
                // The kernel makes the control files in a new cgroup; the fake tree does not.
                let dir = root.join("cpuacct/piston-runner/j");
                fs::create_dir_all(&dir).unwrap();
                fs::write(dir.join("cpu.cfs_quota_us"), "-1").unwrap();
            }
            let job = cg.create_job("j").unwrap();
            let quota =
                |dir: &str| fs::read_to_string(root.join(dir).join("cpu.cfs_quota_us")).ok();
            match layout {
                "separate" => {
                    assert_eq!(quota("cpu/svc/piston-runner/j").as_deref(), Some("250000"));
                    assert!(
                        job.procs_files()
                            .contains(&root.join("cpu/svc/piston-runner/j/cgroup.procs")),
                        "init joins the cpu hierarchy too"
                    );
                }
                "co-mounted" => {
                    assert_eq!(quota("cpuacct/piston-runner/j").as_deref(), Some("250000"));
                    assert_eq!(job.procs_files().len(), 3);
                }
                _ => {
                    assert_eq!(quota("cpuacct/piston-runner/j"), None);
                    assert_eq!(job.procs_files().len(), 3);
                }
            }
        }
    }

    #[test]
    fn v1_layout() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("cg");
        for c in ["memory/pa/x", "pids", "cpuacct"] {
            fs::create_dir_all(root.join(c)).unwrap();
        }
        fs::write(root.join("memory/memory.limit_in_bytes"), "0").unwrap();
        let selfcg = t.path().join("self");
        fs::write(
            &selfcg,
            "8:pids:/\n4:memory:/pa/x\n2:cpuacct:/\n1:cpu:/\n0::/\n",
        )
        .unwrap();
        let cfg = CgroupConfig {
            root: root.clone(),
            proc_self_cgroup: selfcg,
            ..CgroupConfig::default()
        };
        let cg = Cgroups::init(&cfg).unwrap();
        assert_eq!(cg.version(), CgroupVersion::V1);
        let mem = root.join("memory/pa/x/piston-runner/j");
        fs::create_dir_all(&mem).unwrap();
        fs::write(mem.join("memory.memsw.limit_in_bytes"), "").unwrap();
        let job = cg.create_job("j").unwrap();
        job.set_limits(CgroupLimits {
            memory_bytes: Some(1000),
            pids: 5,
        })
        .unwrap();
        assert_eq!(
            fs::read_to_string(mem.join("memory.memsw.limit_in_bytes")).unwrap(),
            "1000"
        );
        assert_eq!(
            fs::read_to_string(root.join("pids/piston-runner/j/pids.max")).unwrap(),
            "5"
        );
        assert_eq!(
            job.procs_files(),
            vec![
                mem.join("cgroup.procs"),
                root.join("pids/piston-runner/j/cgroup.procs"),
                root.join("cpuacct/piston-runner/j/cgroup.procs"),
            ]
        );
        let ca = root.join("cpuacct/piston-runner/j");
        fs::write(ca.join("cpuacct.usage"), "3000000\n").unwrap();
        fs::write(ca.join("cpuacct.stat"), "user 2\nsystem 1\n").unwrap();
        assert_eq!(
            job.cpu().unwrap(),
            CpuUsage {
                total_us: 3000,
                user_us: 20000,
                system_us: 10000
            }
        );
        fs::write(
            mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert!(job.oom_killed());
    }

    #[test]
    fn no_cgroups_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let cfg = CgroupConfig {
            root: t.path().to_path_buf(),
            proc_self_cgroup: t.path().join("nope"),
            ..CgroupConfig::default()
        };
        assert!(matches!(
            Cgroups::init(&cfg),
            Err(RunnerError::NoCgroups { .. })
        ));
    }
}
