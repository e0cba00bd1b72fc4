//! One sandboxed process (a stage): spawning the helper, feeding stdin, reading output under
//! caps, enforcing wall and CPU time, and turning what happened into a [`StageResult`].
//!
//! The library never forks: it posix_spawns the small `piston-sandbox` helper (vfork-style, no
//! page-table copy of the server), hands it a `SandboxSpec` on fd 3 and reads its one-line
//! report on fd 4. All monitoring happens here, in the caller's thread, around `poll(2)`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::cgroup::{CgroupLimits, CpuUsage, JobCgroup, MemorySample};
use crate::error::RunnerError;
use crate::pool::{Helper, Janitor, Pool, Task};
use crate::spec::{HelperReport, Rlimits, SandboxSpec};
use crate::sys;
use crate::types::{KillReason, Limits, StageResult, Verdict, classify};

/// The command to run in a sandbox.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// argv; `argv[0]` is an absolute path inside the sandbox.
    pub argv: Vec<String>,
    /// Every variable the program gets, and nothing else.
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox.
    pub cwd: String,
    pub limits: Limits,
}

/// Where and as whom a process runs: one job's sandbox (shared by its stages).
#[derive(Debug, Clone)]
pub struct SandboxPlace {
    pub helper: PathBuf,
    /// Host path of the job's tmpfs (holds `upper/`, `work/`, `root/`).
    pub job_dir: PathBuf,
    /// Read-only lower layers, top-most first.
    pub layers: Vec<PathBuf>,
    pub uid: u32,
    pub gid: u32,
    pub hostname: String,
    pub tmp_bytes: u64,
    pub tmp_inodes: u64,
    pub stack_bytes: u64,
    pub seccomp: bool,
}

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What [`Process::next_event`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessEvent {
    Output { stream: Stream, data: Vec<u8> },
    Exit(Box<StageResult>),
}

/// Live resource figures (seed 004's `peek`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResourceUsage {
    pub cpu_time_ms: u64,
    pub user_time_ms: u64,
    pub sys_time_ms: u64,
    pub wall_time_ms: u64,
    pub memory_current_bytes: u64,
    pub memory_peak_bytes: u64,
}

/// A running sandboxed process.
#[derive(Debug)]
pub struct Process {
    helper_pid: sys::Pid,
    helper_reaped: bool,
    stdin: Option<File>,
    stdin_buf: VecDeque<u8>,
    /// Counts the bytes of `stdin_buf` down as the program takes them (or they are dropped).
    stdin_gauge: Option<StdinGauge>,
    stdin_close_pending: bool,
    stdout: Option<File>,
    stderr: Option<File>,
    report: Option<File>,
    report_buf: Vec<u8>,
    cgroup: Option<JobCgroup>,
    start: Instant,
    limits: Limits,
    out: Vec<u8>,
    err: Vec<u8>,
    both: Vec<u8>,
    stdout_overflow: bool,
    stderr_overflow: bool,
    killed: Option<KillReason>,
    /// When the caller's SIGKILL ([`Process::signal`]) went to the job's init. Init then dies
    /// without a report, and the program is reported killed by that signal (not as an internal
    /// error).
    sigkill_sent: OnceLock<Instant>,
    emit: bool,
    events: VecDeque<ProcessEvent>,
    finished: bool,
    /// The result, kept once built (the exit event may have been consumed already).
    result: Option<StageResult>,
    killed_at: Option<Instant>,
    wake_fd: Option<RawFd>,
    cpu_base: CpuUsage,
    janitor: Option<Janitor>,
    /// The memory limit set on the cgroup (the stage's, less what /box already holds).
    memory_limit: Option<u64>,
    stuck: StuckAtLimit,
}

fn cpu_rlimit_seconds(cpu_ms: u64) -> u64 {
    if cpu_ms == 0 {
        0
    } else {
        cpu_ms.div_ceil(1000) + 1
    }
}

