//! The relay: moves committed outbox messages to the transport, at least once, in order per
//! aggregate. It is safe to run several (each claims different rows) and to kill at any point: a
//! message published but not yet marked sent is published again after its lease, and consumers'
//! inboxes drop the duplicate.
//!
//! Throughput comes from three things. A claim costs O(batch) (see [`crate::outbox`]). A claimed
//! batch goes out in waves: each wave holds the next message of every aggregate in the batch,
//! published with the transport's batch calls (ten per SNS `PublishBatch` / SQS
//! `SendMessageBatch`), the calls running concurrently; the next message of an aggregate waits
//! for the previous one's wave, which keeps the aggregate's order. On a transport that keeps the
//! order of a call ([`Publisher::keeps_batch_order`], the embedded one), a wave holds instead
//! every next message of an aggregate bound for the same destination: a hot aggregate then
//! costs one call per batch, not one per message (one per transaction commit on the embedded
//! transport, which let a product reserved hundreds of times a second outrun the relay). And
//! [`Relay::run`] runs several workers, so one batch is being claimed while others are in
//! flight; under a steady stream of commits their claims wait while a batch that drained the
//! outbox is being published, so that a claim carries several commits' messages instead of one
//! or two.
//!
//! Publishing a batch ends within half its lease: past the lease another relay could claim the
//! same messages and publish them a second time. What a hung transport did not take by then
//! counts as a failed attempt and is retried with backoff.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff;
use crate::envelope::Envelope;
use crate::outbox::{Claim, Destination, Failure, LEASE, OutboxStore, Pending};
use crate::transport::{Publisher, TransportError};

/// How long sent messages stay in the outbox (for inspection) before pruning.
pub const SENT_RETENTION: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct Relay {
    outbox: Arc<dyn OutboxStore>,
    transport: Arc<dyn Publisher>,
    batch: usize,
    workers: usize,
    idle_wait: Duration,
    max_gather: Duration,
    lease: Duration,
    /// The claim pace of [`Self::relay_paced`], shared by this relay's workers.
    pace: Arc<Pace>,
}

/// Whether the last claim saw every due message (the outbox is drained: claims gather), how
/// many short batches (such claims that took something) are being published, and the turn
/// that gathering claims take one at a time.
#[derive(Debug)]
struct Pace {
    gathering: std::sync::atomic::AtomicBool,
    short_in_flight: tokio::sync::watch::Sender<usize>,
    turn: tokio::sync::Mutex<()>,
}

impl Pace {
    fn new() -> Self {
        Pace {
            gathering: std::sync::atomic::AtomicBool::new(false),
            short_in_flight: tokio::sync::watch::Sender::new(0),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    fn gathering(&self) -> bool {
        self.gathering.load(std::sync::atomic::Ordering::Acquire)
    }

    /// After a claim: claims gather from now on unless its window was full (a backlog); a
    /// short batch counts as in flight until the returned guard drops.
    fn claimed(self: &Arc<Self>, claim: &Claim) -> Option<ShortInFlight> {
        self.gathering
            .store(!claim.window_full, std::sync::atomic::Ordering::Release);
        (!claim.window_full && !claim.messages.is_empty()).then(|| self.hold())
    }

    /// Resolves once no short batch is being published.
    async fn clear(&self) {
        let mut in_flight = self.short_in_flight.subscribe();
        // The sender lives as long as `self`: the wait cannot fail.
        let _ = in_flight.wait_for(|n| *n == 0).await;
    }

    /// Counts a short batch in flight until the guard drops (its publication ended, or failed).
    fn hold(self: &Arc<Self>) -> ShortInFlight {
        self.short_in_flight.send_modify(|n| *n += 1);
        ShortInFlight(self.clone())
    }
}

struct ShortInFlight(Arc<Pace>);

impl Drop for ShortInFlight {
    fn drop(&mut self) {
        self.0.short_in_flight.send_modify(|n| *n -= 1);
    }
}

/// What became of one claimed batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub claimed: usize,
    pub sent: usize,
    pub failed: usize,
    /// Not attempted: the rest of a run whose earlier message failed, or what the lease left no
    /// time for.
    pub released: usize,
}

impl Relay {
    pub fn new(outbox: Arc<dyn OutboxStore>, transport: Arc<dyn Publisher>) -> Self {
        Self {
            outbox,
            transport,
            batch: 200,
            workers: 4,
            idle_wait: Duration::from_secs(1),
            max_gather: Duration::from_millis(10),
            lease: LEASE,
            pace: Arc::new(Pace::new()),
        }
    }

