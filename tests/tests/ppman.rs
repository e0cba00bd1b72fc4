//! ppman end to end against the repository repo-builder built (scripts/test.sh), served over
//! HTTP on loopback: the `ppman` command and the library, real images, real mounts, real
//! programs run inside the mounted trees.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use e2e::{Installation, StaticServer, index_entry, read_index, test_repo};
use ppman::{PackageManager, Selector};
use test_support::{
    loop_devices_backed_by, mount_points_under, mounts_under, wait_for_no_loop_devices,
};

/// The `ppman` binary of this build (`target/<profile>/ppman`, next to `deps/` where this test
/// runs). `cargo test -p e2e` does not build another package's binaries.
fn ppman_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join("ppman");
    assert!(
        bin.is_file(),
        "{} is missing: build the workspace first: cargo build --workspace",
        bin.display()
    );
    bin
}

/// Runs `ppman --data-dir <data> ARGS` (no terminal: plain progress lines).
fn ppman(data: &Path, args: &[&str]) -> Output {
    Command::new(ppman_binary())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("PISTON_DATA_DIRECTORY")
        .env_remove("RUST_LOG")
        .output()
        .expect("run ppman")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `ppman ARGS` must succeed; returns its stdout.
fn ppman_ok(data: &Path, args: &[&str]) -> String {
    let out = ppman(data, args);
    assert!(
        out.status.success(),
        "ppman {args:?}: {}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `argv` chrooted into `tree` with a plain environment.
fn chroot(tree: &Path, argv: &[&str]) -> Output {
    Command::new("chroot")
        .arg(tree)
        .args(argv)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LANG", "C.UTF-8")
        .output()
        .expect("run chroot")
}

/// Runs the package's `run` script inside its tree with `args`, the way a run stage does: the
/// package's `environment` sourced in its directory first.
fn run_in_tree(tree: &Path, package_dir: &str, args: &[&str]) -> Output {
    let script = "cd -- \"$1\" && if [ -f ./environment ]; then . ./environment; fi; \
                  cd /tmp && s=\"$1/run\" && shift && exec /bin/bash \"$s\" \"$@\"";
    let mut argv = vec!["/bin/bash", "-c", script, "stage", package_dir];
    argv.extend_from_slice(args);
    chroot(tree, &argv)
}

/// Runs Python's `print(6*7)` through the package's own `run` script inside its tree.
fn python_prints_42(tree: &Path, package_dir: &str) -> Result<(), String> {
    let out = run_in_tree(tree, package_dir, &["-c", "print(6*7)"]);
    if out.status.success() && out.stdout == b"42\n" {
        Ok(())
    } else {
        Err(format!(
            "{}: stdout {:?}, stderr {:?}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        ))
    }
}

/// `key: value` lines of `ppman info`.
fn info_fields(out: &str) -> std::collections::BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits a little for autoclear loop devices to go (the kernel detaches them once the last
/// mount using them is gone, which a lazy unmount may delay).
fn loops_gone(data: &Path) -> Vec<String> {
    wait_for_no_loop_devices(data, Duration::from_secs(5))
}

/// Nothing of the data directory is mounted, no loop device points into it.
fn assert_nothing_mounted(data: &Path) {
    assert_eq!(mounts_under(data), Vec::<String>::new(), "mounts left");
    assert_eq!(loops_gone(data), Vec::<String>::new(), "loop devices left");
}

/// Uninstalls whatever is installed in a data directory when dropped, so a failing test that
/// drives the `ppman` command leaves no mount behind.
struct UninstallAll(PathBuf);

impl Drop for UninstallAll {
    fn drop(&mut self) {
        let Ok(pm) = PackageManager::open(&self.0) else {
            return;
        };
        for p in pm.installed().unwrap_or_default() {
            if let Ok(sel) = Selector::parse(&p.entry.version.to_string()) {
                let _ = pm.uninstall(&p.entry.name, &sel, true);
            }
        }
        let _ = pm.gc();
    }
}

#[test]
fn install_python_with_its_base_then_nothing_is_left() {
    let Some(inst) = Installation::new(&["python"]) else {
        return;
    };
    let python = inst.package("python");
    assert!(python.root);
    assert!(python.layers.len() >= 2, "python sits on base: {python:?}");
    assert!(python.tree.join("usr/bin/python3").exists());
    assert!(
        python
            .tree
            .join(python.package_dir.trim_start_matches('/'))
            .join("run")
            .is_file()
    );
    let data = inst.data.path().to_path_buf();
    assert!(!mounts_under(&data).is_empty());
    drop(inst);
    assert_eq!(mounts_under(&data), Vec::<String>::new());
    assert_eq!(loop_devices_backed_by(&data), Vec::<String>::new());
}

/// The whole life of a runtime through the `ppman` command: add the repository, sync, list,
/// info, install, run its interpreter in the mounted tree, uninstall, gc — nothing left.
#[test]
fn cli_installs_runs_and_removes_python() {
    let Some(repo) = test_repo() else {
        return;
    };
    let index = read_index(&repo);
    let python = index_entry(&index, "python");
    let base = index_entry(&index, "base");
    let (pv, bv) = (python.version.to_string(), base.version.to_string());
    let server = StaticServer::start(&repo).expect("static server");
    let url = server.url.clone();
    let tmp = tempfile::Builder::new()
        .prefix("piston-e2e-cli-")
        .tempdir()
        .unwrap();
    let data = tmp.path();
    let _cleanup = UninstallAll(data.to_owned());
    let key = repo.join("piston.pub");

    let out = ppman_ok(
        data,
        &["repo", "add", "test", &url, "--key", key.to_str().unwrap()],
    );
    assert!(out.contains("added repository test"), "{out}");
    // Installing before a sync is a user error with a hint.
    let out = ppman(data, &["install", "python"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        text(&out.stderr).contains("hint: run `ppman sync`"),
        "{out:?}"
    );

    let packages = &index.packages;
    let out = ppman_ok(data, &["sync"]);
    assert_eq!(
        out,
        format!(
            "test: index version {}, {} packages\n",
            index.version,
            packages.len()
        )
    );
    let out = ppman_ok(data, &["repo", "list"]);
    assert!(
        out.contains(&format!("test\t{url}\tindex version {}", index.version)),
        "{out}"
    );

    let out = ppman_ok(data, &["list"]);
    for p in packages {
        let line = format!("  test/{} {}\t", p.name, p.version);
        assert!(out.contains(&line), "{line:?} missing from:\n{out}");
    }

    let info = info_fields(&ppman_ok(data, &["info", "python"]));
    assert_eq!(info["name"], "python");
    assert_eq!(info["version"], pv);
    assert_eq!(info["installed"], "false");
    assert_eq!(info["author"], python.author);
    assert!(!info["author"].is_empty());
    assert_eq!(info["size"], format!("{} bytes", python.size));
    assert_eq!(info["sha256"], python.sha256);
    assert_eq!(info["sha256"].len(), 64);
    assert_eq!(
        info["dependencies"],
        format!("base {}", python.dependencies["base"])
    );
    assert!(info["languages"].starts_with("python"), "{info:?}");
    assert_eq!(info["download"], format!("{url}/{}", python.url));
    assert_eq!(
        info["build files"],
        format!(
            "{url}/{} (sha256 {})",
            python.build_file.url, python.build_file.sha256
        )
    );

    let out = ppman_ok(data, &["install", "python"]);
    assert!(
        out.contains(&format!("added base {bv} (from test)")),
        "{out}"
    );
    assert!(
        out.contains(&format!("added python {pv} (from test)")),
        "{out}"
    );
    assert!(out.contains(&format!("installed python {pv}")), "{out}");
    // Installing again adds nothing.
    let out = ppman_ok(data, &["install", "python=3.x"]);
    assert_eq!(out, format!("installed python {pv}\n"));

    let out = ppman_ok(data, &["list", "--installed"]);
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("python {pv}\t")))
        .unwrap_or_else(|| panic!("python not listed as installed:\n{out}"));
    let tree = PathBuf::from(line.split('\t').nth(2).expect("tree column"));
    assert!(
        out.contains(&format!("base {bv}\t\t")) && out.contains("(dependency)"),
        "{out}"
    );
    let package_dir = format!("/piston/packages/python/{pv}");
    python_prints_42(&tree, &package_dir).expect("python runs in its tree");
    let info = info_fields(&ppman_ok(data, &["info", "python"]));
    assert_eq!(info["installed"], "true");
    assert_eq!(info["resolved"], format!("base {bv}"));
    let info = info_fields(&ppman_ok(data, &["info", "base"]));
    assert_eq!(info["needed by"], format!("python {pv}"));
    let out = ppman_ok(data, &["verify"]);
    assert!(out.contains("all installed images match"), "{out}");

    let out = ppman_ok(data, &["uninstall", "python"]);
    assert!(out.contains(&format!("removed python {pv}")), "{out}");
    assert!(
        out.contains(&format!("removed base {bv}")),
        "base is not needed any more: {out}"
    );
    let out = ppman(data, &["uninstall", "python"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        text(&out.stderr).starts_with("error: no installed version of python"),
        "{out:?}"
    );
    let out = ppman_ok(data, &["gc"]);
    assert!(out.starts_with("removed 0 packages"), "{out}");
    assert_eq!(ppman_ok(data, &["list", "--installed"]), "");

    assert_nothing_mounted(data);
    let root = data.join("ppman");
    assert_eq!(files_in(&root.join("images")), Vec::<String>::new());
    assert_eq!(files_in(&root.join("m")), Vec::<String>::new());
    assert_eq!(files_in(&root.join("t")), Vec::<String>::new());
    assert!(!tree.exists(), "the tree's mount point is gone");
}

/// gcc is a layer on base: its tree is the overlay of both, and a C program compiles and runs in
/// it. base cannot be uninstalled while gcc needs it; with cascade both go.
#[test]
fn gcc_on_base_compiles_c_and_base_cannot_go_while_gcc_needs_it() {
    let Some(inst) = Installation::new(&["gcc"]) else {
        return;
    };
    let data = inst.data.path().to_path_buf();
    let gcc = inst.package("gcc");
    let base = inst.package("base");
    assert!(gcc.root && !base.root);
    assert_eq!(gcc.layers.len(), 2, "{gcc:?}");
    assert_eq!(gcc.layers[1], base.layers[0], "base is the bottom layer");
    // gcc comes from the top image, bash from the bottom one; the tree has both.
    assert!(gcc.layers[0].join("usr/bin/gcc-12").exists());
    assert!(!gcc.layers[1].join("usr/bin/gcc-12").exists());
    assert!(gcc.layers[1].join("usr/bin/bash").exists());
    assert!(!gcc.layers[0].join("usr/bin/bash").exists());
    assert!(gcc.tree.join("usr/bin/gcc-12").exists() && gcc.tree.join("usr/bin/bash").exists());
    // Read-only on the host too.
    let err = std::fs::write(gcc.tree.join("tmp/x"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(30), "EROFS expected: {err}");

    // Compile and run inside the tree, with a private tmpfs on its /tmp (the tree is read-only).
    let src = "#include <math.h>\n#include <stdio.h>\n\
               int main(int argc, char **argv) { printf(\"%d %s %.0f\\n\", 6 * 7, argc > 1 ? argv[1] : \"-\", sqrt(81.0)); return 3; }\n";
    let script = format!(
        "set -e; mount -t tmpfs -o size=64m tmpfs '{tree}/tmp'; \
         printf '%s' \"$SRC\" > '{tree}/tmp/main.c'; \
         chroot '{tree}' /bin/sh -c 'cd /tmp && gcc -O2 -o prog main.c -lm && ./prog layered'",
        tree = gcc.tree.display()
    );
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            &script,
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("SRC", src)
        .output()
        .expect("unshare");
    assert_eq!(
        (out.status.code(), text(&out.stdout).as_str()),
        (Some(3), "42 layered 9\n"),
        "stderr: {}",
        text(&out.stderr)
    );

    // base is needed by gcc: refused, by the library and by the command, naming gcc.
    let version =
        |p: &ppman::InstalledPackage| Selector::parse(&p.entry.version.to_string()).unwrap();
    match inst.pm.uninstall("base", &version(&base), false) {
        Err(ppman::Error::HasDependents {
            package,
            dependents,
        }) => {
            assert_eq!(package, format!("base {}", base.entry.version));
            assert_eq!(dependents, [format!("gcc {}", gcc.entry.version)]);
        }
        other => panic!("uninstalling base while gcc needs it: {other:?}"),
    }
    let out = ppman(&data, &["uninstall", "base"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("is needed by gcc {}", gcc.entry.version))
            && err.contains("--cascade"),
        "{err}"
    );
    // Nothing changed.
    assert_eq!(inst.pm.installed().unwrap().len(), 2);
    assert!(gcc.tree.join("usr/bin/gcc-12").exists());

    let outcome = inst.pm.uninstall("base", &version(&base), true).unwrap();
    let mut removed: Vec<String> = outcome.removed.iter().map(|p| p.id.to_string()).collect();
    removed.sort();
    assert_eq!(
        removed,
        [
            format!("base {}", base.entry.version),
            format!("gcc {}", gcc.entry.version)
        ]
    );
    assert_eq!(inst.pm.installed().unwrap(), Vec::new());
    assert_nothing_mounted(&data);
    assert_eq!(
        files_in(&inst.pm.root().join("images")),
        Vec::<String>::new()
    );
}

/// A copy of the real repository with one byte of the python image flipped: the install is
/// refused naming the image, nothing is installed or mounted. A flipped byte in the index makes
/// the sync fail instead.
#[test]
fn tampered_repository_is_refused_and_nothing_is_installed() {
    let Some(repo) = test_repo() else {
        return;
    };
    let index = read_index(&repo);
    let python = index_entry(&index, "python");
    let copy = tempfile::Builder::new()
        .prefix("piston-e2e-tampered-")
        .tempdir()
        .unwrap();
    std::fs::create_dir(copy.path().join("images")).unwrap();
    for f in ["index.json", "index.json.minisig", "piston.pub"] {
        std::fs::copy(repo.join(f), copy.path().join(f)).unwrap();
    }
    for p in ["base", "python"] {
        let url = &index_entry(&index, p).url;
        std::fs::copy(repo.join(url), copy.path().join(url)).unwrap();
    }
    let image = copy.path().join(&python.url);
    let mut bytes = std::fs::read(&image).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&image, &bytes).unwrap();
    drop(bytes);

    let server = StaticServer::start(copy.path()).unwrap();
    let data = tempfile::Builder::new()
        .prefix("piston-e2e-")
        .tempdir()
        .unwrap();
    let _cleanup = UninstallAll(data.path().to_owned());
    let pm = PackageManager::open(data.path()).unwrap();
    let key = std::fs::read_to_string(repo.join("piston.pub")).unwrap();
    pm.repo_add("test", &server.url, &key).unwrap();
    pm.sync(None).expect("the index itself is intact");
    match pm.install("python", &Selector::any()) {
        Err(ppman::Error::Digest {
            url,
            expected,
            actual,
        }) => {
            assert_eq!(url, format!("{}/{}", server.url, python.url));
            assert_eq!(expected, python.sha256);
            assert_ne!(actual, expected);
        }
        other => panic!("tampered image accepted or wrong error: {other:?}"),
    }
    assert_eq!(pm.installed().unwrap(), Vec::new());
    assert!(pm.load_state().unwrap().packages.is_empty());
    assert_nothing_mounted(data.path());
    let images = files_in(&pm.root().join("images"));
    assert!(
        !images
            .iter()
            .any(|f| f.contains(&python.sha256) || f.ends_with(".partial")),
        "the tampered image (or its partial download) is in the store: {images:?}"
    );

    // The command says so, with the image, the digests and a hint; an internal (not user) error.
    let out = ppman(data.path(), &["install", "python"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: sha256 mismatch: expected {}",
            python.url, python.sha256
        )) && err
            .contains("hint: the image does not match the signed index; nothing was installed"),
        "{err}"
    );
    assert_eq!(ppman_ok(data.path(), &["list", "--installed"]), "");
    assert_nothing_mounted(data.path());

    // A flipped byte in the index: the signature no longer holds, the sync is refused and the
    // previously synced copy stays.
    let index_file = copy.path().join("index.json");
    let mut raw = std::fs::read(&index_file).unwrap();
    let at = raw.len() / 2;
    raw[at] ^= 0x20;
    std::fs::write(&index_file, &raw).unwrap();
    match pm.sync(None) {
        Err(ppman::Error::Index { repo, url, .. }) => {
            assert_eq!(repo, "test");
            assert_eq!(url, format!("{}/index.json", server.url));
        }
        other => panic!("tampered index accepted or wrong error: {other:?}"),
    }
    let out = ppman(data.path(), &["sync"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("error: index of repository test"),
        "{out:?}"
    );
    assert_eq!(pm.repos().unwrap()[0].index_version, Some(index.version));
    pm.gc().unwrap();
    assert_eq!(files_in(&pm.root().join("images")), Vec::<String>::new());
}

/// A simulated reboot: every mount of the data directory is detached by hand; `ppman reconcile`
/// rebuilds them from the state file and python runs again; a second reconcile changes nothing.
#[test]
fn reconcile_rebuilds_the_mounts_after_a_simulated_reboot() {
    let Some(inst) = Installation::new(&["python"]) else {
        return;
    };
    let data = inst.data.path().to_path_buf();
    let python = inst.package("python");
    python_prints_42(&python.tree, &python.package_dir).expect("python runs before");

    // Trees (t/) before the images (m/) they stack.
    let mut targets: Vec<PathBuf> = mount_points_under(&data);
    targets.sort_by(|a, b| b.cmp(a));
    targets.dedup();
    let installed = inst.pm.installed().unwrap();
    let expected = installed.len() + python.layers.len();
    assert_eq!(targets.len(), expected, "{targets:?}");
    for t in &targets {
        let st = Command::new("umount").arg("-l").arg(t).status().unwrap();
        assert!(st.success(), "umount -l {}", t.display());
    }
    assert_nothing_mounted(&data);
    assert!(python_prints_42(&python.tree, &python.package_dir).is_err());

    let out = ppman_ok(&data, &["reconcile"]);
    assert_eq!(out, format!("mounted {expected}, unmounted 0\n"));
    python_prints_42(&python.tree, &python.package_dir).expect("python runs after reconcile");
    let again = inst.pm.reconcile().unwrap();
    assert!(again.is_empty(), "reconcile is idempotent: {again:?}");
    assert_eq!(
        loop_devices_backed_by(&data).len(),
        python.layers.len(),
        "one loop device per image: {:?}",
        loop_devices_backed_by(&data)
    );
    drop(inst);
    assert_nothing_mounted(&data);
}

/// Three `ppman install` processes at once on one data directory, from a repository that is a
/// plain local folder (as on an air-gapped host): all succeed, the shared base is stored and
/// mounted once, every runtime runs; base stays while anything needs it.
#[test]
fn concurrent_installs_from_a_local_folder_share_one_base() {
    let Some(repo) = test_repo() else {
        return;
    };
    let index = read_index(&repo);
    let tmp = tempfile::Builder::new()
        .prefix("piston-e2e-concurrent-")
        .tempdir()
        .unwrap();
    let data = tmp.path();
    let _cleanup = UninstallAll(data.to_owned());
    let key = repo.join("piston.pub");
    ppman_ok(
        data,
        &[
            "repo",
            "add",
            "local",
            repo.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    ppman_ok(data, &["sync"]);
    let wanted = ["python", "gcc", "node"];
    let outputs: Vec<Output> = std::thread::scope(|s| {
        let handles: Vec<_> = wanted
            .iter()
            .map(|p| s.spawn(move || ppman(data, &["install", p])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (p, out) in wanted.iter().zip(&outputs) {
        assert!(out.status.success(), "install {p}: {out:?}");
        let v = &index_entry(&index, p).version;
        assert!(
            text(&out.stdout).contains(&format!("installed {p} {v}")),
            "{p}: {out:?}"
        );
    }
    let pm = PackageManager::open(data).unwrap();
    let installed = pm.installed().unwrap();
    let mut names: Vec<&str> = installed.iter().map(|p| p.entry.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["base", "gcc", "node", "python"]);
    // One image file, one mount and one loop device per package; none of a replaced file.
    assert_eq!(files_in(&pm.root().join("images")).len(), 4);
    let loops = loop_devices_backed_by(data);
    assert_eq!(loops.len(), 4, "{loops:?}");
    assert!(!loops.iter().any(|l| l.ends_with("(deleted)")), "{loops:?}");
    let base_layer = &installed
        .iter()
        .find(|p| p.entry.name == "base")
        .unwrap()
        .layers[0];
    for p in &installed {
        assert_eq!(p.layers.last(), Some(base_layer), "{p:?}");
    }

    let pkg = |name: &str| installed.iter().find(|p| p.entry.name == name).unwrap();
    let python = pkg("python");
    python_prints_42(&python.tree, &python.package_dir).expect("python runs");
    let node = pkg("node");
    let out = run_in_tree(&node.tree, &node.package_dir, &["-e", "console.log(6*7)"]);
    assert_eq!(
        (out.status.code(), text(&out.stdout).as_str()),
        (Some(0), "42\n"),
        "{out:?}"
    );

    // base goes only with the last package that needs it.
    for (i, p) in wanted.iter().enumerate() {
        let out = ppman_ok(data, &["uninstall", p]);
        let last = i == wanted.len() - 1;
        assert_eq!(out.contains("removed base"), last, "uninstall {p}: {out}");
        let still: Vec<String> = pm
            .installed()
            .unwrap()
            .iter()
            .map(|p| p.entry.name.clone())
            .collect();
        assert_eq!(still.contains(&"base".to_owned()), !last, "{still:?}");
    }
    ppman_ok(data, &["gc"]);
    assert_nothing_mounted(data);
    assert_eq!(files_in(&pm.root().join("images")), Vec::<String>::new());
}

/// `ppman install` killed (SIGKILL) in the middle of a download: nothing is installed or
/// mounted, the partial download is left for `gc`, which removes it; the next install works.
/// The image is served from a FIFO in a local-folder repository, so the test decides when the
/// download stalls.
#[test]
fn an_install_killed_mid_download_leaves_only_a_partial_file_that_gc_removes() {
    let Some(repo) = test_repo() else {
        return;
    };
    let index = read_index(&repo);
    let python = index_entry(&index, "python");
    let base = index_entry(&index, "base");
    let copy = tempfile::Builder::new()
        .prefix("piston-e2e-fifo-")
        .tempdir()
        .unwrap();
    std::fs::create_dir(copy.path().join("images")).unwrap();
    for f in ["index.json", "index.json.minisig", "piston.pub", &base.url] {
        std::fs::copy(repo.join(f), copy.path().join(f)).unwrap();
    }
    let fifo = copy.path().join(&python.url);
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success(), "mkfifo");
    let tmp = tempfile::Builder::new()
        .prefix("piston-e2e-killed-")
        .tempdir()
        .unwrap();
    let data = tmp.path();
    let _cleanup = UninstallAll(data.to_owned());
    let key = repo.join("piston.pub");
    ppman_ok(
        data,
        &[
            "repo",
            "add",
            "local",
            copy.path().to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    ppman_ok(data, &["sync"]);

    let mut child = Command::new(ppman_binary())
        .arg("--data-dir")
        .arg(data)
        .args(["install", "python"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for ppman to open the image (after base is downloaded): opening a FIFO without
    // blocking fails until it has a reader.
    let until = Instant::now() + Duration::from_secs(30);
    let probe = loop {
        use std::os::unix::fs::OpenOptionsExt;
        let nonblocking = rustix::fs::OFlags::NONBLOCK.bits() as i32;
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nonblocking)
            .open(&fifo)
        {
            Ok(f) => break f,
            Err(e) => {
                let exited = child.try_wait().unwrap();
                assert!(
                    exited.is_none() && Instant::now() < until,
                    "ppman never read the image ({e}; exit {exited:?})"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    // A blocking writer (returns at once: there is a reader), then the probe goes.
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    drop(probe);
    let bytes = std::fs::read(repo.join(&python.url)).unwrap();
    let half = bytes.len() / 2;
    std::io::Write::write_all(&mut writer, &bytes[..half]).unwrap();
    let images = data.join("ppman/images");
    let partial = || {
        files_in(&images)
            .into_iter()
            .find(|f| f.starts_with(&python.sha256) && f.ends_with(".partial"))
    };
    let until = Instant::now() + Duration::from_secs(30);
    while partial().is_none_or(|p| std::fs::metadata(images.join(p)).unwrap().len() < half as u64) {
        assert!(Instant::now() < until, "the download never got half way");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    drop(writer);

    let pm = PackageManager::open(data).unwrap();
    assert_eq!(pm.installed().unwrap(), Vec::new());
    assert_nothing_mounted(data);
    let left = partial().expect("the partial download is left");
    assert!(
        !files_in(&images).contains(&format!("{}.sqfs", python.sha256)),
        "an unverified image under its final name"
    );
    let out = ppman_ok(data, &["gc"]);
    assert!(out.contains("removed 0 packages, 2 files"), "{out}");
    assert_eq!(files_in(&images), Vec::<String>::new(), "{left} and base");

    // The image is back: the install completes.
    std::fs::remove_file(&fifo).unwrap();
    std::fs::write(&fifo, &bytes).unwrap();
    let out = ppman_ok(data, &["install", "python"]);
    assert!(
        out.contains(&format!("installed python {}", python.version)),
        "{out}"
    );
    let installed = pm.installed().unwrap();
    let py = installed.iter().find(|p| p.entry.name == "python").unwrap();
    python_prints_42(&py.tree, &py.package_dir).expect("python runs");
}

/// An installed image damaged on disk is found by `ppman verify`, naming the package and both
/// digests.
#[test]
fn verify_finds_a_damaged_installed_image() {
    let Some(inst) = Installation::new(&["bash"]) else {
        return;
    };
    let data = inst.data.path().to_path_buf();
    assert!(ppman_ok(&data, &["verify"]).contains("all installed images match"));
    let bash = inst.package("bash");
    let image = inst
        .pm
        .root()
        .join("images")
        .join(format!("{}.sqfs", bash.entry.sha256));
    // Appending keeps the mounted file system's bytes as they are.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&image)
        .unwrap();
    std::io::Write::write_all(&mut f, b"x").unwrap();
    drop(f);
    let out = ppman(&data, &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!(
            "bash {}: {} has sha256 ",
            bash.entry.version,
            image.display()
        )) && stdout.contains(&format!(", expected {}", bash.entry.sha256)),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("1 installed images are damaged"),
        "{out:?}"
    );
    let problems = inst.pm.verify().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].expected, bash.entry.sha256);
    drop(inst);
    assert_nothing_mounted(&data);
}
