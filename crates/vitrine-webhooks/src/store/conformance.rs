//! One behaviour suite for every [`WebhookStore`]: run it against each backend with a way to
//! commit a message as a service does (in a transaction of its own).

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::{
    AttemptRecord, DeliveryState, EndpointChanges, NewEndpoint, NewMessage, StoreError,
    WebhookStore,
};

/// Commits a message and its deliveries; how many deliveries were written.
pub type Enqueue<'a> =
    &'a (dyn Fn(NewMessage) -> Pin<Box<dyn Future<Output = usize> + Send>> + Sync);

pub async fn run_all(store: &dyn WebhookStore, enqueue: Enqueue<'_>) {
    endpoints_are_created_changed_and_deleted(store).await;
    messages_go_to_subscribed_enabled_endpoints_only(store, enqueue).await;
    claims_lease_and_respect_the_per_endpoint_limit(store, enqueue).await;
    attempts_move_deliveries_and_the_failure_run(store, enqueue).await;
    disabling_cancels_and_resend_and_recover_queue_again(store, enqueue).await;
    old_finished_messages_are_pruned(store, enqueue).await;
}

fn now() -> DateTime<Utc> {
    super::micros(Utc::now())
}

fn endpoint(tenant: &str, types: &[&str]) -> NewEndpoint {
    NewEndpoint {
        tenant: tenant.to_owned(),
        url: "https://receiver.example/hook".to_owned(),
        description: Some("ERP".to_owned()),
        event_types: types.iter().map(|t| (*t).to_owned()).collect(),
    }
}

