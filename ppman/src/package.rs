//! Package identity: one exact version of a package, and the order its layers stack in.
//!
//! Shared by the state file, resolution and the manager, so it depends on none of them.

use std::collections::BTreeMap;
use std::fmt;

use semver::Version;
use serde::{Deserialize, Serialize};

/// One exact package version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PackageId {
    pub name: String,
    pub version: Version,
}

impl PackageId {
    pub fn new(name: impl Into<String>, version: Version) -> Self {
        Self {
            name: name.into(),
            version,
        }
    }
}

impl fmt::Display for PackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.version)
    }
}

/// The layer stack of `top`, top-most first, in the order shared with repo-builder
/// ([`crate::schema::layer_order`]): the package on top, every package above its own dependencies,
/// the base system at the bottom. A cycle is returned as `Err(chain)`.
pub fn stack_order<'d, F>(top: &PackageId, deps: F) -> Result<Vec<PackageId>, Vec<PackageId>>
where
    F: Fn(&PackageId) -> &'d [PackageId],
{
    let key = |id: &PackageId| format!("{}@{}", id.name, id.version);
    let mut ids: BTreeMap<String, PackageId> = BTreeMap::new();
    ids.insert(key(top), top.clone());
    let order = crate::schema::layer_order(&key(top), |node| {
        let id = ids[node].clone();
        deps(&id)
            .iter()
            .map(|d| {
                let k = key(d);
                ids.insert(k.clone(), d.clone());
                k
            })
            .collect()
    });
    let lookup = |k: &String| {
        let (name, version) = k.split_once('@').expect("keys are name@version");
        PackageId::new(name, version.parse().expect("keys hold versions"))
    };
    match order {
        Ok(keys) => Ok(keys.iter().map(lookup).collect()),
        Err(cycle) => Err(cycle.0.iter().map(lookup).collect()),
    }
}
