//! Layered configuration: built-in defaults, then an optional TOML file (`VITRINE_CONFIG`), then
//! `VITRINE_*` environment variables. Secrets are `SecretString`, so `Debug` never prints them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// How the process is deployed. Production refuses to run on embedded adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One process, SQLite and local files in the data directory; nothing to install.
    Embedded,
    /// External PostgreSQL, Vault, SNS/SQS, Redis; tokens verified against a JWKS.
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, human-readable otherwise.
    Auto,
    Json,
    Pretty,
}

/// Which message transport carries events, commands and requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// SQLite queues in the data directory (embedded, one process).
    Local,
    /// AWS SNS topics and SQS queues, configured by the standard AWS environment.
    Sqs,
}

/// How a service asks user-information about a customer (seed R7 / R8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectoryKind {
    /// Request/reply over the message transport.
    Messaging,
    /// HTTP to `user_information_url`, with `service_token`.
    Http,
}

/// Every setting of a Vitrine process. See the README's configuration reference.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub mode: Mode,
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Where embedded data lives: SQLite databases, sealed secrets, generated keys.
    pub data_dir: PathBuf,
    /// PostgreSQL URL of the user-information database; unset means SQLite in `data_dir`.
    pub database_url: Option<SecretString>,
    /// PostgreSQL URL of the products primary; unset means SQLite in `data_dir`.
    pub products_database_url: Option<SecretString>,
    /// PostgreSQL URL of a streaming replica of the products primary; reads go there while it is
    /// fresh enough. Optional.
    pub products_replica_url: Option<SecretString>,
    /// A replica further behind than this serves no reads until it catches up.
    pub replica_max_lag_ms: u64,
    /// Redis URL for the product cache; unset means an in-process cache. Required in production.
    pub redis_url: Option<SecretString>,
    /// How long a cached product lives (±10% jitter); writes and their events evict it sooner.
    pub cache_ttl_secs: u64,
    /// How long a cached "not found" lives.
    pub cache_negative_ttl_secs: u64,
    /// How long product creation waits for user-information to confirm the seller.
    pub seller_lookup_timeout_ms: u64,
    /// Maximum pooled database connections.
    pub database_max_connections: u32,
    /// Identity provider key set; required in production, unused in embedded mode.
    pub jwks_url: Option<String>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    /// Base64 32-byte key sealing embedded secrets; unset means a generated key file.
    pub secrets_key: Option<SecretString>,
    /// Vault (or OpenBao) address; when set, payment secrets live in Vault KV v2. Required in
    /// production.
    pub vault_addr: Option<String>,
    /// KV v2 mount holding the secrets.
    pub vault_mount: String,
    /// Vault token auth (or use AppRole with `vault_role_id` + `vault_secret_id`).
    pub vault_token: Option<SecretString>,
    pub vault_role_id: Option<String>,
    pub vault_secret_id: Option<SecretString>,
    /// Base64 32-byte key for idempotency fingerprints; required with Vault (embedded mode
    /// derives it from the secrets key).
    pub fingerprint_key: Option<SecretString>,
    /// Message transport; production requires `sqs`.
    pub transport: TransportKind,
    /// Prefix of every SNS topic and SQS queue name (one per environment: `prod`, `staging`).
    pub messaging_prefix: String,
    /// How other services reach user-information for customer lookups.
    pub customer_directory: DirectoryKind,
    /// Base URL of user-information, for `customer_directory = http`.
    pub user_information_url: Option<String>,
    /// Bearer token (role `admin`) for service-to-service HTTP calls.
    pub service_token: Option<SecretString>,
    /// How long a process's reply queue outlives its last heartbeat (so a crashed process's
    /// queue is deleted by others after at most this long).
    pub reply_queue_ttl_secs: u64,
    /// `tracing` filter directives, e.g. `info,sqlx=warn`.
    pub log: String,
    pub log_format: LogFormat,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace_secs: u64,
}

/// Where embedded data lives unless `VITRINE_DATA_DIR` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "./vitrine-data";

