//! Jobs (the job layer on the runner) on the real images repo-builder built (scripts/test.sh), installed by ppman: each
//! package's `test.*` files, Python under real limits, C++ compile and run, signals through the
//! `run` wrappers, a job outliving its runtime's uninstall, and nothing left behind after
//! hundreds of jobs.
//!
//! The runner's helper, `piston-sandbox`, is another package's binary, which `cargo test -p e2e`
//! does not build: `cargo build --workspace` first (scripts/test.sh does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use e2e::{Installation, host_processes_with, test_packages};
use jobs::{Event, JobFile, JobHandle, JobResult, JobSpec, Jobs, JobsConfig, Stage};
use ppman::InstalledPackage;
use ppman::schema::PackageMeta;
use runner::{KillReason, Limits, Runner, RunnerConfig, StageResult, Status, Stream};

/// Job uids of these tests: apart from a server's (1990000001–), the runner crate's tests
/// (62001–) and repo-builder's (61001–), which may run on this host at the same time.
const UID_MIN: u32 = 63001;
const UID_MAX: u32 = 63100;
/// Groups this file's job cgroups.
const CGROUP_NAME: &str = "piston-e2e-runner";

/// Tests share the cgroup and the uid range; the leak test needs them to itself.
static HOST: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    HOST.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    HOST.write().unwrap_or_else(|e| e.into_inner())
}

/// The `piston-sandbox` helper of this build (`target/<profile>/piston-sandbox`, next to the
/// `deps/` directory this test runs from). `cargo test -p e2e` does not build it.
fn sandbox_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join("piston-sandbox");
    assert!(
        bin.is_file(),
        "{} is missing: build the workspace first: cargo build --workspace",
        bin.display()
    );
    bin
}

/// A runner of its own over an installation of real packages. Fields drop in order: the runner
/// (every job torn down) before the packages are uninstalled, the host lock last.
struct Env {
    jobs: Jobs,
    inst: Installation,
    work: tempfile::TempDir,
    _host: HostGuard,
}

/// Held for the test's whole length.
type HostGuard = (
    Option<RwLockReadGuard<'static, ()>>,
    Option<RwLockWriteGuard<'static, ()>>,
);

fn env(packages: &[&str]) -> Option<Env> {
    env_with(packages, (Some(shared()), None))
}

fn env_with(packages: &[&str], host: HostGuard) -> Option<Env> {
    let inst = Installation::new(packages)?;
    let work = tempfile::Builder::new()
        .prefix("piston-e2e-runner-")
        .tempdir()
        .expect("work dir");
    let mut config = RunnerConfig {
        sandbox_binary: Some(sandbox_binary()),
        work_dir: work.path().join("jobs"),
        uid_min: UID_MIN,
        uid_max: UID_MAX,
        gid_min: UID_MIN,
        disk_bytes: 128 << 20,
        tmp_bytes: 32 << 20,
        ..RunnerConfig::default()
    };
    config.cgroup.name = CGROUP_NAME.into();
    let runner = Runner::new(config).expect("runner set-up");
    Some(Env {
        jobs: Jobs::new(runner, JobsConfig::default()),
        inst,
        work,
        _host: host,
    })
}

/// Generous limits: the host is shared and busy; the limit tests set the one they test.
fn limits() -> Limits {
    Limits {
        wall_timeout_ms: 30_000,
        cpu_time_ms: 30_000,
        memory_bytes: Some(512 << 20),
        max_processes: 64,
        max_open_files: 2048,
        max_file_size: 10_000_000,
        output_max_size: 64 << 10,
    }
}

/// A job of `pkg` for `language` with one file.
fn job(pkg: &InstalledPackage, language: &str, file: &str, content: &str, run: Limits) -> JobSpec {
    JobSpec {
        layers: pkg.layers.clone(),
        package_dir: PathBuf::from(&pkg.package_dir),
        language: language.into(),
        files: vec![JobFile {
            name: file.into(),
            content: content.as_bytes().to_vec(),
            code: true,
        }],
        args: Vec::new(),
        stdin: Vec::new(),
        compile: pkg
            .entry
            .compiled
            .then(jobs::compile_limits)
            .map(|l| Limits {
                wall_timeout_ms: 60_000,
                cpu_time_ms: 60_000,
                ..l
            }),
        run,
    }
}

impl Env {
    fn package(&self, name: &str) -> InstalledPackage {
        self.inst.package(name)
    }

    fn python(&self, code: &str, run: Limits) -> StageResult {
        let py = self.package("python");
        let r = self
            .jobs
            .run(&job(&py, "python", "main.py", code, run))
            .expect("job runs");
        assert!(r.compile.is_none());
        r.run
    }
}

