//! Install, read through the tree, uninstall and gc with real squashfs images, loop devices and
//! overlayfs; every refusal of a bad repository.

mod common;

use std::fs;
use std::io::Read;
use std::sync::Arc;

use common::{Fixture, Guard, assert_clean, can_build, now, privileged};
use ppman::resolve::ResolveError;
use ppman::schema::IndexError;
use ppman::{Error, PackageManager, Selector};
use test_support::StaticServer;

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

/// base 1.0.0 and 1.1.0 (pure layers) and lang 2.0.0 on base 1.x.
fn two_layer_repo() -> Fixture {
    let mut fx = Fixture::new();
    fx.add(
        "base",
        "1.0.0",
        &[],
        &[
            ("etc/shared", "base-old"),
            ("lib/base.txt", "from base 1.0"),
        ],
    );
    fx.add(
        "base",
        "1.1.0",
        &[],
        &[("etc/shared", "base"), ("lib/base.txt", "from base")],
    );
    fx.add(
        "lang",
        "2.0.0",
        &[("base", "1.x")],
        &[("etc/shared", "lang"), ("bin/lang", "#!/bin/sh\necho hi\n")],
    );
    fx.publish();
    fx
}

fn manager(fx: &Fixture, url: &str) -> PackageManager {
    let pm = PackageManager::open(fx.data()).unwrap();
    pm.repo_add("main", url, &fx.public_key()).unwrap();
    pm.sync(None).unwrap();
    pm
}

fn install_read_uninstall(fx: &Fixture, pm: &PackageManager) {
    let version = pm.install("lang", &sel("2")).unwrap();
    assert_eq!(version.to_string(), "2.0.0");
    let installed = pm.installed().unwrap();
    assert_eq!(installed.len(), 2, "lang and its dependency");
    let lang = installed.iter().find(|p| p.entry.name == "lang").unwrap();
    let base = installed.iter().find(|p| p.entry.name == "base").unwrap();
    assert_eq!(
        base.entry.version.to_string(),
        "1.1.0",
        "highest match of 1.x"
    );
    assert!(lang.root && !base.root);
    assert_eq!(lang.layers.len(), 2);
    assert_eq!(
        lang.layers[1], base.layers[0],
        "the dependency's image is mounted once and shared"
    );
    assert_eq!(lang.package_dir, "/piston/packages/lang/2.0.0");
    // Both layers are visible, the top one wins.
    assert_eq!(
        fs::read_to_string(lang.tree.join("etc/shared")).unwrap(),
        "lang"
    );
    assert_eq!(
        fs::read_to_string(lang.tree.join("lib/base.txt")).unwrap(),
        "from base"
    );
    assert!(lang.tree.join("piston/packages/base/1.1.0/run").exists());
    assert!(lang.tree.join("piston/packages/lang/2.0.0/run").exists());
    assert_eq!(
        fs::read_to_string(base.tree.join("etc/shared")).unwrap(),
        "base"
    );
    // Read-only.
    assert!(fs::write(lang.tree.join("etc/new"), "x").is_err());
    // Idempotent install.
    assert_eq!(
        pm.install("lang", &sel("2.0.0")).unwrap().to_string(),
        "2.0.0"
    );
    assert_eq!(pm.installed().unwrap().len(), 2);

    // The dependency cannot go while lang needs it.
    let err = pm.uninstall("base", &sel("*"), false).unwrap_err();
    assert!(
        matches!(&err, Error::HasDependents { dependents, .. } if dependents == &["lang 2.0.0"]),
        "{err}"
    );
    let removed = pm.uninstall("lang", &sel("*"), false).unwrap().removed;
    assert_eq!(
        removed.len(),
        2,
        "lang and the dependency nothing else needs: {removed:?}"
    );
    assert!(pm.installed().unwrap().is_empty());
    pm.gc().unwrap();
    assert_clean(fx.dir.path());
    assert_eq!(
        fs::read_dir(fx.data().join("ppman/images"))
            .unwrap()
            .count(),
        0,
        "no image left"
    );
    assert_eq!(
        fs::read_dir(fx.data().join("ppman/m")).unwrap().count(),
        0,
        "no mount point left"
    );
    assert_eq!(
        fs::read_dir(fx.data().join("ppman/t")).unwrap().count(),
        0,
        "no tree left"
    );
}

