//! Opening the configured secret store, for every service that keeps secrets: Vault when
//! `VITRINE_VAULT_ADDR` is set (token or AppRole), else, in embedded mode only, sealed files in
//! the data directory. Production never falls back to files.

use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::{LocalSecretStore, SecretStore, VaultSecretStore};
use crate::backends::SecretBackend;
use crate::{Settings, keyfile};

/// File name of the key sealing embedded secrets inside the data directory.
pub const SECRETS_KEY_FILE: &str = "secrets.key";

/// The secret store a process opened.
#[derive(Debug)]
pub struct OpenedSecrets {
    pub store: Arc<dyn SecretStore>,
    /// A 32-byte key this deployment keeps secret (the embedded sealing key, or
    /// `VITRINE_FINGERPRINT_KEY` with Vault), for keys derived from it.
    pub key: Zeroizing<Vec<u8>>,
    /// Set with Vault: its token must be kept alive in the background.
    pub vault: Option<VaultSecretStore>,
}

/// Opens the store the settings choose ([`Settings::secret_backend`]).
pub async fn open(settings: &Settings) -> anyhow::Result<OpenedSecrets> {
    match settings.secret_backend()? {
        SecretBackend::Vault {
            addr,
            mount,
            auth,
            fingerprint_key,
        } => {
            let key = keyfile::decode(fingerprint_key.expose_secret(), 32)
                .context("VITRINE_FINGERPRINT_KEY")?;
            let vault = VaultSecretStore::connect(&addr, &mount, auth)
                .await
                .context("connecting to Vault")?;
            Ok(OpenedSecrets {
                store: Arc::new(vault.clone()),
                key: Zeroizing::new(key),
                vault: Some(vault),
            })
        }
        SecretBackend::Sealed { key } => {
            let key = match key {
                Some(encoded) => {
                    keyfile::decode(encoded.expose_secret(), 32).context("VITRINE_SECRETS_KEY")?
                }
                None => keyfile::load_or_create(&settings.data_dir.join(SECRETS_KEY_FILE), 32)?,
            };
            let store = LocalSecretStore::open(settings.data_dir.join("secrets"), &key)?;
            Ok(OpenedSecrets {
                store: Arc::new(store),
                key: Zeroizing::new(key),
                vault: None,
            })
        }
    }
}
