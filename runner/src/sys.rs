//! Thin, audited wrappers around the Linux system calls the sandbox needs.
//!
//! This is the only module of the workspace where `unsafe` is allowed. Every wrapper takes owned
//! Rust values (`&CStr`, slices), checks the return value and turns `-1` into `io::Error`; the
//! callers never see a raw pointer. Security reasoning lives with the callers (`helper.rs` for the
//! isolation order, `seccomp.rs` for the filter).
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

pub(crate) type Pid = libc::pid_t;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A pipe whose both ends are close-on-exec (so concurrent spawns in other threads never leak them).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Duplicates `fd` to a number >= 10 (close-on-exec), so that the dup2 actions of a spawn that
/// target 0..=4 can never overwrite one of their own sources.
pub(crate) fn dup_high(fd: &OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a valid fd returns a new fd or -1.
    let new = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) })?;
    // SAFETY: `new` is a freshly created fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd number; an invalid fd only yields EBADF.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

pub(crate) fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd number; an invalid fd only yields EBADF.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok(())
}

fn cstr_ptrs(v: &[CString]) -> Vec<*mut libc::c_char> {
    v.iter()
        .map(|s| s.as_ptr().cast_mut())
        .chain(std::iter::once(ptr::null_mut()))
        .collect()
}

/// posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK) + exec): no page-table copy of the caller, so it
/// is cheap from a large multi-threaded server. `fds` maps source fds to target numbers; sources
/// must not collide with targets (use [`dup_high`]). Signal mask and dispositions are reset.
pub(crate) fn spawn(
    path: &CStr,
    argv: &[CString],
    env: &[CString],
    fds: &[(RawFd, libc::c_int)],
) -> io::Result<Pid> {
    let argv_p = cstr_ptrs(argv);
    let env_p = cstr_ptrs(env);
    // SAFETY: the attr and file-action objects are initialised before use and destroyed on every
    // path; all pointers passed to posix_spawn point into vectors that outlive the call.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut actions);
        libc::posix_spawnattr_init(&mut attr);
        let mut res = 0;
        for &(src, dst) in fds {
            if res == 0 {
                res = libc::posix_spawn_file_actions_adddup2(&mut actions, src, dst);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigdelset(&mut all, libc::SIGKILL);
        libc::sigdelset(&mut all, libc::SIGSTOP);
        if res == 0 {
            res = libc::posix_spawnattr_setsigmask(&mut attr, &empty);
        }
        if res == 0 {
            res = libc::posix_spawnattr_setsigdefault(&mut attr, &all);
        }
        if res == 0 {
            res = libc::posix_spawnattr_setflags(
                &mut attr,
                (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
            );
        }
        let mut pid: Pid = 0;
        if res == 0 {
            res = libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                &actions,
                &attr,
                argv_p.as_ptr(),
                env_p.as_ptr(),
            );
        }
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        if res != 0 {
            return Err(io::Error::from_raw_os_error(res));
        }
        Ok(pid)
    }
}

pub(crate) fn kill(pid: Pid, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    check(unsafe { libc::kill(pid, sig) })?;
    Ok(())
}

/// How a waited-for process ended, with its resource usage.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exit {
    pub pid: Pid,
    pub status: libc::c_int,
    pub utime_us: u64,
    pub stime_us: u64,
    pub maxrss_kb: u64,
}

impl Exit {
    pub fn code(&self) -> Option<i32> {
        libc::WIFEXITED(self.status).then(|| libc::WEXITSTATUS(self.status))
    }
    pub fn signal(&self) -> Option<i32> {
        libc::WIFSIGNALED(self.status).then(|| libc::WTERMSIG(self.status))
    }
}

/// wait4; `None` when `nohang` and nothing has ended yet. Retries on EINTR.
pub(crate) fn wait(pid: Pid, nohang: bool) -> io::Result<Option<Exit>> {
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data; wait4 fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let flags = if nohang { libc::WNOHANG } else { 0 };
        // SAFETY: valid pointers to stack locals.
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Ok(None);
        }
        let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        return Ok(Some(Exit {
            pid: r,
            status,
            utime_us: tv(ru.ru_utime),
            stime_us: tv(ru.ru_stime),
            maxrss_kb: ru.ru_maxrss as u64,
        }));
    }
}

