//! The `piston-sandbox` helper: builds one sandbox and runs one command in it.
//!
//! Processes, like isolate's keeper/proxy/inside with the library as the keeper:
//!
//! * **zygote** (`piston-sandbox --zygote`, one per runner, root, host namespaces,
//!   single-threaded; see [`zygote_main`]): forks each job's init on request, so a job costs a
//!   fork of a small, already initialised process instead of an exec, dynamic linking and the
//!   Rust runtime's start-up.
//! * **init** (forked with `CLONE_PARENT` into new PID, network, IPC and UTS namespaces — the
//!   library's child and PID 1 of the job, still root): enters the job cgroup (v1: writes
//!   itself into `cgroup.procs`; v2: born there with `CLONE_INTO_CGROUP`) and a cgroup namespace
//!   rooted at it, waits for the spec, builds the root (mount namespace, overlay, /proc, /dev,
//!   /tmp, /dev/shm, pivot_root), starts the target, forwards signals to it, reaps every process,
//!   reports the target's end on fd 4 and exits — which makes the kernel SIGKILL everything left
//!   in the namespace (orphans, daemons). The library ends a job by SIGKILLing init.
//! * **target** (PID 2): drops to the job's uid/gid, drops every capability, sets rlimits,
//!   no_new_privs and the seccomp filter, then execs the command.
//!
//! fds of init: 0/1/2 the target's stdin/stdout/stderr pipes, 3 the spec (read to EOF), 4 the
//! report pipe (write). Every step, in order, is listed in `docs/sandbox.md`.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Write};

use crate::spec::{CgroupJoin, HelperReport, SandboxSpec};
use crate::sys;

mod root;

const SPEC_FD: i32 = 3;
const REPORT_FD: i32 = 4;
/// The zygote's end of its socket to the library.
const ZYGOTE_FD: i32 = 3;
/// fds an init starts with (0..=4, see the module docs); a v2 request adds the job cgroup's
/// directory as a sixth.
pub(crate) const HELPER_FDS: usize = 5;
/// The argument that makes the helper binary a zygote.
pub(crate) const ZYGOTE_ARG: &str = "--zygote";

/// Entry point of the helper binary, which the library starts as a zygote ([`ZYGOTE_ARG`]).
pub fn helper_main() -> ! {
    if std::env::args_os().nth(1).is_some_and(|a| a == ZYGOTE_ARG) {
        zygote_main()
    }
    let _ = writeln!(
        io::stderr(),
        "piston-sandbox: started by the runner library as `piston-sandbox {ZYGOTE_ARG}`, not by hand"
    );
    sys::exit_now(2)
}

/// The zygote: single-threaded and long-lived, it waits on its socket (fd 3) for one-byte
/// requests that carry a new job's five fds (and, on cgroup v2, its cgroup directory) with
/// `SCM_RIGHTS`, forks the job's init into new namespaces with `CLONE_PARENT` — so init is the
/// library's child, waited for and signalled by it directly — and answers with init's pid (or
/// `-errno`) as a native-endian `i32`. It holds no job state: an init starts from the zygote's
/// memory, which is the binary's state right after start-up, the prebuilt seccomp filter and
/// every forwardable signal blocked (so none is lost before init waits for them). It exits at
/// end of stream, i.e. when the library drops it or its process dies.
fn zygote_main() -> ! {
    // Built once, before any init is forked: every init inherits it and its target installs it
    // just before exec.
    let filter = crate::seccomp::filter();
    // `ps` tells the zygote (`piston-zygote`, `… --zygote`) from the inits, which take the
    // binary's own name back and show no arguments.
    let init_name = sys::thread_name().ok();
    let arg_tail = sys::ArgTail::of_self().ok();
    let _ = sys::set_thread_name(c"piston-zygote");
    if sys::SigSet::forwardable().block().is_err() {
        sys::exit_now(1);
    }
    sys::umask(0o022);
    // Every namespace but the mount namespace, which init creates when the job arrives (so
    // that its copy of the host's mount table has the job directory and current layers), and
    // the cgroup namespace, which init creates once it is in the job cgroup.
    let flags = (libc::CLONE_PARENT
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS) as u64;
    let mut request = [0u8; 1];
    loop {
        let fds = match sys::recv_with_fds(ZYGOTE_FD, &mut request) {
            Ok((0, _)) => sys::exit_now(0),
            Ok((_, fds)) => fds,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let _ = zygote_reply(-libc::EINVAL);
                continue;
            }
            Err(_) => sys::exit_now(1),
        };
        let reply = if fds.len() == HELPER_FDS || fds.len() == HELPER_FDS + 1 {
            use std::os::fd::AsRawFd;
            let cgroup = fds.get(HELPER_FDS).map(|fd| fd.as_raw_fd());
            match sys::clone3(flags, cgroup) {
                Ok(0) => become_init(fds, init_name.as_deref(), arg_tail, &filter),
                Ok(pid) => pid,
                Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
            }
        } else {
            -libc::EINVAL
        };
        drop(fds);
        if zygote_reply(reply).is_err() {
            sys::exit_now(1);
        }
    }
}

