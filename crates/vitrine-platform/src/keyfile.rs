//! Key files kept in the data directory: random bytes, base64 encoded, created with mode 0600.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use zeroize::Zeroizing;

/// Reads the key at `path`, or creates it with `len` random bytes if it does not exist.
///
/// Creation uses `O_EXCL` so two processes starting at once agree on one key, and mode 0600 from
/// the first byte so the key is never readable by others, not even briefly.
pub fn load_or_create(path: &Path, len: usize) -> anyhow::Result<Vec<u8>> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating directory {}", parent.display()))?;
    }
    let mut key = Zeroizing::new(vec![0u8; len]);
    rand::rng().fill_bytes(&mut key);
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            let encoded = Zeroizing::new(STANDARD.encode(&*key));
            file.write_all(encoded.as_bytes())?;
            file.sync_all()?;
            Ok(key.to_vec())
        }
        Err(error) if error.kind() == ErrorKind::AlreadyExists => read(path, len),
        Err(error) => Err(error).with_context(|| format!("creating key file {}", path.display())),
    }
}

fn read(path: &Path, len: usize) -> anyhow::Result<Vec<u8>> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("reading key file {}", path.display()))?,
    );
    decode(text.trim(), len).with_context(|| format!("key file {} is corrupt", path.display()))
}

/// Decodes a base64 key and checks its length.
pub fn decode(encoded: &str, len: usize) -> anyhow::Result<Vec<u8>> {
    let key = STANDARD
        .decode(encoded.trim())
        .context("the key is not valid base64")?;
    anyhow::ensure!(
        key.len() == len,
        "the key must be {len} bytes, base64 encoded"
    );
    Ok(key)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn creates_once_with_private_mode_then_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/k.key");
        let first = load_or_create(&path, 32).unwrap();
        let second = load_or_create(&path, 32).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.len(), 32);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn rejects_a_key_of_the_wrong_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        std::fs::write(&path, STANDARD.encode([1u8; 16])).unwrap();
        assert!(load_or_create(&path, 32).is_err());
    }
}
