//! The repository format, shared by the writer (`repo-builder`) and the reader (`ppman`):
//! package metadata ([`meta`]) and the signed index ([`index`]).

pub mod index;
pub mod layers;
pub mod meta;

pub use index::{
    BuildFileRef, INDEX_FILE, INDEX_SIG_FILE, Index, IndexEntry, IndexError, SCHEMA_VERSION,
    TrustedKey, decode_signature,
};
pub use layers::{CycleError, layer_order};
pub use meta::{
    CachePolicy, LIMIT_KEYS, LimitOverrides, META_FILE, MetaError, PackageMeta, Provide,
    check_limit_overrides, package_dir,
};
