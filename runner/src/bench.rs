//! Start-up cost figures: a command (by default `/bin/true`) fully sandboxed, next to a plain
//! spawn of it and to a bare clone3 with the sandbox's namespaces.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::RunnerError;
use crate::job::{BOX_DIR, Runner};
use crate::process::ProcessSpec;
use crate::types::Limits;

/// Summary of one series, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub n: usize,
    pub mean_us: u64,
    pub median_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub min_us: u64,
    pub max_us: u64,
}

/// Nearest-rank percentile (`q` in 0..=1) of sorted samples; zero for none.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let n = sorted.len();
    if n == 0 {
        return Duration::ZERO;
    }
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

/// Summarises samples (sorted in place).
pub fn stats(samples: &mut [Duration]) -> Stats {
    samples.sort();
    let n = samples.len();
    if n == 0 {
        return Stats {
            n,
            mean_us: 0,
            median_us: 0,
            p95_us: 0,
            p99_us: 0,
            min_us: 0,
            max_us: 0,
        };
    }
    let us = |d: Duration| d.as_micros() as u64;
    let sum: u64 = samples.iter().map(|d| us(*d)).sum();
    Stats {
        n,
        mean_us: sum / n as u64,
        median_us: us(percentile(samples, 0.50)),
        p95_us: us(percentile(samples, 0.95)),
        p99_us: us(percentile(samples, 0.99)),
        min_us: us(samples[0]),
        max_us: us(samples[n - 1]),
    }
}

/// `n` plain spawns of `argv` (posix_spawn + wait, no isolation, output discarded).
pub fn plain(argv: &[String], n: usize) -> std::io::Result<Vec<Duration>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdout(std::process::Stdio::null())
            .status()?;
        v.push(t.elapsed());
    }
    Ok(v)
}

/// `n` runs of `argv` in a child made by clone3 with the sandbox's namespaces (mount, PID,
/// network, IPC, UTS, cgroup) and nothing else: the kernel's own namespace cost.
pub fn namespaces_only(argv: &[String], n: usize) -> std::io::Result<Vec<Duration>> {
    let flags = (libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP) as u64;
    let argv: Vec<std::ffi::CString> = argv
        .iter()
        .map(|a| crate::sys::cstring(a))
        .collect::<std::io::Result<_>>()?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        crate::sys::clone_exec_wait(flags, &argv)?;
        v.push(t.elapsed());
    }
    Ok(v)
}

/// Three series of samples.
pub type Series3 = (Vec<Duration>, Vec<Duration>, Vec<Duration>);

/// The three series interleaved sample by sample, so machine load hits them alike:
/// (plain spawn, namespaces only, full sandbox).
pub fn compare(
    runner: &Runner,
    layers: &[PathBuf],
    argv: &[String],
    n: usize,
) -> Result<Series3, RunnerError> {
    let io = |e| RunnerError::io("start", argv[0].clone(), e);
    let (mut p, mut ns, mut s) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        p.extend(plain(argv, 1).map_err(io)?);
        ns.extend(namespaces_only(argv, 1).map_err(io)?);
        s.extend(sandboxed(runner, layers, argv, 1)?);
    }
    Ok((p, ns, s))
}

/// `n` sandboxed runs of `argv`: job tmpfs, cgroup with limits, helper, all namespaces,
/// overlay of `layers`, /proc, /dev, /tmp, /dev/shm, pivot_root, uid drop, seccomp, exec,
/// reaping and teardown (cgroup removed, tmpfs unmounted).
pub fn sandboxed(
    runner: &Runner,
    layers: &[PathBuf],
    argv: &[String],
    n: usize,
) -> Result<Vec<Duration>, RunnerError> {
    let spec = ProcessSpec {
        argv: argv.to_vec(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: BOX_DIR.into(),
        limits: Limits {
            memory_bytes: Some(256 << 20),
            ..Limits::piston_run()
        },
    };
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = runner.run_command(layers, &[], &spec, b"")?;
        v.push(t.elapsed());
        if !r.stderr.is_empty() {
            // PISTON_SANDBOX_TIMINGS=1: the helper's per-step timings.
            tracing::info!(took = ?t.elapsed(), "{}", r.stderr.replace('\n', "; "));
        }
        if r.code != Some(0) {
            return Err(RunnerError::InvalidJob(format!(
                "sandboxed {argv:?} failed: {:?} {:?}",
                r.status, r.message
            )));
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_known_series() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let s = stats(&mut v);
        assert_eq!(
            (
                s.n,
                s.min_us,
                s.max_us,
                s.median_us,
                s.p95_us,
                s.p99_us,
                s.mean_us
            ),
            (100, 1, 100, 50, 95, 99, 50)
        );
        assert_eq!(stats(&mut []).n, 0);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=3).map(Duration::from_millis).collect();
        let p = |q| percentile(&v, q).as_millis();
        assert_eq!((p(0.0), p(0.34), p(0.5), p(0.67), p(1.0)), (1, 2, 2, 3, 3));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
