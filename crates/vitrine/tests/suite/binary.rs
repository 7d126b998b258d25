//! The `vitrine` binary as a user runs it: serve, token, restart, migrate.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Api, CARD, CNPJ, card_body, contains, customer_body, walk};
use reqwest::{Method, StatusCode};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_vitrine");

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `vitrine` with its output captured to files beside (not inside) the data dir.
pub(crate) struct Process {
    child: Child,
    pub(crate) base: String,
    api: Api,
}

impl Process {
    /// A `vitrine` listening on `port`.
    fn new(child: Child, port: u16) -> Process {
        let base = format!("http://127.0.0.1:{port}");
        Process {
            child,
            api: Api::unpooled(&base),
            base,
        }
    }

    /// The typed client for this process's API.
    pub(crate) fn api(&self) -> &Api {
        &self.api
    }
}

/// A test that fails mid-way must not leave its server running.
impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data_dir: &Path, logs: &Path, run: usize, port: u16) -> Process {
    start_with(data_dir, logs, run, port, &[])
}

/// [`start`] with more environment variables.
pub(crate) fn start_with(
    data_dir: &Path,
    logs: &Path,
    run: usize,
    port: u16,
    env: &[(&str, &str)],
) -> Process {
    let out = std::fs::File::create(logs.join(format!("stdout-{run}.log"))).unwrap();
    let err = std::fs::File::create(logs.join(format!("stderr-{run}.log"))).unwrap();
    let child = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("VITRINE_DATA_DIR", data_dir)
        .env("VITRINE_LISTEN", format!("127.0.0.1:{port}"))
        // The most verbose level: the card number must not appear even there.
        .env("VITRINE_LOG", "trace")
        .envs(env.iter().copied())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap();
    Process::new(child, port)
}

pub(crate) async fn wait_live(process: &Process) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let live = process.api().call(Method::GET, "/health/live").try_send();
        if live
            .await
            .is_ok_and(|reply| reply.status() == StatusCode::OK)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("vitrine did not come up at {}", process.base);
}

/// Registers the customer of [`CNPJ`] on a running `vitrine`; returns its id.
pub(crate) async fn register_customer(process: &Process, admin: &str) -> String {
    let created: Value = process
        .api()
        .call(Method::POST, "/v1/customers")
        .bearer(admin)
        .json(&customer_body(CNPJ))
        .await
        .expect(StatusCode::CREATED)
        .json();
    created["id"].as_str().unwrap().to_owned()
}

