//! The privileged-test rule: a test that needs root or kernel features this host does not give
//! prints why and passes, unless `PISTON_TEST_REQUIRE_PRIVILEGED=1` (CI sets it): then it fails.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The environment variable that turns a skipped privileged test into a failure (when `1`).
pub const REQUIRE_PRIVILEGED: &str = "PISTON_TEST_REQUIRE_PRIVILEGED";

/// Something a test needs from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// Effective user id 0.
    Root,
    /// Loop devices (`/dev/loop-control`).
    LoopDevices,
    /// A usable cgroup hierarchy: v1's memory controller or v2's unified hierarchy.
    Cgroups,
    /// An executable of this name on `PATH` (`mksquashfs`, `unshare`, ...).
    Program(&'a str),
}

impl Need<'_> {
    /// Whether this host meets the need.
    pub fn is_met(&self) -> bool {
        match self {
            Need::Root => rustix::process::geteuid().is_root(),
            Need::LoopDevices => Path::new("/dev/loop-control").exists(),
            Need::Cgroups => {
                Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
                    || Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
            }
            Need::Program(name) => on_path(name),
        }
    }

    /// The need in words, as in "needs root, mksquashfs on PATH".
    pub fn describe(&self) -> String {
        match self {
            Need::Root => "root".to_owned(),
            Need::LoopDevices => "loop devices (/dev/loop-control)".to_owned(),
            Need::Cgroups => "a usable cgroup hierarchy (/sys/fs/cgroup)".to_owned(),
            Need::Program(name) => format!("{name} on PATH"),
        }
    }
}

/// Whether an executable file called `name` is in a directory of `PATH`.
fn on_path(name: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The needs this host does not meet, described.
pub fn unmet(needs: &[Need<'_>]) -> Vec<String> {
    needs
        .iter()
        .filter(|n| !n.is_met())
        .map(Need::describe)
        .collect()
}

/// Whether `test`, which needs `needs`, can run here. When it cannot: prints why and returns
/// false, or panics when `PISTON_TEST_REQUIRE_PRIVILEGED=1`.
#[track_caller]
pub fn require(test: &str, needs: &[Need<'_>]) -> bool {
    gate(test, &unmet(needs))
}

/// The rule over what the caller found `missing` (described, e.g. "root" or "a built
/// repository at /x"): true when nothing is; otherwise as [`require`].
#[track_caller]
pub fn gate(test: &str, missing: &[String]) -> bool {
    match decide(test, missing, privileged_required()) {
        Decision::Run => true,
        Decision::Skip(message) => {
            eprintln!("{message}");
            false
        }
        Decision::Fail(message) => panic!("{message}"),
    }
}

/// Whether `PISTON_TEST_REQUIRE_PRIVILEGED=1`.
pub fn privileged_required() -> bool {
    std::env::var(REQUIRE_PRIVILEGED).as_deref() == Ok("1")
}

/// The name of the running test, for helpers that are not told it: libtest names each test's
/// thread after the test.
pub fn current_test() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => "this test".to_owned(),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Run,
    Skip(String),
    Fail(String),
}

fn decide(test: &str, missing: &[String], required: bool) -> Decision {
    if missing.is_empty() {
        return Decision::Run;
    }
    let why = format!("needs {}", missing.join(", "));
    if required {
        Decision::Fail(format!("{test}: {why}, and {REQUIRE_PRIVILEGED}=1"))
    } else {
        Decision::Skip(format!(
            "skipped {test}: {why} (set {REQUIRE_PRIVILEGED}=1 to make this a failure)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_test_and_what_is_missing() {
        let missing = ["root".to_owned(), "mksquashfs on PATH".to_owned()];
        assert_eq!(decide("t", &[], true), Decision::Run);
        assert_eq!(
            decide("t", &missing, false),
            Decision::Skip(
                "skipped t: needs root, mksquashfs on PATH \
                 (set PISTON_TEST_REQUIRE_PRIVILEGED=1 to make this a failure)"
                    .to_owned()
            )
        );
        assert_eq!(
            decide("t", &missing, true),
            Decision::Fail(
                "t: needs root, mksquashfs on PATH, and PISTON_TEST_REQUIRE_PRIVILEGED=1"
                    .to_owned()
            )
        );
    }

    #[test]
    fn programs_are_looked_up_on_path() {
        assert!(Need::Program("sh").is_met());
        assert!(!Need::Program("no-such-program-piston").is_met());
        assert_eq!(
            unmet(&[Need::Program("sh"), Need::Program("no-such-program-piston")]),
            ["no-such-program-piston on PATH"]
        );
    }

    #[test]
    fn the_test_name_is_the_thread_name() {
        assert!(current_test().ends_with("the_test_name_is_the_thread_name"));
    }
}