/// Host processes running as one of this file's job uids.
fn procs_of_job_uids() -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| {
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let uid: u32 = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (UID_MIN..=UID_MAX)
                .contains(&uid)
                .then(|| format!("pid {} uid {uid}", e.file_name().to_string_lossy()))
        })
        .collect()
}

/// Waits until no process runs as a job uid (teardown is in the background; `flush` waits for
/// the runner's part, the kernel may still be reaping) and returns what is left.
fn job_procs_after(runner: &Runner) -> Vec<String> {
    runner.flush();
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let left = procs_of_job_uids();
        if left.is_empty() || Instant::now() > until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// This file's cgroup base in each v1 controller hierarchy (or the v2 one).
fn cgroup_bases() -> Vec<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        let rel = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or("/");
        return vec![root.join(rel.trim_start_matches('/')).join(CGROUP_NAME)];
    }
    ["memory", "pids", "cpuacct"]
        .iter()
        .map(|c| {
            let rel = own
                .lines()
                .find(|l| {
                    l.split(':')
                        .nth(1)
                        .is_some_and(|x| x.split(',').any(|y| y == *c))
                })
                .and_then(|l| l.split(':').nth(2))
                .unwrap_or("/");
            root.join(c)
                .join(rel.trim_start_matches('/'))
                .join(CGROUP_NAME)
        })
        .collect()
}

/// Waits for a started job's result (at most `timeout`); also returns the events before it.
fn finish(h: &JobHandle, timeout: Duration) -> (JobResult, Vec<Event>) {
    let until = Instant::now() + timeout;
    let mut events = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match h.next_event(left) {
            Some(Event::Done(r)) => return (r, events),
            Some(ev) => events.push(ev),
            None => panic!("job not done within {timeout:?}; events so far: {events:?}"),
        }
    }
}