#[test]
fn local_folder_repository() {
    if !privileged("local_folder_repository") {
        return;
    }
    let fx = two_layer_repo();
    let _guard = Guard(fx.dir.path().to_owned());
    let pm = manager(&fx, &fx.repo().to_string_lossy());
    install_read_uninstall(&fx, &pm);
}

#[test]
fn http_repository() {
    if !privileged("http_repository") {
        return;
    }
    let fx = two_layer_repo();
    let _guard = Guard(fx.dir.path().to_owned());
    let server = StaticServer::start(&fx.repo()).unwrap();
    let pm = manager(&fx, &server.url);
    install_read_uninstall(&fx, &pm);
}

#[test]
fn cascade_and_gc_after_reboot() {
    if !privileged("cascade_and_gc_after_reboot") {
        return;
    }
    let fx = two_layer_repo();
    let _guard = Guard(fx.dir.path().to_owned());
    let pm = manager(&fx, &format!("file://{}", fx.repo().display()));
    let outcome = pm
        .install_many(
            &[("base".into(), sel("1.1")), ("lang".into(), sel("*"))],
            Some("all"),
        )
        .unwrap();
    let roots: Vec<String> = outcome
        .roots
        .iter()
        .map(|p| format!("{}/{}", p.repo, p.id))
        .collect();
    assert_eq!(roots, ["main/base 1.1.0", "main/lang 2.0.0"]);
    assert_eq!(outcome.added.len(), 2);
    // "Reboot": every mount is gone; reconcile brings them back, and a second run changes nothing.
    common::force_cleanup(&fx.data());
    let report = pm.reconcile().unwrap();
    assert_eq!(report.mounted.len(), 4, "2 images + 2 trees: {report:?}");
    assert!(pm.reconcile().unwrap().is_empty());
    let lang = pm
        .installed()
        .unwrap()
        .into_iter()
        .find(|p| p.entry.name == "lang")
        .unwrap();
    assert_eq!(
        fs::read_to_string(lang.tree.join("lib/base.txt")).unwrap(),
        "from base"
    );
    // A job holding a file keeps reading it while the runtime is uninstalled (lazy unmount).
    let mut held = fs::File::open(lang.tree.join("etc/shared")).unwrap();
    let removed = pm.uninstall("base", &sel("1.1.0"), true).unwrap().removed;
    assert_eq!(removed.len(), 2, "cascade removes lang too: {removed:?}");
    let mut text = String::new();
    held.read_to_string(&mut text).unwrap();
    assert_eq!(text, "lang");
    drop(held);
    pm.gc().unwrap();
    assert_clean(fx.dir.path());
}

#[test]
fn concurrent_installs() {
    if !privileged("concurrent_installs") {
        return;
    }
    let mut fx = two_layer_repo();
    fx.add(
        "other",
        "1.0.0",
        &[("base", "1.0.0")],
        &[("etc/other", "other")],
    );
    fx.publish();
    let _guard = Guard(fx.dir.path().to_owned());
    let pm = manager(&fx, &fx.repo().to_string_lossy());
    let data = Arc::new(fx.data());
    let handles: Vec<_> = [
        ("lang", "*"),
        ("other", "*"),
        ("base", "1.1.0"),
        ("lang", "2"),
    ]
    .into_iter()
    .map(|(name, s)| {
        let data = data.clone();
        std::thread::spawn(move || {
            PackageManager::open(&*data)
                .unwrap()
                .install(name, &sel(s))
                .unwrap()
        })
    })
    .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut names: Vec<String> = pm
        .installed()
        .unwrap()
        .iter()
        .map(|p| p.entry.name.clone() + " " + &p.entry.version.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["base 1.0.0", "base 1.1.0", "lang 2.0.0", "other 1.0.0"]
    );
    assert!(pm.reconcile().unwrap().is_empty(), "mounts match the state");
    for p in pm.installed().unwrap() {
        assert!(
            p.tree.join(&p.package_dir[1..]).join("run").exists(),
            "{}",
            p.entry.name
        );
    }
    for (name, s) in [("lang", "*"), ("other", "*"), ("base", "*")] {
        pm.uninstall(name, &sel(s), false).unwrap();
    }
    pm.gc().unwrap();
    assert!(pm.installed().unwrap().is_empty());
    assert_clean(fx.dir.path());
}

