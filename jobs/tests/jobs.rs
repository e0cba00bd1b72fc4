//! Privileged integration tests of the job layer: Piston's package conventions on a real
//! sandbox.
//!
//! The host root is the single read-only base layer (`/`: bash and gcc exist on the host), and
//! each test writes a tiny package directory into a tmpfs mounted as an extra top layer.
//! Without root (or cgroups) they print why and pass, unless PISTON_TEST_REQUIRE_PRIVILEGED=1.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use test_support::{Need, TmpfsLayer};

use jobs::{Event, JobFile, JobSpec, Jobs, JobsConfig, Stage};
use runner::{Limits, Runner, RunnerConfig, Status, Stream};

/// Job uids of these tests: apart from a server's (1990000001–) and the other test suites' (61001–
/// 64100), which may run on this host at the same time.
const UID_MIN: u32 = 65001;
const UID_MAX: u32 = 65100;

/// Root and a usable cgroup hierarchy, or the test prints why and passes (fails under
/// `PISTON_TEST_REQUIRE_PRIVILEGED=1`).
#[track_caller]
fn privileged() -> bool {
    test_support::require(&test_support::current_test(), &[Need::Root, Need::Cgroups])
}

/// Writes a package into `layer`: `scripts` are (name, body) pairs, made executable. Returns
/// its directory as the sandbox sees it.
fn package(layer: &TmpfsLayer, name: &str, scripts: &[(&str, &str)]) -> PathBuf {
    let inside = format!("/piston/packages/{name}/1.0.0");
    let host = layer.dir(&inside);
    for (n, body) in scripts {
        let p = host.join(n);
        fs::write(&p, body).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    PathBuf::from(inside)
}

struct Env {
    jobs: Jobs,
    layer: TmpfsLayer,
    _work: tempfile::TempDir,
}

fn env() -> Option<Env> {
    if !privileged() {
        return None;
    }
    let work = tempfile::tempdir().unwrap();
    let mut cfg = RunnerConfig {
        // Next to the test binary's directory: `cargo build --workspace` puts it there.
        sandbox_binary: None,
        work_dir: work.path().join("jobs"),
        uid_min: UID_MIN,
        uid_max: UID_MAX,
        gid_min: UID_MIN,
        disk_bytes: 64 << 20,
        tmp_bytes: 16 << 20,
        ..RunnerConfig::default()
    };
    cfg.cgroup.name = "piston-jobs-test".into();
    let runner = Runner::new(cfg).expect("runner set-up");
    Some(Env {
        jobs: Jobs::new(runner, JobsConfig::default()),
        layer: TmpfsLayer::new(),
        _work: work,
    })
}

impl Env {
    fn layers(&self) -> Vec<PathBuf> {
        vec![self.layer.path().to_path_buf(), PathBuf::from("/")]
    }

    fn bash_pkg(&self) -> PathBuf {
        package(
            &self.layer,
            "bash",
            &[
                ("run", "bash \"$@\"\n"),
                ("environment", "export PKG_ENV_PWD=$PWD\n"),
            ],
        )
    }

    fn job(&self, script: &str, limits: Limits) -> JobSpec {
        JobSpec {
            layers: self.layers(),
            package_dir: self.bash_pkg(),
            language: "bash".into(),
            files: vec![JobFile {
                name: "main.sh".into(),
                content: script.as_bytes().to_vec(),
                code: true,
            }],
            args: vec![],
            stdin: vec![],
            compile: None,
            run: limits,
        }
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

/// The stage's conventions: cwd /box, PISTON_LANGUAGE, the package's environment (sourced in
/// the package directory), the run script getting the first code file then the arguments, and
/// stdin.
#[test]
fn the_run_stage_follows_piston_conventions() {
    let Some(e) = env() else { return };
    let mut job = e.job(
        "read -r line; echo \"lang=$PISTON_LANGUAGE pwd=$PWD env=$PKG_ENV_PWD\"; echo \"$0|$line|$1|$2\"",
        limits(),
    );
    job.args = vec!["a b".into(), "c".into()];
    job.stdin = b"from stdin\n".to_vec();
    let r = e.jobs.run(&job).unwrap();
    assert!(r.compile.is_none());
    assert_eq!(
        r.run.stdout,
        "lang=bash pwd=/box env=/piston/packages/bash/1.0.0\nmain.sh|from stdin|a b|c\n",
        "{r:?}"
    );
}

/// The package's `environment` is evaluated once per package and language (exports only, with
/// PISTON_LANGUAGE set and the package directory as cwd), and again when the file changes.
#[test]
fn package_environment_is_evaluated_once_and_follows_changes() {
    let Some(e) = env() else { return };
    let env_file = "export GREETING=\"hi from $PISTON_LANGUAGE in $PWD\"\nNOT_EXPORTED=1\n";
    let pkg = package(
        &e.layer,
        "envtest",
        &[
            ("run", "echo \"$GREETING/${NOT_EXPORTED:-unset}/$(pwd)\"\n"),
            ("environment", env_file),
        ],
    );
    let mut job = e.job("", limits());
    job.package_dir = pkg.clone();
    job.language = "envlang".into();
    let first = e.jobs.run(&job).unwrap().run;
    assert_eq!(
        first.stdout,
        format!(
            "hi from envlang in {}/unset/{}\n",
            pkg.display(),
            runner::BOX_DIR
        ),
        "{first:?}"
    );
    assert_eq!(e.jobs.run(&job).unwrap().run.stdout, first.stdout);
    // Another language of the same package gets its own evaluation.
    job.language = "other".into();
    let other = e.jobs.run(&job).unwrap().run.stdout;
    assert!(other.starts_with("hi from other in "), "{other}");
    // A changed file is read again.
    let host = e.layer.path().join(pkg.strip_prefix("/").unwrap());
    fs::write(host.join("environment"), "export GREETING=changed\n").unwrap();
    let changed = e.jobs.run(&job).unwrap().run.stdout;
    assert!(changed.starts_with("changed/unset/"), "{changed}");
}

/// Stage scripts run under bash, as in Piston, unless their first line is `#!/bin/sh`: then
/// under /bin/sh. A changed first line is read again.
#[test]
fn stage_scripts_run_under_the_shell_their_first_line_names() {
    let Some(e) = env() else { return };
    let which = "readlink /proc/$$/exe\n";
    let sh = format!("#!/bin/sh\n{which}");
    let pkg = package(&e.layer, "shelltest", &[("compile", which), ("run", &sh)]);
    let mut job = e.job("", limits());
    job.package_dir = pkg.clone();
    job.compile = Some(limits());
    let shells = |job: &JobSpec| {
        let r = e.jobs.run(job).unwrap();
        let compile = r.compile.unwrap();
        let name = |out: &str| Path::new(out.trim()).file_name().map(|n| n.to_owned());
        (name(&compile.stdout), name(&r.run.stdout))
    };
    let bash = Some("bash".into());
    let dash = Some(
        fs::canonicalize("/bin/sh")
            .unwrap()
            .file_name()
            .unwrap()
            .to_owned(),
    );
    assert_eq!(shells(&job), (bash.clone(), dash.clone()));
    let host = e.layer.path().join(pkg.strip_prefix("/").unwrap());
    fs::write(host.join("compile"), &sh).unwrap();
    fs::write(host.join("run"), format!("#!/usr/bin/env bash\n{which}")).unwrap();
    assert_eq!(shells(&job), (dash, bash));
}

/// A `#!/bin/sh` script that only execs a program is not run: the runner starts the program with
/// the argv the shell would have built (`shift`, `"$1"`, `"$@"`, a name looked up in `PATH`), and
/// with `PWD`, which the shell exports. A missing program fails as under the shell: 127 and a
/// message on stderr. Shown with a `/bin/sh` in a layer on top that fails every job it runs.
#[test]
fn plain_exec_scripts_start_the_program_directly() {
    let Some(e) = env() else { return };
    let no_shell = TmpfsLayer::new();
    let bin = no_shell.path().join("bin");
    fs::create_dir(&bin).unwrap();
    fs::write(
        bin.join("sh"),
        "#!/usr/bin/bash\necho the shell ran >&2; exit 99\n",
    )
    .unwrap();
    fs::set_permissions(bin.join("sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("/usr/bin/bash", bin.join("bash")).unwrap();

    let show = "echo \"$(tr '\\0' ' ' < /proc/$$/cmdline)| ppid $PPID | $PWD\"\n";
    let pkg = package(
        &e.layer,
        "exectest",
        &[
            ("compile", "#!/bin/sh\n# compile\nexec bash \"$1\"\n"),
            ("run", "#!/bin/sh\nshift\nexec bash -c \"$1\" \"$@\"\n"),
        ],
    );
    let mut job = e.job(show, limits());
    job.layers.insert(0, no_shell.path().to_owned());
    job.package_dir = pkg.clone();
    job.compile = Some(limits());
    job.args = vec![show.into(), "b c".into()];
    let r = e.jobs.run(&job).unwrap();
    // compile: bash "$1" with $1 = main.sh; run: bash -c "$1" "$@" after the shift.
    let compile = r.compile.unwrap();
    assert_eq!(
        compile.stdout, "bash main.sh | ppid 1 | /box\n",
        "{compile:?}"
    );
    let run = r.run;
    assert_eq!(
        run.stdout,
        format!("bash -c {show} {show} b c | ppid 1 | /box\n"),
        "{run:?}"
    );

    let host = e.layer.path().join(pkg.strip_prefix("/").unwrap());
    let mut run_script = |text: &str| {
        fs::write(host.join("run"), text).unwrap();
        job.compile = None;
        e.jobs.run(&job).unwrap().run
    };
    // Anything more than an exec goes through the shell (here the failing one).
    let r = run_script("#!/bin/sh\nexec bash \"$@\" </dev/null\n");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (Some(99), "the shell ran\n"),
        "{r:?}"
    );
    let r = run_script("#!/bin/sh\nexec no-such-program \"$@\"\n");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (Some(127), "no-such-program: not found\n"),
        "{r:?}"
    );
    let r = run_script("#!/bin/sh\nexec ./main.sh\n");
    assert_eq!(r.code, Some(126), "{r:?}");
    assert!(
        r.stderr.starts_with("./main.sh: Permission denied"),
        "{r:?}"
    );
}

#[test]
fn c_compile_then_run_uses_the_artefact() {
    let Some(e) = env() else { return };
    let pkg = package(
        &e.layer,
        "c",
        &[
            ("compile", "gcc -O0 -o a.out \"$@\"\n"),
            ("run", "shift; ./a.out \"$@\"\n"),
        ],
    );
    let mut job = JobSpec {
        layers: e.layers(),
        package_dir: pkg,
        language: "c".into(),
        files: vec![JobFile {
            name: "main.c".into(),
            content: b"#include <stdio.h>\nint main(int c, char**v){printf(\"hi %s\\n\", c>1?v[1]:\"-\");return 0;}\n".to_vec(),
            code: true,
        }],
        args: vec!["there".into()],
        stdin: vec![],
        compile: Some(limits()),
        run: limits(),
    };
    // A data file is in the job directory but not handed to the compiler (gcc would take a
    // .txt for linker input and fail).
    job.files.push(JobFile {
        name: "notes.txt".into(),
        content: b"not C".to_vec(),
        code: false,
    });
    let r = e.jobs.run(&job).unwrap();
    let c = r.compile.as_ref().expect("compile stage");
    assert_eq!(c.code, Some(0), "{c:?}");
    assert_eq!(r.run.stdout, "hi there\n", "{:?}", r.run);

    // A failed compile skips the run; the run result is the compile result.
    job.files[0].content = b"int main( {".to_vec();
    let r = e.jobs.run(&job).unwrap();
    assert_eq!(r.run.status, Some(Status::RE));
    assert_eq!(Some(&r.run), r.compile.as_ref());
    assert!(r.run.stderr.contains("error"), "{:?}", r.run.stderr);
}

#[test]
fn interactive_job_streams() {
    let Some(e) = env() else { return };
    let h = e
        .jobs
        .start(e.job(
            "while read -r l; do echo \"got $l\"; done; echo bye",
            limits(),
        ))
        .unwrap();
    assert_eq!(
        h.next_event(Duration::from_secs(10)),
        Some(Event::Stage(Stage::Run))
    );
    h.write_stdin(b"one\n").unwrap();
    let mut seen = Vec::new();
    while !seen.ends_with(b"got one\n") {
        match h.next_event(Duration::from_secs(10)) {
            Some(Event::Output {
                stream: Stream::Stdout,
                data,
            }) => seen.extend(data),
            other => panic!("{other:?}"),
        }
    }
    h.close_stdin().unwrap();
    let mut done = None;
    while let Some(ev) = h.next_event(Duration::from_secs(10)) {
        if let Event::Done(r) = ev {
            done = Some(r);
            break;
        }
    }
    let r = done.expect("done");
    assert_eq!(r.run.stdout, "got one\nbye\n");
}
