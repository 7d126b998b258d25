//! `spawn_app()`: a real embedded server on a free port, in this process, reached through the
//! typed test client ([`client`]).

#![allow(dead_code)] // Each test module uses a different subset.

pub mod client;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use client::{Api, Call, Reply};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use vitrine::Server;
use vitrine_platform::Settings;
use vitrine_platform::http::auth::{Role, TokenIssuer, load_or_create_hs256_key};

/// The CNPJ of API.md's acceptance checks.
pub const CNPJ: &str = "12.ABC.345/01DE-35";
pub const CARD: &str = "4111111111111111";

pub enum Database {
    Sqlite,
    Postgres,
    /// PostgreSQL for data, Vault (the test OpenBao server) for payment secrets.
    PostgresAndVault,
}

pub struct TestApp {
    pub base: String,
    pub data_dir: tempfile::TempDir,
    pub api: Api,
    pub user_information: user_information::service::Customers,
    pub transport: std::sync::Arc<dyn vitrine_messaging::transport::Transport>,
    /// Set when the app runs on PostgreSQL.
    pub database_url: Option<secrecy::SecretString>,
    /// The settings it was built with.
    pub settings: Settings,
    issuer: TokenIssuer,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn spawn_app(database: Database) -> TestApp {
    spawn_app_with(database, |_| {}).await
}

/// Like [`spawn_app`], with settings adjusted by `tweak` before the server is built.
pub async fn spawn_app_with(database: Database, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn(database, None, tweak).await
}

/// An embedded server whose messages travel over SNS/SQS (the test moto server): its topology
/// is provisioned under a fresh prefix first, as `vitrine provision` would.
pub async fn spawn_app_over_sqs(database: Database) -> TestApp {
    let transport = vitrine_messaging::transport::SqsTransport::for_tests().await;
    spawn_app_over(database, std::sync::Arc::new(transport)).await
}

/// An embedded server over `transport`, with its topology provisioned there first.
pub async fn spawn_app_over(
    database: Database,
    transport: std::sync::Arc<dyn vitrine_messaging::transport::Transport>,
) -> TestApp {
    transport.provision(&vitrine::topology()).await.unwrap();
    spawn(database, Some(transport), |_| {}).await
}

async fn spawn(
    database: Database,
    transport: Option<std::sync::Arc<dyn vitrine_messaging::transport::Transport>>,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::embedded_at(data_dir.path());
    settings.max_body_bytes = 1024 * 1024;
    if matches!(database, Database::Postgres | Database::PostgresAndVault) {
        settings.database_url = Some(vitrine_platform::testing::postgres_database().await);
        settings.products_database_url = Some(vitrine_platform::testing::postgres_database().await);
    }
    if let Database::PostgresAndVault = database {
        let addr = std::env::var("VITRINE_TEST_VAULT_ADDR")
            .expect("VITRINE_TEST_VAULT_ADDR is not set: run scripts/test.sh");
        settings.vault_addr = Some(addr);
        settings.vault_token = Some("root".to_owned().into());
        // base64 of 32 bytes.
        settings.fingerprint_key = Some(
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
                .to_owned()
                .into(),
        );
    }
    tweak(&mut settings);
    let server = match transport {
        Some(transport) => {
            let authenticator = std::sync::Arc::new(vitrine::authenticator(&settings).unwrap());
            Server::build_with(&settings, authenticator, transport).await
        }
        None => Server::build(&settings).await,
    }
    .expect("the embedded server builds");
    let base = format!("http://{}", server.local_addr());
    let user_information = server.user_information().customers.clone();
    let transport = server.transport();
    let shutdown = CancellationToken::new();
    tokio::spawn(server.run(shutdown.clone()));
    let issuer = TokenIssuer::hs256(&load_or_create_hs256_key(data_dir.path()).unwrap()).unwrap();
    TestApp {
        api: Api::new(&base),
        base,
        data_dir,
        user_information,
        transport,
        database_url: settings.database_url.clone(),
        settings,
        issuer,
        shutdown,
    }
}

impl TestApp {
    pub fn token(&self, role: Role, customer_id: Option<&str>) -> String {
        let customer_id = customer_id.map(|id| id.parse().unwrap());
        self.issuer
            .issue(
                &format!("test-{}", role.as_str()),
                &[role],
                customer_id,
                Duration::from_secs(600),
            )
            .unwrap()
    }

