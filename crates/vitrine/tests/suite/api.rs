//! Black-box tests of the public API (API.md), run against the embedded server with SQLite and
//! again with a real PostgreSQL.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vitrine_platform::http::auth::Role;

mod checks {
    use super::*;

    pub async fn register_normalises_the_cnpj(app: TestApp) {
        let response = app
            .post("/v1/customers", &app.admin(), &customer_body(CNPJ))
            .await
            .expect(StatusCode::CREATED);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        let created: Value = response.json();
        assert_eq!(created["cnpj"], "12ABC34501DE35");
        assert_eq!(created["phone"], "+5511987654321");
        assert_eq!(created["address"]["postal_code"], "01310100");
        assert_eq!(created["status"], "active");
        assert_eq!(
            location,
            format!("/v1/customers/{}", created["id"].as_str().unwrap())
        );

        let read = app
            .get(&location, &app.admin())
            .await
            .expect(StatusCode::OK);
        assert_eq!(read.headers()["etag"].to_str().unwrap(), etag);
        assert_eq!(read.json::<Value>(), created);
    }

    pub async fn bad_check_digits_name_the_cnpj(app: TestApp) {
        let response = app
            .post(
                "/v1/customers",
                &app.admin(),
                &customer_body("12.ABC.345/01DE-34"),
            )
            .await;
        assert_eq!(
            response.problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["cnpj"]
        );
    }