    /// How long a claimed batch stays reserved for this relay (default [`LEASE`]).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long to wait for new messages when the outbox is empty (default 1 s); PostgreSQL
    /// wakes the relay sooner through LISTEN/NOTIFY.
    pub fn with_idle_wait(mut self, idle_wait: Duration) -> Self {
        self.idle_wait = idle_wait;
        self
    }

    /// The longest a claim waits, once the outbox was drained, for the short batches in flight
    /// to go out and for the commits meanwhile to gather (default 10 ms): what the gathering
    /// may add to a message's latency, and what a hung publication costs the relay's other
    /// claims then.
    pub fn with_max_gather(mut self, max_gather: Duration) -> Self {
        self.max_gather = max_gather;
        self
    }

    /// Messages per claim (default 200).
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Claim-and-publish loops run by [`Relay::run`] (default 4; one on an outbox whose claims
    /// cannot run in parallel).
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Relays until `shutdown`, then returns once every worker finished the batch in hand. A
    /// worker that panics takes the whole relay down with it (the others are aborted), so
    /// whoever supervises the relay sees it die and restarts it.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut workers = tokio::task::JoinSet::new();
        let count = if self.outbox.parallel_claims() {
            self.workers
        } else {
            1
        };
        for worker in 0..count {
            workers.spawn(self.clone().work(worker == 0, shutdown.clone()));
        }
        while let Some(finished) = workers.join_next().await {
            if let Err(error) = finished
                && error.is_panic()
            {
                std::panic::resume_unwind(error.into_panic());
            }
        }
    }

