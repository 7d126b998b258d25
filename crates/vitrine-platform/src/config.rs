//! Layered configuration: built-in defaults, then an optional TOML file (`VITRINE_CONFIG`), then
//! `VITRINE_*` environment variables. Secrets are `SecretString`, so `Debug` never prints them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, Provider};
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

/// Every setting of a Vitrine process. See the README's configuration reference. A key it does
/// not know (a typo, a wrong case) is an error, never silently ignored ([`Settings::load`]).
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub mode: Mode,
    /// Address the HTTP API listens on: `host:port`, the host a name (`localhost`) or an IP.
    #[serde(deserialize_with = "socket_address")]
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
    /// How long a product's response is kept in each process in front of the shared cache
    /// (its staleness bound should an invalidation be lost); 0 turns that near cache off.
    pub cache_near_ttl_secs: u64,
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
    /// Largest accepted product import (`POST /v1/product-imports`, NDJSON, streamed).
    pub import_max_bytes: u64,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace_secs: u64,
    /// Networks (comma-separated CIDR) webhooks may be delivered to although they are private
    /// or otherwise special (an operator's internal receivers); none by default.
    pub webhook_allowed_networks: Option<String>,
    /// Delays before each webhook attempt (comma-separated, units ms/s/m/h); Svix's schedule
    /// by default: `0,5s,5m,30m,2h,5h,10h,10h`.
    pub webhook_retry_schedule: Option<String>,
    /// PostgreSQL URL of the analytics database (`vitrine analytics sync`); unset means
    /// `analytics.sqlite3` in `data_dir`.
    pub analytics_database_url: Option<SecretString>,
    /// Password of the `vitrine_analytics` role the sync reads the services' databases as.
    pub analytics_source_password: Option<SecretString>,
    /// Password of the read-only `vitrine_metabase` role on the analytics database.
    pub analytics_metabase_password: Option<SecretString>,
    /// Sync every N hours (1 to 24) instead of daily: the default cut-off becomes the start of
    /// the current N-hour window in São Paulo.
    pub analytics_every_hours: Option<u32>,
}

/// Where embedded data lives unless `VITRINE_DATA_DIR` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "./vitrine-data";

/// Kubernetes injects `VITRINE_PORT`, `VITRINE_SERVICE_HOST`, `VITRINE_PORT_8080_TCP_ADDR`...
/// into every pod when a Service is named `vitrine`: they are not settings.
fn service_link(key: &str) -> bool {
    key == "port"
        || key.starts_with("port_")
        || key == "service_host"
        || key == "service_port"
        || key.starts_with("service_port_")
}

/// `VITRINE_*` variables that belong to the project's scripts, not to a process's settings.
const SCRIPT_PREFIXES: [&str; 3] = ["test_", "stack_", "tools_"];

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
    cache_near_ttl_secs: u64,
    seller_lookup_timeout_ms: u64,
    vault_mount: String,
    transport: TransportKind,
    messaging_prefix: String,
    customer_directory: DirectoryKind,
    reply_queue_ttl_secs: u64,
    log: String,
    log_format: LogFormat,
    max_body_bytes: usize,
    import_max_bytes: u64,
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
            cache_near_ttl_secs: 10,
            seller_lookup_timeout_ms: 3000,
            vault_mount: "secret".to_owned(),
            transport: TransportKind::Local,
            messaging_prefix: "vitrine".to_owned(),
            customer_directory: DirectoryKind::Messaging,
            reply_queue_ttl_secs: 120,
            log: "info,sqlx::postgres::notice=warn".to_owned(),
            log_format: LogFormat::Auto,
            max_body_bytes: 1024 * 1024,
            import_max_bytes: 50_000_000,
            shutdown_grace_secs: 20,
        }
    }
}