impl Process {
    /// Starts `spec` in the sandbox described by `place`, with a helper from `pool` (its cgroup
    /// gets the stage's limits first). With `emit`, output chunks are also returned as events by
    /// [`Process::next_event`]. With `janitor`, the stage is torn down in the background.
    pub(crate) fn spawn(
        place: &SandboxPlace,
        pool: &Pool,
        spec: &ProcessSpec,
        emit: bool,
        janitor: Option<Janitor>,
    ) -> Result<Process, RunnerError> {
        let l = spec.limits;
        let sbx = SandboxSpec {
            job_dir: place.job_dir.to_string_lossy().into_owned(),
            layers: place
                .layers
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
            uid: place.uid,
            gid: place.gid,
            hostname: place.hostname.clone(),
            argv: spec.argv.clone(),
            env: spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: spec.cwd.clone(),
            rlimits: Rlimits {
                cpu_seconds: cpu_rlimit_seconds(l.cpu_time_ms),
                nofile: l.max_open_files.max(16),
                fsize: l.max_file_size,
                stack: place.stack_bytes,
                nproc: l.max_processes,
            },
            tmp_bytes: place.tmp_bytes,
            tmp_inodes: place.tmp_inodes,
            seccomp: place.seccomp,
            wall_backstop_s: if l.wall_timeout_ms == 0 {
                0
            } else {
                l.wall_timeout_ms.div_ceil(1000) + 2
            },
            timings: std::env::var_os("PISTON_SANDBOX_TIMINGS").is_some_and(|v| v == "1"),
        };
        let json = serde_json::to_vec(&sbx).map_err(|e| RunnerError::InvalidJob(e.to_string()))?;
        let helper = pool.get()?;
        let Helper {
            pid,
            stdin,
            stdout,
            stderr,
            spec: mut spec_w,
            report,
            cgroup,
        } = helper;
        let mut proc = Process {
            helper_pid: pid,
            helper_reaped: false,
            stdin: Some(File::from(stdin)),
            stdin_buf: VecDeque::new(),
            stdin_gauge: None,
            stdin_close_pending: false,
            stdout: Some(File::from(stdout)),
            stderr: Some(File::from(stderr)),
            report: Some(File::from(report)),
            report_buf: Vec::new(),
            cgroup: Some(cgroup),
            cpu_base: CpuUsage::default(),
            start: Instant::now(),
            limits: l,
            out: Vec::new(),
            err: Vec::new(),
            both: Vec::new(),
            stdout_overflow: false,
            stderr_overflow: false,
            killed: None,
            sigkill_sent: OnceLock::new(),
            emit,
            events: VecDeque::new(),
            finished: false,
            result: None,
            killed_at: None,
            wake_fd: None,
            janitor,
            memory_limit: l
                .memory_bytes
                .map(|m| memory_left(m, sys::fs_used_bytes(&place.job_dir).unwrap_or(0))),
            stuck: StuckAtLimit::default(),
        };
        let cg = proc.cgroup.as_ref().expect("just set");
        // +1: the job's init is in the cgroup too.
        cg.set_limits(CgroupLimits {
            memory_bytes: proc.memory_limit,
            pids: l.max_processes.saturating_add(1),
        })?;
        cg.reset_peak();
        proc.cpu_base = cg.cpu().unwrap_or_default();
        let helper_err = |e: io::Error| RunnerError::Spawn {
            path: place.helper.clone(),
            source: e,
        };
        // The helper reads the whole spec before doing anything else, so this cannot deadlock.
        if let Err(e) = spec_w.write_all(&json) {
            proc.kill(KillReason::Wall);
            return Err(helper_err(e));
        }
        drop(spec_w);
        for f in [&proc.stdin, &proc.stdout, &proc.stderr, &proc.report]
            .into_iter()
            .flatten()
        {
            sys::set_nonblocking(f.as_raw_fd()).map_err(helper_err)?;
        }
        Ok(proc)
    }

    /// Whether the process has ended and its result was built.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Also wake [`Process::next_event`] when `fd` becomes readable (the caller drains it).
    pub fn set_wake_fd(&mut self, fd: Option<RawFd>) {
        self.wake_fd = fd;
    }