    pub async fn every_bad_field_is_reported(app: TestApp) {
        let mut body = customer_body(CNPJ);
        body["email"] = json!("not-an-email");
        body["phone"] = json!("+1 212 555 0100");
        body["address"]["state"] = json!("XX");
        body["address"]["postal_code"] = json!("123");
        let response = app.post("/v1/customers", &app.admin(), &body).await;
        let fields = response.problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            fields,
            vec!["email", "phone", "address.state", "address.postal_code"]
        );
    }

    /// A second registration of a CNPJ names the customer that has it, and says when that
    /// customer is closed (closed customers keep their CNPJ).
    pub async fn a_cnpj_registers_once(app: TestApp) {
        let id = app.create_customer(&customer_body(CNPJ)).await;
        let register_again = async || {
            let again = app
                .post(
                    "/v1/customers",
                    &app.admin(),
                    &customer_body("12ABC34501DE35"),
                )
                .await
                .expect(StatusCode::CONFLICT);
            let problem: Value = again.json();
            problem["detail"].as_str().unwrap().to_owned()
        };
        let detail = register_again().await;
        assert!(
            detail.contains("already registered") && detail.contains(&id),
            "{detail}"
        );
        app.request(
            Method::DELETE,
            &format!("/v1/customers/{id}"),
            Some(&app.admin()),
        )
        .await
        .expect(StatusCode::NO_CONTENT);
        let detail = register_again().await;
        assert!(
            detail.contains(&id) && detail.contains("which is closed"),
            "{detail}"
        );
    }

    pub async fn idempotency_key_replays_the_first_response(app: TestApp) {
        let admin = app.admin();
        let send = |body: Value| {
            app.request(Method::POST, "/v1/customers", Some(&admin))
                .header("Idempotency-Key", "create-acme-1")
                .json(&body)
        };
        let first = send(customer_body(CNPJ)).await.expect(StatusCode::CREATED);
        assert!(first.headers().get("idempotent-replayed").is_none());
        let first_location = first.headers()["location"].clone();
        let first_body = first.text();

        let second = send(customer_body(CNPJ)).await.expect(StatusCode::CREATED);
        assert_eq!(second.headers()["idempotent-replayed"], "true");
        assert_eq!(second.headers()["location"], first_location);
        assert_eq!(second.text(), first_body);

        let list: Value = app.get("/v1/customers", &admin).await.json();
        assert_eq!(
            list["items"].as_array().unwrap().len(),
            1,
            "one customer was created"
        );

        let mut other = customer_body(CNPJ);
        other["legal_name"] = json!("Outra Empresa");
        let mismatch = send(other).await;
        assert_eq!(
            mismatch.problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["Idempotency-Key"]
        );

        let invalid = app
            .request(Method::POST, "/v1/customers", Some(&admin))
            .header("Idempotency-Key", "x".repeat(256))
            .json(&customer_body(&unique_cnpj()))
            .await;
        assert_eq!(
            invalid.problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["Idempotency-Key"]
        );
    }

    pub async fn hostile_bodies_get_4xx_problems(app: TestApp) {
        let admin = app.admin();
        let raw = |body: Vec<u8>, content_type: &'static str| {
            app.request(Method::POST, "/v1/customers", Some(&admin))
                .header("content-type", content_type)
                .body(body)
        };
        let malformed = raw(b"{\"cnpj\": ".to_vec(), "application/json").await;
        malformed.problem(StatusCode::BAD_REQUEST);

        let mut wrong_type = customer_body(CNPJ);
        wrong_type["legal_name"] = json!(42);
        let response = app.post("/v1/customers", &admin, &wrong_type).await;
        assert_eq!(
            response.problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["legal_name"]
        );

        let mut unknown = customer_body(CNPJ);
        unknown["address"]["country"] = json!("BR");
        let response = app.post("/v1/customers", &admin, &unknown).await;
        assert_eq!(
            response.problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["address.country"]
        );

        let mut missing = customer_body(CNPJ);
        missing.as_object_mut().unwrap().remove("email");
        let response = app.post("/v1/customers", &admin, &missing).await;
        assert_eq!(
            response.problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["email"]
        );

        let (status, content_type) = app
            .oversized_post("/v1/customers", &admin, 5 * 1024 * 1024)
            .await;
        assert_eq!(
            (status, content_type.as_str()),
            (413, "application/problem+json")
        );

        let not_json = raw(b"cnpj=1".to_vec(), "application/x-www-form-urlencoded").await;
        not_json.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);

        let array = raw(b"[1, 2]".to_vec(), "application/json").await;
        array.problem(StatusCode::UNPROCESSABLE_ENTITY);

        let unknown_route = app.get("/v1/nothing-here", &admin).await;
        unknown_route.problem(StatusCode::NOT_FOUND);
        // Ids that cannot even be read name nothing: 404 problems, never plain-text 400s.
        for path in [
            "/v1/customers/%FF%FE",
            "/v1/customers/%C3%28/payment-methods",
            "/v1/products/%FF",
            "/v1/reservations/%80",
        ] {
            app.get(path, &admin).await.problem(StatusCode::NOT_FOUND);
        }
        let wrong_method = app
            .request(Method::PUT, "/v1/customers", Some(&admin))
            .await;
        let mut allowed: Vec<String> = wrong_method.headers()["allow"]
            .to_str()
            .unwrap()
            .split(',')
            .map(|m| m.trim().to_owned())
            .collect();
        allowed.sort();
        assert_eq!(
            allowed,
            ["GET", "HEAD", "POST"],
            "a 405 says what is allowed"
        );
        wrong_method.problem(StatusCode::METHOD_NOT_ALLOWED);

        let bad_limit = app.get("/v1/customers?limit=0", &admin).await;
        assert_eq!(
            bad_limit.problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["limit"]
        );
        let bad_cursor = app.get("/v1/customers?cursor=%%%", &admin).await;
        assert_eq!(
            bad_cursor.problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["cursor"]
        );
        let bad_param = app.get("/v1/customers?sort=name", &admin).await;
        assert_eq!(
            bad_param.problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["sort"]
        );
    }

    pub async fn tokens_and_tenants_are_enforced(app: TestApp) {
        let alice = app.create_customer(&customer_body(CNPJ)).await;
        let bob = app.create_customer(&customer_body(&unique_cnpj())).await;

        let anonymous = app
            .request(Method::GET, &format!("/v1/customers/{alice}"), None)
            .await;
        assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
        anonymous.problem(StatusCode::UNAUTHORIZED);
        let forged = app
            .get(&format!("/v1/customers/{alice}"), "not.a.token")
            .await;
        forged.problem(StatusCode::UNAUTHORIZED);

        let as_alice = app.token(Role::Customer, Some(&alice));
        app.get(&format!("/v1/customers/{alice}"), &as_alice)
            .await
            .expect(StatusCode::OK);
        let other_tenant = app.get(&format!("/v1/customers/{bob}"), &as_alice).await;
        other_tenant.problem(StatusCode::NOT_FOUND);
        let other_methods = app
            .get(&format!("/v1/customers/{bob}/payment-methods"), &as_alice)
            .await;
        other_methods.problem(StatusCode::NOT_FOUND);

        let create = app
            .post("/v1/customers", &as_alice, &customer_body(&unique_cnpj()))
            .await;
        create.problem(StatusCode::FORBIDDEN);
        app.get("/v1/customers", &as_alice)
            .await
            .problem(StatusCode::FORBIDDEN);
        let payments = app.token(Role::Payments, None);
        app.get(&format!("/v1/customers/{alice}"), &payments)
            .await
            .problem(StatusCode::FORBIDDEN);

        // A service credential reads the internal lookup and nothing else: leaked, it cannot
        // list, create or change customers.
        let service = app.token(Role::Service, None);
        let lookup = format!("/internal/v1/customers/{alice}/lookup");
        let looked_up = app.get(&lookup, &service).await.expect(StatusCode::OK);
        assert_eq!(looked_up.json::<Value>()["outcome"], "found");
        app.get(&lookup, &as_alice)
            .await
            .problem(StatusCode::FORBIDDEN);
        for public in [
            app.get("/v1/products", &service).await,
            app.get(&format!("/v1/customers/{alice}"), &service).await,
            app.get("/v1/customers", &service).await,
            app.post("/v1/customers", &service, &customer_body(&unique_cnpj()))
                .await,
            app.request(
                Method::PATCH,
                &format!("/v1/customers/{alice}"),
                Some(&service),
            )
            .json(&json!({"trade_name": "Leaked"}))
            .await,
        ] {
            public.problem(StatusCode::FORBIDDEN);
        }

        let patch = |token: String, body: Value| {
            app.request(
                Method::PATCH,
                &format!("/v1/customers/{alice}"),
                Some(&token),
            )
            .json(&body)
        };
        let own_status = patch(as_alice.clone(), json!({"status": "suspended"})).await;
        assert_eq!(
            own_status.problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["status"]
        );
        let own_name = patch(as_alice.clone(), json!({"trade_name": "Alice & Cia"})).await;
        own_name.expect(StatusCode::OK);
        let suspended = patch(app.admin(), json!({"status": "suspended"})).await;
        assert_eq!(suspended.json::<Value>()["status"], "suspended");
    }

    pub async fn if_match_guards_updates(app: TestApp) {
        let id = app.create_customer(&customer_body(CNPJ)).await;
        let path = format!("/v1/customers/{id}");
        let etag = app.get(&path, &app.admin()).await.headers()["etag"]
            .to_str()
            .unwrap()
            .to_owned();
        let patch = |tag: &str, body: Value| {
            app.request(Method::PATCH, &path, Some(&app.admin()))
                .header("If-Match", tag)
                .json(&body)
        };
        let moved = json!({"phone": null, "address": {"street": "Rua Augusta", "number": "5",
            "district": "Consolação", "city": "São Paulo", "state": "SP", "postal_code": "01305000"}});
        let ok = patch(&etag, moved).await.expect(StatusCode::OK);
        let new_etag = ok.headers()["etag"].to_str().unwrap().to_owned();
        assert_ne!(new_etag, etag);
        let body: Value = ok.json();
        assert_eq!(body["phone"], Value::Null);
        assert_eq!(body["address"]["complement"], Value::Null);

        let stale = patch(&etag, json!({"legal_name": "Tarde Demais"})).await;
        stale.problem(StatusCode::PRECONDITION_FAILED);
        let listed = patch(
            &format!("\"99\", {new_etag}"),
            json!({"trade_name": "Listada"}),
        )
        .await;
        assert_eq!(listed.status(), StatusCode::OK, "any listed tag may match");
        let new_etag = listed.headers()["etag"].to_str().unwrap().to_owned();
        let empty = patch(&new_etag, json!({})).await;
        empty.problem(StatusCode::UNPROCESSABLE_ENTITY);
        let stale_delete = app
            .request(Method::DELETE, &path, Some(&app.admin()))
            .header("If-Match", &etag)
            .await;
        stale_delete.problem(StatusCode::PRECONDITION_FAILED);
    }

    pub async fn cards_are_masked_and_revealed_only_to_payments(app: TestApp) {
        let id = app.create_customer(&customer_body(CNPJ)).await;
        let methods = format!("/v1/customers/{id}/payment-methods");
        let added = app
            .request(Method::POST, &methods, Some(&app.admin()))
            .header("Idempotency-Key", "add-card-1")
            .json(&card_body("4111 1111 1111 1111"))
            .await
            .expect(StatusCode::CREATED);
        let text = added.text();
        assert!(!text.contains(CARD), "{text}");
        let added: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            added["card"],
            json!({"brand": "visa", "last4": "1111", "exp_month": 12, "exp_year": 2031, "holder_name": "MARIA SOUZA"})
        );
        let pm = added["id"].as_str().unwrap().to_owned();

        let listed = app.get(&methods, &app.admin()).await.text();
        assert!(!listed.contains(CARD), "{listed}");

        let secret = format!("{methods}/{pm}/secret");
        app.get(&secret, &app.admin())
            .await
            .problem(StatusCode::FORBIDDEN);
        let owner = app.token(Role::Customer, Some(&id));
        app.get(&secret, &owner)
            .await
            .problem(StatusCode::FORBIDDEN);
        let revealed = app
            .get(&secret, &app.token(Role::Payments, None))
            .await
            .expect(StatusCode::OK);
        assert_eq!(revealed.headers()["cache-control"], "no-store");
        let revealed: Value = revealed.json();
        assert_eq!(revealed["card"]["number"], CARD);

        // The audit trail, through the API: who, when, which request.
        let accesses = format!("{methods}/{pm}/secret-accesses");
        app.get(&accesses, &owner)
            .await
            .problem(StatusCode::FORBIDDEN);
        let audit: Value = app.get(&accesses, &app.admin()).await.json();
        let items = audit["items"].as_array().unwrap();
        assert_eq!(
            items.len(),
            1,
            "every reveal is audited, refused ones are not reveals: {audit}"
        );
        assert_eq!(items[0]["actor"], "test-payments");
        assert!(
            items[0]["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "{audit}"
        );
        // A caller's well-formed id is kept for correlation; anything else is replaced by a
        // generated one before it reaches the logs or the audit.
        let payments = app.token(Role::Payments, None);
        for (sent, kept) in [("req-2026.12:01_a", true), ("<script> 'x'", false)] {
            let revealed = app
                .get(&secret, &payments)
                .header("x-request-id", sent)
                .await;
            let answered = revealed.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned();
            assert_eq!(answered == sent, kept, "{sent:?} answered as {answered:?}");
            if !kept {
                uuid::Uuid::parse_str(&answered).expect("a generated id");
            }
            let audit: Value = app.get(&accesses, &app.admin()).await.json();
            assert_eq!(
                audit["items"].as_array().unwrap().last().unwrap()["request_id"],
                answered.as_str()
            );
        }
        let elsewhere = format!(
            "/v1/customers/{}/payment-methods/{pm}/secret-accesses",
            uuid::Uuid::now_v7()
        );
        app.get(&elsewhere, &app.admin())
            .await
            .problem(StatusCode::NOT_FOUND);

        let rows = app.database_text().await;
        assert!(
            !rows.contains(CARD),
            "a PostgreSQL row holds the card number"
        );
        for file in app.data_files() {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !contains(&bytes, CARD),
                "{} holds the card number",
                file.display()
            );
        }
    }

    pub async fn bad_cards_and_security_codes_are_refused(app: TestApp) {
        let id = app.create_customer(&customer_body(CNPJ)).await;
        let methods = format!("/v1/customers/{id}/payment-methods");
        let mut with_cvv = card_body(CARD);
        with_cvv["card"]["cvv"] = json!("123");
        let response = app.post(&methods, &app.admin(), &with_cvv).await;
        assert_eq!(
            response.problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["card.cvv"]
        );

        let luhn = app
            .post(&methods, &app.admin(), &card_body("4111111111111112"))
            .await;
        let body = luhn.text();
        assert!(
            !body.contains("4111111111111112"),
            "the number is not echoed: {body}"
        );
        assert!(body.contains("card.number"), "{body}");

        let mut expired = card_body(CARD);
        expired["card"]["exp_year"] = json!(2020);
        let response = app.post(&methods, &app.admin(), &expired).await;
        assert_eq!(
            response.problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["card.exp_year"]
        );

        let mut numeric = card_body(CARD);
        numeric["card"]["number"] = json!(4111111111111111_u64);
        let response = app.post(&methods, &app.admin(), &numeric).await;
        let body = response.text();
        assert!(!body.contains(CARD), "{body}");

        let both = json!({"type": "pix", "card": card_body(CARD)["card"], "pix": {"key_type": "evp", "key": "x"}});
        let response = app.post(&methods, &app.admin(), &both).await;
        assert_eq!(
            response.problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["card"]
        );

        let list: Value = app.get(&methods, &app.admin()).await.json();
        assert_eq!(list["items"], json!([]), "nothing was stored");
    }

    pub async fn pix_keys_are_validated_and_masked(app: TestApp) {
        let id = app.create_customer(&customer_body(CNPJ)).await;
        let methods = format!("/v1/customers/{id}/payment-methods");
        let added = app
            .post(
                &methods,
                &app.admin(),
                &json!({"type": "pix", "pix": {"key_type": "cpf", "key": "529.982.247-25"}}),
            )
            .await
            .expect(StatusCode::CREATED);
        let text = added.text();
        assert!(!text.contains("52998224725"), "{text}");
        let pm = serde_json::from_str::<Value>(&text).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let revealed: Value = app
            .get(
                &format!("{methods}/{pm}/secret"),
                &app.token(Role::Payments, None),
            )
            .await
            .json();
        assert_eq!(
            revealed["pix"],
            json!({"key_type": "cpf", "key": "52998224725"})
        );

        let bad = app
            .post(
                &methods,
                &app.admin(),
                &json!({"type": "pix", "pix": {"key_type": "cpf", "key": "529.982.247-26"}}),
            )
            .await;
        assert_eq!(
            bad.problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["pix.key"]
        );
        let kind = app
            .post(
                &methods,
                &app.admin(),
                &json!({"type": "pix", "pix": {"key_type": "iban", "key": "x"}}),
            )
            .await;
        assert_eq!(
            kind.problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["pix.key_type"]
        );
    }

    pub async fn removing_a_method_destroys_its_secret(app: TestApp) {
        let id = app.create_customer(&customer_body(CNPJ)).await;
        let methods = format!("/v1/customers/{id}/payment-methods");
        let added: Value = app
            .post(&methods, &app.admin(), &card_body(CARD))
            .await
            .json();
        let pm = added["id"].as_str().unwrap();
        let owner = app.token(Role::Customer, Some(&id));
        app.request(Method::DELETE, &format!("{methods}/{pm}"), Some(&owner))
            .await
            .expect(StatusCode::NO_CONTENT);
        let gone = app
            .get(
                &format!("{methods}/{pm}/secret"),
                &app.token(Role::Payments, None),
            )
            .await;
        gone.problem(StatusCode::NOT_FOUND);
        let again = app
            .request(Method::DELETE, &format!("{methods}/{pm}"), Some(&owner))
            .await;
        again.problem(StatusCode::NOT_FOUND);
        assert!(secret_files(&app).is_empty());
    }

    pub async fn closing_a_customer_erases_its_secrets(app: TestApp) {
        let id = app.create_customer(&customer_body(CNPJ)).await;
        let methods = format!("/v1/customers/{id}/payment-methods");
        app.post(&methods, &app.admin(), &card_body(CARD)).await;
        app.post(
            &methods,
            &app.admin(),
            &json!({"type": "pix", "pix": {"key_type": "email", "key": "fin@exemplo.com.br"}}),
        )
        .await;
        assert_eq!(secret_files(&app).len(), 2);

        let path = format!("/v1/customers/{id}");
        let owner = app.token(Role::Customer, Some(&id));
        app.request(Method::DELETE, &path, Some(&owner))
            .await
            .problem(StatusCode::FORBIDDEN);
        app.request(Method::DELETE, &path, Some(&app.admin()))
            .await
            .expect(StatusCode::NO_CONTENT);
        assert!(
            secret_files(&app).is_empty(),
            "every secret of the customer is destroyed"
        );

        let kept: Value = app.get(&path, &app.admin()).await.json();
        assert_eq!(kept["status"], "closed");
        assert_eq!(
            kept["cnpj"], "12ABC34501DE35",
            "basic data is kept for legal records"
        );
        let list: Value = app.get(&methods, &app.admin()).await.json();
        assert_eq!(list["items"], json!([]));
        let late = app.post(&methods, &app.admin(), &card_body(CARD)).await;
        late.problem(StatusCode::CONFLICT);
        let reopen = app
            .request(Method::PATCH, &path, Some(&app.admin()))
            .json(&json!({"status": "active"}))
            .await;
        reopen.problem(StatusCode::CONFLICT);
        let repeat = app.request(Method::DELETE, &path, Some(&app.admin())).await;
        assert_eq!(
            repeat.status(),
            StatusCode::NO_CONTENT,
            "closing again repeats the erasure"
        );
    }

    pub async fn lists_page_and_filter(app: TestApp) {
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(app.create_customer(&customer_body(&unique_cnpj())).await);
        }
        let admin = app.admin();
        let mut seen = Vec::new();
        let mut next = Some("/v1/customers?limit=2".to_owned());
        while let Some(path) = next {
            let page: Value = app.get(&path, &admin).await.json();
            seen.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["id"].as_str().unwrap().to_owned()),
            );
            next = page["next_cursor"]
                .as_str()
                .map(|c| format!("/v1/customers?limit=2&cursor={c}"));
        }
        assert_eq!(seen, ids);

        let target: Value = app
            .get(&format!("/v1/customers/{}", ids[2]), &admin)
            .await
            .json();
        let cnpj = target["cnpj"].as_str().unwrap();
        let masked = vitrine_kernel::Cnpj::parse(cnpj).unwrap().formatted();
        // The mask's characters (`.`, `/`, `-`) are all legal in a query string.
        let filtered: Value = app
            .get(&format!("/v1/customers?cnpj={masked}"), &admin)
            .await
            .json();
        assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
        assert_eq!(filtered["items"][0]["id"], ids[2].as_str());
        let none: Value = app
            .get("/v1/customers?status=suspended", &admin)
            .await
            .json();
        assert_eq!(none["items"], json!([]));
    }

    pub async fn operations_endpoints_answer(app: TestApp) {
        app.request(Method::GET, "/health/live", None)
            .await
            .expect(StatusCode::OK);
        let ready: Value = app.request(Method::GET, "/health/ready", None).await.json();
        assert_eq!(
            ready,
            json!({"status": "ready", "checks": {
                "database": "up", "secrets": "up", "messaging": "up",
                "products-database": "up", "products-messaging": "up", "products-cache": "up",
                "products-directory": "up", "background": "up",
            }})
        );
        app.get("/v1/customers", &app.admin()).await;
        let metrics = app.metrics().await;
        assert!(
            metrics.contains(
                "http_requests_total{method=\"GET\",route=\"/v1/customers\",status=\"200\"}"
            ),
            "{metrics}"
        );
        let openapi: Value = app.request(Method::GET, "/openapi.json", None).await.json();
        assert_eq!(openapi["openapi"], "3.1.0");
        assert!(openapi["paths"]["/v1/customers/{id}/payment-methods/{pm_id}/secret"].is_object());
        let docs = app
            .request(Method::GET, "/docs/", None)
            .await
            .expect(StatusCode::OK);
        let html = docs.text();
        assert!(html.contains("swagger-ui"), "{html}");
        assert!(
            !html.contains("https://"),
            "the docs page loads nothing from the internet"
        );
        let initializer = app
            .request(Method::GET, "/docs/swagger-initializer.js", None)
            .await;
        assert!(initializer.text().contains("/openapi.json"));
    }

    fn secret_files(app: &TestApp) -> Vec<std::path::PathBuf> {
        app.data_files()
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "sealed"))
            .collect()
    }
}