fn zygote_reply(reply: i32) -> io::Result<()> {
    let mut sock = std::mem::ManuallyDrop::new(sys::file_from_fd(ZYGOTE_FD));
    sock.write_all(&reply.to_ne_bytes())
}

/// In a freshly forked init: the received fds go to 0..=4 (replacing the zygote's /dev/null
/// stdio, and its socket at 3; a v2 cgroup directory is closed), then [`init_main`].
fn become_init(
    fds: Vec<std::os::fd::OwnedFd>,
    name: Option<&std::ffi::CStr>,
    arg_tail: Option<sys::ArgTail>,
    filter: &[libc::sock_filter],
) -> ! {
    use std::os::fd::AsRawFd;
    if let Some(name) = name {
        let _ = sys::set_thread_name(name);
    }
    if let Some(tail) = arg_tail {
        tail.blank();
    }
    // Above 9 first, so no dup2 below overwrites a source it still needs.
    let high: Vec<_> = match fds
        .iter()
        .take(HELPER_FDS)
        .map(sys::dup_high)
        .collect::<io::Result<_>>()
    {
        Ok(h) => h,
        Err(_) => sys::exit_now(1),
    };
    drop(fds);
    for (i, fd) in high.iter().enumerate() {
        if sys::dup2(fd.as_raw_fd(), i as i32).is_err() {
            sys::exit_now(1);
        }
    }
    drop(high);
    init_main(filter)
}

/// Init before the spec: the job cgroup and the cgroup namespace, then [`init`].
fn init_main(filter: &[libc::sock_filter]) -> ! {
    let mut input = std::io::BufReader::new(sys::file_from_fd(SPEC_FD));
    // Line 1: the cgroup to join. A pre-spawned ("warm") init joins it at once and then waits
    // for the spec: the v1 cgroup migration (an RCU grace period) and the namespace creation are
    // off the job's critical path.
    let mut line = String::new();
    if let Err(e) = std::io::BufRead::read_line(&mut input, &mut line) {
        fail(&format!("read cgroup line: {e}"));
    }
    let join: CgroupJoin = match serde_json::from_str(&line) {
        Ok(j) => j,
        Err(e) => fail(&format!("parse cgroup line: {e}")),
    };
    // v1: "0" moves the writer itself (a pid would be read in our new PID namespace). Before
    // anything else exists, so every later process of the job is born inside.
    for procs in &join.procs {
        if let Err(e) = fs::write(procs, "0") {
            fail(&format!("join cgroup {procs}: {e}"));
        }
    }
    // Rooted at the job cgroup: the job sees itself at `/`, nothing of the host's tree.
    if let Err(e) = sys::unshare(libc::CLONE_NEWCGROUP) {
        fail(&format!("unshare cgroup namespace: {e}"));
    }
    init(input, &sys::SigSet::forwardable(), filter)
}

fn report(r: &HelperReport) {
    let mut f = sys::file_from_fd(REPORT_FD);
    let _ = f.write_all(r.to_line().as_bytes());
    std::mem::forget(f); // keep fd 4 open; it is close-on-exec for the target anyway
}

fn fail(msg: &str) -> ! {
    report(&HelperReport::Error(msg.to_string()));
    sys::exit_now(1)
}

