//! The production topology, end to end: `user-information` and `products` as separate
//! processes in production mode, on PostgreSQL (products: primary + streaming replica), Redis,
//! Vault (OpenBao) and SNS/SQS (moto), all started by `scripts/test.sh`. Tokens come from a key
//! set this test serves, standing in for the identity provider (a third party).
//!
//! Create a customer, add a card, list a product for that seller (checked over SQS
//! request/reply), reserve it, suspend the seller, and watch the product go inactive.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use vitrine_messaging::transport::{SqsTransport, Transport};
use vitrine_platform::testing;

use crate::common::Api;

const PRIVATE_KEY: &[u8] =
    include_bytes!("../../../vitrine-platform/tests/fixtures/jwks-test-ed25519.pem");
/// The issuer and audience the services require of tokens.
const ISSUER: &str = "https://id.vitrine.test";
const AUDIENCE: &str = "vitrine";
/// The public half of the key above, base64url (RFC 8037 `x`).
const PUBLIC_X: &str = "JPDTfiyEuBW2LmjLC1nY-xDLEdvOFohY60DSHRb4_4k";

/// Serves the identity provider's key set; returns its URL.
async fn identity_provider() -> String {
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(|| async {
            axum::Json(json!({"keys": [
                {"kty": "OKP", "crv": "Ed25519", "x": PUBLIC_X, "kid": "e2e", "alg": "EdDSA", "use": "sig"}
            ]}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn token(roles: &[&str], customer_id: Option<&str>) -> String {
    use base64::Engine;
    let pem = std::str::from_utf8(PRIVATE_KEY).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("e2e".to_owned());
    let mut claims = json!({
        "sub": "e2e",
        "roles": roles,
        "exp": chrono::Utc::now().timestamp() + 600,
        "iss": ISSUER,
        "aud": AUDIENCE,
    });
    if let Some(id) = customer_id {
        claims["customer_id"] = json!(id);
    }
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&der)).unwrap()
}

/// The per-service binaries of this crate (cargo builds them for its tests).
fn binary(name: &str) -> PathBuf {
    PathBuf::from(match name {
        "user-information" => env!("CARGO_BIN_EXE_user-information"),
        "products" => env!("CARGO_BIN_EXE_products"),
        other => panic!("no binary {other}"),
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A service process, stopped when dropped.
struct Process {
    name: &'static str,
    child: Child,
    base: String,
    /// The typed client for `base`; it outlives restarts (same port, no kept connections).
    api: Api,
    log: PathBuf,
    port: u16,
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    fn api(&self) -> &Api {
        &self.api
    }

    fn start(name: &'static str, dir: &std::path::Path, env: &[(&'static str, String)]) -> Process {
        Self::spawn(name, dir, env, free_port())
    }

    fn spawn(
        name: &'static str,
        dir: &std::path::Path,
        env: &[(&'static str, String)],
        port: u16,
    ) -> Process {
        let log = dir.join(format!("{name}-{}.log", uuid::Uuid::now_v7().simple()));
        let mut command = Command::new(binary(name));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("VITRINE_LISTEN", format!("127.0.0.1:{port}"))
            .env("VITRINE_DATA_DIR", dir.join(name))
            .env("VITRINE_LOG_FORMAT", "json")
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ));
        for (key, value) in env {
            command.env(key, value);
        }
        let base = format!("http://127.0.0.1:{port}");
        Process {
            name,
            child: command.spawn().unwrap(),
            api: Api::unpooled(&base),
            base,
            log,
            port,
            dir: dir.to_owned(),
            env: env.to_vec(),
        }
    }

    /// Stops the process (SIGKILL: a crash; else SIGTERM: a rolling restart) and starts it
    /// again on the same port with the same configuration.
    async fn restart(&mut self, crash: bool) {
        self.signal(if crash { "-KILL" } else { "-TERM" });
        self.child.wait().unwrap();
        let mut next = Self::spawn(self.name, &self.dir, &self.env, self.port);
        std::mem::swap(self, &mut next);
        drop(next);
        self.wait_ready().await;
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    async fn wait_ready(&mut self) {
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{} exited with {status}:\n{}",
                    self.name,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if let Ok(response) = self
                .api()
                .call(Method::GET, "/health/ready")
                .try_send()
                .await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{} never became ready:\n{}",
            self.name,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

/// Both services as production processes, with an `audit` queue subscribed to their creation
/// events.
struct Stack {
    customers: Process,
    products: Process,
    client: reqwest::Client,
    sqs: SqsTransport,
    _dir: tempfile::TempDir,
}

const AUDIT: &str = "audit";

async fn start_stack() -> Stack {
    start_stack_with(&[]).await
}

/// [`start_stack`] with settings added to both services' environment.
async fn start_stack_with(extra: &[(&'static str, String)]) -> Stack {
    use vitrine_contracts::{products as product_events, user_information as customer_events};
    use vitrine_messaging::transport::{QueueSpec, Subscription};

    let jwks = identity_provider().await;
    let sqs = SqsTransport::for_tests().await;
    let mut topology = user_information::app::topology();
    let products_topology = products::app::topology();
    topology.topics.extend(products_topology.topics);
    topology.queues.extend(products_topology.queues);
    topology.queues.push(QueueSpec {
        name: AUDIT.to_owned(),
        subscriptions: vec![
            Subscription {
                topic: customer_events::TOPIC.to_owned(),
                event_types: vec![customer_events::CUSTOMER_REGISTERED.to_owned()],
            },
            Subscription {
                topic: product_events::TOPIC.to_owned(),
                event_types: vec![product_events::PRODUCT_CREATED.to_owned()],
            },
        ],
        max_receives: 5,
    });
    sqs.provision(&topology).await.unwrap();
    let endpoint = std::env::var("VITRINE_TEST_SQS_ENDPOINT").unwrap();
    let vault = std::env::var("VITRINE_TEST_VAULT_ADDR").expect("run scripts/test.sh");
    let customers_db = testing::postgres_database().await;
    let (products_db, products_replica) = testing::postgres_pair().await;
    let common: Vec<(&'static str, String)> = vec![
        ("VITRINE_MODE", "production".to_owned()),
        ("VITRINE_JWKS_URL", jwks),
        ("VITRINE_JWT_ISSUER", ISSUER.to_owned()),
        ("VITRINE_JWT_AUDIENCE", AUDIENCE.to_owned()),
        ("VITRINE_TRANSPORT", "sqs".to_owned()),
        ("VITRINE_MESSAGING_PREFIX", sqs.prefix().to_owned()),
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        (
            "VITRINE_FINGERPRINT_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned(),
        ),
        ("VITRINE_SHUTDOWN_GRACE_SECS", "5".to_owned()),
    ]
    .into_iter()
    .chain(extra.iter().cloned())
    .collect();
    let mut customers_env = common.clone();
    customers_env.extend([
        (
            "VITRINE_DATABASE_URL",
            customers_db.expose_secret().to_owned(),
        ),
        ("VITRINE_VAULT_ADDR", vault.clone()),
        ("VITRINE_VAULT_TOKEN", "root".to_owned()),
    ]);
    let mut products_env = common;
    products_env.extend([
        // Webhook signing secrets.
        ("VITRINE_VAULT_ADDR", vault),
        ("VITRINE_VAULT_TOKEN", "root".to_owned()),
        (
            "VITRINE_PRODUCTS_DATABASE_URL",
            products_db.expose_secret().to_owned(),
        ),
        (
            "VITRINE_PRODUCTS_REPLICA_URL",
            products_replica.expose_secret().to_owned(),
        ),
        (
            "VITRINE_REDIS_URL",
            testing::redis_url().expose_secret().to_owned(),
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut customers = Process::start("user-information", dir.path(), &customers_env);
    let mut products = Process::start("products", dir.path(), &products_env);
    customers.wait_ready().await;
    products.wait_ready().await;
    Stack {
        customers,
        products,
        client,
        sqs,
        _dir: dir,
    }
}

impl Stack {
    /// Registers a customer (as admin) to list products for; its id.
    async fn register_seller(&self) -> String {
        let created: Value = self
            .customers
            .api()
            .call(Method::POST, "/v1/customers")
            .bearer(token(&["admin"], None))
            .json(&customer_body("12.ABC.345/01DE-35"))
            .await
            .expect(StatusCode::CREATED)
            .json();
        created["id"].as_str().unwrap().to_owned()
    }
}

fn customer_body(cnpj: &str) -> Value {
    json!({
        "cnpj": cnpj,
        "legal_name": "Distribuidora Ponta a Ponta Ltda",
        "email": "compras@pontaaponta.com.br",
        "address": {"street": "Rua Augusta", "number": "500", "district": "Consolação",
                    "city": "São Paulo", "state": "SP", "postal_code": "01305-000"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_and_products_work_across_processes() {
    let stack = start_stack().await;
    let (customers, products) = (&stack.customers, &stack.products);
    let admin = token(&["admin"], None);
    let seller = stack.register_seller().await;
    let card = customers
        .api()
        .call(
            Method::POST,
            &format!("/v1/customers/{seller}/payment-methods"),
        )
        .bearer(&admin)
        .json(
            &json!({"type": "card", "card": {"number": "4111111111111111",
                      "holder_name": "MARIA SOUZA", "exp_month": 12, "exp_year": 2031}}),
        )
        .await;
    card.expect(StatusCode::CREATED);

    // The seller check travels over SQS to the other process and back.
    let seller_token = token(&["customer"], Some(&seller));
    let listed = products
        .api()
        .call(Method::POST, "/v1/products")
        .bearer(&seller_token)
        .json(
            &json!({"seller_id": seller, "sku": "E2E-1", "name": "Produto ponta a ponta",
                      "price": {"amount": 4990, "currency": "BRL"}, "initial_stock": 5}),
        )
        .await;
    let product: Value = listed.expect(StatusCode::CREATED).json();
    let product_path = format!("/v1/products/{}", product["id"].as_str().unwrap());

    let buyer = token(&["customer"], Some(&uuid::Uuid::now_v7().to_string()));
    let reserved = products
        .api()
        .call(Method::POST, "/v1/reservations")
        .bearer(&buyer)
        .json(&json!({"items": [{"product_id": product["id"], "quantity": 2}]}))
        .await
        .expect(StatusCode::CREATED);
    let after: Value = products
        .api()
        .call(Method::GET, &product_path)
        .bearer(&buyer)
        .header("consistency-token", reserved.header("consistency-token"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(after["stock"]["available"], 3);

    let suspended = customers
        .api()
        .call(Method::PATCH, &format!("/v1/customers/{seller}"))
        .bearer(&admin)
        .json(&json!({"status": "suspended"}))
        .await;
    suspended.expect(StatusCode::OK);
    // Seconds normally; the deadline allows for a moto saturated by the rest of the suite.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let body: Value = products
            .api()
            .call(Method::GET, &product_path)
            .bearer(&buyer)
            .await
            .expect(StatusCode::OK)
            .json();
        if body["status"] == "inactive" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the product stayed {} 60 s after its seller was suspended",
            body["status"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes as fast as one client can while `restart` runs; returns the ids the service
/// acknowledged (201). Requests that fail during the restart are not acknowledged: their
/// outcome is unknown to the client, and they may or may not have committed. The restart
/// begins once a few writes were acknowledged and the writing ends once a few more were
/// acknowledged after it (each within 30 s), not after fixed times: on a loaded machine a
/// fixed window could see no write at all.
async fn write_through(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: impl Fn(usize) -> Value,
    restart: impl Future<Output = ()>,
) -> Vec<String> {
    const SOME: usize = 6;
    let stop = tokio_util::sync::CancellationToken::new();
    let acknowledged_so_far = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (client, url, token, stop, count) = (
            client.clone(),
            url.to_owned(),
            token.to_owned(),
            stop.clone(),
            acknowledged_so_far.clone(),
        );
        let bodies: Vec<Value> = (0..100_000).map(&body).take(2000).collect();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for body in bodies {
                if stop.is_cancelled() {
                    break;
                }
                if let Ok(response) = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    && response.status() == 201
                    && let Ok(created) = response.json::<Value>().await
                {
                    acknowledged.push(created["id"].as_str().unwrap().to_owned());
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            acknowledged
        })
    };
    let reached = |n: usize| {
        let count = acknowledged_so_far.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while count.load(std::sync::atomic::Ordering::SeqCst) < n
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    reached(SOME).await;
    restart.await;
    let after_restart = acknowledged_so_far.load(std::sync::atomic::Ordering::SeqCst);
    reached(after_restart + SOME).await;
    stop.cancel();
    writer.await.unwrap()
}

/// Reads the audit queue until every id in `expected` was announced (or the deadline passes);
/// returns the ids never seen.
async fn unannounced(sqs: &SqsTransport, expected: &[String], within: Duration) -> Vec<String> {
    let mut missing: std::collections::HashSet<String> = expected.iter().cloned().collect();
    let deadline = tokio::time::Instant::now() + within;
    while !missing.is_empty() && tokio::time::Instant::now() < deadline {
        for delivery in sqs
            .receive(AUDIT, 10, Duration::from_secs(1), Duration::from_secs(30))
            .await
            .unwrap()
        {
            if let Some(subject) = &delivery.envelope.subject {
                missing.remove(subject);
            }
            sqs.ack(AUDIT, &delivery).await.unwrap();
        }
    }
    missing.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_under_load_lose_no_committed_message() {
    let mut stack = start_stack().await;
    let admin = token(&["admin"], None);
    let client = stack.client.clone();

    // user-information: a rolling restart (SIGTERM) while customers are being registered.
    let customers_url = format!("{}/v1/customers", stack.customers.base);
    let customers = &mut stack.customers;
    let registered = write_through(
        &client,
        &customers_url,
        &admin,
        |n| {
            let base = format!("{:012}", n + 10_000);
            customer_body(vitrine_kernel::Cnpj::from_base(&base).unwrap().as_str())
        },
        customers.restart(false),
    )
    .await;
    assert!(
        registered.len() > 5,
        "too few writes to mean anything: {}",
        registered.len()
    );

    // products: a crash (SIGKILL) while products are being listed for one seller.
    let seller = registered[0].clone();
    let products_url = format!("{}/v1/products", stack.products.base);
    let products = &mut stack.products;
    let listed = write_through(
        &client,
        &products_url,
        &admin,
        |n| {
            json!({"seller_id": seller, "sku": format!("R-{n}"), "name": "Produto",
                   "price": {"amount": 100, "currency": "BRL"}})
        },
        products.restart(true),
    )
    .await;
    assert!(
        listed.len() > 5,
        "too few writes to mean anything: {}",
        listed.len()
    );

    // A crashed relay's claimed messages wait for their lease (30 s) before another relay
    // publishes them: allow for it.
    let mut expected = registered.clone();
    expected.extend(listed.iter().cloned());
    eprintln!(
        "acknowledged across the restarts: {} customers, {} products",
        registered.len(),
        listed.len()
    );
    let missing = unannounced(&stack.sqs, &expected, Duration::from_secs(90)).await;
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes were never announced: {missing:?}",
        missing.len(),
        expected.len()
    );
}

/// A products replica that stalls (SIGSTOP) past its reply queue's TTL finds the queue deleted
/// by the other replica's janitor. It recreates it, reporting the reply path down meanwhile,
/// and its next seller check succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_caller_gets_its_reply_queue_back() {
    let stack = start_stack_with(&[("VITRINE_REPLY_QUEUE_TTL_SECS", "2".to_owned())]).await;
    let stalled = &stack.products;
    let mut other = Process::start("products", &stalled.dir, &stalled.env);
    other.wait_ready().await;
    let admin = token(&["admin"], None);
    let seller = stack.register_seller().await;
    let reply_queues = async || stack.sqs.list_queues("products-replies-").await.unwrap();
    let before = reply_queues().await;
    assert_eq!(before.len(), 2, "one reply queue per replica");

    stalled.signal("-STOP");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let survivor = loop {
        let left = reply_queues().await;
        if left.len() == 1 {
            break left;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the janitor never deleted it"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let deleted: Vec<_> = before.iter().filter(|q| !survivor.contains(q)).collect();
    stalled.signal("-CONT");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        n += 1;
        let listed = stalled
            .api()
            .call(Method::POST, "/v1/products")
            .bearer(&admin)
            .json(
                &json!({"seller_id": seller, "sku": format!("HEAL-{n}"), "name": "Depois da pausa",
                          "price": {"amount": 100, "currency": "BRL"}, "initial_stock": 1}),
            )
            .await;
        if listed.status() == 201 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled replica never answered again: {}",
            listed.text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = reply_queues().await;
    assert_eq!(after.len(), 2, "its reply queue is back: {after:?}");
    assert!(
        deleted.iter().all(|q| !after.contains(q)),
        "under a new name (SQS refuses a deleted name for 60 s): {after:?}"
    );
    let ready = stalled.api().call(Method::GET, "/health/ready").await;
    assert!(ready.status().is_success());
    drop(other);
}

/// A rolling restart catches a product creation waiting for its seller check (user-information
/// paused past the grace period). Background work outlives the drain, so the reply still
/// arrives once user-information resumes; the handler, detached from its connection, finishes
/// within the window the host gives it and stores its response; the client's retry with the
/// same Idempotency-Key after the restart is that response replayed: one product, no 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_cut_off_by_a_restart_is_replayed_after_it() {
    let mut stack = start_stack_with(&[
        ("VITRINE_SHUTDOWN_GRACE_SECS", "2".to_owned()),
        ("VITRINE_SELLER_LOOKUP_TIMEOUT_MS", "15000".to_owned()),
    ])
    .await;
    let admin = token(&["admin"], None);
    let seller = stack.register_seller().await;
    let product = json!({"seller_id": seller, "sku": "CUT-1", "name": "Cortado no meio",
                         "price": {"amount": 990, "currency": "BRL"}, "initial_stock": 3});
    // The restarted process listens on the same port: one client serves both attempts.
    let create = {
        let (api, admin, product) = (stack.products.api().clone(), admin.clone(), product.clone());
        move || {
            api.call(Method::POST, "/v1/products")
                .bearer(&admin)
                .header("idempotency-key", "restart-cut-1")
                .json(&product)
                .try_send()
        }
    };

    stack.customers.signal("-STOP");
    let first = tokio::spawn(create());
    tokio::time::sleep(Duration::from_millis(700)).await;
    stack.products.signal("-TERM");
    // Past the 2 s grace period, inside the finish window that follows it.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    stack.customers.signal("-CONT");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = stack.products.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "products never exited"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let log = std::fs::read_to_string(&stack.products.log).unwrap();
    let summary: Value = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "shutdown complete")
        .unwrap_or_else(|| panic!("no shutdown summary in:\n{log}"));
    assert_eq!(
        (summary["cut_off"].as_u64(), summary["unfinished"].as_u64()),
        (Some(1), Some(0)),
        "the request was cut off at the grace period and finished after it: {summary}"
    );
    assert!(
        !status.success(),
        "a cut-off request makes the exit non-zero"
    );
    // Whatever reached the client (the answer, or a closed connection), the retry decides.
    let _ = first.await.unwrap();

    let (name, dir, env, port) = (
        stack.products.name,
        stack.products.dir.clone(),
        stack.products.env.clone(),
        stack.products.port,
    );
    stack.products = Process::spawn(name, &dir, &env, port);
    stack.products.wait_ready().await;
    let retried = create().await.unwrap().expect(StatusCode::CREATED);
    assert_eq!(retried.headers()["idempotent-replayed"], "true");
    // The write's token: the listing must see it even if the replica is behind (another test
    // may have paused its replay).
    let token = retried.headers()["consistency-token"].clone();
    let listed: Value = stack
        .products
        .api()
        .call(Method::GET, &format!("/v1/products?seller_id={seller}"))
        .bearer(&admin)
        .header("consistency-token", token.to_str().unwrap())
        .await
        .json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
}

/// Seed R16's queue-first import survives a crash: a 20,000-line import (1% bad lines) is
/// acknowledged, products is killed (SIGKILL) while consumers are creating its products, and
/// after the restart the import completes with every line counted exactly once (a chunk run
/// twice would count its lines twice, its products refused as duplicate SKUs) and the
/// seller's catalogue holding exactly the good lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_midway_finishes_without_duplicates() {
    const LINES: usize = 20_000;
    let mut stack = start_stack().await;
    let admin = token(&["admin"], None);
    let seller = stack.register_seller().await;
    let mut body = String::new();
    for line in 1..=LINES {
        let name = if line % 100 == 0 { "" } else { "Café" };
        body.push_str(
            &json!({"seller_id": seller, "sku": format!("KILL-{line}"), "name": name,
                    "price": {"amount": 990, "currency": "BRL"}, "initial_stock": 1})
            .to_string(),
        );
        body.push('\n');
    }
    let accepted = stack
        .products
        .api()
        .call(Method::POST, "/v1/product-imports")
        .bearer(&admin)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .await
        .expect(StatusCode::ACCEPTED);
    let location = accepted.header("location").to_owned();
    // The restarted process listens on the same port: one client reads before and after.
    let api = stack.products.api().clone();
    let report = async |location: &str| -> Value {
        api.call(Method::GET, location)
            .bearer(token(&["admin"], None))
            .await
            .expect(StatusCode::OK)
            .json()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let now = report(&location).await;
        assert_ne!(
            now["status"], "completed",
            "finished before the crash: {now}"
        );
        if now["created"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never started: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.products.restart(true).await;
    // Liveness, not speed: the import must keep making progress (a busy machine may make it
    // slow), and a minute without a single new line means it is stuck.
    let (mut seen, mut progressed) = (None, tokio::time::Instant::now());
    let done = loop {
        let now = report(&location).await;
        if now["status"] == "completed" {
            break now;
        }
        let handled = (now["created"].as_u64(), now["failed"].as_u64());
        if seen != Some(handled) {
            (seen, progressed) = (Some(handled), tokio::time::Instant::now());
        }
        assert!(
            progressed.elapsed() < Duration::from_secs(60),
            "no progress for a minute after the restart: {now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (done["created"].as_u64(), done["failed"].as_u64()),
        (Some(19_800), Some(200)),
        "{done}"
    );
    // The listing may come from the replica: counted again until it has caught up.
    let count = async || {
        let mut listed = 0;
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/products?seller_id={seller}&limit=100");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let page: Value = stack
                .products
                .api()
                .call(Method::GET, &path)
                .bearer(&admin)
                .await
                .expect(StatusCode::OK)
                .json();
            listed += page["items"].as_array().unwrap().len();
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return listed,
            }
        }
    };
    let settle = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let listed = count().await;
        assert!(listed <= 19_800, "{listed} products: some line created two");
        if listed == 19_800 {
            break;
        }
        assert!(tokio::time::Instant::now() < settle, "only {listed} listed");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
