//! Install time of an image from a local repository vs extracting the same tree from a tar.gz (what
//! Piston does), and mount time vs image size. Needs root, loop devices and squashfs-tools.
//!
//! ```sh
//! cargo run --release -p ppman --example bench -- [DIR...]   # default: /usr/lib/python3.11 /usr/lib/jvm
//! ```
//! Each DIR is copied to the same path inside a synthetic package. Page cache is warm (best of 3).

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ppman::mounts::{Mounter, SystemMounter};
use ppman::{PackageManager, Selector};

fn best<F: FnMut() -> Duration>(runs: usize, mut f: F) -> Duration {
    (0..runs).map(|_| f()).min().unwrap_or_default()
}

fn median<F: FnMut() -> Duration>(runs: usize, mut f: F) -> Duration {
    let mut v: Vec<Duration> = (0..runs).map(|_| f()).collect();
    v.sort();
    v[v.len() / 2]
}

fn du(path: &Path) -> u64 {
    let out = Command::new("du").args(["-sb"]).arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

fn bench_tree(src: &Path) {
    let mut fx = common::Fixture::new();
    let _guard = common::Guard(fx.dir.path().to_owned());
    let staging = fx.dir.path().join("staging");
    let inside = staging.join(src.strip_prefix("/").unwrap());
    fs::create_dir_all(inside.parent().unwrap()).unwrap();
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(src)
            .arg(&inside)
            .status()
            .unwrap()
            .success()
    );
    let tree_bytes = du(&staging);

    let t = Instant::now();
    let entry = fx.add_tree("pkg", "1.0.0", &[], &[], Some(&staging));
    let mksquashfs = t.elapsed();
    fx.publish();
    let targz = fx.dir.path().join("pkg.tar.gz");
    let t = Instant::now();
    assert!(
        Command::new("tar")
            .arg("czf")
            .arg(&targz)
            .arg("-C")
            .arg(&staging)
            .arg(".")
            .status()
            .unwrap()
            .success()
    );
    let tar_create = t.elapsed();
    let targz_bytes = fs::metadata(&targz).unwrap().len();
    fs::remove_dir_all(&staging).unwrap();

    // ppman: copy from the local repository into the store with size, sha256 and signature checks,
    // fsync, rename, mount the image and the tree.
    let install = best(3, || {
        let data = fx.dir.path().join("data-run");
        let pm = PackageManager::open(&data).unwrap();
        pm.repo_add("local", &fx.repo().to_string_lossy(), &fx.public_key())
            .unwrap();
        pm.sync(None).unwrap();
        let t = Instant::now();
        pm.install("pkg", &Selector::any()).unwrap();
        let d = t.elapsed();
        pm.uninstall("pkg", &Selector::any(), false).unwrap();
        pm.gc().unwrap();
        drop(pm);
        fs::remove_dir_all(&data).unwrap();
        d
    });

    // Piston: extract the tar.gz into the package directory.
    let out = fx.dir.path().join("extract");
    let extract = best(3, || {
        let _ = fs::remove_dir_all(&out);
        fs::create_dir_all(&out).unwrap();
        let t = Instant::now();
        assert!(
            Command::new("tar")
                .arg("xzf")
                .arg(&targz)
                .arg("-C")
                .arg(&out)
                .status()
                .unwrap()
                .success()
        );
        // Piston's install is durable only once written back; count the sync like ppman's fsync.
        assert!(
            Command::new("sync")
                .arg("-f")
                .arg(&out)
                .status()
                .unwrap()
                .success()
        );
        t.elapsed()
    });
    let _ = fs::remove_dir_all(&out);

    // Mount time of this image alone.
    let image = fx.repo().join(&entry.url);
    let mnt = fx.dir.path().join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let mount = median(9, || {
        let t = Instant::now();
        SystemMounter.mount_image(&image, &mnt).unwrap();
        let d = t.elapsed();
        SystemMounter.unmount(&mnt).unwrap();
        d
    });
    println!(
        "| {} | {} | {} (mksquashfs {:.1} s) | {} (tar czf {:.1} s) | {} | {} | {} |",
        src.display(),
        mib(tree_bytes),
        mib(entry.size),
        mksquashfs.as_secs_f64(),
        mib(targz_bytes),
        tar_create.as_secs_f64(),
        ms(install),
        ms(extract),
        ms(mount),
    );
}

fn main() {
    if !common::privileged("bench") {
        std::process::exit(1);
    }
    let mut dirs: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        dirs = ["/usr/lib/python3.11", "/usr/lib/jvm"]
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .collect();
    }
    println!(
        "| tree | size | squashfs (zstd) | tar.gz | ppman install (local repo, best of 3) | tar xzf + sync (best of 3) | mount image (median of 9) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for dir in dirs {
        bench_tree(&dir);
    }
}
