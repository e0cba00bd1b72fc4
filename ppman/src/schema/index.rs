//! The signed repository index: one JSON document listing every package of a repository, signed as a
//! whole with minisign (Ed25519). Written by `repo-builder`, read by `ppman`.
//!
//! Trust rules, in the order the reader applies them:
//! 1. the signature is verified over the raw bytes, before any parsing ([`Index::verify`]);
//! 2. the schema version must be one this reader knows;
//! 3. the index version must not be lower than the newest one seen for the repository (rollback),
//!    and the expiry must be in the future (freeze) ([`Index::check_fresh`]);
//! 4. every image is checked against the size, sha256 and signature listed here.

use std::collections::BTreeMap;

use semver::Version;
use serde::{Deserialize, Serialize};

use super::meta::{CachePolicy, LimitOverrides, Provide};

/// The index schema this code reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
/// File name of the index in a published repository.
pub const INDEX_FILE: &str = "index.json";
/// File name of the index signature in a published repository.
pub const INDEX_SIG_FILE: &str = "index.json.minisig";
/// Prefix of the signature's trusted comment; the rest says version and expiry for humans.
pub const TRUSTED_COMMENT_PREFIX: &str = "piston-index";

/// A repository index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// Schema version of this document.
    pub schema: u32,
    /// Monotonically increasing index version; readers refuse to go back.
    pub version: u64,
    /// When the index was generated (unix seconds).
    pub generated: u64,
    /// After this moment (unix seconds) readers refuse the index.
    pub expires: u64,
    /// Every package of the repository.
    pub packages: Vec<IndexEntry>,
}

/// One package as listed in the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub name: String,
    pub version: Version,
    #[serde(default)]
    pub author: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub provides: Vec<Provide>,
    /// name → version selector, exactly as in the package's metadata.
    #[serde(default)]
    pub dependencies: BTreeMap<String, String>,
    #[serde(default)]
    pub limit_overrides: LimitOverrides,
    /// Whether the package has a compile stage.
    #[serde(default)]
    pub compiled: bool,
    pub cache: CachePolicy,
    /// Image size in bytes.
    pub size: u64,
    /// sha256 of the image, lowercase hex.
    pub sha256: String,
    /// Where to download the image: absolute, or relative to the index URL.
    pub url: String,
    /// minisign signature of the image (the text of a `.minisig` file).
    pub signature: String,
    /// The build file this image was made from.
    pub build_file: BuildFileRef,
}

/// Digest and location of the build files an image was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildFileRef {
    /// sha256 over the build directory (see `repo-builder`'s tree digest).
    pub sha256: String,
    /// Where the build files can be read: absolute, or relative to the index URL.
    pub url: String,
}

/// Why an index or an image was refused.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("public key is not a minisign public key")]
    PublicKey(#[source] minisign_verify::Error),
    #[error("signature is not in minisign format")]
    SignatureFormat(#[source] minisign_verify::Error),
    #[error("signature does not match: the data was altered or signed with another key")]
    BadSignature(#[source] minisign_verify::Error),
    #[error("index is not valid JSON for schema {SCHEMA_VERSION}")]
    Parse(#[source] serde_json::Error),
    #[error("index has schema version {found}; this ppman reads schema {SCHEMA_VERSION}")]
    UnknownSchema { found: u64 },
    #[error("index version {found} is older than version {seen} already seen (rollback refused)")]
    Rollback { found: u64, seen: u64 },
    #[error(
        "index expired at {expires} (now {now}); the repository must be re-signed (freeze refused)"
    )]
    Expired { expires: u64, now: u64 },
    /// `package` is `name-version`.
    #[error("package {package} of the index is refused")]
    Entry {
        package: String,
        #[source]
        source: Box<super::MetaError>,
    },
}

/// A verified public key.
#[derive(Debug)]
pub struct TrustedKey(minisign_verify::PublicKey);

impl TrustedKey {
    /// Reads a key as written by `minisign -G` / `repo-builder keygen` (file text) or as bare base64.
    pub fn parse(text: &str) -> Result<Self, IndexError> {
        let text = text.trim();
        let key = if text.contains('\n') {
            minisign_verify::PublicKey::decode(text)
        } else {
            minisign_verify::PublicKey::from_base64(text)
        };
        key.map(Self).map_err(IndexError::PublicKey)
    }

    /// Verifies a minisign signature (file text) over `data`.
    pub fn verify(&self, data: &[u8], signature: &str) -> Result<(), IndexError> {
        let sig = decode_signature(signature)?;
        self.0
            .verify(data, &sig, false)
            .map_err(IndexError::BadSignature)
    }

    /// Starts a streaming verification of a decoded signature, for data too large to hold in
    /// memory: feed it with `update`, then `finalize`.
    pub fn verify_stream<'a>(
        &'a self,
        signature: &'a minisign_verify::Signature,
    ) -> Result<minisign_verify::StreamVerifier<'a>, IndexError> {
        self.0
            .verify_stream(signature)
            .map_err(IndexError::BadSignature)
    }
}

