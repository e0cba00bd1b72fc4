//! ppman, the Piston package manager.
//!
//! It reads signed repository indexes ([`schema`]), resolves version selectors the way Piston's
//! clients expect ([`version`]), and installs runtimes as verified squashfs images stacked with
//! overlayfs.

pub mod digest;
pub mod schema;
pub mod version;

pub use version::Selector;
