//! The products API (API.md) through the embedded server, on SQLite and on PostgreSQL: the
//! catalog, the stock ledger, reservations, the seller check over request/reply, sellers'
//! suspension reaching their products (also over SNS/SQS), and the product cache.

use std::time::Duration;

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vitrine_platform::http::auth::Role;

fn product_body(seller: &str, sku: &str, stock: i64) -> Value {
    json!({
        "seller_id": seller,
        "sku": sku,
        "name": "Café torrado 500 g",
        "description": "Torra média",
        "category": "alimentos",
        "price": {"amount": 1990, "currency": "BRL"},
        "initial_stock": stock,
    })
}

async fn seller(app: &TestApp) -> String {
    app.create_customer(&customer_body(&unique_cnpj())).await
}

/// Lists a product as admin; returns its id.
async fn create_product(app: &TestApp, seller: &str, sku: &str, stock: i64) -> String {
    let response = app
        .post(
            "/v1/products",
            &app.admin(),
            &product_body(seller, sku, stock),
        )
        .await
        .expect(StatusCode::CREATED);
    response.json::<Value>()["id"].as_str().unwrap().to_owned()
}

/// Polls `check` for up to `seconds`.
async fn eventually(seconds: u64, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within {seconds} s: {what}");
}

mod checks {
    use super::*;

    pub async fn products_are_listed_read_and_changed(app: TestApp) {
        let seller = seller(&app).await;
        let response = app
            .post(
                "/v1/products",
                &app.admin(),
                &product_body(&seller, "CAFE-500", 12),
            )
            .await
            .expect(StatusCode::CREATED);
        let headers = response.headers().clone();
        let created: Value = response.json();
        let id = created["id"].as_str().unwrap();
        assert_eq!(headers["location"], format!("/v1/products/{id}"));
        assert_eq!(headers["etag"], "\"1\"");
        let token = headers["consistency-token"].to_str().unwrap().to_owned();
        assert!(token.starts_with("v1."), "{token}");
        assert_eq!(created["seller_id"], seller);
        assert_eq!(created["status"], "active");
        assert_eq!(
            created["stock"],
            json!({"on_hand": 12, "reserved": 0, "available": 12})
        );
        assert_eq!(created["price"], json!({"amount": 1990, "currency": "BRL"}));

        // Any authenticated caller may read, with or without the write's token.
        let buyer = app.token(Role::Customer, Some(&uuid::Uuid::now_v7().to_string()));
        let read = app
            .request(Method::GET, &format!("/v1/products/{id}"), Some(&buyer))
            .header("Consistency-Token", &token)
            .await
            .expect(StatusCode::OK)
            .json::<Value>();
        assert_eq!(read, created);
        // Malformed, or well-formed but ahead of every write (no write returned it): refused,
        // rather than sending the read to wait for a position the database never reached.
        for bad in ["yesterday", "v1.7fffffffffffffff"] {
            let refused = app
                .request(Method::GET, &format!("/v1/products/{id}"), Some(&buyer))
                .header("Consistency-Token", bad)
                .await;
            assert_eq!(
                refused.problem(StatusCode::UNPROCESSABLE_ENTITY),
                ["Consistency-Token"],
                "{bad}"
            );
        }

        let duplicate = app
            .post(
                "/v1/products",
                &app.admin(),
                &product_body(&seller, "CAFE-500", 0),
            )
            .await;
        assert_eq!(duplicate.problem(StatusCode::CONFLICT), ["sku"]);

        let path = format!("/v1/products/{id}");
        app.request(Method::PATCH, &path, Some(&app.admin()))
            .header("If-Match", "\"7\"")
            .json(&json!({"name": "Outro"}))
            .await
            .expect(StatusCode::PRECONDITION_FAILED);
        let changed = app
            .request(Method::PATCH, &path, Some(&app.admin()))
            .header("If-Match", "\"1\"")
            .json(&json!({
                "name": "Café especial",
                "description": null,
                "price": {"amount": 2490, "currency": "BRL"},
            }))
            .await;
        assert_eq!(changed.headers()["etag"], "\"2\"");
        assert!(changed.headers().contains_key("consistency-token"));
        let changed = changed.expect(StatusCode::OK).json::<Value>();
        assert_eq!(changed["name"], "Café especial");
        assert_eq!(changed["description"], Value::Null);
        assert_eq!(changed["category"], "alimentos");
        // The cache was dropped after the write: a read without a token sees it too.
        let read = app
            .get(&path, &buyer)
            .await
            .expect(StatusCode::OK)
            .json::<Value>();
        assert_eq!(read["name"], "Café especial");

        let deleted = app
            .request(Method::DELETE, &path, Some(&app.admin()))
            .await
            .expect(StatusCode::NO_CONTENT);
        assert!(deleted.headers().contains_key("consistency-token"));
        app.get(&path, &buyer).await.expect(StatusCode::NOT_FOUND);
    }

    pub async fn bad_products_name_every_field(app: TestApp) {
        let body = json!({
            "seller_id": "nope",
            "sku": "has space",
            "name": " ",
            "price": {"amount": -1, "currency": "BRL"},
            "initial_stock": -3,
        });
        let mut fields = app
            .post("/v1/products", &app.admin(), &body)
            .await
            .problem(StatusCode::UNPROCESSABLE_ENTITY);
        fields.sort();
        assert_eq!(
            fields,
            ["initial_stock", "name", "price.amount", "seller_id", "sku"]
        );
        let mut unknown = product_body(&uuid::Uuid::now_v7().to_string(), "A", 0);
        unknown["colour"] = json!("blue");
        app.post("/v1/products", &app.admin(), &unknown)
            .await
            .expect(StatusCode::UNPROCESSABLE_ENTITY);
        let usd = json!({"seller_id": uuid::Uuid::now_v7(), "sku": "A", "name": "A", "price": {"amount": 1, "currency": "USD"}});
        assert_eq!(
            app.post("/v1/products", &app.admin(), &usd)
                .await
                .problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["price.currency"]
        );
    }

