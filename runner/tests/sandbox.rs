//! Privileged integration tests: real programs in a real sandbox.
//!
//! The host root is the single read-only base layer (`/`: bash, python3, gcc exist on the host),
//! under a tmpfs mounted as an extra top layer that tests write files into. A job here is
//! `bash main.sh ARGS` in a fresh sandbox (the package conventions are the `jobs` crate's).
//! Without root (or cgroups) they print why and pass, unless PISTON_TEST_REQUIRE_PRIVILEGED=1.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use test_support::{Need, TmpfsLayer, host_processes_with, loop_devices_backed_by, mounts_under};

use runner::{
    BoxFile, KillReason, Limits, ProcessEvent, ProcessSpec, Runner, RunnerConfig, RunnerError,
    StageResult, Status, Stream,
};

const UID_MIN: u32 = 62001;
const UID_MAX: u32 = 62100;

/// Root and a usable cgroup hierarchy, or the test prints why and passes (fails under
/// `PISTON_TEST_REQUIRE_PRIVILEGED=1`).
#[track_caller]
fn privileged() -> bool {
    test_support::require(&test_support::current_test(), &[Need::Root, Need::Cgroups])
}

/// A bash script with its files, arguments and stdin.
struct Job {
    /// (name, content); `main.sh` first.
    files: Vec<(String, Vec<u8>)>,
    args: Vec<String>,
    stdin: Vec<u8>,
    limits: Limits,
}

struct Env {
    runner: Runner,
    layer: TmpfsLayer,
    _work: tempfile::TempDir,
}

fn env() -> Option<Env> {
    env_with(|_| {})
}

fn env_with(tweak: impl FnOnce(&mut RunnerConfig)) -> Option<Env> {
    if !privileged() {
        return None;
    }
    let work = tempfile::tempdir().unwrap();
    let mut cfg = RunnerConfig {
        sandbox_binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_piston-sandbox"))),
        work_dir: work.path().join("jobs"),
        uid_min: UID_MIN,
        uid_max: UID_MAX,
        gid_min: UID_MIN,
        disk_bytes: 64 << 20,
        tmp_bytes: 16 << 20,
        ..RunnerConfig::default()
    };
    cfg.cgroup.name = "piston-runner-test".into();
    tweak(&mut cfg);
    let runner = Runner::new(cfg).expect("runner set-up");
    Some(Env {
        runner,
        layer: TmpfsLayer::new(),
        _work: work,
    })
}

impl Env {
    fn layers(&self) -> Vec<PathBuf> {
        vec![self.layer.path().to_path_buf(), PathBuf::from("/")]
    }

    fn job(&self, script: &str, limits: Limits) -> Job {
        Job {
            files: vec![("main.sh".into(), script.as_bytes().to_vec())],
            args: vec![],
            stdin: vec![],
            limits,
        }
    }

    /// `bash main.sh ARGS` in a fresh sandbox, `stdin` written then closed.
    fn run(&self, job: &Job) -> Result<StageResult, RunnerError> {
        let spec = ProcessSpec {
            argv: ["/bin/bash", "main.sh"]
                .into_iter()
                .map(String::from)
                .chain(job.args.iter().cloned())
                .collect(),
            env: vec![("PATH".into(), runner::DEFAULT_PATH.into())],
            cwd: runner::BOX_DIR.into(),
            limits: job.limits,
        };
        let files: Vec<BoxFile<'_>> = job
            .files
            .iter()
            .map(|(name, content)| BoxFile { name, content })
            .collect();
        self.runner
            .run_command(&self.layers(), &files, &spec, &job.stdin)
    }

    fn bash(&self, script: &str, limits: Limits) -> StageResult {
        self.run(&self.job(script, limits)).unwrap()
    }

