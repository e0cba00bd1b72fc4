//! Building one recipe into a signed squashfs image on top of its dependencies' images.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ppman::digest::sha256_file;
use ppman::schema::{CachePolicy, package_dir};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::layout::Layout;
use crate::recipe::Recipe;
use crate::shell::{StackScript, qp, quote, run_logged, unshared};
use crate::sign::Signer;

/// Bumped when the way images are made changes, so every image is rebuilt.
const BUILDER_FORMAT: &str = "repo-builder/2";

/// Paths removed from every layer after its build: they only served the build.
const BUILD_LEFTOVERS: &[&str] = &[
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/log",
    "var/cache/debconf/templates.dat-old",
    "var/cache/debconf/config.dat-old",
    "var/cache/ldconfig/aux-cache",
    "root/.cache",
    "root/.npm",
    "root/.wget-hsts",
    "piston/fetch",
    "dev",
    "proc",
    "sys",
];

/// How images are made.
#[derive(Debug, Clone)]
pub struct ImageOptions {
    /// zstd level for mksquashfs (3 is fast for development and CI, 15+ for releases).
    pub compression_level: u32,
    /// Every timestamp newer than this (unix seconds) is clamped to it, so rebuilds give the same bytes.
    pub source_date_epoch: u64,
}

impl Default for ImageOptions {
    fn default() -> Self {
        Self {
            compression_level: 15,
            source_date_epoch: 1_767_225_600, // 2026-01-01T00:00:00Z
        }
    }
}

/// What the builder remembers about a built image (`.builder/state/<id>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Built {
    pub meta: ppman::schema::PackageMeta,
    /// Digest of the build inputs: build files, dependency images, builder format and options.
    pub key: String,
    /// Image path relative to the output directory.
    pub image: String,
    pub size: u64,
    pub sha256: String,
    pub signature: String,
    /// Digest of the build directory.
    pub build_digest: String,
    pub compiled: bool,
    pub cache: CachePolicy,
    /// Wall time of the build (fetch, build.sh, cleanup, mksquashfs, signing), in seconds.
    #[serde(default)]
    pub build_seconds: f64,
    /// Size of the layer before compression (bytes of regular files).
    #[serde(default)]
    pub tree_bytes: u64,
}

/// Outcome of one build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Built,
    UpToDate,
}

/// Reads the recorded state of a built recipe.
pub fn load_built(layout: &Layout, id: &str) -> Result<Option<Built>, Error> {
    let path = layout.state_file(id);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::State { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io { path, source }),
    }
}

/// Builds `recipe` on `deps` (its closure, top-most first, already built), unless nothing changed.
pub fn build(
    layout: &Layout,
    recipe: &Recipe,
    deps: &[Built],
    signer: &Signer,
    opts: &ImageOptions,
) -> Result<(Outcome, Built), Error> {
    let id = recipe.id();
    let key = cache_key(recipe, deps, opts);
    if let Some(prev) = load_built(layout, &id)?
        && prev.key == key
        && layout.out.join(&prev.image).is_file()
    {
        return Ok((Outcome::UpToDate, prev));
    }

    let started = std::time::Instant::now();
    let work = WorkDirs::create(layout, recipe)?;
    let env = build_env(recipe, &work.pkg_dir_rel);
    run_fetch(recipe, &work, &env)?;
    if deps.is_empty() {
        run_bottom_build(recipe, &work, &env)?;
    } else {
        run_stacked_build(layout, recipe, deps, &work, &env)?;
    }

    // Mount points and binds leave empty directories in the upper layer; drop them with the rest.
    clean_layer(&work.upper, deps.is_empty())?;
    copy_build_files(recipe, &work.upper.join(&work.pkg_dir_rel))?;
    let tree_bytes = clamp_times(&work.upper, opts.source_date_epoch)?;
    let image = make_image(layout, &id, &work, signer, opts)?;

    let built = Built {
        meta: recipe.meta.clone(),
        key,
        image: image.rel,
        size: image.size,
        sha256: image.sha256,
        signature: image.signature,
        build_digest: recipe.digest.clone(),
        compiled: recipe.compiled(),
        cache: recipe.meta.cache.unwrap_or(if recipe.compiled() {
            CachePolicy::Compiled
        } else {
            CachePolicy::None
        }),
        build_seconds: started.elapsed().as_secs_f64(),
        tree_bytes,
    };
    record_built(layout, &id, recipe, &built)?;
    remove_tree(&work.dir)?;
    Ok((Outcome::Built, built))
}

