//! One behaviour suite for every `Transport` (embedded SQLite, SNS+SQS). Names carry a fresh
//! prefix so the suite can share a server with other runs.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{QueueSpec, Subscription, Topology, Transport, TransportError};
use crate::envelope::Envelope;

const VISIBILITY: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(2);

fn names() -> (String, String, String) {
    let run = uuid::Uuid::now_v7().simple().to_string();
    let run = &run[run.len() - 10..];
    (
        format!("t-{run}-events"),
        format!("q-{run}-all"),
        format!("q-{run}-some"),
    )
}

fn event(kind: &str, n: u32) -> Envelope {
    Envelope::new("vitrine.test", kind, &serde_json::json!({"n": n})).unwrap()
}

async fn topology(transport: &dyn Transport, max_receives: u32) -> (String, String, String) {
    let (topic, all, some) = names();
    let topology = Topology {
        topics: vec![topic.clone()],
        queues: vec![
            QueueSpec {
                name: all.clone(),
                subscriptions: vec![Subscription {
                    topic: topic.clone(),
                    event_types: vec![],
                }],
                max_receives,
            },
            QueueSpec {
                name: some.clone(),
                subscriptions: vec![Subscription {
                    topic: topic.clone(),
                    event_types: vec!["vitrine.test.kept.v1".into()],
                }],
                max_receives,
            },
        ],
    };
    let first = transport.provision(&topology).await.unwrap();
    assert_eq!(
        (first.created.len(), first.found.len()),
        (7, 0),
        "a topic, two queues, their dead-letter queues, two subscriptions: {first:?}"
    );
    let again = transport
        .provision(&topology)
        .await
        .expect("provisioning is idempotent");
    assert_eq!(
        (again.created.len(), again.found.len()),
        (0, 7),
        "{again:?}"
    );
    (topic, all, some)
}

async fn drain(transport: &dyn Transport, queue: &str) -> Vec<Envelope> {
    let mut seen = Vec::new();
    loop {
        let batch = transport
            .receive(queue, 10, Duration::from_millis(300), VISIBILITY)
            .await
            .unwrap();
        if batch.is_empty() {
            return seen;
        }
        for delivery in batch {
            transport.ack(queue, &delivery).await.unwrap();
            seen.push(delivery.envelope);
        }
    }
}

/// Runs every check against `transport`.
pub async fn run_all(transport: &dyn Transport) {
    fan_out_respects_filters(transport).await;
    batches_deliver_each_message_once(transport).await;
    unacked_messages_come_back(transport).await;
    retry_later_delays_redelivery(transport).await;
    exhausted_messages_go_to_the_dead_letter_queue_and_back(transport).await;
    unknown_destinations_are_errors(transport).await;
    temporary_queues_expire_unless_renewed(transport).await;
    depths_count_ready_and_invisible_messages(transport).await;
}

