//! Keeping slow kernel work off a job's critical path.
//!
//! * [`Pool`]: a few pre-spawned helpers (a job's init, see `helper.rs`), each already inside its
//!   own fresh cgroup and namespaces, waiting for a spec. On cgroup v1, joining a cgroup
//!   (`cgroup.procs` write) waits for an RCU grace period (~5–13 ms here) unless another
//!   migration happened just before; spawning ahead of time moves that wait (and the namespace
//!   creation) out of the job's latency. Limits are written when a job takes the helper, before
//!   the spec is sent, so nothing untrusted ever runs unlimited.
//! * [`Zygote`]: one long-lived `piston-sandbox --zygote` that forks each helper on request, so
//!   that a helper costs a fork instead of an exec (dynamic linking, the Rust runtime's start-up:
//!   about 1 ms of CPU per job on the machines we measured). One that dies or misbehaves is
//!   replaced.
//! * [`Janitor`]: tears finished stages down in the background (reap the helper — whose exit may
//!   still be unmounting its namespace —, sweep and remove the cgroup, unmount the job tmpfs,
//!   release the uid), in order for each job, several jobs at once. [`Janitor::flush`] waits for
//!   everything queued so far.

use std::any::Any;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::cgroup::{Cgroups, JobCgroup};
use crate::error::RunnerError;
use crate::spec::CgroupJoin;
use crate::sys;

static HELPER_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A spawned helper, inside its cgroup (or on its way in), waiting for its spec on fd 3.
#[derive(Debug)]
pub(crate) struct Helper {
    pub pid: sys::Pid,
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub spec: File,
    pub report: OwnedFd,
    pub cgroup: JobCgroup,
}

impl Helper {
    pub fn spawn(
        path: &Path,
        cgroups: &Cgroups,
        zygote: &ZygoteSlot,
    ) -> Result<Helper, RunnerError> {
        let name = format!(
            "h-{}-{}",
            std::process::id(),
            HELPER_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let cgroup = cgroups.create_job(&name)?;
        match Self::spawn_in(path, &cgroup, zygote) {
            Ok((pid, stdin, stdout, stderr, spec, report)) => Ok(Helper {
                pid,
                stdin,
                stdout,
                stderr,
                spec,
                report,
                cgroup,
            }),
            Err(e) => {
                cgroup.dispose();
                Err(e)
            }
        }
    }

    /// Has the zygote fork the job's init and sends it the cgroup to join: (pid, stdin, stdout,
    /// stderr, spec, report).
    #[allow(clippy::type_complexity)]
    fn spawn_in(
        path: &Path,
        cgroup: &JobCgroup,
        zygote: &ZygoteSlot,
    ) -> Result<(sys::Pid, OwnedFd, OwnedFd, OwnedFd, File, OwnedFd), RunnerError> {
        let err = |e: io::Error| RunnerError::Spawn {
            path: path.to_path_buf(),
            source: e,
        };
        let join = CgroupJoin {
            procs: cgroup
                .procs_files()
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
        };
        let (in_r, in_w) = sys::pipe().map_err(err)?;
        let (out_r, out_w) = sys::pipe().map_err(err)?;
        let (err_r, err_w) = sys::pipe().map_err(err)?;
        let (spec_r, spec_w) = sys::pipe().map_err(err)?;
        let (rep_r, rep_w) = sys::pipe().map_err(err)?;
        // v2: init is born in its cgroup (CLONE_INTO_CGROUP), so the zygote gets the directory.
        let dir = cgroup
            .v2_dir()
            .map(|d| sys::open_dir_path(&d.to_string_lossy()))
            .transpose()
            .map_err(err)?;
        let fds: Vec<RawFd> = [&in_r, &out_w, &err_w, &spec_r, &rep_w]
            .into_iter()
            .chain(dir.as_ref())
            .map(|fd| fd.as_raw_fd())
            .collect();
        let pid = zygote.fork(path, &fds).map_err(err)?;
        drop((in_r, out_w, err_w, spec_r, rep_w, dir));
        let mut spec = File::from(spec_w);
        let mut line = serde_json::to_vec(&join).map_err(|e| err(io::Error::other(e)))?;
        line.push(b'\n');
        if let Err(e) = spec.write_all(&line) {
            sys::kill_and_reap(pid);
            return Err(err(e));
        }
        Ok((pid, in_w, out_r, err_r, spec, rep_r))
    }

    /// Stops an unused helper and removes its cgroup. Closing the spec pipe makes its init
    /// exit (SIGKILLed should it not within two seconds), and we reap it.
    fn discard(self) {
        let Helper {
            pid, spec, cgroup, ..
        } = self;
        drop(spec);
        sys::reap_within(pid, std::time::Duration::from_secs(2));
        cgroup.dispose();
    }
}

struct PoolState {
    /// Oldest first: the oldest has most likely finished joining its cgroup.
    ready: VecDeque<Helper>,
    stop: bool,
}

struct PoolInner {
    path: PathBuf,
    cgroups: Cgroups,
    zygote: ZygoteSlot,
    size: usize,
    state: Mutex<PoolState>,
    cv: Condvar,
}

/// Pre-spawned helpers (see the module docs).
pub(crate) struct Pool {
    inner: Arc<PoolInner>,
    filler: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.inner.size)
            .finish()
    }
}