    /// Starts `bash -c script` as a live program and waits for the line `ready` it must print.
    fn start_ready(&self, script: &str, limits: Limits) -> runner::Program {
        let spec = ProcessSpec {
            argv: vec!["/bin/bash".into(), "-c".into(), script.into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            cwd: "/box".into(),
            limits,
        };
        self.start_expecting(&spec, b"ready")
    }

    /// Starts `spec` as a live program and checks that its first line is `first`.
    fn start_expecting(&self, spec: &ProcessSpec, first: &[u8]) -> runner::Program {
        let mut p = self
            .runner
            .start_command(&self.layers(), &[], spec)
            .unwrap();
        assert_eq!(
            p.read_line(100, Duration::from_secs(10))
                .unwrap()
                .as_deref(),
            Some(first)
        );
        p
    }
}

fn limits() -> Limits {
    Limits {
        wall_timeout_ms: 10_000,
        cpu_time_ms: 10_000,
        memory_bytes: Some(256 << 20),
        output_max_size: 1 << 20,
        ..Limits::piston_run()
    }
}

#[test]
fn hello_world_and_conventions() {
    let Some(e) = env() else { return };
    let r = e.bash(
        "echo out; echo err >&2; echo \"pwd=$PWD uid=$(id -u) host=$(hostname)\"; echo \"args=$*\"",
        limits(),
    );
    assert_eq!(r.status, None, "{r:?}");
    assert_eq!(r.code, Some(0));
    assert_eq!(r.stderr, "err\n");
    assert!(r.stdout.starts_with("out\n"), "{}", r.stdout);
    assert!(r.stdout.contains("pwd=/box uid=620"), "{}", r.stdout);
    assert!(r.stdout.contains("host=piston"));
    assert!(
        r.output.starts_with("out\nerr\n"),
        "interleaved: {:?}",
        r.output
    );
    assert!(r.wall_time_ms < 10_000);
    assert!(r.memory_bytes > 0);
}

#[test]
fn args_and_stdin() {
    let Some(e) = env() else { return };
    let mut job = e.job("read -r line; echo \"$line|$1|$2\"", limits());
    job.args = vec!["a b".into(), "c".into()];
    job.stdin = b"from stdin\n".to_vec();
    let r = e.run(&job).unwrap();
    assert_eq!(r.stdout, "from stdin|a b|c\n", "{r:?}");
}

/// The program starts as from a login shell: no signal blocked or ignored (the helper ignores
/// SIGPIPE, and glibc's posix_spawn leaves 32 and 33 ignored, which exec would pass on), so a
/// writer into a closed pipe dies quietly of SIGPIPE; and it is the OOM killer's first choice.
#[test]
fn signals_start_at_their_defaults_and_oom_prefers_the_job() {
    let Some(e) = env() else { return };
    let r = e.bash(
        "grep -E '^Sig(Blk|Ign)' /proc/self/status; yes | head -1",
        limits(),
    );
    assert_eq!(
        r.stdout, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\ny\n",
        "{r:?}"
    );
    assert_eq!(r.stderr, "", "{r:?}");
}

#[test]
fn exit_code_and_signal() {
    let Some(e) = env() else { return };
    let r = e.bash("exit 7", limits());
    assert_eq!((r.status, r.code), (Some(Status::RE), Some(7)));
    assert_eq!(r.message.as_deref(), Some("Exited with error status 7"));
    // The package's `run` (`bash "$@"`) turns a signal into exit code 139, as in Piston, so
    // the signal case runs the program directly.
    let spec = ProcessSpec {
        argv: vec!["/bin/sh".into(), "-c".into(), "kill -SEGV $$".into()],
        env: vec![],
        cwd: "/box".into(),
        limits: limits(),
    };
    let r = e.runner.run_command(&e.layers(), &[], &spec, b"").unwrap();
    assert_eq!(r.status, Some(Status::SG), "{r:?}");
    assert_eq!(r.message.as_deref(), Some("Caught fatal signal 11"));
    assert_eq!(r.signal.as_deref(), Some("SIGSEGV"));
}

#[test]
fn fork_bomb_is_contained() {
    let Some(e) = env() else { return };
    let l = Limits {
        wall_timeout_ms: 2000,
        cpu_time_ms: 10_000,
        max_processes: 32,
        ..limits()
    };
    let r = e.bash("bomb() { bomb | bomb & }; bomb; sleep 30", l);
    assert_eq!(r.status, Some(Status::TO), "{r:?}");
    assert_eq!(r.kill_reason, Some(KillReason::Wall));
    assert!(host_processes_with("bomb").is_empty());
}

#[test]
fn memory_bomb_is_killed_and_reported() {
    let Some(e) = env() else { return };
    let l = Limits {
        memory_bytes: Some(64 << 20),
        ..limits()
    };
    let r = e.bash(
        "python3 -c 'a=[]\nwhile True: a.append(bytearray(8<<20))'",
        l,
    );
    assert_eq!(r.kill_reason, Some(KillReason::Memory), "{r:?}");
    assert_eq!(r.status, Some(Status::SG));
    assert!(r.memory_bytes >= 48 << 20, "peak {}", r.memory_bytes);
}

/// All jobs share one memory cap (a share of the host) on top of their own: a job well under its
/// own limit is OOM-killed when it would take more than the jobs' share, and the host keeps the
/// rest. 1 % of the host is the cap here; the job's own limit is four times that.
#[test]
fn jobs_share_one_memory_cap() {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap();
    let total: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .map(|kib: u64| kib * 1024)
        .expect("MemTotal");
    let Some(e) = env_with(|c| {
        c.cgroup.name = "piston-runner-test-shared".into();
        c.cgroup.jobs_memory_percent = 1;
        c.cgroup.jobs_max_processes = 4096;
    }) else {
        return;
    };
    let cap = e.runner.shared_limits().memory_bytes.expect("a shared cap");
    assert_eq!(cap, total / 100 / 4096 * 4096, "1 %, in whole pages");
    assert_eq!(e.runner.shared_limits().pids, Some(4096));
    let l = Limits {
        memory_bytes: Some(4 * cap),
        ..limits()
    };
    let script = format!(
        "python3 -c 'a=bytearray({}); print(\"allocated\")'",
        2 * cap
    );
    let r = e.bash(&script, l);
    assert_eq!(r.status, Some(Status::SG), "{r:?}");
    assert_eq!(r.kill_reason, Some(KillReason::Memory), "{r:?}");
    // The kernel lets a task it is killing charge past the limit while it dies (seen: 1.8 MiB
    // on a slow, emulated v2 host), so the peak is near the cap, not under it.
    assert!(
        r.memory_bytes <= cap + (4 << 20),
        "peak {} > cap {cap} + 4 MiB",
        r.memory_bytes
    );
    // Under the cap, the same job runs.
    let small = format!(
        "python3 -c 'a=bytearray({}); print(\"allocated\")'",
        cap / 2
    );
    let r = e.bash(&small, l);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, "allocated\n");
}

#[test]
fn cpu_spin_times_out_on_cpu() {
    let Some(e) = env() else { return };
    let l = Limits {
        wall_timeout_ms: 10_000,
        cpu_time_ms: 500,
        ..limits()
    };
    let r = e.bash("while :; do :; done", l);
    assert_eq!(r.status, Some(Status::TO), "{r:?}");
    assert_eq!(r.kill_reason, Some(KillReason::Cpu));
    assert_eq!(r.message.as_deref(), Some("Time limit exceeded"));
    assert_eq!(r.signal.as_deref(), Some("SIGKILL"));
    assert!(r.cpu_time_ms >= 500);
}

#[test]
fn sleep_times_out_on_wall_clock() {
    let Some(e) = env() else { return };
    let l = Limits {
        wall_timeout_ms: 300,
        ..limits()
    };
    let r = e.bash("sleep 30", l);
    assert_eq!(r.status, Some(Status::TO), "{r:?}");
    assert_eq!(r.kill_reason, Some(KillReason::Wall));
    assert_eq!(
        r.message.as_deref(),
        Some("Time limit exceeded (wall clock)")
    );
    assert_eq!(r.signal.as_deref(), Some("SIGKILL"));
    assert!(r.cpu_time_ms < 300);
}

#[test]
fn output_flood_is_cut() {
    let Some(e) = env() else { return };
    let l = Limits {
        output_max_size: 1000,
        ..limits()
    };
    let r = e.bash("yes", l);
    assert_eq!(r.status, Some(Status::OL), "{:?}", r.status);
    assert_eq!(r.stdout.len(), 1000);
    assert!(r.stdout_truncated && !r.stderr_truncated);
    assert_eq!(r.kill_reason, Some(KillReason::Output));
    assert_eq!(r.signal.as_deref(), Some("SIGKILL"));
    let r = e.bash("yes >&2", l);
    assert_eq!(r.status, Some(Status::EL), "{:?}", r.status);
    assert_eq!(r.stderr.len(), 1000);
    assert!(r.stderr_truncated);
}

#[test]
fn no_network() {
    let Some(e) = env() else { return };
    let r = e.bash(
        "grep -c : /proc/net/dev; grep -o '^ *[a-z0-9]*:' /proc/net/dev | tr -d ' '; \
         if exec 3<>/dev/tcp/127.0.0.1/80; then echo connected; else echo refused; fi",
        limits(),
    );
    assert_eq!(r.stdout, "1\nlo:\nrefused\n", "{r:?}");
}

#[test]
fn seccomp_and_privileges() {
    let Some(e) = env() else { return };
    let py = r#"
import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *a):
    r = libc.syscall(nr, *a)
    return os.strerror(ctypes.get_errno()) if r == -1 else "ok"
print("keyctl", call(250, 0, 0, 0, 0, 0))
print("io_uring", call(425, 1, 0))
print("unshare", call(272, 0x10000000))
print("mount", call(165, b"none", b"/tmp", b"tmpfs", 0, 0))
def sock(name, *a):
    try:
        socket.socket(*a).close(); print(name, "ok")
    except OSError as e:
        print(name, e.errno)
