//! The job layer: what a "job" is, between the sandbox and its users.
//!
//! It is the one place where the package conventions of `docs/package-format.md` live: a
//! runtime is a language of an installed ppman package ([`Runtimes`] resolves a language and a
//! version selector to one), its package directory holds `environment`, `compile` and `run`
//! ([`PackageInfo`], read once in a sandbox and cached; a plain `exec` script is started
//! directly, [`StageScript`]), and a job is a compile stage (when the package has one) then a
//! run stage in one [`runner::Sandbox`] ([`Jobs::run`], or interactive with [`Jobs::start`]).
//! The api server, `repo-builder test` and the benchmarks run jobs through it; the runner
//! below knows only layers, processes and limits.

mod error;
mod job;
mod package;
mod runtime;
mod script;

pub use error::JobError;
pub use job::{
    Event, JobFile, JobHandle, JobResult, JobSpec, Jobs, JobsConfig, Stage, compile_limits,
};
pub use runtime::{JobInput, Runtime, Runtimes, find_runtime, runtimes_of};
pub use script::{
    ExecScript, PackageInfo, StageScript, StageShell, is_plain_shell_word, package_info_command,
    parse_package_info,
};
