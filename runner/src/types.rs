//! Limits and results, with Piston's names and status codes.

use serde::{Deserialize, Serialize};

/// Limits of one sandboxed process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall clock, CLOCK_MONOTONIC, from the start of the sandbox. 0 = none.
    pub wall_timeout_ms: u64,
    /// CPU time of the whole job (every process, cgroup accounting). 0 = none.
    pub cpu_time_ms: u64,
    /// cgroup memory limit (swap off); `None` = no limit (Piston's -1).
    pub memory_bytes: Option<u64>,
    /// Processes and threads in the job (cgroup pids.max, RLIMIT_NPROC backstop).
    pub max_processes: u64,
    /// RLIMIT_NOFILE.
    pub max_open_files: u64,
    /// RLIMIT_FSIZE, bytes. 0 = none.
    pub max_file_size: u64,
    /// Per stream (stdout, stderr), bytes. 0 = none.
    pub output_max_size: u64,
}

/// The default memory limit of a run stage, bytes (512 MiB).
pub const DEFAULT_RUN_MEMORY: u64 = 512 << 20;

impl Limits {
    /// Piston's default run limits (`PISTON_RUN_*`, `PISTON_MAX_*`, `PISTON_OUTPUT_MAX_SIZE`),
    /// but with a memory limit: Piston has none by default, so one job could take the host.
    pub fn piston_run() -> Limits {
        Limits {
            wall_timeout_ms: 3000,
            cpu_time_ms: 3000,
            memory_bytes: Some(DEFAULT_RUN_MEMORY),
            max_processes: 64,
            max_open_files: 2048,
            max_file_size: 10_000_000,
            output_max_size: 1024,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::piston_run()
    }
}

/// Piston's two-letter status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Runtime error: exited with a non-zero code.
    RE,
    /// Died on a signal.
    SG,
    /// Timeout (wall clock or CPU time).
    TO,
    /// stdout length exceeded.
    OL,
    /// stderr length exceeded.
    EL,
    /// Internal error.
    XX,
}

/// Why the runner killed a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KillReason {
    Wall,
    Cpu,
    Memory,
    Output,
    Pids,
}

/// What one stage did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StageResult {
    pub stdout: String,
    pub stderr: String,
    /// stdout and stderr interleaved in arrival order.
    pub output: String,
    pub code: Option<i32>,
    /// Signal name, e.g. "SIGKILL" (forced to "SIGKILL" for TO, OL and EL, like Piston).
    pub signal: Option<String>,
    pub status: Option<Status>,
    pub message: Option<String>,
    /// CPU time of all the stage's processes (cgroup), ms.
    pub cpu_time_ms: u64,
    pub wall_time_ms: u64,
    /// Peak memory charge of the stage's cgroup, bytes.
    pub memory_bytes: u64,
    pub user_time_ms: u64,
    pub sys_time_ms: u64,
    pub kill_reason: Option<KillReason>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

impl StageResult {
    /// A stage that could not run because of an internal problem.
    pub fn internal_error(message: impl Into<String>) -> StageResult {
        StageResult {
            status: Some(Status::XX),
            message: Some(message.into()),
            ..StageResult::default()
        }
    }

    /// Exited with code 0 and no verdict (Piston's notion of success).
    pub fn succeeded(&self) -> bool {
        self.code == Some(0) && self.status.is_none()
    }
}

/// The signal's name as Piston prints it ("SIGKILL", "SIGRTMIN+3").
pub fn signal_name(sig: i32) -> String {
    let names = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match sig {
        1..=31 => names[sig as usize].to_string(),
        34 => "SIGRTMIN".into(),
        35..=49 => format!("SIGRTMIN+{}", sig - 34),
        50..=63 => format!("SIGRTMAX-{}", 64 - sig),
        64 => "SIGRTMAX".into(),
        _ => format!("SIG{sig}"),
    }
}

/// Signal number from a name ("SIGINT", "INT", "SIGRTMIN+3"); used by front ends.
pub fn signal_number(name: &str) -> Option<i32> {
    let n = name.strip_prefix("SIG").unwrap_or(name);
    (1..=64).find(|&s| signal_name(s).strip_prefix("SIG") == Some(n))
}

/// Facts gathered about a finished stage, turned into a [`StageResult`]'s verdict fields.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Verdict {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub killed: Option<KillReason>,
    pub stdout_overflow: bool,
    pub stderr_overflow: bool,
    pub oom: bool,
    pub pids_hit: bool,
    pub cpu_ms: u64,
    pub cpu_limit_ms: u64,
}