/// Depth is approximate on SQS, so this waits for the counts to settle.
pub async fn depths_count_ready_and_invisible_messages(transport: &dyn Transport) {
    let (_, all, _) = topology(transport, 5).await;
    for n in 0..3 {
        transport
            .send(&all, &event("vitrine.test.kept.v1", n))
            .await
            .unwrap();
    }
    let taken = transport.receive(&all, 1, WAIT, VISIBILITY).await.unwrap();
    assert_eq!(taken.len(), 1);
    let expected = super::QueueDepth {
        ready: 2,
        not_visible: 1,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let depth = transport.depth(&all).await.unwrap();
        if depth == expected {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{depth:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(matches!(
        transport.depth("no-such-queue").await,
        Err(TransportError::Unknown(_))
    ));
    drain(transport, &all).await;
}

pub async fn fan_out_respects_filters(transport: &dyn Transport) {
    let (topic, all, some) = topology(transport, 5).await;
    let kept = event("vitrine.test.kept.v1", 1);
    let filtered = event("vitrine.test.other.v1", 2);
    transport.publish(&topic, &kept).await.unwrap();
    transport.publish(&topic, &filtered).await.unwrap();
    let direct = event("vitrine.test.command.v1", 3);
    transport.send(&some, &direct).await.unwrap();

    let ids =
        |envelopes: Vec<Envelope>| envelopes.into_iter().map(|e| e.id).collect::<BTreeSet<_>>();
    assert_eq!(
        ids(drain(transport, &all).await),
        BTreeSet::from([kept.id, filtered.id])
    );
    let delivered = drain(transport, &some).await;
    assert_eq!(ids(delivered.clone()), BTreeSet::from([kept.id, direct.id]));
    assert!(delivered.contains(&kept), "the envelope arrives unchanged");
}

/// 25 events in one `publish_batch` (three calls of at most ten on SNS) and 25 commands in one
/// `send_batch`: every one arrives once, filters apply per message, and a batch to a missing
/// destination fails for each of its messages.
pub async fn batches_deliver_each_message_once(transport: &dyn Transport) {
    let (topic, all, some) = topology(transport, 5).await;
    let events: Vec<Envelope> = (0..25)
        .map(|n| {
            let kind = if n % 2 == 0 {
                "vitrine.test.kept.v1"
            } else {
                "vitrine.test.other.v1"
            };
            event(kind, n)
        })
        .collect();
    let refs: Vec<&Envelope> = events.iter().collect();
    let results = transport.publish_batch(&topic, &refs).await;
    assert_eq!(results.len(), 25);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let commands: Vec<Envelope> = (0..25)
        .map(|n| event("vitrine.test.command.v1", n))
        .collect();
    let refs: Vec<&Envelope> = commands.iter().collect();
    let results = transport.send_batch(&all, &refs).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    let ids = |envelopes: &[Envelope]| envelopes.iter().map(|e| e.id).collect::<Vec<_>>();
    let mut delivered = ids(&drain(transport, &all).await);
    delivered.sort();
    let mut expected = ids(&events);
    expected.extend(ids(&commands));
    expected.sort();
    assert_eq!(delivered, expected, "each message once");
    let mut filtered = ids(&drain(transport, &some).await);
    filtered.sort();
    let mut kept: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "vitrine.test.kept.v1")
        .map(|e| e.id)
        .collect();
    kept.sort();
    assert_eq!(filtered, kept, "filters apply to each message of a batch");

    let missing = format!("missing-{}", uuid::Uuid::now_v7().simple());
    let refs: Vec<&Envelope> = events.iter().take(3).collect();
    for results in [
        transport.publish_batch(&missing, &refs).await,
        transport.send_batch(&missing, &refs).await,
    ] {
        assert_eq!(results.len(), 3);
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(TransportError::Unknown(_)))),
            "{results:?}"
        );
    }
}

pub async fn unacked_messages_come_back(transport: &dyn Transport) {
    let (_, all, _) = topology(transport, 5).await;
    let message = event("vitrine.test.kept.v1", 1);
    transport.send(&all, &message).await.unwrap();
    let first = transport
        .receive(&all, 10, WAIT, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].receive_count, 1);
    let hidden = transport
        .receive(&all, 10, Duration::from_millis(200), VISIBILITY)
        .await
        .unwrap();
    assert!(hidden.is_empty(), "invisible while being handled");
    let again = transport
        .receive(&all, 10, Duration::from_secs(5), VISIBILITY)
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "redelivered after the visibility timeout");
    assert_eq!(
        (again[0].envelope.id, again[0].receive_count),
        (message.id, 2)
    );
    transport.ack(&all, &again[0]).await.unwrap();
    assert!(drain(transport, &all).await.is_empty());
}