fn ctx<T>(what: &str, r: io::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

type SpecInput = std::io::BufReader<fs::File>;

/// PID 1 of the job. Never returns. No parent-death signal: the parent is whichever thread of
/// the library started the zygote, and threads come and go; should the server die, a warm init
/// sees the end of its spec pipe, and a running job ends by the wall-clock backstop.
fn init(mut input: SpecInput, signals: &sys::SigSet, filter: &[libc::sock_filter]) -> ! {
    let ready_ns = sys::monotonic_ns();
    let mut spec_raw = Vec::new();
    if let Err(e) = input.read_to_end(&mut spec_raw) {
        fail(&format!("read spec: {e}"));
    }
    drop(input);
    if spec_raw.is_empty() {
        sys::exit_now(0); // the pool was shut down (or the server died) before a job came
    }
    let spec: SandboxSpec = match serde_json::from_slice(&spec_raw) {
        Ok(s) => s,
        Err(e) => fail(&format!("parse spec: {e}")),
    };
    if spec.timings {
        let _ = writeln!(
            io::stderr(),
            "piston-sandbox: spec arrived {} us after the helper was ready",
            (sys::monotonic_ns() - ready_ns) / 1000
        );
    }
    // Backstop for the wall clock the library enforces: should the server die mid-job, the
    // job still ends (the library's own deadline is always earlier).
    if spec.wall_backstop_s > 0 {
        sys::alarm(spec.wall_backstop_s.min(u32::MAX as u64) as u32);
    }
    mark(&spec, "start");
    if let Err(e) = sys::unshare(libc::CLONE_NEWNS) {
        fail(&format!("unshare mount namespace: {e}"));
    }
    mark(&spec, "unshare(CLONE_NEWNS)");
    if let Err(e) = root::build_root(&root::SysKernel, &spec) {
        fail(&e);
    }
    // The report fd must not survive into the target's exec (it could forge results).
    let _ = sys::set_cloexec(REPORT_FD);
    mark(&spec, "hostname");
    let exec = exec_args(&spec);
    let start = sys::monotonic_ns();
    // Init is single-threaded, and the target ends in execve or _exit.
    let target = match sys::vfork_run(&mut || target(&spec, filter, &exec)) {
        Ok(p) => p,
        Err(e) => fail(&format!("start target: {e}")),
    };
    mark(&spec, "target: exec");
    for fd in 0..3 {
        sys::close(fd);
    }
    loop {
        let (sig, from_kernel) = match signals.wait_info() {
            Ok(s) => s,
            Err(e) => fail(&format!("sigwaitinfo: {e}")),
        };
        if sig == libc::SIGALRM && from_kernel {
            // The backstop: exiting as PID 1 kills the whole job.
            sys::exit_now(1);
        }
        if sig != libc::SIGCHLD {
            // The target leads its own session and process group (setsid): a signal goes to the
            // whole group, so it reaches the program even when a `run` wrapper script started it
            // as a child instead of exec'ing it.
            if sys::kill(-target, sig).is_err() {
                let _ = sys::kill(target, sig);
            }
            continue;
        }
        // Reap everything that ended; orphans are re-parented to us.
        while let Ok(Some(exit)) = sys::wait(-1, true) {
            if exit.pid == target {
                let wall_us = (sys::monotonic_ns() - start) / 1000;
                report(&HelperReport::Finished {
                    code: exit.code(),
                    signal: exit.signal(),
                    wall_us,
                    utime_us: exit.utime_us,
                    stime_us: exit.stime_us,
                    maxrss_kb: exit.maxrss_kb,
                });
                // Closed here, not by exit: the kernel releases an exiting task's files only
                // after it has torn down its namespaces (the mount namespace costs an RCU grace
                // period), so the EOF the library waits for would come that much later.
                sys::close(REPORT_FD);
                // Exiting as PID 1 makes the kernel kill every remaining process of the job.
                sys::exit_now(0);
            }
        }
    }
}

/// Diagnostics: elapsed time since the previous mark, written to stderr.
fn mark(spec: &SandboxSpec, what: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    if spec.timings {
        let now = sys::monotonic_ns();
        let last = LAST.swap(now, Ordering::Relaxed);
        if last != 0 {
            let _ = writeln!(
                io::stderr(),
                "piston-sandbox: {what} {} us",
                (now - last) / 1000
            );
        }
    }
}

/// The target's program, or why it cannot be run.
type ExecArgs = Result<sys::ExecImage, String>;

/// Built by init before the target starts: the target shares init's memory until it execs and
/// must not allocate (see `sys::vfork_run`).
fn exec_args(spec: &SandboxSpec) -> ExecArgs {
    let c = |v: &[String], what: &str| {
        v.iter()
            .map(|a| sys::cstring(a))
            .collect::<io::Result<Vec<CString>>>()
            .map_err(|e| format!("{what}: {e}"))
    };
    sys::ExecImage::new(c(&spec.argv, "argv")?, c(&spec.env, "env")?)
        .map_err(|e| format!("argv: {e}"))
}

/// A program that cannot be started is the program's failure, not the sandbox's: as a shell (and
/// `env`, `chroot`, …) does, say why on its stderr and exit with 127 when there is no such
/// program, 126 when there is one that cannot be run. A stage whose script is exec'd without the
/// shell fails as it did with it.
fn exec_failed(program: &std::ffi::CStr, e: &io::Error) -> ! {
    use std::io::Write as _;
    let program = program.to_string_lossy();
    let (code, why) = match e.raw_os_error() {
        Some(libc::ENOENT) => (127, "not found".to_owned()),
        _ => (126, e.to_string()),
    };
    let _ = writeln!(io::stderr(), "{program}: {why}");
    sys::exit_now(code)
}

/// The target: drop everything, then exec. Never returns.
fn target(spec: &SandboxSpec, filter: &[libc::sock_filter], exec: &ExecArgs) -> ! {
    let r = (|| -> Result<(), String> {
        ctx("unblock signals", sys::SigSet::unblock_all())?;
        ctx(
            "default signal dispositions",
            sys::SigSet::default_all_dispositions(),
        )?;
        ctx("setsid", sys::setsid())?;
        let rl = spec.rlimits;
        let inf = libc::RLIM_INFINITY;
        let or_inf = |v: u64| if v == 0 { inf } else { v };
        // 1, not 0: the kernel skips a piped `core_pattern` helper only for a limit of 1 (its
        // own marker against recursion), and 1 byte is below any core file. The seccomp filter
        // keeps the job from lowering it to 0.
        ctx("RLIMIT_CORE", sys::setrlimit(libc::RLIMIT_CORE, 1, 1))?;
        ctx("RLIMIT_MEMLOCK", sys::setrlimit(libc::RLIMIT_MEMLOCK, 0, 0))?;
        ctx(
            "RLIMIT_NOFILE",
            sys::setrlimit(libc::RLIMIT_NOFILE, rl.nofile, rl.nofile),
        )?;
        ctx(
            "RLIMIT_FSIZE",
            sys::setrlimit(libc::RLIMIT_FSIZE, or_inf(rl.fsize), or_inf(rl.fsize)),
        )?;
        ctx(
            "RLIMIT_STACK",
            sys::setrlimit(libc::RLIMIT_STACK, or_inf(rl.stack), or_inf(rl.stack)),
        )?;
        let (cs, ch) = if rl.cpu_seconds == 0 {
            (inf, inf)
        } else {
            (rl.cpu_seconds, rl.cpu_seconds + 1)
        };
        ctx("RLIMIT_CPU", sys::setrlimit(libc::RLIMIT_CPU, cs, ch))?;
        ctx(
            "RLIMIT_NPROC",
            sys::setrlimit(libc::RLIMIT_NPROC, or_inf(rl.nproc), or_inf(rl.nproc)),
        )?;
        // The job's processes are the first the kernel's OOM killer takes, on the host and in
        // the job's cgroup (where init, at the server's score, then outlives them and reports).
        ctx(
            "oom_score_adj",
            sys::write_file(c"/proc/self/oom_score_adj", b"1000"),
        )?;
        ctx("drop capability bounding set", sys::drop_bounding_set())?;
        if spec.uid == 0 || spec.gid == 0 {
            return Err("refusing to run the target as root".into());
        }
        ctx("set uid/gid", sys::set_ids(spec.uid, spec.gid))?;
        ctx("clear capabilities", sys::clear_all_caps())?;
        // Formatted only on failure: the target shares init's memory until it execs (see
        // `sys::vfork_run`), so its path to exec allocates nothing.
        std::env::set_current_dir(&spec.cwd).map_err(|e| format!("chdir {}: {e}", spec.cwd))?;
        ctx("no_new_privs", sys::set_no_new_privs())?;
        ctx("mark fds close-on-exec", sys::cloexec_from(3))?;
        if spec.seccomp {
            // Timings (a diagnostic): the marks share init's clock, so these two split the
            // target's set-up; init's next mark is the exec.
            mark(spec, "target: drop privileges");
            ctx("seccomp", sys::install_seccomp(filter))?;
            mark(spec, "target: install seccomp filter");
        }
        let image = exec.as_ref().map_err(String::clone)?;
        let e = image.exec();
        exec_failed(image.program(), &e)
    })();
    if let Err(e) = r {
        report(&HelperReport::Error(e));
    }
    sys::exit_now(127)
}