sock("vsock", 40, socket.SOCK_STREAM)
sock("alg", 38, socket.SOCK_SEQPACKET)
sock("packet", 17, socket.SOCK_RAW)
sock("netlink-audit", 16, socket.SOCK_RAW, 9)
sock("netlink-route", 16, socket.SOCK_RAW, 0)
sock("inet", socket.AF_INET, socket.SOCK_STREAM)
sock("inet6", socket.AF_INET6, socket.SOCK_DGRAM)
sock("unix", socket.AF_UNIX, socket.SOCK_STREAM)
try:
    socket.socketpair(socket.AF_UNIX); print("socketpair ok")
except OSError as e:
    print("socketpair", e.errno)
print("modify_ldt", call(154, 0, 0, 0))
print("past the table", call(463, -1, 0, 0, 0, 0))
import resource
before = resource.getrlimit(resource.RLIMIT_CORE)
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
print("core", before, resource.getrlimit(resource.RLIMIT_CORE))
st = open("/proc/self/status").read()
print([l for l in st.splitlines() if l.startswith(("CapEff", "CapBnd", "NoNewPrivs", "Seccomp:"))])
print("uid", os.getuid(), os.getgid(), os.getgroups())
"#;
    let r = e.bash(&format!("python3 - <<'EOF'\n{py}\nEOF"), limits());
    let o = &r.stdout;
    assert!(o.contains("keyctl Operation not permitted"), "{r:?}");
    assert!(o.contains("io_uring Function not implemented"), "{o}");
    assert!(o.contains("unshare Operation not permitted"), "{o}");
    assert!(o.contains("mount Operation not permitted"), "{o}");
    for refused in ["vsock", "alg", "packet", "netlink-audit"] {
        assert!(o.contains(&format!("{refused} 97\n")), "{refused}: {o}");
    }
    for allowed in ["netlink-route", "inet", "inet6", "unix", "socketpair"] {
        assert!(o.contains(&format!("{allowed} ok\n")), "{allowed}: {o}");
    }
    assert!(o.contains("modify_ldt Operation not permitted"), "{o}");
    assert!(o.contains("past the table Function not implemented"), "{o}");
    // 1 byte, and a program that lowers it carries on (the limit stays)
    assert!(o.contains("core (1, 1) (1, 1)\n"), "{o}");
    assert!(o.contains("'CapEff:\\t0000000000000000'"), "{o}");
    assert!(o.contains("'CapBnd:\\t0000000000000000'"), "{o}");
    assert!(o.contains("'NoNewPrivs:\\t1'"), "{o}");
    assert!(o.contains("'Seccomp:\\t2'"), "{o}");
    assert!(o.contains("uid 620"), "{o}");
    assert!(!o.contains("uid 0 "), "{o}");
}

/// A static i386 ELF (`int 0x80`), 148 bytes, made by hand: it calls keyctl(0) and
/// unshare(CLONE_NEWUSER), writes "ok\n" and exits with -(keyctl) - 16 * (unshare) — 17 when
/// both are refused with EPERM.
#[cfg(target_arch = "x86_64")]
fn i386_probe() -> Vec<u8> {
    const BASE: u32 = 0x0804_8000;
    let code: Vec<u8> = [
        &[0xb8, 0x20, 0x01, 0, 0][..],   // mov eax, 288 (keyctl)
        &[0x31, 0xdb],                   // xor ebx, ebx
        &[0xcd, 0x80],                   // int 0x80
        &[0x89, 0xc6],                   // mov esi, eax
        &[0xb8, 0x36, 0x01, 0, 0],       // mov eax, 310 (unshare)
        &[0xbb, 0, 0, 0, 0x10],          // mov ebx, CLONE_NEWUSER
        &[0xcd, 0x80],                   // int 0x80
        &[0xc1, 0xe0, 0x04],             // shl eax, 4
        &[0x01, 0xc6],                   // add esi, eax
        &[0xb8, 4, 0, 0, 0],             // mov eax, 4 (write)
        &[0xbb, 1, 0, 0, 0],             // mov ebx, 1
        &[0xb9, 0x91, 0x80, 0x04, 0x08], // mov ecx, msg
        &[0xba, 3, 0, 0, 0],             // mov edx, 3
        &[0xcd, 0x80],                   // int 0x80
        &[0x89, 0xf3],                   // mov ebx, esi
        &[0xf7, 0xdb],                   // neg ebx
        &[0xb8, 1, 0, 0, 0],             // mov eax, 1 (exit)
        &[0xcd, 0x80],                   // int 0x80
        b"ok\n",
    ]
    .concat();
    let size = (52 + 32 + code.len()) as u32;
    let mut elf = vec![0x7f, b'E', b'L', b'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    for half in [2u16, 3] {
        elf.extend(half.to_le_bytes()); // ET_EXEC, EM_386
    }
    for word in [1u32, BASE + 84, 52, 0, 0] {
        elf.extend(word.to_le_bytes()); // version, entry, phoff, shoff, flags
    }
    for half in [52u16, 32, 1, 0, 0, 0] {
        elf.extend(half.to_le_bytes()); // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
    }
    for word in [1u32, 0, BASE, BASE, size, size, 5, 0x1000] {
        elf.extend(word.to_le_bytes()); // PT_LOAD at offset 0, R+X
    }
    elf.extend(code);
    assert_eq!(elf.len() as u32, size);
    elf
}

/// 32-bit programs (nasm's elf32 output) run, and the deny list holds for them in i386 numbers.
#[cfg(target_arch = "x86_64")]
#[test]
fn i386_programs_run_under_the_same_deny_list() {
    let Some(e) = env() else { return };
    let mut job = e.job("chmod +x probe32 && ./probe32; echo \"exit=$?\"", limits());
    job.files.push(("probe32".into(), i386_probe()));
    let r = e.run(&job).unwrap();
    assert_eq!(r.stdout, "ok\nexit=17\n", "{r:?}");
}

#[test]
fn host_files_and_layers_are_protected() {
    let Some(e) = env() else { return };
    let pkg = Path::new("/layer-files");
    let host_file = e.layer.dir("/layer-files").join("shared.txt");
    fs::write(&host_file, "original").unwrap();
    fs::set_permissions(&host_file, fs::Permissions::from_mode(0o666)).unwrap();
    let r = e.bash(
        &format!(
            "ls /root >/dev/null 2>&1 && echo root-readable || echo root-denied
             cat /etc/shadow >/dev/null 2>&1 && echo shadow-readable || echo shadow-denied
             touch /usr/bin/evil 2>/dev/null && echo usr-writable || echo usr-denied
             echo changed > {pkg}/shared.txt && cat {pkg}/shared.txt
             ls /sys | wc -l; ls /dev | tr '\\n' ' '; echo
             touch /box/new && echo box-writable
             echo x > /dev/evil 2>/dev/null && echo dev-writable || echo dev-denied",
            pkg = pkg.display()
        ),
        limits(),
    );
    let o = &r.stdout;
    assert!(o.contains("root-denied"), "{r:?}");
    assert!(o.contains("shadow-denied"), "{o}");
    assert!(o.contains("usr-denied"), "{o}");
    assert!(o.contains("changed\n"), "copy-up inside the job: {o}");
    assert!(o.contains("\n0\n"), "empty /sys: {o}");
    assert!(
        o.contains("fd full null random shm stderr stdin stdout urandom zero"),
        "{o}"
    );
    assert!(o.contains("box-writable"), "{o}");
    assert!(o.contains("dev-denied"), "{o}");
    // The layer itself is untouched.
    assert_eq!(fs::read_to_string(&host_file).unwrap(), "original");
    assert!(!Path::new("/usr/bin/evil").exists());
}

