//! The adapters the settings choose, as types. Each getter reads its settings once and applies
//! every rule about them: what production refuses (embedded stand-ins, plain http to another
//! machine), which settings need which (a replica needs its primary, AppRole needs both halves).
//! It returns the choice, or every setting to fix. Services match on the choice and never look
//! at the mode again; start-up ([`crate::requirements`]) asks every getter the process will use
//! and lists all their problems at once, before anything opens.

use secrecy::SecretString;

use crate::secrets::VaultAuth;
use crate::{DirectoryKind, Mode, Settings, TransportKind};

/// What is wrong with the settings of one adapter: one line per setting to fix, each starting
/// with the setting's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct Misconfigured(pub Vec<String>);

/// A service's database.
#[derive(Debug, Clone)]
pub enum Database {
    /// SQLite in the data directory (embedded mode only).
    Embedded,
    /// PostgreSQL, with an optional streaming replica for reads.
    Postgres {
        primary: SecretString,
        replica: Option<SecretString>,
    },
}

/// Where cached products live.
#[derive(Debug, Clone)]
pub enum CacheBackend {
    /// In this process (embedded mode only: replicas would each keep their own).
    InProcess,
    Redis(SecretString),
}

/// Where payment secrets and webhook signing secrets live.
#[derive(Debug, Clone)]
pub enum SecretBackend {
    /// Sealed files in the data directory (embedded mode only), under this key or a generated
    /// key file.
    Sealed { key: Option<SecretString> },
    /// Vault (or OpenBao) KV v2. `fingerprint_key` is the deployment's own secret the services
    /// derive keys from (with sealed files, the sealing key plays that part).
    Vault {
        addr: String,
        mount: String,
        auth: VaultAuth,
        fingerprint_key: SecretString,
    },
}

/// How bearer tokens are verified.
#[derive(Debug, Clone)]
pub enum TokenCheck {
    /// HS256 with the data directory's generated key (embedded mode only).
    Generated,
    /// Against the identity provider's published key set.
    Jwks {
        url: String,
        issuer: Option<String>,
        audience: Option<String>,
    },
}

/// How products asks user-information about a customer.
#[derive(Debug, Clone)]
pub enum Directory {
    /// Request/reply over the message transport.
    Messaging,
    /// HTTP to user-information's internal lookup, with a service token.
    Http { url: String, token: SecretString },
}

const FINGERPRINT_KEY: &str = "VITRINE_FINGERPRINT_KEY";
/// One text wherever it is required, so a process that needs it twice names it once.
const FINGERPRINT_KEY_WHY: &str =
    "base64 of 32 bytes keying idempotency fingerprints, the same on every replica";