pub(crate) fn stop(mut process: Process) {
    // (Drop then finds it exited.)
    terminate(&process);
    let status = process.child.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

pub(crate) fn token(data_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .env_clear()
        .env("VITRINE_DATA_DIR", data_dir)
        .arg("token")
        .args(args)
        .output()
        .unwrap()
}

/// Runs a `vitrine` command on `data_dir` that must succeed; returns its stdout.
fn cli(data_dir: &Path, args: &[&str]) -> String {
    let output = Command::new(BIN)
        .env_clear()
        .env("VITRINE_DATA_DIR", data_dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A scratch directory with a data directory (not created) and a logs directory beside it.
pub(crate) fn scratch() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let logs = root.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let data_dir = root.path().join("data");
    (root, data_dir, logs)
}

pub(crate) fn last_line(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn data_survives_a_restart_and_the_card_number_stays_secret() {
    let (root, data_dir, logs) = scratch();
    let port = free_port();

    let first = start(&data_dir, &logs, 1, port);
    wait_live(&first).await;
    let admin = last_line(&token(&data_dir, &["--role", "admin"]));
    let payments = last_line(&token(
        &data_dir,
        &["--role", "payments", "--subject", "ana@financeiro"],
    ));

    let created = first
        .api()
        .call(Method::POST, "/v1/customers")
        .bearer(&admin)
        .json(&customer_body(CNPJ))
        .await
        .expect(StatusCode::CREATED);
    let created: Value = created.json();
    assert_eq!(created["cnpj"], "12ABC34501DE35");
    let id = created["id"].as_str().unwrap().to_owned();
    let card: Value = first
        .api()
        .call(Method::POST, &format!("/v1/customers/{id}/payment-methods"))
        .bearer(&admin)
        .json(&card_body(CARD))
        .await
        .json();
    let pm = card["id"].as_str().unwrap().to_owned();
    stop(first);

    let second = start(&data_dir, &logs, 2, port);
    wait_live(&second).await;
    let read = second
        .api()
        .call(Method::GET, &format!("/v1/customers/{id}"))
        .bearer(&admin)
        .await;
    assert_eq!(
        read.status(),
        StatusCode::OK,
        "the customer survived the restart"
    );
    assert_eq!(read.json::<Value>(), created);
    let revealed: Value = second
        .api()
        .call(
            Method::GET,
            &format!("/v1/customers/{id}/payment-methods/{pm}/secret"),
        )
        .bearer(&payments)
        .await
        .json();
    assert_eq!(
        revealed["card"]["number"], CARD,
        "the sealed secret opens after a restart"
    );
    second
        .api()
        .call(Method::POST, "/v1/customers")
        .bearer(&admin)
        .json(&customer_body(CNPJ))
        .await
        .expect(StatusCode::CONFLICT);
    stop(second);

    let banner = std::fs::read_to_string(logs.join("stderr-1.log")).unwrap();
    assert!(
        banner.contains(&format!("http://127.0.0.1:{port}/docs")),
        "prints where the docs are: {banner}"
    );
    let dir = std::path::absolute(&data_dir).unwrap();
    assert!(
        banner.contains(&format!(
            "VITRINE_DATA_DIR={} vitrine token --role admin",
            dir.display()
        )),
        "prints the token command for this data directory: {banner}"
    );
    let mut checked = 0;
    for file in walk(root.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !contains(&bytes, CARD),
            "{} holds the card number",
            file.display()
        );
        checked += 1;
    }
    assert!(
        checked >= 6,
        "data files and logs were all checked ({checked})"
    );
    let key = std::fs::metadata(data_dir.join("secrets.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600
    );
}

fn refused(output: &std::process::Output, says: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "accepted; expected: {says}");
    assert!(stderr.contains(says), "expected {says:?} in: {stderr}");
}

#[test]
fn token_refuses_what_no_server_would_accept() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("mistyped");
    refused(
        &token(&missing, &["--role", "admin"]),
        "no Vitrine data directory",
    );
    assert!(!missing.exists(), "the token command created {missing:?}");
    for command in [
        [
            "customers",
            "lookup",
            "--id",
            &uuid::Uuid::now_v7().to_string(),
        ]
        .as_slice(),
        &["messages", "dlq", "list", "--queue", "products"],
    ] {
        let output = Command::new(BIN)
            .env_clear()
            .env("VITRINE_DATA_DIR", &missing)
            .args(command)
            .output()
            .unwrap();
        refused(&output, "no Vitrine data directory");
        assert!(!missing.exists(), "{command:?} created {missing:?}");
    }

    // A data directory a server has run in.
    let data_dir = root.path().join("data");
    vitrine_platform::http::auth::load_or_create_hs256_key(&data_dir).unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    refused(&token(&data_dir, &["--role", "customer"]), "--customer-id");
    refused(
        &token(&data_dir, &["--role", "admin", "--customer-id", &id]),
        "only for --role customer",
    );
    refused(&token(&data_dir, &["--role", "payments"]), "--subject");
    for ttl in ["0", "8761"] {
        refused(
            &token(&data_dir, &["--role", "admin", "--ttl-hours", ttl]),
            "--ttl-hours",
        );
    }
    let production = Command::new(BIN)
        .env_clear()
        .env("VITRINE_DATA_DIR", &data_dir)
        .env("VITRINE_MODE", "production")
        .args(["token", "--role", "admin"])
        .output()
        .unwrap();
    refused(&production, "identity provider");

    for args in [
        ["--role", "customer", "--customer-id", &id].as_slice(),
        &["--role", "service", "--ttl-hours", "8760"],
        &["--role", "payments", "--subject", "ana@financeiro"],
    ] {
        assert_eq!(
            last_line(&token(&data_dir, args)).split('.').count(),
            3,
            "a JWT"
        );
    }
}

#[tokio::test]
async fn migrate_prepares_the_configured_postgres() {
    use secrecy::ExposeSecret;
    use sqlx::Connection;

    let url = vitrine_platform::testing::postgres_database().await;
    let data_dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .env_clear()
        .env("VITRINE_DATA_DIR", data_dir.path())
        .env("VITRINE_DATABASE_URL", url.expose_secret())
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut conn = sqlx::PgConnection::connect(url.expose_secret())
        .await
        .unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables \
         WHERE table_name IN ('customers', 'payment_methods', 'secret_access_audit', 'idempotency_keys')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, 4);
}