/// (status, message, signal name, kill reason), isolate's messages, Piston's precedence.
pub(crate) fn classify(
    v: &Verdict,
) -> (
    Option<Status>,
    Option<String>,
    Option<String>,
    Option<KillReason>,
) {
    let kill = Some("SIGKILL".to_string());
    let cpu_over = v.cpu_limit_ms > 0 && v.cpu_ms > v.cpu_limit_ms;
    if v.stdout_overflow || v.killed == Some(KillReason::Output) && !v.stderr_overflow {
        return (
            Some(Status::OL),
            Some("stdout length exceeded".into()),
            kill,
            Some(KillReason::Output),
        );
    }
    if v.stderr_overflow {
        return (
            Some(Status::EL),
            Some("stderr length exceeded".into()),
            kill,
            Some(KillReason::Output),
        );
    }
    // RLIMIT_CPU backstop: SIGXCPU (soft) or SIGKILL (hard) with the CPU budget spent.
    let rlimit_cpu =
        matches!(v.signal, Some(libc::SIGXCPU)) || (v.signal == Some(libc::SIGKILL) && cpu_over);
    if v.killed == Some(KillReason::Cpu) || (v.killed.is_none() && (cpu_over || rlimit_cpu)) {
        return (
            Some(Status::TO),
            Some("Time limit exceeded".into()),
            kill,
            Some(KillReason::Cpu),
        );
    }
    if v.killed == Some(KillReason::Wall) {
        return (
            Some(Status::TO),
            Some("Time limit exceeded (wall clock)".into()),
            kill,
            Some(KillReason::Wall),
        );
    }
    if v.oom || v.killed == Some(KillReason::Memory) {
        return (
            Some(Status::SG),
            Some("Memory limit exceeded".into()),
            Some(signal_name(v.signal.unwrap_or(libc::SIGKILL))),
            Some(KillReason::Memory),
        );
    }
    let pids = v.pids_hit.then_some(KillReason::Pids);
    if let Some(s) = v.signal {
        return (
            Some(Status::SG),
            Some(format!("Caught fatal signal {s}")),
            Some(signal_name(s)),
            pids,
        );
    }
    match v.code {
        Some(0) => (None, None, None, None),
        Some(c) => (
            Some(Status::RE),
            Some(format!("Exited with error status {c}")),
            None,
            pids,
        ),
        None => (
            Some(Status::XX),
            Some("sandbox ended without a result".into()),
            None,
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(11), "SIGSEGV");
        assert_eq!(signal_name(37), "SIGRTMIN+3");
        assert_eq!(signal_name(64), "SIGRTMAX");
        assert_eq!(signal_number("SIGINT"), Some(2));
        assert_eq!(signal_number("TERM"), Some(15));
        assert_eq!(signal_number("SIGRTMIN+3"), Some(37));
        assert_eq!(signal_number("SIGNOPE"), None);
    }

    #[test]
    fn classification_follows_piston() {
        let c = |v: Verdict| classify(&v);
        assert_eq!(
            c(Verdict {
                code: Some(0),
                ..Default::default()
            })
            .0,
            None
        );
        let re = c(Verdict {
            code: Some(3),
            ..Default::default()
        });
        assert_eq!(re.0, Some(Status::RE));
        assert_eq!(re.1.as_deref(), Some("Exited with error status 3"));
        let sg = c(Verdict {
            signal: Some(11),
            ..Default::default()
        });
        assert_eq!((sg.0, sg.2.as_deref()), (Some(Status::SG), Some("SIGSEGV")));
        let wall = c(Verdict {
            killed: Some(KillReason::Wall),
            signal: Some(9),
            ..Default::default()
        });
        assert_eq!(wall.0, Some(Status::TO));
        assert_eq!(wall.1.as_deref(), Some("Time limit exceeded (wall clock)"));
        assert_eq!(wall.3, Some(KillReason::Wall));
        let cpu = c(Verdict {
            signal: Some(libc::SIGXCPU),
            ..Default::default()
        });
        assert_eq!(
            (cpu.0, cpu.2.as_deref(), cpu.3),
            (Some(Status::TO), Some("SIGKILL"), Some(KillReason::Cpu))
        );
        let over = c(Verdict {
            code: Some(0),
            cpu_ms: 20,
            cpu_limit_ms: 10,
            ..Default::default()
        });
        assert_eq!(over.0, Some(Status::TO));
        let ol = c(Verdict {
            stdout_overflow: true,
            killed: Some(KillReason::Output),
            ..Default::default()
        });
        assert_eq!((ol.0, ol.2.as_deref()), (Some(Status::OL), Some("SIGKILL")));
        let el = c(Verdict {
            stderr_overflow: true,
            killed: Some(KillReason::Output),
            ..Default::default()
        });
        assert_eq!(el.0, Some(Status::EL));
        let oom = c(Verdict {
            signal: Some(9),
            oom: true,
            ..Default::default()
        });
        assert_eq!((oom.0, oom.3), (Some(Status::SG), Some(KillReason::Memory)));
    }
}