pub(crate) fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a valid mutable slice of pollfd of the given length.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if r == -1 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(r as usize)
}

pub(crate) fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in string"))
}

pub(crate) fn mount(
    src: &str,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src = cstring(src)?;
    let target = cstring(target)?;
    let fstype = fstype.map(cstring).transpose()?;
    let data = data.map(cstring).transpose()?;
    // SAFETY: all strings are NUL-terminated and live across the call; null is allowed for
    // fstype/data.
    check(unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ref().map_or(ptr::null(), |s| s.as_ptr()),
            flags,
            data.as_ref()
                .map_or(ptr::null(), |s| s.as_ptr().cast::<libc::c_void>()),
        )
    })?;
    Ok(())
}

pub(crate) fn umount(target: &str, flags: libc::c_int) -> io::Result<()> {
    let target = cstring(target)?;
    // SAFETY: NUL-terminated string.
    check(unsafe { libc::umount2(target.as_ptr(), flags) })?;
    Ok(())
}

pub(crate) fn pivot_root_dot() -> io::Result<()> {
    let dot = c".";
    // SAFETY: raw syscall with two valid C strings.
    check_long(unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) })?;
    Ok(())
}

pub(crate) fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length describe a valid byte slice.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })?;
    Ok(())
}

pub(crate) fn mknod_char(path: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
    let p = cstring(path)?;
    let dev = libc::makedev(major, minor);
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::mknod(p.as_ptr(), libc::S_IFCHR | mode, dev) })?;
    Ok(())
}

pub(crate) fn chmod(path: &str, mode: u32) -> io::Result<()> {
    let p = cstring(path)?;
    // SAFETY: NUL-terminated path. Only used on paths the helper itself just created, before any
    // untrusted code exists.
    check(unsafe { libc::chmod(p.as_ptr(), mode) })?;
    Ok(())
}

pub(crate) fn setrlimit(
    resource: libc::__rlimit_resource_t,
    soft: u64,
    hard: u64,
) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: valid pointer to a local.
    check(unsafe { libc::setrlimit(resource, &lim) })?;
    Ok(())
}

/// clone3 without CLONE_VM (fork semantics: returns 0 in the child). Only called from the
/// single-threaded helper. `cgroup_fd` adds CLONE_INTO_CGROUP (cgroup v2).
pub(crate) fn clone3(flags: u64, cgroup_fd: Option<RawFd>) -> io::Result<Pid> {
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    // With CLONE_PARENT the child signals our parent as we do (clone3 refuses an exit_signal).
    let parent = flags & libc::CLONE_PARENT as u64 != 0;
    let mut args = CloneArgs {
        flags,
        exit_signal: if parent { 0 } else { libc::SIGCHLD as u64 },
        ..Default::default()
    };
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: `args` is a correctly laid-out clone_args; without CLONE_VM the child gets its own
    // copy of the (single-threaded) address space, exactly like fork().
    let r = check_long(unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    })?;
    Ok(r as Pid)
}

/// Runs `child` in a new process that shares this one's memory until it execs or exits
/// (`clone(CLONE_VM | CLONE_VFORK)`, as posix_spawn does), on a stack of its own; returns its
/// pid once it has. No page tables are copied and nothing is copied on write, which a `fork` of
/// the job's init paid on every job. The caller must be single-threaded (no lock can be held by
/// another thread), and `child` must end in `execve` or `_exit`: anything it writes to memory
/// is seen by this process afterwards, so its normal path must not allocate (a child killed
/// inside malloc would leave the heap half-updated); allocating on an error path, just before
/// `_exit`, is fine.
pub(crate) fn vfork_run(child: &mut dyn FnMut() -> libc::c_int) -> io::Result<Pid> {
    extern "C" fn trampoline(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the `&mut &mut dyn FnMut` passed below, alive while the parent is
        // suspended in clone (CLONE_VFORK), which is for as long as this child runs.
        let child = unsafe { &mut *arg.cast::<&mut dyn FnMut() -> libc::c_int>() };
        child()
    }
    const STACK: usize = 1 << 20;
    // Pages are only touched as the child uses them (calloc of this size maps zero pages).
    let mut stack = vec![0u8; STACK];
    // SAFETY: the pointer is one past the end of `stack`, which outlives the child's use of it.
    let top = unsafe { stack.as_mut_ptr().add(STACK) };
    let top = (top as usize & !15) as *mut libc::c_void;
    let mut arg: &mut dyn FnMut() -> libc::c_int = child;
    // SAFETY: `trampoline` runs on `stack`; CLONE_VFORK suspends this thread until the child
    // execs or exits, so `stack` and `arg` stay valid and nothing else runs concurrently on the
    // shared memory.
    let pid = unsafe {
        libc::clone(
            trampoline,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut arg as *mut &mut dyn FnMut() -> libc::c_int).cast(),
        )
    };
    drop(stack);
    check(pid)
}

pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and skips atexit handlers (correct in a forked child).
    unsafe { libc::_exit(code) }
}

pub(crate) fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
    Ok(())
}

/// Drops every capability from the bounding set (needs CAP_SETPCAP, so before the uid change).
pub(crate) fn drop_bounding_set() -> io::Result<()> {
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) {
                break; // past CAP_LAST_CAP
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Clears the ambient set and the inheritable, permitted and effective sets of this process.
pub(crate) fn clear_all_caps() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // SAFETY: prctl with integer arguments.
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    })?;
    let mut hdr = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [Data::default(); 2];
    // SAFETY: capset reads a v3 header and two data structs.
    check_long(unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut Header, data.as_ptr()) })?;
    Ok(())
}

pub(crate) fn set_ids(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: setgroups with size 0 ignores the pointer; setres*id take integers.
    unsafe {
        check(libc::setgroups(0, ptr::null()))?;
        check(libc::setresgid(gid, gid, gid))?;
        check(libc::setresuid(uid, uid, uid))?;
    }
    Ok(())
}

pub(crate) fn setsid() -> io::Result<()> {
    // SAFETY: no preconditions.
    check(unsafe { libc::setsid() })?;
    Ok(())
}

/// Marks every fd >= `from` close-on-exec (close_range with CLOSE_RANGE_CLOEXEC, Linux 5.11).
pub(crate) fn cloexec_from(from: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: integer arguments only.
    check_long(unsafe {
        libc::syscall(libc::SYS_close_range, from, u32::MAX, CLOSE_RANGE_CLOEXEC)
    })?;
    Ok(())
}

pub(crate) fn close(fd: RawFd) {
    // SAFETY: closing an fd number this process owns and no Rust object wraps.
    unsafe {
        libc::close(fd);
    }
}

/// A signal set for sigwaitinfo-driven loops.
pub(crate) struct SigSet(libc::sigset_t);

impl SigSet {
    pub fn forwardable() -> SigSet {
        // SAFETY: sigset_t is plain data initialised by sigemptyset/sigaddset.
        unsafe {
            let mut s: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut s);
            for sig in 1..=64 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP && !(32..=33).contains(&sig) {
                    libc::sigaddset(&mut s, sig);
                }
            }
            SigSet(s)
        }
    }

    pub fn block(&self) -> io::Result<()> {
        // SAFETY: valid sigset pointer.
        check(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &self.0, ptr::null_mut()) })?;
        Ok(())
    }

    pub fn unblock_all() -> io::Result<()> {
        // SAFETY: valid sigset pointer.
        unsafe {
            let mut s: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut s);
            check(libc::sigprocmask(libc::SIG_SETMASK, &s, ptr::null_mut()))?;
        }
        Ok(())
    }

    /// Sets every signal's disposition back to the default (`SIG_DFL`), as a fresh process
    /// has it: what this process ignores would otherwise stay ignored across exec — the Rust
    /// runtime ignores SIGPIPE, and glibc's posix_spawn leaves its two internal signals (32,
    /// 33) ignored in the child. Raw `rt_sigaction`, since glibc refuses 32 and 33; allocates
    /// nothing (see [`vfork_run`]).
    pub fn default_all_dispositions() -> io::Result<()> {
        #[repr(C)]
        struct KernelSigaction {
            handler: usize,
            flags: u64,
            restorer: usize,
            mask: u64,
        }
        let default = KernelSigaction {
            handler: libc::SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        for sig in 1..=64 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            // SAFETY: `default` is a kernel sigaction (handler, flags, restorer, 64-bit mask)
            // that outlives the call; the old action is not asked for.
            check_long(unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &default as *const KernelSigaction,
                    ptr::null_mut::<KernelSigaction>(),
                    std::mem::size_of::<u64>(),
                )
            })?;
        }
        Ok(())
    }

    /// Waits for one signal of the set: its number, and whether the kernel (not a process) sent
    /// it (`si_code > 0`, e.g. an expired `alarm`).
    pub fn wait_info(&self) -> io::Result<(libc::c_int, bool)> {
        loop {
            // SAFETY: siginfo is plain data filled by the kernel.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: valid pointers.
            let r = unsafe { libc::sigwaitinfo(&self.0, &mut info) };
            if r == -1 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            return Ok((r, info.si_code > 0));
        }
    }
}

