//! Building a real (tiny) repository: images, signatures, index, reproducibility, incremental
//! builds, tests, and the errors a user meets.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{fixture_repository, privileged, write};
use ppman::schema::{INDEX_FILE, INDEX_SIG_FILE, Index, IndexError, TrustedKey};
use repo_builder::{
    Builder, Error, ImageOptions, NoProgress, Outcome, Request, Signer, index, sign,
};
use test_support::mounts_under;

fn options() -> ImageOptions {
    ImageOptions {
        compression_level: 3,
        ..ImageOptions::default()
    }
}

fn setup(root: &Path) -> (std::path::PathBuf, Signer) {
    let repo = root.join("repository");
    fixture_repository(&repo);
    let (sk, _) = sign::keygen(&root.join("keys")).unwrap();
    (repo, Signer::load(&sk).unwrap())
}

#[test]
fn builds_signs_indexes_and_is_reproducible() {
    if !privileged("builds_signs_indexes_and_is_reproducible") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (repo, signer) = setup(tmp.path());
    let out_a = tmp.path().join("out-a");
    let builder = Builder::new(&repo, out_a.clone(), options()).unwrap();
    let built = builder.build(&[], &signer, &NoProgress).unwrap();
    let names: Vec<_> = built.iter().map(|(_, b)| b.meta.name.as_str()).collect();
    assert_eq!(names, ["tiny", "hello"], "dependencies are built first");
    assert!(built.iter().all(|(o, _)| *o == Outcome::Built));
    index::write_index(&builder.layout, &signer, 30).unwrap();

    // The index verifies with the published key and lists both images with their digests.
    let key = TrustedKey::parse(&fs::read_to_string(out_a.join("piston.pub")).unwrap()).unwrap();
    let raw = fs::read(out_a.join(INDEX_FILE)).unwrap();
    let sig = fs::read_to_string(out_a.join(INDEX_SIG_FILE)).unwrap();
    let idx = Index::verify(&raw, &sig, &key).unwrap();
    assert_eq!(idx.packages.len(), 2);
    let hello = idx.packages.iter().find(|p| p.name == "hello").unwrap();
    assert_eq!(hello.dependencies["tiny"], "1.x");
    assert_eq!(hello.provides[0].aliases, ["hi"]);
    let image = fs::read(out_a.join(&hello.url)).unwrap();
    assert_eq!(image.len() as u64, hello.size);
    assert_eq!(ppman::digest::sha256_hex(&image), hello.sha256);
    key.verify(&image, &hello.signature).unwrap();
    assert!(
        out_a
            .join(&hello.build_file.url)
            .join("package.toml")
            .is_file()
    );

    // Only what the build added is in the image: the package's files and /opt/hello, no base, no scratch.
    let listing = Command::new("unsquashfs")
        .arg("-l")
        .arg(out_a.join(&hello.url))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains("squashfs-root/opt/hello/greeting"),
        "{listing}"
    );
    assert!(
        listing.contains("squashfs-root/piston/packages/hello/1.0.0/run"),
        "{listing}"
    );
    assert!(
        !listing.contains("usr/bin/bash"),
        "base files leaked into the layer: {listing}"
    );
    assert!(
        !listing.contains("scratch"),
        "build scratch leaked: {listing}"
    );

    // Stock minisign verifies the index and an image, when it is installed.
    if Command::new("minisign").arg("-v").output().is_ok() {
        for file in [INDEX_FILE.to_owned(), hello.url.clone()] {
            let status = Command::new("minisign")
                .arg("-Vqm")
                .arg(out_a.join(&file))
                .arg("-p")
                .arg(out_a.join("piston.pub"))
                .status()
                .unwrap();
            assert!(status.success(), "minisign -V rejected {file}");
        }
    }

    // Tampering is caught and named.
    let mut bad = raw;
    let pos = bad.iter().position(|b| *b == b'O').unwrap_or(10);
    bad[pos] ^= 1;
    assert!(matches!(
        Index::verify(&bad, &sig, &key),
        Err(IndexError::BadSignature(_))
    ));
    let mut bad_image = image;
    let mid = bad_image.len() / 2;
    bad_image[mid] ^= 0xff;
    assert!(matches!(
        key.verify(&bad_image, &hello.signature),
        Err(IndexError::BadSignature(_))
    ));

    // A second, independent build of the same files gives the same bytes.
    let out_b = tmp.path().join("out-b");
    let again = Builder::new(&repo, out_b, options())
        .unwrap()
        .build(&[], &signer, &NoProgress)
        .unwrap();
    for ((_, a), (_, b)) in built.iter().zip(&again) {
        assert_eq!(a.sha256, b.sha256, "{} is not reproducible", a.meta.name);
    }

    // Incremental: nothing changed, nothing rebuilt; a changed build file rebuilds it and its dependents.
    let again = builder.build(&[], &signer, &NoProgress).unwrap();
    assert!(again.iter().all(|(o, _)| *o == Outcome::UpToDate));
    let hello_only = builder
        .build(&["hello".parse().unwrap()], &signer, &NoProgress)
        .unwrap();
    assert_eq!(hello_only.len(), 2);
    write(
        &repo.join("tiny/1.0.0/build.sh"),
        &format!("{}echo changed > \"$R/etc/motd\"\n", common::TINY_BUILD),
    );
    let builder = Builder::new(&repo, out_a, options()).unwrap();
    let rebuilt = builder.build(&[], &signer, &NoProgress).unwrap();
    assert!(
        rebuilt.iter().all(|(o, _)| *o == Outcome::Built),
        "a changed base rebuilds its dependents"
    );

    // A new index version is higher than the previous one; publish gives a static tree.
    let v2 = index::write_index(&builder.layout, &signer, 30).unwrap();
    assert!(v2.version > idx.version);

    // The test command installs the package from that index with ppman into a scratch data
    // directory and runs its test.* files through the runner's sandbox.
    let outcomes = builder.test(&"hello".parse::<Request>().unwrap()).unwrap();
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes.iter().all(|t| t.passed), "{outcomes:?}");
    let public = tmp.path().join("public");
    assert_eq!(index::publish(&builder.layout, &public).unwrap(), 2);
    assert!(public.join(INDEX_FILE).is_file() && public.join(&hello.build_file.url).is_dir());
    assert!(!public.join(".builder").exists());
    assert_eq!(mounts_under(tmp.path()), Vec::<String>::new());
}

