//! Version selectors with the semantics Piston's clients rely on (npm's `semver.satisfies`).
//!
//! Rust's `semver` reads a bare `15.10.0` as `^15.10.0` and `3.10` as `^3.10`; npm reads them as
//! "exactly 15.10.0" and "3.10.x". Clients send npm-style selectors, so they are translated before
//! parsing: bare versions become exact, `X.Y` becomes `X.Y.*`, `""`/`latest` become `*`, a leading `v`
//! is dropped, space-separated comparators become comma-separated, `a - b` becomes `>=a, <=b`, and
//! `||` unions are kept as a list of alternatives.

use semver::{Version, VersionReq};

/// A parsed selector: the version matches when any alternative matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    text: String,
    alternatives: Vec<VersionReq>,
}

/// A selector that could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("invalid version selector {text:?}")]
pub struct SelectorError {
    text: String,
    #[source]
    source: semver::Error,
}

impl Selector {
    /// Parses an npm-style selector such as `3.x`, `*`, `15.10.0`, `3.10`, `>=3.9 <3.12`, `1 || 2`.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let alternatives = text
            .split("||")
            .map(|part| {
                let translated = translate(part);
                VersionReq::parse(&translated).map_err(|source| SelectorError {
                    text: text.to_owned(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            text: text.to_owned(),
            alternatives,
        })
    }

    /// The selector that matches every release.
    pub fn any() -> Self {
        Self {
            text: "*".to_owned(),
            alternatives: vec![VersionReq::STAR],
        }
    }

    /// Whether `version` satisfies the selector.
    pub fn matches(&self, version: &Version) -> bool {
        self.alternatives.iter().any(|req| req.matches(version))
    }

    /// The highest of `versions` that satisfies the selector (by semver precedence).
    pub fn best<'a, I>(&self, versions: I) -> Option<&'a Version>
    where
        I: IntoIterator<Item = &'a Version>,
    {
        versions
            .into_iter()
            .filter(|v| self.matches(v))
            .max_by(|a, b| a.cmp_precedence(b))
    }

    /// The selector as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Translates one `||`-free npm range into Rust `semver` syntax.
fn translate(part: &str) -> String {
    let part = part.trim();
    if part.is_empty() || part == "latest" {
        return "*".to_owned();
    }
    if let Some((low, high)) = part.split_once(" - ") {
        return format!(">={}, <={}", strip_v(low.trim()), strip_v(high.trim()));
    }
    // Join operators separated from their version by spaces (`>= 3.9`), then split comparators.
    let mut comparators: Vec<String> = Vec::new();
    let mut pending_op = String::new();
    for token in part.split([' ', ',']).filter(|t| !t.is_empty()) {
        if token.chars().all(|c| "<>=~^".contains(c)) {
            pending_op.push_str(token);
            continue;
        }
        let comparator = format!("{}{token}", std::mem::take(&mut pending_op));
        comparators.push(comparator);
    }
    comparators
        .iter()
        .map(|c| exact_if_bare(c))
        .collect::<Vec<_>>()
        .join(", ")
}

fn strip_v(s: &str) -> &str {
    s.strip_prefix('v').unwrap_or(s)
}

fn split_op(s: &str) -> (&str, &str) {
    let idx = s.find(|c: char| !"<>=~^".contains(c)).unwrap_or(s.len());
    s.split_at(idx)
}

/// A comparator without an operator is exact in npm: `1.2.3` means `=1.2.3`, `1.2` means `1.2.*`.
fn exact_if_bare(comparator: &str) -> String {
    let (op, version) = split_op(comparator);
    let version = version.strip_prefix('v').unwrap_or(version);
    if !op.is_empty() {
        return format!("{op}{version}");
    }
    let wildcard = |p: &str| matches!(p, "x" | "X" | "*");
    let parts: Vec<&str> = version.split('.').collect();
    match parts.as_slice() {
        [major] if !wildcard(major) => format!("{major}.*"),
        [major, minor] if !wildcard(major) && !wildcard(minor) => format!("{major}.{minor}.*"),
        [major, minor, patch, ..]
            if !wildcard(major)
                && !wildcard(minor)
                && !wildcard(patch.split(['-', '+']).next().unwrap_or("")) =>
        {
            format!("={version}")
        }
        _ => version.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions() -> Vec<Version> {
        [
            "2.7.18",
            "3.5.10",
            "3.9.4",
            "3.10.0",
            "3.12.0",
            "3.13.0-rc.1",
            "15.10.0",
            "15.11.0",
            "16.3.0",
        ]
        .iter()
        .map(|v| Version::parse(v).unwrap())
        .collect()
    }

    fn best(sel: &str) -> Option<String> {
        let vs = versions();
        Selector::parse(sel)
            .unwrap()
            .best(&vs)
            .map(ToString::to_string)
    }

    #[test]
    fn npm_semantics() {
        assert_eq!(best("3.x").as_deref(), Some("3.12.0"));
        assert_eq!(best("3.X").as_deref(), Some("3.12.0"));
        assert_eq!(best(" 3.x ").as_deref(), Some("3.12.0"));
        assert_eq!(best("3").as_deref(), Some("3.12.0"));
        assert_eq!(
            best("15.10.0").as_deref(),
            Some("15.10.0"),
            "bare full version is exact"
        );
        assert_eq!(best("v15.10.0").as_deref(), Some("15.10.0"));
        assert_eq!(best("3.10").as_deref(), Some("3.10.0"), "bare X.Y is X.Y.x");
        assert_eq!(best("*").as_deref(), Some("16.3.0"));
        assert_eq!(best("x").as_deref(), Some("16.3.0"));
        assert_eq!(best("").as_deref(), Some("16.3.0"));
        assert_eq!(best("latest").as_deref(), Some("16.3.0"));
        assert_eq!(best("~3.9").as_deref(), Some("3.9.4"));
        assert_eq!(best(">=3.9 <3.12").as_deref(), Some("3.10.0"));
        assert_eq!(best(">= 3.9, < 3.12").as_deref(), Some("3.10.0"));
        assert_eq!(best("3.9.4 - 3.12.0").as_deref(), Some("3.12.0"));
        assert_eq!(best("2.x || 15.x").as_deref(), Some("15.11.0"));
        assert_eq!(best("=3.13.0-rc.1").as_deref(), Some("3.13.0-rc.1"));
        assert_eq!(best("4.x"), None);
        assert_eq!(best("15.10.1"), None);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Selector::parse("not a version").is_err());
        assert!(Selector::parse("1.2.3.4.5").is_err());
    }
}