    pub async fn sellers_are_checked_with_user_information(app: TestApp) {
        let unknown = uuid::Uuid::now_v7().to_string();
        let response = app
            .post(
                "/v1/products",
                &app.admin(),
                &product_body(&unknown, "X", 0),
            )
            .await;
        assert_eq!(
            response.problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["seller_id"]
        );
        let seller = seller(&app).await;
        app.patch(
            &format!("/v1/customers/{seller}"),
            &app.admin(),
            &json!({"status": "suspended"}),
        )
        .await
        .expect(StatusCode::OK);
        let response = app
            .post("/v1/products", &app.admin(), &product_body(&seller, "X", 0))
            .await;
        let body = response
            .expect(StatusCode::UNPROCESSABLE_ENTITY)
            .json::<Value>();
        assert_eq!(body["errors"][0]["field"], "seller_id");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("suspended")
        );
    }

    pub async fn sellers_manage_only_their_products(app: TestApp) {
        let (mine, theirs) = (seller(&app).await, seller(&app).await);
        let me = app.token(Role::Customer, Some(&mine));
        app.post("/v1/products", &me, &product_body(&theirs, "NOT-MINE", 0))
            .await
            .expect(StatusCode::FORBIDDEN);
        let own = app
            .post("/v1/products", &me, &product_body(&mine, "MINE", 3))
            .await
            .expect(StatusCode::CREATED)
            .json::<Value>()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let other = create_product(&app, &theirs, "THEIRS", 3).await;
        let change = json!({"name": "Renomeado"});
        app.patch(&format!("/v1/products/{own}"), &me, &change)
            .await
            .expect(StatusCode::OK);
        assert_eq!(
            app.patch(&format!("/v1/products/{other}"), &me, &change)
                .await
                .status(),
            StatusCode::NOT_FOUND,
            "another tenant's product is not even confirmed to exist"
        );
        let payments = app.token(Role::Payments, None);
        app.patch(&format!("/v1/products/{own}"), &payments, &change)
            .await
            .expect(StatusCode::FORBIDDEN);
        let movement = json!({"delta": 5, "reason": "restock"});
        app.post(
            &format!("/v1/products/{other}/stock-movements"),
            &me,
            &movement,
        )
        .await
        .expect(StatusCode::NOT_FOUND);
        app.get(&format!("/v1/products/{other}/stock-movements"), &me)
            .await
            .expect(StatusCode::NOT_FOUND);
        // Reading the catalog is open to every authenticated caller, never to anonymous ones.
        app.get(&format!("/v1/products/{other}"), &me)
            .await
            .expect(StatusCode::OK);
        app.request(Method::GET, &format!("/v1/products/{other}"), None)
            .await
            .expect(StatusCode::UNAUTHORIZED);
    }

    pub async fn the_ledger_records_every_movement(app: TestApp) {
        let seller = seller(&app).await;
        let id = create_product(&app, &seller, "LEDGER", 5).await;
        let path = format!("/v1/products/{id}/stock-movements");
        let added = app
            .post(
                &path,
                &app.admin(),
                &json!({"delta": 10, "reason": "restock"}),
            )
            .await;
        assert!(added.headers().contains_key("consistency-token"));
        let added = added.expect(StatusCode::CREATED).json::<Value>();
        assert_eq!(added["on_hand_after"], 15);
        app.post(
            "/v1/reservations",
            &app.admin(),
            &json!({"items": [{"product_id": id, "quantity": 12}]}),
        )
        .await
        .expect(StatusCode::CREATED);
        let below_reserved = app
            .post(&path, &app.admin(), &json!({"delta": -4, "reason": "loss"}))
            .await;
        assert_eq!(below_reserved.problem(StatusCode::CONFLICT), ["delta"]);
        for (body, field) in [
            (json!({"delta": 0, "reason": "loss"}), "delta"),
            (json!({"delta": 1, "reason": "sale"}), "reason"),
            (json!({"delta": 1, "reason": "gift"}), "reason"),
        ] {
            assert_eq!(
                app.post(&path, &app.admin(), &body)
                    .await
                    .problem(StatusCode::UNPROCESSABLE_ENTITY),
                [field]
            );
        }
        let ledger = app
            .get(&path, &app.admin())
            .await
            .expect(StatusCode::OK)
            .json::<Value>();
        let reasons: Vec<&str> = ledger["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["reason"].as_str().unwrap())
            .collect();
        assert_eq!(reasons, ["initial", "restock"]);
    }

    pub async fn reservations_hold_commit_release_and_expire(app: TestApp) {
        let seller = seller(&app).await;
        let a = create_product(&app, &seller, "A", 5).await;
        let b = create_product(&app, &seller, "B", 1).await;
        let buyer_id = uuid::Uuid::now_v7().to_string();
        let buyer = app.token(Role::Customer, Some(&buyer_id));

        let short = app
            .post(
                "/v1/reservations",
                &buyer,
                &json!({"items": [{"product_id": a, "quantity": 2}, {"product_id": b, "quantity": 2}]}),
            )
            .await;
        let body = short.expect(StatusCode::CONFLICT).json::<Value>();
        assert_eq!(body["errors"].as_array().unwrap().len(), 1, "{body}");
        assert_eq!(body["errors"][0]["field"], "items[1].product_id");
        assert_eq!(body["errors"][0]["message"], "2 requested, 1 available");
        let stock = app
            .get(&format!("/v1/products/{a}"), &buyer)
            .await
            .expect(StatusCode::OK)
            .json::<Value>()["stock"]
            .clone();
        assert_eq!(stock["reserved"], 0, "all or nothing");
        // A product that does not exist is a mistake in the request, not a shortage.
        let ghost = uuid::Uuid::now_v7().to_string();
        let unknown = app
            .post(
                "/v1/reservations",
                &buyer,
                &json!({"items": [{"product_id": a, "quantity": 1}, {"product_id": ghost, "quantity": 1}]}),
            )
            .await;
        let body = unknown
            .expect(StatusCode::UNPROCESSABLE_ENTITY)
            .json::<Value>();
        assert_eq!(body["errors"][0]["field"], "items[1].product_id", "{body}");
        assert_eq!(body["errors"][0]["message"], "no such product");

        let invalid = app
            .post(
                "/v1/reservations",
                &buyer,
                &json!({"items": [{"product_id": a, "quantity": 1}, {"product_id": a, "quantity": 1}], "ttl_seconds": 0}),
            )
            .await;
        let mut fields = invalid.problem(StatusCode::UNPROCESSABLE_ENTITY);
        fields.sort();
        assert_eq!(fields, ["ttl_seconds"]);
        let repeated = app
            .post(
                "/v1/reservations",
                &buyer,
                &json!({"items": [{"product_id": a, "quantity": 1}, {"product_id": a, "quantity": 1}]}),
            )
            .await;
        assert_eq!(
            repeated.problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["items[1].product_id"]
        );

        let held = app
            .post(
                "/v1/reservations",
                &buyer,
                &json!({"items": [{"product_id": a, "quantity": 2}, {"product_id": b, "quantity": 1}]}),
            )
            .await;
        assert!(held.headers().contains_key("location"));
        let held = held.expect(StatusCode::CREATED).json::<Value>();
        assert_eq!(held["status"], "pending");
        assert_eq!(held["customer_id"], buyer_id);
        let id = held["id"].as_str().unwrap();
        let path = format!("/v1/reservations/{id}");
        let stranger = app.token(Role::Customer, Some(&uuid::Uuid::now_v7().to_string()));
        app.get(&path, &stranger)
            .await
            .expect(StatusCode::NOT_FOUND);
        app.post(&format!("{path}/commit"), &stranger, &json!({}))
            .await
            .expect(StatusCode::NOT_FOUND);
        let committed = app
            .post(&format!("{path}/commit"), &buyer, &json!({}))
            .await
            .expect(StatusCode::OK)
            .json::<Value>();
        assert_eq!(committed["status"], "committed");
        let again = app
            .post(&format!("{path}/commit"), &buyer, &json!({}))
            .await
            .expect(StatusCode::OK)
            .json::<Value>();
        assert_eq!(again["status"], "committed", "commit is idempotent");
        app.post(&format!("{path}/release"), &buyer, &json!({}))
            .await
            .expect(StatusCode::CONFLICT);
        let after = app
            .get(&format!("/v1/products/{a}"), &buyer)
            .await
            .expect(StatusCode::OK)
            .json::<Value>();
        assert_eq!(
            after["stock"],
            json!({"on_hand": 3, "reserved": 0, "available": 3})
        );

        // Expiry returns the units by itself.
        let brief = app
            .post(
                "/v1/reservations",
                &buyer,
                &json!({"items": [{"product_id": a, "quantity": 3}], "ttl_seconds": 1}),
            )
            .await
            .expect(StatusCode::CREATED)
            .json::<Value>();
        let brief_path = format!("/v1/reservations/{}", brief["id"].as_str().unwrap());
        eventually(15, "the brief reservation expires", async || {
            let body: Value = app.get(&brief_path, &buyer).await.json();
            body["status"] == "expired"
        })
        .await;
        let restored = app
            .request(Method::GET, &format!("/v1/products/{a}"), Some(&buyer))
            .await;
        assert_eq!(
            restored.expect(StatusCode::OK).json::<Value>()["stock"]["available"],
            3
        );
        app.post(&format!("{brief_path}/commit"), &buyer, &json!({}))
            .await
            .expect(StatusCode::CONFLICT);
    }

    pub async fn reservation_posts_are_idempotent(app: TestApp) {
        let seller = seller(&app).await;
        let a = create_product(&app, &seller, "IDEM", 5).await;
        let body = json!({"items": [{"product_id": a, "quantity": 2}]});
        let send = || {
            app.request(Method::POST, "/v1/reservations", Some(&app.admin()))
                .header("Idempotency-Key", "order-77")
                .json(&body)
        };
        let first = send().await.expect(StatusCode::CREATED);
        let first: Value = first.json();
        let second = send().await.expect(StatusCode::CREATED);
        assert_eq!(second.headers()["idempotent-replayed"], "true");
        assert_eq!(second.json::<Value>(), first);
        let product = app
            .get(&format!("/v1/products/{a}"), &app.admin())
            .await
            .expect(StatusCode::OK)
            .json::<Value>();
        assert_eq!(product["stock"]["reserved"], 2, "reserved once");
    }

    pub async fn suspending_a_seller_deactivates_its_products(app: TestApp) {
        let seller = seller(&app).await;
        let first = create_product(&app, &seller, "ONE", 1).await;
        let second = create_product(&app, &seller, "TWO", 1).await;
        // Cached while active: the event must evict it.
        let before = app
            .get(&format!("/v1/products/{first}"), &app.admin())
            .await
            .expect(StatusCode::OK)
            .json::<Value>();
        assert_eq!(before["status"], "active");
        app.patch(
            &format!("/v1/customers/{seller}"),
            &app.admin(),
            &json!({"status": "suspended"}),
        )
        .await
        .expect(StatusCode::OK);
        for id in [&first, &second] {
            let path = format!("/v1/products/{id}");
            eventually(10, "the seller's product becomes inactive", async || {
                let body: Value = app.get(&path, &app.admin()).await.json();
                body["status"] == "inactive"
            })
            .await;
        }
        app.patch(
            &format!("/v1/products/{first}"),
            &app.admin(),
            &json!({"status": "active"}),
        )
        .await
        .expect(StatusCode::CONFLICT);
        let listed = app
            .get(
                &format!("/v1/products?seller_id={seller}&status=active"),
                &app.admin(),
            )
            .await
            .expect(StatusCode::OK)
            .json::<Value>();
        assert_eq!(listed["items"], json!([]));
    }

    /// A buyer whose customer is suspended (or closed) loses buyer rights: new reservations
    /// and commits of its pending ones are 403, as products learns it from the status event;
    /// reactivated, it buys again.
    pub async fn suspended_buyers_cannot_reserve_or_commit(app: TestApp) {
        let seller = seller(&app).await;
        let product = create_product(&app, &seller, "BUYER-RIGHTS", 10).await;
        let buyer = app.create_customer(&customer_body(&unique_cnpj())).await;
        let as_buyer = app.token(Role::Customer, Some(&buyer));
        let order = json!({"items": [{"product_id": product, "quantity": 1}], "ttl_seconds": 600});
        let pending = app
            .post("/v1/reservations", &as_buyer, &order)
            .await
            .expect(StatusCode::CREATED)
            .json::<Value>();
        let commit = format!(
            "/v1/reservations/{}/commit",
            pending["id"].as_str().unwrap()
        );

        let status = |status: &'static str| {
            let app = &app;
            let buyer = buyer.clone();
            async move {
                app.patch(
                    &format!("/v1/customers/{buyer}"),
                    &app.admin(),
                    &json!({"status": status}),
                )
                .await
                .expect(StatusCode::OK);
            }
        };
        status("suspended").await;
        // More than there is: 409 while the buyer is still active here, so polling holds
        // nothing; 403 once products knows.
        let too_much =
            json!({"items": [{"product_id": product, "quantity": 1000}], "ttl_seconds": 600});
        eventually(10, "products refuses the suspended buyer", async || {
            app.post("/v1/reservations", &as_buyer, &too_much)
                .await
                .status()
                == StatusCode::FORBIDDEN
        })
        .await;
        let refused = app.post("/v1/reservations", &as_buyer, &order).await;
        refused.problem(StatusCode::FORBIDDEN);
        let refused = app.post(&commit, &as_buyer, &json!({})).await;
        refused.problem(StatusCode::FORBIDDEN);
        let by_admin = app.post(&commit, &app.admin(), &json!({})).await;
        by_admin.problem(StatusCode::FORBIDDEN);

        status("active").await;
        eventually(10, "products accepts the reactivated buyer", async || {
            app.post(&commit, &as_buyer, &json!({})).await.status() == StatusCode::OK
        })
        .await;
        let product: Value = app
            .get(&format!("/v1/products/{product}"), &app.admin())
            .await
            .json();
        assert_eq!(
            product["stock"],
            json!({"on_hand": 9, "reserved": 0, "available": 9}),
            "only the committed reservation took stock"
        );
    }

    /// Status facts count only from their owner, and user-information's live answer corrects a
    /// projection that a bad event pinned: the seller lists and re-activates again.
    pub async fn seller_standing_cannot_be_forged_or_pinned(app: TestApp) {
        use vitrine_contracts::user_information as customers;
        use vitrine_messaging::Envelope;

        let seller = seller(&app).await;
        let product = create_product(&app, &seller, "STANDING", 1).await;
        let publish = |source: &'static str, version: i64| {
            let app = &app;
            let seller = seller.clone();
            async move {
                let event = customers::CustomerStatusChanged {
                    customer_id: seller.parse().unwrap(),
                    from: customers::CustomerStatus::Active,
                    to: customers::CustomerStatus::Suspended,
                    version,
                };
                let envelope = Envelope::new(source, customers::CUSTOMER_STATUS_CHANGED, &event)
                    .unwrap()
                    .with_subject(seller);
                app.transport
                    .publish(customers::TOPIC, &envelope)
                    .await
                    .unwrap();
            }
        };
        let status = async || -> Value {
            app.get(&format!("/v1/products/{product}"), &app.admin())
                .await
                .json::<Value>()["status"]
                .clone()
        };

        publish("vitrine.somebody-else", 2).await;
        eventually(10, "the forged event is refused", async || {
            let metrics = app.metrics().await;
            metrics.contains("vitrine_messages_refused_total{reason=\"source\"}")
        })
        .await;
        assert_eq!(
            status().await,
            "active",
            "a forged suspension changed nothing"
        );

        publish(customers::SOURCE, 1_000_000_000_000).await;
        eventually(10, "the pinned suspension applies", async || {
            status().await == "inactive"
        })
        .await;
        // user-information says active: creating asks it, and its answer wins.
        create_product(&app, &seller, "STANDING-2", 1).await;
        app.patch(
            &format!("/v1/products/{product}"),
            &app.admin(),
            &json!({"status": "active"}),
        )
        .await
        .expect(StatusCode::OK);
    }

    pub async fn the_cache_counts_hits_and_misses(app: TestApp) {
        let seller = seller(&app).await;
        let id = create_product(&app, &seller, "CACHED", 1).await;
        let path = format!("/v1/products/{id}");
        let missing = format!("/v1/products/{}", uuid::Uuid::now_v7());
        let metrics = async || -> (f64, f64) {
            let text = app.metrics().await;
            let count = |result: &str| -> f64 {
                text.lines()
                    .find(|l| {
                        l.starts_with("vitrine_cache_requests_total")
                            && l.contains(&format!("result=\"{result}\""))
                    })
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0)
            };
            // A hit of this process's near cache or of the shared cache.
            (count("hit") + count("near-hit"), count("miss"))
        };
        // The product's creation events evict its entry when they arrive: let them pass.
        app.get(&path, &app.admin()).await.expect(StatusCode::OK);
        tokio::time::sleep(Duration::from_secs(1)).await;
        app.get(&path, &app.admin()).await.expect(StatusCode::OK);
        app.get(&missing, &app.admin())
            .await
            .expect(StatusCode::NOT_FOUND);
        let (hits, misses) = metrics().await;
        assert!(misses >= 2.0, "the first reads missed");
        for _ in 0..3 {
            app.get(&path, &app.admin()).await.expect(StatusCode::OK);
            app.get(&missing, &app.admin())
                .await
                .expect(StatusCode::NOT_FOUND);
        }
        let (later_hits, _) = metrics().await;
        assert!(
            later_hits - hits >= 4.0,
            "found and missing products are both served from the cache: {} hits of 6",
            later_hits - hits
        );
    }
}

