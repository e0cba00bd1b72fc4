//! The `ppman` binary: a thin front over the library.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Fixture, Guard, assert_clean, can_build, privileged};

fn ppman(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ppman"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn repo_with_packages() -> Fixture {
    let mut fx = Fixture::new();
    fx.add("base", "1.0.0", &[], &[("etc/shared", "base")]);
    fx.add(
        "lang",
        "3.10.2",
        &[("base", "1.x")],
        &[("etc/shared", "lang")],
    );
    fx.add(
        "lang",
        "3.11.0",
        &[("base", "1.x")],
        &[("etc/shared", "lang")],
    );
    fx.publish();
    fx
}

#[test]
fn repo_sync_list_info_and_errors() {
    if !can_build("repo_sync_list_info_and_errors") {
        return;
    }
    let fx = repo_with_packages();
    let data = fx.data();
    let key_file = fx.dir.path().join("piston.pub");
    std::fs::write(&key_file, fx.keypair.pk.to_box().unwrap().into_string()).unwrap();
    let repo = fx.repo();
    ok(&ppman(
        &data,
        &[
            "repo",
            "add",
            "main",
            repo.to_str().unwrap(),
            "--key",
            key_file.to_str().unwrap(),
        ],
    ));
    assert!(ok(&ppman(&data, &["repo", "list"])).contains("never synced"));
    assert!(ok(&ppman(&data, &["sync"])).contains("main: index version 1, 3 packages"));
    let list = ok(&ppman(&data, &["list", "--repo", "all"]));
    assert!(
        list.contains("main/lang 3.11.0") && list.contains("main/base 1.0.0"),
        "{list}"
    );
    let info = ok(&ppman(&data, &["info", "lang=3.10"]));
    assert!(info.contains("version:      3.10.2"), "{info}");
    assert!(info.contains("dependencies: base 1.x"), "{info}");
    assert!(
        info.contains(&format!("sha256:       {}", fx.entries[1].sha256)),
        "{info}"
    );

    // User errors: exit code 2, `error:` and a hint.
    let out = ppman(&data, &["install", "lang=4"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: no version of lang matches \"4\""),
        "{err}"
    );
    assert!(err.contains("hint: "), "{err}");
    let out = ppman(&data, &["repo", "add", "all", "x", "--key", "y"]);
    assert_eq!(out.status.code(), Some(2));
    // A tampered index: `caused by:` names the reason.
    std::fs::write(repo.join("index.json"), b"{}").unwrap();
    let out = ppman(&data, &["sync", "main"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("caused by: signature does not match"), "{err}");
    ok(&ppman(&data, &["repo", "remove", "main"]));
    assert_eq!(ok(&ppman(&data, &["repo", "list"])), "");
}

#[test]
fn install_list_verify_uninstall() {
    if !privileged("install_list_verify_uninstall") {
        return;
    }
    let fx = repo_with_packages();
    let _guard = Guard(fx.dir.path().to_owned());
    let data = fx.data();
    let repo = format!("file://{}", fx.repo().display());
    ok(&ppman(
        &data,
        &["repo", "add", "main", &repo, "--key", &fx.public_key()],
    ));
    ok(&ppman(&data, &["sync", "all"]));
    assert_eq!(
        ok(&ppman(&data, &["install", "lang=3.10"])),
        "added base 1.0.0 (from main)\nadded lang 3.10.2 (from main)\ninstalled lang 3.10.2\n"
    );
    let installed = ok(&ppman(&data, &["list", "--installed"]));
    assert!(
        installed.contains("lang 3.10.2\tlang\t") && installed.contains("base 1.0.0\tbase\t"),
        "{installed}"
    );
    assert!(installed.contains("(dependency)"), "{installed}");
    assert!(ok(&ppman(&data, &["verify"])).contains("all installed images match"));
    // Damage the stored image (its last byte is squashfs padding, so the mount does not care).
    let base = &fx.entries[0];
    let image = data.join(format!("ppman/images/{}.sqfs", base.sha256));
    let good = std::fs::read(&image).unwrap();
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 1;
    std::fs::write(&image, &bad).unwrap();
    let out = ppman(&data, &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("expected {}", base.sha256)));
    std::fs::write(&image, &good).unwrap();
    assert_eq!(
        ok(&ppman(&data, &["reconcile"])),
        "mounted 0, unmounted 0\n"
    );
    let out = ppman(&data, &["uninstall", "base"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("base 1.0.0 is needed by lang 3.10.2"));
    let removed = ok(&ppman(&data, &["uninstall", "lang"]));
    assert!(
        removed.contains("removed lang 3.10.2") && removed.contains("removed base 1.0.0"),
        "{removed}"
    );
    ok(&ppman(&data, &["gc"]));
    assert_clean(fx.dir.path());
}

#[test]
fn two_processes_install_at_once() {
    if !privileged("two_processes_install_at_once") {
        return;
    }
    let mut fx = repo_with_packages();
    fx.add(
        "other",
        "1.0.0",
        &[("base", "*")],
        &[("etc/other", "other")],
    );
    fx.publish();
    let _guard = Guard(fx.dir.path().to_owned());
    let data = fx.data();
    ok(&ppman(
        &data,
        &[
            "repo",
            "add",
            "main",
            fx.repo().to_str().unwrap(),
            "--key",
            &fx.public_key(),
        ],
    ));
    ok(&ppman(&data, &["sync"]));
    let spawn = |pkg: &str| {
        Command::new(env!("CARGO_BIN_EXE_ppman"))
            .arg("--data-dir")
            .arg(&data)
            .args(["install", pkg])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("lang"), spawn("other"));
    ok(&a.wait_with_output().unwrap());
    ok(&b.wait_with_output().unwrap());
    let installed = ok(&ppman(&data, &["list", "--installed"]));
    assert_eq!(installed.lines().count(), 3, "{installed}");
    assert_eq!(
        ok(&ppman(&data, &["reconcile"])),
        "mounted 0, unmounted 0\n"
    );
    ok(&ppman(&data, &["uninstall", "lang", "other"]));
    ok(&ppman(&data, &["gc"]));
    assert_clean(fx.dir.path());
}
