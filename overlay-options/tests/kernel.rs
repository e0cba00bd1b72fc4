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
use test_support::Need;

/// Detaches a mount when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, UnmountFlags::DETACH);
    }
}

/// The super-block options of the mount at `target`, as the kernel shows them.
fn mount_options(target: &Path) -> String {
    test_support::mounts::mounts()
        .into_iter()
        .rfind(|m| m.mount_point == target)
        .expect("the overlay is in the mount table")
        .super_options
}

#[test]
fn escaped_paths_mount_and_read_back() {
    if !test_support::require("escaped_paths_mount_and_read_back", &[Need::Root]) {
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