#[test]
fn jobs_cannot_see_each_other() {
    let Some(e) = env() else { return };
    let host_marker = Path::new("/dev/shm").join(format!("piston-test-{}", std::process::id()));
    let shm_is_tmpfs = Path::new("/dev/shm").is_dir();
    if shm_is_tmpfs {
        fs::write(&host_marker, "host").unwrap();
    }
    // Job A has written its files once it is ready.
    let a = e.start_ready(
        "echo secret > /box/secret-a; echo shm > /dev/shm/shm-a; echo t > /tmp/tmp-a; echo ready; sleep 5",
        limits(),
    );
    let r = e.bash(
        "ls /dev/shm /tmp /box | tr '\\n' ' '; echo; ls /proc | grep -c '^[0-9]'; \
         find / -xdev -name 'secret-a' 2>/dev/null | head -1; echo end",
        limits(),
    );
    drop(a);
    if shm_is_tmpfs {
        fs::remove_file(&host_marker).unwrap();
    }
    let o = &r.stdout;
    assert!(
        !o.contains("shm-a") && !o.contains("tmp-a") && !o.contains("secret-a"),
        "{o}"
    );
    assert!(!o.contains("piston-test-"), "host /dev/shm leaked: {o}");
    let nprocs: u32 = o.lines().nth(1).unwrap().trim().parse().unwrap();
    assert!(nprocs < 10, "sees only its own processes: {o}");
}

#[test]
fn orphans_and_daemons_die_with_the_job() {
    let Some(e) = env() else { return };
    let r = e.bash(
        "(sleep 123457 &); setsid sleep 123458 & nohup sleep 123459 >/dev/null 2>&1 & echo started",
        limits(),
    );
    assert_eq!(r.stdout, "started\n", "{r:?}");
    // Teardown finishes in the background; flush waits for it.
    e.runner.flush();
    for n in ["sleep 123457", "sleep 123458", "sleep 123459"] {
        assert!(host_processes_with(n).is_empty(), "{n} survived");
    }
}

#[test]
fn bad_file_names_are_refused() {
    let Some(e) = env() else { return };
    for name in ["../escape", "/etc/passwd", "a/../../b"] {
        let mut job = e.job("true", limits());
        job.files.push((name.into(), vec![]));
        match e.run(&job) {
            Err(RunnerError::BadFileName { .. }) => {}
            other => panic!("{name}: {other:?}"),
        }
    }
    // Sub-directories are fine.
    let mut job = e.job("cat sub/dir/x", limits());
    job.files.push(("sub/dir/x".into(), b"nested".to_vec()));
    assert_eq!(e.run(&job).unwrap().stdout, "nested");
}

/// The processes of one sandbox run one after another on its writable layer: what one leaves in
/// /box the next one sees, /tmp is each process's own, and a live process of the sandbox
/// streams its output.
/// What an earlier process of a sandbox left in /box (a compile stage's output, in memory on
/// tmpfs) counts against the next one's memory limit: 160 MB left, a 256 MiB limit, and a
/// program that needs 128 MiB is killed for memory; without the leftover it runs.
#[test]
fn what_a_stage_leaves_in_box_counts_against_the_next() {
    let Some(e) = env_with(|c| c.disk_bytes = 512 << 20) else {
        return;
    };
    let sh = |script: &str| ProcessSpec {
        argv: vec!["/bin/bash".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), runner::DEFAULT_PATH.into())],
        cwd: runner::BOX_DIR.into(),
        limits: limits(),
    };
    let needs_128 = "python3 -c 'a = bytearray(128 << 20); print(\"ran\")'";
    let mut sandbox = e.runner.sandbox(&e.layers(), &[]).unwrap();
    let r = sandbox.run(&sh(needs_128), b"").unwrap();
    assert_eq!((r.code, r.stdout.as_str()), (Some(0), "ran\n"), "{r:?}");
    let r = sandbox
        .run(
            &sh("for i in $(seq 16); do head -c 10000000 /dev/zero > left$i || exit; done"),
            b"",
        )
        .unwrap();
    assert_eq!(r.code, Some(0), "{r:?}");
    let r = sandbox.run_last(&sh(needs_128), b"").unwrap();
    assert_eq!(r.kill_reason, Some(KillReason::Memory), "{r:?}");
}

#[test]
fn a_sandbox_keeps_its_writable_layer_between_processes() {
    let Some(e) = env() else { return };
    let files = [BoxFile {
        name: "data",
        content: b"given",
    }];
    let mut sandbox = e.runner.sandbox(&e.layers(), &files).unwrap();
    let sh = |script: &str| ProcessSpec {
        argv: vec!["/bin/bash".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), runner::DEFAULT_PATH.into())],
        cwd: runner::BOX_DIR.into(),
        limits: limits(),
    };
    let r = sandbox
        .run(
            &sh("cat data; cat > made; echo t > /tmp/t; mkdir -p x && echo y > x/y"),
            b"from stdin",
        )
        .unwrap();
    assert_eq!((r.code, r.stdout.as_str()), (Some(0), "given"), "{r:?}");
    let mut live = sandbox
        .start(&sh(
            "cat made x/y; ls /tmp | wc -l; read -r l; echo \"got $l\"",
        ))
        .unwrap();
    live.write_stdin(b"line\n");
    let mut out = Vec::new();
    let result = loop {
        match live.next_event(Some(Duration::from_secs(10))).unwrap() {
            Some(ProcessEvent::Output {
                stream: Stream::Stdout,
                data,
            }) => out.extend(data),
            Some(ProcessEvent::Exit(r)) => break *r,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(result.code, Some(0), "{result:?}");
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "from stdiny\n0\ngot line\n"
    );
    drop(live);
    let r = sandbox.run_last(&sh("cat made"), b"").unwrap();
    assert_eq!(r.stdout, "from stdin");
}

