//! `kill -9` at random moments of `ppman install` / `ppman uninstall`: the state is always the
//! previous or the next one, never a half one, and the next command repairs the mounts.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Fixture, Guard, assert_clean, privileged};
use ppman::{PackageId, PackageManager};
use rustix::process::{Pid, Signal, kill_process_group};
use test_support::mounts_under;

fn ppman(data: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ppman"));
    cmd.arg("--data-dir").arg(data).args(args);
    cmd
}

fn snapshot(pm: &PackageManager) -> (BTreeSet<PackageId>, BTreeSet<PackageId>) {
    let state = pm.load_state().expect("the state file is always readable");
    (
        state.roots.clone(),
        state.packages.iter().map(|p| p.id()).collect(),
    )
}

/// Whether a live (non-zombie) process of process group `pgid` remains.
fn group_alive(pgid: i32) -> bool {
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp …; comm may hold spaces, so split after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
}

/// xorshift; the seed is printed so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn kill9_during_install_and_uninstall() {
    if !privileged("kill9_during_install_and_uninstall") {
        return;
    }
    let mut fx = Fixture::new();
    // Some bulk so a download takes a measurable time.
    let bulk = fx.dir.path().join("bulk");
    fs::create_dir_all(bulk.join("usr/share/bulk")).unwrap();
    let mut rng = Rng(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1);
    let seed = rng.0;
    eprintln!("kill9 seed {seed}");
    for i in 0..64 {
        let junk: Vec<u8> = (0..64 * 1024).map(|_| rng.next() as u8).collect();
        fs::write(bulk.join(format!("usr/share/bulk/{i}")), junk).unwrap();
    }
    fx.add_tree("base", "1.0.0", &[], &[("etc/shared", "base")], Some(&bulk));
    fx.add("mid", "1.0.0", &[("base", "*")], &[("etc/mid", "mid")]);
    fx.add("lang", "1.0.0", &[("mid", "*")], &[("etc/shared", "lang")]);
    fx.publish();
    let _guard = Guard(fx.dir.path().to_owned());
    let data = fx.data();
    let pm = PackageManager::open(&data).unwrap();
    pm.repo_add("main", &fx.repo().to_string_lossy(), &fx.public_key())
        .unwrap();
    pm.sync(None).unwrap();

    let empty = snapshot(&pm);
    // One clean run of each, to know how long they take.
    let t = Instant::now();
    assert!(
        ppman(&data, &["install", "lang"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let install_time = t.elapsed();
    let full = snapshot(&pm);
    assert_eq!(full.1.len(), 3);
    let t = Instant::now();
    assert!(
        ppman(&data, &["uninstall", "lang"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let uninstall_time = t.elapsed();
    assert_eq!(snapshot(&pm), empty);
    pm.gc().unwrap();
    eprintln!("install {install_time:?}, uninstall {uninstall_time:?}");

    let rounds = 40;
    let (mut saw_previous, mut saw_next) = (0, 0);
    for round in 0..rounds {
        let before = snapshot(&pm);
        let installing = before == empty;
        let (args, after, span) = if installing {
            (["install", "lang"], &full, install_time)
        } else {
            (["uninstall", "lang"], &empty, uninstall_time)
        };
        // The whole process group dies at once, as under a crash or a service manager's SIGKILL.
        let mut child = ppman(&data, &args).process_group(0).spawn().unwrap();
        let delay = Duration::from_micros(rng.next() % (span.as_micros() as u64 * 5 / 4 + 1));
        std::thread::sleep(delay);
        let pgid = Pid::from_child(&child);
        let _ = kill_process_group(pgid, Signal::KILL);
        child.wait().unwrap();
        // A `mount` child in the middle of its system call finishes it before it dies; it is
        // not our child, so wait for the whole group to be gone (a later command would find
        // and repair its mount anyway, but the checks below would race with it).
        let deadline = Instant::now() + Duration::from_secs(5);
        while group_alive(pgid.as_raw_pid()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let now = snapshot(&pm);
        if &now == after {
            saw_next += 1;
        } else {
            assert_eq!(
                now, before,
                "round {round} ({args:?} killed after {delay:?}): a half state"
            );
            saw_previous += 1;
        }
        // The next command repairs the mounts: each installed tree reads through all its layers,
        // and nothing else is mounted.
        pm.reconcile().unwrap();
        assert!(
            pm.reconcile().unwrap().is_empty(),
            "round {round}: reconcile is idempotent"
        );
        let installed = pm.installed().unwrap();
        for p in &installed {
            assert!(
                p.tree.join(&p.package_dir[1..]).join("run").exists(),
                "round {round}: {}",
                p.entry.name
            );
        }
        if let Some(lang) = installed.iter().find(|p| p.entry.name == "lang") {
            assert_eq!(
                fs::read_to_string(lang.tree.join("etc/shared")).unwrap(),
                "lang"
            );
            assert_eq!(
                fs::read_to_string(lang.tree.join("etc/mid")).unwrap(),
                "mid"
            );
            assert!(lang.tree.join("usr/share/bulk/63").exists());
        }
        let images: BTreeSet<&str> = installed.iter().map(|p| p.entry.sha256.as_str()).collect();
        assert_eq!(
            mounts_under(&data).len(),
            images.len() + installed.len(),
            "round {round}: one mount per image and per tree"
        );
    }
    eprintln!("{rounds} kills: {saw_previous} left the previous state, {saw_next} the next one");
    if snapshot(&pm) != empty {
        pm.uninstall("lang", &ppman::Selector::any(), false)
            .unwrap();
    }
    let gc = pm.gc().unwrap();
    eprintln!("gc after the kills removed {} files", gc.files.len());
    assert_eq!(
        fs::read_dir(data.join("ppman/images")).unwrap().count(),
        0,
        "no partial or stray image left"
    );
    assert_clean(fx.dir.path());
}