/// Collects the problems of one getter.
#[derive(Debug, Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, setting: &str, why: &str) {
        self.0.push(format!("{setting}: {why}"));
    }

    /// In production, `url` (the value of `setting`) must use https unless it points at this
    /// machine (tests, sidecars): tokens and secrets travel over it.
    fn https_in_production(&mut self, mode: Mode, url: &str, setting: &str) {
        if mode != Mode::Production {
            return;
        }
        match reqwest::Url::parse(url) {
            Ok(parsed) if parsed.scheme() == "https" || is_loopback(&parsed) => {}
            Ok(_) => self.add(
                setting,
                "must be an https URL in production (tokens and secrets travel over it)",
            ),
            Err(_) => self.add(setting, "is not a URL"),
        }
    }

    fn or<T>(self, choice: T) -> Result<T, Misconfigured> {
        if self.0.is_empty() {
            Ok(choice)
        } else {
            Err(Misconfigured(self.0))
        }
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Settings {
    fn production(&self) -> bool {
        self.mode == Mode::Production
    }

    /// user-information's database: `VITRINE_DATABASE_URL`, else SQLite (embedded only).
    pub fn user_information_database(&self) -> Result<Database, Misconfigured> {
        let mut problems = Problems::default();
        let choice = match &self.database_url {
            Some(url) => Database::Postgres {
                primary: url.clone(),
                replica: None,
            },
            None => {
                if self.production() {
                    problems.add(
                        "VITRINE_DATABASE_URL",
                        "user-information's PostgreSQL database (SQLite is embedded-only)",
                    );
                }
                Database::Embedded
            }
        };
        problems.or(choice)
    }

    /// products' database: `VITRINE_PRODUCTS_DATABASE_URL` and its optional replica, else
    /// SQLite (embedded only).
    pub fn products_database(&self) -> Result<Database, Misconfigured> {
        let mut problems = Problems::default();
        let choice = match (&self.products_database_url, &self.products_replica_url) {
            (Some(primary), replica) => Database::Postgres {
                primary: primary.clone(),
                replica: replica.clone(),
            },
            (None, replica) => {
                if replica.is_some() {
                    problems.add(
                        "VITRINE_PRODUCTS_REPLICA_URL",
                        "names a replica, but its primary (VITRINE_PRODUCTS_DATABASE_URL) is not \
                         set",
                    );
                }
                if self.production() {
                    problems.add(
                        "VITRINE_PRODUCTS_DATABASE_URL",
                        "the products PostgreSQL primary (SQLite is embedded-only)",
                    );
                }
                Database::Embedded
            }
        };
        problems.or(choice)
    }

    /// The product cache: Redis at `VITRINE_REDIS_URL`, else in this process (embedded only).
    pub fn product_cache(&self) -> Result<CacheBackend, Misconfigured> {
        let mut problems = Problems::default();
        let choice = match &self.redis_url {
            Some(url) => CacheBackend::Redis(url.clone()),
            None => {
                if self.production() {
                    problems.add(
                        "VITRINE_REDIS_URL",
                        "the product cache shared by every replica",
                    );
                }
                CacheBackend::InProcess
            }
        };
        problems.or(choice)
    }

    /// The secret store: Vault at `VITRINE_VAULT_ADDR` (token or AppRole, with
    /// `VITRINE_FINGERPRINT_KEY`), else sealed files (embedded only). Production names every
    /// Vault setting it lacks at once.
    pub fn secret_backend(&self) -> Result<SecretBackend, Misconfigured> {
        let mut problems = Problems::default();
        match &self.vault_addr {
            Some(addr) => problems.https_in_production(self.mode, addr, "VITRINE_VAULT_ADDR"),
            None if self.production() => problems.add(
                "VITRINE_VAULT_ADDR",
                "secrets (card numbers, PIX keys, webhook signing secrets) live in Vault, never \
                 in local files",
            ),
            None => {
                return problems.or(SecretBackend::Sealed {
                    key: self.secrets_key.clone(),
                });
            }
        }
        let auth = match (
            &self.vault_token,
            &self.vault_role_id,
            &self.vault_secret_id,
        ) {
            (Some(token), _, _) => Some(VaultAuth::Token(token.clone())),
            (None, Some(role_id), Some(secret_id)) => Some(VaultAuth::AppRole {
                role_id: role_id.clone(),
                secret_id: secret_id.clone(),
            }),
            _ => {
                problems.add(
                    "VITRINE_VAULT_TOKEN (or VITRINE_VAULT_ROLE_ID and VITRINE_VAULT_SECRET_ID)",
                    "how the services log in to Vault",
                );
                None
            }
        };
        if self.fingerprint_key.is_none() {
            problems.add(FINGERPRINT_KEY, FINGERPRINT_KEY_WHY);
        }
        match (&self.vault_addr, auth, &self.fingerprint_key) {
            (Some(addr), Some(auth), Some(fingerprint_key)) => problems.or(SecretBackend::Vault {
                addr: addr.clone(),
                mount: self.vault_mount.clone(),
                auth,
                fingerprint_key: fingerprint_key.clone(),
            }),
            _ => Err(Misconfigured(problems.0)),
        }
    }

    /// The key of idempotency fingerprints: `VITRINE_FINGERPRINT_KEY`, else (embedded only) a
    /// key file the caller keeps in the data directory.
    pub fn fingerprint(&self) -> Result<Option<SecretString>, Misconfigured> {
        let mut problems = Problems::default();
        if self.fingerprint_key.is_none() && self.production() {
            problems.add(FINGERPRINT_KEY, FINGERPRINT_KEY_WHY);
        }
        problems.or(self.fingerprint_key.clone())
    }

    /// How tokens are verified: against `VITRINE_JWKS_URL` (in production with the issuer and
    /// audience every token must carry), else with the generated key (embedded only).
    pub fn token_check(&self) -> Result<TokenCheck, Misconfigured> {
        let mut problems = Problems::default();
        if self.production() {
            if self.jwt_issuer.is_none() {
                problems.add(
                    "VITRINE_JWT_ISSUER",
                    "the `iss` every token must carry (the identity provider's issuer)",
                );
            }
            if self.jwt_audience.is_none() {
                problems.add(
                    "VITRINE_JWT_AUDIENCE",
                    "the `aud` every token must carry, so tokens the same provider issued for \
                     another application are refused",
                );
            }
        }
        let choice = match &self.jwks_url {
            Some(url) => {
                problems.https_in_production(self.mode, url, "VITRINE_JWKS_URL");
                TokenCheck::Jwks {
                    url: url.clone(),
                    issuer: self.jwt_issuer.clone(),
                    audience: self.jwt_audience.clone(),
                }
            }
            None => {
                if self.production() {
                    problems.add(
                        "VITRINE_JWKS_URL",
                        "the identity provider's key set, which tokens are verified against",
                    );
                }
                TokenCheck::Generated
            }
        };
        problems.or(choice)
    }

    /// The message transport: SNS/SQS, or the embedded queues (embedded only).
    pub fn message_transport(&self) -> Result<TransportKind, Misconfigured> {
        let mut problems = Problems::default();
        if self.transport == TransportKind::Local && self.production() {
            problems.add(
                "VITRINE_TRANSPORT",
                "must be `sqs` (SNS topics and SQS queues; the embedded queues are for one \
                 process)",
            );
        }
        problems.or(self.transport)
    }

    /// How products reaches user-information's customer directory.
    pub fn directory(&self) -> Result<Directory, Misconfigured> {
        let mut problems = Problems::default();
        match self.customer_directory {
            DirectoryKind::Messaging => problems.or(Directory::Messaging),
            DirectoryKind::Http => {
                match &self.user_information_url {
                    Some(url) => {
                        problems.https_in_production(self.mode, url, "VITRINE_USER_INFORMATION_URL")
                    }
                    None => problems.add(
                        "VITRINE_USER_INFORMATION_URL",
                        "user-information's base URL, for customer_directory = http",
                    ),
                }
                if self.service_token.is_none() {
                    problems.add(
                        "VITRINE_SERVICE_TOKEN",
                        "the service token sent to user-information, for customer_directory = \
                         http",
                    );
                }
                match (&self.user_information_url, &self.service_token) {
                    (Some(url), Some(token)) => problems.or(Directory::Http {
                        url: url.clone(),
                        token: token.clone(),
                    }),
                    _ => Err(Misconfigured(problems.0)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedded() -> Settings {
        Settings::embedded_at(std::path::Path::new("/nonexistent"))
    }

    fn production() -> Settings {
        let mut settings = embedded();
        settings.mode = Mode::Production;
        settings
    }

    fn problems<T: std::fmt::Debug>(choice: Result<T, Misconfigured>) -> Vec<String> {
        choice.err().map(|m| m.0).unwrap_or_default()
    }

    #[test]
    fn embedded_defaults_choose_the_embedded_adapters() {
        let settings = embedded();
        assert!(matches!(
            settings.user_information_database(),
            Ok(Database::Embedded)
        ));
        assert!(matches!(
            settings.products_database(),
            Ok(Database::Embedded)
        ));
        assert!(matches!(
            settings.product_cache(),
            Ok(CacheBackend::InProcess)
        ));
        assert!(matches!(
            settings.secret_backend(),
            Ok(SecretBackend::Sealed { key: None })
        ));
        assert!(matches!(settings.token_check(), Ok(TokenCheck::Generated)));
        assert_eq!(settings.message_transport(), Ok(TransportKind::Local));
        assert!(matches!(settings.directory(), Ok(Directory::Messaging)));
        assert!(matches!(settings.fingerprint(), Ok(None)));
    }

    #[test]
    fn production_refuses_every_embedded_stand_in_naming_its_setting() {
        let settings = production();
        for (found, setting) in [
            (
                problems(settings.user_information_database()),
                "VITRINE_DATABASE_URL",
            ),
            (
                problems(settings.products_database()),
                "VITRINE_PRODUCTS_DATABASE_URL",
            ),
            (problems(settings.product_cache()), "VITRINE_REDIS_URL"),
            (problems(settings.secret_backend()), "VITRINE_VAULT_ADDR"),
            (problems(settings.fingerprint()), "VITRINE_FINGERPRINT_KEY"),
            (problems(settings.token_check()), "VITRINE_JWKS_URL"),
            (problems(settings.message_transport()), "VITRINE_TRANSPORT"),
        ] {
            assert!(
                found.iter().any(|p| p.starts_with(setting)),
                "{setting}: {found:?}"
            );
        }
    }

    #[test]
    fn settings_that_need_others_say_which_in_any_mode() {
        let mut settings = embedded();
        settings.products_replica_url = Some("postgres://replica/db".to_owned().into());
        assert!(
            problems(settings.products_database())[0].starts_with("VITRINE_PRODUCTS_REPLICA_URL")
        );

        settings.vault_addr = Some("http://127.0.0.1:8200".to_owned());
        settings.vault_role_id = Some("role".to_owned());
        let vault = problems(settings.secret_backend());
        assert_eq!(vault.len(), 2, "{vault:?}");
        assert!(vault[0].starts_with("VITRINE_VAULT_TOKEN (or VITRINE_VAULT_ROLE_ID"));
        assert!(vault[1].starts_with("VITRINE_FINGERPRINT_KEY"));
        let strict = production();
        assert_eq!(
            problems(strict.secret_backend()).len(),
            3,
            "production names the address, the login and the key at once"
        );

        settings.customer_directory = DirectoryKind::Http;
        let directory = problems(settings.directory());
        assert_eq!(directory.len(), 2, "{directory:?}");
    }

    #[test]
    fn plain_http_is_refused_in_production_except_on_this_machine() {
        let mut settings = production();
        settings.jwt_issuer = Some("https://id.example.com/".to_owned());
        settings.jwt_audience = Some("vitrine".to_owned());
        for (url, refused) in [
            ("http://id.example.com/jwks", true),
            ("https://id.example.com/jwks", false),
            ("http://127.0.0.1:8200/jwks", false),
            ("http://localhost:8200/jwks", false),
            ("http://[::1]:8200/jwks", false),
            ("not a url", true),
        ] {
            settings.jwks_url = Some(url.to_owned());
            assert_eq!(settings.token_check().is_err(), refused, "{url}");
        }
        let mut embedded = embedded();
        embedded.jwks_url = Some("http://id.example.com/jwks".to_owned());
        assert!(
            embedded.token_check().is_ok(),
            "embedded mode takes any URL"
        );
    }
}
