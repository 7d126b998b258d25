//! Product import throughput (run by `scripts/bench-imports.sh`): an NDJSON import through the
//! embedded Vitrine, from the upload's first byte to `completed`, against a bare baseline in
//! the same run: the same rows written straight into the same `products` table of a fresh
//! database of the same kind, 500 rows per INSERT and per transaction. The import also stores
//! the lines, checks the seller, validates every line, writes a ledger entry, two outbox rows
//! and the counters per product, under a savepoint each, and runs through the work queue.
//! Rounds alternate baseline and candidate; it prints a table and never fails on a number.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use vitrine_platform::Settings;
use vitrine_platform::http::auth::{Role, TokenIssuer, load_or_create_hs256_key};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sqlite,
    Postgres,
}

/// The embedded Vitrine on `kind`, with a seller; (base URL, admin token, seller id).
async fn start(kind: Kind, dir: &std::path::Path) -> anyhow::Result<(String, String, String)> {
    let mut settings = Settings::embedded_at(dir);
    settings.log = "warn".to_owned();
    if kind == Kind::Postgres {
        settings.database_url = Some(vitrine_platform::testing::postgres_database().await);
        settings.products_database_url = Some(vitrine_platform::testing::postgres_database().await);
    }
    let server = vitrine::Server::build(&settings).await?;
    let base = format!("http://{}", server.local_addr());
    tokio::spawn(server.run(CancellationToken::new()));
    let admin = TokenIssuer::hs256(&load_or_create_hs256_key(dir)?)?.issue(
        "bench",
        &[Role::Admin],
        None,
        Duration::from_secs(86400),
    )?;
    let customer: Value = reqwest::Client::new()
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
    Ok((base, admin, customer["id"].as_str().unwrap().to_owned()))
}

fn product(seller: &str, round: usize, line: usize) -> Value {
    json!({"seller_id": seller, "sku": format!("R{round}-{line}"), "name": "Café torrado 500 g",
           "category": "alimentos", "price": {"amount": 1990, "currency": "BRL"},
           "initial_stock": 10})
}

/// The candidate: products/s from the upload's start to the import's completion.
async fn imported(
    base: &str,
    admin: &str,
    seller: &str,
    round: usize,
    lines: usize,
) -> anyhow::Result<f64> {
    let body: String = (1..=lines)
        .map(|line| product(seller, round, line).to_string() + "\n")
        .collect();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let accepted: Value = client
        .post(format!("{base}/v1/product-imports"))
        .bearer_auth(admin)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let location = format!(
        "{base}/v1/product-imports/{}",
        accepted["id"].as_str().unwrap()
    );
    loop {
        let report: Value = client
            .get(&location)
            .bearer_auth(admin)
            .send()
            .await?
            .json()
            .await?;
        if report["status"] == "completed" {
            anyhow::ensure!(
                report["created"] == lines,
                "not every line was created: {report}"
            );
            return Ok(lines as f64 / started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The baseline: the same product rows into a fresh, migrated database of `kind`, 500 per
/// INSERT and transaction; products/s.
async fn bare(kind: Kind, seller: &str, round: usize, lines: usize) -> anyhow::Result<f64> {
    let seller = uuid::Uuid::parse_str(seller)?;
    let rows: Vec<(uuid::Uuid, String)> = (1..=lines)
        .map(|line| (uuid::Uuid::now_v7(), format!("R{round}-{line}")))
        .collect();
    let now = chrono::Utc::now();
    macro_rules! insert_all {
        ($db:ty, $pool:expr) => {{
            let started = Instant::now();
            for chunk in rows.chunks(500) {
                let mut tx = $pool.begin().await?;
                let mut insert = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO products (id, seller_id, sku, name, description, category, \
                       price_amount, price_currency, status, on_hand, reserved, version, \
                       created_at, updated_at) ",
                );
                insert.push_values(chunk, |mut row, (id, sku)| {
                    row.push_bind(*id)
                        .push_bind(seller)
                        .push_bind(sku.as_str())
                        .push_bind("Café torrado 500 g")
                        .push_bind(None::<String>)
                        .push_bind("alimentos")
                        .push_bind(1990i64)
                        .push_bind("BRL")
                        .push_bind("active")
                        .push_bind(10i64)
                        .push_bind(0i64)
                        .push_bind(1i64)
                        .push_bind(now)
                        .push_bind(now);
                });
                insert.build().execute(&mut *tx).await?;
                tx.commit().await?;
            }
            started.elapsed()
        }};
    }
    let elapsed = match kind {
        Kind::Sqlite => {
            let dir = tempfile::tempdir()?;
            let pool = vitrine_platform::db::sqlite(&dir.path().join("bare.sqlite3")).await?;
            products::store::SqliteStore::new(pool.clone())
                .migrate()
                .await?;
            insert_all!(sqlx::Sqlite, pool)
        }
        Kind::Postgres => {
            let url = vitrine_platform::testing::postgres_database().await;
            let pool = sqlx::PgPool::connect(secrecy::ExposeSecret::expose_secret(&url)).await?;
            products::store::PostgresStore::new(pool.clone())
                .migrate()
                .await?;
            insert_all!(sqlx::Postgres, pool)
        }
    };
    Ok(lines as f64 / elapsed.as_secs_f64())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds = env("BENCH_ROUNDS", 3);
    let lines = env("BENCH_IMPORT_LINES", 20_000);
    println!("product imports: {lines} lines per import, {rounds} alternating rounds\n");
    println!("| database | import products/s | bare batched INSERT products/s | ratio (range) |");
    println!("|---|---|---|---|");
    for (kind, name) in [
        (Kind::Sqlite, "SQLite (embedded)"),
        (Kind::Postgres, "PostgreSQL"),
    ] {
        let dir = tempfile::tempdir()?;
        let (base, admin, seller) = start(kind, dir.path()).await?;
        let (mut baseline, mut candidate) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            baseline.push(bare(kind, &seller, round, lines).await?);
            candidate.push(imported(&base, &admin, &seller, round, lines).await?);
        }
        let ratios: Vec<f64> = candidate
            .iter()
            .zip(&baseline)
            .map(|(c, b)| c / b)
            .collect();
        println!(
            "| {name} | {:.0} | {:.0} | {:.3} ({:.3}-{:.3}) |",
            median(candidate.clone()),
            median(baseline.clone()),
            median(ratios.clone()),
            ratios.iter().copied().fold(f64::MAX, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
        );
    }
    Ok(())
}
