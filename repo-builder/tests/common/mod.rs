//! Fixture repositories built in code, and the privileged-test rule.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use test_support::Need;

/// Whether this test can use root, namespaces and the squashfs tools (the privileged-test rule:
/// prints why not, or panics when `PISTON_TEST_REQUIRE_PRIVILEGED=1`).
pub fn privileged(test: &str) -> bool {
    test_support::require(
        test,
        &[
            Need::Root,
            Need::Program("mksquashfs"),
            Need::Program("unsquashfs"),
            Need::Program("unshare"),
            Need::Program("mount"),
        ],
    )
}

pub fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    if path.extension().is_none_or(|e| e == "sh") {
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// A bottom layer made of a few host binaries and their libraries: enough for bash scripts.
pub const TINY_BUILD: &str = r#"#!/usr/bin/env bash
set -euo pipefail
R="$PISTON_ROOT"
mkdir -p "$R/usr/bin" "$R/usr/lib" "$R/usr/lib64" "$R/etc" "$R/tmp" "$R/proc" "$R/dev" "$R/sys" "$R/root"
ln -s usr/bin "$R/bin"; ln -s usr/lib "$R/lib"; ln -s usr/lib64 "$R/lib64"
for b in bash sh env cat mkdir ls sleep date; do
  p=$(command -v "$b"); cp -L "$p" "$R/usr/bin/$b"
  for lib in $(ldd "$p" | grep -o '/[^ ]*'); do cp -L --parents "$lib" "$R"; done
done
echo "root:x:0:0:root:/root:/bin/bash" > "$R/etc/passwd"
: > "$R/etc/resolv.conf"
"#;

/// Writes a fixture repository: `tiny` (bottom layer) and `hello` (a language on top of it).
pub fn fixture_repository(dir: &Path) {
    write(
        &dir.join("tiny/1.0.0/package.toml"),
        "name = \"tiny\"\nversion = \"1.0.0\"\ndescription = \"host binaries\"\n",
    );
    write(&dir.join("tiny/1.0.0/build.sh"), TINY_BUILD);
    write(
        &dir.join("hello/1.0.0/package.toml"),
        r#"name = "hello"
version = "1.0.0"
author = "tests"
[dependencies]
tiny = "1.x"
[[provides]]
language = "hello"
aliases = ["hi"]
"#,
    );
    write(
        &dir.join("hello/1.0.0/build.sh"),
        "#!/usr/bin/env bash\nset -eu\nmkdir -p /opt/hello\necho OK > /opt/hello/greeting\nsleep 1\ndate > /tmp/scratch\n",
    );
    write(
        &dir.join("hello/1.0.0/run"),
        "#!/usr/bin/env bash\nbash \"$@\"\n",
    );
    write(
        &dir.join("hello/1.0.0/test.hello"),
        "cat /opt/hello/greeting\n",
    );
    write(
        &dir.join("hello/1.0.0/test.hi"),
        "read -r x < /opt/hello/greeting; echo \"$x\"\n",
    );
}
