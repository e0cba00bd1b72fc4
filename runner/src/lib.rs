//! The runner: executes untrusted code in a sandbox and reports what it did.
//!
//! It receives a runtime's mounted read-only layers (from ppman), the submitted files and the
//! limits, and returns Piston-compatible results. It knows nothing about packages or HTTP.
//!
//! * [`Runner`] — set-up (cgroups, uid pool, helper), [`Runner::run_job`], [`Runner::start_job`].
//! * [`process`] — one sandboxed process: spawning the `piston-sandbox` helper, output caps,
//!   wall/CPU limits, live figures; [`Program`] is its interactive face.
//! * [`cgroup`] — cgroup v1/v2 detection and job cgroups.
//! * `helper` — what runs inside the helper binary: namespaces, mounts, privileges, exec.
//! * [`seccomp`] — the deny list.
//!
//! `docs/sandbox.md` lists every isolation step in the order it happens.

pub mod bench;
pub mod cgroup;
mod error;
mod helper;
mod job;
mod pool;
pub mod process;
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
pub use types::{JobResult, KillReason, Limits, StageResult, Status, signal_name, signal_number};
