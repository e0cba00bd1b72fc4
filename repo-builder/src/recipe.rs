//! Build directories (`repository/<name>/<version>/`) and their content digest.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ppman::digest::sha256_file;
use ppman::schema::{META_FILE, PackageMeta};
use semver::Version;
use sha2::{Digest, Sha256};

use crate::Error;

/// One build directory: a package's metadata, scripts and tests.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub meta: PackageMeta,
    pub dir: PathBuf,
    /// sha256 over every file of the directory (see [`tree_digest`]).
    pub digest: String,
}

impl Recipe {
    /// Reads and validates `dir/package.toml`, checks it matches the directory's place, and digests the directory.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let meta_path = dir.join(META_FILE);
        let text = fs::read_to_string(&meta_path).map_err(|source| Error::Io {
            path: meta_path.clone(),
            source,
        })?;
        let meta = PackageMeta::parse(&text).map_err(|source| Error::Meta {
            path: meta_path.clone(),
            source,
        })?;
        let dir_version = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let dir_name = dir
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if dir_name != meta.name || dir_version != meta.version.to_string() {
            return Err(Error::Misplaced {
                path: meta_path,
                expected: format!("{dir_name}/{dir_version}"),
                found: format!("{}/{}", meta.name, meta.version),
            });
        }
        for required in ["build.sh"] {
            if !dir.join(required).is_file() {
                return Err(Error::MissingFile {
                    dir: dir.to_owned(),
                    file: required,
                });
            }
        }
        if !meta.provides.is_empty() && !dir.join("run").is_file() {
            return Err(Error::MissingFile {
                dir: dir.to_owned(),
                file: "run",
            });
        }
        let digest = tree_digest(dir)?;
        Ok(Self {
            meta,
            dir: dir.to_owned(),
            digest,
        })
    }

    /// `name-version`, for messages and file names.
    pub fn id(&self) -> String {
        format!("{}-{}", self.meta.name, self.meta.version)
    }

    /// Whether the package has a compile stage.
    pub fn compiled(&self) -> bool {
        self.dir.join("compile").is_file()
    }

    /// The build files as (relative path, absolute path), sorted.
    pub fn files(&self) -> Result<Vec<(PathBuf, PathBuf)>, Error> {
        let mut out = Vec::new();
        walk_files(&self.dir, Path::new(""), &mut out)?;
        out.sort();
        Ok(out)
    }
}

fn walk_files(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, PathBuf)>) -> Result<(), Error> {
    let dir = root.join(rel);
    let entries = fs::read_dir(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let rel_path = rel.join(entry.file_name());
        let kind = entry.file_type().map_err(|source| Error::Io {
            path: entry.path(),
            source,
        })?;
        if kind.is_dir() {
            walk_files(root, &rel_path, out)?;
        } else if kind.is_file() {
            out.push((rel_path, entry.path()));
        }
    }
    Ok(())
}

/// sha256 over a directory: for every regular file in sorted order, its relative path, whether it is
/// executable, and the sha256 of its content. Timestamps and ownership do not count.
pub fn tree_digest(dir: &Path) -> Result<String, Error> {
    let mut files = Vec::new();
    walk_files(dir, Path::new(""), &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    for (rel, abs) in files {
        let io = |source| Error::Io {
            path: abs.clone(),
            source,
        };
        let (digest, _) = sha256_file(&abs).map_err(io)?;
        let mode = fs::metadata(&abs).map_err(io)?.permissions().mode();
        let exec = if mode & 0o111 != 0 { "x" } else { "-" };
        hasher.update(format!("{}\0{exec}\0{digest}\n", rel.display()).as_bytes());
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Every build directory under `repository`, by name then version.
pub fn load_all(repository: &Path) -> Result<BTreeMap<String, BTreeMap<Version, Recipe>>, Error> {
    let mut all: BTreeMap<String, BTreeMap<Version, Recipe>> = BTreeMap::new();
    let names = fs::read_dir(repository).map_err(|source| Error::Io {
        path: repository.to_owned(),
        source,
    })?;
    let mut dirs = Vec::new();
    for name in names.flatten() {
        if !name.path().is_dir() {
            continue;
        }
        for version in fs::read_dir(name.path()).into_iter().flatten().flatten() {
            if version.path().join(META_FILE).is_file() {
                dirs.push(version.path());
            }
        }
    }
    dirs.sort();
    for dir in dirs {
        let recipe = Recipe::load(&dir)?;
        all.entry(recipe.meta.name.clone())
            .or_default()
            .insert(recipe.meta.version.clone(), recipe);
    }
    Ok(all)
}