impl Pool {
    pub fn new(path: PathBuf, cgroups: Cgroups, size: usize) -> Pool {
        let inner = Arc::new(PoolInner {
            path,
            cgroups,
            zygote: ZygoteSlot::default(),
            size,
            state: Mutex::new(PoolState {
                ready: VecDeque::new(),
                stop: false,
            }),
            cv: Condvar::new(),
        });
        let filler = (size > 0).then(|| {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name("piston-helper-pool".into())
                .spawn(move || fill(&inner))
                .ok()
        });
        Pool {
            inner,
            filler: filler.flatten(),
        }
    }

    /// A helper for a new stage: a pre-spawned one when available, else a fresh one.
    pub fn get(&self) -> Result<Helper, RunnerError> {
        let warm = {
            let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            st.ready.pop_front()
        };
        self.inner.cv.notify_all();
        match warm {
            Some(h) => Ok(h),
            None => Helper::spawn(&self.inner.path, &self.inner.cgroups, &self.inner.zygote),
        }
    }
}

/// How long the pool waits before replacing a helper a stage took, while it still holds at
/// least half of its helpers (see [`fill`]).
const REFILL_DELAY: Duration = Duration::from_millis(20);

fn fill(inner: &PoolInner) {
    let plenty = |st: &PoolState| !st.stop && st.ready.len() * 2 >= inner.size;
    loop {
        {
            let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            while !st.stop && st.ready.len() >= inner.size {
                st = inner.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            // A stage has just taken a helper and is setting its job up. Making the next helper
            // at once (new namespaces and, on cgroup v1, a migration that holds back every fork
            // on the host for an RCU grace period) slowed that job down by about 1 ms. Unless
            // the pool runs low, give the job a head start.
            if plenty(&st) {
                st = inner
                    .cv
                    .wait_timeout_while(st, REFILL_DELAY, |st| plenty(st))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if st.stop {
                return;
            }
        }
        match Helper::spawn(&inner.path, &inner.cgroups, &inner.zygote) {
            Ok(h) => {
                let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
                if st.stop {
                    drop(st);
                    h.discard();
                    return;
                }
                st.ready.push_back(h);
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not pre-spawn a sandbox helper");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stop = true;
        self.inner.cv.notify_all();
        if let Some(t) = self.filler.take() {
            let _ = t.join();
        }
        let ready = std::mem::take(
            &mut self
                .inner
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .ready,
        );
        for h in ready {
            h.discard();
        }
    }
}

/// A running `piston-sandbox --zygote` (see `helper::zygote_main` for its side).
#[derive(Debug)]
pub(crate) struct Zygote {
    pid: sys::Pid,
    sock: File,
}

/// How long a zygote may take to answer a fork request before it is given up.
const ZYGOTE_TIMEOUT: Duration = Duration::from_secs(5);

impl Zygote {
    fn start(path: &Path) -> io::Result<Zygote> {
        let (ours, theirs) = sys::seqpacket_pair()?;
        sys::set_recv_timeout(ours.as_raw_fd(), ZYGOTE_TIMEOUT)?;
        let theirs = sys::dup_high(&theirs)?;
        let null = sys::dup_high(&OwnedFd::from(File::open("/dev/null")?))?;
        let (null, theirs) = (null.as_raw_fd(), theirs.as_raw_fd());
        let cpath = sys::cstring(&path.to_string_lossy())?;
        let argv = [cpath.clone(), sys::cstring(crate::helper::ZYGOTE_ARG)?];
        let pid = sys::spawn(
            &cpath,
            &argv,
            &[],
            &[(null, 0), (null, 1), (null, 2), (theirs, 3)],
        )?;
        Ok(Zygote {
            pid,
            sock: File::from(ours),
        })
    }

    /// A new job init with `fds` as its 0..=4 (and a v2 cgroup directory as a sixth); its pid.
    /// The init is our child (`CLONE_PARENT`).
    fn fork(&mut self, fds: &[RawFd]) -> Result<sys::Pid, ZygoteError> {
        // One datagram: it either reaches the zygote whole or not at all.
        sys::send_with_fds(self.sock.as_raw_fd(), &[1], fds).map_err(ZygoteError::Unsent)?;
        let mut reply = [0u8; 4];
        self.sock
            .read_exact(&mut reply)
            .map_err(ZygoteError::NoAnswer)?;
        match i32::from_ne_bytes(reply) {
            pid if pid > 0 => Ok(pid),
            errno => Err(ZygoteError::Refused(io::Error::from_raw_os_error(-errno))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ZygoteError {
    #[error("could not reach the zygote: {0}")]
    Unsent(io::Error),
    /// The zygote may or may not have forked an init: the request must not be repeated.
    #[error("no answer from the zygote: {0}")]
    NoAnswer(io::Error),
    #[error("the zygote could not fork: {0}")]
    Refused(io::Error),
}

impl From<ZygoteError> for io::Error {
    fn from(e: ZygoteError) -> io::Error {
        let kind = match &e {
            ZygoteError::Unsent(e) | ZygoteError::NoAnswer(e) | ZygoteError::Refused(e) => e.kind(),
        };
        io::Error::new(kind, e)
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        // It holds nothing of any job's: no need to let it finish anything.
        sys::kill_and_reap(self.pid);
    }
}

/// The pool's zygote, started on first use. One that dies or fails is replaced: a request it
/// never received, or refused, is tried once more with a new one.
#[derive(Debug, Default)]
pub(crate) struct ZygoteSlot(Mutex<Option<Zygote>>);

impl ZygoteSlot {
    /// Starts a job's init (the helper binary at `path`) with `fds` as its 0..=4.
    pub fn fork(&self, path: &Path, fds: &[RawFd]) -> io::Result<sys::Pid> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut retried = false;
        loop {
            let mut zygote = match slot.take() {
                Some(z) => z,
                None => Zygote::start(path)?,
            };
            match zygote.fork(fds) {
                Ok(pid) => {
                    *slot = Some(zygote);
                    return Ok(pid);
                }
                // The failed zygote is dropped (killed and reaped) here.
                Err(e @ (ZygoteError::Unsent(_) | ZygoteError::Refused(_))) if !retried => {
                    tracing::warn!(error = %e, "sandbox zygote failed; starting a new one");
                    retried = true;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Work for the janitor.
pub(crate) enum Task {
    /// A finished stage: reap its helper, sweep and remove its cgroup.
    Stage {
        pid: sys::Pid,
        cgroup: JobCgroup,
    },
    /// Anything whose `Drop` does the clean-up (a job directory, a uid lease).
    Drop(Box<dyn Any + Send>),
    Flush(mpsc::Sender<()>),
}

/// Background teardown (see the module docs): a few lanes, each a thread that works through its
/// tasks in submission order. A job's tasks all go to one lane ([`Janitor::for_job`]), so its
/// stages are reaped before its directory and uid go; different jobs are torn down in
/// parallel, since most of a teardown is waiting on the kernel (a helper's exit behind its
/// namespaces, cgroup removal), and one lane fell behind a busy server: the uids of finished jobs
/// piled up until new jobs found none.
#[derive(Debug, Clone)]
pub(crate) struct Janitor {
    lanes: Arc<Vec<mpsc::Sender<Task>>>,
    lane: usize,
}

/// Teardown lanes.
const JANITOR_LANES: usize = 4;

/// A finished stage: reap its helper (whose init may still be tearing its namespaces down),
/// then its cgroup.
fn tear_down_stage(pid: sys::Pid, cgroup: JobCgroup) {
    let _ = sys::wait(pid, false);
    cgroup.dispose();
}

fn janitor_lane(rx: mpsc::Receiver<Task>) {
    for t in rx {
        match t {
            Task::Stage { pid, cgroup } => tear_down_stage(pid, cgroup),
            Task::Drop(b) => drop(b),
            Task::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

impl Janitor {
    pub fn start() -> Result<Janitor, RunnerError> {
        let mut lanes = Vec::with_capacity(JANITOR_LANES);
        for i in 0..JANITOR_LANES {
            let (tx, rx) = mpsc::channel::<Task>();
            std::thread::Builder::new()
                .name(format!("piston-janitor-{i}"))
                .spawn(move || janitor_lane(rx))
                .map_err(|e| RunnerError::io("spawn", "janitor thread", e))?;
            lanes.push(tx);
        }
        Ok(Janitor {
            lanes: Arc::new(lanes),
            lane: 0,
        })
    }

    /// The janitor for the job numbered `seq`: every task of a job goes to the same lane.
    pub fn for_job(&self, seq: u64) -> Janitor {
        Janitor {
            lanes: Arc::clone(&self.lanes),
            lane: (seq % self.lanes.len() as u64) as usize,
        }
    }

    pub fn submit(&self, t: Task) {
        // The janitor is gone (cannot happen while a sender exists): clean up inline.
        if let Err(mpsc::SendError(Task::Stage { pid, cgroup })) = self.lanes[self.lane].send(t) {
            tear_down_stage(pid, cgroup);
        }
    }

    /// Waits until everything submitted before this call is cleaned up, in every lane.
    pub fn flush(&self) {
        let waits: Vec<mpsc::Receiver<()>> = self
            .lanes
            .iter()
            .filter_map(|lane| {
                let (tx, rx) = mpsc::channel();
                lane.send(Task::Flush(tx)).is_ok().then_some(rx)
            })
            .collect();
        for rx in waits {
            let _ = rx.recv();
        }
    }
}