    pub fn admin(&self) -> String {
        self.token(Role::Admin, None)
    }

    /// `method path` with `token` as the bearer, when there is one.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> Call {
        let call = self.api.call(method, path);
        match token {
            Some(token) => call.bearer(token),
            None => call,
        }
    }

    pub fn post(&self, path: &str, token: &str, body: &Value) -> Call {
        self.request(Method::POST, path, Some(token)).json(body)
    }

    pub fn get(&self, path: &str, token: &str) -> Call {
        self.request(Method::GET, path, Some(token))
    }

    pub fn patch(&self, path: &str, token: &str, body: &Value) -> Call {
        self.request(Method::PATCH, path, Some(token)).json(body)
    }

    pub fn delete(&self, path: &str, token: &str) -> Call {
        self.request(Method::DELETE, path, Some(token))
    }

    /// The Prometheus exposition of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.request(Method::GET, "/metrics", None)
            .await
            .expect(StatusCode::OK)
            .text()
    }

    /// POSTs a body of `len` bytes over a raw socket and returns (status, content type).
    ///
    /// The server answers 413 from the Content-Length alone and closes the connection, often
    /// while a client is still writing; an HTTP client reports that as a broken pipe (and may
    /// reuse the closed connection), so this writes what it can on its own socket and then reads
    /// the answer.
    pub async fn oversized_post(&self, path: &str, token: &str, len: usize) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let _ = stream.write_all(&vec![b' '; len]).await;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        let text = String::from_utf8_lossy(&response);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let content_type = text
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-type: ")
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        (status, content_type)
    }

    /// Registers a customer (as admin) and returns its id.
    pub async fn create_customer(&self, body: &Value) -> String {
        let created: Value = self
            .post("/v1/customers", &self.admin(), body)
            .await
            .expect(StatusCode::CREATED)
            .json();
        created["id"].as_str().unwrap().to_owned()
    }

    /// Every row of every table of the PostgreSQL database as text (empty on SQLite, whose
    /// database is a file in the data directory).
    pub async fn database_text(&self) -> String {
        use secrecy::ExposeSecret;
        let Some(url) = &self.database_url else {
            return String::new();
        };
        let pool = sqlx::PgPool::connect(url.expose_secret()).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let mut text = String::new();
        for table in tables {
            let sql =
                format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM \"{table}\" t");
            let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&pool)
                .await
                .unwrap();
            text.push_str(&rows);
        }
        text
    }

    /// Every file under the data directory, for "the secret is nowhere on disk" checks.
    pub fn data_files(&self) -> Vec<PathBuf> {
        walk(self.data_dir.path())
    }
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path))
        } else {
            files.push(path)
        }
    }
    files
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

pub fn customer_body(cnpj: &str) -> Value {
    json!({
        "cnpj": cnpj,
        "legal_name": "Comercial Exemplo Ltda",
        "trade_name": "Exemplo",
        "email": "compras@exemplo.com.br",
        "phone": "(11) 98765-4321",
        "address": {
            "street": "Av. Paulista",
            "number": "1000",
            "complement": "cj 42",
            "district": "Bela Vista",
            "city": "São Paulo",
            "state": "SP",
            "postal_code": "01310-100"
        }
    })
}

/// A valid CNPJ no other test uses.
pub fn unique_cnpj() -> String {
    let digits = uuid::Uuid::now_v7()
        .simple()
        .to_string()
        .to_ascii_uppercase();
    vitrine_kernel::Cnpj::from_base(&digits[20..32])
        .unwrap()
        .as_str()
        .to_owned()
}

pub fn card_body(number: &str) -> Value {
    json!({"type": "card", "card": {"number": number, "holder_name": "MARIA SOUZA", "exp_month": 12, "exp_year": 2031}})
}
