//! The embedded `SecretStore`: one sealed file per secret under `<data dir>/secrets`.
//!
//! Each file holds `VSS1 || nonce (24 bytes) || XChaCha20-Poly1305(ciphertext+tag)`, with the
//! secret's path as associated data, so a file copied to another path (or sealed with another key)
//! fails to open instead of revealing the wrong secret. The 32-byte key lives in a separate 0600
//! key file (or comes from the environment), never next to the data it protects in the database.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;

use super::{SecretError, SecretPath, SecretStore, SecretValue};

const MAGIC: &[u8; 4] = b"VSS1";
const NONCE_LEN: usize = 24;
const EXTENSION: &str = "sealed";

/// Secrets sealed with XChaCha20-Poly1305 in files.
#[derive(Clone)]
pub struct LocalSecretStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for LocalSecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSecretStore")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

impl LocalSecretStore {
    /// Opens (creating if needed) the store rooted at `root`, sealing with the 32-byte `key`.
    pub fn open(root: impl Into<PathBuf>, key: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(key.len() == 32, "the secrets key must be 32 bytes");
        let root = root.into();
        fs::create_dir_all(&root)?;
        let cipher = XChaCha20Poly1305::new(Key::from_slice(key));
        Ok(Self {
            inner: Arc::new(Inner { root, cipher }),
        })
    }

    async fn blocking<T, F>(&self, work: F) -> Result<T, SecretError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, SecretError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|error| {
                SecretError::Unavailable(format!("secret store task failed: {error}"))
            })?
    }
}

impl Inner {
    fn file_of(&self, path: &SecretPath) -> PathBuf {
        let mut file = self.dir_of(path);
        file.set_extension(EXTENSION);
        file
    }

    fn dir_of(&self, path: &SecretPath) -> PathBuf {
        path.segments()
            .fold(self.root.clone(), |acc, segment| acc.join(segment))
    }

    fn seal(&self, path: &SecretPath, value: &SecretValue) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: value.expose().as_bytes(),
            aad: path.as_str().as_bytes(),
        };
        let ciphertext = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .map_err(|_| SecretError::Unavailable("sealing failed".into()))?;
        let mut sealed = Vec::with_capacity(MAGIC.len() + NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(MAGIC);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    fn open(&self, path: &SecretPath, sealed: &[u8]) -> Result<SecretValue, SecretError> {
        let corrupt = || SecretError::Corrupt(path.to_string());
        let rest = sealed.strip_prefix(MAGIC.as_slice()).ok_or_else(corrupt)?;
        if rest.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: path.as_str().as_bytes(),
        };
        let plaintext = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| corrupt())?;
        String::from_utf8(plaintext)
            .map(SecretValue::new)
            .map_err(|_| corrupt())
    }
}

fn io_error(error: std::io::Error) -> SecretError {
    SecretError::Unavailable(format!("local secret store I/O failed: {error}"))
}

/// Writes `bytes` to `target` atomically: a 0600 temp file, fsync, rename, fsync of the directory.
fn write_atomically(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = target
        .parent()
        .expect("secret files always have a parent directory");
    fs::create_dir_all(dir)?;
    let temp = target.with_extension(format!("tmp-{}", uuid::Uuid::now_v7()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, target)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Overwrites a file's bytes before unlinking it. Best effort on copy-on-write filesystems; the
/// ciphertext is useless without the key either way.
fn shred(file: &Path) -> std::io::Result<()> {
    match fs::metadata(file) {
        Ok(meta) => {
            let mut handle = OpenOptions::new().write(true).open(file)?;
            handle.write_all(&vec![0u8; usize::try_from(meta.len()).unwrap_or(0)])?;
            handle.sync_all()?;
            fs::remove_file(file)
        }
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

fn shred_tree(dir: &Path) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            shred_tree(&entry.path())?;
        } else {
            shred(&entry.path())?;
        }
    }
    fs::remove_dir(dir)
}

#[async_trait]
impl SecretStore for LocalSecretStore {
    async fn put(&self, path: &SecretPath, value: &SecretValue) -> Result<(), SecretError> {
        let (path, value) = (path.clone(), value.clone());
        self.blocking(move |inner| {
            let sealed = inner.seal(&path, &value)?;
            write_atomically(&inner.file_of(&path), &sealed).map_err(io_error)
        })
        .await
    }

    async fn get(&self, path: &SecretPath) -> Result<Option<SecretValue>, SecretError> {
        let path = path.clone();
        self.blocking(move |inner| match fs::read(inner.file_of(&path)) {
            Ok(sealed) => inner.open(&path, &sealed).map(Some),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io_error(error)),
        })
        .await
    }

    async fn destroy(&self, path: &SecretPath) -> Result<(), SecretError> {
        let path = path.clone();
        self.blocking(move |inner| shred(&inner.file_of(&path)).map_err(io_error))
            .await
    }

    async fn destroy_tree(&self, prefix: &SecretPath) -> Result<(), SecretError> {
        let prefix = prefix.clone();
        self.blocking(move |inner| {
            shred(&inner.file_of(&prefix)).map_err(io_error)?;
            shred_tree(&inner.dir_of(&prefix)).map_err(io_error)
        })
        .await
    }

    async fn check(&self) -> Result<(), SecretError> {
        self.blocking(|inner| fs::metadata(&inner.root).map(|_| ()).map_err(io_error))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn store() -> (tempfile::TempDir, LocalSecretStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecretStore::open(dir.path().join("secrets"), &KEY).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn passes_the_secret_store_conformance_suite() {
        let (_dir, store) = store();
        super::super::conformance::run_all(&store).await;
    }

    #[tokio::test]
    async fn plaintext_never_reaches_the_disk() {
        let (dir, store) = store();
        let path = SecretPath::new(&["customers", "c1", "payment-methods", "p1"]).unwrap();
        store
            .put(&path, &SecretValue::new("4111111111111111"))
            .await
            .unwrap();
        for entry in walk(dir.path()) {
            let bytes = fs::read(&entry).unwrap();
            assert!(
                !bytes.windows(16).any(|w| w == b"4111111111111111"),
                "{} holds the plaintext",
                entry.display()
            );
        }
    }

    #[tokio::test]
    async fn a_file_moved_to_another_path_does_not_open() {
        let (_dir, store) = store();
        let a = SecretPath::new(&["customers", "a"]).unwrap();
        let b = SecretPath::new(&["customers", "b"]).unwrap();
        store.put(&a, &SecretValue::new("secret-a")).await.unwrap();
        fs::copy(store.inner.file_of(&a), store.inner.file_of(&b)).unwrap();
        assert!(matches!(store.get(&b).await, Err(SecretError::Corrupt(_))));
    }

    #[tokio::test]
    async fn another_key_cannot_open_the_store() {
        let (dir, store) = store();
        let path = SecretPath::new(&["x"]).unwrap();
        store.put(&path, &SecretValue::new("v")).await.unwrap();
        let other = LocalSecretStore::open(dir.path().join("secrets"), &[8; 32]).unwrap();
        assert!(matches!(
            other.get(&path).await,
            Err(SecretError::Corrupt(_))
        ));
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path))
            } else {
                files.push(path)
            }
        }
        files
    }
}
