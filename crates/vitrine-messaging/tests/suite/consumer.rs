//! The consumer runtime over the embedded transport: retries with backoff, dead-letters a message
//! after the queue's maximum receives, and handles it once it is redriven after a fix.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use vitrine_messaging::Envelope;
use vitrine_messaging::consumer::{Consumer, ConsumerOptions, Handler};
use vitrine_messaging::transport::{LocalTransport, QueueSpec, Topology, Transport};

/// Fails every message while `broken` is set (a bug, a missing dependency), then recovers.
#[derive(Default)]
struct Flaky {
    broken: AtomicBool,
    attempts: AtomicUsize,
    handled: Mutex<Vec<uuid::Uuid>>,
}

#[async_trait]
impl Handler for Flaky {
    async fn handle(&self, envelope: &Envelope) -> anyhow::Result<()> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        anyhow::ensure!(!self.broken.load(Ordering::SeqCst), "handler is broken");
        self.handled.lock().await.push(envelope.id);
        Ok(())
    }
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An embedded transport in `dir` with one queue that dead-letters after three receives.
async fn transport_with_queue(dir: &tempfile::TempDir, name: &str) -> Arc<dyn Transport> {
    let transport: Arc<dyn Transport> = Arc::new(
        LocalTransport::open(&dir.path().join("messaging.sqlite3"))
            .await
            .unwrap(),
    );
    let queue = QueueSpec {
        name: name.into(),
        subscriptions: vec![],
        max_receives: 3,
    };
    transport
        .provision(&Topology {
            topics: vec![],
            queues: vec![queue],
        })
        .await
        .unwrap();
    transport
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_then_redriven_and_handled() {
    let dir = tempfile::tempdir().unwrap();
    let transport = transport_with_queue(&dir, "jobs").await;

    let handler = Arc::new(Flaky::default());
    handler.broken.store(true, Ordering::SeqCst);
    let options = ConsumerOptions {
        batch: 5,
        visibility: Duration::from_secs(5),
        retry_delay: Duration::from_millis(20),
        max_retry_delay: Duration::from_millis(100),
        wait: Duration::from_millis(100),
    };
    let stop = CancellationToken::new();
    let consumer = Consumer::new("jobs", Arc::clone(&transport), handler.clone(), options);
    let running = tokio::spawn(consumer.run(stop.clone()));

    let poison = Envelope::new("vitrine.test", "vitrine.test.job.v1", &"work").unwrap();
    transport.send("jobs", &poison).await.unwrap();
    eventually("the message is dead-lettered", async || {
        !transport.dead_letters("jobs", 10).await.unwrap().is_empty()
    })
    .await;
    assert_eq!(
        handler.attempts.load(Ordering::SeqCst),
        3,
        "tried exactly max_receives times"
    );
    assert!(handler.handled.lock().await.is_empty());
    assert_eq!(
        transport.dead_letters("jobs", 10).await.unwrap()[0].id,
        poison.id
    );

    handler.broken.store(false, Ordering::SeqCst);
    assert_eq!(transport.redrive("jobs").await.unwrap(), 1);
    eventually("the redriven message is handled", async || {
        handler.handled.lock().await.contains(&poison.id)
    })
    .await;
    assert!(transport.dead_letters("jobs", 10).await.unwrap().is_empty());
    stop.cancel();
    running.await.unwrap();
}

/// Handlers run inside the message's trace, so whatever they publish continues it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_continue_the_message_trace() {
    struct Seen(Mutex<Option<String>>);

    #[async_trait]
    impl Handler for Seen {
        async fn handle(&self, _: &Envelope) -> anyhow::Result<()> {
            *self.0.lock().await = vitrine_runtime::trace_context::current();
            Ok(())
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let transport = transport_with_queue(&dir, "traced").await;
    let seen = Arc::new(Seen(Mutex::new(None)));
    let stop = CancellationToken::new();
    let consumer = Consumer::new(
        "traced",
        Arc::clone(&transport),
        seen.clone(),
        ConsumerOptions::default(),
    );
    let running = tokio::spawn(consumer.run(stop.clone()));

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let message = Envelope::new("vitrine.test", "vitrine.test.job.v1", &1)
        .unwrap()
        .with_traceparent(Some(format!("00-{trace}-00f067aa0ba902b7-01")));
    transport.send("traced", &message).await.unwrap();
    eventually("the handler ran", async || seen.0.lock().await.is_some()).await;
    let context = seen.0.lock().await.clone().unwrap();
    assert_eq!(
        vitrine_runtime::trace_context::trace_id(&context),
        Some(trace)
    );
    assert!(
        !context.contains("00f067aa0ba902b7"),
        "the handler gets a span of its own"
    );
    stop.cancel();
    running.await.unwrap();
}
