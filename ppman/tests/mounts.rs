//! The real mounter: overlays past the 4096-byte option limit of classic mount(2) go through the
//! new mount API, and reconcile recognises them afterwards.

mod common;

use std::fs;
use std::path::PathBuf;

use common::{Guard, privileged};
use ppman::mounts::{Plan, SystemMounter, overlay_options, reconcile};
use test_support::mounts_under;

#[test]
fn many_long_layers_use_the_new_mount_api() {
    if !privileged("many_long_layers_use_the_new_mount_api") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("ppt")
        .tempdir_in("/tmp")
        .unwrap();
    let _guard = Guard(dir.path().to_owned());
    let root = dir.path().canonicalize().unwrap();
    let layers: Vec<PathBuf> = (0..60)
        .map(|i| {
            let l = root
                .join("layers")
                .join(format!("{i:03}-{}", "x".repeat(90)));
            fs::create_dir_all(&l).unwrap();
            fs::write(l.join(format!("only-{i}")), "").unwrap();
            fs::write(l.join("shared"), format!("{i}")).unwrap();
            l
        })
        .collect();
    assert!(
        overlay_options(&layers).unwrap().len() > 4096,
        "past the classic limit"
    );
    let tree = root.join("t").join("big@1.0.0");
    let mut plan = Plan::default();
    plan.trees.insert(tree.clone(), layers);
    let report = reconcile(&SystemMounter, &root, &plan).unwrap();
    assert_eq!(report.mounted, std::slice::from_ref(&tree));
    assert_eq!(
        fs::read_to_string(tree.join("shared")).unwrap(),
        "0",
        "the first layer is on top"
    );
    assert!(
        tree.join("only-0").exists() && tree.join("only-59").exists(),
        "every layer is visible"
    );
    let line = mounts_under(&tree).join("\n");
    eprintln!("{}", &line[..line.len().min(400)]);
    assert!(
        reconcile(&SystemMounter, &root, &plan).unwrap().is_empty(),
        "recognised as correct: {line}"
    );
    reconcile(&SystemMounter, &root, &Plan::default()).unwrap();
    assert!(mounts_under(&root).is_empty());
}
