//! An outbox row no relay can read (written by an older or foreign writer, or edited by hand)
//! must not stall the relay: the claim quarantines it with its error and hands out the rest, and
//! the aggregate's later messages go out after it.

use std::time::Duration;

use chrono::Utc;
use vitrine_messaging::envelope::Envelope;
use vitrine_messaging::outbox::{
    OutboxMessage, OutboxStore, PgOutbox, SqliteOutbox, enqueue_postgres, enqueue_sqlite,
};

fn message(aggregate: &str, n: u32) -> OutboxMessage {
    let envelope = Envelope::new("vitrine.test", "vitrine.test.happened.v1", &n)
        .unwrap()
        .with_subject(aggregate);
    OutboxMessage::event("test-topic", envelope)
}

/// Corrupts the first message's stored envelope and the fourth's destination, then checks a
/// claim hands out the other messages and quarantines those two.
async fn poison_rows_are_quarantined(store: &dyn OutboxStore, corrupt: impl AsyncFn(i64, i64)) {
    let now = Utc::now();
    let claimed = store
        .claim(10, now, Duration::from_secs(30))
        .await
        .unwrap()
        .messages;
    assert_eq!(claimed.len(), 4, "the fixture's messages are claimable");
    let seqs: Vec<i64> = claimed.iter().map(|p| p.seq).collect();
    store.release(&seqs, now).await.unwrap();
    corrupt(seqs[0], seqs[3]).await;

    let claimed = store
        .claim(10, now, Duration::from_secs(30))
        .await
        .unwrap()
        .messages;
    let got: Vec<i64> = claimed.iter().map(|p| p.seq).collect();
    assert_eq!(
        got,
        vec![seqs[1], seqs[2]],
        "the readable messages go out, a1's successor included"
    );
    let quarantined = store.quarantined(10).await.unwrap();
    let set_aside: Vec<i64> = quarantined.iter().map(|q| q.seq).collect();
    assert_eq!(set_aside, vec![seqs[0], seqs[3]]);
    assert!(
        quarantined[0].error.contains("datacontenttype"),
        "the error says what is wrong: {:?}",
        quarantined[0].error
    );
    assert!(
        quarantined[1].error.contains("destination"),
        "{:?}",
        quarantined[1].error
    );
    assert_eq!(quarantined[0].aggregate, "a");
    store.mark_sent(&got, now).await.unwrap();
    assert_eq!(store.unsent().await.unwrap(), 0, "nothing is stuck");
}

fn fixture() -> Vec<OutboxMessage> {
    vec![
        message("a", 1),
        message("a", 2),
        message("b", 1),
        message("c", 1),
    ]
}

#[tokio::test]
async fn sqlite_quarantines_unreadable_rows() {
    let dir = tempfile::tempdir().unwrap();
    let pool = crate::sqlite_outbox_pool(dir.path()).await;
    let mut tx = pool.begin().await.unwrap();
    enqueue_sqlite(&mut tx, &fixture()).await.unwrap();
    tx.commit().await.unwrap();
    let store = SqliteOutbox::new(pool.clone());
    poison_rows_are_quarantined(&store, async |envelope, destination| {
        sqlx::query(
            "UPDATE outbox SET envelope = json_remove(envelope, '$.datacontenttype') WHERE seq = ?",
        )
        .bind(envelope)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("UPDATE outbox SET destination = 'nowhere' WHERE seq = ?")
            .bind(destination)
            .execute(&pool)
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn postgres_quarantines_unreadable_rows() {
    let url = vitrine_runtime::testing::postgres_database().await;
    let pool = vitrine_runtime::db::postgres(&url, 4).await.unwrap();
    vitrine_messaging::migrations::POSTGRES
        .run(&pool)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    enqueue_postgres(&mut tx, &fixture()).await.unwrap();
    tx.commit().await.unwrap();
    let store = PgOutbox::new(pool.clone());
    poison_rows_are_quarantined(&store, async |envelope, destination| {
        sqlx::query("UPDATE outbox SET envelope = envelope - 'datacontenttype' WHERE seq = $1")
            .bind(envelope)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("UPDATE outbox SET destination = 'nowhere' WHERE seq = $1")
            .bind(destination)
            .execute(&pool)
            .await
            .unwrap();
    })
    .await;
}
