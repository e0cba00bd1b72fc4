//! The library's error type.

use std::path::PathBuf;

/// Why the runner could not run a job. Problems *of the job* (a crash, a timeout, a failed
/// sandbox set-up step inside the helper) are not errors: they come back as a [`crate::StageResult`].
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("no usable cgroup hierarchy found at {root}")]
    NoCgroups { root: PathBuf },
    #[error("cgroup operation failed on {path}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox helper not found at {path}")]
    HelperMissing { path: PathBuf },
    #[error("the runner must run as root (it mounts, creates namespaces and cgroups)")]
    NotRoot,
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("file name {name:?} is not allowed: {reason}")]
    BadFileName { name: String, reason: &'static str },
    #[error("invalid job: {0}")]
    InvalidJob(String),
    #[error(
        "the sandbox ids uid {uid_min}..={uid_max} / gid {gid_min}..={gid_max} are not free: {user} \
         uses one (a job's uid must belong to nobody else); choose another range"
    )]
    IdsInUse {
        uid_min: u32,
        uid_max: u32,
        gid_min: u32,
        gid_max: u32,
        user: String,
    },
    #[error("no free sandbox uid in {min}..={max} (too many concurrent jobs)")]
    NoFreeUid { min: u32, max: u32 },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not start the sandbox helper {path}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("job handle: {0}")]
    Handle(&'static str),
}

impl RunnerError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RunnerError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
