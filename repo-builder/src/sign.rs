//! minisign keys and signatures (Ed25519, prehashed), readable by the stock `minisign` tool.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::Error;

/// File name of the secret key inside a key directory.
pub const SECRET_KEY_FILE: &str = "piston.key";
/// File name of the public key inside a key directory.
pub const PUBLIC_KEY_FILE: &str = "piston.pub";

/// A loaded secret key.
pub struct Signer {
    sk: minisign::SecretKey,
    pk: minisign::PublicKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("public_key", &self.pk.to_base64())
            .finish()
    }
}

/// Writes a new unencrypted key pair into `dir` (secret key mode 0600). Refuses to overwrite one.
pub fn keygen(dir: &Path) -> Result<(PathBuf, PathBuf), Error> {
    let sk_path = dir.join(SECRET_KEY_FILE);
    let pk_path = dir.join(PUBLIC_KEY_FILE);
    if sk_path.exists() {
        return Err(Error::KeyExists(sk_path));
    }
    fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    let pair = minisign::KeyPair::generate_unencrypted_keypair().map_err(Error::Sign)?;
    let sk_text = pair
        .sk
        .to_box(Some("piston repository secret key"))
        .map_err(Error::Sign)?
        .into_string();
    let pk_text = pair.pk.to_box().map_err(Error::Sign)?.into_string();
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&sk_path)
        .map_err(io(&sk_path))?;
    f.write_all(sk_text.as_bytes()).map_err(io(&sk_path))?;
    f.sync_all().map_err(io(&sk_path))?;
    fs::write(&pk_path, pk_text).map_err(io(&pk_path))?;
    Ok((sk_path, pk_path))
}

impl Signer {
    /// Loads an unencrypted secret key written by [`keygen`] or `minisign -G -W`.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let sk = minisign::SecretKeyBox::from_string(&text)
            .and_then(minisign::SecretKeyBox::into_unencrypted_secret_key)
            .map_err(|source| Error::KeyLoad {
                path: path.to_owned(),
                source,
            })?;
        let pk = minisign::PublicKey::from_secret_key(&sk).map_err(Error::Sign)?;
        Ok(Self { sk, pk })
    }

    /// The public key in minisign file format.
    pub fn public_key_text(&self) -> Result<String, Error> {
        Ok(self.pk.to_box().map_err(Error::Sign)?.into_string())
    }

    /// Signs everything `data` yields; returns the text of a `.minisig` file.
    pub fn sign<R: Read>(&self, data: R, trusted_comment: &str) -> Result<String, Error> {
        let sig = minisign::sign(Some(&self.pk), &self.sk, data, Some(trusted_comment), None)
            .map_err(Error::Sign)?;
        Ok(sig.into_string())
    }
}