fn message(tenant: &str, event_type: &str) -> NewMessage {
    NewMessage {
        id: Uuid::now_v7(),
        tenant: tenant.to_owned(),
        event_type: event_type.to_owned(),
        body: format!(r#"{{"type":"{event_type}","data":{{}}}}"#).into_bytes(),
        created_at: now(),
    }
}

fn attempt(
    message_id: Uuid,
    endpoint_id: Uuid,
    state: DeliveryState,
    next: Option<DateTime<Utc>>,
) -> AttemptRecord {
    AttemptRecord {
        id: Uuid::now_v7(),
        message_id,
        endpoint_id,
        attempted_at: now(),
        status_code: Some(if state == DeliveryState::Delivered {
            200
        } else {
            500
        }),
        duration_ms: 12,
        error: (state != DeliveryState::Delivered).then(|| "the receiver answered 500".to_owned()),
        state,
        next_attempt_at: next,
    }
}

/// A new endpoint of `tenant` for `types`.
async fn subscribe(store: &dyn WebhookStore, tenant: &str, types: &[&str]) -> super::Endpoint {
    store
        .create_endpoint(Uuid::now_v7(), &endpoint(tenant, types), now())
        .await
        .unwrap()
}

/// A tenant of its own per test, so tests sharing a database do not see each other.
fn tenant() -> String {
    Uuid::now_v7().to_string()
}

pub async fn endpoints_are_created_changed_and_deleted(store: &dyn WebhookStore) {
    let tenant = tenant();
    let id = Uuid::now_v7();
    let created = store
        .create_endpoint(
            id,
            &endpoint(
                &tenant,
                &["stock.changed", "batch.completed", "stock.changed"],
            ),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(created.event_types, ["batch.completed", "stock.changed"]);
    assert!(created.enabled && created.version == 1);
    assert_eq!(store.endpoint(id).await.unwrap(), Some(created.clone()));

    let changes = EndpointChanges {
        description: Some(None),
        event_types: Some(vec!["product.created".to_owned()]),
        ..EndpointChanges::default()
    };
    assert!(matches!(
        store.update_endpoint(id, Some(7), &changes, now()).await,
        Err(StoreError::VersionMismatch)
    ));
    let changed = store
        .update_endpoint(id, Some(1), &changes, now())
        .await
        .unwrap();
    assert_eq!(
        (changed.description, changed.event_types, changed.version),
        (None, vec!["product.created".to_owned()], 2)
    );
    let other = subscribe(store, &tenant, &["batch.completed"]).await;
    let listed = store.endpoints(Some(&tenant), 10, None).await.unwrap();
    assert_eq!(
        listed.iter().map(|e| e.id).collect::<Vec<_>>(),
        [id, other.id]
    );
    let page = store.endpoints(Some(&tenant), 10, Some(id)).await.unwrap();
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [other.id]);

    let until = now() + Duration::hours(24);
    let rotated = store.secret_rotated(id, until, now()).await.unwrap();
    assert_eq!(rotated.previous_secret_until, Some(until));

    store.delete_endpoint(id, now()).await.unwrap();
    assert_eq!(store.endpoint(id).await.unwrap(), None);
    assert!(matches!(
        store.delete_endpoint(id, now()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.update_endpoint(id, None, &changes, now()).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn messages_go_to_subscribed_enabled_endpoints_only(
    store: &dyn WebhookStore,
    enqueue: Enqueue<'_>,
) {
    let (tenant, stranger) = (tenant(), tenant());
    let subscribed = subscribe(store, &tenant, &["stock.changed"]).await;
    let other_type = subscribe(store, &tenant, &["batch.completed"]).await;
    let disabled = subscribe(store, &tenant, &["stock.changed"]).await;
    store
        .disable_endpoint(disabled.id, "test", now())
        .await
        .unwrap();
    subscribe(store, &stranger, &["stock.changed"]).await;
    assert!(store.subscribed(&tenant, "stock.changed").await.unwrap());
    assert!(store.subscribed(&tenant, "batch.completed").await.unwrap());
    assert!(!store.subscribed(&tenant, "product.deleted").await.unwrap());
    assert!(
        !store
            .subscribed(&stranger, "batch.completed")
            .await
            .unwrap()
    );
    let only_disabled = Uuid::now_v7().to_string();
    let off = subscribe(store, &only_disabled, &["batch.completed"]).await;
    store.disable_endpoint(off.id, "test", now()).await.unwrap();
    assert!(
        !store
            .subscribed(&only_disabled, "batch.completed")
            .await
            .unwrap(),
        "a disabled endpoint receives nothing"
    );

    let sent = message(&tenant, "stock.changed");
    assert_eq!(
        enqueue(sent.clone()).await,
        1,
        "only the subscribed, enabled endpoint"
    );
    let due = claim_all(store).await;
    let mine: Vec<_> = due.iter().filter(|d| d.message_id == sent.id).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].endpoint_id, subscribed.id);
    assert_eq!(mine[0].body, sent.body, "the body byte for byte");
    assert_eq!(mine[0].attempts, 0);
    assert!(!due.iter().any(|d| d.endpoint_id == other_type.id));
    let unheard = message(&tenant, "product.deleted");
    assert_eq!(enqueue(unheard.clone()).await, 0);
    assert!(
        matches!(
            store.resend(unheard.id, None, now()).await,
            Err(StoreError::NotFound)
        ),
        "a message nobody is subscribed to is not written"
    );
}

/// Everything due now, leased for a minute.
async fn claim_all(store: &dyn WebhookStore) -> Vec<super::Due> {
    store
        .claim(now(), now() + Duration::minutes(1), 1000, 1000)
        .await
        .unwrap()
}

pub async fn claims_lease_and_respect_the_per_endpoint_limit(
    store: &dyn WebhookStore,
    enqueue: Enqueue<'_>,
) {
    let tenant = tenant();
    let slow = subscribe(store, &tenant, &["stock.changed"]).await;
    for _ in 0..5 {
        enqueue(message(&tenant, "stock.changed")).await;
    }
    let lease = now() + Duration::minutes(1);
    let first = store.claim(now(), lease, 100, 2).await.unwrap();
    let first: Vec<_> = first.iter().filter(|d| d.endpoint_id == slow.id).collect();
    assert_eq!(first.len(), 2, "two at a time to one endpoint");
    let second = store.claim(now(), lease, 100, 2).await.unwrap();
    assert!(
        !second.iter().any(|d| d.endpoint_id == slow.id),
        "its two slots are taken while their leases last"
    );
    // An endpoint at its limit does not fill the claim window: with room for one delivery
    // per claim, the busy endpoint's backlog (older) does not hold up another's.
    for _ in 0..8 {
        enqueue(message(&tenant, "stock.changed")).await;
    }
    let other = subscribe(store, &tenant, &["batch.completed"]).await;
    enqueue(message(&tenant, "batch.completed")).await;
    let narrow = store.claim(now(), lease, 1, 2).await.unwrap();
    assert!(
        narrow.iter().any(|d| d.endpoint_id == other.id),
        "the other endpoint waited behind a busy one: {narrow:?}"
    );

    // After the leases end, the rest (and the leased ones again) are claimable.
    let later = now() + Duration::minutes(2);
    let third = store
        .claim(later, later + Duration::minutes(1), 100, 5)
        .await
        .unwrap();
    assert_eq!(third.iter().filter(|d| d.endpoint_id == slow.id).count(), 5);
}

pub async fn attempts_move_deliveries_and_the_failure_run(
    store: &dyn WebhookStore,
    enqueue: Enqueue<'_>,
) {
    let tenant = tenant();
    let target = subscribe(store, &tenant, &["batch.completed"]).await;
    let sent = message(&tenant, "batch.completed");
    enqueue(sent.clone()).await;
    let due = claim_all(store).await;
    assert!(due.iter().any(|d| d.message_id == sent.id));

    // A failure: retried in a minute, and the endpoint's failure run starts.
    let retry_at = now() + Duration::minutes(1);
    let failed = attempt(sent.id, target.id, DeliveryState::Pending, Some(retry_at));
    let run = store.record(&failed).await.unwrap();
    assert_eq!(run, Some(failed.attempted_at));
    assert!(
        !claim_all(store)
            .await
            .iter()
            .any(|d| d.message_id == sent.id),
        "not due before its retry time"
    );
    let when_due = store
        .claim(retry_at, retry_at + Duration::minutes(1), 1000, 1000)
        .await
        .unwrap();
    let again: Vec<_> = when_due
        .iter()
        .filter(|d| d.message_id == sent.id)
        .collect();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);

    // A second failure keeps the run's start; a success ends it.
    let second = attempt(sent.id, target.id, DeliveryState::Pending, Some(retry_at));
    assert_eq!(
        store.record(&second).await.unwrap(),
        Some(failed.attempted_at)
    );
    let delivered = attempt(sent.id, target.id, DeliveryState::Delivered, None);
    assert_eq!(store.record(&delivered).await.unwrap(), None);
    assert_eq!(
        store
            .endpoint(target.id)
            .await
            .unwrap()
            .unwrap()
            .failing_since,
        None
    );
    let later = now() + Duration::hours(1);
    assert!(
        !store
            .claim(later, later, 1000, 1000)
            .await
            .unwrap()
            .iter()
            .any(|d| d.message_id == sent.id),
        "delivered: never claimed again"
    );

    // Newest first, paged.
    let attempts = store.attempts(target.id, 10, None).await.unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.id).collect::<Vec<_>>(),
        [delivered.id, second.id, failed.id]
    );
    assert_eq!(attempts[2], failed);
    let older = store
        .attempts(target.id, 10, Some(second.id))
        .await
        .unwrap();
    assert_eq!(older.iter().map(|a| a.id).collect::<Vec<_>>(), [failed.id]);
}