macro_rules! api_suite {
    ($backend:ident = $database:expr; $($check:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::checks::$check(super::spawn_app($database).await).await;
                }
            )+
        }
    };
}

// Payment secrets in Vault instead of local sealed files: the same behaviour.
api_suite!(postgres_and_vault = super::Database::PostgresAndVault;
    cards_are_masked_and_revealed_only_to_payments,
    bad_cards_and_security_codes_are_refused,
    pix_keys_are_validated_and_masked,
);

macro_rules! every_backend {
    ($($check:ident),+ $(,)?) => {
        api_suite!(sqlite = super::Database::Sqlite; $($check),+);
        api_suite!(postgres = super::Database::Postgres; $($check),+);
    };
}

every_backend!(
    register_normalises_the_cnpj,
    bad_check_digits_name_the_cnpj,
    every_bad_field_is_reported,
    a_cnpj_registers_once,
    idempotency_key_replays_the_first_response,
    hostile_bodies_get_4xx_problems,
    tokens_and_tenants_are_enforced,
    if_match_guards_updates,
    cards_are_masked_and_revealed_only_to_payments,
    bad_cards_and_security_codes_are_refused,
    pix_keys_are_validated_and_masked,
    removing_a_method_destroys_its_secret,
    closing_a_customer_erases_its_secrets,
    lists_page_and_filter,
    operations_endpoints_answer,
);
