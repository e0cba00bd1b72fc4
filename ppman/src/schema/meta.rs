//! A package's own metadata: `package.toml` in its build directory, copied into its image at
//! `/piston/packages/<name>/<version>/package.toml`.

use std::collections::BTreeMap;

use semver::Version;
use serde::{Deserialize, Serialize};

use crate::version::Selector;

/// File name of the metadata inside a build directory and inside an installed package.
pub const META_FILE: &str = "package.toml";

/// Where a package's own files (`run`, `compile`, `environment`, metadata) live inside its image.
pub fn package_dir(name: &str, version: &Version) -> String {
    format!("/piston/packages/{name}/{version}")
}

/// What a build directory declares about its package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageMeta {
    /// Package name: lowercase letters, digits, `-`, `_`, `+`, `.`.
    pub name: String,
    /// Exact upstream version, as semver.
    pub version: Version,
    #[serde(default)]
    pub author: String,
    #[serde(default)]
    pub description: String,
    /// Languages this package provides. Empty for pure layers such as the base system.
    #[serde(default)]
    pub provides: Vec<Provide>,
    /// Other packages whose layers this one is built and run on, as name → version selector.
    #[serde(default)]
    pub dependencies: BTreeMap<String, String>,
    /// Limit overrides for every language of the package (Piston's `limit_overrides`).
    #[serde(default)]
    pub limit_overrides: LimitOverrides,
    /// Default cache policy for jobs of this package; absent means the language default
    /// (`compiled` for compiled languages, `none` otherwise).
    #[serde(default)]
    pub cache: Option<CachePolicy>,
}

/// One language a package provides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provide {
    pub language: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub limit_overrides: LimitOverrides,
}

/// Piston's per-runtime limit overrides, by Piston's key names (`run_timeout`, `max_process_count`, …).
pub type LimitOverrides = BTreeMap<String, i64>;

/// The limit names Piston accepts in `limit_overrides`.
pub const LIMIT_KEYS: &[&str] = &[
    "max_process_count",
    "max_open_files",
    "max_file_size",
    "compile_memory_limit",
    "run_memory_limit",
    "compile_timeout",
    "run_timeout",
    "compile_cpu_time",
    "run_cpu_time",
    "output_max_size",
];

/// The three caching levels of the v3 design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CachePolicy {
    /// Nothing is cached.
    None,
    /// Compiled artefacts are cached by source digest.
    Compiled,
    /// Whole results are cached by request digest.
    Output,
}

/// Why a metadata file was refused.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata is not valid TOML for a package")]
    Parse(#[source] toml::de::Error),
    #[error("invalid package name {0:?}: use lowercase letters, digits, '-', '_', '+', '.'")]
    Name(String),
    #[error("dependency {name:?} has an invalid version selector")]
    Dependency {
        name: String,
        #[source]
        source: crate::version::SelectorError,
    },
    #[error("unknown limit override {0:?}; known: {known}", known = LIMIT_KEYS.join(", "))]
    LimitKey(String),
    #[error(
        "limit override {key} = {value} would lift the limit: a package may only set a positive \
         number (the operator decides whether a limit is lifted)"
    )]
    LimitValue { key: String, value: i64 },
    #[error("package {0} depends on itself")]
    SelfDependency(String),
}

impl PackageMeta {
    /// Parses and validates `package.toml` text.
    pub fn parse(text: &str) -> Result<Self, MetaError> {
        let meta: Self = toml::from_str(text).map_err(MetaError::Parse)?;
        meta.validate()?;
        Ok(meta)
    }

    /// Checks names, selectors and limit keys.
    pub fn validate(&self) -> Result<(), MetaError> {
        check_name(&self.name)?;
        for (dep, selector) in &self.dependencies {
            check_name(dep)?;
            if dep == &self.name {
                return Err(MetaError::SelfDependency(self.name.clone()));
            }
            Selector::parse(selector).map_err(|source| MetaError::Dependency {
                name: dep.clone(),
                source,
            })?;
        }
        check_limit_overrides(
            self.provides
                .iter()
                .flat_map(|p| &p.limit_overrides)
                .chain(&self.limit_overrides),
        )
    }

    /// Serialises to TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("package metadata always serialises")
    }
}

/// Checks a package's limit overrides (package-wide and per language): known keys, and values
/// that keep the limit in force. Piston reads `-1` as "no limit" for memory and its `||` chain
/// reads `0` as "not set"; a negative timeout or output size ends up as no limit in the runner. So
/// a package, which anyone who publishes a repository writes, may only give positive numbers:
/// lifting a limit is the operator's choice alone (`PISTON_LIMIT_OVERRIDES`).
pub fn check_limit_overrides<'a>(
    overrides: impl IntoIterator<Item = (&'a String, &'a i64)>,
) -> Result<(), MetaError> {
    for (key, value) in overrides {
        if !LIMIT_KEYS.contains(&key.as_str()) {
            return Err(MetaError::LimitKey(key.clone()));
        }
        if *value <= 0 {
            return Err(MetaError::LimitValue {
                key: key.clone(),
                value: *value,
            });
        }
    }
    Ok(())
}

/// Package and language names: non-empty, lowercase ASCII letters, digits and `-_+.`, not starting with `.`.
pub fn check_name(name: &str) -> Result<(), MetaError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_+.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(MetaError::Name(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PYTHON: &str = r#"
name = "python"
version = "3.11.2"
author = "Debian"
[dependencies]
base = "12.x"
[[provides]]
language = "python"
aliases = ["py", "python3"]
[limit_overrides]
run_timeout = 5000
"#;

    #[test]
    fn round_trip() {
        let meta = PackageMeta::parse(PYTHON).unwrap();
        assert_eq!(meta.provides[0].aliases, ["py", "python3"]);
        assert_eq!(PackageMeta::parse(&meta.to_toml()).unwrap(), meta);
    }

    #[test]
    fn refusals() {
        let bad_key = PYTHON.replace("run_timeout", "run_timeuot");
        assert!(
            matches!(PackageMeta::parse(&bad_key), Err(MetaError::LimitKey(k)) if k == "run_timeuot")
        );
        for lifted in ["-1", "0"] {
            let text = PYTHON.replace("run_timeout = 5000", &format!("run_timeout = {lifted}"));
            assert!(
                matches!(PackageMeta::parse(&text), Err(MetaError::LimitValue { key, .. }) if key == "run_timeout"),
                "run_timeout = {lifted} accepted"
            );
        }
        let bad_name = PYTHON.replace("name = \"python\"", "name = \"Py thon\"");
        assert!(matches!(
            PackageMeta::parse(&bad_name),
            Err(MetaError::Name(_))
        ));
        let bad_dep = PYTHON.replace("12.x", "twelve");
        assert!(matches!(
            PackageMeta::parse(&bad_dep),
            Err(MetaError::Dependency { .. })
        ));
        let unknown_field = format!("foo = 1\n{PYTHON}");
        assert!(matches!(
            PackageMeta::parse(&unknown_field),
            Err(MetaError::Parse(_))
        ));
        let bad_version = PYTHON.replace("3.11.2", "3.11");
        assert!(matches!(
            PackageMeta::parse(&bad_version),
            Err(MetaError::Parse(_))
        ));
    }
}
