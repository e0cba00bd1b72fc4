//! The runner: executes untrusted code in a sandbox and reports what it did.
//!
//! It receives a runtime's mounted read-only layers (from ppman), the submitted files and the
//! limits, and returns Piston-compatible results. It knows nothing about packages or HTTP.
//! Synchronous; threads inside (a helper pool filler and a teardown janitor per [`Runner`]).
//!
//! * [`Runner`] — set-up (cgroups, uid pool, helper pool), [`Runner::run_job`] (compile then
//!   run), [`Runner::start_job`] (interactive [`JobHandle`] with [`Event`]s),
//!   [`Runner::run_command`] / [`Runner::start_command`] (a raw argv; [`Program`] is seed 004's
//!   Process: write, read_line, peek, close).
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
mod job;
mod pool;
pub mod process;
mod script;
pub mod seccomp;
mod spec;
mod sys;
mod types;

pub use cgroup::{CgroupConfig, CgroupVersion};
pub use error::RunnerError;
pub use helper::helper_main;
pub use job::{
    BOX_DIR, Event, JobFile, JobHandle, JobSpec, Program, Runner, RunnerConfig, Stage,
    check_file_name,
};
pub use process::{ProcessEvent, ProcessSpec, ResourceUsage, Stream};
pub use script::{
    PackageInfo, StageScript, StageShell, is_plain_shell_word, package_info_command,
    parse_package_info,
};
pub use types::{JobResult, KillReason, Limits, StageResult, Status, signal_name, signal_number};