macro_rules! products_suite {
    ($($check:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::checks::$check(super::spawn_app(super::Database::Sqlite).await).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::checks::$check(super::spawn_app(super::Database::Postgres).await).await;
                }
            )+
        }
    };
}

products_suite!(
    products_are_listed_read_and_changed,
    bad_products_name_every_field,
    sellers_are_checked_with_user_information,
    sellers_manage_only_their_products,
    the_ledger_records_every_movement,
    reservations_hold_commit_release_and_expire,
    reservation_posts_are_idempotent,
    suspending_a_seller_deactivates_its_products,
    suspended_buyers_cannot_reserve_or_commit,
    seller_standing_cannot_be_forged_or_pinned,
    the_cache_counts_hits_and_misses,
);

/// A receiver on loopback answering 500 to the first delivery and 200 after, recording what
/// arrives; its URL.
async fn flaky_receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(reqwest::header::HeaderMap, String)>>>,
) {
    use axum::http::HeaderMap;
    let received: std::sync::Arc<std::sync::Mutex<Vec<(HeaderMap, String)>>> = Default::default();
    let seen = std::sync::Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let seen = std::sync::Arc::clone(&seen);
            async move {
                let mut seen = seen.lock().unwrap();
                seen.push((headers, body));
                if seen.len() == 1 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/hook",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// A seller's webhook endpoint through the API: refused destinations, tenants kept apart, a
/// product listing delivered signed after a failed first attempt (both attempts listed), a
/// rotated secret signing alongside the old one, resend, disable and delete.
async fn webhooks_reach_the_sellers_receiver(database: Database) {
    let app = spawn_app_with(database, |settings| {
        settings.webhook_retry_schedule = Some("0,100ms,100ms".to_owned());
    })
    .await;
    let seller = seller(&app).await;
    let owner = app.token(Role::Customer, Some(&seller));
    let (url, received) = flaky_receiver().await;

    for (body, field) in [
        (
            json!({"url": "http://169.254.169.254/latest/meta-data", "event_types": ["product.created"]}),
            "url",
        ),
        (
            json!({"url": "http://10.0.0.5/hook", "event_types": ["product.created"]}),
            "url",
        ),
        (
            json!({"url": "ftp://example.com/", "event_types": ["product.created"]}),
            "url",
        ),
        (json!({"url": url, "event_types": []}), "event_types"),
        (
            json!({"url": url, "event_types": ["order.shipped"]}),
            "event_types[0]",
        ),
    ] {
        let refused = app.post("/v1/webhook-endpoints", &owner, &body).await;
        let fields = refused.problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            fields.iter().any(|f| f.starts_with(field)),
            "{body}: {fields:?}"
        );
    }
    let created = app
        .post(
            "/v1/webhook-endpoints",
            &owner,
            &json!({"url": url, "event_types": ["product.created"], "description": "ERP"}),
        )
        .await
        .expect(StatusCode::CREATED)
        .json::<Value>();
    let endpoint = created["id"].as_str().unwrap().to_owned();
    let secret =
        vitrine_webhooks::secret::WebhookSecret::parse(created["secret"].as_str().unwrap())
            .unwrap();
    let path = format!("/v1/webhook-endpoints/{endpoint}");
    let fetched = app
        .get(&path, &owner)
        .await
        .expect(StatusCode::OK)
        .json::<Value>();
    assert!(fetched.get("secret").is_none(), "the secret is shown once");
    let stranger = app.token(Role::Customer, Some(&uuid::Uuid::now_v7().to_string()));
    app.get(&path, &stranger)
        .await
        .expect(StatusCode::NOT_FOUND)
        .json::<Value>();
    app.get(&path, &app.admin())
        .await
        .expect(StatusCode::OK)
        .json::<Value>();

    create_product(&app, &seller, "HOOK-1", 2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while received.lock().unwrap().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "never retried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let verify = |headers: &reqwest::header::HeaderMap,
                  body: &str,
                  secret: &vitrine_webhooks::secret::WebhookSecret| {
        let header = |name: &str| headers[name].to_str().unwrap().to_owned();
        let at = header("webhook-timestamp");
        vitrine_webhooks::signature::verify(
            secret,
            &header("webhook-id"),
            &at,
            &header("webhook-signature"),
            body.as_bytes(),
            at.parse().unwrap(),
        )
    };
    let (message, delivered) = {
        let received = received.lock().unwrap();
        let (headers, body) = &received[1];
        verify(headers, body, &secret).unwrap();
        let event: Value = serde_json::from_str(body).unwrap();
        assert_eq!(event["type"], "product.created");
        assert_eq!(event["data"]["sku"], "HOOK-1");
        (
            headers["webhook-id"].to_str().unwrap().to_owned(),
            body.clone(),
        )
    };
    // The receiver has answered; the dispatcher records the attempt right after, so wait for it.
    let mut states: Vec<(Value, Value)> = Vec::new();
    for _ in 0..100 {
        let attempts = app
            .get(&format!("{path}/attempts"), &owner)
            .await
            .expect(StatusCode::OK)
            .json::<Value>();
        states = attempts["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["status_code"].clone(), a["state"].clone()))
            .collect();
        if states.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        states,
        [
            (json!(204), json!("delivered")),
            (json!(500), json!("pending"))
        ]
    );

    // Under an Idempotency-Key, a retry gets the same new secret instead of rotating again
    // (the stored copy of that response is sealed: the middleware's own tests check it).
    let rotate = || {
        app.request(Method::POST, &format!("{path}/rotate-secret"), Some(&owner))
            .header("idempotency-key", "rotate-1")
            .json(&json!({}))
    };
    let rotated = (rotate().await).expect(StatusCode::OK).json::<Value>();
    let again = rotate().await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.expect(StatusCode::OK).json::<Value>(), rotated);
    let new_secret =
        vitrine_webhooks::secret::WebhookSecret::parse(rotated["secret"].as_str().unwrap())
            .unwrap();
    let resent = app
        .post(
            &format!("/v1/webhook-messages/{message}/resend"),
            &owner,
            &json!({}),
        )
        .await
        .expect(StatusCode::ACCEPTED)
        .json::<Value>();
    assert_eq!(resent["queued"], 1);
    while received.lock().unwrap().len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "never resent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    {
        let received = received.lock().unwrap();
        let (headers, body) = &received[2];
        assert_eq!(body, &delivered, "the same message");
        verify(headers, body, &secret).expect("the old secret still signs");
        verify(headers, body, &new_secret).expect("and the new one");
    }

    let disabled = app
        .request(Method::PATCH, &path, Some(&owner))
        .header(
            "if-match",
            format!("\"{}\"", fetched["version"].as_i64().unwrap() + 1),
        )
        .json(&json!({"enabled": false}))
        .await
        .expect(StatusCode::OK)
        .json::<Value>();
    assert_eq!(disabled["enabled"], false);
    app.request(Method::DELETE, &path, Some(&owner))
        .await
        .expect(StatusCode::NO_CONTENT);
    app.get(&path, &owner)
        .await
        .expect(StatusCode::NOT_FOUND)
        .json::<Value>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_reach_the_sellers_receiver_on_sqlite() {
    webhooks_reach_the_sellers_receiver(Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_reach_the_sellers_receiver_on_postgres_and_vault() {
    webhooks_reach_the_sellers_receiver(Database::PostgresAndVault).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_reaches_products_over_sns_sqs() {
    checks::suspending_a_seller_deactivates_its_products(
        spawn_app_over_sqs(Database::Postgres).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seller_checks_over_sns_sqs() {
    checks::sellers_are_checked_with_user_information(spawn_app_over_sqs(Database::Sqlite).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_seller_check_is_503_with_retry_after() {
    // The HTTP directory, pointed at a port nobody listens on.
    let app = spawn_app_with(Database::Sqlite, |settings| {
        settings.customer_directory = vitrine_platform::DirectoryKind::Http;
        settings.user_information_url = Some("http://127.0.0.1:9".to_owned());
        settings.service_token = Some("unused".to_owned().into());
        settings.seller_lookup_timeout_ms = 500;
    })
    .await;
    let seller = seller(&app).await;
    let response = app
        .post("/v1/products", &app.admin(), &product_body(&seller, "X", 0))
        .await
        .expect(StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

/// Lines of the import acceptance: every 100th is bad, in one of five ways.
const IMPORT_LINES: usize = 20_000;

/// The NDJSON of the import acceptance for `seller`, and the field each bad line must be
/// reported on (`None`: the line is not JSON at all).
fn import_body(
    seller: &str,
) -> (
    String,
    std::collections::BTreeMap<usize, Option<&'static str>>,
) {
    let mut body = String::new();
    let mut bad = std::collections::BTreeMap::new();
    let stranger = uuid::Uuid::now_v7().to_string();
    for line in 1..=IMPORT_LINES {
        let product = if line % 100 == 0 {
            let (text, field) = match (line / 100) % 5 {
                0 => ("{\"seller_id\": ".to_owned(), None),
                1 => (
                    json!({"seller_id": seller, "sku": format!("BAD-{line}"), "price": {"amount": 1, "currency": "BRL"}}).to_string(),
                    Some("name"),
                ),
                2 => (product_body(seller, "not a sku!", 1).to_string(), Some("sku")),
                3 => (
                    product_body(&stranger, &format!("THEIRS-{line}"), 1).to_string(),
                    Some("seller_id"),
                ),
                _ => (product_body(seller, "EXP-1", 1).to_string(), Some("sku")),
            };
            bad.insert(line, field);
            text
        } else {
            product_body(seller, &format!("EXP-{line}"), 3).to_string()
        };
        body.push_str(&product);
        body.push('\n');
    }
    (body, bad)
}

/// The Python reference library (`standardwebhooks`) verifies every delivery: it prints the
/// number it verified, or fails.
fn verified_by_the_reference_library(
    secret: &str,
    deliveries: &[(reqwest::header::HeaderMap, String)],
) {
    const SCRIPT: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
case = json.load(sys.stdin)
hook = Webhook(case["secret"])
for d in case["deliveries"]:
    hook.verify(d["body"], d["headers"])
print(len(case["deliveries"]))
"#;
    use std::io::Write;
    let python = std::env::var("VITRINE_TEST_PYTHON").expect(
        "VITRINE_TEST_PYTHON is not set: this test needs the Python scripts/test.sh prepares",
    );
    let case = json!({
        "secret": secret,
        "deliveries": deliveries.iter().map(|(headers, body)| json!({
            "body": body,
            "headers": {
                "webhook-id": headers["webhook-id"].to_str().unwrap(),
                "webhook-timestamp": headers["webhook-timestamp"].to_str().unwrap(),
                "webhook-signature": headers["webhook-signature"].to_str().unwrap(),
            },
        })).collect::<Vec<_>>(),
    });
    let mut child = std::process::Command::new(python)
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(case.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        deliveries.len().to_string()
    );
}

/// The messages of `event_type` received so far, parsed, once each (the receiver refuses its
/// first delivery, which then arrives again).
fn deliveries_of(
    received: &std::sync::Mutex<Vec<(reqwest::header::HeaderMap, String)>>,
    event_type: &str,
) -> Vec<(reqwest::header::HeaderMap, String, Value)> {
    let mut seen = std::collections::BTreeSet::new();
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|(headers, _)| seen.insert(headers["webhook-id"].to_str().unwrap().to_owned()))
        .filter_map(|(headers, body)| {
            let parsed: Value = serde_json::from_str(body).ok()?;
            (parsed["type"] == event_type).then(|| (headers.clone(), body.clone(), parsed))
        })
        .collect()
}

/// Seed R12 and R16 through the API: a 20,000-line NDJSON import with 1% bad lines is
/// acknowledged with 202, consumed from the work queue, and reports every bad line with its
/// number and field; the same Idempotency-Key answers the same import; its end and a products
/// export (20 parts) and a stock snapshot arrive as signed webhooks that the Python reference
/// library verifies, the export's items adding up to the imported catalogue exactly once.
async fn imports_and_batches_arrive_by_webhook(database: Database) {
    let app = spawn_app_with(database, |settings| {
        settings.webhook_retry_schedule = Some("0,100ms,100ms".to_owned());
    })
    .await;
    let seller = seller(&app).await;
    let owner = app.token(Role::Customer, Some(&seller));
    let unheard = app
        .post("/v1/batches", &owner, &json!({"type": "products.export"}))
        .await;
    assert_eq!(
        unheard.problem(StatusCode::UNPROCESSABLE_ENTITY),
        ["type"],
        "nobody would receive it"
    );
    let (url, received) = flaky_receiver().await;
    let endpoint = app
        .post(
            "/v1/webhook-endpoints",
            &owner,
            &json!({"url": url, "event_types": ["batch.completed", "product-import.completed"]}),
        )
        .await
        .expect(StatusCode::CREATED)
        .json::<Value>();
    let secret = endpoint["secret"].as_str().unwrap().to_owned();

    let (body, bad) = import_body(&seller);
    let upload = |key: &'static str| {
        app.request(Method::POST, "/v1/product-imports", Some(&owner))
            .header("content-type", "application/x-ndjson")
            .header("idempotency-key", key)
            .body(body.clone())
    };
    let accepted = upload("import-1").await;
    let location = accepted.headers()["location"].to_str().unwrap().to_owned();
    let accepted = accepted.expect(StatusCode::ACCEPTED).json::<Value>();
    assert_eq!(accepted["received"], IMPORT_LINES);
    assert_eq!(accepted["status"], "queued");
    let again = (upload("import-1").await)
        .expect(StatusCode::ACCEPTED)
        .json::<Value>();
    assert_eq!(again["id"], accepted["id"], "the same key, the same import");
    app.request(Method::POST, "/v1/product-imports", Some(&owner))
        .header("content-type", "application/json")
        .body("{}")
        .await
        .expect(StatusCode::UNSUPPORTED_MEDIA_TYPE);

    eventually(240, "the import completes", async || {
        app.get(&location, &owner)
            .await
            .expect(StatusCode::OK)
            .json::<Value>()["status"]
            == "completed"
    })
    .await;
    let mut errors = Vec::new();
    let mut page = format!("{location}?errors_after=0");
    let summary = loop {
        let report = app
            .get(&page, &owner)
            .await
            .expect(StatusCode::OK)
            .json::<Value>();
        errors.extend(report["errors"].as_array().unwrap().iter().cloned());
        match report["next_errors_after"].as_u64() {
            Some(after) => page = format!("{location}?errors_after={after}"),
            None => break report,
        }
    };
    assert_eq!(summary["created"], IMPORT_LINES - bad.len());
    assert_eq!(summary["failed"], bad.len());
    let reported: std::collections::BTreeMap<usize, Option<String>> = errors
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap() as usize,
                e["field"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(reported.len(), bad.len(), "one entry per bad line");
    for (line, field) in &bad {
        assert_eq!(
            reported.get(line).map(Option::as_deref),
            Some(*field),
            "line {line}: {errors:?}"
        );
    }
    let stranger = app.token(Role::Customer, Some(&uuid::Uuid::now_v7().to_string()));
    app.get(&location, &stranger)
        .await
        .expect(StatusCode::NOT_FOUND)
        .json::<Value>();

    let mut ran = Vec::new();
    for kind in ["products.export", "stock.snapshot"] {
        let accepted = app
            .post(
                "/v1/batches",
                &owner,
                &json!({"type": kind, "filter": {"seller_id": seller}}),
            )
            .await;
        let location = accepted.headers()["location"].to_str().unwrap().to_owned();
        let batch = accepted.expect(StatusCode::ACCEPTED).json::<Value>();
        assert_eq!(batch["parts"], 20, "{batch}");
        eventually(120, "the batch completes", async || {
            app.get(&location, &owner)
                .await
                .expect(StatusCode::OK)
                .json::<Value>()["status"]
                == "completed"
        })
        .await;
        let done = app
            .get(&location, &owner)
            .await
            .expect(StatusCode::OK)
            .json::<Value>();
        assert_eq!(done["items"], IMPORT_LINES - bad.len());
        ran.push((kind, batch["id"].as_str().unwrap().to_owned()));
    }
    eventually(
        60,
        "every part and the import's end are delivered",
        async || {
            deliveries_of(&received, "batch.completed").len() >= 40
                && !deliveries_of(&received, "product-import.completed").is_empty()
        },
    )
    .await;
    for (kind, batch) in ran {
        let mut parts = std::collections::BTreeSet::new();
        let mut skus = std::collections::BTreeSet::new();
        let mut items = 0;
        for (_, _, delivery) in deliveries_of(&received, "batch.completed") {
            let data = &delivery["data"];
            if data["batch_id"] != batch.as_str() {
                continue;
            }
            assert_eq!(data["type"], kind);
            assert_eq!(data["parts"], 20);
            assert!(
                parts.insert(data["part"].as_u64().unwrap()),
                "part delivered once"
            );
            for item in data["items"].as_array().unwrap() {
                items += 1;
                assert!(
                    skus.insert(item["sku"].as_str().unwrap().to_owned()),
                    "{item}"
                );
                if kind == "stock.snapshot" {
                    assert_eq!(
                        (item["on_hand"].as_i64(), item["available"].as_i64()),
                        (Some(3), Some(3))
                    );
                } else {
                    assert_eq!(item["seller_id"], seller.as_str());
                }
            }
        }
        assert_eq!(parts, (1..=20).collect(), "{kind}");
        assert_eq!(
            items,
            IMPORT_LINES - bad.len(),
            "{kind}: each product exactly once"
        );
        let expected: std::collections::BTreeSet<String> = (1..=IMPORT_LINES)
            .filter(|line| !bad.contains_key(line))
            .map(|line| format!("EXP-{line}"))
            .collect();
        assert_eq!(skus, expected, "{kind}");
    }
    let ended = deliveries_of(&received, "product-import.completed");
    assert_eq!(ended[0].2["data"]["import_id"], accepted["id"]);
    assert_eq!(ended[0].2["data"]["failed"], bad.len());
    let signed: Vec<_> = received.lock().unwrap().clone();
    verified_by_the_reference_library(&secret, &signed);
    let metrics = app.metrics().await;
    for series in [
        "vitrine_import_lines_total{result=\"failed\"} 200",
        "vitrine_batch_items_total",
        "vitrine_webhook_pending_deliveries",
        "vitrine_webhook_attempts_total{result=\"delivered\"}",
        "vitrine_outbox_unsent{service=\"products\"}",
        "vitrine_queue_ready{queue=\"products-work\"}",
        "vitrine_queue_dead_letters{queue=\"products\"}",
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_and_batches_arrive_by_webhook_on_sqlite() {
    imports_and_batches_arrive_by_webhook(Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_and_batches_arrive_by_webhook_on_postgres() {
    imports_and_batches_arrive_by_webhook(Database::PostgresAndVault).await;
}

/// An upload cut off mid-body leaves nothing behind: the same Idempotency-Key starts a new
/// import at once (not a 409 for an upload still "in progress"), and only its products exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_import_leaves_its_key_free() {
    let app = spawn_app(Database::Sqlite).await;
    let seller = seller(&app).await;
    let owner = app.token(Role::Customer, Some(&seller));
    let lines: String = (1..=1200)
        .map(|n| product_body(&seller, &format!("CUT-{n}"), 1).to_string() + "\n")
        .collect();
    let head = lines.as_bytes()[..lines.len() / 2].to_vec();
    let cut = futures::stream::iter(vec![
        Ok::<_, std::io::Error>(bytes::Bytes::from(head)),
        Err(std::io::Error::other("the client went away")),
    ]);
    let refused = app
        .request(Method::POST, "/v1/product-imports", Some(&owner))
        .header("content-type", "application/x-ndjson")
        .header("idempotency-key", "cut-1")
        .body(reqwest::Body::wrap_stream(cut))
        .try_send()
        .await;
    assert!(
        refused.as_ref().map_or(true, |r| !r.status().is_success()),
        "a cut-off upload is not accepted: {refused:?}"
    );
    let mut accepted = None;
    for _ in 0..50 {
        let again = app
            .request(Method::POST, "/v1/product-imports", Some(&owner))
            .header("content-type", "application/x-ndjson")
            .header("idempotency-key", "cut-1")
            .body(lines.clone())
            .await;
        if again.status() == StatusCode::ACCEPTED {
            accepted = Some(again.json::<Value>());
            break;
        }
        assert_eq!(
            again.status(),
            StatusCode::CONFLICT,
            "only while the first is removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let accepted = accepted.expect("the key was never free again");
    assert_eq!(
        accepted["received"], 1200,
        "only the complete upload's lines"
    );
}