    async fn work(self, prunes: bool, shutdown: CancellationToken) {
        let mut last_prune = Instant::now();
        // Batches in a row of which nothing went out: the transport is down, so wait before
        // claiming the next instead of cycling the whole backlog through failed attempts.
        let mut fruitless = 0u32;
        while !shutdown.is_cancelled() {
            let pause = match self.relay_paced().await {
                Ok(outcome) if outcome.claimed == 0 => {
                    fruitless = 0;
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = self.outbox.wait_for_work(self.idle_wait) => {}
                    }
                    None
                }
                Ok(outcome) if outcome.sent == 0 && outcome.failed > 0 => {
                    fruitless += 1;
                    Some(backoff::delay(
                        fruitless,
                        Duration::from_millis(200),
                        Duration::from_secs(10),
                    ))
                }
                Ok(_) => {
                    fruitless = 0;
                    None
                }
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "outbox relay failed; retrying"
                    );
                    Some(self.idle_wait)
                }
            };
            if let Some(pause) = pause {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(pause) => {}
                }
            }
            if prunes && last_prune.elapsed() > Duration::from_secs(600) {
                last_prune = Instant::now();
                let cutoff = Utc::now() - chrono::Duration::from_std(SENT_RETENTION).expect("fits");
                if let Err(error) = self.outbox.prune(cutoff).await {
                    tracing::warn!(error = format!("{error:#}"), "outbox pruning failed");
                }
            }
        }
    }

    /// [`Self::relay_once`], with the claim paced among this relay's workers. Once a claim
    /// saw every due message (its window was not full: the outbox is drained, and messages
    /// arrive one commit at a time), claims take turns, and each waits for the short batches
    /// in flight to be published and marked sent, so that it gathers what was committed
    /// meanwhile; at most `max_gather`, so a hung publication holds the other claims back no
    /// longer than that. Claiming at once, four workers over, would take one or two messages
    /// each time and pay a claim, a publish call and a mark-as-sent for each. The gathering
    /// grows with the transport's latency and the load up to that bound, and costs nothing when
    /// nothing is in flight: a message committed while the relay is idle is claimed as soon as
    /// it wakes the relay. A writer that commits its next message once the previous one was
    /// handled waits, at most, for that one's mark-as-sent. A claim whose window was full (a
    /// backlog) ends the gathering, and claims run side by side again: one can come back short
    /// there (the rest of its window belongs to aggregates whose earlier messages another
    /// worker holds) without pacing the rest. Publishing itself never waits.
    pub(crate) async fn relay_paced(&self) -> anyhow::Result<Outcome> {
        let started = Instant::now();
        let (claim, _short) = {
            let _turn = if self.pace.gathering() {
                let turn = self.pace.turn.lock().await;
                // A backlog may have ended the gathering while this claim queued for its turn.
                if self.pace.gathering() {
                    let _ = tokio::time::timeout(self.max_gather, self.pace.clear()).await;
                }
                Some(turn)
            } else {
                None
            };
            let claim = self.claim().await?;
            let short = self.pace.claimed(&claim);
            (claim, short)
        };
        self.publish_claimed(claim.messages, started).await
    }

    /// Claims one batch and publishes it, wave by wave.
    pub async fn relay_once(&self) -> anyhow::Result<Outcome> {
        let started = Instant::now();
        let claim = self.claim().await?;
        self.publish_claimed(claim.messages, started).await
    }

    async fn claim(&self) -> anyhow::Result<Claim> {
        let started = Instant::now();
        let claimed = self
            .outbox
            .claim(self.batch, Utc::now(), self.lease)
            .await?;
        metrics::histogram!("vitrine_outbox_claim_seconds").record(started.elapsed().as_secs_f64());
        Ok(claimed)
    }

    /// Publishes a claimed batch, wave by wave, within half the lease from `started`.
    async fn publish_claimed(
        &self,
        claimed: Vec<Pending>,
        started: Instant,
    ) -> anyhow::Result<Outcome> {
        let mut outcome = Outcome {
            claimed: claimed.len(),
            ..Outcome::default()
        };
        if claimed.is_empty() {
            return Ok(outcome);
        }
        let deadline = started + self.lease / 2;
        let ordered = self.transport.keeps_batch_order();
        let mut runs = runs_by_aggregate(claimed);
        let (mut sent, mut failures) = (Vec::new(), Vec::new());
        let mut released: Vec<(Vec<i64>, DateTime<Utc>)> = Vec::new();
        while !runs.is_empty() {
            if Instant::now() >= deadline {
                let rest = runs.iter().flatten().map(|p| p.seq).collect();
                released.push((rest, Utc::now()));
                break;
            }
            // Each run's share of the wave: its next message, or, on a transport that keeps a
            // call's order, its next messages for the same destination (one call carries them).
            let shares: Vec<usize> = runs
                .iter()
                .map(|run| {
                    if ordered {
                        same_destination_prefix(run)
                    } else {
                        1
                    }
                })
                .collect();
            let wave: Vec<Pending> = runs
                .iter_mut()
                .zip(&shares)
                .flat_map(|(run, &share)| run.drain(..share).collect::<Vec<_>>())
                .collect();
            let mut results = self.publish_wave(&wave, deadline).await.into_iter();
            let mut wave = wave.into_iter();
            let mut next = Vec::with_capacity(runs.len());
            for (run, share) in runs.into_iter().zip(shares) {
                let mut share = wave.by_ref().zip(results.by_ref()).take(share);
                let mut failed = None;
                for (pending, result) in share.by_ref() {
                    match result {
                        Ok(()) => sent.push(pending.seq),
                        Err(error) => {
                            failed = Some(failure(&pending, &error));
                            break;
                        }
                    }
                }
                match failed {
                    // What follows a failure in its aggregate is not counted as sent even if
                    // the transport took it: it goes out again, after the failed one, and the
                    // consumers' inboxes drop the copy.
                    Some(failure) => {
                        let rest: Vec<i64> = share
                            .map(|(pending, _)| pending.seq)
                            .chain(run.iter().map(|p| p.seq))
                            .collect();
                        if !rest.is_empty() {
                            released.push((rest, failure.retry_at));
                        }
                        failures.push(failure);
                    }
                    None if !run.is_empty() => next.push(run),
                    None => {}
                }
            }
            runs = next;
        }
        outcome.sent = sent.len();
        outcome.failed = failures.len();
        outcome.released = released.iter().map(|(seqs, _)| seqs.len()).sum();
        if !sent.is_empty() {
            self.outbox.mark_sent(&sent, Utc::now()).await?;
            metrics::counter!("vitrine_outbox_sent_total").increment(sent.len() as u64);
        }
        if let Some(first) = failures.first() {
            tracing::warn!(
                failed = failures.len(),
                sent = sent.len(),
                error = first.error,
                "publishing failed; will retry"
            );
            self.outbox.mark_failed(&failures).await?;
            metrics::counter!("vitrine_outbox_failed_attempts_total")
                .increment(failures.len() as u64);
        }
        for (seqs, due) in released {
            self.outbox.release(&seqs, due).await?;
        }
        Ok(outcome)
    }

    /// Publishes one message per aggregate, grouped by destination into batch calls that run
    /// concurrently; one result per message, in order. Nothing outlives `deadline`.
    async fn publish_wave(
        &self,
        wave: &[Pending],
        deadline: Instant,
    ) -> Vec<Result<(), TransportError>> {
        let started = Instant::now();
        let mut groups: HashMap<&Destination, Vec<usize>> = HashMap::new();
        for (i, pending) in wave.iter().enumerate() {
            groups
                .entry(&pending.message.destination)
                .or_default()
                .push(i);
        }
        let mut calls: futures::stream::FuturesUnordered<_> = groups
            .into_iter()
            .map(|(destination, indices)| async move {
                let envelopes: Vec<&Envelope> =
                    indices.iter().map(|&i| &wave[i].message.envelope).collect();
                let spans: Vec<tracing::Span> = envelopes
                    .iter()
                    .map(|envelope| publish_span(envelope, destination))
                    .collect();
                let results = match destination {
                    Destination::Topic(topic) => {
                        self.transport.publish_batch(topic, &envelopes).await
                    }
                    Destination::Queue(queue) => self.transport.send_batch(queue, &envelopes).await,
                };
                for (span, result) in spans.iter().zip(&results) {
                    if result.is_err() {
                        span.record("otel.status_code", "ERROR");
                    }
                }
                indices.into_iter().zip(results).collect::<Vec<_>>()
            })
            .collect();
        let mut results: Vec<Option<Result<(), TransportError>>> =
            wave.iter().map(|_| None).collect();
        // Destinations that answered in time keep their results; the rest count as failed.
        loop {
            match tokio::time::timeout_at(deadline, calls.next()).await {
                Ok(Some(answered)) => {
                    for (i, result) in answered {
                        results[i] = Some(result);
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        unanswered = results.iter().filter(|r| r.is_none()).count(),
                        "the transport did not answer within half the lease; retrying later"
                    );
                    break;
                }
            }
        }
        metrics::histogram!("vitrine_outbox_publish_seconds")
            .record(started.elapsed().as_secs_f64());
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(TransportError::Unavailable(anyhow::anyhow!(
                        "no answer from the transport within half the lease"
                    )))
                })
            })
            .collect()
    }
}