#[test]
fn failing_build_script_names_exit_code_and_output() {
    if !privileged("failing_build_script_names_exit_code_and_output") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (repo, signer) = setup(tmp.path());
    write(
        &repo.join("hello/1.0.0/build.sh"),
        "#!/usr/bin/env bash\necho compiling the thing\necho 'fatal: it broke' >&2\nexit 42\n",
    );
    let builder = Builder::new(&repo, tmp.path().join("out"), options()).unwrap();
    let err = builder.build(&[], &signer, &NoProgress).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::StepFailed { .. }), "{text}");
    assert!(
        text.contains("build.sh of hello-1.0.0 failed with exit code 42"),
        "{text}"
    );
    assert!(text.contains("fatal: it broke"), "{text}");
    assert_eq!(mounts_under(tmp.path()), Vec::<String>::new());
}

#[test]
fn dependency_errors_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repository");
    fixture_repository(&repo);
    let meta = repo.join("hello/1.0.0/package.toml");
    let text = fs::read_to_string(&meta).unwrap();

    fs::write(&meta, text.replace("tiny = \"1.x\"", "tiny = \">=2\"")).unwrap();
    let builder = Builder::new(&repo, tmp.path().join("out"), options()).unwrap();
    let err = repo_builder::plan::plan(&builder.recipes, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "hello-1.0.0 needs tiny >=2, repository has: 1.0.0"
    );

    fs::write(
        &meta,
        text.replace("tiny = \"1.x\"", "tiny = \"1.x\"\nghost = \"*\""),
    )
    .unwrap();
    let builder = Builder::new(&repo, tmp.path().join("out"), options()).unwrap();
    let err = repo_builder::plan::plan(&builder.recipes, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "hello-1.0.0 needs ghost *, repository has: none"
    );

    // a cycle: tiny depends on hello
    fs::write(&meta, &text).unwrap();
    let tiny = repo.join("tiny/1.0.0/package.toml");
    let tiny_text = fs::read_to_string(&tiny).unwrap();
    fs::write(&tiny, format!("{tiny_text}[dependencies]\nhello = \"*\"\n")).unwrap();
    let builder = Builder::new(&repo, tmp.path().join("out"), options()).unwrap();
    let err = repo_builder::plan::plan(&builder.recipes, &[]).unwrap_err();
    assert!(err.to_string().starts_with("dependency cycle: "), "{err}");
    assert!(
        err.to_string().contains("hello-1.0.0 -> tiny-1.0.0"),
        "{err}"
    );

    // a bad metadata file is refused when the repository is loaded, naming the file
    fs::write(&tiny, "name = \"tiny\"\nversion = \"1.0\"\n").unwrap();
    let err = Builder::new(&repo, tmp.path().join("out"), options()).unwrap_err();
    assert!(matches!(err, Error::Meta { .. }), "{err}");
    assert!(err.to_string().contains("tiny/1.0.0/package.toml"), "{err}");

    // unknown package
    fs::write(&tiny, tiny_text).unwrap();
    let builder = Builder::new(&repo, tmp.path().join("out"), options()).unwrap();
    let err = repo_builder::plan::plan(&builder.recipes, &["nope".parse().unwrap()]).unwrap_err();
    assert_eq!(err.to_string(), "no build file matches nope=*");
}