pub async fn retry_later_delays_redelivery(transport: &dyn Transport) {
    let (_, all, _) = topology(transport, 5).await;
    transport
        .send(&all, &event("vitrine.test.kept.v1", 1))
        .await
        .unwrap();
    let first = transport.receive(&all, 1, WAIT, VISIBILITY).await.unwrap();
    transport
        .retry_later(&all, &first[0], Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        transport
            .receive(&all, 1, Duration::from_millis(200), VISIBILITY)
            .await
            .unwrap()
            .is_empty()
    );
    let retried = transport
        .receive(&all, 1, Duration::from_secs(5), VISIBILITY)
        .await
        .unwrap();
    assert_eq!(retried.len(), 1);
    transport.ack(&all, &retried[0]).await.unwrap();
}

pub async fn exhausted_messages_go_to_the_dead_letter_queue_and_back(transport: &dyn Transport) {
    let (_, all, _) = topology(transport, 2).await;
    let poison = event("vitrine.test.kept.v1", 1);
    transport.send(&all, &poison).await.unwrap();
    for attempt in 1..=2 {
        let delivery = transport
            .receive(&all, 1, Duration::from_secs(5), VISIBILITY)
            .await
            .unwrap();
        assert_eq!(delivery.len(), 1, "attempt {attempt}");
        transport
            .retry_later(&all, &delivery[0], Duration::ZERO)
            .await
            .unwrap();
    }
    let mut parked = Vec::new();
    for _ in 0..20 {
        // The move happens on a receive (local) or asynchronously (SQS): poll both ways.
        assert!(
            transport
                .receive(&all, 1, Duration::from_millis(250), VISIBILITY)
                .await
                .unwrap()
                .is_empty()
        );
        parked = transport.dead_letters(&all, 10).await.unwrap();
        if !parked.is_empty() {
            break;
        }
    }
    assert_eq!(
        parked.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![poison.id]
    );
    assert_eq!(transport.redrive(&all).await.unwrap(), 1);
    assert!(transport.dead_letters(&all, 10).await.unwrap().is_empty());
    let back = drain(transport, &all).await;
    assert_eq!(
        back.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![poison.id]
    );
}

pub async fn unknown_destinations_are_errors(transport: &dyn Transport) {
    let missing = format!("missing-{}", uuid::Uuid::now_v7().simple());
    let envelope = event("vitrine.test.kept.v1", 1);
    assert!(matches!(
        transport.send(&missing, &envelope).await,
        Err(TransportError::Unknown(_))
    ));
    assert!(matches!(
        transport.publish(&missing, &envelope).await,
        Err(TransportError::Unknown(_))
    ));
}

pub async fn temporary_queues_expire_unless_renewed(transport: &dyn Transport) {
    let (_, kept, dropped) = names();
    let ttl = Duration::from_secs(2);
    transport.create_temporary_queue(&kept, ttl).await.unwrap();
    transport
        .create_temporary_queue(&dropped, ttl)
        .await
        .unwrap();
    transport
        .send(&dropped, &event("vitrine.test.reply.v1", 1))
        .await
        .unwrap();
    let prefix = &kept[..kept.len() - "all".len()];
    let before = transport.list_queues(prefix).await.unwrap();
    assert!(
        before.contains(&kept) && before.contains(&dropped),
        "{before:?}"
    );

    tokio::time::sleep(Duration::from_millis(1200)).await;
    transport.renew_queue(&kept, ttl).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let deleted = transport.delete_expired_queues().await.unwrap();
    assert!(deleted.contains(&dropped), "{deleted:?}");
    assert!(!deleted.contains(&kept), "a renewed queue is kept");
    let after = transport.list_queues(prefix).await.unwrap();
    assert!(
        after.contains(&kept) && !after.contains(&dropped),
        "{after:?}"
    );

    transport.delete_queue(&kept).await.unwrap();
    transport.delete_queue(&kept).await.unwrap();
    assert!(!transport.list_queues(prefix).await.unwrap().contains(&kept));
    assert!(matches!(
        transport
            .send(&kept, &event("vitrine.test.reply.v1", 2))
            .await,
        Err(TransportError::Unknown(_))
    ));
}