#[test]
fn program_handle_peek_and_read_line() {
    let Some(e) = env() else { return };
    let spec = ProcessSpec {
        argv: vec!["/bin/cat".into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: "/box".into(),
        limits: limits(),
    };
    let mut p = e.runner.start_command(&e.layers(), &[], &spec).unwrap();
    p.write(b"hello\nworld\n");
    assert_eq!(
        p.read_line(100, Duration::from_secs(10))
            .unwrap()
            .as_deref(),
        Some(&b"hello"[..])
    );
    let u = p.peek();
    assert!(u.memory_current_bytes > 0 && u.memory_peak_bytes >= u.memory_current_bytes);
    p.close_stdin();
    let r = p.close(Duration::from_secs(10));
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, "hello\nworld\n");
    // The exit event consumed by read_line, close() still returns the result.
    let mut spec_echo = spec.clone();
    spec_echo.argv = vec!["/bin/echo".into(), "once".into()];
    let mut p = e.start_expecting(&spec_echo, b"once");
    assert_eq!(p.read_line(100, Duration::from_secs(10)).unwrap(), None);
    let r = p.close(Duration::from_secs(10));
    assert_eq!((r.code, r.stdout.as_str()), (Some(0), "once\n"));
    // A process that does not end is killed by close().
    let mut spec2 = spec;
    spec2.argv = vec!["/bin/sleep".into(), "100".into()];
    let p = e.runner.start_command(&e.layers(), &[], &spec2).unwrap();
    let r = p.close(Duration::from_millis(200));
    assert_eq!(r.status, Some(Status::TO));
    let _ = ProcessEvent::Exit;
}

#[test]
fn many_jobs_leave_nothing_behind() {
    // Its own runner (own cgroup base, own work dir), dropped before the checks.
    let Some(e) = env_with(|c| c.cgroup.name = "piston-runner-leaktest".into()) else {
        return;
    };
    let n: usize = std::env::var("PISTON_RUNNER_LEAK_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let spec = ProcessSpec {
        argv: vec!["/bin/sh".into(), "-c".into(), "sleep 1000 & echo $$".into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: "/box".into(),
        limits: limits(),
    };
    let layers = e.layers();
    for i in 0..n {
        let r = e.runner.run_command(&layers, &[], &spec, b"").unwrap();
        assert_eq!(r.code, Some(0), "job {i}: {r:?}");
        if i % 50 == 0 {
            // Also sandboxes with two processes.
            let files = [BoxFile {
                name: "main.sh",
                content: b"echo ok > out",
            }];
            let mut sandbox = e.runner.sandbox(&layers, &files).unwrap();
            let mut sh = spec.clone();
            sh.argv = vec!["/bin/bash".into(), "main.sh".into()];
            assert_eq!(sandbox.run(&sh, b"").unwrap().code, Some(0));
            sh.argv = vec!["/bin/cat".into(), "out".into()];
            assert_eq!(sandbox.run_last(&sh, b"").unwrap().stdout, "ok\n");
        }
    }
    let work = e.runner.config().work_dir.clone();
    let Env {
        runner,
        layer,
        _work,
    } = e;
    drop(runner);
    assert_eq!(mounts_under(&work), Vec::<String>::new(), "job mounts left");
    assert_eq!(fs::read_dir(&work).unwrap().count(), 0, "job dirs left");
    // Ours all ran `sleep 1000`; no other test uses it.
    assert!(host_processes_with("sleep 1000").is_empty());
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    for c in ["memory", "pids", "cpuacct"] {
        let rel = own
            .lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|x| x.split(',').any(|y| y == c))
            })
            .and_then(|l| l.split(':').nth(2))
            .unwrap_or("/")
            .trim_start_matches('/')
            .to_string();
        let base = Path::new("/sys/fs/cgroup")
            .join(c)
            .join(rel)
            .join("piston-runner-leaktest");
        assert!(!base.exists(), "{} left", base.display());
    }
    // The runner never attaches loop devices; none may point into what this test used (other
    // programs on the machine may attach their own meanwhile).
    for dir in [&work, &layer.path().to_path_buf()] {
        assert_eq!(loop_devices_backed_by(dir), Vec::<String>::new());
    }
    drop(layer);
}

#[test]
fn signals_reach_the_program() {
    let Some(e) = env() else { return };
    let p = e.start_ready(
        "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done",
        limits(),
    );
    // SIGSTOP would stop init (it cannot be blocked): refused, and the job goes on.
    let e = p.signal(libc::SIGSTOP).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    // SIGTSTP is forwarded like any other: the program stops, SIGCONT resumes it.
    p.signal(libc::SIGTSTP).unwrap();
    p.signal(libc::SIGCONT).unwrap();
    p.signal(libc::SIGTERM).unwrap();
    let r = p.close(Duration::from_secs(10));
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.stdout.ends_with("got-term\n"), "{r:?}");
}

/// Running (not zombie) sandbox zygotes whose parent is `parent`, started from a binary whose
/// path ends with `binary`.
fn zygotes_of(parent: u32, binary: &str) -> Vec<u32> {
    let cmdline = format!("{binary}\0--zygote\0");
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.ends_with(cmdline.as_bytes()))
                && alive(pid)
                && ppid(pid) == parent
        })
        .collect()
}

/// The fields of `/proc/<pid>/stat` after `pid (comm) `, from the state on: comm may hold
/// spaces, so they start after its closing parenthesis.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split(' ').map(str::to_owned).collect())
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f[0] != "Z")
}

/// Helpers (each job's init) are forked by one zygote; when it dies, the next job gets a new
/// zygote, and the dead one is reaped.
#[test]
fn a_dead_zygote_is_replaced() {
    // A copy of the helper binary under a name of our own tells our zygote from those of the
    // tests running alongside in this process.
    let bin_dir = tempfile::tempdir().unwrap();
    let binary = bin_dir.path().join("piston-sandbox-zygote-test");
    fs::copy(env!("CARGO_BIN_EXE_piston-sandbox"), &binary).unwrap();
    let Some(e) = env_with(|c| {
        c.warm_helpers = 0;
        c.sandbox_binary = Some(binary.clone());
    }) else {
        return;
    };
    let (me, binary) = (std::process::id(), binary.to_string_lossy().into_owned());
    let zygotes_of = |parent| zygotes_of(parent, &binary);
    let r = e.bash("echo one", limits());
    assert_eq!(r.stdout, "one\n", "{r:?}");
    let first = zygotes_of(me);
    assert_eq!(first.len(), 1, "{first:?}");
    Command::new("kill")
        .args(["-KILL", &first[0].to_string()])
        .status()
        .unwrap();
    let t = std::time::Instant::now();
    // Killed but not yet reaped: a zombie until the runner notices.
    while alive(first[0]) {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(10));
    }
    for word in ["two", "three"] {
        let r = e.bash(&format!("echo {word}"), limits());
        assert_eq!(r.stdout, format!("{word}\n"), "{r:?}");
    }
    let second = zygotes_of(me);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second, first);
    drop(e);
    assert!(
        zygotes_of(me).is_empty(),
        "a dropped runner leaves its zygote"
    );
}

/// The parent pid of a host process.
fn ppid(pid: u32) -> u32 {
    stat_fields(pid).unwrap()[1].parse().unwrap()
}