// ---- refusals --------------------------------------------------------------------------------

#[test]
fn refuses_bad_index_signature_rollback_and_expiry() {
    if !can_build("refuses_bad_index_signature_rollback_and_expiry") {
        return;
    }
    let mut fx = two_layer_repo();
    let pm = PackageManager::open(fx.data()).unwrap();
    pm.repo_add("main", &fx.repo().to_string_lossy(), &fx.public_key())
        .unwrap();
    fx.publish(); // version 2
    assert_eq!(pm.sync(None).unwrap()[0].version, 2);

    // One byte changed after signing.
    let index = fx.repo().join("index.json");
    let good = fs::read(&index).unwrap();
    let mut bad = good.clone();
    let pos = bad.iter().position(|b| *b == b'2').unwrap();
    bad[pos] = b'3';
    fs::write(&index, &bad).unwrap();
    let err = pm.sync(None).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Index {
                source: IndexError::BadSignature(_),
                ..
            }
        ),
        "{err}"
    );
    fs::write(&index, &good).unwrap();

    // Signed with another key.
    let other = Fixture::new();
    fs::write(fx.repo().join("index.json.minisig"), other.sign(&good, "x")).unwrap();
    assert!(matches!(
        pm.sync(None).unwrap_err(),
        Error::Index {
            source: IndexError::BadSignature(_),
            ..
        }
    ));

    // An older (validly signed) index.
    fx.publish_as(1, now() + 1000);
    let err = pm.sync(None).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Index {
                source: IndexError::Rollback { found: 1, seen: 2 },
                ..
            }
        ),
        "{err}"
    );
    // An expired one.
    fx.publish_as(5, now() - 1);
    assert!(matches!(
        pm.sync(None).unwrap_err(),
        Error::Index {
            source: IndexError::Expired { .. },
            ..
        }
    ));
    // The refused ones changed nothing: the synced index is still version 2.
    assert_eq!(pm.repos().unwrap()[0].index_version, Some(2));
    fx.publish_as(3, now() + 1000);
    assert_eq!(pm.sync(Some("main")).unwrap()[0].previous, Some(2));
    // An index that expires after it was synced adds nothing any more.
    fx.publish_as(4, now() + 2);
    pm.sync(None).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let err = pm.install("base", &sel("*")).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Index {
                source: IndexError::Expired { .. },
                ..
            }
        ),
        "{err}"
    );
}

/// A validly signed index whose package lifts a limit (`run_timeout = -1`, which the runner
/// would read as no wall or CPU limit at all) is refused whole at sync, naming the package, and
/// the index synced before stays in force.
#[test]
fn refuses_an_index_whose_package_lifts_a_limit() {
    if !can_build("refuses_an_index_whose_package_lifts_a_limit") {
        return;
    }
    let mut fx = two_layer_repo();
    let pm = PackageManager::open(fx.data()).unwrap();
    pm.repo_add("main", &fx.repo().to_string_lossy(), &fx.public_key())
        .unwrap();
    assert_eq!(pm.sync(None).unwrap()[0].version, 1);
    fx.edit("lang", "2.0.0", |e| {
        e.limit_overrides.insert("run_timeout".into(), -1);
    });
    fx.publish();
    let err = pm.sync(None).unwrap_err();
    let chain = ppman_error_chain(&err);
    assert!(
        matches!(
            &err,
            Error::Index {
                source: IndexError::Entry { .. },
                ..
            }
        ),
        "{chain}"
    );
    assert!(
        chain.contains("package lang-2.0.0 of the index is refused")
            && chain.contains("limit override run_timeout = -1 would lift the limit"),
        "{chain}"
    );
    assert_eq!(pm.repos().unwrap()[0].index_version, Some(1));
}