/// Reads a started job's stdout until it contains `marker`.
fn wait_for(h: &JobHandle, marker: &str) -> String {
    let until = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(marker) {
        let left = until.saturating_duration_since(Instant::now());
        match h.next_event(left) {
            Some(Event::Output {
                stream: Stream::Stdout,
                data,
            }) => seen.extend(data),
            Some(Event::Done(r)) => panic!("job ended before {marker:?}: {r:?}"),
            Some(_) => {}
            None => panic!(
                "no {marker:?} within 30 s; stdout so far {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// The limits a server gives `language` of `entry` (Piston's defaults with the package's and the
/// language's overrides), except time limits, raised: these jobs show the runtimes work.
fn server_limits(entry: &ppman::schema::IndexEntry, language: &str) -> (Limits, Limits) {
    let mut o: BTreeMap<String, i64> = entry.limit_overrides.clone();
    if let Some(p) = entry.provides.iter().find(|p| p.language == language) {
        o.extend(p.limit_overrides.clone());
    }
    let get = |k: &str| o.get(k).copied();
    let stage = |base: Limits, name: &str| Limits {
        wall_timeout_ms: 60_000,
        cpu_time_ms: 60_000,
        memory_bytes: match get(&format!("{name}_memory_limit")) {
            Some(v) if v > 0 => Some(v as u64),
            Some(_) => None,
            None => base.memory_bytes,
        },
        max_processes: get("max_process_count").map_or(base.max_processes, |v| v as u64),
        max_open_files: get("max_open_files").map_or(base.max_open_files, |v| v as u64),
        max_file_size: get("max_file_size").map_or(base.max_file_size, |v| v as u64),
        output_max_size: get("output_max_size").map_or(base.output_max_size, |v| v as u64),
    };
    (
        stage(jobs::compile_limits(), "compile"),
        stage(Limits::piston_run(), "run"),
    )
}

/// Every `test.*` file of every package the test repository holds, from the build files in
/// `repository/<name>/<version>/`, runs through the runner on the package's installed layers
/// (compile stage first when the package has one) and prints `OK`.
#[test]
fn every_packages_test_files_print_ok_through_the_runner() {
    let names = test_packages();
    if names.is_empty() {
        test_support::gate(
            "every_packages_test_files_print_ok_through_the_runner",
            &["PISTON_TEST_PACKAGES (scripts/test.sh sets it)".to_owned()],
        );
        return;
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let Some(e) = env(&refs) else {
        return;
    };
    let sources = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("repository");
    let mut report = Vec::new();
    let mut failed = 0;
    for name in &names {
        let pkg = e.package(name);
        let dir = sources.join(name).join(pkg.entry.version.to_string());
        let meta = PackageMeta::parse(&std::fs::read_to_string(dir.join("package.toml")).unwrap())
            .unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
        assert_eq!(
            (&meta.name, &meta.version, &meta.provides),
            (&pkg.entry.name, &pkg.entry.version, &pkg.entry.provides),
            "the build files of {name} are not those of its image"
        );
        let compile_script = pkg
            .tree
            .join(pkg.package_dir.trim_start_matches('/'))
            .join("compile");
        assert_eq!(
            pkg.entry.compiled,
            compile_script.is_file(),
            "{name}: `compiled` in the index disagrees with the image"
        );
        let mut tests: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("test."))
            })
            .collect();
        tests.sort();
        assert!(!tests.is_empty(), "{name} has no test.* file");
        for test in tests {
            let file = test.file_name().unwrap().to_string_lossy().into_owned();
            let ext = file.trim_start_matches("test.");
            let provide = meta
                .provides
                .iter()
                .find(|p| p.language == ext || p.aliases.iter().any(|a| a == ext))
                .unwrap_or_else(|| panic!("{name}: no language for {file}"));
            let (compile, run) = server_limits(&pkg.entry, &provide.language);
            let spec = JobSpec {
                layers: pkg.layers.clone(),
                package_dir: PathBuf::from(&pkg.package_dir),
                language: provide.language.clone(),
                files: vec![JobFile {
                    name: file.clone(),
                    content: std::fs::read(&test).unwrap(),
                    code: true,
                }],
                args: vec!["first".into(), "second arg".into()],
                stdin: b"a line of input\n".to_vec(),
                compile: pkg.entry.compiled.then_some(compile),
                run,
            };
            let t = Instant::now();
            let r = e.jobs.run(&spec).expect("job runs");
            let ok = r.run.status.is_none()
                && r.run.code == Some(0)
                && r.run.stdout.trim() == "OK"
                && r.compile.as_ref().is_none_or(StageResult::succeeded)
                && r.compile.is_some() == pkg.entry.compiled;
            failed += usize::from(!ok);
            report.push(format!(
                "{} {name} {} {file} ({}): {}",
                if ok { "ok  " } else { "FAIL" },
                pkg.entry.version,
                provide.language,
                if ok {
                    format!("{:?}", t.elapsed())
                } else {
                    format!("{r:?}")
                }
            ));
        }
    }
    let report = report.join("\n");
    eprintln!("{report}");
    assert_eq!(failed, 0, "\n{report}");
}

#[test]
fn python_fork_bomb_is_contained_by_the_pids_limit() {
    let Some(e) = env(&["python"]) else {
        return;
    };
    // Every process forks for ~1.5 s; the first one reports how far it got and ends the job
    // (the rest die with the PID namespace).
    let bomb = r#"
import os, time
end = time.monotonic() + 1.5
children, refused, me = 0, 0, os.getpid()
while time.monotonic() < end:
    try:
        pid = os.fork()
    except OSError:
        refused += 1
        time.sleep(0.001)
        continue
    if pid == 0:
        continue
    if os.getpid() == me:
        children += 1
if os.getpid() == me:
    print(children, refused, flush=True)
else:
    time.sleep(60)
"#;
    let l = Limits {
        max_processes: 24,
        ..limits()
    };
    let t = Instant::now();
    let r = e.python(bomb, l);
    assert_eq!((r.status, r.code), (None, Some(0)), "{r:?}");
    let (children, refused) = r
        .stdout
        .trim()
        .split_once(' ')
        .map(|(a, b)| (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()))
        .unwrap_or_else(|| panic!("{r:?}"));
    assert!(children > 0 && children < 24, "{children} children");
    assert!(refused > 100, "fork was refused only {refused} times");
    assert!(t.elapsed() < Duration::from_secs(15));
    // The host: none of it left, and it can still start processes.
    assert_eq!(job_procs_after(e.jobs.runner()), Vec::<String>::new());
    assert!(
        std::process::Command::new("true")
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn python_memory_bomb_is_killed_and_reported() {
    let Some(e) = env(&["python"]) else {
        return;
    };
    let l = Limits {
        memory_bytes: Some(96 << 20),
        ..limits()
    };
    let r = e.python(
        "a = []\nwhile True:\n    a.append(bytearray(8 << 20))\n    print(len(a), flush=True)\n",
        l,
    );
    assert_eq!(r.status, Some(Status::SG), "{r:?}");
    assert_eq!(r.kill_reason, Some(KillReason::Memory));
    assert_eq!(r.message.as_deref(), Some("Memory limit exceeded"));
    assert_eq!(r.signal.as_deref(), Some("SIGKILL"));
    assert!(r.memory_bytes >= 80 << 20, "peak {}", r.memory_bytes);
    assert!(r.memory_bytes <= 96 << 20, "peak {}", r.memory_bytes);
    let allocated: u64 = r.stdout.lines().last().unwrap().parse().unwrap();
    assert!((6..=12).contains(&allocated), "{allocated} × 8 MiB");
}

#[test]
fn python_cpu_spin_times_out_on_cpu_and_sleep_on_wall_clock() {
    let Some(e) = env(&["python"]) else {
        return;
    };
    let r = e.python(
        "while True:\n    pass\n",
        Limits {
            cpu_time_ms: 700,
            wall_timeout_ms: 20_000,
            ..limits()
        },
    );
    assert_eq!(r.status, Some(Status::TO), "{r:?}");
    assert_eq!(r.kill_reason, Some(KillReason::Cpu));
    assert_eq!(r.message.as_deref(), Some("Time limit exceeded"));
    assert_eq!(r.signal.as_deref(), Some("SIGKILL"));
    assert!(r.cpu_time_ms >= 700, "{r:?}");
    assert!(r.wall_time_ms < 20_000);

    let r = e.python(
        "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n",
        Limits {
            wall_timeout_ms: 700,
            ..limits()
        },
    );
    assert_eq!(r.status, Some(Status::TO), "{r:?}");
    assert_eq!(r.kill_reason, Some(KillReason::Wall));
    assert_eq!(
        r.message.as_deref(),
        Some("Time limit exceeded (wall clock)")
    );
    assert_eq!(r.stdout, "sleeping\n");
    assert!(r.cpu_time_ms < 700, "{r:?}");
    assert!((700..5000).contains(&r.wall_time_ms), "{r:?}");
}

#[test]
fn python_output_floods_are_cut() {
    let Some(e) = env(&["python"]) else {
        return;
    };
    let l = Limits {
        output_max_size: 1000,
        ..limits()
    };
    let r = e.python("while True:\n    print('x' * 99)\n", l);
    assert_eq!(r.status, Some(Status::OL), "{r:?}");
    assert_eq!(r.kill_reason, Some(KillReason::Output));
    assert_eq!(r.stdout, format!("{}\n", "x".repeat(99)).repeat(10));
    assert!(r.stdout_truncated && !r.stderr_truncated);
    let r = e.python(
        "import sys\nprint('fine', flush=True)\nwhile True:\n    sys.stderr.write('y' * 100)\n",
        l,
    );
    assert_eq!(r.status, Some(Status::EL), "{r:?}");
    assert_eq!(r.message.as_deref(), Some("stderr length exceeded"));
    assert_eq!(r.stderr, "y".repeat(1000));
    assert_eq!(r.stdout, "fine\n");
    assert!(r.stderr_truncated && !r.stdout_truncated);
}

#[test]
fn python_has_no_network() {
    let Some(e) = env(&["python"]) else {
        return;
    };
    let code = r#"
import socket
for host, port in [("1.1.1.1", 53), ("127.0.0.1", 80), ("127.0.0.1", 2000)]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((host, port))
        print("connected", host, port)
    except OSError as e:
        print("failed", host, port, e.errno)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"x", ("1.1.1.1", 53))
    print("sent udp")
except OSError as e:
    print("udp failed", e.errno)
print(sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]))
"#;
    let r = e.python(code, limits());
    assert_eq!(r.code, Some(0), "{r:?}");
    // ENETUNREACH (101): not even loopback is up.
    assert_eq!(
        r.stdout,
        "failed 1.1.1.1 53 101\nfailed 127.0.0.1 80 101\nfailed 127.0.0.1 2000 101\n\
         udp failed 101\n['lo']\n",
        "{r:?}"
    );
}

#[test]
fn python_cannot_write_its_layers() {
    let Some(e) = env(&["python"]) else {
        return;
    };
    let py = e.package("python");
    let code = format!(
        r#"
import os
for p in ["/usr/lib/python3.11/x", "{pkg}/x", "{pkg}/run", "/usr/bin/python3", "/etc/passwd"]:
    try:
        with open(p, "a") as f:
            f.write("x")
        print("wrote", p)
    except OSError as e:
        print("denied", p, e.errno)
with open("/box/mine", "w") as f:
    f.write("ok")
with open("/tmp/mine", "w") as f:
    f.write("ok")
# World-writable in the image: the write lands in the job's own writable layer.
with open("/var/tmp/e2e-copy-up", "w") as f:
    f.write("ok")
print("box, tmp and var/tmp writable", os.getuid() != 0)
"#,
        pkg = py.package_dir
    );
    let r = e.python(&code, limits());
    assert_eq!(r.code, Some(0), "{r:?}");
    let denied: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("denied"))
        .collect();
    assert_eq!(
        denied,
        [
            "denied /usr/lib/python3.11/x 13".to_owned(),
            format!("denied {}/x 13", py.package_dir),
            format!("denied {}/run 13", py.package_dir),
            "denied /usr/bin/python3 13".to_owned(),
            "denied /etc/passwd 13".to_owned(),
        ],
        "{r:?}"
    );
    assert!(
        r.stdout.ends_with("box, tmp and var/tmp writable True\n"),
        "{r:?}"
    );
    // Nothing reached the images or the runtime tree, nor the next job; they are read-only
    // on the host too.
    for root in py.layers.iter().chain([&py.tree]) {
        assert!(!root.join("usr/lib/python3.11/x").exists());
        assert!(!root.join("var/tmp/e2e-copy-up").exists());
    }
    let r = e.python(
        "import os\nprint(os.path.exists('/var/tmp/e2e-copy-up'))\n",
        limits(),
    );
    assert_eq!(r.stdout, "False\n", "{r:?}");
    let err = std::fs::write(py.tree.join("usr/lib/python3.11/x"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(30), "EROFS expected: {err}");
}

#[test]
fn python_jobs_do_not_share_tmp_or_dev_shm() {
    let Some(e) = env(&["python"]) else {
        return;
    };
    let py = e.package("python");
    let program = r#"
import os, sys
me = sys.argv[1]
for d in ["/tmp", "/dev/shm", "/box"]:
    with open(f"{d}/{me}-secret", "w") as f:
        f.write(me)
print("ready", flush=True)
sys.stdin.readline()
print(me, sorted(os.listdir("/tmp")), sorted(os.listdir("/dev/shm")), flush=True)
"#;
    let start = |name: &str| {
        let mut spec = job(&py, "python", "main.py", program, limits());
        spec.args = vec![name.into()];
        e.jobs.start(spec).expect("job starts")
    };
    let mut a = start("a");
    wait_for(&a, "ready");
    let mut b = start("b");
    wait_for(&b, "ready");
    // Both are running and have written their files; now each lists what it sees.
    for h in [&mut a, &mut b] {
        h.write_stdin(b"\n").unwrap();
        h.close_stdin().unwrap();
    }
    let (ra, _) = finish(&a, Duration::from_secs(30));
    let (rb, _) = finish(&b, Duration::from_secs(30));
    assert_eq!(
        ra.run.stdout, "ready\na ['a-secret'] ['a-secret']\n",
        "{ra:?}"
    );
    assert_eq!(
        rb.run.stdout, "ready\nb ['b-secret'] ['b-secret']\n",
        "{rb:?}"
    );
    // The host's own /tmp and /dev/shm got none of it.
    for d in ["/tmp", "/dev/shm"] {
        for n in ["a-secret", "b-secret"] {
            assert!(!Path::new(d).join(n).exists(), "{d}/{n} on the host");
        }
    }
}

#[test]
fn python_daemon_dies_with_the_job() {
    let Some(e) = env(&["python"]) else {
        return;
    };
    // Double fork + setsid: the grandchild is re-parented to the job's init and outlives the
    // program. Its argv is unique on this host.
    let code = r#"
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sleep", ["sleep", "630017"])
    os._exit(0)
os.wait()
def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""
for _ in range(500):
    if any(cmdline(p) == b"sleep\x00630017\x00" for p in os.listdir("/proc") if p.isdigit()):
        print("daemon running", flush=True)
        break
    time.sleep(0.01)
"#;
    let r = e.python(code, limits());
    assert_eq!(
        (r.status, r.stdout.as_str()),
        (None, "daemon running\n"),
        "{r:?}"
    );
    assert_eq!(job_procs_after(e.jobs.runner()), Vec::<String>::new());
    assert_eq!(host_processes_with("sleep 630017"), Vec::<String>::new());
}

/// gcc's C++: a compile error is the compile stage's result and nothing runs (Piston); a good
/// program compiles and runs with arguments and stdin.
#[test]
fn cpp_compile_error_stops_the_job_and_a_good_program_runs() {
    let Some(e) = env(&["gcc"]) else {
        return;
    };
    let gcc = e.package("gcc");
    assert!(gcc.entry.compiled);
    let bad = job(
        &gcc,
        "c++",
        "main.cpp",
        "#include <cstdio>\nint main() { std::puts(\"ran\"); return undefined_name; }\n",
        limits(),
    );
    let r = e.jobs.run(&bad).unwrap();
    let compile = r.compile.as_ref().expect("a compile stage");
    assert_eq!(compile.status, Some(Status::RE), "{r:?}");
    assert_eq!(compile.code, Some(1));
    assert!(
        compile.stderr.contains("main.cpp:2:")
            && compile.stderr.contains("undefined_name")
            && compile.stderr.contains("was not declared in this scope"),
        "{compile:?}"
    );
    assert_eq!(&r.run, compile, "no run stage after a failed compile");
    assert!(!r.run.stdout.contains("ran"));

    let good = r#"
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

int main(int argc, char **argv) {
    std::vector<long> numbers;
    for (long n; std::cin >> n;) numbers.push_back(n);
    std::string args;
    for (int i = 1; i < argc; i++) args += std::string(i > 1 ? "," : "") + argv[i];
    std::cout << "sum=" << std::accumulate(numbers.begin(), numbers.end(), 0L)
              << " args=" << args << std::endl;
    std::cerr << "to stderr" << std::endl;
    return numbers.size() == 4 ? 7 : 1;
}
"#;
    let mut spec = job(&gcc, "c++", "main.cpp", good, limits());
    spec.args = vec!["one".into(), "two words".into()];
    spec.stdin = b"1 2 3\n36\n".to_vec();
    let r = e.jobs.run(&spec).unwrap();
    let compile = r.compile.as_ref().expect("a compile stage");
    assert!(compile.succeeded(), "{compile:?}");
    assert_eq!(r.run.stdout, "sum=42 args=one,two words\n", "{r:?}");
    assert_eq!(r.run.stderr, "to stderr\n");
    assert_eq!((r.run.code, r.run.status), (Some(7), Some(Status::RE)));

    // Interactively (the WebSocket's way): compile, then a conversation with the program.
    let echo = "#include <iostream>\n#include <string>\n\
                int main() { std::string l; while (std::getline(std::cin, l)) \
                std::cout << \"got \" << l << std::endl; std::cout << \"bye\" << std::endl; }\n";
    let mut spec = job(&gcc, "c++", "main.cpp", echo, limits());
    spec.stdin = b"first\n".to_vec();
    let h = e.jobs.start(spec).unwrap();
    assert_eq!(
        h.next_event(Duration::from_secs(30)),
        Some(Event::Stage(Stage::Compile))
    );
    wait_for(&h, "got first\n");
    h.write_stdin(b"second\n").unwrap();
    wait_for(&h, "got second\n");
    h.close_stdin().unwrap();
    let (r, _) = finish(&h, Duration::from_secs(30));
    assert!(
        r.compile.as_ref().is_some_and(StageResult::succeeded),
        "{r:?}"
    );
    assert_eq!(r.run.stdout, "got first\ngot second\nbye\n", "{r:?}");
    assert_eq!((r.run.code, r.run.status), (Some(0), None));

    // A SIGKILL while compiling ends the job there: no run stage.
    let h = e
        .jobs
        .start(job(&gcc, "c++", "main.cpp", echo, limits()))
        .unwrap();
    assert_eq!(
        h.next_event(Duration::from_secs(30)),
        Some(Event::Stage(Stage::Compile))
    );
    h.signal(runner::signal_number("SIGKILL").unwrap()).unwrap();
    let (r, events) = finish(&h, Duration::from_secs(30));
    let compile = r.compile.as_ref().expect("a compile stage");
    assert_eq!(
        (compile.status, compile.signal.as_deref()),
        (Some(Status::SG), Some("SIGKILL")),
        "{r:?}"
    );
    assert_eq!(&r.run, compile);
    assert!(
        !events.contains(&Event::Stage(Stage::Run)),
        "a run stage started: {events:?}"
    );
}

/// Signals sent to an interactive job reach Python itself, through the package's `run` wrapper
/// (which execs it), and Python's children too (init signals the whole process group); a
/// SIGKILL is reported as such.
#[test]
fn signals_reach_python_through_the_run_wrapper() {
    let Some(e) = env(&["python"]) else {
        return;
    };
    let py = e.package("python");
    // The handler only notes the signal: it may arrive while `print` is still writing "ready".
    let program = r#"
import os, signal, subprocess, sys, time
caught = None
def on(sig, frame):
    global caught
    caught = sig
child = None
signal.signal(signal.SIGINT, on)
signal.signal(signal.SIGTERM, on)
if sys.argv[1:2] == ["parent"] and sys.argv[2:3] == ["with-child"]:
    child = subprocess.Popen([sys.executable, sys.argv[0], "child"])
    while not os.path.exists("/tmp/child-ready"):
        time.sleep(0.01)
if sys.argv[1] == "child":
    open("/tmp/child-ready", "w").close()
else:
    print("ready", os.getpid(), os.getppid(), flush=True)
while caught is None:
    time.sleep(0.01)
print(sys.argv[1], "caught", signal.Signals(caught).name, flush=True)
if child is not None:
    print("child exited", child.wait(), flush=True)
sys.exit(40 + caught)
"#;
    let number = |name| runner::signal_number(name).expect("a signal");
    for (sig, args) in [
        (number("SIGINT"), vec!["parent"]),
        (number("SIGTERM"), vec!["parent"]),
        (number("SIGTERM"), vec!["parent", "with-child"]),
    ] {
        let mut spec = job(&py, "python", "main.py", program, limits());
        spec.args = args.iter().map(|a| (*a).to_owned()).collect();
        let h = e.jobs.start(spec).unwrap();
        assert_eq!(
            h.next_event(Duration::from_secs(30)),
            Some(Event::Stage(Stage::Run))
        );
        let ready = wait_for(&h, "ready");
        // `run` execs python3 and the stage script execs `run`: Python is the target, PID 2
        // under the job's init.
        assert!(ready.starts_with("ready 2 1\n"), "{ready:?}");
        h.signal(sig).unwrap();
        let (r, _) = finish(&h, Duration::from_secs(30));
        let name = runner::signal_name(sig);
        let mut expected = format!("ready 2 1\nparent caught {name}\n");
        if args.len() == 2 {
            // Order of the two handlers' lines is up to the scheduler.
            assert!(
                r.run.stdout.contains(&format!("child caught {name}\n")),
                "{r:?}"
            );
            expected = format!("{expected}child exited {}\n", 40 + sig);
            let without_child: String = r
                .run
                .stdout
                .lines()
                .filter(|l| !l.starts_with("child caught"))
                .map(|l| format!("{l}\n"))
                .collect();
            assert_eq!(without_child, expected, "{r:?}");
        } else {
            assert_eq!(r.run.stdout, expected, "{r:?}");
        }
        assert_eq!(
            (r.run.code, r.run.signal.as_deref(), r.run.status),
            (Some(40 + sig), None, Some(Status::RE)),
            "{r:?}"
        );
    }
    // SIGKILL cannot be caught: the program dies of it, and that is what the result says (not
    // a time limit, not an internal error).
    let mut spec = job(&py, "python", "main.py", program, limits());
    spec.args = vec!["parent".into()];
    let h = e.jobs.start(spec).unwrap();
    wait_for(&h, "ready");
    h.signal(number("SIGKILL")).unwrap();
    let (r, _) = finish(&h, Duration::from_secs(30));
    assert_eq!(
        (
            r.run.status,
            r.run.signal.as_deref(),
            r.run.message.as_deref(),
            r.run.kill_reason,
            r.run.code
        ),
        (
            Some(Status::SG),
            Some("SIGKILL"),
            Some("Caught fatal signal 9"),
            None,
            None
        ),
        "{r:?}"
    );
    assert!(r.run.wall_time_ms < 10_000, "{r:?}");
}

/// Hundreds of jobs on the real bash image — plain ones, ones leaving a daemon behind,
/// interactive ones — then nothing is left: no mount, no job directory, no cgroup, no process
/// of a job uid.
#[test]
fn hundreds_of_bash_jobs_leave_nothing_behind() {
    let n: usize = std::env::var("PISTON_E2E_LEAK_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let Some(e) = env_with(&["bash"], (None, Some(exclusive()))) else {
        return;
    };
    let bash = e.package("bash");
    let work = e.jobs.runner().config().work_dir.clone();
    let t = Instant::now();
    for i in 0..n {
        let script = match i % 3 {
            0 => format!("echo $(( {i} * 2 ))"),
            1 => format!("(setsid sleep 630{i:03} &); echo $(( {i} * 2 ))"),
            _ => "read -r x; echo $(( x * 2 ))".to_owned(),
        };
        let mut spec = job(&bash, "bash", "main.sh", &script, limits());
        spec.stdin = format!("{i}\n").into_bytes();
        let r = if i % 50 == 49 {
            let h = e.jobs.start(spec).unwrap();
            finish(&h, Duration::from_secs(30)).0
        } else {
            e.jobs.run(&spec).unwrap()
        };
        assert_eq!(
            (r.run.status, r.run.stdout.as_str()),
            (None, format!("{}\n", i * 2).as_str()),
            "job {i}: {r:?}"
        );
    }
    let elapsed = t.elapsed();
    eprintln!(
        "{n} jobs in {elapsed:?} ({:?} each)",
        elapsed / n.max(1) as u32
    );
    let Env {
        jobs,
        inst,
        work: work_tmp,
        _host,
    } = e;
    drop(jobs);
    assert_eq!(
        e2e::mounts_under(&work),
        Vec::<String>::new(),
        "job mounts left"
    );
    let dirs: Vec<_> = std::fs::read_dir(&work).unwrap().flatten().collect();
    assert!(dirs.is_empty(), "job directories left: {dirs:?}");
    for base in cgroup_bases() {
        let children: Vec<_> = std::fs::read_dir(&base)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        assert!(children.is_empty(), "cgroups left: {children:?}");
        assert!(!base.exists(), "{} left", base.display());
    }
    assert_eq!(procs_of_job_uids(), Vec::<String>::new());
    assert_eq!(host_processes_with("sleep 630"), Vec::<String>::new());
    drop((inst, work_tmp));
}

/// ppman detaches an uninstalled runtime lazily: a job running on it keeps its view (it still
/// loads modules it had not touched) and ends normally; the images' loop devices go with the
/// last job; a new job on the removed layers fails cleanly.
#[test]
fn a_job_outlives_the_uninstall_of_its_runtime() {
    let Some(e) = env(&["python"]) else {
        return;
    };
    let py = e.package("python");
    let data = e.inst.data.path().to_path_buf();
    let program = "import sys\nprint('ready', flush=True)\nsys.stdin.readline()\n\
                   import decimal, json, sqlite3\n\
                   print(json.dumps(str(decimal.Decimal(42))), sqlite3.sqlite_version_info >= (3,))\n";
    let h = e
        .jobs
        .start(job(&py, "python", "main.py", program, limits()))
        .unwrap();
    wait_for(&h, "ready");
    let version = ppman::Selector::parse(&py.entry.version.to_string()).unwrap();
    let outcome = e.inst.pm.uninstall("python", &version, false).unwrap();
    assert_eq!(outcome.removed.len(), 2, "python and base: {outcome:?}");
    assert_eq!(e2e::mounts_under(&data), Vec::<String>::new());
    assert_eq!(
        e2e::loop_devices_backed_by(&data).len(),
        py.layers.len(),
        "the running job still holds the images"
    );
    h.write_stdin(b"go\n").unwrap();
    let (r, _) = finish(&h, Duration::from_secs(30));
    assert_eq!(
        (r.run.status, r.run.stdout.as_str()),
        (None, "ready\n\"42\" True\n"),
        "{r:?}"
    );
    drop(h);
    e.jobs.runner().flush();
    let until = Instant::now() + Duration::from_secs(5);
    while !e2e::loop_devices_backed_by(&data).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(e2e::loop_devices_backed_by(&data), Vec::<String>::new());
    let r = e
        .jobs
        .run(&job(&py, "python", "main.py", "print('hi')", limits()))
        .unwrap()
        .run;
    let message = r.message.clone().unwrap_or_default();
    assert_eq!(r.status, Some(Status::XX), "{r:?}");
    assert!(
        message.contains("mount overlay") && message.contains(&*py.layers[0].to_string_lossy()),
        "{r:?}"
    );
}

/// What a Python program sees of the sandbox: its uid from the range, the hostname, Piston's
/// environment, `/box`; and the file limits as errors it can handle: the file size limit
/// (EFBIG), the job's disk (ENOSPC at its 128 MiB), threads counted against the process limit.
#[test]
fn python_sees_the_conventions_and_the_file_limits() {
    let Some(e) = env(&["python"]) else {
        return;
    };
    let code = r#"
import os, threading, time
print(UID_MIN <= os.getuid() <= UID_MAX, os.getuid() == os.getgid(), os.getgroups())
print(os.uname().nodename, os.environ["PISTON_LANGUAGE"], os.environ["HOME"], os.getcwd())
try:
    with open("/box/big", "wb") as f:
        f.write(b"x" * (2 << 20))
except OSError as e:
    print("big file", e.errno)
written = 0
try:
    for i in range(200):
        with open(f"/box/part{i}", "wb") as f:
            f.write(b"x" * (1 << 20))
        written += 1
except OSError as e:
    print("disk full", e.errno, 100 < written < 128)
threads = [threading.Thread(target=time.sleep, args=(1,)) for _ in range(40)]
try:
    for t in threads:
        t.start()
    print("40 threads")
except RuntimeError as e:
    print("threads:", e)
"#
    .replace("UID_MIN", &UID_MIN.to_string())
    .replace("UID_MAX", &UID_MAX.to_string());
    let l = Limits {
        max_file_size: 1 << 20,
        max_processes: 16,
        ..limits()
    };
    let r = e.python(&code, l);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        r.stdout,
        "True True []\npiston python /tmp /box\nbig file 27\ndisk full 28 True\n\
         threads: can't start new thread\n",
        "{r:?}"
    );
}
