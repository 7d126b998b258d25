//! One behaviour suite for every `OutboxStore`, given a way to commit messages with it.

use std::future::Future;
use std::pin::Pin;

use chrono::{Duration, Utc};

use super::{LEASE, OutboxMessage, OutboxStore};
use crate::envelope::Envelope;

/// Commits `messages` the way a service does (in a transaction of its own).
pub type Enqueue<'a> =
    &'a (dyn Fn(Vec<OutboxMessage>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Sync);

fn message(aggregate: &str, n: u32) -> OutboxMessage {
    let envelope = Envelope::new(
        "vitrine.test",
        "vitrine.test.happened.v1",
        &serde_json::json!({"n": n}),
    )
    .unwrap()
    .with_subject(aggregate);
    OutboxMessage::event("test-topic", envelope)
}

pub async fn run_all(store: &dyn OutboxStore, enqueue: Enqueue<'_>) {
    let lease = Duration::from_std(LEASE).unwrap();
    let a = [message("a", 1), message("a", 2), message("a", 3)];
    let b = [message("b", 1)];
    enqueue(vec![a[0].clone(), b[0].clone()]).await;
    enqueue(vec![a[1].clone(), a[2].clone()]).await;
    let now = Utc::now();
    assert_eq!(store.unsent().await.unwrap(), 4);

    // Only the oldest unsent message of each aggregate is claimable.
    let claimed = store.claim(10, now, LEASE).await.unwrap();
    let got: Vec<_> = claimed.iter().map(|p| p.message.clone()).collect();
    assert_eq!(
        got,
        vec![a[0].clone(), b[0].clone()],
        "heads of aggregates, in commit order"
    );
    assert!(
        store.claim(10, now, LEASE).await.unwrap().is_empty(),
        "claimed rows are leased"
    );
    assert_eq!(
        store
            .claim(10, now + lease + Duration::seconds(1), LEASE)
            .await
            .unwrap()
            .len(),
        2,
        "leases expire"
    );

    // Sent heads unblock their successors.
    store
        .mark_sent(&[claimed[0].seq, claimed[1].seq], now)
        .await
        .unwrap();
    let next = store.claim(10, now + lease * 3, LEASE).await.unwrap();
    assert_eq!(
        next.iter().map(|p| p.message.clone()).collect::<Vec<_>>(),
        vec![a[1].clone()]
    );

    // A failure keeps the message (and blocks its aggregate) until the retry time.
    let retry_at = now + Duration::seconds(60);
    store
        .mark_failed(next[0].seq, "broker down", retry_at)
        .await
        .unwrap();
    assert!(
        store
            .claim(10, now + Duration::seconds(10), LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let retried = store.claim(10, retry_at, LEASE).await.unwrap();
    assert_eq!((retried.len(), retried[0].attempts), (1, 1));
    assert_eq!(retried[0].message, a[1]);
    store.mark_sent(&[retried[0].seq], now).await.unwrap();
    let last = store.claim(10, retry_at + lease * 2, LEASE).await.unwrap();
    assert_eq!(
        last.iter().map(|p| p.message.clone()).collect::<Vec<_>>(),
        vec![a[2].clone()]
    );
    store.mark_sent(&[last[0].seq], now).await.unwrap();
    assert_eq!(store.unsent().await.unwrap(), 0);

    assert_eq!(
        store.prune(now - Duration::seconds(1)).await.unwrap(),
        0,
        "recent sends are kept"
    );
    assert_eq!(store.prune(now + Duration::seconds(1)).await.unwrap(), 4);
}
