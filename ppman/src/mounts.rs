//! Mounts are derived state: from the list of installed packages, [`reconcile`] computes which image
//! mounts and tree mounts must exist and makes the kernel's mount table match, idempotently.
//!
//! Layout under ppman's directory (short paths keep overlay options far below the 4096-byte limit
//! of classic `mount(2)`):
//! - `m/<12 hex of sha256>`: each image, mounted once read-only (squashfs on an autoclear loop device);
//! - `t/<name>@<version>`: each runtime's tree, a read-only overlay `lowerdir=<pkg>:<dep1>:…`
//!   (top-most first), or a read-only bind mount when the package has no dependencies (overlayfs
//!   needs two lower layers when it has no upper one).
//!
//! Every kernel call goes through the [`Mounter`] trait; [`SystemMounter`] is the real one.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use overlay_options::{OverlayOptionError, OverlayOptions, split_options};
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount,
};

use crate::error::{Error, Result};

/// Directory (under ppman's directory) of image mounts.
pub const IMAGE_MOUNTS: &str = "m";
/// Directory (under ppman's directory) of tree mounts.
pub const TREE_MOUNTS: &str = "t";
/// Classic `mount(2)` copies at most one page of options; past it, use the new mount API.
const CLASSIC_OPTIONS_LIMIT: usize = 4000;

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub target: PathBuf,
    pub fstype: String,
    pub source: String,
    /// Super-block options (for overlay: `lowerdir=…`).
    pub options: String,
    /// Backing file of the loop device, when the source is one.
    pub backing: Option<PathBuf>,
}

/// The kernel seam.
pub trait Mounter: Send + Sync {
    /// Mounts a squashfs image read-only (nodev, nosuid) on an autoclear loop device.
    fn mount_image(&self, image: &Path, target: &Path) -> io::Result<()>;
    /// Mounts a read-only tree of `lowers`, top-most first.
    fn mount_tree(&self, lowers: &[PathBuf], target: &Path) -> io::Result<()>;
    /// Detaches the top mount at `target` lazily: users keep reading until they let go.
    fn unmount(&self, target: &Path) -> io::Result<()>;
    /// The current mount table.
    fn mounts(&self) -> io::Result<Vec<MountEntry>>;
}

/// The real mounter: util-linux `mount` for squashfs (it attaches the loop device with
/// `LOOP_CONFIGURE`, read-only and autoclear, and retries when another process takes the same free
/// device; doing that ourselves needs `ioctl`, i.e. `unsafe`), `rustix` for overlays, binds and unmounts.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemMounter;

impl Mounter for SystemMounter {
    fn mount_image(&self, image: &Path, target: &Path) -> io::Result<()> {
        let out = Command::new("mount")
            .args(["-t", "squashfs", "-o", "loop,ro,nodev,nosuid"])
            .arg(image)
            .arg(target)
            .output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "mount: {} ({})",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            )))
        }
    }

    fn mount_tree(&self, lowers: &[PathBuf], target: &Path) -> io::Result<()> {
        let flags = MountFlags::RDONLY | MountFlags::NODEV | MountFlags::NOSUID;
        match lowers {
            [] => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a tree needs at least one layer",
            )),
            [only] => {
                rustix::mount::mount_bind(only, target)?;
                rustix::mount::mount_remount(target, MountFlags::BIND | flags, "")?;
                Ok(())
            }
            _ => {
                let options = overlay_options(lowers)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                if options.len() < CLASSIC_OPTIONS_LIMIT {
                    let data = CString::new(options).map_err(io::Error::other)?;
                    rustix::mount::mount("overlay", target, "overlay", flags, data.as_c_str())?;
                } else {
                    // New mount API: one `lowerdir+` per layer, no page limit (up to 500 layers).
                    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
                    for lower in lowers {
                        fsconfig_set_string(&fs, "lowerdir+", lower)?;
                    }
                    fsconfig_create(&fs)?;
                    let mnt = fsmount(
                        &fs,
                        FsMountFlags::FSMOUNT_CLOEXEC,
                        MountAttrFlags::MOUNT_ATTR_RDONLY
                            | MountAttrFlags::MOUNT_ATTR_NODEV
                            | MountAttrFlags::MOUNT_ATTR_NOSUID,
                    )?;
                    move_mount(
                        &mnt,
                        "",
                        rustix::fs::CWD,
                        target,
                        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
                    )?;
                    // The fsmount fd pins the mount; it is dropped here so unmount never sees EBUSY.
                }
                Ok(())
            }
        }
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        rustix::mount::unmount(target, UnmountFlags::DETACH)?;
        Ok(())
    }

    fn mounts(&self) -> io::Result<Vec<MountEntry>> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")?;
        Ok(parse_mountinfo(&text)
            .into_iter()
            .map(|mut m| {
                m.backing = loop_backing_file(&m.source);
                m
            })
            .collect())
    }
}