/// A program to exec, with its NULL-terminated pointer arrays and the paths to try built ahead of
/// time, so that [`ExecImage::exec`] allocates nothing (see [`vfork_run`]).
pub(crate) struct ExecImage {
    argv: Vec<CString>,
    env: Vec<CString>,
    argv_p: Vec<*mut libc::c_char>,
    env_p: Vec<*mut libc::c_char>,
    /// Where the program may be, in order: `argv[0]` itself if it has a `/`, else each `PATH`
    /// entry joined with it.
    paths: Vec<CString>,
}

/// `execvp`'s search path when the program's variables have no `PATH`.
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

impl ExecImage {
    /// `argv[0]` is the program: a path if it contains a `/`, else a name looked up in the `PATH`
    /// of `env` as `execvp` does (an empty entry is the working directory). Refuses an empty argv.
    pub fn new(argv: Vec<CString>, env: Vec<CString>) -> io::Result<ExecImage> {
        let Some(program) = argv.first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty argv"));
        };
        let paths = search_paths(program.as_bytes(), &env);
        // The pointers stay valid: a CString's bytes do not move when the CString does.
        let (argv_p, env_p) = (cstr_ptrs(&argv), cstr_ptrs(&env));
        Ok(ExecImage {
            argv,
            env,
            argv_p,
            env_p,
            paths,
        })
    }

    pub fn program(&self) -> &CStr {
        &self.argv[0]
    }

    /// Replaces this process with the program; returns only on failure, with `execvp`'s error:
    /// a path that exists but cannot be run (`EACCES`) wins over the ones that do not exist, and
    /// an error other than those ends the search.
    pub fn exec(&self) -> io::Error {
        debug_assert_eq!(self.argv_p.len(), self.argv.len() + 1);
        debug_assert_eq!(self.env_p.len(), self.env.len() + 1);
        let mut error = io::Error::from_raw_os_error(libc::ENOENT);
        let mut denied = false;
        for path in &self.paths {
            // SAFETY: NULL-terminated arrays of pointers into `self.argv`/`self.env`, which live
            // across the call; `path` is a C string.
            unsafe {
                libc::execve(
                    path.as_ptr(),
                    self.argv_p.as_ptr().cast(),
                    self.env_p.as_ptr().cast(),
                );
            }
            error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::EACCES) => denied = true,
                Some(libc::ENOENT | libc::ENOTDIR) => {}
                _ => return error,
            }
        }
        if denied {
            io::Error::from_raw_os_error(libc::EACCES)
        } else {
            error
        }
    }
}