/// A caller's SIGKILL goes straight to the job's init — our child (forked by the zygote with
/// CLONE_PARENT) and PID 1 of the job —, which cannot delay it even when stopped: the whole job
/// ends at once, reported as killed by SIGKILL.
#[test]
fn a_sigkill_ends_the_job_even_with_its_init_stopped() {
    let Some(e) = env() else { return };
    let p = e.start_ready(
        "echo ready; exec sleep 617",
        Limits {
            wall_timeout_ms: 60_000,
            cpu_time_ms: 60_000,
            ..limits()
        },
    );
    // The program → init → us (bash may still be on its way to the exec).
    let find = || {
        fs::read_dir("/proc").unwrap().flatten().find_map(|d| {
            let pid: u32 = d.file_name().to_string_lossy().parse().ok()?;
            let cmd = fs::read(d.path().join("cmdline")).ok()?;
            (cmd == b"sleep\x00617\x00").then_some(pid)
        })
    };
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let program = loop {
        match find() {
            Some(pid) => break pid,
            None if std::time::Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(10));
            }
            None => panic!("the program does not run"),
        }
    };
    let init = ppid(program);
    assert!(
        fs::read_to_string(format!("/proc/{init}/cmdline"))
            .unwrap()
            .contains("piston-sandbox"),
        "init {init}"
    );
    assert_eq!(
        ppid(init),
        std::process::id(),
        "init is the library's child"
    );
    let stopped = Command::new("kill")
        .args(["-STOP", &init.to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let started = std::time::Instant::now();
    p.signal(libc::SIGKILL).unwrap();
    let r = p.close(Duration::from_secs(30));
    assert!(started.elapsed() < Duration::from_secs(5), "{r:?}");
    assert_eq!(
        (r.status, r.signal.as_deref()),
        (Some(Status::SG), Some("SIGKILL")),
        "{r:?}"
    );
    let gone = std::time::Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{program}")).exists() && std::time::Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!Path::new(&format!("/proc/{program}")).exists());
}

#[test]
fn a_dead_server_leaves_a_job_that_still_ends_and_is_cleaned_up_later() {
    if !privileged() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let jobs = work.path().join("jobs");
    let mut cli = Command::new(env!("CARGO_BIN_EXE_piston-runner"))
        .args([
            "exec",
            "--timeout",
            "1000",
            "--warm-helpers",
            "1",
            "--layer",
            "/",
        ])
        .arg("--work-dir")
        .arg(&jobs)
        .arg("--sandbox-binary")
        .arg(env!("CARGO_BIN_EXE_piston-sandbox"))
        .args(["--uid-min", "62101", "--uid-max", "62110"])
        .args(["--", "/bin/sleep", "313131"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let cli_pid = cli.id();
    // The job itself, not the CLI whose command line holds the same words.
    let job_alive = || {
        host_processes_with("sleep 313131")
            .iter()
            .any(|c| c.starts_with("/bin/sleep"))
    };
    let t = std::time::Instant::now();
    while !job_alive() {
        assert!(t.elapsed() < Duration::from_secs(20), "job never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let zygotes = zygotes_of(cli_pid, "piston-sandbox");
    assert_eq!(
        zygotes.len(),
        1,
        "the CLI's helpers come from one zygote: {zygotes:?}"
    );
    // The server dies mid-job (SIGKILL: no clean-up at all).
    cli.kill().unwrap();
    cli.wait().unwrap();
    // Its zygote sees the end of its socket and exits.
    let t = std::time::Instant::now();
    while alive(zygotes[0]) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the zygote outlived its server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The helper's own backstop (wall limit + 2 s) ends the job anyway.
    let t = std::time::Instant::now();
    while job_alive() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "orphaned job kept running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A new runner on the same work dir and cgroup removes what the dead one left.
    let cfg = RunnerConfig {
        sandbox_binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_piston-sandbox"))),
        work_dir: jobs.clone(),
        uid_min: 62101,
        uid_max: 62110,
        gid_min: 62101,
        warm_helpers: 0,
        ..RunnerConfig::default()
    };
    let runner = Runner::new(cfg).unwrap();
    assert_eq!(mounts_under(&jobs), Vec::<String>::new());
    assert_eq!(fs::read_dir(&jobs).unwrap().count(), 0);
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    let pids_rel = own
        .lines()
        .find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|x| x.split(',').any(|y| y == "pids"))
        })
        .and_then(|l| l.split(':').nth(2))
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_string();
    let base = Path::new("/sys/fs/cgroup/pids")
        .join(pids_rel)
        .join("piston-runner");
    if base.is_dir() {
        let left: Vec<_> = fs::read_dir(&base)
            .unwrap()
            .flatten()
            .map(|d| d.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("h-{cli_pid}-")))
            .collect();
        let procs: Vec<String> = left
            .iter()
            .map(|n| fs::read_to_string(base.join(n).join("cgroup.procs")).unwrap_or_default())
            .collect();
        assert!(left.is_empty(), "{left:?} {procs:?}");
    }
    drop(runner);
}

/// The cgroup v2 path on a real kernel: job cgroups under the unified hierarchy, entered with
/// clone3(CLONE_INTO_CGROUP), CPU time from `cpu.stat`, `cgroup.kill`. On a hybrid host (like
/// the development machine) the unified hierarchy has no memory/pids controllers, so the
/// runner is started non-strict there and only the controller-free parts are checked.
#[test]
fn cgroup_v2_clone_into_cgroup() {
    if !privileged() {
        return;
    }
    let (root, strict) = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        (PathBuf::from("/sys/fs/cgroup"), true)
    } else if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
        (PathBuf::from("/sys/fs/cgroup/unified"), false)
    } else {
        test_support::gate(
            "cgroup_v2_clone_into_cgroup",
            &["a cgroup v2 hierarchy".to_owned()],
        );
        return;
    };
    let Some(e) = env_with(|c| {
        c.cgroup.root = root.clone();
        c.cgroup.version = Some(runner::CgroupVersion::V2);
        c.cgroup.require_controllers = strict;
        c.cgroup.name = "piston-runner-v2test".into();
    }) else {
        return;
    };
    assert_eq!(e.runner.cgroup_version(), runner::CgroupVersion::V2);
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    let own_v2 = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap()
        .trim_start_matches('/')
        .to_string();
    let base = root.join(own_v2).join("piston-runner-v2test");

    // While a job runs, its processes are in a job cgroup, not in ours.
    let spec = ProcessSpec {
        argv: vec!["/bin/sleep".into(), "424243".into()],
        env: vec![],
        cwd: "/box".into(),
        limits: limits(),
    };
    let p = e.runner.start_command(&e.layers(), &[], &spec).unwrap();
    let t = std::time::Instant::now();
    let sleeper = loop {
        if let Some(pid) = fs::read_dir("/proc").unwrap().flatten().find_map(|d| {
            let c = fs::read(d.path().join("cmdline")).ok()?;
            (c == b"/bin/sleep\x00424243\x00").then(|| d.file_name().to_string_lossy().into_owned())
        }) {
            break pid;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "job never started");
        std::thread::sleep(Duration::from_millis(10));
    };
    let cg = fs::read_to_string(format!("/proc/{sleeper}/cgroup")).unwrap();
    let v2_line = cg
        .lines()
        .find(|l| l.starts_with("0::"))
        .unwrap()
        .to_string();
    let job_dir = base.join(
        v2_line
            .trim_start_matches("0::")
            .rsplit('/')
            .next()
            .unwrap(),
    );
    assert!(
        v2_line.contains("/piston-runner-v2test/h-"),
        "not in a job cgroup: {v2_line}"
    );
    let procs = fs::read_to_string(job_dir.join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|l| l == sleeper), "{procs}");
    let r = p.close(Duration::from_millis(100));
    assert_eq!(r.kill_reason, Some(KillReason::Wall));

    // CPU accounting comes from the v2 cpu.stat of the job cgroup.
    let l = Limits {
        cpu_time_ms: 300,
        ..limits()
    };
    let r = e.bash("while :; do :; done", l);
    assert_eq!(
        (r.status, r.kill_reason),
        (Some(Status::TO), Some(KillReason::Cpu)),
        "{r:?}"
    );
    let r = e.bash("echo v2; cat /proc/self/cgroup", limits());
    assert!(r.stdout.starts_with("v2\n"), "{r:?}");
    drop(e);
    assert!(!base.exists(), "{} left", base.display());
}

