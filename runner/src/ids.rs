//! The sandbox's uid and gid range against the host's own: a job's uid must belong to nobody
//! else. A host account with a uid in the range could signal or trace that job and shares its
//! process limit (RLIMIT_NPROC counts per uid); a range in `/etc/subuid` lets that user's
//! rootless containers run as those uids; a running process with such a uid (another server
//! with the same range, a leftover) would be the same. So [`check`] refuses such a range at
//! start-up, naming what uses it.
//!
//! The default range lies in what systemd's uid table leaves unused (1879048192–2147483647:
//! above the container ranges, below the 31-bit limit), as isolate keeps its boxes apart from
//! the accounts people get (Debian and Ubuntu give 1000–59999).

use std::collections::BTreeSet;
use std::fs;
use std::ops::RangeInclusive;
use std::path::Path;

/// The default first sandbox uid (and gid).
pub const DEFAULT_UID_MIN: u32 = 1_990_000_001;
/// The default last sandbox uid (and gid): 500 ids.
pub const DEFAULT_UID_MAX: u32 = 1_990_000_500;

/// Where the host's ids are listed; parameters so that tests use a fake tree.
#[derive(Debug, Clone)]
pub struct HostIds<'a> {
    /// Holds `passwd`, `group`, `subuid`, `subgid` (each may be missing).
    pub etc: &'a Path,
    /// `/proc`: the uids of running processes.
    pub proc: &'a Path,
}

impl HostIds<'static> {
    pub fn system() -> HostIds<'static> {
        HostIds {
            etc: Path::new("/etc"),
            proc: Path::new("/proc"),
        }
    }
}

/// The first thing of the host that uses an id in `uids` or `gids`, described; `None` when
/// nothing does. Processes whose uid is in `ours` (this process's own running jobs) are not
/// counted.
pub fn check(
    host: &HostIds<'_>,
    uids: RangeInclusive<u32>,
    gids: RangeInclusive<u32>,
    ours: &BTreeSet<u32>,
) -> Option<String> {
    let read = |name: &str| fs::read_to_string(host.etc.join(name)).unwrap_or_default();
    account(&read("passwd"), &uids)
        .map(|(name, id)| format!("account {name} (uid {id}, {}/passwd)", host.etc.display()))
        .or_else(|| {
            account(&read("group"), &gids)
                .map(|(name, id)| format!("group {name} (gid {id}, {}/group)", host.etc.display()))
        })
        .or_else(|| {
            subordinate(&read("subuid"), &uids).map(|(name, from, to)| {
                format!(
                    "subordinate uids {from}–{to} of {name} ({}/subuid)",
                    host.etc.display()
                )
            })
        })
        .or_else(|| {
            subordinate(&read("subgid"), &gids).map(|(name, from, to)| {
                format!(
                    "subordinate gids {from}–{to} of {name} ({}/subgid)",
                    host.etc.display()
                )
            })
        })
        .or_else(|| {
            process(host.proc, &uids, ours)
                .map(|(pid, uid)| format!("running process {pid} (uid {uid})"))
        })
}

/// The first `name:x:id:…` line (passwd, group) whose id is in `range`.
fn account<'a>(text: &'a str, range: &RangeInclusive<u32>) -> Option<(&'a str, u32)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id = f.nth(1)?.trim().parse::<u32>().ok()?;
            Some((name, id))
        })
        .find(|(_, id)| range.contains(id))
}

/// The first `name:first:count` line (subuid, subgid) whose ids overlap `range`.
fn subordinate<'a>(text: &'a str, range: &RangeInclusive<u32>) -> Option<(&'a str, u64, u64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let first = f.next()?.trim().parse::<u64>().ok()?;
            let count = f.next()?.trim().parse::<u64>().ok()?;
            (count > 0).then_some((name, first, first + count - 1))
        })
        .find(|(_, from, to)| *from <= u64::from(*range.end()) && *to >= u64::from(*range.start()))
}

/// A running process (`<proc>/<pid>/status`, any of its real, effective, saved or fs uids) with
/// a uid in `range` that is not one of `ours`.
fn process(proc: &Path, range: &RangeInclusive<u32>, ours: &BTreeSet<u32>) -> Option<(u32, u32)> {
    fs::read_dir(proc)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find_map(|pid| {
            let status = fs::read_to_string(proc.join(pid.to_string()).join("status")).ok()?;
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace()
                .skip(1)
                .filter_map(|u| u.parse::<u32>().ok())
                .find(|u| range.contains(u) && !ours.contains(u))
                .map(|uid| (pid, uid))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(files: &[(&str, &str)], procs: &[(u32, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        for (name, text) in files {
            fs::write(dir.path().join("etc").join(name), text).unwrap();
        }
        for (pid, uids) in procs {
            let p = dir.path().join("proc").join(pid.to_string());
            fs::create_dir_all(&p).unwrap();
            fs::write(p.join("status"), format!("Name:\tx\nUid:\t{uids}\n")).unwrap();
        }
        fs::create_dir_all(dir.path().join("proc/self")).unwrap();
        dir
    }

    fn check_in(dir: &tempfile::TempDir, range: RangeInclusive<u32>) -> Option<String> {
        let (etc, proc) = (dir.path().join("etc"), dir.path().join("proc"));
        let ids = HostIds {
            etc: &etc,
            proc: &proc,
        };
        check(&ids, range.clone(), range, &BTreeSet::from([1200]))
    }

    const DEBIAN: &str = "root:x:0:0:root:/root:/bin/bash\n\
                          nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                          alice:x:1000:1000:Alice:/home/alice:/bin/bash\n";

    #[test]
    fn a_range_a_host_account_uses_is_named() {
        let dir = host(&[("passwd", DEBIAN)], &[]);
        assert_eq!(
            check_in(&dir, 1000..=1500).as_deref(),
            Some(
                format!(
                    "account alice (uid 1000, {}/passwd)",
                    dir.path().join("etc").display()
                )
                .as_str()
            )
        );
        assert_eq!(check_in(&dir, 1001..=1500), None);
        assert_eq!(check_in(&dir, DEFAULT_UID_MIN..=DEFAULT_UID_MAX), None);
    }

    #[test]
    fn groups_subordinate_ids_and_processes_count_too() {
        let dir = host(
            &[
                ("passwd", DEBIAN),
                ("group", "staff:x:50:\nbob:x:2000:\n"),
                ("subuid", "alice:100000:65536\n"),
            ],
            &[
                (42, "5000\t5000\t5000\t5000"),
                (43, "1200\t1200\t1200\t1200"),
            ],
        );
        let found = |r| check_in(&dir, r).unwrap_or_default();
        assert!(
            found(1990..=2010).starts_with("group bob (gid 2000"),
            "{}",
            found(1990..=2010)
        );
        assert!(
            found(165_000..=166_000).starts_with("subordinate uids 100000–165535 of alice"),
            "{}",
            found(165_000..=166_000)
        );
        assert_eq!(
            check_in(&dir, 165_536..=166_000),
            None,
            "just past the range"
        );
        assert_eq!(found(4000..=6000), "running process 42 (uid 5000)");
        assert_eq!(
            check_in(&dir, 1100..=1300),
            None,
            "uid 1200 is one of our jobs'"
        );
    }
}