/// The paths [`ExecImage::exec`] tries for `program`.
fn search_paths(program: &[u8], env: &[CString]) -> Vec<CString> {
    let whole = |bytes: &[u8]| CString::new(bytes).expect("no NUL: the bytes come from C strings");
    if program.contains(&b'/') || program.is_empty() {
        return vec![whole(program)];
    }
    let path = env
        .iter()
        .find_map(|kv| kv.as_bytes().strip_prefix(b"PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(|&b| b == b':')
        .map(|dir| match dir {
            b"" => whole(program),
            dir => whole(&[dir, b"/", program].concat()),
        })
        .collect()
}

/// Installs a classic BPF seccomp filter (requires no_new_privs or CAP_SYS_ADMIN).
pub(crate) fn install_seccomp(filter: &[libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: filter.len() as libc::c_ushort,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points to `filter`, which outlives the call; the kernel copies it.
    check(unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &prog as *const libc::sock_fprog as libc::c_ulong,
            0,
            0,
        )
    })?;
    Ok(())
}

/// Opens a directory as an O_PATH fd (for CLONE_INTO_CGROUP).
pub(crate) fn open_dir_path(path: &str) -> io::Result<OwnedFd> {
    let p = cstring(path)?;
    // SAFETY: NUL-terminated path.
    let fd = check(unsafe {
        libc::open(
            p.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Bytes in use on the file system at `path` (`statvfs`: blocks less free blocks).
pub(crate) fn fs_used_bytes(path: &std::path::Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: statvfs is plain data filled by the kernel.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: NUL-terminated path and a valid pointer.
    check(unsafe { libc::statvfs(p.as_ptr(), &mut st) })?;
    Ok((st.f_blocks.saturating_sub(st.f_bfree) as u64).saturating_mul(st.f_frsize as u64))
}

/// CLOCK_MONOTONIC in nanoseconds.
pub(crate) fn monotonic_ns() -> u64 {
    // SAFETY: timespec is plain data filled by the kernel.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Takes ownership of an fd number that the spawner promised (fds 3 and 4 of the helper).
pub(crate) fn file_from_fd(fd: RawFd) -> std::fs::File {
    // SAFETY: the helper is started by `process.rs` with exactly these fds dup2'ed into place and
    // nothing else in the helper wraps them; a wrong fd only produces EBADF on use.
    unsafe { std::fs::File::from_raw_fd(fd) }
}

pub(crate) fn umask(mask: u32) {
    // SAFETY: no preconditions.
    unsafe {
        libc::umask(mask);
    }
}

pub(crate) fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// clone3 with `flags` (fork semantics) whose child only execs `argv` (no variables,
/// stdout to /dev/null); waits for it. The benchmark's
/// "kernel namespace cost" baseline.
pub(crate) fn clone_exec_wait(flags: u64, argv: &[CString]) -> io::Result<()> {
    let argv_p = cstr_ptrs(argv);
    let env_p: [*mut libc::c_char; 1] = [ptr::null_mut()];
    let Some(path) = argv.first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty argv"));
    };
    let null = std::fs::File::options().write(true).open("/dev/null")?;
    let pid = clone3(flags, None)?;
    if pid == 0 {
        // SAFETY: in the child only dup2, execve and _exit run (async-signal-safe); the
        // pointers and the fd were prepared before the clone.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
            libc::execve(path.as_ptr(), argv_p.as_ptr().cast(), env_p.as_ptr().cast());
            libc::_exit(127);
        }
    }
    wait(pid, false)?;
    Ok(())
}

/// Schedules SIGALRM in `seconds` (0 cancels).
pub(crate) fn alarm(seconds: u32) {
    // SAFETY: no preconditions.
    unsafe {
        libc::alarm(seconds);
    }
}

pub(crate) fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: integer argument only.
    check(unsafe { libc::unshare(flags) })?;
    Ok(())
}

/// Ends a child at once: SIGKILL, then reaps it. For a job's init, from outside its PID
/// namespace the SIGKILL always lands, and the whole namespace dies with it.
pub(crate) fn kill_and_reap(pid: Pid) {
    let _ = kill(pid, libc::SIGKILL);
    let _ = wait(pid, false);
}

/// Waits for `pid` up to `grace`, then SIGKILLs and reaps it.
pub(crate) fn reap_within(pid: Pid, grace: std::time::Duration) {
    let until = std::time::Instant::now() + grace;
    loop {
        match wait(pid, true) {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if std::time::Instant::now() >= until => {
                let _ = kill(pid, libc::SIGKILL);
                let _ = wait(pid, false);
                return;
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_micros(500)),
        }
    }
}

/// A connected pair of `SOCK_SEQPACKET` unix sockets (message boundaries kept), close-on-exec.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for socketpair to fill.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded, so both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sets a socket's receive timeout (`SO_RCVTIMEO`): a blocking read then fails with
/// `WouldBlock` instead of waiting for ever.
pub(crate) fn set_recv_timeout(fd: RawFd, timeout: std::time::Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: `tv` is a valid timeval whose size is passed along.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Most fds one message of [`send_with_fds`] / [`recv_with_fds`] carries.
pub(crate) const MAX_PASSED_FDS: usize = 8;

/// Sends `data` (not empty) on a unix socket with `fds` attached (`SCM_RIGHTS`).
pub(crate) fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    if data.is_empty() || fds.len() > MAX_PASSED_FDS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad message"));
    }
    let payload = std::mem::size_of_val(fds) as libc::c_uint;
    // Aligned for cmsghdr; room for MAX_PASSED_FDS.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; every pointer in it refers to locals that outlive sendmsg,
    // and the control buffer is 8-aligned and large enough for CMSG_SPACE of the payload
    // (checked below before writing into it).
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            let space = libc::CMSG_SPACE(payload) as usize;
            if space > std::mem::size_of_val(&control) {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many fds"));
            }
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as _;
            ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(cmsg),
                payload as usize,
            );
        }
        let sent = check_long(libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) as libc::c_long)?;
        if sent as usize != data.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
        }
    }
    Ok(())
}