fn ppman_error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[test]
fn refuses_unknown_packages_and_bad_dependencies() {
    if !can_build("refuses_unknown_packages_and_bad_dependencies") {
        return;
    }
    let mut fx = two_layer_repo();
    let _guard = Guard(fx.dir.path().to_owned());
    fx.add("node", "18.19.0", &[("base", "*")], &[]);
    fx.add("ts", "5.4.0", &[("node", ">=20")], &[]);
    fx.add("old", "1.0.0", &[("base", "1.0.0")], &[]);
    fx.add("new", "1.0.0", &[("base", ">=1.1")], &[]);
    fx.add("mix", "1.0.0", &[("old", "*"), ("new", "*")], &[]);
    // Resolution learns: lang takes base 1.x, old needs exactly 1.0.0, so both get base 1.0.0.
    fx.add("both", "1.0.0", &[("lang", "*"), ("old", "*")], &[]);
    fx.add("ghost", "1.0.0", &[("nothere", "*")], &[]);
    fx.add("cyc-a", "1.0.0", &[("cyc-b", "*")], &[]);
    fx.add("cyc-b", "1.0.0", &[("cyc-a", "*")], &[]);
    fx.publish();
    let pm = manager(&fx, &fx.repo().to_string_lossy());
    let err = |name: &str, s: &str| match pm.install(name, &sel(s)).unwrap_err() {
        Error::Resolve(e) => *e,
        other => panic!("{other}"),
    };
    assert!(matches!(
        err("nope", "*"),
        ResolveError::UnknownPackage { .. }
    ));
    let e = err("lang", "3.x");
    assert!(
        matches!(&e, ResolveError::NoMatch { available, .. } if available == "2.0.0"),
        "{e}"
    );
    let e = err("ts", "*");
    assert_eq!(
        e.to_string(),
        "ts 5.4.0 needs node >=20, repository main has 18.19.0"
    );
    let e = err("ghost", "*");
    assert!(
        e.to_string()
            .contains("ghost 1.0.0 needs nothere *, repository main has no version"),
        "{e}"
    );
    let e = err("mix", "*");
    assert!(
        matches!(&e, ResolveError::Conflict { name, .. } if name == "base"),
        "{e}"
    );
    assert!(
        e.to_string().contains("mix 1.0.0 -> old 1.0.0")
            && e.to_string().contains("mix 1.0.0 -> new 1.0.0"),
        "{e}"
    );
    let catalog = ppman::resolve::Catalog {
        repos: vec![("main", fx.entries.as_slice())],
        installed: Default::default(),
    };
    let both = catalog.resolve("both", &sel("*"), None).unwrap();
    let ids: Vec<String> = both.packages.iter().map(|p| p.id().to_string()).collect();
    assert_eq!(
        ids,
        ["both 1.0.0", "old 1.0.0", "lang 2.0.0", "base 1.0.0"],
        "stack order, base at the bottom"
    );
    let e = err("cyc-a", "*");
    assert!(
        matches!(&e, ResolveError::Cycle { chain } if chain.contains("cyc-a 1.0.0 -> cyc-b 1.0.0 -> cyc-a 1.0.0")),
        "{e}"
    );
    // Nothing was downloaded for any of them.
    assert_eq!(
        fs::read_dir(fx.data().join("ppman/images"))
            .unwrap()
            .count(),
        0
    );
    assert!(matches!(
        pm.uninstall("lang", &sel("*"), false),
        Err(Error::NotInstalled { .. })
    ));
}

fn expect_image_refusal(
    fx: &mut Fixture,
    tamper: impl FnOnce(&mut Fixture, &StaticServer),
    check: impl FnOnce(&Error),
) {
    let _guard = Guard(fx.dir.path().to_owned());
    let server = StaticServer::start(&fx.repo()).unwrap();
    tamper(fx, &server);
    fx.publish();
    let pm = manager(fx, &server.url);
    let err = pm.install("base", &sel("1.1.0")).unwrap_err();
    check(&err);
    // Nothing stored, nothing partial, nothing installed.
    assert_eq!(
        fs::read_dir(fx.data().join("ppman/images"))
            .unwrap()
            .count(),
        0
    );
    assert!(pm.installed().unwrap().is_empty());
}