pub async fn disabling_cancels_and_resend_and_recover_queue_again(
    store: &dyn WebhookStore,
    enqueue: Enqueue<'_>,
) {
    let tenant = tenant();
    let target = subscribe(store, &tenant, &["stock.changed"]).await;
    let pending = message(&tenant, "stock.changed");
    enqueue(pending.clone()).await;
    let exhausted = message(&tenant, "stock.changed");
    enqueue(exhausted.clone()).await;
    claim_all(store).await;
    store
        .record(&attempt(
            exhausted.id,
            target.id,
            DeliveryState::Failed,
            None,
        ))
        .await
        .unwrap();

    // Recover re-queues what failed for good since a time, once.
    let before = now() - Duration::minutes(5);
    assert_eq!(store.recover(target.id, before, now()).await.unwrap(), 1);
    assert_eq!(store.recover(target.id, before, now()).await.unwrap(), 0);
    let due = claim_all(store).await;
    let recovered: Vec<_> = due
        .iter()
        .filter(|d| d.message_id == exhausted.id)
        .collect();
    assert_eq!(
        (recovered.len(), recovered[0].attempts),
        (1, 0),
        "a fresh schedule"
    );
    store
        .record(&attempt(
            exhausted.id,
            target.id,
            DeliveryState::Delivered,
            None,
        ))
        .await
        .unwrap();

    // Resend queues a delivered message again; only the owner's tenant may.
    assert!(matches!(
        store
            .resend(exhausted.id, Some("someone else"), now())
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store
            .resend(exhausted.id, Some(&tenant), now())
            .await
            .unwrap(),
        1
    );

    // Disabling (a 410) cancels what is pending; once.
    assert!(
        store
            .disable_endpoint(target.id, "410 Gone", now())
            .await
            .unwrap()
    );
    assert!(
        !store
            .disable_endpoint(target.id, "410 Gone", now())
            .await
            .unwrap()
    );
    let disabled = store.endpoint(target.id).await.unwrap().unwrap();
    assert_eq!(
        (disabled.enabled, disabled.disabled_reason.as_deref()),
        (false, Some("410 Gone"))
    );
    let later = now() + Duration::hours(1);
    let due = store.claim(later, later, 1000, 1000).await.unwrap();
    assert!(
        !due.iter().any(|d| d.endpoint_id == target.id),
        "nothing goes to a disabled endpoint"
    );
    assert_eq!(
        store.resend(pending.id, None, now()).await.unwrap(),
        0,
        "not to a disabled endpoint either"
    );

    // Re-enabling clears the reason and the failure run.
    let enabled = store
        .update_endpoint(
            target.id,
            None,
            &EndpointChanges {
                enabled: Some(true),
                ..EndpointChanges::default()
            },
            now(),
        )
        .await
        .unwrap();
    assert!(enabled.enabled && enabled.disabled_reason.is_none());
    assert_eq!(store.resend(pending.id, None, now()).await.unwrap(), 1);
}

/// Pruning deletes old messages no delivery waits on (with their deliveries and attempts),
/// and keeps recent ones and those still pending; `pending` counts what waits.
pub async fn old_finished_messages_are_pruned(store: &dyn WebhookStore, enqueue: Enqueue<'_>) {
    let tenant = tenant();
    let target = subscribe(store, &tenant, &["stock.changed"]).await;
    let aged = |days: i64| NewMessage {
        created_at: now() - Duration::days(days),
        ..message(&tenant, "stock.changed")
    };
    let (old_done, old_waiting, recent_done) = (aged(40), aged(40), aged(1));
    let before = store.pending().await.unwrap();
    for sent in [&old_done, &old_waiting, &recent_done] {
        assert_eq!(enqueue(sent.clone()).await, 1);
    }
    assert_eq!(store.pending().await.unwrap(), before + 3);
    for done in [&old_done, &recent_done] {
        store
            .record(&attempt(done.id, target.id, DeliveryState::Delivered, None))
            .await
            .unwrap();
    }
    assert_eq!(store.pending().await.unwrap(), before + 1);

    let pruned = store.prune(now() - Duration::days(30), 1000).await.unwrap();
    assert!(pruned >= 1, "{pruned}");
    assert!(matches!(
        store.resend(old_done.id, None, now()).await,
        Err(StoreError::NotFound)
    ));
    let attempts = store.attempts(target.id, 100, None).await.unwrap();
    assert!(!attempts.iter().any(|a| a.message_id == old_done.id));
    assert!(attempts.iter().any(|a| a.message_id == recent_done.id));
    assert!(
        claim_all(store)
            .await
            .iter()
            .any(|d| d.message_id == old_waiting.id),
        "a message still waiting for its delivery is kept"
    );
}
