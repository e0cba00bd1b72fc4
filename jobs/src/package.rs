//! What a package's files say about its stages, read once per package and language in a
//! sandbox on its own tree (as Piston keeps the environment in `.env` at install time), and
//! read again only when a file it comes from changes.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use runner::{BOX_DIR, Limits, ProcessSpec, Runner, StageResult};

use crate::error::JobError;
use crate::script::{PACKAGE_INFO_FILES, PackageInfo, package_info_command, parse_package_info};

/// A package's [`PackageInfo`] for one language (exported while `environment` is sourced), with
/// what else can change it: the layers and the identity of the files it is read from in each.
#[derive(Debug)]
struct Entry {
    layers: Vec<PathBuf>,
    stamps: Vec<FileStamp>,
    info: Arc<PackageInfo>,
}

/// (device, inode, mtime in s and ns, size) of one of [`PACKAGE_INFO_FILES`] in one layer, if there.
type FileStamp = Option<(u64, u64, i64, i64, u64)>;

/// Package directory → language → its entry. One entry per pair: a reading on other layers
/// (after a reinstall) or of a changed file replaces the older one, which will not be asked for
/// again.
#[derive(Debug, Default)]
pub(crate) struct ScriptCache {
    entries: Mutex<HashMap<PathBuf, HashMap<String, Entry>>>,
}

/// Limits of the sandboxed read of a package's files.
fn read_limits() -> Limits {
    Limits {
        wall_timeout_ms: 10_000,
        cpu_time_ms: 10_000,
        output_max_size: 1 << 20,
        ..Limits::piston_run()
    }
}

impl ScriptCache {
    /// The [`PackageInfo`] of the package at `package_dir` in the tree of `layers` for
    /// `language`, whose stages start from `base_env`. This keeps a shell out of every stage.
    /// When reading fails (the sandbox could not be set up on these layers, a file cannot be
    /// read), that result is what the job gets.
    pub(crate) fn get(
        &self,
        runner: &Runner,
        layers: &[PathBuf],
        package_dir: &Path,
        language: &str,
        base_env: &[(String, String)],
    ) -> Result<Result<Arc<PackageInfo>, StageResult>, JobError> {
        let stamps = stamps(layers, package_dir);
        let cached = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(package_dir)
            .and_then(|languages| languages.get(language))
            .filter(|e| e.layers == layers && e.stamps == stamps)
            .map(|e| Arc::clone(&e.info));
        if let Some(info) = cached {
            return Ok(Ok(info));
        }
        let spec = ProcessSpec {
            argv: package_info_command(&package_dir.to_string_lossy()),
            env: base_env.to_vec(),
            cwd: BOX_DIR.into(),
            limits: read_limits(),
        };
        let r = runner.run_command(layers, &[], &spec, b"")?;
        if r.status.is_some() {
            tracing::warn!(package = %package_dir.display(), status = ?r.status, message = ?r.message, stderr = %r.stderr, "package environment and scripts could not be read");
            return Ok(Err(r));
        }
        let info = Arc::new(parse_package_info(&r.stdout));
        let entry = Entry {
            layers: layers.to_vec(),
            stamps,
            info: Arc::clone(&info),
        };
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(package_dir.to_path_buf())
            .or_default()
            .insert(language.to_owned(), entry);
        Ok(Ok(info))
    }
}

/// The identity of each of [`PACKAGE_INFO_FILES`] in each layer.
fn stamps(layers: &[PathBuf], package_dir: &Path) -> Vec<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let dir = package_dir.strip_prefix("/").unwrap_or(package_dir);
    layers
        .iter()
        .flat_map(|l| PACKAGE_INFO_FILES.map(|f| l.join(dir).join(f)))
        .map(|path| {
            fs::symlink_metadata(path)
                .ok()
                .map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
        })
        .collect()
}