/// Decodes the text of a `.minisig` file.
pub fn decode_signature(text: &str) -> Result<minisign_verify::Signature, IndexError> {
    minisign_verify::Signature::decode(text).map_err(IndexError::SignatureFormat)
}

impl Index {
    /// Verifies `raw` against `signature` with `key`, then parses it and checks the schema version.
    /// Nothing of `raw` is interpreted before the signature has been checked.
    pub fn verify(raw: &[u8], signature: &str, key: &TrustedKey) -> Result<Self, IndexError> {
        key.verify(raw, signature)?;
        Self::parse_trusted(raw)
    }

    /// Parses bytes whose signature was already verified.
    pub fn parse_trusted(raw: &[u8]) -> Result<Self, IndexError> {
        #[derive(Deserialize)]
        struct Probe {
            schema: u64,
        }
        let probe: Probe = serde_json::from_slice(raw).map_err(IndexError::Parse)?;
        if probe.schema != u64::from(SCHEMA_VERSION) {
            return Err(IndexError::UnknownSchema {
                found: probe.schema,
            });
        }
        let index: Index = serde_json::from_slice(raw).map_err(IndexError::Parse)?;
        index.check_entries()?;
        Ok(index)
    }

    /// Refuses an index with an entry whose metadata the writer would have refused: a package
    /// may not lift a limit, whoever signed the index.
    fn check_entries(&self) -> Result<(), IndexError> {
        for e in &self.packages {
            let overrides = e
                .provides
                .iter()
                .flat_map(|p| &p.limit_overrides)
                .chain(&e.limit_overrides);
            super::check_limit_overrides(overrides).map_err(|source| IndexError::Entry {
                package: format!("{}-{}", e.name, e.version),
                source: Box::new(source),
            })?;
        }
        Ok(())
    }

    /// Refuses an index older than `last_seen` (rollback) or expired at `now` (freeze).
    pub fn check_fresh(&self, last_seen: Option<u64>, now: u64) -> Result<(), IndexError> {
        if let Some(seen) = last_seen
            && self.version < seen
        {
            return Err(IndexError::Rollback {
                found: self.version,
                seen,
            });
        }
        if self.expires <= now {
            return Err(IndexError::Expired {
                expires: self.expires,
                now,
            });
        }
        Ok(())
    }

    /// The trusted comment put into the index signature.
    pub fn trusted_comment(&self) -> String {
        format!(
            "{TRUSTED_COMMENT_PREFIX} version={} expires={}",
            self.version, self.expires
        )
    }