/// `host:port`, resolved once at start-up (a name like `localhost` to its first address).
fn socket_address<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<SocketAddr, D::Error> {
    use std::net::ToSocketAddrs;
    let raw = String::deserialize(deserializer)?;
    raw.to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{raw}` is not host:port (e.g. `127.0.0.1:8080` or `localhost:8080`)"
            ))
        })
}

impl Settings {
    /// Loads defaults -> `$VITRINE_CONFIG` (if set) -> `VITRINE_*` environment, and checks what
    /// serde cannot (the log filter). Every problem is reported, each naming its setting as its
    /// source spells it (`VITRINE_LISTEN`, or `listen` in the file) and what it accepts.
    pub fn load() -> Result<Settings, ConfigError> {
        let file = std::env::var_os("VITRINE_CONFIG").map(PathBuf::from);
        let figment = Self::figment(file.as_deref());
        let settings = ConfigError::check(&figment, figment.extract())?;
        check_log_filter(&settings.log).map_err(|problem| ConfigError(vec![problem]))?;
        Ok(settings)
    }

    /// The layered sources, exposed so tests and tools can add layers on top.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Defaults::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        // `VITRINE_CONFIG` names the file; it is not itself a setting. Nor are the variables of
        // the project's own scripts (`VITRINE_TEST_*`, `VITRINE_STACK_*`, `VITRINE_TOOLS_*`).
        figment.merge(Env::prefixed("VITRINE_").ignore(&["config"]).filter(|key| {
            let key = key.as_str().to_ascii_lowercase();
            !SCRIPT_PREFIXES.iter().any(|p| key.starts_with(p)) && !service_link(&key)
        }))
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

/// A `tracing` filter of levels and `target=level` directives. A bare word that is not a level
/// (`verbose`) would be read as a target name and silently drop every line, `ready` included.
fn check_log_filter(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let refuse = |why: String| {
        format!(
            "VITRINE_LOG (or `log`): `{filter}` is not a log filter: {why}; use a level \
             (`trace`, `debug`, `info`, `warn`, `error`, `off`) and `target=level` directives, \
             e.g. `info,sqlx=warn`"
        )
    };
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !directive.contains('=') && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(refuse(format!("`{directive}` is not a level")));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|error| refuse(error.to_string()))
}

/// What is wrong with the configuration, one line per problem.
#[derive(Debug)]
pub struct ConfigError(Vec<String>);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "invalid configuration: {one}"),
            many => write!(f, "invalid configuration:\n  - {}", many.join("\n  - ")),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// Every key no setting has, then what extracting the settings found wrong.
    fn check(
        figment: &Figment,
        extracted: Result<Settings, figment::Error>,
    ) -> Result<Settings, ConfigError> {
        let known = setting_names();
        let mut problems = Vec::new();
        if let Ok(data) = figment.data()
            && let Some(values) = data.get(figment.profile())
        {
            for key in values.keys().filter(|key| !known.contains(&key.as_str())) {
                let origin = Origin::of(figment.find_metadata(key));
                problems.push(unknown(&origin, key, known));
            }
        }
        match extracted {
            Ok(settings) if problems.is_empty() => Ok(settings),
            Ok(_) => Err(ConfigError(problems)),
            Err(errors) => {
                problems.extend(errors.into_iter().map(describe));
                Err(ConfigError(problems))
            }
        }
    }
}

/// The names of the settings, as serde reads them (asked of the `Deserialize` impl itself, so
/// the list cannot drift from the struct).
fn setting_names() -> &'static [&'static str] {
    struct Names(Option<&'static [&'static str]>);

    impl<'de> serde::Deserializer<'de> for &mut Names {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("only the field names are read"))
        }

        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(serde::de::Error::custom("only the field names are read"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    static NAMES: std::sync::OnceLock<&'static [&'static str]> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names = Names(None);
        let _ = Settings::deserialize(&mut names);
        names.0.unwrap_or_default()
    })
}

fn unknown(origin: &Origin, key: &str, known: &[&str]) -> String {
    let names: Vec<String> = known.iter().map(|k| origin.name(k)).collect();
    format!(
        "{} ({}) is not a Vitrine setting (names are exact and lower case in the file); the \
         settings are: {}",
        origin.name(key),
        origin.describe(),
        names.join(", ")
    )
}

/// Where a value came from, and how that source spells a key.
enum Origin {
    Environment,
    File(PathBuf),
    Default,
}

impl Origin {
    fn of(metadata: Option<&figment::Metadata>) -> Origin {
        match metadata {
            Some(metadata) => match &metadata.source {
                Some(figment::Source::File(path)) => Origin::File(path.clone()),
                _ if metadata.name.contains("environment") => Origin::Environment,
                _ => Origin::Default,
            },
            None => Origin::Default,
        }
    }

    fn name(&self, key: &str) -> String {
        match self {
            Origin::Environment => format!("VITRINE_{}", key.to_ascii_uppercase()),
            Origin::File(_) | Origin::Default => format!("`{key}`"),
        }
    }

    fn describe(&self) -> String {
        match self {
            Origin::Environment => "environment".to_owned(),
            Origin::File(path) => format!("file {}", path.display()),
            Origin::Default => "built-in default".to_owned(),
        }
    }
}

/// One figment error as a sentence naming the setting, its source and what it accepts.
fn describe(error: figment::Error) -> String {
    use figment::error::Kind;
    let origin = Origin::of(error.metadata.as_ref());
    let key = error.path.join(".");
    let name = |key: &str| origin.name(key);
    let source = origin.describe();
    let list = |values: &[&str]| {
        values
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match error.kind {
        Kind::UnknownField(field, expected) => unknown(&origin, &field, expected),
        Kind::UnknownVariant(value, expected) => format!(
            "{} ({source}): `{value}` is not one of {}",
            name(&key),
            list(expected)
        ),
        Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) => {
            format!("{} ({source}): expected {expected}", name(&key))
        }
        Kind::MissingField(field) => format!("{} ({source}) is required", name(&field)),
        Kind::Message(message) => format!("{} ({source}): {message}", name(&key)),
        other => format!("{} ({source}): {other}", name(&key)),
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
    fn mistakes_are_errors_naming_the_setting_its_source_and_what_it_accepts() {
        Jail::expect_with(|jail| {
            jail.create_file("vitrine.toml", "max_body_byte = 100\nMode = \"embedded\"\n")?;
            jail.set_env("VITRINE_CUSTOMER_DIRECTORY", "grpc");
            jail.set_env("VITRINE_LISTN", "127.0.0.1:1");
            jail.set_env("VITRINE_TEST_ANYTHING", "belongs to the test scripts");
            jail.set_env("VITRINE_PORT_8080_TCP_ADDR", "10.0.0.1");
            jail.set_env("VITRINE_SERVICE_HOST", "10.0.0.1");
            let figment = Settings::figment(Some(Path::new("vitrine.toml")));
            let errors = ConfigError::check(&figment, figment.extract())
                .unwrap_err()
                .to_string();
            for expected in [
                "`max_body_byte` (file vitrine.toml) is not a Vitrine setting",
                "`Mode` (file vitrine.toml) is not a Vitrine setting",
                "VITRINE_LISTN (environment) is not a Vitrine setting",
                "VITRINE_LISTEN",
                "VITRINE_CUSTOMER_DIRECTORY (environment): `grpc` is not one of `messaging`, `http`",
            ] {
                assert!(
                    errors.contains(expected),
                    "{expected:?} missing from:\n{errors}"
                );
            }
            assert!(!errors.contains("TEST_ANYTHING"), "{errors}");
            assert!(
                !errors.contains("SERVICE_HOST") && !errors.contains("PORT_8080"),
                "{errors}"
            );
            Ok(())
        });
    }

    #[test]
    fn log_filters_are_levels_and_directives() {
        for good in [
            "info",
            "INFO",
            "info,sqlx=warn",
            "vitrine=debug",
            "warn,tower_http=trace",
        ] {
            assert!(check_log_filter(good).is_ok(), "{good}");
        }
        for bad in ["verbose", "info,loud", "sqlx=shouting"] {
            assert!(check_log_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_setting_names_are_the_struct_fields() {
        let names = setting_names();
        assert_eq!(names.len(), 40, "{names:?}");
        for name in [
            "mode",
            "listen",
            "max_body_bytes",
            "import_max_bytes",
            "shutdown_grace_secs",
            "webhook_allowed_networks",
            "webhook_retry_schedule",
            "analytics_database_url",
            "analytics_every_hours",
        ] {
            assert!(names.contains(&name), "{name}");
        }
    }

    #[test]
    fn listen_takes_a_host_name() {
        Jail::expect_with(|jail| {
            jail.set_env("VITRINE_LISTEN", "localhost:8080");
            let settings: Settings = Settings::figment(None).extract()?;
            assert!(settings.listen.ip().is_loopback());
            assert_eq!(settings.listen.port(), 8080);
            jail.set_env("VITRINE_LISTEN", "nowhere");
            let figment = Settings::figment(None);
            let error = ConfigError::check(&figment, figment.extract())
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("VITRINE_LISTEN (environment): `nowhere` is not host:port"),
                "{error}"
            );
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
