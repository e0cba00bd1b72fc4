//! The runner: the sandbox alone. It runs processes on a stack of read-only layers (paths) with
//! one writable layer per [`Sandbox`], under limits, and reports what each did: output, exit,
//! verdict, live and final usage. It knows nothing of runtimes, languages or HTTP (the `jobs`
//! crate puts Piston's conventions on top). Synchronous; threads inside (a helper pool
//! filler and a teardown janitor per [`Runner`]).
//!
//! * [`Runner`] — set-up (cgroups, uid pool, helper pool); [`Runner::sandbox`] makes a
//!   [`Sandbox`] whose processes run one after another on the same writable layer
//!   ([`Sandbox::run`], [`Sandbox::run_last`], [`Sandbox::start`] → [`Running`]);
//!   [`Runner::run_command`] / [`Runner::start_command`] are the one-process forms ([`Program`]:
//!   write, read_line, peek, close).
//! * [`process`] — one sandboxed process: output caps, wall/CPU limits, live figures.
//! * [`cgroup`] — cgroup v1/v2 detection and job cgroups (host roots are parameters).
//! * `helper` — what runs inside the `piston-sandbox` binary: namespaces, mounts, privileges,
//!   exec; `pool` — pre-spawned helpers and background teardown; `sys` — the only `unsafe`.
//! * [`seccomp`] — the deny list. [`mod@bench`] — start-up cost figures.
//!
//! `docs/sandbox.md` lists every isolation step in the order it happens.

pub mod bench;
pub mod cgroup;
mod error;
mod helper;
pub mod ids;
mod job;
mod pool;
pub mod process;
pub mod seccomp;
mod spec;
mod stale;
mod sys;
mod types;

pub use cgroup::{CgroupConfig, CgroupVersion, SharedLimits};
pub use error::RunnerError;
pub use helper::helper_main;
pub use job::{
    BOX_DIR, BoxFile, DEFAULT_PATH, Program, Runner, RunnerConfig, Running, Sandbox,
    check_file_name,
};
pub use process::{ProcessEvent, ProcessSpec, ResourceUsage, StdinGauge, Stream};
pub use types::{KillReason, Limits, StageResult, Status, signal_name, signal_number};
