//! The servers of `scripts/bench-products.sh`: the embedded Vitrine (the candidate) on
//! PostgreSQL and Redis from the test servers, and a bare axum app doing the same data work
//! with nothing else (no auth, validation, idempotency, cache logic, events beyond the same
//! outbox rows, seller check) as the baseline. It writes the scenarios (URLs and wrk Lua
//! scripts) to `$BENCH_DIR/scenarios.json`, then serves until stdin closes.
//!
//! Not a test: it measures nothing by itself and never fails on a number.

use std::io::Read;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use redis::AsyncCommands;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vitrine_contracts::products as contract;
use vitrine_messaging::Envelope;
use vitrine_platform::Settings;
use vitrine_platform::http::auth::{Role, TokenIssuer, load_or_create_hs256_key};

// Both sides run in this process, on the allocator the binaries use.
#[global_allocator]
static ALLOCATOR: vitrine::MiMalloc = vitrine::MiMalloc;

#[derive(Clone)]
struct Bare {
    pool: PgPool,
    redis: redis::aio::ConnectionManager,
}

/// The same Redis GET the cache does on a hit, returning the bytes.
async fn bare_redis(State(bare): State<Bare>, Path(id): Path<Uuid>) -> impl IntoResponse {
    let mut redis = bare.redis.clone();
    let value: Option<Vec<u8>> = redis
        .get(format!("vitrine:products:v1:{id}"))
        .await
        .unwrap();
    match value {
        Some(bytes) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            bytes,
        ),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            vec![],
        ),
    }
}

/// The same SELECT a read-through does, as JSON.
async fn bare_sql(State(bare): State<Bare>, Path(id): Path<Uuid>) -> impl IntoResponse {
    let row: (Uuid, Uuid, String, String, i64, String, i64, i64, i64) = sqlx::query_as(
        "SELECT id, seller_id, sku, name, price_amount, status, on_hand, reserved, version \
         FROM products WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_one(&bare.pool)
    .await
    .unwrap();
    axum::Json(
        json!({"id": row.0, "seller_id": row.1, "sku": row.2, "name": row.3,
        "price": {"amount": row.4, "currency": "BRL"}, "status": row.5,
        "stock": {"on_hand": row.6, "reserved": row.7, "available": row.6 - row.7}, "version": row.8}),
    )
}

/// The baseline's outbox: the same table shape, its own table. Rows written into the service's
/// outbox would be published by the candidate's relay during baseline rounds (work the baseline
/// does not pay for), and rows the relay cannot decode would make it do less than it does in
/// production.
const BARE_OUTBOX: &str = "CREATE TABLE IF NOT EXISTS bare_outbox (LIKE outbox INCLUDING ALL)";

async fn outbox(tx: &mut sqlx::PgConnection, kind: &str, subject: Uuid) {
    // A message the relay could publish: a complete envelope, like the service writes.
    let envelope = Envelope::new(contract::SOURCE, kind, &json!({"product_id": subject}))
        .unwrap()
        .with_subject(subject.to_string());
    sqlx::query(
        "INSERT INTO bare_outbox (id, destination, aggregate, envelope, created_at, \
           next_attempt_at) \
         VALUES ($1, 'topic:products-events', $2, $3::jsonb, now(), now())",
    )
    .bind(envelope.id)
    .bind(subject.to_string())
    .bind(envelope.to_json())
    .execute(tx)
    .await
    .unwrap();
}

/// Messages the candidate has committed and its relay not yet published: read after each
/// candidate round, to show whether the relay kept up with the writes.
async fn backlog(State(bare): State<Bare>) -> impl IntoResponse {
    let unsent: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        .fetch_one(&bare.pool)
        .await
        .unwrap();
    axum::Json(json!({"unsent": unsent}))
}

/// The same transaction as listing a product: seller row, product, ledger entry, two events.
async fn bare_create(State(bare): State<Bare>, Path(seller): Path<Uuid>) -> impl IntoResponse {
    let id = Uuid::now_v7();
    let mut tx = bare.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO sellers (id, standing, version, updated_at) VALUES ($1, 'active', 0, now()) \
         ON CONFLICT (id) DO UPDATE SET standing = sellers.standing",
    )
    .bind(seller)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO products (id, seller_id, sku, name, price_amount, price_currency, status, \
           on_hand, reserved, version, created_at, updated_at) \
         VALUES ($1, $2, $3, 'Bare', 100, 'BRL', 'active', 10, 0, 1, now(), now())",
    )
    .bind(id)
    .bind(seller)
    .bind(id.to_string())
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO stock_movements (id, product_id, delta, reason, on_hand_after, created_at) \
         VALUES ($1, $2, 10, 'initial', 10, now())",
    )
    .bind(Uuid::now_v7())
    .bind(id)
    .execute(&mut *tx)
    .await
    .unwrap();
    outbox(&mut tx, "vitrine.products.product.created.v1", id).await;
    outbox(&mut tx, "vitrine.products.stock.changed.v1", id).await;
    tx.commit().await.unwrap();
    (StatusCode::CREATED, axum::Json(json!({"id": id})))
}

