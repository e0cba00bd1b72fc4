//! What the library hands to the `piston-sandbox` helper (JSON on fd 3), and what the helper
//! reports back (one line on fd 4).

use serde::{Deserialize, Serialize};

/// Everything the helper needs to build one sandbox and run one command in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// Host path of the job's tmpfs; holds `upper/`, `work/` and the mount point `root/`.
    pub job_dir: String,
    /// Read-only lower layers, top-most first.
    pub layers: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    pub hostname: String,
    /// argv[0] must be an absolute path inside the sandbox.
    pub argv: Vec<String>,
    /// `KEY=VALUE` entries: the program's variables, exactly.
    pub env: Vec<String>,
    /// Working directory inside the sandbox.
    pub cwd: String,
    pub rlimits: Rlimits,
    /// Size of the private /tmp and /dev/shm tmpfs mounts, bytes.
    pub tmp_bytes: u64,
    /// Files and directories each of them may hold (tmpfs `nr_inodes`).
    pub tmp_inodes: u64,
    pub seccomp: bool,
    /// The helper kills the job by itself after this many seconds (0 = never): a backstop in
    /// case the server dies; the library's wall limit is always earlier.
    #[serde(default)]
    pub wall_backstop_s: u64,
    /// Write set-up timings to the program's stderr (diagnostics; `PISTON_SANDBOX_TIMINGS=1`).
    #[serde(default)]
    pub timings: bool,
}

/// First line on fd 3: the cgroup init enters before anything else (cgroup v2 needs none: init
/// is born in its cgroup, whose directory the zygote gets with the request).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CgroupJoin {
    /// cgroup v1: `cgroup.procs` files init writes itself into.
    pub procs: Vec<String>,
}

/// Resource limits applied with setrlimit just before exec (soft = hard unless noted).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Rlimits {
    /// RLIMIT_CPU soft limit in seconds (SIGXCPU), the hard one is one second more (SIGKILL);
    /// a backstop behind the cgroup CPU accounting. 0 = unlimited.
    pub cpu_seconds: u64,
    pub nofile: u64,
    pub fsize: u64,
    pub stack: u64,
    /// RLIMIT_NPROC for the job's own uid (a backstop behind pids.max). 0 = unlimited.
    pub nproc: u64,
}

/// The helper's report about the target program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperReport {
    Finished {
        code: Option<i32>,
        signal: Option<i32>,
        wall_us: u64,
        utime_us: u64,
        stime_us: u64,
        maxrss_kb: u64,
    },
    Error(String),
}

impl HelperReport {
    pub fn to_line(&self) -> String {
        match self {
            HelperReport::Finished {
                code,
                signal,
                wall_us,
                utime_us,
                stime_us,
                maxrss_kb,
            } => {
                let o = |v: Option<i32>| v.map_or("-".to_string(), |v| v.to_string());
                format!(
                    "ok {} {} {wall_us} {utime_us} {stime_us} {maxrss_kb}\n",
                    o(*code),
                    o(*signal)
                )
            }
            HelperReport::Error(m) => format!("error {}\n", m.replace('\n', " ")),
        }
    }

    pub fn parse(line: &str) -> Option<HelperReport> {
        if let Some(m) = line.strip_prefix("error ") {
            return Some(HelperReport::Error(m.trim_end().to_string()));
        }
        let rest = line.strip_prefix("ok ")?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() != 6 {
            return None;
        }
        let o = |s: &str| -> Option<Option<i32>> {
            if s == "-" {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        Some(HelperReport::Finished {
            code: o(f[0])?,
            signal: o(f[1])?,
            wall_us: f[2].parse().ok()?,
            utime_us: f[3].parse().ok()?,
            stime_us: f[4].parse().ok()?,
            maxrss_kb: f[5].parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trip() {
        let r = HelperReport::Finished {
            code: Some(3),
            signal: None,
            wall_us: 10,
            utime_us: 2,
            stime_us: 1,
            maxrss_kb: 900,
        };
        assert_eq!(HelperReport::parse(&r.to_line()), Some(r));
        let e = HelperReport::Error("mount overlay: EINVAL\nx".into());
        assert_eq!(
            HelperReport::parse(&e.to_line()),
            Some(HelperReport::Error("mount overlay: EINVAL x".into()))
        );
        assert_eq!(HelperReport::parse("garbage"), None);
    }
}
