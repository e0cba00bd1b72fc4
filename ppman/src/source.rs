//! Where repository files come from: http(s) URLs, `file://` URLs and plain local paths (so an
//! air-gapped host installs from a folder).

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// A repository location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Http(String),
    Local(PathBuf),
}

impl Location {
    /// Parses a repository root or file location.
    pub fn parse(url: &str) -> Self {
        if url.starts_with("http://") || url.starts_with("https://") {
            Self::Http(url.to_owned())
        } else if let Some(path) = url.strip_prefix("file://") {
            Self::Local(PathBuf::from(path))
        } else {
            Self::Local(PathBuf::from(url))
        }
    }

    /// `rel` relative to this location (a directory); absolute URLs and paths are kept as they are.
    pub fn join(&self, rel: &str) -> Self {
        if rel.contains("://") || rel.starts_with('/') {
            return Self::parse(rel);
        }
        match self {
            Self::Http(base) => Self::Http(format!("{}/{rel}", base.trim_end_matches('/'))),
            Self::Local(base) => Self::Local(base.join(rel)),
        }
    }

    /// Opens the resource for streaming.
    pub fn open(&self) -> Result<Box<dyn Read + Send>> {
        match self {
            Self::Http(url) => {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_connect(Some(Duration::from_secs(15)))
                    .timeout_recv_response(Some(Duration::from_secs(60)))
                    // A whole image must arrive within an hour; a stalled server does not hang us.
                    .timeout_recv_body(Some(Duration::from_secs(3600)))
                    .build()
                    .into();
                let response = agent.get(url).call().map_err(|source| Error::Http {
                    url: url.clone(),
                    source: Box::new(source),
                })?;
                Ok(Box::new(response.into_body().into_reader()))
            }
            Self::Local(path) => {
                let file = std::fs::File::open(path).map_err(Error::io("open", path))?;
                Ok(Box::new(file))
            }
        }
    }

    /// Reads a small resource whole, refusing more than `limit` bytes.
    pub fn read_all(&self, limit: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let read = self
            .open()?
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|source| Error::Read {
                url: self.to_string(),
                source,
            })?;
        if read as u64 > limit {
            return Err(Error::Oversize {
                url: self.to_string(),
                limit,
            });
        }
        Ok(out)
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(url) => f.write_str(url),
            Self::Local(path) => write!(f, "{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins() {
        let http = Location::parse("http://h/repo/");
        assert_eq!(
            http.join("images/a.sqfs"),
            Location::Http("http://h/repo/images/a.sqfs".into())
        );
        assert_eq!(
            http.join("https://x/y"),
            Location::Http("https://x/y".into())
        );
        let local = Location::parse("file:///srv/repo");
        assert_eq!(
            local.join("index.json"),
            Location::Local("/srv/repo/index.json".into())
        );
        assert_eq!(
            Location::parse("/srv/r").join("/abs"),
            Location::Local("/abs".into())
        );
    }
}
