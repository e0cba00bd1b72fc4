//! The deployment files in `deploy/`: the systemd unit passes systemd's own checks and says what
//! the server needs of it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// The default of an option in api/CONFIG.md's table (kept true by the api's own test).
fn documented_default(option: &str) -> String {
    let table = std::fs::read_to_string(repo_root().join("api/CONFIG.md")).expect("CONFIG.md");
    table
        .lines()
        .find_map(|l| {
            let mut cells = l.split('|').map(str::trim).skip(1);
            (cells.next()? == format!("`{option}`"))
                .then(|| cells.next().map(|d| d.trim_matches('`').to_owned()))?
        })
        .unwrap_or_else(|| panic!("{option} in api/CONFIG.md"))
}

/// `deploy/piston.service`: `systemd-analyze verify` finds nothing to say (an unknown or
/// misspelt setting, a bad value, a missing binary would each be a warning), with `ExecStart`
/// pointed at this build's server; the settings the server depends on are there, and systemd
/// waits longer for it to stop than it waits for its jobs.
#[test]
fn the_systemd_unit_verifies() {
    if !test_support::require(
        &test_support::current_test(),
        &[test_support::Need::Program("systemd-analyze")],
    ) {
        return;
    }
    let unit = std::fs::read_to_string(repo_root().join("deploy/piston.service")).expect("unit");
    let server = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/debug/piston")
        .canonicalize()
        .expect("target/debug/piston (cargo build --workspace)");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("piston.service");
    let exec = "ExecStart=/usr/local/bin/piston";
    assert!(unit.lines().any(|l| l == exec), "{exec}");
    std::fs::write(
        &file,
        unit.replace(exec, &format!("ExecStart={}", server.display())),
    )
    .expect("write the unit");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&file)
        .output()
        .expect("systemd-analyze");
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");

    let setting = |name: &str| -> String {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name}= in the unit"))
            .to_owned()
    };
    assert_eq!(setting("Delegate"), "yes", "the server makes job cgroups");
    assert_eq!(setting("KillMode"), "mixed", "SIGTERM to the server alone");
    assert_eq!(setting("TasksMax"), "infinity", "the runner caps processes");
    let stop: u64 = setting("TimeoutStopSec").parse().expect("seconds");
    let jobs: u64 = documented_default("shutdown_timeout")
        .parse()
        .expect("milliseconds");
    assert!(
        stop * 1000 > jobs,
        "TimeoutStopSec={stop} must outlast shutdown_timeout ({jobs} ms)"
    );
    assert!(
        setting("Environment").starts_with("PISTON_DATA_DIRECTORY=")
            && unit.contains("StateDirectory=piston"),
        "the data directory"
    );
}
