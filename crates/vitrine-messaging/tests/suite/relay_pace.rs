//! The relay paces its claims only when the outbox is drained: a backlog goes out with its
//! workers publishing side by side even when each claim comes back short. The store here hands
//! out at most a few messages per claim (as a claim does when the rest of its window belongs to
//! aggregates whose earlier messages another worker holds), and every publish call takes
//! [`CALL`]: four workers drain the backlog in about a quarter of the time one claim after
//! another would, which is what a paced relay does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use vitrine_messaging::envelope::Envelope;
use vitrine_messaging::outbox::{
    Claim, Failure, OutboxMessage, OutboxStore, Quarantined, SqliteOutbox, enqueue_sqlite,
};
use vitrine_messaging::relay::Relay;
use vitrine_messaging::transport::{Publisher, TransportError};

const BACKLOG: usize = 60;
const PER_CLAIM: usize = 4;
/// Each publish call's time: 15 claims take 15 s one after another, about 4 s four at a time.
const CALL: Duration = Duration::from_secs(1);
/// Between the two.
const WITHIN: Duration = Duration::from_secs(8);

/// An outbox whose claims look at a window of [`PER_CLAIM`] messages whatever the relay asks
/// for; `honest: false` also says the window was never full (the broken variant).
#[derive(Debug)]
struct Narrow {
    inner: SqliteOutbox,
    honest: bool,
}

#[async_trait]
impl OutboxStore for Narrow {
    async fn claim(
        &self,
        _max: usize,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<Claim> {
        let mut claim = self.inner.claim(PER_CLAIM, now, lease).await?;
        claim.window_full &= self.honest;
        Ok(claim)
    }

    async fn mark_sent(&self, seqs: &[i64], now: DateTime<Utc>) -> anyhow::Result<()> {
        self.inner.mark_sent(seqs, now).await
    }

    async fn mark_failed(&self, failures: &[Failure]) -> anyhow::Result<()> {
        self.inner.mark_failed(failures).await
    }

    async fn release(&self, seqs: &[i64], due: DateTime<Utc>) -> anyhow::Result<()> {
        self.inner.release(seqs, due).await
    }

    async fn prune(&self, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        self.inner.prune(cutoff).await
    }

    async fn quarantined(&self, max: usize) -> anyhow::Result<Vec<Quarantined>> {
        self.inner.quarantined(max).await
    }

    async fn unsent(&self) -> anyhow::Result<i64> {
        self.inner.unsent().await
    }

    async fn wait_for_work(&self, max_wait: Duration) {
        self.inner.wait_for_work(max_wait).await
    }
}

/// Accepts everything after [`CALL`] per call, counting.
#[derive(Debug, Default)]
struct Slow(AtomicUsize);

#[async_trait]
impl Publisher for Slow {
    async fn publish(&self, topic: &str, envelope: &Envelope) -> Result<(), TransportError> {
        self.publish_batch(topic, &[envelope]).await.remove(0)
    }

    async fn send(&self, queue: &str, envelope: &Envelope) -> Result<(), TransportError> {
        self.publish_batch(queue, &[envelope]).await.remove(0)
    }

    async fn publish_batch(
        &self,
        _topic: &str,
        envelopes: &[&Envelope],
    ) -> Vec<Result<(), TransportError>> {
        tokio::time::sleep(CALL).await;
        self.0.fetch_add(envelopes.len(), Ordering::SeqCst);
        envelopes.iter().map(|_| Ok(())).collect()
    }
}

/// Runs the relay over a backlog of [`BACKLOG`] messages (one aggregate each) for up to
/// [`WITHIN`]; how many it published.
async fn drain(honest: bool) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let pool = crate::sqlite_outbox_pool(dir.path()).await;
    let backlog: Vec<OutboxMessage> = (0..BACKLOG)
        .map(|n| {
            let envelope = Envelope::new("vitrine.test", "vitrine.test.happened.v1", &n)
                .unwrap()
                .with_subject(format!("aggregate-{n}"));
            OutboxMessage::event("test-topic", envelope)
        })
        .collect();
    let mut tx = pool.begin().await.unwrap();
    enqueue_sqlite(&mut tx, &backlog).await.unwrap();
    tx.commit().await.unwrap();

    let store = Arc::new(Narrow {
        inner: SqliteOutbox::new(pool),
        honest,
    });
    let published = Arc::new(Slow::default());
    // Gathering claims may wait as long as a publication lasts: a paced backlog shows.
    let relay = Relay::new(store.clone(), published.clone())
        .with_workers(4)
        .with_max_gather(Duration::from_secs(30));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(relay.run(shutdown.clone()));
    let deadline = tokio::time::Instant::now() + WITHIN;
    while tokio::time::Instant::now() < deadline && store.unsent().await.unwrap() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    running.abort();
    published.0.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_backlog_of_short_claims_is_never_paced() {
    assert_eq!(drain(true).await, BACKLOG);
}

#[tokio::test]
async fn the_check_catches_a_relay_that_paces_a_backlog() {
    // The same backlog, with the window reported never full: the relay takes the short claims
    // for a drained outbox, and after the first round each claim waits for the batch before.
    let published = drain(false).await;
    assert!(
        published < BACKLOG,
        "a paced relay drained the backlog anyway: the check above cannot fail"
    );
    // Paced, it still delivers: four claims side by side at first, then one per call.
    assert!(
        published > 4 * PER_CLAIM,
        "the paced relay stalled: {published}"
    );
}