/// The defaults, as a serialisable layer (the lowest one).
#[derive(Debug, Serialize)]
struct Defaults {
    mode: Mode,
    listen: SocketAddr,
    data_dir: PathBuf,
    database_max_connections: u32,
    replica_max_lag_ms: u64,
    cache_ttl_secs: u64,
    cache_negative_ttl_secs: u64,
    seller_lookup_timeout_ms: u64,
    vault_mount: String,
    transport: TransportKind,
    messaging_prefix: String,
    customer_directory: DirectoryKind,
    reply_queue_ttl_secs: u64,
    log: String,
    log_format: LogFormat,
    max_body_bytes: usize,
    shutdown_grace_secs: u64,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            mode: Mode::Embedded,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            database_max_connections: 16,
            replica_max_lag_ms: 5000,
            cache_ttl_secs: 300,
            cache_negative_ttl_secs: 5,
            seller_lookup_timeout_ms: 3000,
            vault_mount: "secret".to_owned(),
            transport: TransportKind::Local,
            messaging_prefix: "vitrine".to_owned(),
            customer_directory: DirectoryKind::Messaging,
            reply_queue_ttl_secs: 120,
            log: "info".to_owned(),
            log_format: LogFormat::Auto,
            max_body_bytes: 1024 * 1024,
            shutdown_grace_secs: 20,
        }
    }
}

impl Settings {
    /// Loads defaults -> `$VITRINE_CONFIG` (if set) -> `VITRINE_*` environment.
    pub fn load() -> Result<Settings, Box<figment::Error>> {
        let file = std::env::var_os("VITRINE_CONFIG").map(PathBuf::from);
        Self::figment(file.as_deref()).extract().map_err(Box::new)
    }

    /// The layered sources, exposed so tests and tools can add layers on top.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Defaults::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        // `VITRINE_CONFIG` names the file; it is not itself a setting.
        figment.merge(Env::prefixed("VITRINE_").ignore(&["config"]))
    }

    /// Settings for tests and tools: defaults plus the given overrides, ignoring the environment.
    pub fn embedded_at(data_dir: &Path) -> Settings {
        Figment::from(Serialized::defaults(Defaults::default()))
            .merge(Serialized::default("data_dir", data_dir))
            .merge(Serialized::default("listen", "127.0.0.1:0"))
            .extract()
            .expect("built-in defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::result_large_err)] // figment::Jail's closure signature is fixed by figment.

    use figment::Jail;
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn layers_apply_in_order_and_secrets_are_redacted() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "vitrine.toml",
                r#"
                listen = "0.0.0.0:9000"
                data_dir = "/srv/vitrine"
                database_url = "postgres://app:hunter2@db/app"
                "#,
            )?;
            jail.set_env("VITRINE_LISTEN", "127.0.0.1:9100");
            jail.set_env("VITRINE_SECRETS_KEY", "c2VjcmV0");
            let settings: Settings =
                Settings::figment(Some(Path::new("vitrine.toml"))).extract()?;
            assert_eq!(settings.listen.port(), 9100, "env overrides the file");
            assert_eq!(
                settings.data_dir,
                PathBuf::from("/srv/vitrine"),
                "file overrides defaults"
            );
            assert_eq!(settings.mode, Mode::Embedded);
            assert_eq!(
                settings.secrets_key.as_ref().unwrap().expose_secret(),
                "c2VjcmV0"
            );
            let debug = format!("{settings:?}");
            assert!(!debug.contains("hunter2"), "{debug}");
            assert!(!debug.contains("c2VjcmV0"), "{debug}");
            Ok(())
        });
    }

    #[test]
    fn defaults_match_the_readme() {
        Jail::expect_with(|_| {
            let settings: Settings = Settings::figment(None).extract()?;
            assert_eq!(settings.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
            assert_eq!(settings.data_dir, PathBuf::from("./vitrine-data"));
            assert!(settings.database_url.is_none());
            Ok(())
        });
    }
}