    /// Serialises the index as published (pretty JSON, stable field order).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("index always serialises");
        out.push(b'\n');
        out
    }

    /// Looks up one exact package version.
    pub fn get(&self, name: &str, version: &Version) -> Option<&IndexEntry> {
        self.packages
            .iter()
            .find(|p| p.name == name && &p.version == version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Index {
        Index {
            schema: SCHEMA_VERSION,
            version: 7,
            generated: 100,
            expires: 200,
            packages: vec![IndexEntry {
                name: "python".into(),
                version: Version::new(3, 11, 2),
                author: "Debian".into(),
                description: String::new(),
                provides: vec![Provide {
                    language: "python".into(),
                    aliases: vec!["py".into()],
                    limit_overrides: LimitOverrides::new(),
                }],
                dependencies: [("base".to_owned(), "12.x".to_owned())].into(),
                limit_overrides: LimitOverrides::new(),
                compiled: false,
                cache: CachePolicy::None,
                size: 42,
                sha256: "ab".repeat(32),
                url: "images/python-3.11.2-abababababab.sqfs".into(),
                signature: "untrusted comment: x\nRW...\n".into(),
                build_file: BuildFileRef {
                    sha256: "cd".repeat(32),
                    url: "build-files/python/3.11.2/".into(),
                },
            }],
        }
    }

    /// A package may not lift a limit: an index whose entry does (package-wide or for one
    /// language) is refused as a whole, naming the package, however it was signed.
    #[test]
    fn an_entry_that_lifts_a_limit_is_refused() {
        let mut index = sample();
        index.packages[0]
            .limit_overrides
            .insert("run_timeout".into(), 5000);
        assert!(Index::parse_trusted(&index.to_json()).is_ok());
        for (language_level, key, value) in [
            (false, "run_timeout", -1),
            (false, "output_max_size", -1),
            (true, "run_memory_limit", -1),
            (true, "max_process_count", 0),
        ] {
            let mut bad = index.clone();
            let entry = &mut bad.packages[0];
            let overrides = if language_level {
                &mut entry.provides[0].limit_overrides
            } else {
                &mut entry.limit_overrides
            };
            overrides.insert(key.into(), value);
            let err = Index::parse_trusted(&bad.to_json()).unwrap_err();
            assert_eq!(
                err.to_string(),
                "package python-3.11.2 of the index is refused"
            );
            let cause = std::error::Error::source(&err).unwrap().to_string();
            assert!(
                cause.starts_with(&format!(
                    "limit override {key} = {value} would lift the limit"
                )),
                "{cause}"
            );
        }
        let mut unknown = index.clone();
        unknown.packages[0]
            .limit_overrides
            .insert("wall_time".into(), 1);
        assert!(matches!(
            Index::parse_trusted(&unknown.to_json()),
            Err(IndexError::Entry { source, .. }) if matches!(*source, super::super::MetaError::LimitKey(_))
        ));
    }

    #[test]
    fn round_trip() {
        let index = sample();
        let parsed = Index::parse_trusted(&index.to_json()).unwrap();
        assert_eq!(parsed, index);
        assert!(parsed.get("python", &Version::new(3, 11, 2)).is_some());
    }

    #[test]
    fn unknown_schema_is_refused_before_the_rest_is_read() {
        let text = String::from_utf8(sample().to_json())
            .unwrap()
            .replace("\"schema\": 1", "\"schema\": 2");
        assert!(matches!(
            Index::parse_trusted(text.as_bytes()),
            Err(IndexError::UnknownSchema { found: 2 })
        ));
        // a future schema may change everything else too
        assert!(matches!(
            Index::parse_trusted(br#"{"schema": 9, "entirely": "different"}"#),
            Err(IndexError::UnknownSchema { found: 9 })
        ));
    }

    #[test]
    fn rollback_and_freeze() {
        let index = sample();
        assert!(index.check_fresh(Some(7), 150).is_ok());
        assert!(matches!(
            index.check_fresh(Some(8), 150),
            Err(IndexError::Rollback { found: 7, seen: 8 })
        ));
        assert!(matches!(
            index.check_fresh(None, 200),
            Err(IndexError::Expired { .. })
        ));
    }

    #[test]
    fn signatures_from_the_minisign_crate_verify() {
        let pair = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let key = TrustedKey::parse(&pair.pk.to_box().unwrap().into_string()).unwrap();
        let raw = sample().to_json();
        let sig = minisign::sign(
            Some(&pair.pk),
            &pair.sk,
            &raw[..],
            Some("piston-index"),
            None,
        )
        .unwrap()
        .into_string();
        assert_eq!(Index::verify(&raw, &sig, &key).unwrap(), sample());
        let mut tampered = raw.clone();
        tampered[20] ^= 1;
        assert!(matches!(
            Index::verify(&tampered, &sig, &key),
            Err(IndexError::BadSignature(_))
        ));
        let other = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let other_key = TrustedKey::parse(&other.pk.to_base64()).unwrap();
        assert!(Index::verify(&raw, &sig, &other_key).is_err());
        assert!(matches!(
            Index::verify(&raw, "garbage", &key),
            Err(IndexError::SignatureFormat(_))
        ));
    }
}