/// The same transaction as a one-item reservation: conditional hold, reservation, item, events.
async fn bare_reserve(State(bare): State<Bare>, Path(product): Path<Uuid>) -> impl IntoResponse {
    let id = Uuid::now_v7();
    let mut tx = bare.pool.begin().await.unwrap();
    let held = sqlx::query(
        "UPDATE products SET reserved = reserved + 1, version = version + 1, updated_at = now() \
         WHERE id = $1 AND status = 'active' AND deleted_at IS NULL AND on_hand - reserved >= 1",
    )
    .bind(product)
    .execute(&mut *tx)
    .await
    .unwrap()
    .rows_affected();
    if held == 0 {
        return (StatusCode::CONFLICT, axum::Json(json!({})));
    }
    sqlx::query(
        "INSERT INTO reservations (id, status, expires_at, created_at, updated_at) \
         VALUES ($1, 'pending', now() + interval '15 minutes', now(), now())",
    )
    .bind(id)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO reservation_items (reservation_id, product_id, quantity) VALUES ($1, $2, 1)",
    )
    .bind(id)
    .bind(product)
    .execute(&mut *tx)
    .await
    .unwrap();
    outbox(&mut tx, "vitrine.products.reservation.created.v1", id).await;
    outbox(&mut tx, "vitrine.products.stock.changed.v1", product).await;
    tx.commit().await.unwrap();
    (StatusCode::CREATED, axum::Json(json!({"id": id})))
}