/// Receives one message into `buf` with the fds attached to it (close-on-exec). `(0, [])` at
/// end of stream. Fds beyond [`MAX_PASSED_FDS`] are closed by the kernel (`MSG_CTRUNC`), and
/// such a message is refused.
pub(crate) fn recv_with_fds(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as in `send_with_fds`; the kernel writes at most msg_controllen bytes of control
    // data, and every SCM_RIGHTS fd it reports is a new fd owned by this process.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = check_long(libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) as libc::c_long)?;
        let mut fds = Vec::new();
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    let fd = ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        if msg.msg_flags & (libc::MSG_CTRUNC | libc::MSG_TRUNC) != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message truncated",
            ));
        }
        Ok((n as usize, fds))
    }
}

/// Writes `data` to the existing file at `path` in one `write` (a proc or control file);
/// allocates nothing (see [`vfork_run`]).
pub(crate) fn write_file(path: &CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: NUL-terminated path; the fd is closed on every path below.
    let fd = check(unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) })?;
    // SAFETY: `data` is valid for `data.len()` bytes.
    let written = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    let result = if written == -1 {
        Err(io::Error::last_os_error())
    } else if written as usize != data.len() {
        Err(io::Error::new(io::ErrorKind::WriteZero, "short write"))
    } else {
        Ok(())
    };
    close(fd);
    result
}

/// `dup2`: `dst` becomes a copy of `src` (not close-on-exec), closing what `dst` was.
pub(crate) fn dup2(src: RawFd, dst: RawFd) -> io::Result<()> {
    // SAFETY: integer arguments; the caller owns `dst`'s number (it is replaced on purpose).
    check(unsafe { libc::dup2(src, dst) })?;
    Ok(())
}

/// This thread's name (`comm`, at most 15 bytes).
pub(crate) fn thread_name() -> io::Result<CString> {
    let mut buf = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes, NUL included, into `buf`.
    check(unsafe {
        libc::prctl(
            libc::PR_GET_NAME,
            buf.as_mut_ptr() as libc::c_ulong,
            0,
            0,
            0,
        )
    })?;
    CStr::from_bytes_until_nul(&buf)
        .map(CStr::to_owned)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Sets this thread's name (`comm`; the kernel keeps the first 15 bytes).
pub(crate) fn set_thread_name(name: &CStr) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and outlives the call; the kernel copies it.
    check(unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) })?;
    Ok(())
}

/// Where this process's arguments after `argv[0]` lie in its argument area (what `ps` and
/// `/proc/<pid>/cmdline` show). A fork has the same area at the same addresses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ArgTail {
    start: usize,
    len: usize,
}

