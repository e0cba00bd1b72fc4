//! Where the builder keeps its output: a publishable static tree plus private state.

use std::path::{Path, PathBuf};

/// The output directory of a builder.
///
/// ```text
/// <out>/index.json, index.json.minisig, piston.pub   the published index and key
/// <out>/images/<name>-<version>-<sha12>.sqfs[.minisig]
/// <out>/build-files/<name>/<version>/…               the build files of each image
/// <out>/.builder/{state,logs,work,apt-archives}/     private: not published
/// ```
#[derive(Debug, Clone)]
pub struct Layout {
    pub out: PathBuf,
}

impl Layout {
    /// `out` is made absolute: build steps run in other directories (debootstrap changes its
    /// own), so a relative `out/repo` would point elsewhere.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        let out = out.into();
        Self {
            out: std::path::absolute(&out).unwrap_or(out),
        }
    }
    fn private(&self) -> PathBuf {
        self.out.join(".builder")
    }
    pub fn images_dir(&self) -> PathBuf {
        self.out.join("images")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.private().join("state")
    }
    pub fn state_file(&self, id: &str) -> PathBuf {
        self.state_dir().join(format!("{id}.json"))
    }
    pub fn log_file(&self, id: &str) -> PathBuf {
        self.private().join("logs").join(format!("{id}.log"))
    }
    pub fn work_dir(&self, id: &str) -> PathBuf {
        self.private().join("work").join(id)
    }
    pub fn apt_cache(&self) -> PathBuf {
        self.private().join("apt-archives")
    }
    pub fn build_files_dir(&self, name: &str, version: &str) -> PathBuf {
        self.out.join("build-files").join(name).join(version)
    }
    /// Whether `rel` (relative to `out`) belongs to the published tree.
    pub fn is_public(rel: &Path) -> bool {
        !rel.starts_with(".builder")
    }
}