/// One span per message published, in the trace of the request (or message) that wrote it, so a
/// trace shows how long the message waited in the outbox and how long publishing took. Batch
/// calls carry several messages: each gets its own span over the whole call.
fn publish_span(envelope: &Envelope, destination: &Destination) -> tracing::Span {
    let (Destination::Topic(name) | Destination::Queue(name)) = destination;
    let span = tracing::info_span!(
        "publish",
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        message_id = %envelope.id,
        message_type = %envelope.kind,
        destination = %name,
    );
    vitrine_runtime::trace_context::adopt(&span, envelope.traceparent.as_deref());
    span
}

/// The claimed messages as one run per aggregate, each in `seq` order, runs ordered by their
/// first message.
fn runs_by_aggregate(claimed: Vec<Pending>) -> Vec<VecDeque<Pending>> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut runs: Vec<VecDeque<Pending>> = Vec::new();
    for pending in claimed {
        let aggregate = pending.message.aggregate().to_owned();
        let run = *index.entry(aggregate).or_insert_with(|| {
            runs.push(VecDeque::new());
            runs.len() - 1
        });
        runs[run].push_back(pending);
    }
    runs
}

/// How many messages at the head of `run` go to the same destination as its first.
fn same_destination_prefix(run: &VecDeque<Pending>) -> usize {
    let first = &run[0].message.destination;
    run.iter()
        .take_while(|pending| pending.message.destination == *first)
        .count()
}

fn failure(pending: &Pending, error: &TransportError) -> Failure {
    let attempt = u32::try_from(pending.attempts + 1).unwrap_or(u32::MAX);
    let delay = backoff::delay(attempt, Duration::from_millis(200), Duration::from_secs(60));
    Failure {
        seq: pending.seq,
        error: format!("{error:#}"),
        retry_at: Utc::now() + chrono::Duration::from_std(delay).expect("fits"),
    }
}