#[test]
fn concurrent_jobs_get_distinct_uids_and_their_own_results() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Runner>();
    let Some(e) = env() else { return };
    let results: Vec<(usize, runner::StageResult)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let e = &e;
                s.spawn(move || {
                    let mut job = e.job("echo \"$1 $(id -u)\"; sleep 2", limits());
                    job.args = vec![i.to_string()];
                    (i, e.run(&job).unwrap())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut uids = std::collections::BTreeSet::new();
    for (i, r) in &results {
        let mut it = r.stdout.split_whitespace();
        assert_eq!(it.next(), Some(i.to_string().as_str()), "{r:?}");
        let uid: u32 = it.next().unwrap().parse().unwrap();
        assert!((UID_MIN..=UID_MAX).contains(&uid));
        uids.insert(uid);
    }
    // All eight overlapped (each holds its uid for 2 s), so all uids differ.
    assert_eq!(uids.len(), 8, "{results:?}");
}

/// More jobs at once than uids: a job waits for the uid of one that finishes (released once its
/// teardown is done) instead of being refused, and no two jobs run under one uid at a time.
#[test]
fn jobs_wait_for_a_free_uid() {
    let Some(e) = env_with(|c| {
        c.uid_min = UID_MAX - 1;
        c.gid_min = UID_MAX - 1;
        c.uid_max = UID_MAX;
    }) else {
        return;
    };
    let results: Vec<runner::StageResult> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                let e = &e;
                s.spawn(move || {
                    (0..4)
                        .map(|_| e.bash("id -u; sleep 0.1", limits()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.len(), 24);
    for r in &results {
        assert_eq!(r.status, None, "{r:?}");
        let uid: u32 = r.stdout.trim().parse().unwrap();
        assert!(uid == UID_MAX - 1 || uid == UID_MAX, "{r:?}");
    }
}

#[test]
fn a_layer_with_a_symlinked_mount_point_is_refused() {
    let Some(e) = env() else { return };
    std::os::unix::fs::symlink("/etc", e.layer.path().join("tmp")).unwrap();
    let r = e.bash("echo should-not-run", limits());
    assert_eq!(r.status, Some(Status::XX), "{r:?}");
    assert!(
        r.message
            .as_deref()
            .is_some_and(|m| m.contains("/tmp in the layers is not a directory")),
        "{r:?}"
    );
    assert!(r.stdout.is_empty());
}

/// A uid range some host account or running process uses is refused at start-up, naming it: such
/// a user could signal or trace the jobs and would share their process limit.
#[test]
fn a_uid_range_in_use_on_the_host_is_refused() {
    use std::os::unix::process::CommandExt;
    if !privileged() {
        return;
    }
    let range = |min: u32, max: u32| {
        move |c: &mut RunnerConfig| {
            c.uid_min = min;
            c.uid_max = max;
            c.gid_min = min;
            c.cgroup.name = "piston-runner-idtest".into();
        }
    };
    let refusal = |min: u32, max: u32| {
        let work = tempfile::tempdir().unwrap();
        let mut cfg = RunnerConfig {
            sandbox_binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_piston-sandbox"))),
            work_dir: work.path().join("jobs"),
            ..RunnerConfig::default()
        };
        range(min, max)(&mut cfg);
        match Runner::new(cfg) {
            Err(e @ RunnerError::IdsInUse { .. }) => e.to_string(),
            other => panic!("{min}..={max} accepted: {other:?}"),
        }
    };
    // nobody (65534) is an account on every Debian host.
    let e = refusal(65530, 65540);
    assert!(e.contains("account nobody (uid 65534"), "{e}");
    // A process of another user in the range.
    let mut other = Command::new("/bin/sleep")
        .arg("60")
        .uid(62150)
        .gid(62150)
        .spawn()
        .unwrap();
    let e = refusal(62150, 62160);
    let _ = other.kill();
    let _ = other.wait();
    assert!(
        e.contains(&format!("running process {} (uid 62150)", other.id())),
        "{e}"
    );
    // Once that process is gone, the range is free again.
    assert!(env_with(range(62150, 62160)).is_some());
}

/// An inode bomb in each writable file system stops at its inode limit (/tmp and /dev/shm:
/// `tmp_inodes`; /box: the job tmpfs's 65536), and the sandbox keeps working.
#[test]
fn inode_bombs_stop_at_each_file_systems_limit() {
    let Some(e) = env_with(|c| c.tmp_inodes = 2000) else {
        return;
    };
    let bomb = |dir: &str| {
        format!(
            "i=0; while : > {dir}/f$i 2>/dev/null; do i=$((i+1)); done; echo {dir} $i; \
             touch {dir}/one-more 2>&1 | grep -c 'No space left'"
        )
    };
    let mut l = limits();
    l.wall_timeout_ms = 60_000;
    l.cpu_time_ms = 60_000;
    for (dir, most) in [("/tmp", 2000), ("/dev/shm", 2000), ("/box", 65_536)] {
        let r = e.bash(&bomb(dir), l);
        assert_eq!(r.status, None, "{dir}: {r:?}");
        let mut lines = r.stdout.lines();
        let count: u64 = lines
            .next()
            .and_then(|l| l.strip_prefix(&format!("{dir} ")))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{dir}: {r:?}"));
        assert!(
            count > most / 2 && count < most,
            "{dir}: {count} files, limit {most}"
        );
        assert_eq!(lines.next(), Some("1"), "{dir}: ENOSPC at the limit: {r:?}");
    }
    assert_eq!(e.bash("echo still fine", limits()).stdout, "still fine\n");
}

/// A job gets one CPU at most by default (CFS bandwidth): two busy loops for 1.5 s use about
/// 1.5 s of CPU, not the 3 s two cores would give them, so a neighbour keeps the other core.
#[test]
fn a_many_threaded_job_gets_one_cpu() {
    let Some(e) = env() else { return };
    let r = e.bash(
        "spin() { while :; do :; done; }; spin & spin & sleep 1.5; kill %1 %2; echo done",
        limits(),
    );
    assert_eq!(r.stdout, "done\n", "{r:?}");
    let ratio = r.cpu_time_ms as f64 / r.wall_time_ms as f64;
    assert!(
        ratio < 1.25,
        "{} ms of CPU in {} ms: more than one CPU",
        r.cpu_time_ms,
        r.wall_time_ms
    );
    assert!(ratio > 0.5, "the loops ran: {r:?}");
}

/// The job's /proc shows its own processes only (not init's: hidepid), and its tunables are
/// read-only.
#[test]
fn proc_shows_the_jobs_processes_and_its_tunables_are_read_only() {
    let Some(e) = env() else { return };
    let r = e.bash(
        "ls /proc | grep -x 1 || echo no-init; \
         awk '$5 == \"/proc/sys\" || $5 == \"/proc/sysrq-trigger\" { print $5, $6 }' \
             /proc/self/mountinfo; \
         grep -o 'hidepid=[a-z0-9]*' /proc/mounts | sort -u",
        limits(),
    );
    let sysrq = if Path::new("/proc/sysrq-trigger").exists() {
        "/proc/sysrq-trigger ro,nosuid,nodev,noexec,relatime\n"
    } else {
        ""
    };
    assert_eq!(
        r.stdout,
        format!("no-init\n/proc/sys ro,nosuid,nodev,noexec,relatime\n{sysrq}hidepid=invisible\n"),
        "{r:?}"
    );
}

/// Restores `kernel.core_pattern` when dropped.
struct CorePattern(String);

impl Drop for CorePattern {
    fn drop(&mut self) {
        let _ = fs::write("/proc/sys/kernel/core_pattern", &self.0);
    }
}

/// A job that crashes in a loop starts nothing on the host: with `core_pattern` piping to a
/// helper (as apport and systemd-coredump set it), the kernel would start the helper as root,
/// outside every namespace, once per crash; the jobs' core limit of 1 byte makes it skip that,
/// and a job cannot lower it to 0 (`ulimit -c 0` succeeds without effect).
#[test]
fn a_crash_loop_starts_no_core_helper_on_the_host() {
    let Some(e) = env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("crashes");
    let helper = dir.path().join("core-helper");
    fs::write(
        &helper,
        format!("#!/bin/sh\necho \"$1\" >> {}\n", log.display()),
    )
    .unwrap();
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    let _restore = CorePattern(fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap());
    fs::write(
        "/proc/sys/kernel/core_pattern",
        format!("|{} %e", helper.display()),
    )
    .unwrap();
    // Shown to work: a crash outside the sandbox, with a core limit, reaches the helper.
    let host = Command::new("bash")
        .args([
            "-c",
            "ulimit -c unlimited; cp /bin/sleep \"$1/pcrashhost\"; \"$1/pcrashhost\" 10 & \
             sleep 0.2; kill -SEGV $!; wait $!",
            "-",
        ])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(!host.success());
    let r = e.bash(
        "ulimit -c 0; cp /bin/sleep ./pcrashjob; for i in $(seq 20); do ./pcrashjob 10 & sleep 0.05; kill -SEGV $!; \
         wait $!; done 2>/dev/null; echo crashed",
        limits(),
    );
    assert_eq!(r.stdout, "crashed\n", "{r:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let seen = loop {
        let seen = fs::read_to_string(&log).unwrap_or_default();
        if seen.contains("pcrashhost") || std::time::Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        seen.contains("pcrashhost"),
        "the helper never ran: {seen:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let seen = fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        seen.matches("pcrashjob").count(),
        0,
        "the job's crashes started the host's helper: {seen:?}"
    );
}

/// A file of the host's root (the base layer here) of at least `bytes`, read through the page
/// cache (not tmpfs): what a job maps and the kernel can evict.
fn large_host_file(bytes: u64) -> Option<PathBuf> {
    let mut dirs = vec![PathBuf::from("/usr/lib"), PathBuf::from("/usr/bin")];
    let mut seen = 0;
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            seen += 1;
            if seen > 200_000 {
                return None;
            }
            let Ok(m) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.is_dir() {
                dirs.push(e.path());
            } else if m.is_file() && m.len() >= bytes && m.permissions().mode() & 0o004 != 0 {
                return Some(e.path());
            }
        }
    }
    None
}

/// A job whose memory fills its limit but for a few MiB, and which then keeps reading back the
/// pages of a larger file it maps, thrashes: the kernel evicts and re-reads the file's pages and
/// never OOM-kills it. It is killed for its memory soon after, not at its wall time, and
/// reported as such.
#[test]
fn a_job_thrashing_at_its_memory_limit_is_reported_as_memory() {
    let Some(e) = env() else { return };
    let big = large_host_file(24 << 20).expect("a file of 24 MiB or more under /usr");
    let limit: u64 = 128 << 20;
    let py = r#"
import mmap, sys
limit, path = int(sys.argv[1]), sys.argv[2]
def anon():
    for l in open("/proc/self/status"):
        if l.startswith("RssAnon:"):
            return int(l.split()[1]) * 1024
chunks = []
while anon() < limit - (5 << 20):
    chunks.append(b"x" * (1 << 20))
print("filled", flush=True)
f = open(path, "rb")
m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
n = 0
while True:
    for off in range(0, len(m), 4096):
        n += m[off]
"#;
    let mut l = limits();
    l.memory_bytes = Some(limit);
    l.wall_timeout_ms = 8_000;
    l.cpu_time_ms = 8_000;
    let mut job = e.job(
        &format!("exec python3 thrash.py {limit} {}", big.display()),
        l,
    );
    job.files.push(("thrash.py".into(), py.as_bytes().to_vec()));
    let r = e.run(&job).unwrap();
    assert_eq!(r.stdout, "filled\n", "{r:?}");
    assert_eq!(
        (r.status, r.message.as_deref(), r.kill_reason),
        (
            Some(Status::SG),
            Some("Memory limit exceeded"),
            Some(KillReason::Memory)
        ),
        "{r:?}"
    );
    assert!(r.wall_time_ms < 8_000, "{r:?}");
    eprintln!(
        "thrashing job: killed for memory after {} ms ({} ms CPU, peak {} MiB)",
        r.wall_time_ms,
        r.cpu_time_ms,
        r.memory_bytes >> 20
    );
}
