//! Dependencies that go away while the service runs, each a server of the test's own so that
//! killing it disturbs no other test: Vault (a dev OpenBao) makes payment-method writes fail
//! with 503 and leave nothing half-written; Redis makes product reads go to the database, with
//! no errors and no stale values.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;
use reqwest::StatusCode;
use serde_json::Value;

/// An OpenBao dev server of this test's own, killed when dropped.
struct OwnVault {
    child: Child,
    addr: String,
}

impl OwnVault {
    async fn start() -> OwnVault {
        let bin = std::env::var("VITRINE_TEST_BAO_BIN")
            .expect("VITRINE_TEST_BAO_BIN is not set: run scripts/test.sh");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("http://127.0.0.1:{port}");
        let mut child = Command::new(bin)
            .args(["server", "-dev", "-dev-root-token-id=root"])
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client
                .get(format!("{addr}/v1/sys/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return OwnVault { child, addr };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("OpenBao did not start");
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the server: requests hang, data is kept.
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

    /// The keys under `path` in the KV v2 mount (empty when there is nothing there).
    async fn list(&self, path: &str) -> Vec<String> {
        let response = reqwest::Client::new()
            .request(
                reqwest::Method::from_bytes(b"LIST").unwrap(),
                format!("{}/v1/secret/metadata/{path}", self.addr),
            )
            .header("X-Vault-Token", "root")
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::NOT_FOUND {
            return Vec::new();
        }
        let body: Value = response.json().await.unwrap();
        body["data"]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnVault {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_writes_without_vault_are_503_and_leave_nothing_behind() {
    let mut vault = OwnVault::start().await;
    let addr = vault.addr.clone();
    let app = spawn_app_with(Database::PostgresAndVault, move |settings| {
        settings.vault_addr = Some(addr);
    })
    .await;
    let customer = app.create_customer(&customer_body(&unique_cnpj())).await;
    let methods = format!("/v1/customers/{customer}/payment-methods");
    let kept: Value = app
        .post(&methods, &app.admin(), &card_body(CARD))
        .await
        .json();
    let kept_id = kept["id"].as_str().unwrap().to_owned();
    let rows_before = app.database_text().await;

    vault.kill();
    let refused = app
        .post(&methods, &app.admin(), &card_body("5555555555554444"))
        .await
        .expect(StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    app.request(
        reqwest::Method::DELETE,
        &format!("{methods}/{kept_id}"),
        Some(&app.admin()),
    )
    .await
    .expect(StatusCode::SERVICE_UNAVAILABLE);

    // No row without its secret: the refused card left no row, the method whose secret could
    // not be destroyed keeps its row (a retry finishes the removal).
    let listed: Value = app.get(&methods, &app.admin()).await.json();
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [kept_id.as_str()]);
    let rows_after = app.database_text().await;
    // As a column of a row (`,4444,`) or a JSON value (`"4444"`): a bare substring also
    // matches ids and timestamps that happen to hold those digits.
    assert!(
        !(rows_after.contains(",4444,")
            || rows_after.contains(",4444)")
            || rows_after.contains("\"4444\"")),
        "the refused card's last4 reached the database"
    );
    assert_eq!(
        rows_after.matches("payment-method.added").count(),
        rows_before.matches("payment-method.added").count(),
        "a refused write announced nothing"
    );
    let ready = app
        .request(reqwest::Method::GET, "/health/ready", None)
        .await
        .expect(StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json();
    assert!(
        body["checks"]["secrets"]
            .as_str()
            .unwrap()
            .starts_with("down"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_reads_survive_redis_going_away() {
    let mut redis = vitrine_platform::testing::OwnRedis::start().await;
    let url = redis.url();
    let app = spawn_app_with(Database::Postgres, move |settings| {
        settings.redis_url = Some(url);
    })
    .await;
    let seller = app.create_customer(&customer_body(&unique_cnpj())).await;
    let created: Value = app
        .post(
            "/v1/products",
            &app.admin(),
            &serde_json::json!({"seller_id": seller, "sku": "R-1", "name": "Antes",
                "price": {"amount": 100, "currency": "BRL"}}),
        )
        .await
        .json();
    let path = format!("/v1/products/{}", created["id"].as_str().unwrap());
    for _ in 0..2 {
        app.get(&path, &app.admin()).await.expect(StatusCode::OK);
    }

    redis.kill();
    for _ in 0..5 {
        app.get(&path, &app.admin()).await.expect(StatusCode::OK);
    }
    app.request(reqwest::Method::PATCH, &path, Some(&app.admin()))
        .json(&serde_json::json!({"name": "Depois"}))
        .await
        .expect(StatusCode::OK);
    let read: Value = app.get(&path, &app.admin()).await.json();
    assert_eq!(read["name"], "Depois", "no cache, no stale read");
    let ready = app
        .request(reqwest::Method::GET, "/health/ready", None)
        .await;
    assert_eq!(
        ready.status(),
        StatusCode::OK,
        "a cache outage keeps the service in rotation"
    );
    let body: Value = ready.json();
    assert_eq!(body["status"], "degraded");
    assert!(
        body["checks"]["products-cache"]
            .as_str()
            .unwrap()
            .starts_with("degraded"),
        "{body}"
    );
}

/// Closing a customer while Vault hangs still closes it (204) and records the erasure in the same
/// transaction; when Vault is back, a worker destroys every secret of the customer, with no
/// client retry. Closing it again is 204, not 412.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_completes_after_a_vault_outage() {
    let vault = OwnVault::start().await;
    let addr = vault.addr.clone();
    let app = spawn_app_with(Database::PostgresAndVault, move |settings| {
        settings.vault_addr = Some(addr);
    })
    .await;
    let customer = app.create_customer(&customer_body(&unique_cnpj())).await;
    let methods = format!("/v1/customers/{customer}/payment-methods");
    for body in [
        card_body(CARD),
        serde_json::json!({"type": "pix", "pix": {"key_type": "email", "key": "fin@exemplo.com.br"}}),
    ] {
        app.post(&methods, &app.admin(), &body)
            .await
            .expect(StatusCode::CREATED);
    }
    let tree = format!("customers/{customer}/payment-methods");
    assert_eq!(vault.list(&tree).await.len(), 2);
    let etag = app
        .get(&format!("/v1/customers/{customer}"), &app.admin())
        .await
        .headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();

    vault.signal("-STOP");
    let close = || {
        app.request(
            reqwest::Method::DELETE,
            &format!("/v1/customers/{customer}"),
            Some(&app.admin()),
        )
        .header("if-match", &etag)
    };
    let closed = close().await;
    assert_eq!(
        closed.status(),
        StatusCode::NO_CONTENT,
        "closed, erasure pending"
    );
    vault.signal("-CONT");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !vault.list(&tree).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the secrets outlived the outage"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        vault
            .list(&format!("customers/{customer}"))
            .await
            .is_empty()
    );
    let again = close().await;
    assert_eq!(
        again.status(),
        StatusCode::NO_CONTENT,
        "closing again is the same success"
    );
    let read: Value = app
        .get(&format!("/v1/customers/{customer}"), &app.admin())
        .await
        .json();
    assert_eq!(read["status"], "closed");
}