#[test]
fn refuses_wrong_sha256() {
    if !can_build("refuses_wrong_sha256") {
        return;
    }
    let mut fx = two_layer_repo();
    let other = fx.entries[0].sha256.clone();
    expect_image_refusal(
        &mut fx,
        |fx, _| fx.edit("base", "1.1.0", |e| e.sha256 = other),
        |e| assert!(matches!(e, Error::Digest { .. }), "{e}"),
    );
}

#[test]
fn refuses_bad_image_signature() {
    if !can_build("refuses_bad_image_signature") {
        return;
    }
    let mut fx = two_layer_repo();
    // Right digest, but the signature is over other bytes.
    let wrong = fx.sign(b"something else", "x");
    let entry_sig = wrong;
    expect_image_refusal(
        &mut fx,
        |fx, _| fx.edit("base", "1.1.0", |e| e.signature = entry_sig),
        |e| assert!(matches!(e, Error::ImageSignature { .. }), "{e}"),
    );
}

/// Serves the image of base 1.1.0 changed by `change` (the index still lists the original).
fn expect_served_image_refusal(change: impl FnOnce(&mut Vec<u8>), check: impl FnOnce(&Error)) {
    let mut fx = two_layer_repo();
    let url = fx
        .entries
        .iter()
        .find(|e| e.version.to_string() == "1.1.0")
        .unwrap()
        .url
        .clone();
    let mut body = fs::read(fx.repo().join(&url)).unwrap();
    change(&mut body);
    expect_image_refusal(&mut fx, |_, server| server.serve_instead(&url, body), check);
}

#[test]
fn refuses_oversize_and_tampered_image() {
    if !can_build("refuses_oversize_and_tampered_image") {
        return;
    }
    // A server sending more than declared is cut off.
    expect_served_image_refusal(
        |body| body.extend(std::iter::repeat_n(0u8, 1 << 20)),
        |e| assert!(matches!(e, Error::Oversize { .. }), "{e}"),
    );
    // Same size, one bit flipped in transit.
    expect_served_image_refusal(
        |body| body[100] ^= 1,
        |e| assert!(matches!(e, Error::Digest { .. }), "{e}"),
    );
    // Cut short.
    expect_served_image_refusal(
        |body| body.truncate(body.len() / 2),
        |e| assert!(matches!(e, Error::Size { .. }), "{e}"),
    );
}

#[test]
fn a_missing_image_is_reported_and_can_be_uninstalled() {
    if !privileged("a_missing_image_is_reported_and_can_be_uninstalled") {
        return;
    }
    let fx = two_layer_repo();
    let _guard = Guard(fx.dir.path().to_owned());
    let pm = manager(&fx, &fx.repo().to_string_lossy());
    pm.install("lang", &sel("*")).unwrap();
    // After a reboot, the base image is gone from the store.
    common::force_cleanup(&fx.data());
    let base = pm
        .installed()
        .unwrap()
        .into_iter()
        .find(|p| p.entry.name == "base")
        .unwrap();
    fs::remove_file(
        fx.data()
            .join(format!("ppman/images/{}.sqfs", base.entry.sha256)),
    )
    .unwrap();
    let report = pm.reconcile().unwrap();
    assert_eq!(
        report.mounted.len(),
        1,
        "lang's own image still mounts: {report:?}"
    );
    assert_eq!(
        report.failed.len(),
        3,
        "base's image and both trees: {report:?}"
    );
    let problems = pm.verify().unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].actual, None, "missing");
    let removed = pm.uninstall("lang", &sel("*"), false).unwrap().removed;
    assert_eq!(removed.len(), 2);
    pm.gc().unwrap();
    assert_clean(fx.dir.path());
}
