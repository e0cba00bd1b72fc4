//! Leak checks: what the kernel says is mounted under a path (`/proc/self/mountinfo`, this
//! process's mount namespace) and which loop devices are backed by files under it
//! (`/sys/block/loop*/loop/backing_file`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fs_type: String,
    /// The mount source (`/dev/loop3`, `overlay`, ...).
    pub source: String,
    /// The file system's own options (overlayfs: `lowerdir=...,upperdir=...`).
    pub super_options: String,
    /// The line as the kernel wrote it.
    pub line: String,
}

impl Mount {
    /// Parses a line: `id parent major:minor root mount-point options [optional...] - fstype
    /// source super-options`, paths with the kernel's octal escapes (`\040` for a space).
    pub fn parse(line: &str) -> Option<Mount> {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split(' ').nth(4)?;
        let mut right = right.split(' ');
        Some(Mount {
            mount_point: PathBuf::from(unescape(mount_point)),
            fs_type: right.next()?.to_owned(),
            source: unescape(right.next().unwrap_or_default()),
            super_options: unescape(right.next().unwrap_or_default()),
            line: line.to_owned(),
        })
    }

    /// Whether the mount concerns `path`: its mount point, its source or one of its overlay
    /// directories (`lowerdir`, `upperdir`, `workdir`) lies at or under `path`.
    pub fn involves(&self, path: &Path) -> bool {
        let overlay_dirs = overlay_options::split_options(&self.super_options)
            .filter_map(|o| o.split_once('='))
            .filter(|(key, _)| matches!(*key, "lowerdir" | "lowerdir+" | "upperdir" | "workdir"))
            .flat_map(|(_, dirs)| overlay_options::split_lowerdir(dirs));
        self.mount_point.starts_with(path)
            || Path::new(&self.source).starts_with(path)
            || overlay_dirs
                .into_iter()
                .any(|d| Path::new(&d).starts_with(path))
    }
}

/// `\ooo` octal escapes undone.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match octal {
            Some(byte) if bytes[i] == b'\\' => {
                out.push(byte);
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mounts of this process's mount namespace, in the kernel's order (parents before the
/// mounts on top of them); none when `/proc/self/mountinfo` cannot be read.
pub fn mounts() -> Vec<Mount> {
    parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(Mount::parse).collect()
}

/// The mountinfo lines of the mounts that concern `path` (see [`Mount::involves`]): empty when
/// nothing of it is mounted.
pub fn mounts_under(path: &Path) -> Vec<String> {
    mounts()
        .into_iter()
        .filter(|m| m.involves(path))
        .map(|m| m.line)
        .collect()
}

/// The mount points of the mounts that concern `path`, in the kernel's order (unmount from the
/// last).
pub fn mount_points_under(path: &Path) -> Vec<PathBuf> {
    mounts()
        .into_iter()
        .filter(|m| m.involves(path))
        .map(|m| m.mount_point)
        .collect()
}

/// The loop devices whose backing file lies under `path`, as `/dev/loopN -> <backing file>`
/// (the kernel's text: a deleted file ends in ` (deleted)`).
pub fn loop_devices_backed_by(path: &Path) -> Vec<String> {
    loop_devices_in(Path::new("/sys/block"), path)
}

fn loop_devices_in(sys_block: &Path, path: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(sys_block) else {
        return Vec::new();
    };
    let mut found: Vec<(String, String)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("loop") {
                return None;
            }
            let backing = std::fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
            let backing = backing.trim_end_matches('\n').to_owned();
            let file = backing.strip_suffix(" (deleted)").unwrap_or(&backing);
            Path::new(file).starts_with(path).then_some((name, backing))
        })
        .collect();
    found.sort();
    found
        .into_iter()
        .map(|(name, backing)| format!("/dev/{name} -> {backing}"))
        .collect()
}

/// [`loop_devices_backed_by`], waiting up to `within` for the list to empty: the kernel
/// detaches an autoclear loop device once the last mount using it is gone, which a lazy unmount
/// may delay. What is left after that.
pub fn wait_for_no_loop_devices(path: &Path, within: Duration) -> Vec<String> {
    let until = Instant::now() + within;
    loop {
        let left = loop_devices_backed_by(path);
        if left.is_empty() || Instant::now() > until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
80 22 7:3 / /tmp/ppt1/data/m/abc ro,relatime shared:40 - squashfs /dev/loop3 ro,errors=continue
81 22 0:50 / /tmp/ppt1/data/t/python rw master:2 - overlay overlay ro,lowerdir=/tmp/ppt1/data/m/abc:/tmp/ppt1/data/m/def
82 22 0:51 / /run/piston-runner/job\\0401 rw - overlay overlay rw,lowerdir=/tmp/ppt1/data/m/abc,upperdir=/run/u,workdir=/run/w
83 22 0:52 / /tmp/ppt12 rw - tmpfs tmpfs rw
";

    #[test]
    fn mountinfo_lines_are_parsed_with_their_escapes() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 5);
        assert_eq!(mounts[1].mount_point, Path::new("/tmp/ppt1/data/m/abc"));
        assert_eq!(mounts[1].fs_type, "squashfs");
        assert_eq!(mounts[1].source, "/dev/loop3");
        assert_eq!(mounts[3].mount_point, Path::new("/run/piston-runner/job 1"));
        assert_eq!(mounts[3].line, MOUNTINFO.lines().nth(3).unwrap());
    }

    #[test]
    fn a_mount_involves_a_path_by_its_mount_point_source_or_layers() {
        let mounts = parse_mountinfo(MOUNTINFO);
        let involved = |path: &str| -> Vec<usize> {
            (0..mounts.len())
                .filter(|&i| mounts[i].involves(Path::new(path)))
                .collect()
        };
        // Whole path components only: /tmp/ppt12 is not under /tmp/ppt1.
        assert_eq!(involved("/tmp/ppt1"), [1, 2, 3]);
        assert_eq!(involved("/tmp/ppt1/data/t"), [2]);
        assert_eq!(involved("/run/u"), [3]);
        assert_eq!(involved("/dev/loop3"), [1]);
        assert_eq!(involved("/elsewhere"), Vec::<usize>::new());
    }

    #[test]
    fn loop_devices_are_found_by_backing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path();
        for (name, backing) in [
            ("loop0", Some("/data/images/a.sqfs\n")),
            ("loop1", Some("/data/images/b.sqfs (deleted)\n")),
            ("loop2", Some("/other/c.sqfs\n")),
            ("loop3", None),
            ("sda", Some("/data/images/not-a-loop\n")),
        ] {
            std::fs::create_dir_all(sys.join(name).join("loop")).unwrap();
            if let Some(backing) = backing {
                std::fs::write(sys.join(name).join("loop/backing_file"), backing).unwrap();
            }
        }
        assert_eq!(
            loop_devices_in(sys, Path::new("/data")),
            [
                "/dev/loop0 -> /data/images/a.sqfs",
                "/dev/loop1 -> /data/images/b.sqfs (deleted)"
            ]
        );
        assert_eq!(
            loop_devices_in(sys, Path::new("/data/images/b.sqfs")),
            ["/dev/loop1 -> /data/images/b.sqfs (deleted)"]
        );
    }
}