/// The scratch directories of one build, under `.builder/work/<id>`, and its log.
struct WorkDirs {
    id: String,
    dir: PathBuf,
    /// The layer being built (the overlay's upper directory, or `$PISTON_ROOT` of a bottom layer).
    upper: PathBuf,
    ovl_work: PathBuf,
    /// What fetch.sh downloads; read-only to build.sh.
    fetch: PathBuf,
    log: PathBuf,
    /// The package directory inside the layer, without the leading `/`.
    pkg_dir_rel: String,
}

impl WorkDirs {
    /// Starts from an empty work directory and a fresh log.
    fn create(layout: &Layout, recipe: &Recipe) -> Result<Self, Error> {
        let id = recipe.id();
        let dir = layout.work_dir(&id);
        remove_tree(&dir)?;
        let pkg_dir_rel = package_dir(&recipe.meta.name, &recipe.meta.version);
        let work = Self {
            upper: dir.join("upper"),
            ovl_work: dir.join("ovl-work"),
            fetch: dir.join("fetch"),
            log: layout.log_file(&id),
            pkg_dir_rel: pkg_dir_rel.trim_start_matches('/').to_owned(),
            dir,
            id,
        };
        for dir in [&work.upper, &work.ovl_work, &work.fetch] {
            mkdir(dir)?;
        }
        mkdir(work.log.parent().expect("log has a parent"))?;
        fs::write(&work.log, format!("== {}\n", work.id)).map_err(|source| Error::Io {
            path: work.log.clone(),
            source,
        })?;
        Ok(work)
    }
}

/// The environment fetch.sh and build.sh run with.
fn build_env(recipe: &Recipe, pkg_dir_rel: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PISTON_PACKAGE_NAME", recipe.meta.name.clone()),
        ("PISTON_PACKAGE_VERSION", recipe.meta.version.to_string()),
        ("PISTON_PACKAGE_DIR", format!("/{pkg_dir_rel}")),
        ("DEBIAN_FRONTEND", "noninteractive".to_owned()),
        ("HOME", "/root".to_owned()),
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        ),
        ("LC_ALL", "C.UTF-8".to_owned()),
    ]
}

/// Runs the recipe's fetch.sh, if it has one, on the host (with the host's PATH and HOME).
fn run_fetch(recipe: &Recipe, work: &WorkDirs, env: &[(&str, String)]) -> Result<(), Error> {
    if !recipe.dir.join("fetch.sh").is_file() {
        return Ok(());
    }
    let mut cmd = Command::new("bash");
    cmd.arg("./fetch.sh")
        .current_dir(&recipe.dir)
        .env("PISTON_FETCH_DIR", &work.fetch);
    for (k, v) in env {
        if *k != "PATH" && *k != "HOME" {
            cmd.env(k, v);
        }
    }
    run_logged(cmd, &format!("fetch.sh of {}", work.id), &work.log)
}

/// A bottom layer: build.sh fills $PISTON_ROOT on the host, in a private mount namespace so
/// anything it mounts (debootstrap mounts /proc) goes away with it.
fn run_bottom_build(recipe: &Recipe, work: &WorkDirs, env: &[(&str, String)]) -> Result<(), Error> {
    let mut cmd = unshared(
        &format!("cd {} && exec bash ./build.sh", qp(&recipe.dir)),
        false,
    );
    cmd.env("PISTON_ROOT", &work.upper);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_logged(cmd, &format!("build.sh of {}", work.id), &work.log)
}

