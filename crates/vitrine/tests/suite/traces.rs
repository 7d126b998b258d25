//! Traces exported over OTLP/HTTP, as a collector receives them: the trace a caller starts spans
//! its HTTP request, the outbox relay's publication of the event it caused, and the consumer's
//! handling of that event in another service.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use reqwest::Method;
use serde_json::json;

use crate::binary::{
    free_port, last_line, register_customer, scratch, start_with, stop, token, wait_live,
};

/// One span as the collector received it (ids in lowercase hex, as in `traceparent`).
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace: String,
    id: String,
    parent: String,
}

type Spans = Arc<Mutex<Vec<Received>>>;

/// An OTLP/HTTP trace receiver (`POST /v1/traces`, protobuf), recording every span.
async fn collector() -> (String, Spans) {
    let spans = Spans::default();
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (endpoint, spans)
}

async fn receive(
    State(spans): State<Spans>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], Vec<u8>) {
    assert_eq!(
        headers.get(header::CONTENT_TYPE).unwrap(),
        "application/x-protobuf"
    );
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut received = spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|attribute| attribute.key == "service.name")
            .and_then(
                |attribute| match attribute.value.as_ref()?.value.as_ref()? {
                    AnyValue::StringValue(name) => Some(name.clone()),
                    _ => None,
                },
            )
            .unwrap_or_default();
        for span in resource_spans
            .scope_spans
            .into_iter()
            .flat_map(|scope| scope.spans)
        {
            received.push(Received {
                service: service.clone(),
                name: span.name,
                trace: hex(&span.trace_id),
                id: hex(&span.span_id),
                parent: hex(&span.parent_span_id),
            });
        }
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

/// Waits (30 s at most) for the trace `trace` a caller's span `caller` started to hold the
/// request span (the caller's child), a relay `publish` span and a consumer `message` span (both
/// children of the request span, whose id the messages carry), all from `vitrine`; returns the
/// request span.
async fn one_trace(spans: &Spans, trace: &str, caller: &str) -> Received {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let received = spans.lock().unwrap().clone();
        let find = |name: &str, parent: &str| {
            received
                .iter()
                .find(|s| s.trace == trace && s.name == name && s.parent == parent)
                .cloned()
        };
        if let Some(request) = find("request", caller)
            && let (Some(publish), Some(consume)) =
                (find("publish", &request.id), find("message", &request.id))
        {
            for span in [&request, &publish, &consume] {
                assert_eq!(span.service, "vitrine", "{span:?}");
            }
            assert_ne!(publish.id, consume.id);
            return request;
        }
        assert!(
            Instant::now() < deadline,
            "no complete trace {trace} within 30 s; received: {received:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn one_trace_spans_the_request_the_relay_and_the_consumer() {
    let (endpoint, spans) = collector().await;
    let (_root, data_dir, logs) = scratch();
    let port = free_port();
    let process = start_with(
        &data_dir,
        &logs,
        1,
        port,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("VITRINE_LOG", "info"),
        ],
    );
    wait_live(&process).await;
    let admin = last_line(&token(&data_dir, &["--role", "admin"]));
    let id = register_customer(&process, &admin).await;

    // A create under an Idempotency-Key runs its handler detached from the connection: the
    // trace must carry on into it. products consumes its own `product.created` (cache eviction).
    let (created_trace, creator) = ("5ce0e9a56015fec5aadfa328ae398115", "3a2b1c0d4e5f6a7b");
    let product = process
        .api()
        .call(Method::POST, "/v1/products")
        .bearer(&admin)
        .header("traceparent", format!("00-{created_trace}-{creator}-01"))
        .header("idempotency-key", "traced-create")
        .json(&json!({
            "seller_id": id, "sku": "TRACE-1", "name": "Traced",
            "price": {"amount": 1000, "currency": "BRL"}, "initial_stock": 1,
        }))
        .await
        .expect(StatusCode::CREATED);
    let answered = product.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    let request = one_trace(&spans, created_trace, creator).await;
    assert_eq!(answered, format!("00-{created_trace}-{}-01", request.id));

    // The caller's trace: suspending the customer makes user-information publish
    // `customer.status-changed`, which products consumes (its sellers' products go inactive).
    let (trace, caller) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let suspended = process
        .api()
        .call(Method::PATCH, &format!("/v1/customers/{id}"))
        .bearer(&admin)
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .json(&json!({"status": "suspended"}))
        .await
        .expect(StatusCode::OK);
    let answered = suspended.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    let request = one_trace(&spans, trace, caller).await;
    // The response names the exported request span, so a caller can find it in the viewer.
    assert_eq!(answered, format!("00-{trace}-{}-01", request.id));
    stop(process);
}
