//! The escaping against the real kernel: an overlay whose lower, upper and work directories have
//! `:`, `,` and `\` in their paths mounts through classic `mount(2)`, shows the right files, and
//! its options read back from `/proc/self/mountinfo`.
//!
//! Needs root: without it the test prints why and passes, unless
//! `PISTON_TEST_REQUIRE_PRIVILEGED=1`, which makes it fail instead.

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};

use overlay_options::{OverlayOptions, split_lowerdir, split_options};
use rustix::mount::{MountFlags, UnmountFlags};

fn privileged(test: &str) -> bool {
    let root = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if root {
        return true;
    }
    if std::env::var("PISTON_TEST_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!("{test} cannot run: not running as root");
    }
    eprintln!("skipping {test}: not running as root (mounts need CAP_SYS_ADMIN)");
    false
}

/// Detaches a mount when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, UnmountFlags::DETACH);
    }
}

/// Undoes the octal escapes (`\040`, `\054`, `\134`, …) of a `/proc/self/mountinfo` field.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = |j: usize| b.get(j).is_some_and(|c| (b'0'..=b'7').contains(c));
        if b[i] == b'\\' && octal(i + 1) && octal(i + 2) && octal(i + 3) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// The super-block options of the mount at `target`, as the kernel shows them.
fn mount_options(target: &Path) -> String {
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = table
        .lines()
        .rfind(|l| l.split(' ').nth(4).map(unescape_mountinfo).as_deref() == target.to_str())
        .expect("the overlay is in the mount table");
    let (_, right) = line.split_once(" - ").unwrap();
    unescape_mountinfo(right.split(' ').nth(2).unwrap())
}

#[test]
fn escaped_paths_mount_and_read_back() {
    if !privileged("escaped_paths_mount_and_read_back") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Its own tmpfs: a file system that supports an upper dir whatever /tmp is.
    let base = dir.path().join("fs");
    fs::create_dir(&base).unwrap();
    rustix::mount::mount("tmpfs", &base, "tmpfs", MountFlags::empty(), c"mode=0700").unwrap();
    let _tmpfs = Mounted(base.clone());
    let top = base.join("top:layer,1");
    let bottom = base.join(r"bottom\layer,:");
    let upper = base.join("up,per:");
    let work = base.join(r"wo:rk\,");
    let merged = base.join("merged");
    for d in [&top, &bottom, &upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    fs::write(top.join("f"), "top").unwrap();
    fs::write(bottom.join("f"), "bottom").unwrap();
    fs::write(bottom.join("g"), "only in bottom").unwrap();
    let data = OverlayOptions::new([&top, &bottom])
        .upper(&upper, &work)
        .option("index=off")
        .option("metacopy=off")
        .option("redirect_dir=off")
        .build()
        .unwrap();
    let c_data = CString::new(data.clone()).unwrap();
    rustix::mount::mount(
        "overlay",
        &merged,
        "overlay",
        MountFlags::NOSUID | MountFlags::NODEV,
        c_data.as_c_str(),
    )
    .unwrap_or_else(|e| panic!("mount overlay ({data}): {e}"));
    let _overlay = Mounted(merged.clone());

    assert_eq!(fs::read_to_string(merged.join("f")).unwrap(), "top");
    assert_eq!(
        fs::read_to_string(merged.join("g")).unwrap(),
        "only in bottom"
    );
    fs::write(merged.join("new"), "written").unwrap();
    assert_eq!(
        fs::read_to_string(upper.join("new")).unwrap(),
        "written",
        "writes land in the escaped upper dir"
    );

    let shown = mount_options(&merged);
    let lowerdir = split_options(&shown)
        .find_map(|o| o.strip_prefix("lowerdir="))
        .unwrap_or_else(|| panic!("no lowerdir in {shown}"));
    let built = split_options(&data).next().unwrap();
    assert_eq!(format!("lowerdir={lowerdir}"), built, "shown as given");
    let layers: Vec<PathBuf> = split_lowerdir(lowerdir)
        .into_iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(layers, [top, bottom]);
}
