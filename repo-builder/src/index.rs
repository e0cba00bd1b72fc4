//! Assembling, signing and publishing the repository index.

use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ppman::schema::{BuildFileRef, INDEX_FILE, INDEX_SIG_FILE, Index, IndexEntry, SCHEMA_VERSION};

use crate::Error;
use crate::build::{Built, mkdir, write_atomic};
use crate::layout::Layout;
use crate::sign::{PUBLIC_KEY_FILE, Signer};

/// How long a freshly signed index stays valid by default.
pub const DEFAULT_VALIDITY_DAYS: u64 = 30;

/// Every built image recorded in the builder's state.
pub fn all_built(layout: &Layout) -> Result<Vec<Built>, Error> {
    let dir = layout.state_dir();
    let mut out = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(Error::Io { path: dir, source }),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            let bytes = fs::read(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let built: Built =
                serde_json::from_slice(&bytes).map_err(|source| Error::State { path, source })?;
            out.push(built);
        }
    }
    out.sort_by(|a, b| (&a.meta.name, &a.meta.version).cmp(&(&b.meta.name, &b.meta.version)));
    Ok(out)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes `index.json` and its signature for every built image, with a version higher than the
/// previous index's and an expiry `validity_days` from now. Returns the index.
pub fn write_index(layout: &Layout, signer: &Signer, validity_days: u64) -> Result<Index, Error> {
    let built = all_built(layout)?;
    let index_path = layout.out.join(INDEX_FILE);
    let previous = fs::read(&index_path)
        .ok()
        .and_then(|raw| Index::parse_trusted(&raw).ok())
        .map_or(0, |i| i.version);
    let generated = now();
    let mut packages = Vec::new();
    for b in &built {
        let files_dir = layout.build_files_dir(&b.meta.name, &b.meta.version.to_string());
        packages.push(IndexEntry {
            name: b.meta.name.clone(),
            version: b.meta.version.clone(),
            author: b.meta.author.clone(),
            description: b.meta.description.clone(),
            provides: b.meta.provides.clone(),
            dependencies: b.meta.dependencies.clone(),
            limit_overrides: b.meta.limit_overrides.clone(),
            compiled: b.compiled,
            cache: b.cache,
            size: b.size,
            sha256: b.sha256.clone(),
            url: b.image.clone(),
            signature: b.signature.clone(),
            build_file: BuildFileRef {
                sha256: b.build_digest.clone(),
                url: format!(
                    "{}/",
                    files_dir
                        .strip_prefix(&layout.out)
                        .expect("build files live in the output")
                        .display()
                ),
            },
        });
    }
    let index = Index {
        schema: SCHEMA_VERSION,
        version: (previous + 1).max(generated),
        generated,
        expires: generated + validity_days * 86_400,
        packages,
    };
    let raw = index.to_json();
    let signature = signer.sign(&raw[..], &index.trusted_comment())?;
    write_atomic(&layout.out.join(INDEX_SIG_FILE), signature.as_bytes())?;
    write_atomic(&index_path, &raw)?;
    write_atomic(
        &layout.out.join(PUBLIC_KEY_FILE),
        signer.public_key_text()?.as_bytes(),
    )?;
    Ok(index)
}

/// Copies the published part of the output (index, signature, key, listed images and build files)
/// into `dest`, a static tree any file server can serve.
pub fn publish(layout: &Layout, dest: &Path) -> Result<usize, Error> {
    let raw = fs::read(layout.out.join(INDEX_FILE)).map_err(|source| Error::Io {
        path: layout.out.join(INDEX_FILE),
        source,
    })?;
    let index = Index::parse_trusted(&raw).map_err(Error::Index)?;
    mkdir(&dest.join("images"))?;
    let mut files: Vec<String> = vec![
        PUBLIC_KEY_FILE.into(),
        INDEX_SIG_FILE.into(),
        INDEX_FILE.into(),
    ];
    for p in &index.packages {
        files.push(p.url.clone());
        files.push(format!("{}.minisig", p.url));
        let rel = p.build_file.url.trim_end_matches('/');
        for entry in walk(&layout.out.join(rel))? {
            files.push(format!("{rel}/{entry}"));
        }
    }
    // The index goes last, so a reader of `dest` never sees an index whose images are not there yet.
    files.rotate_left(3);
    for rel in &files {
        let (from, to) = (layout.out.join(rel), dest.join(rel));
        mkdir(to.parent().expect("has a parent"))?;
        let tmp = to.with_extension("publish-tmp");
        fs::copy(&from, &tmp).map_err(|source| Error::Io {
            path: from.clone(),
            source,
        })?;
        fs::rename(&tmp, &to).map_err(|source| Error::Io {
            path: to.clone(),
            source,
        })?;
    }
    Ok(index.packages.len())
}

fn walk(dir: &Path) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_owned(), String::new())];
    while let Some((abs, rel)) = stack.pop() {
        let entries = fs::read_dir(&abs).map_err(|source| Error::Io {
            path: abs.clone(),
            source,
        })?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((e.path(), r));
            } else {
                out.push(r);
            }
        }
    }
    out.sort();
    Ok(out)
}