impl ArgTail {
    pub fn of_self() -> io::Result<ArgTail> {
        let stat = std::fs::read_to_string("/proc/self/stat")?;
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/self/stat");
        // Fields after "pid (comm) ", which may hold spaces: the first is field 3; arg_start and
        // arg_end are 48 and 49.
        let rest = stat
            .get(stat.rfind(')').ok_or_else(bad)? + 2..)
            .ok_or_else(bad)?;
        let mut fields = rest
            .split(' ')
            .skip(48 - 3)
            .map(|f| f.parse::<usize>().ok());
        let (Some(Some(start)), Some(Some(end))) = (fields.next(), fields.next()) else {
            return Err(bad());
        };
        let cmdline = std::fs::read("/proc/self/cmdline")?;
        let first = cmdline.iter().position(|&b| b == 0).ok_or_else(bad)? + 1;
        Ok(ArgTail {
            start: start + first,
            len: end.saturating_sub(start + first),
        })
    }

    /// Overwrites those arguments with NULs, as setproctitle does. `std::env::args` reads the
    /// same memory: it must not be needed afterwards.
    pub fn blank(&self) {
        // SAFETY: [start, start + len) lies in the argument strings the kernel copied onto this
        // process's initial stack (read from our own /proc/self/stat, here or in the process we
        // were forked from: same addresses), which stay mapped and writable for the process's
        // life. No Rust object owns those bytes; std keeps pointers to them only for `args()`.
        unsafe { ptr::write_bytes(self.start as *mut u8, 0, self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn programs_are_looked_up_like_execvp() {
        let c = |s: &str| CString::new(s).unwrap();
        let paths = |program: &str, env: &[&str]| {
            let env: Vec<CString> = env.iter().map(|s| c(s)).collect();
            search_paths(program.as_bytes(), &env)
                .into_iter()
                .map(|p| p.into_string().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(paths("./a.out", &["PATH=/x"]), ["./a.out"]);
        assert_eq!(paths("/usr/bin/env", &[]), ["/usr/bin/env"]);
        assert_eq!(
            paths("python3", &["A=PATH=/no", "PATH=/p/bin::/usr/bin"]),
            ["/p/bin/python3", "python3", "/usr/bin/python3"]
        );
        assert_eq!(paths("sh", &[]), ["/bin/sh", "/usr/bin/sh"]);
    }

    /// The zygote's request path: fds sent with SCM_RIGHTS arrive as new, close-on-exec fds
    /// for the same open files, with the payload; end of stream reads as (0, []).
    #[test]
    fn fds_pass_through_a_seqpacket_pair() {
        let (a, b) = seqpacket_pair().unwrap();
        let (r1, w1) = pipe().unwrap();
        let (r2, w2) = pipe().unwrap();
        send_with_fds(a.as_raw_fd(), &[7], &[w1.as_raw_fd(), w2.as_raw_fd()]).unwrap();
        let mut buf = [0u8; 1];
        let (n, fds) = recv_with_fds(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!((n, buf[0], fds.len()), (1, 7, 2));
        // SAFETY: F_GETFD on an fd this test owns; no memory is passed.
        let flags = unsafe { libc::fcntl(fds[0].as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        drop((w1, w2));
        let mut fds = fds.into_iter();
        std::fs::File::from(fds.next().unwrap())
            .write_all(b"one")
            .unwrap();
        std::fs::File::from(fds.next().unwrap())
            .write_all(b"two")
            .unwrap();
        let mut got = String::new();
        std::fs::File::from(r1).read_to_string(&mut got).unwrap();
        std::fs::File::from(r2).read_to_string(&mut got).unwrap();
        assert_eq!(got, "onetwo");
        drop(a);
        let (n, fds) = recv_with_fds(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!((n, fds.len()), (0, 0));
    }

    /// More fds than a request may carry are refused before anything is sent.
    #[test]
    fn too_many_fds_are_refused() {
        let (a, _b) = seqpacket_pair().unwrap();
        let fds = vec![a.as_raw_fd(); MAX_PASSED_FDS + 1];
        let e = send_with_fds(a.as_raw_fd(), &[1], &fds).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
