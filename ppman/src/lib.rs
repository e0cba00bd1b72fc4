//! ppman, the Piston package manager.
//!
//! It syncs signed repository indexes ([`schema`]), resolves version selectors the way Piston's
//! clients expect ([`version`]) and whole dependency closures ([`resolve`]), downloads images into a
//! verified content-addressed store ([`store`]), and makes every installed runtime a read-only tree:
//! each squashfs image mounted once, each runtime an overlay of its image over its dependencies
//! ([`mounts`]). The state file ([`state`]) is the only commit point; mounts are derived from it.
//! [`PackageManager`] is the entry point.

pub mod digest;
pub mod error;
pub mod fsutil;
pub mod manager;
pub mod mounts;
mod package;
pub mod progress;
pub mod resolve;
pub mod schema;
pub mod source;
pub mod state;
pub mod store;
pub mod version;

pub use error::{Error, Result};
pub use manager::{
    ALL_REPOS, AvailablePackage, GcReport, InstalledPackage, PackageInfo, PackageManager, RepoInfo,
    SyncReport, VerifyProblem,
};
pub use mounts::{Mounter, ReconcileReport, SystemMounter};
pub use package::PackageId;
pub use progress::{NoProgress, Progress};
pub use version::Selector;
