//! The embedded transport passes the transport conformance suite and keeps messages across a
//! reopen of its database (a process restart).

use std::time::Duration;

use vitrine_messaging::Envelope;
use vitrine_messaging::transport::{
    LocalTransport, Publisher, QueueSpec, Topology, Transport, conformance,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_transport_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let transport = LocalTransport::open(&dir.path().join("messaging.sqlite3"))
        .await
        .unwrap();
    conformance::run_all(&transport).await;
}

#[tokio::test]
async fn messages_in_flight_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messaging.sqlite3");
    let topology = Topology {
        topics: vec![],
        queues: vec![QueueSpec {
            name: "work".into(),
            subscriptions: vec![],
            max_receives: 5,
        }],
    };
    let message = Envelope::new("vitrine.test", "vitrine.test.job.v1", &1).unwrap();
    {
        let transport = LocalTransport::open(&path).await.unwrap();
        transport.provision(&topology).await.unwrap();
        transport.send("work", &message).await.unwrap();
        // Received but never acked: the process "dies" while handling it.
        let taken = transport
            .receive(
                "work",
                1,
                Duration::from_secs(1),
                Duration::from_millis(300),
            )
            .await
            .unwrap();
        assert_eq!(taken.len(), 1);
    }
    let transport = LocalTransport::open(&path).await.unwrap();
    let again = transport
        .receive("work", 1, Duration::from_secs(5), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].envelope.id, again[0].receive_count),
        (message.id, 2)
    );
}

/// A message no consumer can read (written by an older or foreign writer) must not make every
/// receive on its queue fail: it is quarantined, with the error, and the next one is delivered.
#[tokio::test]
async fn unreadable_messages_are_quarantined_not_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messaging.sqlite3");
    let transport = LocalTransport::open(&path).await.unwrap();
    transport
        .provision(&Topology {
            topics: vec![],
            queues: vec![QueueSpec {
                name: "work".into(),
                subscriptions: vec![],
                max_receives: 5,
            }],
        })
        .await
        .unwrap();
    let readable = Envelope::new("vitrine.test", "vitrine.test.job.v1", &2).unwrap();
    transport
        .send(
            "work",
            &Envelope::new("vitrine.test", "vitrine.test.job.v1", &1).unwrap(),
        )
        .await
        .unwrap();
    transport.send("work", &readable).await.unwrap();
    let pool = vitrine_runtime::db::sqlite(&path).await.unwrap();
    sqlx::query(
        "UPDATE messages SET envelope = json_remove(envelope, '$.datacontenttype') \
         WHERE seq = (SELECT min(seq) FROM messages)",
    )
    .execute(&pool)
    .await
    .unwrap();

    let received = transport
        .receive(
            "work",
            10,
            Duration::from_millis(10),
            Duration::from_secs(30),
        )
        .await
        .expect("an unreadable message does not fail the receive");
    let ids: Vec<_> = received.iter().map(|d| d.envelope.id).collect();
    assert_eq!(ids, vec![readable.id]);
    let quarantined = transport.quarantined(10).await.unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].queue, "work");
    assert!(
        quarantined[0].error.contains("datacontenttype"),
        "{quarantined:?}"
    );
}
