//! Names of what a runner process leaves on the host (job directories `job-<pid>-<n>`, cgroups
//! `h-<pid>-<n>`), so that a runner starting after one died can tell its leftovers.

use std::path::Path;

/// Whether `name` is `<prefix><pid>-<n>` for a pid that is neither ours nor alive: a leftover
/// of a runner process that died without cleaning up.
pub(crate) fn name_of_dead_runner(name: &str, prefix: &str) -> bool {
    let Some(rest) = name.strip_prefix(prefix) else {
        return false;
    };
    let Some((pid, n)) = rest.split_once('-') else {
        return false;
    };
    let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), n.parse::<u64>()) else {
        return false;
    };
    pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_dead_runners() {
        let me = std::process::id();
        assert!(!name_of_dead_runner(&format!("job-{me}-3"), "job-"));
        assert!(!name_of_dead_runner("job-1-3", "job-"), "pid 1 is alive");
        assert!(name_of_dead_runner("job-4194303-0", "job-"));
        assert!(name_of_dead_runner("h-4194303-12", "h-"));
        assert!(!name_of_dead_runner("h-4194303-12", "job-"));
        assert!(!name_of_dead_runner("job-x-1", "job-"));
        assert!(!name_of_dead_runner("piston-runner", "job-"));
    }
}
