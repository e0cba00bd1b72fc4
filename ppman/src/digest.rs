//! sha256 helpers.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

/// sha256 of a byte slice, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// sha256 of everything `reader` yields, lowercase hex, and the byte count.
pub fn sha256_reader<R: Read>(mut reader: R) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// sha256 of a file, lowercase hex, and its size.
pub fn sha256_file(path: &std::path::Path) -> io::Result<(String, u64)> {
    sha256_reader(std::fs::File::open(path)?)
}
