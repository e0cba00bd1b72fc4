//! Everything that can go wrong, with the values a user needs to act on it.

use std::path::PathBuf;

use crate::resolve::ResolveError;
use crate::schema::IndexError;
use crate::version::SelectorError;

/// A ppman failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot download {url}")]
    Http {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("cannot read {url}")]
    Read {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("index of repository {repo} ({url}) refused")]
    Index {
        repo: String,
        url: String,
        #[source]
        source: IndexError,
    },
    #[error("cached index of repository {repo} ({}) is unusable; run `ppman sync {repo}`", path.display())]
    CachedIndex {
        repo: String,
        path: PathBuf,
        #[source]
        source: IndexError,
    },
    #[error("invalid public key for repository {repo}")]
    Key {
        repo: String,
        #[source]
        source: IndexError,
    },
    #[error("no repository named {0:?}")]
    UnknownRepo(String),
    #[error("repository {0:?} already exists")]
    RepoExists(String),
    #[error(
        "invalid repository name {0:?}: use lowercase letters, digits, '-', '_', '+', '.' ('all' is reserved)"
    )]
    RepoName(String),
    #[error("no repository is configured")]
    NoRepos,
    #[error("repository {0} was never synced; run `ppman sync {0}`")]
    NotSynced(String),
    #[error("state file {} is corrupt", path.display())]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("state file {} has schema {found}; this ppman reads schema {known}", path.display())]
    StateSchema {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error(transparent)]
    Selector(#[from] SelectorError),
    #[error(transparent)]
    Resolve(Box<ResolveError>),
    #[error("no installed version of {name} matches {selector:?}")]
    NotInstalled { name: String, selector: String },
    #[error("{package} is needed by {}; uninstall those first or pass --cascade", dependents.join(", "))]
    HasDependents {
        package: String,
        dependents: Vec<String>,
    },
    #[error("{url}: sha256 mismatch: expected {expected}, got {actual}")]
    Digest {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{url}: size mismatch: expected {expected} bytes, got {actual}")]
    Size {
        url: String,
        expected: u64,
        actual: u64,
    },
    #[error("{url}: larger than the {limit} bytes the index declares; download cut off")]
    Oversize { url: String, limit: u64 },
    #[error("{url}: image signature refused")]
    ImageSignature {
        url: String,
        #[source]
        source: IndexError,
    },
    #[error("cannot mount {what} on {}", target.display())]
    Mount {
        what: String,
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot unmount {}", target.display())]
    Unmount {
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }

    /// Whether the user can fix this by changing the request (as opposed to a broken host or repository).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Self::Selector(_)
                | Self::Resolve(_)
                | Self::NotInstalled { .. }
                | Self::HasDependents { .. }
                | Self::UnknownRepo(_)
                | Self::RepoExists(_)
                | Self::RepoName(_)
                | Self::NoRepos
                | Self::NotSynced(_)
                | Self::Key { .. }
        )
    }
}

impl From<ResolveError> for Error {
    fn from(e: ResolveError) -> Self {
        Self::Resolve(Box::new(e))
    }
}

/// Result with a ppman [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
