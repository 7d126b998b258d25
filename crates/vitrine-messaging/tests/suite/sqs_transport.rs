//! The SNS+SQS transport against a real moto server (started by scripts/test.sh): the same
//! conformance suite as the embedded transport, plus what an external CloudEvents library makes
//! of the messages read from SQS.

use std::time::Duration;

use vitrine_messaging::Envelope;
use vitrine_messaging::transport::{
    Publisher, QueueSpec, SqsTransport, Subscription, Topology, Transport, conformance,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_transport_conformance_suite() {
    conformance::run_all(&SqsTransport::for_tests().await).await;
}

/// Messages read from SQS parse as CloudEvents 1.0 with the official CloudEvents SDK for Rust,
/// attributes and extensions intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_sqs_bodies_are_valid_cloudevents() {
    use cloudevents::{AttributesReader, Data};

    let transport = SqsTransport::for_tests().await;
    let topology = Topology {
        topics: vec!["events".into()],
        queues: vec![QueueSpec {
            name: "reader".into(),
            subscriptions: vec![Subscription {
                topic: "events".into(),
                event_types: vec![],
            }],
            max_receives: 3,
        }],
    };
    transport.provision(&topology).await.unwrap();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut event = Envelope::new(
        "vitrine.test",
        "vitrine.test.thing.happened.v1",
        &serde_json::json!({"a": 1}),
    )
    .unwrap()
    .with_subject("thing-1")
    .with_traceparent(Some(traceparent.into()));
    event.replyto = Some("somewhere".into());
    event.deadline = Some(chrono::Utc::now());
    transport.publish("events", &event).await.unwrap();
    let received = transport
        .receive("reader", 1, Duration::from_secs(5), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].envelope, event,
        "raw delivery: the body is the envelope, unwrapped"
    );

    let parsed: cloudevents::Event =
        serde_json::from_str(&received[0].envelope.to_json()).expect("a CloudEvent");
    assert_eq!(parsed.specversion(), cloudevents::event::SpecVersion::V10);
    assert_eq!(parsed.id(), event.id.to_string());
    assert_eq!(parsed.ty(), "vitrine.test.thing.happened.v1");
    assert_eq!(parsed.source().to_string(), "vitrine.test");
    assert_eq!(parsed.subject(), Some("thing-1"));
    assert_eq!(parsed.datacontenttype(), Some("application/json"));
    assert_eq!(
        parsed
            .extension("traceparent")
            .map(ToString::to_string)
            .as_deref(),
        Some(traceparent)
    );
    assert_eq!(
        parsed
            .extension("replyto")
            .map(ToString::to_string)
            .as_deref(),
        Some("somewhere")
    );
    assert!(
        matches!(parsed.data(), Some(Data::Json(json)) if json == &serde_json::json!({"a": 1}))
    );
}
