//! Opening the configured secret store, for every service that keeps secrets: Vault when
//! `VITRINE_VAULT_ADDR` is set (token or AppRole), else, in embedded mode only, sealed files in
//! the data directory. Production never falls back to files.

use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::{LocalSecretStore, SecretStore, VaultAuth, VaultSecretStore};
use crate::{Mode, Settings, keyfile};

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

/// Opens the configured store; `what` names what it will hold, for the production error.
pub async fn open(settings: &Settings, what: &str) -> anyhow::Result<OpenedSecrets> {
    if let Some(addr) = &settings.vault_addr {
        let auth = match (
            &settings.vault_token,
            &settings.vault_role_id,
            &settings.vault_secret_id,
        ) {
            (Some(token), _, _) => VaultAuth::Token(token.clone()),
            (None, Some(role_id), Some(secret_id)) => VaultAuth::AppRole {
                role_id: role_id.clone(),
                secret_id: secret_id.clone(),
            },
            _ => anyhow::bail!(
                "VITRINE_VAULT_ADDR needs VITRINE_VAULT_TOKEN, or VITRINE_VAULT_ROLE_ID and VITRINE_VAULT_SECRET_ID"
            ),
        };
        let key = settings.fingerprint_key.as_ref().ok_or_else(|| {
            anyhow::anyhow!("with Vault, VITRINE_FINGERPRINT_KEY (base64 of 32 bytes) must be set")
        })?;
        let key = keyfile::decode(key.expose_secret(), 32).context("VITRINE_FINGERPRINT_KEY")?;
        let vault = VaultSecretStore::connect(addr, &settings.vault_mount, auth)
            .await
            .context("connecting to Vault")?;
        return Ok(OpenedSecrets {
            store: Arc::new(vault.clone()),
            key: Zeroizing::new(key),
            vault: Some(vault),
        });
    }
    if settings.mode == Mode::Production {
        // Fail closed: production secrets belong in Vault, never in local files.
        anyhow::bail!("mode = production needs VITRINE_VAULT_ADDR: {what} live in Vault");
    }
    let key = match &settings.secrets_key {
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
