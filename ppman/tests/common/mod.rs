//! Test fixtures: a real signed repository with tiny squashfs images, built in code, and the
//! checks that nothing of a test is left mounted. The repository is served over HTTP by
//! `test_support::StaticServer` (with optional tampering).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ppman::schema::{BuildFileRef, CachePolicy, Index, IndexEntry, Provide, SCHEMA_VERSION};
use semver::Version;
use test_support::{Need, mount_points_under, mounts_under, wait_for_no_loop_devices};

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Whether a test needing root, loop devices and mksquashfs can run (the privileged-test rule:
/// prints why not, or panics when `PISTON_TEST_REQUIRE_PRIVILEGED=1`).
pub fn privileged(test: &str) -> bool {
    test_support::require(
        test,
        &[Need::Root, Need::LoopDevices, Need::Program("mksquashfs")],
    )
}

/// Whether images can be built (tests that do not mount only need this).
pub fn can_build(test: &str) -> bool {
    test_support::require(test, &[Need::Program("mksquashfs")])
}

/// A publishable repository in a temp dir, plus a data dir for ppman beside it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub keypair: minisign::KeyPair,
    pub entries: Vec<IndexEntry>,
    pub version: u64,
}

impl Fixture {
    pub fn new() -> Self {
        // Short temp paths keep mount paths short.
        let dir = tempfile::Builder::new()
            .prefix("ppt")
            .tempdir_in("/tmp")
            .unwrap();
        fs::create_dir_all(dir.path().join("repo/images")).unwrap();
        fs::create_dir_all(dir.path().join("data")).unwrap();
        Self {
            dir,
            keypair: minisign::KeyPair::generate_unencrypted_keypair().unwrap(),
            entries: Vec::new(),
            version: 0,
        }
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn public_key(&self) -> String {
        self.keypair.pk.to_base64()
    }

    pub fn sign(&self, data: &[u8], comment: &str) -> String {
        minisign::sign(
            Some(&self.keypair.pk),
            &self.keypair.sk,
            data,
            Some(comment),
            None,
        )
        .unwrap()
        .into_string()
    }

    /// Builds a package image from `files` (path → content; paths under `bin/` are executable) and
    /// lists it. Every package also gets `/piston/packages/<name>/<version>/run`.
    pub fn add(
        &mut self,
        name: &str,
        version: &str,
        deps: &[(&str, &str)],
        files: &[(&str, &str)],
    ) -> IndexEntry {
        self.add_tree(name, version, deps, files, None)
    }

    /// Same, with an extra directory copied into the image root (for large trees).
    pub fn add_tree(
        &mut self,
        name: &str,
        version: &str,
        deps: &[(&str, &str)],
        files: &[(&str, &str)],
        extra: Option<&Path>,
    ) -> IndexEntry {
        let tree = self.dir.path().join(format!("src-{name}-{version}"));
        let pkg_dir = tree.join(format!("piston/packages/{name}/{version}"));
        fs::create_dir_all(&pkg_dir).unwrap();
        fs::write(
            pkg_dir.join("run"),
            format!("#!/bin/bash\necho {name} {version}\n"),
        )
        .unwrap();
        for (path, content) in files {
            let p = tree.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, content).unwrap();
            if path.starts_with("bin/") {
                fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        if let Some(extra) = extra {
            let ok = Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", extra.display()))
                .arg(&tree)
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let tmp = self.dir.path().join(format!("{name}-{version}.sqfs"));
        let out = Command::new("mksquashfs")
            .arg(&tree)
            .arg(&tmp)
            .args([
                "-noappend",
                "-all-root",
                "-quiet",
                "-no-progress",
                "-comp",
                "zstd",
                "-mkfs-time",
                "0",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mksquashfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::remove_dir_all(&tree).unwrap();
        let data = fs::read(&tmp).unwrap();
        let sha = ppman::digest::sha256_hex(&data);
        let rel = format!("images/{name}-{version}-{}.sqfs", &sha[..12]);
        fs::rename(&tmp, self.repo().join(&rel)).unwrap();
        let signature = self.sign(&data, &format!("{name} {version}"));
        fs::write(self.repo().join(format!("{rel}.minisig")), &signature).unwrap();
        let entry = IndexEntry {
            name: name.to_owned(),
            version: Version::parse(version).unwrap(),
            author: "tests".to_owned(),
            description: format!("{name} for tests"),
            provides: vec![Provide {
                language: name.to_owned(),
                aliases: vec![],
                limit_overrides: BTreeMap::new(),
            }],
            dependencies: deps
                .iter()
                .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
                .collect(),
            limit_overrides: BTreeMap::new(),
            compiled: false,
            cache: CachePolicy::None,
            size: data.len() as u64,
            sha256: sha,
            url: rel,
            signature,
            build_file: BuildFileRef {
                sha256: "0".repeat(64),
                url: format!("build-files/{name}/{version}"),
            },
        };
        self.entries.push(entry.clone());
        entry
    }

    /// Replaces the listed entry of `name` (e.g. to lie about its sha256).
    pub fn edit(&mut self, name: &str, version: &str, f: impl FnOnce(&mut IndexEntry)) {
        f(self
            .entries
            .iter_mut()
            .find(|e| e.name == name && e.version.to_string() == version)
            .unwrap());
    }

    /// Writes and signs the next index version, valid for a day.
    pub fn publish(&mut self) {
        self.version += 1;
        self.publish_as(self.version, now() + 86_400);
    }

    /// Writes and signs an index with this version and expiry.
    pub fn publish_as(&self, version: u64, expires: u64) {
        let index = Index {
            schema: SCHEMA_VERSION,
            version,
            generated: now(),
            expires,
            packages: self.entries.clone(),
        };
        let raw = index.to_json();
        let sig = self.sign(&raw, &index.trusted_comment());
        fs::write(self.repo().join("index.json"), raw).unwrap();
        fs::write(self.repo().join("index.json.minisig"), sig).unwrap();
    }
}

/// Detaches every mount under `dir` (safety net for failing tests) and waits for autoclear loops.
pub fn force_cleanup(dir: &Path) {
    for _ in 0..64 {
        let Some(target) = mount_points_under(dir).pop() else {
            break;
        };
        let _ = rustix::mount::unmount(&target, rustix::mount::UnmountFlags::DETACH);
    }
}

/// Asserts nothing of `dir` is mounted or attached to a loop device (loops free themselves
/// asynchronously after a lazy unmount, so give them a moment).
pub fn assert_clean(dir: &Path) {
    assert!(
        mounts_under(dir).is_empty(),
        "mounts left: {:?}",
        mounts_under(dir)
    );
    let left = wait_for_no_loop_devices(dir, Duration::from_secs(5));
    assert!(left.is_empty(), "loop devices left: {left:?}");
}

/// Cleans up mounts when a test ends, even by panic.
pub struct Guard(pub PathBuf);

impl Drop for Guard {
    fn drop(&mut self) {
        force_cleanup(&self.0);
    }
}
