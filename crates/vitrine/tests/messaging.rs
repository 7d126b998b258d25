//! What the embedded server says over messaging: user-information's events reach subscribers
//! (carrying the HTTP request's trace and no secrets), and customer lookups are answered.

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use vitrine_contracts::user_information as contract;
use vitrine_messaging::Envelope;
use vitrine_messaging::transport::{QueueSpec, Subscription, Topology, Transport};

async fn subscriber(app: &TestApp) -> String {
    let queue = format!("test-subscriber-{}", uuid::Uuid::now_v7().simple());
    let spec = QueueSpec {
        name: queue.clone(),
        subscriptions: vec![Subscription {
            topic: contract::TOPIC.into(),
            event_types: vec![],
        }],
        max_receives: 5,
    };
    app.transport
        .provision(&Topology {
            topics: vec![],
            queues: vec![spec],
        })
        .await
        .unwrap();
    queue
}

async fn next_events(transport: &dyn Transport, queue: &str, count: usize) -> Vec<Envelope> {
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while events.len() < count && tokio::time::Instant::now() < deadline {
        for delivery in transport
            .receive(queue, 10, Duration::from_secs(1), Duration::from_secs(30))
            .await
            .unwrap()
        {
            transport.ack(queue, &delivery).await.unwrap();
            events.push(delivery.envelope);
        }
    }
    events
}

async fn events_flow(app: TestApp) {
    let queue = subscriber(&app).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let created = app
        .request(Method::POST, "/v1/customers", Some(&app.admin()))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&customer_body(CNPJ))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let response_trace = created.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        response_trace.contains(trace),
        "the response continues the caller's trace"
    );
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let methods = format!("/v1/customers/{id}/payment-methods");
    let card: Value = app
        .post(&methods, &app.admin(), &card_body(CARD))
        .await
        .json()
        .await
        .unwrap();
    let suspended = app
        .request(
            Method::PATCH,
            &format!("/v1/customers/{id}"),
            Some(&app.admin()),
        )
        .json(&serde_json::json!({"status": "suspended"}))
        .send()
        .await
        .unwrap();
    assert_eq!(suspended.status(), StatusCode::OK);

    let events = next_events(&*app.transport, &queue, 3).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        vec![
            contract::CUSTOMER_REGISTERED,
            contract::PAYMENT_METHOD_ADDED,
            contract::CUSTOMER_STATUS_CHANGED
        ],
        "in commit order"
    );
    let registered: contract::CustomerRegistered = events[0].decode().unwrap();
    assert_eq!(registered.cnpj, "12ABC34501DE35");
    assert_eq!(events[0].subject.as_deref(), Some(id.as_str()));
    assert_eq!(events[0].source, contract::SOURCE);
    assert!(
        events[0].traceparent.as_deref().unwrap().contains(trace),
        "the event carries the request's trace"
    );
    let added: contract::PaymentMethodAdded = events[1].decode().unwrap();
    assert_eq!(
        added.payment_method_id.to_string(),
        card["id"].as_str().unwrap()
    );
    let changed: contract::CustomerStatusChanged = events[2].decode().unwrap();
    assert_eq!(
        (changed.from, changed.to),
        (
            contract::CustomerStatus::Active,
            contract::CustomerStatus::Suspended
        )
    );
    for event in &events {
        assert!(
            !event.to_json().contains(CARD),
            "no event carries the card number"
        );
    }
}

async fn lookups_are_answered(app: TestApp) {
    let id = app.create_customer(&customer_body(CNPJ)).await;
    let replies = format!("test-replies-{}", uuid::Uuid::now_v7().simple());
    let spec = QueueSpec {
        name: replies.clone(),
        subscriptions: vec![],
        max_receives: 5,
    };
    app.transport
        .provision(&Topology {
            topics: vec![],
            queues: vec![spec],
        })
        .await
        .unwrap();

    let ask = |customer_id: uuid::Uuid| {
        let mut request = Envelope::new(
            "vitrine.test",
            contract::CUSTOMER_LOOKUP,
            &contract::CustomerLookup { customer_id },
        )
        .unwrap();
        request.replyto = Some(replies.clone());
        request.deadline = Some(chrono::Utc::now() + chrono::Duration::seconds(30));
        request
    };
    let known = ask(id.parse().unwrap());
    let unknown_id = uuid::Uuid::now_v7();
    let unknown = ask(unknown_id);
    app.transport.send(contract::QUEUE, &known).await.unwrap();
    app.transport.send(contract::QUEUE, &unknown).await.unwrap();

    let answers = next_events(&*app.transport, &replies, 2).await;
    assert_eq!(answers.len(), 2);
    for answer in &answers {
        assert_eq!(answer.kind, contract::CUSTOMER_LOOKUP_REPLY);
        let reply: contract::CustomerLookupReply = answer.decode().unwrap();
        match reply {
            contract::CustomerLookupReply::Found {
                id: found,
                cnpj,
                status,
                ..
            } => {
                assert_eq!(answer.causationid, Some(known.id.to_string()));
                assert_eq!(found.to_string(), id);
                assert_eq!(
                    (cnpj.as_str(), status),
                    ("12ABC34501DE35", contract::CustomerStatus::Active)
                );
            }
            contract::CustomerLookupReply::NotFound { id: missing } => {
                assert_eq!(answer.causationid, Some(unknown.id.to_string()));
                assert_eq!(missing, unknown_id);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_events_flow() {
    events_flow(spawn_app(Database::Sqlite).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_events_flow() {
    events_flow(spawn_app(Database::Postgres).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_lookups_are_answered() {
    lookups_are_answered(spawn_app(Database::Sqlite).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lookups_are_answered() {
    lookups_are_answered(spawn_app(Database::Postgres).await).await;
}

/// `/health/ready` names the dependency that is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_the_dependency_that_is_down() {
    let app = spawn_app(Database::Sqlite).await;
    app.transport.delete_queue(contract::QUEUE).await.unwrap();
    let response = app
        .request(Method::GET, "/health/ready", None)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"]["messaging"], "down: queue not provisioned");
    assert_eq!(body["checks"]["database"], "up");
}
