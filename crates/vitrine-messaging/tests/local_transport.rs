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