/// The overlay option string for `lowers`, top-most first (`lowerdir=…`, paths escaped as the
/// kernel expects; see the `overlay-options` crate).
pub fn overlay_options(lowers: &[PathBuf]) -> std::result::Result<String, OverlayOptionError> {
    OverlayOptions::new(lowers).build()
}

/// `/sys/block/loopN/loop/backing_file` for a `/dev/loopN` source.
fn loop_backing_file(source: &str) -> Option<PathBuf> {
    let dev = source.strip_prefix("/dev/")?;
    if !dev.starts_with("loop") {
        return None;
    }
    let text = std::fs::read_to_string(format!("/sys/block/{dev}/loop/backing_file")).ok()?;
    Some(PathBuf::from(text.trim_end_matches('\n')))
}

fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mountinfo` text (without loop backing files).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let target = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let source = right.next()?;
            let options = right.next().unwrap_or("");
            Some(MountEntry {
                target: PathBuf::from(unescape_mountinfo(target)),
                fstype: fstype.to_owned(),
                source: unescape_mountinfo(source),
                options: unescape_mountinfo(options),
                backing: None,
            })
        })
        .collect()
}

/// The mounts that must exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Image mount directory → image file.
    pub images: BTreeMap<PathBuf, PathBuf>,
    /// Tree mount directory → its layers (image mount directories), top-most first.
    pub trees: BTreeMap<PathBuf, Vec<PathBuf>>,
}

/// What [`reconcile`] changed, and what it could not mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub mounted: Vec<PathBuf>,
    pub unmounted: Vec<PathBuf>,
    pub failed: Vec<MountFailure>,
}

/// A mount [`reconcile`] could not make; the others were made anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountFailure {
    pub target: PathBuf,
    /// The image, or the overlay options.
    pub what: String,
    pub error: String,
}

impl MountFailure {
    /// As an [`Error::Mount`].
    pub fn to_error(&self) -> Error {
        Error::Mount {
            what: self.what.clone(),
            target: self.target.clone(),
            source: std::io::Error::other(self.error.clone()),
        }
    }
}

impl ReconcileReport {
    /// Nothing changed and nothing failed.
    pub fn is_empty(&self) -> bool {
        self.mounted.is_empty() && self.unmounted.is_empty() && self.failed.is_empty()
    }
}

fn image_mount_ok(group: &[MountEntry], image: &Path) -> bool {
    matches!(group, [m] if m.fstype == "squashfs" && m.backing.as_deref() == Some(image))
}

fn tree_mount_ok(group: &[MountEntry], lowers: &[PathBuf], plan: &Plan) -> bool {
    match (group, lowers) {
        ([m], [only]) => {
            plan.images
                .get(only)
                .is_some_and(|img| image_mount_ok(group, img))
                && m.fstype == "squashfs"
        }
        ([m], _) => {
            let Ok(want) = overlay_options(lowers) else {
                return false;
            };
            // Split as the kernel does: an escaped comma is part of a layer's path.
            m.fstype == "overlay"
                && (split_options(&m.options).any(|o| o == want)
                    || lowerdir_plus_matches(&m.options, lowers))
        }
        _ => false,
    }
}

/// Overlays made with the new mount API may list their layers as repeated `lowerdir+=` options.
fn lowerdir_plus_matches(options: &str, lowers: &[PathBuf]) -> bool {
    let listed: Vec<&str> = options
        .split(',')
        .filter_map(|o| o.strip_prefix("lowerdir+="))
        .collect();
    !listed.is_empty()
        && listed.len() == lowers.len()
        && listed
            .iter()
            .zip(lowers)
            .all(|(a, b)| Path::new(a) == b.as_path())
}

/// Makes the mounts under `root/m` and `root/t` exactly those of `plan`. Idempotent: a second call
/// with the same plan changes nothing. A mount that cannot be made (say, a missing image) is
/// listed in [`ReconcileReport::failed`] and the rest goes on. Stray or wrong mounts are detached lazily, so processes still
/// reading an uninstalled runtime keep their view until they let go.
pub fn reconcile(mounter: &dyn Mounter, root: &Path, plan: &Plan) -> Result<ReconcileReport> {
    let images_dir = root.join(IMAGE_MOUNTS);
    let trees_dir = root.join(TREE_MOUNTS);
    let mut report = ReconcileReport::default();
    let table = mounter
        .mounts()
        .map_err(Error::io("read the mount table", "/proc/self/mountinfo"))?;
    let mut groups: BTreeMap<PathBuf, Vec<MountEntry>> = BTreeMap::new();
    for m in table {
        if m.target.parent() == Some(&images_dir) || m.target.parent() == Some(&trees_dir) {
            groups.entry(m.target.clone()).or_default().push(m);
        }
    }
    let detach_all = |target: &Path, count: usize, report: &mut ReconcileReport| -> Result<()> {
        for _ in 0..count {
            mounter.unmount(target).map_err(|source| Error::Unmount {
                target: target.to_owned(),
                source,
            })?;
        }
        if count > 0 {
            report.unmounted.push(target.to_owned());
        }
        Ok(())
    };
    // Stray trees first (they hold images), then stray images.
    for (target, group) in groups.iter().rev() {
        if !plan.images.contains_key(target) && !plan.trees.contains_key(target) {
            tracing::info!(target = %target.display(), "unmounting stray mount");
            detach_all(target, group.len(), &mut report)?;
        }
    }
    let mut remounted = BTreeSet::new();
    for (target, image) in &plan.images {
        let group = groups.get(target).map(Vec::as_slice).unwrap_or(&[]);
        if image_mount_ok(group, image) {
            continue;
        }
        detach_all(target, group.len(), &mut report)?;
        let mounted =
            std::fs::create_dir_all(target).and_then(|()| mounter.mount_image(image, target));
        if let Err(e) = mounted {
            // One broken image must not keep the others (or its own uninstall) from working.
            tracing::warn!(image = %image.display(), target = %target.display(), error = %e, "cannot mount image");
            report.failed.push(MountFailure {
                target: target.clone(),
                what: image.display().to_string(),
                error: e.to_string(),
            });
            continue;
        }
        tracing::debug!(image = %image.display(), target = %target.display(), "mounted image");
        report.mounted.push(target.clone());
        remounted.insert(target.clone());
    }
    for (target, lowers) in &plan.trees {
        let group = groups.get(target).map(Vec::as_slice).unwrap_or(&[]);
        if !lowers.iter().any(|l| remounted.contains(l)) && tree_mount_ok(group, lowers, plan) {
            continue;
        }
        detach_all(target, group.len(), &mut report)?;
        let broken: Vec<&MountFailure> = report
            .failed
            .iter()
            .filter(|f| lowers.contains(&f.target))
            .collect();
        let mounted = if let Some(first) = broken.first() {
            Err(std::io::Error::other(format!(
                "layer {} is not mounted",
                first.target.display()
            )))
        } else {
            std::fs::create_dir_all(target).and_then(|()| mounter.mount_tree(lowers, target))
        };
        if let Err(e) = mounted {
            tracing::warn!(target = %target.display(), error = %e, "cannot mount tree");
            report.failed.push(MountFailure {
                target: target.clone(),
                what: overlay_options(lowers).unwrap_or_else(|e| e.to_string()),
                error: e.to_string(),
            });
            continue;
        }
        tracing::debug!(target = %target.display(), layers = lowers.len(), "mounted tree");
        report.mounted.push(target.clone());
    }
    // Empty mount points nobody wants any more.
    for dir in [&images_dir, &trees_dir] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !plan.images.contains_key(&path) && !plan.trees.contains_key(&path) {
                let _ = std::fs::remove_dir(&path);
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records calls and keeps a pretend mount table.
    #[derive(Default)]
    struct Fake {
        table: Mutex<Vec<MountEntry>>,
        calls: Mutex<Vec<String>>,
    }

    impl Mounter for Fake {
        fn mount_image(&self, image: &Path, target: &Path) -> io::Result<()> {
            self.calls.lock().unwrap().push(format!(
                "image {} {}",
                image.display(),
                target.display()
            ));
            self.table.lock().unwrap().push(MountEntry {
                target: target.to_owned(),
                fstype: "squashfs".into(),
                source: "/dev/loop9".into(),
                options: "ro".into(),
                backing: Some(image.to_owned()),
            });
            Ok(())
        }
        fn mount_tree(&self, lowers: &[PathBuf], target: &Path) -> io::Result<()> {
            let opts = overlay_options(lowers).map_err(io::Error::other)?;
            self.calls
                .lock()
                .unwrap()
                .push(format!("tree {opts} {}", target.display()));
            self.table.lock().unwrap().push(MountEntry {
                target: target.to_owned(),
                fstype: "overlay".into(),
                source: "overlay".into(),
                options: format!("ro,{opts}"),
                backing: None,
            });
            Ok(())
        }
        fn unmount(&self, target: &Path) -> io::Result<()> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("umount {}", target.display()));
            let mut t = self.table.lock().unwrap();
            let pos = t.iter().rposition(|m| m.target == target).expect("mounted");
            t.remove(pos);
            Ok(())
        }
        fn mounts(&self) -> io::Result<Vec<MountEntry>> {
            Ok(self.table.lock().unwrap().clone())
        }
    }

    fn plan(root: &Path) -> Plan {
        let m = |s: &str| root.join("m").join(s);
        let mut p = Plan::default();
        p.images.insert(m("aaa"), PathBuf::from("/s/aaa.sqfs"));
        p.images.insert(m("bbb"), PathBuf::from("/s/bbb.sqfs"));
        p.trees
            .insert(root.join("t/py@3.11.2"), vec![m("aaa"), m("bbb")]);
        p
    }

    #[test]
    fn mounts_in_order_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let fake = Fake::default();
        let p = plan(root);
        let report = reconcile(&fake, root, &p).unwrap();
        assert_eq!(report.mounted.len(), 3);
        let calls = fake.calls.lock().unwrap().clone();
        assert!(calls[0].starts_with("image /s/aaa.sqfs"));
        assert_eq!(
            calls[2],
            format!(
                "tree lowerdir={0}/m/aaa:{0}/m/bbb {0}/t/py@3.11.2",
                root.display()
            ),
            "package on top, dependency below"
        );
        assert!(
            reconcile(&fake, root, &p).unwrap().is_empty(),
            "second run changes nothing"
        );
    }

    /// Layer paths with `:` and `,` are escaped in the options, and a tree mounted with them is
    /// recognised afterwards (the kernel shows the options as given; an escaped comma does not
    /// end an option).
    #[test]
    fn escaped_layer_paths_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data,dir:1");
        let fake = Fake::default();
        let p = plan(&root);
        reconcile(&fake, &root, &p).unwrap();
        let calls = fake.calls.lock().unwrap().clone();
        let escaped = format!("{}/data\\,dir\\:1", dir.path().display());
        assert_eq!(
            calls[2],
            format!(
                "tree lowerdir={escaped}/m/aaa:{escaped}/m/bbb {}/t/py@3.11.2",
                root.display()
            )
        );
        assert!(reconcile(&fake, &root, &p).unwrap().is_empty());
    }

    #[test]
    fn repairs_strays_and_remounted_layers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let fake = Fake::default();
        let p = plan(root);
        reconcile(&fake, root, &p).unwrap();
        // A stray tree, and an image mount replaced by the wrong image.
        fake.mount_tree(
            &[root.join("m/aaa"), root.join("m/bbb")],
            &root.join("t/old@1.0.0"),
        )
        .unwrap();
        fake.unmount(&root.join("m/bbb")).unwrap();
        fake.mount_image(Path::new("/s/other.sqfs"), &root.join("m/bbb"))
            .unwrap();
        fake.calls.lock().unwrap().clear();
        let report = reconcile(&fake, root, &p).unwrap();
        assert!(report.unmounted.contains(&root.join("t/old@1.0.0")));
        assert!(report.mounted.contains(&root.join("m/bbb")));
        assert!(
            report.mounted.contains(&root.join("t/py@3.11.2")),
            "tree over a remounted layer is rebuilt"
        );
        assert!(reconcile(&fake, root, &p).unwrap().is_empty());
        // Nothing wanted: everything goes.
        reconcile(&fake, root, &Plan::default()).unwrap();
        assert!(fake.table.lock().unwrap().is_empty());
    }

    #[test]
    fn a_broken_image_does_not_stop_the_rest() {
        struct Failing(Fake);
        impl Mounter for Failing {
            fn mount_image(&self, image: &Path, target: &Path) -> io::Result<()> {
                if image.ends_with("bbb.sqfs") {
                    return Err(io::Error::other("EIO"));
                }
                self.0.mount_image(image, target)
            }
            fn mount_tree(&self, lowers: &[PathBuf], target: &Path) -> io::Result<()> {
                self.0.mount_tree(lowers, target)
            }
            fn unmount(&self, target: &Path) -> io::Result<()> {
                self.0.unmount(target)
            }
            fn mounts(&self) -> io::Result<Vec<MountEntry>> {
                self.0.mounts()
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let failing = Failing(Fake::default());
        let report = reconcile(&failing, root, &plan(root)).unwrap();
        assert_eq!(report.mounted, [root.join("m/aaa")]);
        let failed: Vec<&Path> = report.failed.iter().map(|f| f.target.as_path()).collect();
        assert_eq!(failed, [root.join("m/bbb"), root.join("t/py@3.11.2")]);
        assert!(matches!(report.failed[0].to_error(), Error::Mount { .. }));
    }

    #[test]
    fn parses_mountinfo() {
        let text = "36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - squashfs /dev/loop3 ro,errors=continue\n\
                    40 35 0:50 / /x rw - overlay overlay ro,lowerdir=/m/a:/m/b\n";
        let m = parse_mountinfo(text);
        assert_eq!(m[0].target, PathBuf::from("/mnt/a b"));
        assert_eq!(m[0].source, "/dev/loop3");
        assert_eq!(m[1].options, "ro,lowerdir=/m/a:/m/b");
    }
}
