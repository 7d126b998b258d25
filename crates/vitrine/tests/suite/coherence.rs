//! Two products processes sharing PostgreSQL and Redis, each with its near cache of product
//! responses: a write through one is not served stale by the other beyond a small bound (the
//! invalidation's trip through Redis pub/sub, not the near cache's 10 s TTL), and never to a
//! read carrying the write's `Consistency-Token`.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use vitrine_platform::http::auth::HS256_KEY_FILE;

use crate::common::{Database, Reply, TestApp, customer_body, spawn_app_with, unique_cnpj};

/// What the test tolerates: far above the pub/sub trip (milliseconds), far below the near TTL.
const BOUND: Duration = Duration::from_secs(2);
const ROUNDS: usize = 200;

async fn version(app: &TestApp, path: &str, token: &str, consistency: Option<&str>) -> i64 {
    let mut request = app.request(reqwest::Method::GET, path, Some(token));
    if let Some(consistency) = consistency {
        request = request.header("Consistency-Token", consistency);
    }
    let response = request.await.expect(StatusCode::OK);
    etag_version(&response)
}

/// The version an `ETag` (`"7"`) names.
fn etag_version(response: &Reply) -> i64 {
    response.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_process_is_seen_by_the_other_within_the_bound() {
    let redis = vitrine_platform::testing::redis_url();
    let a = spawn_app_with(Database::Postgres, {
        let redis = redis.clone();
        move |settings| settings.redis_url = Some(redis)
    })
    .await;
    // B is another replica of the same deployment: same databases, same Redis, same key.
    let (databases, key) = (a.settings.clone(), a.data_dir.path().join(HS256_KEY_FILE));
    let b = spawn_app_with(Database::Sqlite, move |settings| {
        settings.database_url = databases.database_url.clone();
        settings.products_database_url = databases.products_database_url.clone();
        settings.redis_url = Some(redis);
        std::fs::copy(&key, settings.data_dir.join(HS256_KEY_FILE)).unwrap();
    })
    .await;
    let token = a.admin();
    let seller = a.create_customer(&customer_body(&unique_cnpj())).await;
    let created: Value = a
        .post(
            "/v1/products",
            &token,
            &json!({"seller_id": seller, "sku": "NEAR-1", "name": "v0",
                "price": {"amount": 100, "currency": "BRL"}}),
        )
        .await
        .json();
    let path = format!("/v1/products/{}", created["id"].as_str().unwrap());

    let mut stale_for = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        // B holds the current version in its near cache (the second read is served from it).
        let before = version(&b, &path, &token, None).await;
        assert_eq!(version(&b, &path, &token, None).await, before);

        let written = a
            .request(reqwest::Method::PATCH, &path, Some(&token))
            .json(&json!({"name": format!("v{}", round + 1)}))
            .await
            .expect(StatusCode::OK);
        let consistency = written.headers()["consistency-token"]
            .to_str()
            .unwrap()
            .to_owned();
        let after = etag_version(&written);
        let written_at = Instant::now();
        // Half the rounds read with the token first, while B may still hold the old response.
        if round % 2 == 0 {
            assert_eq!(
                version(&b, &path, &token, Some(&consistency)).await,
                after,
                "round {round}: a read carrying the write's token is never stale"
            );
            continue;
        }
        loop {
            let seen = version(&b, &path, &token, None).await;
            if seen == after {
                stale_for.push(written_at.elapsed());
                break;
            }
            assert_eq!(
                seen, before,
                "round {round}: only the previous version may show"
            );
            assert!(
                written_at.elapsed() < BOUND,
                "round {round}: B still served version {seen} {BOUND:?} after the write of {after}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    stale_for.sort();
    let n = stale_for.len();
    let at = |q: f64| stale_for[((n as f64 * q) as usize).min(n - 1)];
    eprintln!(
        "stale window on B after a write through A returned, {n} writes: \
         p50 {:?}, p99 {:?}, max {:?}",
        at(0.5),
        at(0.99),
        stale_for[n - 1]
    );
}