#[tokio::test]
async fn dead_letters_can_be_listed_and_redriven() {
    use vitrine_messaging::Envelope;
    use vitrine_messaging::transport::{LocalTransport, Publisher, Transport};

    let data_dir = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| cli(data_dir.path(), args);
    cli(&["provision"]);
    let transport = LocalTransport::open(&data_dir.path().join("messaging.sqlite3"))
        .await
        .unwrap();
    let parked = Envelope::new("vitrine.test", "vitrine.test.broken.v1", &"x").unwrap();
    transport
        .send("user-information-dlq", &parked)
        .await
        .unwrap();

    let listed = cli(&["messages", "dlq", "list", "--queue", "user-information"]);
    let lines: Vec<Envelope> = listed
        .lines()
        .map(|l| Envelope::from_json(l).unwrap())
        .collect();
    assert_eq!(lines, vec![parked.clone()]);
    assert!(
        cli(&["messages", "dlq", "redrive", "--queue", "user-information"])
            .starts_with("1 message")
    );
    assert_eq!(
        cli(&["messages", "dlq", "list", "--queue", "user-information"]),
        ""
    );
    let back = transport
        .receive(
            "user-information",
            10,
            Duration::from_secs(2),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(
        back.iter().map(|d| d.envelope.id).collect::<Vec<_>>(),
        vec![parked.id]
    );
}

/// An outbox row the relay cannot read is quarantined by the running server, counted in its
/// metrics, and listed by `vitrine messages quarantine`; the relay keeps going.
#[tokio::test]
async fn unreadable_outbox_rows_are_quarantined_and_listed() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let cli = |args: &[&str]| cli(&data_dir, args);
    cli(&["provision"]);
    cli(&["migrate"]);
    let pool = vitrine_platform::db::sqlite(&data_dir.join("user-information.sqlite3"))
        .await
        .unwrap();
    // As an older writer might have left it: an envelope without `datacontenttype`.
    sqlx::query(
        "INSERT INTO outbox (id, destination, aggregate, envelope, created_at, next_attempt_at) \
         VALUES (randomblob(16), 'topic:user-information-events', 'legacy', \
                 '{\"specversion\":\"1.0\",\"id\":\"x\"}', '2000-01-01T00:00:00+00:00', \
                 '2000-01-01T00:00:00+00:00')",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(cli(&["messages", "quarantine"]), "", "nothing yet");

    let logs = root.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let server = start(&data_dir, &logs, 1, free_port());
    wait_live(&server).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let listed = cli(&["messages", "quarantine"]);
        if !listed.is_empty() || Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let row: Value =
        serde_json::from_str(listed.lines().next().expect("a quarantined row")).unwrap();
    assert_eq!(row["where"], "outbox");
    assert_eq!(row["service"], "user-information");
    assert_eq!(row["aggregate"], "legacy");
    assert!(
        row["error"]
            .as_str()
            .unwrap()
            .contains("unreadable envelope"),
        "{row}"
    );
    let metrics = server.api().call(Method::GET, "/metrics").await.text();
    assert!(
        metrics.contains("vitrine_outbox_quarantined_total 1"),
        "counted: {metrics}"
    );
    stop(server);
}

#[tokio::test]
async fn provision_creates_the_sns_sqs_topology_idempotently() {
    use vitrine_messaging::transport::{SqsTransport, Transport};

    let endpoint = std::env::var("VITRINE_TEST_SQS_ENDPOINT")
        .expect("VITRINE_TEST_SQS_ENDPOINT is not set: run scripts/test.sh");
    let prefix = format!("p{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let data_dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let output = Command::new(BIN)
            .env_clear()
            .env("VITRINE_DATA_DIR", data_dir.path())
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .args(["provision", "--prefix", &prefix])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // The same names seen through the transport the services use.
    let config = aws_config_for(&endpoint).await;
    let transport = SqsTransport::new(&config, &prefix);
    assert_eq!(
        transport.list_queues("").await.unwrap(),
        vec![
            "products",
            "products-dlq",
            "products-work",
            "products-work-dlq",
            "user-information",
            "user-information-dlq"
        ]
    );
    assert!(
        !data_dir.path().join("messaging.sqlite3").exists(),
        "nothing local was created"
    );
}

async fn aws_config_for(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

/// A caller killed mid-request (SIGKILL: no shutdown path runs) leaves its reply queue behind
/// only until another caller's janitor sees it expire; a caller that finishes removes its own.
#[tokio::test]
async fn a_killed_caller_leaves_no_reply_queue_behind() {
    use vitrine_messaging::transport::{LocalTransport, Transport};

    let data_dir = tempfile::tempdir().unwrap();
    let caller = |id: &str, timeout: &str| {
        Command::new(BIN)
            .env_clear()
            .env("VITRINE_DATA_DIR", data_dir.path())
            .env("VITRINE_REPLY_QUEUE_TTL_SECS", "2")
            .args(["customers", "lookup", "--id", id, "--timeout-secs", timeout])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let provisioned = Command::new(BIN)
        .env_clear()
        .env("VITRINE_DATA_DIR", data_dir.path())
        .arg("provision")
        .status();
    assert!(provisioned.unwrap().success());
    let transport = LocalTransport::open(&data_dir.path().join("messaging.sqlite3"))
        .await
        .unwrap();
    let replies = || async { transport.list_queues("vitrine-cli-replies-").await.unwrap() };

    // Nobody serves user-information here, so the lookup waits: kill it while it does.
    let id = uuid::Uuid::now_v7().to_string();
    let mut doomed = caller(&id, "60");
    let deadline = Instant::now() + Duration::from_secs(30);
    while replies().await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the caller never created its reply queue"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let orphan = replies().await;
    assert_eq!(
        orphan.len(),
        1,
        "the killed caller's queue is still there: {orphan:?}"
    );

    // Past its TTL, the next caller's janitor deletes it; that caller times out (exit 4) and
    // removes its own queue on the way out.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let survivor = caller(&id, "1").wait_with_output().unwrap();
    assert_eq!(
        survivor.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&survivor.stdout)
    );
    assert!(String::from_utf8_lossy(&survivor.stdout).contains("unavailable"));
    assert_eq!(
        replies().await,
        Vec::<String>::new(),
        "no reply queue is left behind"
    );
}

/// Configured for production, the service refuses embedded stand-ins and names what is missing.
#[test]
fn production_mode_fails_closed_naming_the_missing_setting() {
    let data_dir = tempfile::tempdir().unwrap();
    let run = |extra: &[(&str, &str)]| {
        let mut command = Command::new(BIN);
        command
            .env_clear()
            .env("VITRINE_DATA_DIR", data_dir.path())
            .env("VITRINE_MODE", "production");
        command.env("VITRINE_LISTEN", "127.0.0.1:0");
        for (key, value) in extra {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        assert!(
            !output.status.success(),
            "production started with embedded adapters"
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    // Everything missing is named at once, each setting once.
    let nothing = run(&[]);
    for setting in [
        "VITRINE_JWKS_URL",
        "VITRINE_JWT_ISSUER",
        "VITRINE_JWT_AUDIENCE",
        "VITRINE_TRANSPORT",
        "VITRINE_DATABASE_URL",
        "VITRINE_VAULT_ADDR",
        "VITRINE_VAULT_TOKEN",
        "VITRINE_FINGERPRINT_KEY",
        "VITRINE_PRODUCTS_DATABASE_URL",
        "VITRINE_REDIS_URL",
    ] {
        assert!(
            nothing.contains(setting),
            "{setting} not named in: {nothing}"
        );
    }
    assert_eq!(
        nothing.matches("VITRINE_FINGERPRINT_KEY:").count(),
        1,
        "{nothing}"
    );
    // Tokens and secrets never travel over plain HTTP to another machine.
    let plain = run(&[
        ("VITRINE_JWKS_URL", "http://id.example.test/jwks.json"),
        ("VITRINE_VAULT_ADDR", "http://vault.example.test:8200"),
    ]);
    assert!(
        plain.contains("VITRINE_JWKS_URL: must be an https URL"),
        "{plain}"
    );
    assert!(
        plain.contains("VITRINE_VAULT_ADDR: must be an https URL"),
        "{plain}"
    );
    // The HTTP directory sends the service token to user-information.
    let http_directory = run(&[
        ("VITRINE_CUSTOMER_DIRECTORY", "http"),
        ("VITRINE_USER_INFORMATION_URL", "http://users.example.test"),
    ]);
    for problem in [
        "VITRINE_USER_INFORMATION_URL: must be an https URL",
        "VITRINE_SERVICE_TOKEN",
    ] {
        assert!(http_directory.contains(problem), "{http_directory}");
    }
    assert!(
        run(&[("VITRINE_CUSTOMER_DIRECTORY", "http")]).contains("VITRINE_USER_INFORMATION_URL"),
        "a missing URL is named"
    );
    let jwks = [("VITRINE_JWKS_URL", "https://id.example.test/jwks.json")];
    assert!(run(&jwks).contains("VITRINE_TRANSPORT"));
    let sqs = [
        jwks[0],
        ("VITRINE_TRANSPORT", "sqs"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    assert!(run(&sqs).contains("VITRINE_VAULT_ADDR"));
    let vault = std::env::var("VITRINE_TEST_VAULT_ADDR").expect("run scripts/test.sh");
    let mut with_vault = sqs.to_vec();
    with_vault.extend([
        ("VITRINE_VAULT_ADDR", vault.as_str()),
        ("VITRINE_VAULT_TOKEN", "root"),
        (
            "VITRINE_FINGERPRINT_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ),
    ]);
    assert!(run(&with_vault).contains("VITRINE_DATABASE_URL"));
    // Each service owns its database.
    let (customers_db, products_db) = tokio::runtime::Runtime::new().unwrap().block_on(async {
        use secrecy::ExposeSecret;
        (
            vitrine_platform::testing::postgres_database()
                .await
                .expose_secret()
                .to_owned(),
            vitrine_platform::testing::postgres_database()
                .await
                .expose_secret()
                .to_owned(),
        )
    });
    with_vault.push(("VITRINE_DATABASE_URL", customers_db.as_str()));
    assert!(run(&with_vault).contains("VITRINE_PRODUCTS_DATABASE_URL"));
    with_vault.push(("VITRINE_PRODUCTS_DATABASE_URL", products_db.as_str()));
    assert!(run(&with_vault).contains("VITRINE_REDIS_URL"));
    assert!(
        !data_dir.path().join("secrets.key").exists(),
        "no local secret key was created"
    );
}

/// Every binary answers `--help` and `--version` and exits, instead of starting a server on the
/// default port and data directory.
#[test]
fn every_binary_answers_help_and_version() {
    let root = tempfile::tempdir().unwrap();
    for (name, bin) in [
        ("vitrine", BIN),
        ("user-information", env!("CARGO_BIN_EXE_user-information")),
        ("products", env!("CARGO_BIN_EXE_products")),
    ] {
        for flag in ["--help", "--version"] {
            let output = Command::new(bin)
                .env_clear()
                .current_dir(root.path())
                .env("VITRINE_LISTEN", "127.0.0.1:1")
                .arg(flag)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "{name} {flag}: {output:?}");
            assert!(stdout.contains(name), "{name} {flag}: {stdout}");
        }
    }
    assert!(
        std::fs::read_dir(root.path()).unwrap().next().is_none(),
        "no data directory was created"
    );
}

/// A second server on the same data directory is refused, naming the process that holds it.
#[tokio::test]
async fn one_server_per_data_directory() {
    let (_root, data_dir, logs) = scratch();
    let first = start(&data_dir, &logs, 1, free_port());
    wait_live(&first).await;

    let second = Command::new(BIN)
        .env_clear()
        .env("VITRINE_DATA_DIR", &data_dir)
        .env("VITRINE_LISTEN", format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second server ran");
    assert!(
        stderr.contains(&format!("pid {}", first.child.id())),
        "names the holder: {stderr}"
    );
    stop(first);
    let third = start(&data_dir, &logs, 3, free_port());
    wait_live(&third).await;
    stop(third);
}

/// The refusal comes before anything else touches the directory: a refused process has not
/// created a signing key, a database or a queue file there.
#[test]
fn a_refused_server_leaves_the_data_directory_untouched() {
    let (_root, data_dir, _logs) = scratch();
    std::fs::create_dir_all(&data_dir).unwrap();
    let held = std::fs::File::create(data_dir.join("products.lock")).unwrap();
    held.try_lock().unwrap();

    let refused = Command::new(BIN)
        .env_clear()
        .env("VITRINE_DATA_DIR", &data_dir)
        .env("VITRINE_LISTEN", format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert!(!refused.status.success(), "the server ran");
    let mut left: Vec<String> = std::fs::read_dir(&data_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".lock"))
        .collect();
    left.sort();
    assert!(left.is_empty(), "the refused process wrote {left:?}");
}

/// Waits up to `seconds` for `process` to exit; its status.
fn exited_within(process: &mut Process, seconds: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(status) = process.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "still running {seconds} s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn terminate(process: &Process) {
    let pid = process.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// `vitrine 2>&1 | head -1`: the reader goes away. Writing the banner and the logs to the closed
/// pipe neither panics the server nor keeps SIGTERM from draining it and exiting 0.
#[tokio::test]
async fn a_closed_output_never_wedges_the_server() {
    let root = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .env_clear()
        .env("VITRINE_DATA_DIR", root.path().join("data"))
        .env("VITRINE_LISTEN", format!("127.0.0.1:{port}"))
        .env("VITRINE_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    let mut process = Process::new(child, port);
    wait_live(&process).await;
    for _ in 0..20 {
        let ready = process.api().call(Method::GET, "/health/ready").await;
        assert_eq!(ready.status(), StatusCode::OK, "still serving");
    }
    terminate(&process);
    let status = exited_within(&mut process, 20);
    assert!(status.success(), "drained and exited cleanly: {status}");
}

/// A request still running when the grace period ends is cut off: the last log line says how
/// many, and the exit code says it happened.
#[tokio::test]
async fn requests_cut_off_at_shutdown_are_counted_and_fail_the_exit() {
    use tokio::io::AsyncWriteExt;

    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let port = free_port();
    let out = root.path().join("stdout.log");
    let child = Command::new(BIN)
        .env_clear()
        .env("VITRINE_DATA_DIR", &data_dir)
        .env("VITRINE_LISTEN", format!("127.0.0.1:{port}"))
        .env("VITRINE_SHUTDOWN_GRACE_SECS", "1")
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut process = Process::new(child, port);
    wait_live(&process).await;
    let admin = last_line(&token(&data_dir, &["--role", "admin"]));
    // A body that never finishes arriving: the handler waits for it past the deadline.
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    slow.write_all(
        format!(
            "POST /v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    terminate(&process);
    let status = exited_within(&mut process, 20);
    assert!(!status.success(), "a cut-off shutdown exits non-zero");
    let logs = std::fs::read_to_string(&out).unwrap();
    let last: Value = serde_json::from_str(logs.lines().last().unwrap()).unwrap();
    assert_eq!(last["message"], "shutdown complete", "{logs}");
    assert_eq!(last["cut_off"], 1, "{last}");
    drop(slow);
}

/// Configuration mistakes stop start-up with a message naming the setting as its source spells
/// it, instead of being ignored (a misspelt key) or silently dropping every log line (a bad
/// filter).
#[test]
fn configuration_mistakes_are_refused_by_name() {
    let (_root, data_dir, _logs) = scratch();
    for (variable, value, says) in [
        (
            "VITRINE_MAX_BODY_BYTE",
            "100",
            "VITRINE_MAX_BODY_BYTE (environment) is not a Vitrine setting",
        ),
        ("VITRINE_LOG", "verbose", "VITRINE_LOG"),
        (
            "VITRINE_TRANSPORT",
            "kafka",
            "`kafka` is not one of `local`, `sqs`",
        ),
    ] {
        let mut child = Command::new(BIN)
            .env_clear()
            .env("VITRINE_DATA_DIR", &data_dir)
            .env("VITRINE_LISTEN", "localhost:0")
            .env(variable, value)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A server that started anyway is the failure, not a hang.
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{variable}={value} was accepted: the server started");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        refused(&child.wait_with_output().unwrap(), says);
    }
    assert!(!data_dir.exists(), "nothing started");
}

/// Runs `vitrine args` on `data_dir` with only `env` set: its exit code and its stdout and
/// stderr together.
fn command_output(
    data_dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("VITRINE_DATA_DIR", data_dir)
        .args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

/// `vitrine migrate` names each database (never its password) and the migrations it applied;
/// a URL of another database is refused by its scheme; a connection failure shows its cause;
/// and no error prints a backtrace, even with `RUST_BACKTRACE=1`.
#[tokio::test]
async fn migrate_says_what_it_did() {
    let (_root, data_dir, _logs) = scratch();
    let migrate = |env: &[(&str, &str)]| {
        let mut env = env.to_vec();
        env.push(("RUST_BACKTRACE", "1"));
        let (code, text) = command_output(&data_dir, &["migrate"], &env);
        (code == Some(0), text)
    };

    let (ok, first) = migrate(&[]);
    assert!(ok, "{first}");
    for expected in [
        "user-information: SQLite",
        "user-information.sqlite3 - applied",
        "products: SQLite",
        "  1 initial",
    ] {
        assert!(first.contains(expected), "{expected:?} in {first}");
    }
    let (ok, again) = migrate(&[]);
    assert!(ok, "{again}");
    assert_eq!(again.matches("is up to date").count(), 2, "{again}");

    let url = vitrine_platform::testing::postgres_database().await;
    let url = secrecy::ExposeSecret::expose_secret(&url).to_owned();
    let (ok, postgres) = migrate(&[("VITRINE_DATABASE_URL", &url)]);
    assert!(ok, "{postgres}");
    let database = url.rsplit('/').next().unwrap();
    assert!(
        postgres.contains("user-information: PostgreSQL vitrine@127.0.0.1:")
            && postgres.contains(&format!("/{database} - applied")),
        "{postgres}"
    );
    assert!(
        !postgres.contains("notice"),
        "PostgreSQL's notices stay out: {postgres}"
    );

    let (ok, mysql) = migrate(&[("VITRINE_DATABASE_URL", "mysql://app:hunter2@db/shop")]);
    assert!(!ok);
    assert!(mysql.contains("the scheme `mysql`"), "{mysql}");
    let closed = format!("postgres://app:hunter2@127.0.0.1:{}/shop", free_port());
    let (ok, refused) = migrate(&[("VITRINE_PRODUCTS_DATABASE_URL", &closed)]);
    assert!(!ok);
    assert!(
        refused.contains("user-information: SQLite") && refused.contains("is up to date"),
        "the services before the failure are reported: {refused}"
    );
    assert!(
        refused.contains("error: migrating products")
            && refused.contains("caused by: connecting to PostgreSQL app@127.0.0.1:")
            && refused.contains("Connection refused"),
        "{refused}"
    );
    for output in [&mysql, &refused] {
        assert!(!output.contains("hunter2"), "the password leaked: {output}");
        assert!(!output.contains("backtrace"), "{output}");
    }
}

/// `vitrine provision` lists what it created and what it found, on the embedded queues and on
/// SNS/SQS; `vitrine messages queues` lists every queue with its depth; a dead-letter queue's
/// own name or an unknown one is refused with the names to use.
#[test]
fn queue_commands_say_what_they_touch() {
    let (_root, data_dir, _logs) = scratch();
    let endpoint = std::env::var("VITRINE_TEST_SQS_ENDPOINT")
        .expect("VITRINE_TEST_SQS_ENDPOINT: run scripts/test.sh (it starts the SNS/SQS server)");
    let prefix = format!("t{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let sqs: [(&str, &str); 6] = [
        ("VITRINE_TRANSPORT", "sqs"),
        ("VITRINE_MESSAGING_PREFIX", &prefix),
        ("AWS_ENDPOINT_URL", &endpoint),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let vitrine = |args: &[&str], env: &[(&str, &str)]| command_output(&data_dir, args, env);

    for env in [&[][..], &sqs[..]] {
        let (code, first) = vitrine(&["provision"], env);
        assert_eq!(code, Some(0), "{first}");
        for line in [
            "created  topic products-events",
            "created  queue products",
            "created  dead-letter queue products-dlq",
            "created  subscription user-information-events -> products",
            "created  queue products-work",
            "10 created, 0 already in place",
        ] {
            assert!(first.contains(line), "{line:?} in {first}");
        }
        let (code, again) = vitrine(&["provision"], env);
        assert_eq!(code, Some(0), "{again}");
        assert!(
            again.contains("found    queue products") && again.contains("0 created, 10 already"),
            "{again}"
        );
        let (code, listed) = vitrine(&["messages", "queues"], env);
        assert_eq!(code, Some(0), "{listed}");
        assert!(listed.starts_with("QUEUE"), "{listed}");
        for queue in ["user-information", "products", "products-work"] {
            assert!(
                listed
                    .lines()
                    .any(|line| line.split_whitespace().collect::<Vec<_>>()
                        == [queue, "0", "0", "0"]),
                "{queue} with empty depths in {listed}"
            );
        }
    }

    let (code, dlq) = vitrine(
        &["messages", "dlq", "redrive", "--queue", "products-dlq"],
        &[],
    );
    assert_eq!(code, Some(2), "{dlq}");
    assert!(
        dlq.contains("is the dead-letter queue of `products`"),
        "{dlq}"
    );
    let (code, unknown) = vitrine(&["messages", "dlq", "list", "--queue", "orders"], &[]);
    assert_eq!(code, Some(2), "{unknown}");
    assert!(
        unknown.contains("the queues are: user-information, products, products-work"),
        "{unknown}"
    );
}

/// `vitrine webhooks listen` verifies each delivery with the endpoint's secret: 204 and
/// `"verified": true` for a signed one, 401 and the reason for one signed with another secret.
#[tokio::test]
async fn the_webhook_listener_verifies_what_it_receives() {
    use vitrine_webhooks::secret::WebhookSecret;
    use vitrine_webhooks::signature::signature;

    let (_root, data_dir, _logs) = scratch();
    let secret = WebhookSecret::generate();
    let port = free_port();
    let mut listener = Command::new(BIN)
        .env_clear()
        .env("VITRINE_DATA_DIR", &data_dir)
        .args([
            "webhooks",
            "listen",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--secret", &secret.expose()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/hooks/vitrine");
    let body =
        r#"{"type":"product.created","timestamp":"2026-12-01T12:00:00.000Z","data":{"sku":"X"}}"#;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let send = async |with: &WebhookSecret| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let sent = client
                .post(&url)
                .header("webhook-id", "msg_1")
                .header("webhook-timestamp", now.to_string())
                .header(
                    "webhook-signature",
                    signature(&[with], "msg_1", now, body.as_bytes()),
                )
                .body(body)
                .send()
                .await;
            match sent {
                Ok(response) => return response.status().as_u16(),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("the listener never answered: {error}"),
            }
        }
    };
    assert_eq!(send(&secret).await, 204);
    assert_eq!(send(&WebhookSecret::generate()).await, 401);
    Command::new("kill")
        .args(["-TERM", &listener.id().to_string()])
        .status()
        .unwrap();
    let mut output = String::new();
    std::io::Read::read_to_string(listener.stdout.as_mut().unwrap(), &mut output).unwrap();
    listener.wait().unwrap();
    let lines: Vec<serde_json::Value> = output
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{output}");
    assert_eq!(lines[0]["verified"], true);
    assert_eq!(lines[0]["body"]["data"]["sku"], "X");
    assert_eq!(lines[1]["verified"], false);
    assert!(lines[1]["error"].as_str().unwrap().contains("signature"));
}

/// `vitrine products import FILE` against the embedded server it defaults to (URL from
/// VITRINE_LISTEN, an admin token from the data directory): streams the file, follows the
/// import to the end, prints the summary and each bad line with its field, and exits 2 because
/// some lines failed; run again with the same `--idempotency-key`, it follows the same import
/// instead of importing twice.
#[tokio::test]
async fn products_import_streams_a_file_and_reports_its_bad_lines() {
    let (root, data_dir, logs) = scratch();
    let port = free_port();
    let server = start(&data_dir, &logs, 0, port);
    wait_live(&server).await;
    let admin = last_line(&token(&data_dir, &["--role", "admin"]));
    let seller = &register_customer(&server, &admin).await;
    let mut lines = String::new();
    for line in 1..=1200 {
        let product = match line {
            7 => {
                serde_json::json!({"seller_id": seller, "sku": "NO-NAME", "price": {"amount": 1, "currency": "BRL"}})
            }
            500 => {
                serde_json::json!({"seller_id": seller, "sku": "bad sku!", "name": "x", "price": {"amount": 1, "currency": "BRL"}})
            }
            _ => {
                serde_json::json!({"seller_id": seller, "sku": format!("CLI-{line}"), "name": "Café",
                                    "price": {"amount": 990, "currency": "BRL"}, "initial_stock": 2})
            }
        };
        lines.push_str(&product.to_string());
        lines.push('\n');
    }
    lines.push_str("{not json\n");
    let file = root.path().join("catalogue.ndjson");
    std::fs::write(&file, lines).unwrap();
    let run = {
        let (data_dir, file) = (data_dir.clone(), file.clone());
        move || {
            Command::new(BIN)
                .env_clear()
                .env("VITRINE_DATA_DIR", &data_dir)
                .env("VITRINE_LISTEN", format!("127.0.0.1:{port}"))
                .args(["products", "import", "--idempotency-key", "catalogue-1"])
                .arg(&file)
                .output()
                .unwrap()
        }
    };
    let output = tokio::task::spawn_blocking(run.clone()).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.code(),
        Some(2),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("1201 lines, 1198 created, 3 failed"),
        "{stdout}"
    );
    for expected in ["line 7: name:", "line 500: sku:", "line 1201: the line"] {
        assert!(stdout.contains(expected), "{expected}: {stdout}");
    }
    let again = tokio::task::spawn_blocking(run).await.unwrap();
    let again = String::from_utf8_lossy(&again.stdout).into_owned();
    let import_id = |out: &str| out.split_whitespace().nth(1).unwrap_or_default().to_owned();
    assert_eq!(import_id(&again), import_id(&stdout), "{again}");
    let listed: Value = server
        .api()
        .call(
            Method::GET,
            &format!("/v1/products?seller_id={seller}&limit=1"),
        )
        .bearer(&admin)
        .await
        .json();
    assert!(listed["next_cursor"].is_string(), "products were created");
    stop(server);
}

/// A chunk failing for good (its command dead-lettered) leaves an import `running`: the CLI
/// gives up following it once its counts stand still for `--stall-timeout`, saying where to
/// look, instead of polling for ever. The server here is a stand-in answering as the products
/// service would for such an import (one whose failure cannot be staged from outside).
#[tokio::test]
async fn products_import_gives_up_on_an_import_that_stands_still() {
    use axum::routing::{get, post};
    let api = axum::Router::new()
        .route(
            "/v1/product-imports",
            post(|body: axum::body::Bytes| async move {
                assert!(!body.is_empty(), "the file is uploaded");
                (
                    StatusCode::ACCEPTED,
                    axum::Json(serde_json::json!({"id": "stuck", "status": "queued", "received": 3})),
                )
            }),
        )
        .route(
            "/v1/product-imports/stuck",
            get(|| async {
                axum::Json(
                    serde_json::json!({"id": "stuck", "status": "running", "received": 3, "created": 1, "failed": 0}),
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api).await });
    let (root, _, _) = scratch();
    let file = root.path().join("three.ndjson");
    std::fs::write(&file, "{}\n{}\n{}\n").unwrap();
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .env_clear()
            .args([
                "products",
                "import",
                "--stall-timeout",
                "2",
                "--token",
                "t",
                "--url",
            ])
            .arg(&base)
            .arg(&file)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .contains("import stuck has not moved for 2 s (1 of 3 lines handled, status running)"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "it gave up");
}
