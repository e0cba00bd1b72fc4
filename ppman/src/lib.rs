//! ppman, the Piston package manager. It syncs signed repository indexes, resolves version
//! selectors the way Piston's clients expect and whole dependency closures, downloads images into
//! a verified content-addressed store, and makes every installed runtime a read-only tree: each
//! squashfs image mounted once, each runtime an overlay of its image over its dependencies. The
//! state file is the only commit point; mounts are derived from it. It knows nothing of sandboxes.
//!
//! * [`PackageManager`] ([`manager`]) — the entry point: repositories, sync, install, uninstall,
//!   gc, verify, reconcile, and the installed trees ([`InstalledPackage`]) callers run on.
//! * [`schema`] — the repository format (metadata, signed index, layer order), shared with
//!   `repo-builder`, which writes and signs what ppman verifies and reads.
//! * [`version`] — [`Selector`]s; [`resolve`] — dependency closures and [`resolve::ResolveError`].
//! * [`mounts`] — squashfs and overlay mounts behind [`Mounter`], repaired by reconcile.
//! * [`digest`] — sha256 of bytes, readers and files.
//! * `package` — [`PackageId`] and the layer stack order; `state` — the state file ([`State`]);
//!   `store` — verified downloads from a `source`; `fsutil` — atomic writes and locks;
//!   `progress` — the [`Progress`] trait; `error` — [`Error`].

pub mod digest;
mod error;
mod fsutil;
pub mod manager;
pub mod mounts;
mod package;
mod progress;
pub mod resolve;
pub mod schema;
mod source;
mod state;
mod store;
pub mod version;

pub use error::{Error, Result};
pub use manager::{
    ALL_REPOS, AvailablePackage, GcReport, InstalledPackage, PackageInfo, PackageManager, RepoInfo,
    SyncReport, VerifyProblem,
};
pub use mounts::{Mounter, ReconcileReport, SystemMounter};
pub use package::PackageId;
pub use progress::{NoProgress, Progress};
pub use state::{CachedIndex, InstalledRecord, RepoConfig, State};
pub use version::Selector;