    /// Queues bytes for the program's stdin (dropped when stdin is closed).
    pub fn write_stdin(&mut self, data: &[u8]) {
        if self.stdin.is_some() && !self.stdin_close_pending {
            self.stdin_buf.extend(data);
        } else {
            self.taken(data.len());
        }
    }

    /// From now on, bytes written with [`Process::write_stdin`] are counted down on `gauge` as
    /// the program takes them, or as they are dropped (stdin closed, the process gone).
    pub fn set_stdin_gauge(&mut self, gauge: StdinGauge) {
        self.stdin_gauge = Some(gauge);
    }

    /// `n` queued stdin bytes have left the queue.
    fn taken(&self, n: usize) {
        if let Some(g) = &self.stdin_gauge {
            g.sub(n as u64);
        }
    }

    /// Closes stdin once the queued bytes are written (the program sees EOF).
    pub fn close_stdin(&mut self) {
        self.stdin_close_pending = true;
        if self.stdin_buf.is_empty() {
            self.stdin = None;
        }
    }

    /// Sends `sig` to the program (through the job's init, which forwards it).
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        if self.finished || self.helper_reaped {
            return Ok(());
        }
        if sig == libc::SIGSTOP {
            // Signals go to init, which forwards them to the program; SIGSTOP cannot be blocked
            // or caught, so it would stop init itself (and with it the forwarding and reaping).
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "SIGSTOP is not forwarded (it would stop the sandbox's init); send SIGTSTP",
            ));
        }
        if sig == libc::SIGKILL {
            // To init itself: the whole PID namespace dies with it (see `kill`).
            let _ = self.sigkill_sent.set(Instant::now());
        }
        sys::kill(self.helper_pid, sig)
    }

    /// CPU time of the stage's cgroup since the stage was handed its helper.
    fn cpu_now(&self) -> Option<CpuUsage> {
        let c = self.cgroup.as_ref()?.cpu().ok()?;
        let b = self.cpu_base;
        Some(CpuUsage {
            total_us: c.total_us.saturating_sub(b.total_us),
            user_us: c.user_us.saturating_sub(b.user_us),
            system_us: c.system_us.saturating_sub(b.system_us),
        })
    }

    /// Total CPU time of the stage's cgroup since the stage was handed its helper, µs (one file
    /// read, where [`Self::cpu_now`] reads three on cgroup v1).
    fn cpu_total_now(&self) -> Option<u64> {
        let total = self.cgroup.as_ref()?.cpu_total_us().ok()?;
        Some(total.saturating_sub(self.cpu_base.total_us))
    }

    /// Live figures: CPU time, current and peak memory.
    pub fn peek(&self) -> ResourceUsage {
        let mut u = ResourceUsage {
            wall_time_ms: self.start.elapsed().as_millis() as u64,
            ..ResourceUsage::default()
        };
        if let Some(c) = self.cpu_now() {
            u.cpu_time_ms = c.total_us / 1000;
            u.user_time_ms = c.user_us / 1000;
            u.sys_time_ms = c.system_us / 1000;
        }
        if let Some(cg) = &self.cgroup {
            u.memory_current_bytes = cg.memory_current();
            u.memory_peak_bytes = cg.memory_peak();
        }
        u
    }

    /// Kills the whole sandbox: SIGKILL to the job's init, our child, which takes its PID
    /// namespace — every process of the job — with it (a PID namespace's init cannot block a
    /// SIGKILL from outside it).
    pub fn kill(&mut self, reason: KillReason) {
        if self.killed.is_none() {
            self.killed = Some(reason);
            self.killed_at = Some(Instant::now());
        }
        if !self.helper_reaped {
            let _ = sys::kill(self.helper_pid, libc::SIGKILL);
        }
    }

    /// Runs to the end, discarding events, and returns the result.
    pub fn wait(mut self) -> StageResult {
        self.emit = false;
        self.events.retain(|e| matches!(e, ProcessEvent::Exit(_)));
        loop {
            match self.next_event(None) {
                Ok(Some(ProcessEvent::Exit(r))) => return *r,
                Ok(None) if self.finished => {
                    return self.result.clone().unwrap_or_else(|| {
                        StageResult::internal_error("stage result already taken")
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    self.kill(KillReason::Wall);
                    return StageResult::internal_error(e.to_string());
                }
            }
        }
    }

    /// Drives the process until something happens or `timeout` passes (`None`: no timeout).
    /// Returns `Ok(None)` on timeout, on a wake-up through the wake fd, and after the exit
    /// event was returned once.
    pub fn next_event(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<ProcessEvent>, RunnerError> {
        let until = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(Some(e));
            }
            if self.finished {
                return Ok(None);
            }
            if self.stdout.is_none() && self.stderr.is_none() && self.report.is_none() {
                let r = self.finish();
                self.finished = true;
                self.result = Some(r.clone());
                return Ok(Some(ProcessEvent::Exit(Box::new(r))));
            }
            let now = Instant::now();
            if until.is_some_and(|u| now >= u) {
                return Ok(None);
            }
            if self.pump(until)? {
                return Ok(None); // woken
            }
        }
    }

    /// One poll round. Returns true when the wake fd fired.
    fn pump(&mut self, until: Option<Instant>) -> Result<bool, RunnerError> {
        let now = Instant::now();
        let mut wait_ms: i64 = 1000;
        if let Some(u) = until {
            wait_ms = wait_ms.min(u.saturating_duration_since(now).as_millis() as i64 + 1);
        }
        let running = self.killed.is_none();
        let since_kill = self
            .killed_at
            .or_else(|| self.sigkill_sent.get().copied())
            .map(|t| now.saturating_duration_since(t));
        // Defensive: once killed, every job process dies with its PID namespace and the pipes
        // close at once; should anything keep them open, stop waiting after a few seconds.
        if let Some(d) = since_kill
            && d > Duration::from_secs(5)
        {
            tracing::warn!("sandbox pipes still open 5 s after the kill; giving up on them");
            self.stdout = None;
            self.stderr = None;
            self.report = None;
            return Ok(false);
        }
        if running
            && let (Some(limit), Some(cg)) = (self.memory_limit, &self.cgroup)
            && self.stuck.due(now)
        {
            let usage = cg.memory_current();
            if StuckAtLimit::near(limit, usage) {
                wait_ms = wait_ms.min(StuckAtLimit::EVERY.as_millis() as i64);
                if let Some(sample) = cg.memory_sample(usage)
                    && self.stuck.observe(now, limit, sample)
                {
                    self.kill(KillReason::Memory);
                }
            } else {
                self.stuck.reset();
            }
        }
        if running && self.killed.is_none() && self.limits.wall_timeout_ms > 0 {
            let deadline = self.start + Duration::from_millis(self.limits.wall_timeout_ms);
            if now >= deadline {
                // Thrashing at its memory limit when its time ran out: the memory is why.
                self.kill(if self.stuck.stuck() {
                    KillReason::Memory
                } else {
                    KillReason::Wall
                });
            } else {
                wait_ms = wait_ms.min(deadline.duration_since(now).as_millis() as i64 + 1);
            }
        }
        if running
            && self.limits.cpu_time_ms > 0
            && let Some(total_us) = self.cpu_total_now()
        {
            let used = total_us / 1000;
            if used > self.limits.cpu_time_ms {
                self.kill(KillReason::Cpu);
            } else {
                // The job can use at most 2 CPUs' worth per wall ms on this scale; poll
                // often enough to stop it close to the budget, but not busily.
                let left = (self.limits.cpu_time_ms - used) as i64;
                wait_ms = wait_ms.min((left / 2).clamp(2, 20));
            }
        }
        let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(5);
        let mut slots: Vec<u8> = Vec::with_capacity(5);
        let mut add = |fd: RawFd, events: i16, slot: u8| {
            pfds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            slots.push(slot);
        };
        if let Some(f) = &self.stdin
            && !self.stdin_buf.is_empty()
        {
            add(f.as_raw_fd(), libc::POLLOUT, 0);
        }
        if let Some(f) = &self.stdout {
            add(f.as_raw_fd(), libc::POLLIN, 1);
        }
        if let Some(f) = &self.stderr {
            add(f.as_raw_fd(), libc::POLLIN, 2);
        }
        if let Some(f) = &self.report {
            add(f.as_raw_fd(), libc::POLLIN, 3);
        }
        if let Some(fd) = self.wake_fd {
            add(fd, libc::POLLIN, 4);
        }
        sys::poll(&mut pfds, wait_ms.max(0) as i32)
            .map_err(|e| RunnerError::io("poll", "sandbox pipes", e))?;
        let mut woken = false;
        for (p, slot) in pfds.iter().zip(slots) {
            if p.revents == 0 {
                continue;
            }
            match slot {
                0 => self.flush_stdin(),
                1 => self.read_stream(Stream::Stdout),
                2 => self.read_stream(Stream::Stderr),
                3 => self.read_report(),
                _ => woken = true,
            }
        }
        Ok(woken)
    }

    fn flush_stdin(&mut self) {
        let Some(f) = &mut self.stdin else { return };
        let (a, _) = self.stdin_buf.as_slices();
        match f.write(a) {
            Ok(n) => {
                self.stdin_buf.drain(..n);
                self.taken(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => {
                // EPIPE: the program closed stdin; drop what is left.
                self.taken(self.stdin_buf.len());
                self.stdin_buf.clear();
                self.stdin = None;
            }
        }
        if self.stdin_buf.is_empty() && self.stdin_close_pending {
            self.stdin = None;
        }
    }

    fn read_stream(&mut self, stream: Stream) {
        let mut buf = vec![0u8; 65536];
        let file = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        let Some(f) = file else { return };
        let n = match f.read(&mut buf) {
            Ok(0) => {
                *file = None;
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            Err(_) => {
                *file = None;
                return;
            }
        };
        let cap = self.limits.output_max_size;
        let (have, overflow) = match stream {
            Stream::Stdout => (&mut self.out, &mut self.stdout_overflow),
            Stream::Stderr => (&mut self.err, &mut self.stderr_overflow),
        };
        if *overflow {
            return; // already over the cap: drain and discard until the kill lands
        }
        let mut take = n;
        if cap > 0 && have.len() as u64 + n as u64 > cap {
            take = (cap - have.len() as u64) as usize;
            *overflow = true;
        }
        let data = &buf[..take];
        have.extend_from_slice(data);
        self.both.extend_from_slice(data);
        if self.emit && take > 0 {
            self.events.push_back(ProcessEvent::Output {
                stream,
                data: data.to_vec(),
            });
        }
        if *overflow {
            self.kill(KillReason::Output);
        }
    }

    fn read_report(&mut self) {
        let Some(f) = &mut self.report else { return };
        let mut buf = [0u8; 4096];
        match f.read(&mut buf) {
            Ok(0) => self.report = None,
            Ok(n) => {
                if self.report_buf.len() < 65536 {
                    self.report_buf.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => self.report = None,
        }
    }

    fn reap_helper(&mut self) {
        if !self.helper_reaped {
            let _ = sys::wait(self.helper_pid, false);
            self.helper_reaped = true;
        }
    }

    /// Everything has closed its pipes: reap, gather the figures, remove the cgroup.
    fn finish(&mut self) -> StageResult {
        // With a janitor, the helper (whose init may still be unmounting its namespace) is
        // reaped in the background; every figure below is final once the pipes are closed.
        if self.janitor.is_none() {
            self.reap_helper();
        }
        let elapsed_ms = self.start.elapsed().as_millis() as u64;
        let text = String::from_utf8_lossy(&self.report_buf).into_owned();
        let report = text.lines().find_map(HelperReport::parse);
        let mut r = StageResult {
            stdout: String::from_utf8_lossy(&self.out).into_owned(),
            stderr: String::from_utf8_lossy(&self.err).into_owned(),
            output: String::from_utf8_lossy(&self.both).into_owned(),
            stdout_truncated: self.stdout_overflow,
            stderr_truncated: self.stderr_overflow,
            wall_time_ms: elapsed_ms,
            ..StageResult::default()
        };
        let mut verdict = Verdict {
            killed: self.killed,
            stdout_overflow: self.stdout_overflow,
            stderr_overflow: self.stderr_overflow,
            cpu_limit_ms: self.limits.cpu_time_ms,
            ..Verdict::default()
        };
        if let Some(c) = self.cpu_now() {
            r.cpu_time_ms = c.total_us / 1000;
            r.user_time_ms = c.user_us / 1000;
            r.sys_time_ms = c.system_us / 1000;
        }
        if let Some(cg) = self.cgroup.take() {
            r.memory_bytes = cg.memory_peak();
            verdict.oom = cg.oom_killed();
            verdict.pids_hit = cg.pids_limit_hit();
            match &self.janitor {
                Some(j) if !self.helper_reaped => {
                    self.helper_reaped = true; // the janitor owns it now
                    j.submit(Task::Stage {
                        pid: self.helper_pid,
                        cgroup: cg,
                    });
                }
                _ => cg.dispose(),
            }
        }
        verdict.cpu_ms = r.cpu_time_ms;
        match report {
            Some(HelperReport::Error(m)) if self.killed.is_none() => {
                let mut x = StageResult::internal_error(format!("sandbox set-up failed: {m}"));
                x.wall_time_ms = r.wall_time_ms;
                return x;
            }
            Some(HelperReport::Finished {
                code,
                signal,
                wall_us,
                ..
            }) => {
                verdict.code = code;
                verdict.signal = signal;
                if self.killed.is_none() {
                    r.wall_time_ms = wall_us / 1000;
                }
            }
            _ => {
                if self.killed.is_some() || verdict.oom || self.sigkill_sent.get().is_some() {
                    verdict.signal = Some(libc::SIGKILL);
                }
            }
        }
        let (status, message, signal, reason) = classify(&verdict);
        r.status = status;
        r.message = message;
        r.signal = signal;
        r.code = verdict.code;
        r.kill_reason = reason;
        if matches!(
            r.kill_reason,
            Some(KillReason::Wall | KillReason::Cpu | KillReason::Output)
        ) {
            // Piston reports no exit code for a stage it killed.
            r.code = None;
        }
        r
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.taken(self.stdin_buf.len());
        if !self.finished {
            if !self.helper_reaped {
                sys::kill_and_reap(self.helper_pid);
                self.helper_reaped = true;
            }
            if let Some(cg) = self.cgroup.take() {
                cg.dispose();
            }
        }
    }
}

/// Bytes on their way to a program's stdin that it has not taken yet, shared between the
/// threads that write them and the one that runs the program: a writer waits
/// ([`StdinGauge::wait_below`]) instead of queueing without bound for a program that does not
/// read.
#[derive(Debug, Clone, Default)]
pub struct StdinGauge(Arc<(Mutex<u64>, Condvar)>);

impl StdinGauge {
    /// Bytes counted and not yet taken.
    pub fn pending(&self) -> u64 {
        *self.0.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `n` more bytes on their way.
    pub fn add(&self, n: u64) {
        *self.0.0.lock().unwrap_or_else(|e| e.into_inner()) += n;
    }

    /// `n` bytes were taken (or dropped).
    pub fn sub(&self, n: u64) {
        if n == 0 {
            return;
        }
        let (count, changed) = &*self.0;
        let mut c = count.lock().unwrap_or_else(|e| e.into_inner());
        *c = c.saturating_sub(n);
        changed.notify_all();
    }

    /// Waits until fewer than `bytes` are pending, at most `timeout`; whether they are.
    pub fn wait_below(&self, bytes: u64, timeout: Duration) -> bool {
        let (count, changed) = &*self.0;
        let c = count.lock().unwrap_or_else(|e| e.into_inner());
        let (c, _) = changed
            .wait_timeout_while(c, timeout, |c| *c >= bytes)
            .unwrap_or_else(|e| e.into_inner());
        *c < bytes
    }
}

/// Tells a job that is stuck at its memory limit. With no swap, a program whose memory (anonymous
/// pages, tmpfs, kernel) fills its limit can keep running only by evicting its own code and
/// the files it maps, which it reads back at once: the kernel counts that as progress and may
/// take seconds before its OOM killer acts, and the job then ends as a wall-clock time-out
/// although memory is why. Stuck means, in every sample for [`StuckAtLimit::FOR`]: the charge
/// is at the limit, pages were read back (major faults) at most [`StuckAtLimit::QUIET`] ago,
/// and all but [`margin`] of the limit is memory the kernel cannot reclaim. A program that streams a file through the page
/// cache (no major faults) or that sits below its limit is not stuck.
#[derive(Debug, Default)]
struct StuckAtLimit {
    last: Option<MemorySample>,
    since: Option<Instant>,
    checked: Option<Instant>,
    /// When the last sample with new major faults was taken.
    faulted: Option<Instant>,
}

/// How close to its limit a charge is "at" the limit (a few pages: the kernel reclaims in batches).
const AT_LIMIT: u64 = 256 << 10;

/// What "all but" means: 1/16 of the limit, between 4 and 32 MiB.
fn margin(limit: u64) -> u64 {
    (limit / 16).clamp(4 << 20, 32 << 20)
}

impl StuckAtLimit {
    /// How long a job must stay stuck before it is killed.
    const FOR: Duration = Duration::from_millis(300);
    /// How long a job at its limit may go without a major fault and still count as thrashing.
    const QUIET: Duration = Duration::from_millis(100);
    /// How often the cgroup is sampled (while near the limit).
    const EVERY: Duration = Duration::from_millis(25);

    /// Whether a sample is due (output events wake the monitor far more often).
    fn due(&mut self, now: Instant) -> bool {
        if self
            .checked
            .is_some_and(|t| now.saturating_duration_since(t) < Self::EVERY)
        {
            return false;
        }
        self.checked = Some(now);
        true
    }

    /// Whether `usage` is close enough to `limit` to sample the rest.
    fn near(limit: u64, usage: u64) -> bool {
        usage.saturating_add(margin(limit)) >= limit
    }

    /// Takes a sample; whether the job has been stuck for [`StuckAtLimit::FOR`].
    fn observe(&mut self, now: Instant, limit: u64, s: MemorySample) -> bool {
        let pinned = s.usage.saturating_sub(s.file).saturating_add(margin(limit)) >= limit;
        // The charge is at the limit: the kernel counted a failed charge (v1 does not on every
        // kernel), or the usage is within a few pages of the limit.
        let at_limit = s.usage.saturating_add(AT_LIMIT) >= limit
            || self.last.is_some_and(|l| s.limit_hits > l.limit_hits);
        if self.last.is_some_and(|l| s.major_faults > l.major_faults) {
            self.faulted = Some(now);
        }
        // Pages come back in bursts: a sample or two without a major fault is still thrashing.
        let faulting = self
            .faulted
            .is_some_and(|t| now.saturating_duration_since(t) <= Self::QUIET);
        self.last = Some(s);
        if pinned && at_limit && faulting {
            let since = *self.since.get_or_insert(now);
            now.saturating_duration_since(since) >= Self::FOR
        } else {
            self.since = None;
            false
        }
    }

    fn reset(&mut self) {
        self.last = None;
        self.since = None;
        self.faulted = None;
    }

    /// Whether the last samples found it stuck (for any time).
    fn stuck(&self) -> bool {
        self.since.is_some()
    }
}

/// The memory limit of a process of a sandbox whose writable layer already holds `held` bytes:
/// what an earlier process (the compile stage) wrote to /box stays in memory, charged to its
/// removed cgroup, so it counts against this one's limit. At least 1 MiB, so that a process
/// with nothing left starts and is killed for memory rather than failing obscurely.
fn memory_left(limit: u64, held: u64) -> u64 {
    limit.saturating_sub(held).max(1 << 20)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{MemorySample, StdinGauge, StuckAtLimit, memory_left};
    use std::time::Instant;

    const MIB: u64 = 1 << 20;

    fn sample(usage: u64, file: u64, hits: u64, faults: u64) -> MemorySample {
        MemorySample {
            usage,
            limit_hits: hits,
            file,
            major_faults: faults,
        }
    }

    /// Thrashing at the limit for 300 ms is stuck; a pause in the thrashing starts over.
    #[test]
    fn a_job_thrashing_at_its_limit_is_stuck() {
        let limit = 256 * MIB;
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut s = StuckAtLimit::default();
        let mut stuck_at = None;
        for (i, ms) in (0..20).map(|i| (i, i * 25)) {
            if s.observe(at(ms), limit, sample(limit, 2 * MIB, 10 + i, 100 + 50 * i)) {
                stuck_at.get_or_insert(ms);
            }
        }
        // The first sample has nothing to compare with; stuck from the second on, for 300 ms.
        assert_eq!(stuck_at, Some(325));
        assert!(s.stuck());
        // No new major faults in one sample: still thrashing; in 125 ms: not stuck any more.
        let last = s.last.unwrap();
        assert!(s.observe(at(500), limit, last));
        assert!(!s.observe(at(600), limit, last));
        assert!(!s.stuck());
    }

    /// Below the limit, or at it through page cache that a streaming read recycles (no major
    /// faults, or plenty of reclaimable cache), a job is not stuck.
    #[test]
    fn a_job_that_streams_or_sits_below_its_limit_is_not_stuck() {
        let limit = 256 * MIB;
        let t0 = Instant::now();
        type Case = (&'static str, fn(u64) -> MemorySample);
        let cases: [Case; 3] = [
            ("page cache recycled", |i| {
                sample(256 * MIB, 120 * MIB, 10 + i, 100 + i)
            }),
            ("no major faults", |i| {
                sample(256 * MIB, 2 * MIB, 10 + i, 100)
            }),
            ("limit not hit", |i| sample(200 * MIB, MIB, 10, 100 + i)),
        ];
        for (what, f) in cases {
            let mut s = StuckAtLimit::default();
            for i in 0..40 {
                assert!(
                    !s.observe(t0 + Duration::from_millis(25 * i), limit, f(i)),
                    "{what}"
                );
            }
        }
        assert!(!StuckAtLimit::near(limit, 200 * MIB));
        assert!(StuckAtLimit::near(limit, 250 * MIB));
    }

    /// Kernels whose v1 memory.failcnt stays 0 at the limit: a usage within a few pages of it
    /// counts as at the limit.
    #[test]
    fn a_job_at_its_limit_is_stuck_without_counted_failures() {
        let limit = 128 * MIB;
        let t0 = Instant::now();
        let mut s = StuckAtLimit::default();
        let stuck = (0..20).any(|i| {
            s.observe(
                t0 + Duration::from_millis(25 * i),
                limit,
                sample(limit - 8192, 4 * MIB, 0, 100 + 6 * i),
            )
        });
        assert!(stuck);
        // 1 MiB below the limit with no counted failure is not at it.
        let mut s = StuckAtLimit::default();
        assert!(!(0..20).any(|i| {
            s.observe(
                t0 + Duration::from_millis(25 * i),
                limit,
                sample(limit - MIB, 4 * MIB, 0, 100 + 6 * i),
            )
        }));
    }

    #[test]
    fn samples_are_spaced() {
        let mut s = StuckAtLimit::default();
        let t0 = Instant::now();
        assert!(s.due(t0));
        assert!(!s.due(t0 + Duration::from_millis(10)));
        assert!(s.due(t0 + Duration::from_millis(26)));
    }

    #[test]
    fn a_stdin_gauge_wakes_its_writer() {
        let g = StdinGauge::default();
        g.add(100);
        assert!(!g.wait_below(50, Duration::from_millis(10)));
        let reader = g.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            reader.sub(60);
        });
        assert!(g.wait_below(50, Duration::from_secs(10)));
        t.join().unwrap();
        assert_eq!(g.pending(), 40);
        g.sub(1000);
        assert_eq!(g.pending(), 0, "never below zero");
    }

    #[test]
    fn what_the_writable_layer_holds_is_taken_off_the_limit() {
        assert_eq!(memory_left(256 << 20, 0), 256 << 20);
        assert_eq!(memory_left(256 << 20, 160 << 20), 96 << 20);
        assert_eq!(memory_left(256 << 20, 1 << 30), 1 << 20, "a floor of 1 MiB");
    }
}
