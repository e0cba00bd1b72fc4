//! A scratch layer for sandbox tests: a tmpfs mounted on a temp dir, so that it does not overlap
//! the host root's file system (overlayfs refuses a lower dir nested inside another lower dir of
//! the same file system). Needs root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs on a temp dir, unmounted when dropped.
#[derive(Debug)]
pub struct TmpfsLayer {
    dir: tempfile::TempDir,
}

impl TmpfsLayer {
    /// Mounts a 16 MiB tmpfs (mode 755) on a fresh temp dir.
    pub fn new() -> TmpfsLayer {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m,mode=755", "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mount tmpfs layer: {status}");
        TmpfsLayer { dir }
    }

    /// The layer's host path (what a runner gets as a lower dir).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Makes the directory `inside` (absolute, as a sandbox on this layer sees it) and returns
    /// its host path.
    pub fn dir(&self, inside: &str) -> PathBuf {
        let host = self.path().join(inside.trim_start_matches('/'));
        fs::create_dir_all(&host).expect("create dir in layer");
        host
    }
}

impl Default for TmpfsLayer {
    fn default() -> Self {
        TmpfsLayer::new()
    }
}

impl Drop for TmpfsLayer {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}
