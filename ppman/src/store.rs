//! The content-addressed image store: `images/<sha256>.sqfs`, each image stored once.
//!
//! A download goes to `<sha256>.sqfs.partial`; its size is capped at the size the signed index
//! declares (a server sending more is cut off), and sha256 and the minisign signature are computed
//! while it streams. Only a fully verified file is fsynced and renamed into place, so the store never
//! holds an unverified image under its final name.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{FlockOperation, flock};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::fsutil::fsync_dir;
use crate::progress::Progress;
use crate::schema::{IndexEntry, TrustedKey, decode_signature};
use crate::source::Location;

/// Suffix of downloads in progress (or left by a crash).
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Whether a partial download at `path` is abandoned (no process holds its lock).
pub fn is_abandoned_partial(path: &Path) -> bool {
    File::open(path).is_ok_and(|f| flock(&f, FlockOperation::NonBlockingLockExclusive).is_ok())
}

/// Image file of a given sha256 in `store`.
pub fn image_path(store: &Path, sha256: &str) -> PathBuf {
    store.join(format!("{sha256}.sqfs"))
}

/// Makes sure the image of `entry` is in `store`, downloading and verifying it from `from` when
/// missing. Returns its path.
pub fn ensure_image(
    store: &Path,
    entry: &IndexEntry,
    from: &Location,
    key: &TrustedKey,
    progress: &dyn Progress,
) -> Result<PathBuf> {
    let path = image_path(store, &entry.sha256);
    if path.exists() {
        return Ok(path);
    }
    let label = format!("{} {}", entry.name, entry.version);
    progress.start(&label, entry.size);
    let result = download(&path, entry, from, key, &label, progress);
    progress.finish(&label, result.is_ok());
    result.map(|()| path)
}

fn download(
    path: &Path,
    entry: &IndexEntry,
    from: &Location,
    key: &TrustedKey,
    label: &str,
    progress: &dyn Progress,
) -> Result<()> {
    let url = from.to_string();
    // Unique per download: concurrent installs may fetch the same image; the first rename wins and
    // the second replaces it with identical bytes.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let partial = path.with_extension(format!(
        "sqfs.{}-{}{PARTIAL_SUFFIX}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let signature = decode_signature(&entry.signature).map_err(|source| Error::ImageSignature {
        url: url.clone(),
        source,
    })?;
    let mut verifier = key
        .verify_stream(&signature)
        .map_err(|source| Error::ImageSignature {
            url: url.clone(),
            source,
        })?;
    let mut hasher = Sha256::new();
    let mut out = File::create(&partial).map_err(Error::io("create", &partial))?;
    // Held while the download runs, so gc leaves this partial file alone.
    flock(&out, FlockOperation::LockExclusive)
        .map_err(|e| Error::io("lock", &partial)(e.into()))?;
    let cleanup = |e: Error| {
        let _ = fs::remove_file(&partial);
        e
    };
    // One byte more than declared: receiving it proves the server sends too much.
    let mut reader = from.open().map_err(cleanup)?.take(entry.size + 1);
    let mut buf = vec![0u8; 256 * 1024];
    let mut done = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(cleanup(Error::Read { url, source })),
        };
        done += n as u64;
        if done > entry.size {
            return Err(cleanup(Error::Oversize {
                url,
                limit: entry.size,
            }));
        }
        hasher.update(&buf[..n]);
        verifier.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| cleanup(Error::io("write", &partial)(e)))?;
        progress.advance(label, done);
    }
    if done != entry.size {
        return Err(cleanup(Error::Size {
            url,
            expected: entry.size,
            actual: done,
        }));
    }
    let actual = hex::encode(hasher.finalize());
    if actual != entry.sha256 {
        return Err(cleanup(Error::Digest {
            url,
            expected: entry.sha256.clone(),
            actual,
        }));
    }
    if let Err(source) = verifier.finalize() {
        return Err(cleanup(Error::ImageSignature {
            url,
            source: crate::schema::IndexError::BadSignature(source),
        }));
    }
    out.sync_all()
        .map_err(|e| cleanup(Error::io("fsync", &partial)(e)))?;
    drop(out);
    fs::rename(&partial, path).map_err(|e| cleanup(Error::io("rename into place", path)(e)))?;
    fsync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Re-hashes a stored image; `Ok(None)` when it matches, `Ok(Some(actual))` when it does not.
pub fn check_image(path: &Path, sha256: &str) -> Result<Option<String>> {
    let (actual, _) = crate::digest::sha256_file(path).map_err(Error::io("read", path))?;
    Ok((actual != sha256).then_some(actual))
}