/// A layer on top of others: build.sh runs chrooted in an overlay of the dependencies' images
/// under the new layer, with the resolver, the fetched files and the shared apt cache bound in.
fn run_stacked_build(
    layout: &Layout,
    recipe: &Recipe,
    deps: &[Built],
    work: &WorkDirs,
    env: &[(&str, String)],
) -> Result<(), Error> {
    copy_build_files(recipe, &work.upper.join(&work.pkg_dir_rel))?;
    let images: Vec<PathBuf> = deps.iter().map(|d| layout.out.join(&d.image)).collect();
    let merged = work.dir.join("merged");
    let mut script = StackScript::new(
        &images,
        &work.dir.join("lower"),
        &work.upper,
        &work.ovl_work,
        &merged,
    )
    .map_err(Error::Overlay)?;
    let m = qp(&merged);
    script
        .push(&format!("touch {m}/etc/resolv.conf 2>/dev/null || true"))
        .push(&format!(
            "mount --bind /etc/resolv.conf {m}/etc/resolv.conf"
        ))
        .push(&format!(
            "mkdir -p {m}/piston/fetch {m}/var/cache/apt/archives {cache}",
            cache = qp(&layout.apt_cache())
        ))
        .push(&format!(
            "mount --bind -o ro {} {m}/piston/fetch",
            qp(&work.fetch)
        ))
        .push(&format!(
            "mount --bind {} {m}/var/cache/apt/archives",
            qp(&layout.apt_cache())
        ));
    let exports: Vec<String> = env
        .iter()
        .map(|(k, v)| format!("{k}={}", quote(v)))
        .collect();
    script.push(&format!(
        "exec chroot {m} /usr/bin/env -i {} /bin/sh -c 'cd \"$PISTON_PACKAGE_DIR\" && exec bash ./build.sh'",
        exports.join(" ")
    ));
    run_logged(
        unshared(script.text(), false),
        &format!("build.sh of {}", work.id),
        &work.log,
    )
}

/// A signed image in the output directory.
struct SignedImage {
    /// Path relative to the output directory.
    rel: String,
    size: u64,
    sha256: String,
    signature: String,
}

/// Packs the finished layer into `images/<id>-<sha256 prefix>.sqfs`, signs it and writes the
/// signature beside it.
fn make_image(
    layout: &Layout,
    id: &str,
    work: &WorkDirs,
    signer: &Signer,
    opts: &ImageOptions,
) -> Result<SignedImage, Error> {
    let tmp_image = layout.images_dir().join(format!(".{id}.sqfs.tmp"));
    mkdir(&layout.images_dir())?;
    let _ = fs::remove_file(&tmp_image);
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(&work.upper)
        .arg(&tmp_image)
        .args([
            "-noappend",
            "-quiet",
            "-no-progress",
            "-comp",
            "zstd",
            "-Xcompression-level",
        ])
        .arg(opts.compression_level.to_string())
        .arg("-mkfs-time")
        .arg(opts.source_date_epoch.to_string());
    run_logged(cmd, &format!("mksquashfs of {id}"), &work.log)?;
    let (sha256, size) = sha256_file(&tmp_image).map_err(|source| Error::Io {
        path: tmp_image.clone(),
        source,
    })?;
    let rel = format!("images/{id}-{}.sqfs", &sha256[..12]);
    let image = layout.out.join(&rel);
    let file = fs::File::open(&tmp_image).map_err(|source| Error::Io {
        path: tmp_image.clone(),
        source,
    })?;
    let signature = signer.sign(file, &format!("piston-image {id} sha256={sha256}"))?;
    fs::rename(&tmp_image, &image).map_err(|source| Error::Io {
        path: image.clone(),
        source,
    })?;
    write_atomic(&image.with_extension("sqfs.minisig"), signature.as_bytes())?;
    Ok(SignedImage {
        rel,
        size,
        sha256,
        signature,
    })
}

/// Records a new build: drops the image it replaces, writes its state file and publishes its
/// build files.
fn record_built(layout: &Layout, id: &str, recipe: &Recipe, built: &Built) -> Result<(), Error> {
    if let Some(prev) = load_built(layout, id)?
        && prev.image != built.image
    {
        let old = layout.out.join(&prev.image);
        let _ = fs::remove_file(old.with_extension("sqfs.minisig"));
        let _ = fs::remove_file(old);
    }
    let state = serde_json::to_vec_pretty(built).expect("state serialises");
    mkdir(&layout.state_dir())?;
    write_atomic(&layout.state_file(id), &state)?;
    let files_dir = layout.build_files_dir(&recipe.meta.name, &recipe.meta.version.to_string());
    remove_tree(&files_dir)?;
    copy_build_files(recipe, &files_dir)
}

fn cache_key(recipe: &Recipe, deps: &[Built], opts: &ImageOptions) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "{BUILDER_FORMAT}\nrecipe {} {}\nzstd {}\nepoch {}\n",
        recipe.id(),
        recipe.digest,
        opts.compression_level,
        opts.source_date_epoch
    ));
    for dep in deps {
        h.update(format!(
            "dep {} {} {}\n",
            dep.meta.name, dep.meta.version, dep.sha256
        ));
    }
    hex::encode(h.finalize())
}