/// A wrk script sending `method` to `path` with `headers` and, for POSTs, `body` in which
/// `%UNIQUE%` is replaced by a value unique across threads, requests and runs.
fn lua(method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> String {
    let headers: String = headers
        .iter()
        .map(|(k, v)| format!("wrk.headers[\"{k}\"] = \"{v}\"\n"))
        .collect();
    let body = body.unwrap_or("");
    format!(
        r#"wrk.method = "{method}"
{headers}local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  n = 0
  started = os.time()
end
request = function()
  n = n + 1
  local unique = string.format("%d-%d-%d", started, tid, n)
  local body = string.gsub([[{body}]], "%%UNIQUE%%", unique)
  if body == "" then body = nil end
  return wrk.format(nil, "{path}", nil, body)
end
"#
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let out = std::path::PathBuf::from(std::env::var("BENCH_DIR")?);
    let data_dir = tempfile::tempdir()?;
    let mut settings = Settings::embedded_at(data_dir.path());
    settings.log = "warn".to_owned();
    settings.database_url = Some(vitrine_platform::testing::postgres_database().await);
    let products_db = vitrine_platform::testing::postgres_database().await;
    settings.products_database_url = Some(products_db.clone());
    settings.redis_url = Some(vitrine_platform::testing::redis_url());
    vitrine_platform::telemetry::init("products-bench", &settings.log, settings.log_format);
    let server = vitrine::Server::build(&settings).await?;
    let base = format!("http://{}", server.local_addr());
    let stop = CancellationToken::new();
    tokio::spawn(server.run(stop.clone()));

    let issuer = TokenIssuer::hs256(&load_or_create_hs256_key(data_dir.path())?)?;
    let admin = issuer.issue(
        "bench",
        &[Role::Admin],
        None,
        std::time::Duration::from_secs(86400),
    )?;
    let client = reqwest::Client::new();
    let customer: Value = client
        .post(format!("{base}/v1/customers"))
        .bearer_auth(&admin)
        .json(
            &json!({"cnpj": "12.ABC.345/01DE-35", "legal_name": "Bench Ltda",
            "email": "bench@example.com.br", "address": {"street": "Rua A", "number": "1",
            "district": "Centro", "city": "São Paulo", "state": "SP", "postal_code": "01001-000"}}),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let seller = customer["id"].as_str().unwrap().to_owned();
    let product: Value = client
        .post(format!("{base}/v1/products"))
        .bearer_auth(&admin)
        .json(
            &json!({"seller_id": seller, "sku": "BENCH-HOT", "name": "Produto de benchmark",
            "price": {"amount": 1990, "currency": "BRL"}, "initial_stock": 1_000_000_000i64}),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let product = product["id"].as_str().unwrap().to_owned();
    // Warm the cache entry the warm scenario and the Redis baseline read.
    client
        .get(format!("{base}/v1/products/{product}"))
        .bearer_auth(&admin)
        .send()
        .await?;

    let pool =
        vitrine_platform::db::postgres(&products_db, settings.database_max_connections).await?;
    sqlx::query(BARE_OUTBOX).execute(&pool).await?;
    let redis = redis::aio::ConnectionManager::new(redis::Client::open(
        vitrine_platform::testing::redis_url().expose_secret(),
    )?)
    .await?;
    let bare = axum::Router::new()
        .route("/bare/redis/{id}", get(bare_redis))
        .route("/bare/sql/{id}", get(bare_sql))
        .route("/bare/products/{seller}", post(bare_create))
        .route("/bare/reservations/{product}", post(bare_reserve))
        .route("/bare/backlog", get(backlog))
        .with_state(Bare { pool, redis });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, bare).await });

    let auth = format!("Bearer {admin}");
    let json_headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    // A token from long ago: every read carrying it reads through the cache to the database.
    let read_through = [
        ("Authorization", auth.as_str()),
        ("Consistency-Token", "v1.0000000000000000"),
    ];
    let create_body = format!(
        r#"{{"seller_id":"{seller}","sku":"B-%UNIQUE%","name":"Produto","price":{{"amount":990,"currency":"BRL"}},"initial_stock":10}}"#
    );
    let reserve_body = format!(r#"{{"items":[{{"product_id":"{product}","quantity":1}}]}}"#);
    let scenarios = [
        (
            "GET /v1/products/{id} warm (cache hit)",
            "redis GET",
            lua(
                "GET",
                &format!("/v1/products/{product}"),
                &[("Authorization", &auth)],
                None,
            ),
            lua("GET", &format!("/bare/redis/{product}"), &[], None),
        ),
        (
            "GET /v1/products/{id} cold (read-through)",
            "SELECT by id",
            lua(
                "GET",
                &format!("/v1/products/{product}"),
                &read_through,
                None,
            ),
            lua("GET", &format!("/bare/sql/{product}"), &[], None),
        ),
        (
            "POST /v1/products",
            "same transaction",
            lua("POST", "/v1/products", &json_headers, Some(&create_body)),
            lua("POST", &format!("/bare/products/{seller}"), &[], None),
        ),
        (
            "POST /v1/reservations",
            "same transaction",
            lua(
                "POST",
                "/v1/reservations",
                &json_headers,
                Some(&reserve_body),
            ),
            lua("POST", &format!("/bare/reservations/{product}"), &[], None),
        ),
    ];
    let mut list = Vec::new();
    for (index, (name, baseline, candidate_lua, baseline_lua)) in scenarios.iter().enumerate() {
        let candidate_script = out.join(format!("candidate-{index}.lua"));
        let baseline_script = out.join(format!("baseline-{index}.lua"));
        std::fs::write(&candidate_script, candidate_lua)?;
        std::fs::write(&baseline_script, baseline_lua)?;
        list.push(json!({"name": name, "baseline_name": baseline,
            "candidate": {"url": base, "script": candidate_script},
            "baseline": {"url": bare_base, "script": baseline_script}}));
    }
    std::fs::write(out.join("backlog.url"), format!("{bare_base}/bare/backlog"))?;
    std::fs::write(
        out.join("scenarios.json"),
        serde_json::to_vec_pretty(&list)?,
    )?;
    eprintln!("bench servers ready: candidate {base}, baseline {bare_base}");
    // Serve until the driver closes our stdin.
    tokio::task::spawn_blocking(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
    })
    .await?;
    stop.cancel();
    Ok(())
}
