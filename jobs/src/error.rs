//! The job layer's error type.

use std::path::PathBuf;

/// Why a job could not be run. Problems *of the job* (a failed compile, a crash, a limit) are
/// not errors: they come back in its [`crate::JobResult`].
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the sandbox failed")]
    Sandbox(#[from] runner::RunnerError),
    #[error("the environment of {} could not be read: {message}", package_dir.display())]
    PackageUnreadable {
        package_dir: PathBuf,
        message: String,
    },
    #[error("cannot create the job's wake pipe")]
    WakePipe(#[source] std::io::Error),
    #[error("cannot start the job's thread")]
    Thread(#[source] std::io::Error),
    #[error("the job has ended")]
    Ended,
    #[error("{language}-{version} runtime is unknown")]
    UnknownRuntime { language: String, version: String },
    #[error("{package}-{version} is no longer installed")]
    NoLongerInstalled {
        package: String,
        version: semver::Version,
    },
    #[error("cannot list the installed packages")]
    Installed(#[source] ppman::Error),
}