fn copy_build_files(recipe: &Recipe, dest: &Path) -> Result<(), Error> {
    for (rel, abs) in recipe.files()? {
        let to = dest.join(&rel);
        mkdir(to.parent().expect("file has a parent"))?;
        fs::copy(&abs, &to).map_err(|source| Error::Io {
            path: to.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Removes what only the build needed. Directories that stay empty because they only served as
/// mount points are removed too, unless the layer is the bottom one (which must keep /proc, /dev…).
fn clean_layer(upper: &Path, bottom: bool) -> Result<(), Error> {
    empty_dir(&upper.join("tmp"))?;
    // ldconfig's cache of inode numbers and ctimes: differs on every build, regenerated on demand.
    remove_tree(&upper.join("var/cache/ldconfig/aux-cache"))?;
    let resolv = upper.join("etc/resolv.conf");
    if bottom {
        // The bottom layer's own build.sh tidies apt and dpkg; sandboxes have no network, so no resolver.
        if resolv.exists() || resolv.is_symlink() {
            let _ = fs::remove_file(&resolv);
            fs::write(&resolv, b"").map_err(|source| Error::Io {
                path: resolv.clone(),
                source,
            })?;
        }
        return Ok(());
    }
    for rel in BUILD_LEFTOVERS {
        remove_tree(&upper.join(rel))?;
    }
    if fs::symlink_metadata(&resolv).is_ok_and(|md| md.len() == 0) {
        let _ = fs::remove_file(&resolv);
    }
    // directories left behind only by mount points
    for rel in ["etc", "var/cache", "var/lib", "var", "tmp"] {
        let _ = fs::remove_dir(upper.join(rel));
    }
    Ok(())
}

fn empty_dir(path: &Path) -> Result<(), Error> {
    if !path.is_dir() {
        return Ok(());
    }
    let entries = fs::read_dir(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    for entry in entries.flatten() {
        let p = entry.path();
        let res = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        res.map_err(|source| Error::Io {
            path: p.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Overlayfs bookkeeping that must not reach an image: it names the build host's file handles
/// (`origin`) or upper-layer state, and changes from build to build. Opaque-directory markers stay.
const OVERLAY_PRIVATE_XATTRS: &[&str] = &[
    "trusted.overlay.origin",
    "trusted.overlay.impure",
    "trusted.overlay.nlink",
    "trusted.overlay.upper",
    "trusted.overlay.uuid",
    "trusted.overlay.protattr",
];

/// Clamps every timestamp newer than `epoch` to `epoch` (symlinks included, never followed) and
/// drops overlayfs' private extended attributes, so rebuilds give the same bytes. Returns the
/// total size of the regular files.
fn clamp_times(root: &Path, epoch: u64) -> Result<u64, Error> {
    let mut bytes = 0;
    let mut stack = vec![root.to_owned()];
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: epoch as i64,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: epoch as i64,
            tv_nsec: 0,
        },
    };
    while let Some(path) = stack.pop() {
        let md = fs::symlink_metadata(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        if md.is_file() {
            bytes += md.len();
        }
        if md.is_dir() {
            let entries = fs::read_dir(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            stack.extend(entries.flatten().map(|e| e.path()));
        }
        for name in OVERLAY_PRIVATE_XATTRS {
            match rustix::fs::lremovexattr(&path, *name) {
                Ok(())
                | Err(
                    rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP | rustix::io::Errno::PERM,
                ) => {}
                Err(e) => {
                    return Err(Error::Io {
                        path,
                        source: e.into(),
                    });
                }
            }
        }
        if md.mtime() > epoch as i64 || md.atime() > epoch as i64 {
            rustix::fs::utimensat(
                rustix::fs::CWD,
                &path,
                &ts,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| Error::Io {
                path: path.clone(),
                source: e.into(),
            })?;
        }
    }
    // Directories were visited before their children were touched; touching a child does not change
    // the parent's mtime, so one pass is enough.
    Ok(bytes)
}

pub(crate) fn mkdir(path: &Path) -> Result<(), Error> {
    fs::create_dir_all(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

/// Removes a file, a symlink or a whole directory (never following symlinks); absent is fine.
pub(crate) fn remove_tree(path: &Path) -> Result<(), Error> {
    let result = match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes `data` to `path` through a temporary file, fsync and rename.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = fs::File::create(&tmp).map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// The images of a stack (top-most first, without the package itself), looked up in `built`.
pub fn dependency_states<'a>(
    stack: &[String],
    built: &'a BTreeMap<String, Built>,
) -> Vec<&'a Built> {
    stack
        .iter()
        .skip(1)
        .filter_map(|id| built.get(id))
        .collect()
}
