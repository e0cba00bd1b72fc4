//! ppman end to end against the repository repo-builder built (scripts/test.sh), served over
//! HTTP on loopback.

use e2e::{Installation, loops_under, mounts_under};

#[test]
fn install_python_with_its_base_then_nothing_is_left() {
    let Some(inst) = Installation::new(&["python"]) else {
        return;
    };
    let python = inst.package("python");
    assert!(python.root);
    assert!(python.layers.len() >= 2, "python sits on base: {python:?}");
    assert!(python.tree.join("usr/bin/python3").exists());
    assert!(
        python
            .tree
            .join(python.package_dir.trim_start_matches('/'))
            .join("run")
            .is_file()
    );
    let data = inst.data.path().to_path_buf();
    assert!(!mounts_under(&data).is_empty());
    drop(inst);
    assert_eq!(mounts_under(&data), Vec::<String>::new());
    assert_eq!(loops_under(&data), Vec::<String>::new());
}
