//! `repo-builder test`: runs a built package's `test.*` files on its stack and expects `OK`.
//!
//! Until the runner's sandbox is wired in, each test runs chrooted into an overlay of the
//! package's images with a throw-away tmpfs upper layer, in new mount, PID and network namespaces.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ppman::schema::package_dir;

use crate::Error;
use crate::build::Built;
use crate::layout::Layout;
use crate::shell::{StackScript, qp, quote};

/// The result of one test file.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    pub file: String,
    pub language: String,
    pub passed: bool,
    pub output: String,
}

/// Runs every `test.*` file of `pkg` (stack: `stack[0]` is the package, top-most first).
pub fn run_tests(
    layout: &Layout,
    pkg: &Built,
    stack: &[&Built],
    build_dir: &Path,
) -> Result<Vec<TestOutcome>, Error> {
    let mut tests: Vec<PathBuf> = std::fs::read_dir(build_dir)
        .map_err(|source| Error::Io {
            path: build_dir.to_owned(),
            source,
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("test."))
        })
        .collect();
    tests.sort();
    let pkg_dir = package_dir(&pkg.meta.name, &pkg.meta.version);
    let mut outcomes = Vec::new();
    for test in tests {
        let file = test
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let ext = file.trim_start_matches("test.");
        let language = pkg
            .meta
            .provides
            .iter()
            .find(|p| p.language == ext || p.aliases.iter().any(|a| a == ext))
            .map(|p| p.language.clone())
            .ok_or_else(|| Error::TestLanguage {
                file: file.clone(),
                package: pkg.meta.name.clone(),
            })?;
        let output = run_one(layout, stack, &pkg_dir, &language, &test, pkg.compiled)?;
        outcomes.push(TestOutcome {
            passed: output.trim() == "OK",
            file,
            language,
            output,
        });
    }
    Ok(outcomes)
}

fn run_one(
    layout: &Layout,
    stack: &[&Built],
    pkg_dir: &str,
    language: &str,
    test: &Path,
    compiled: bool,
) -> Result<String, Error> {
    let scratch = tempfile::Builder::new()
        .prefix("repo-builder-test-")
        .tempdir()
        .map_err(|source| Error::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    let s = scratch.path();
    let images: Vec<PathBuf> = stack.iter().map(|b| layout.out.join(&b.image)).collect();
    let rw = s.join("rw");
    let upper = rw.join("upper");
    let work = rw.join("work");
    let merged = s.join("merged");
    let mut script = String::from("set -eu\nmount --make-rprivate /\n");
    script.push_str(&format!(
        "mkdir -p {rw}\nmount -t tmpfs -o size=512m,mode=0755 tmpfs {rw}\nmkdir -p {u} {w}\n",
        rw = qp(&rw),
        u = qp(&upper),
        w = qp(&work)
    ));
    let mut stack_script = StackScript::new(&images, &s.join("lower"), &upper, &work, &merged);
    let file = test.file_name().and_then(|n| n.to_str()).unwrap_or("test");
    let m = qp(&merged);
    stack_script
        .push(&format!(
            "mkdir -p {m}/piston/jobs/test {m}/tmp && chmod 1777 {m}/tmp"
        ))
        .push(&format!(
            "cp {} {m}/piston/jobs/test/{}",
            qp(test),
            quote(file)
        ));
    let steps = if compiled {
        format!(
            "bash {pkg}/compile {f} && bash {pkg}/run {f}",
            pkg = quote(pkg_dir),
            f = quote(file)
        )
    } else {
        format!("bash {pkg}/run {f}", pkg = quote(pkg_dir), f = quote(file))
    };
    let inner = format!(
        "cd {pkg} && if [ -f environment ]; then . ./environment; fi; cd /piston/jobs/test && {steps}",
        pkg = quote(pkg_dir)
    );
    stack_script.push(&format!(
        "exec chroot {m} /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp LANG=C.UTF-8 PISTON_LANGUAGE={lang} /bin/bash -c {inner}",
        lang = quote(language),
        inner = quote(&inner)
    ));
    script.push_str(stack_script.text());
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--net",
            "--pid",
            "--fork",
            "--kill-child",
            "--",
        ])
        .args(["timeout", "--kill-after=5", "120", "/bin/sh", "-c"])
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            what: "unshare".into(),
            source,
        })?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || text.trim() != "OK" {
        text.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    Ok(text)
}
