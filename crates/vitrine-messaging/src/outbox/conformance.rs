//! One behaviour suite for every `OutboxStore`, given a way to commit messages with it.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use rand::seq::SliceRandom;

use super::{Claim, Failure, LEASE, OutboxMessage, OutboxStore, Pending};
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

fn messages(claimed: &[Pending]) -> Vec<OutboxMessage> {
    claimed.iter().map(|p| p.message.clone()).collect()
}

/// Records one failed publication of `seq`, to be retried at `retry_at`.
async fn fail(store: &dyn OutboxStore, seq: i64, retry_at: DateTime<Utc>) {
    let failure = Failure {
        seq,
        error: "broker down".into(),
        retry_at,
    };
    store.mark_failed(&[failure]).await.unwrap();
}

fn seqs(claimed: &[Pending]) -> Vec<i64> {
    claimed.iter().map(|p| p.seq).collect()
}

/// Every behaviour below, each on an outbox emptied by the one before.
pub async fn run_all(store: &dyn OutboxStore, enqueue: Enqueue<'_>) {
    runs_of_an_aggregate_go_out_in_order(store, enqueue).await;
    a_failure_holds_back_the_rest_of_its_aggregate(store, enqueue).await;
    a_gap_in_a_run_stops_the_run(store, enqueue).await;
    messages_stuck_behind_a_failure_leave_the_window(store, enqueue).await;
    a_first_message_due_after_its_successors_is_reached(store, enqueue).await;
    a_claim_says_whether_its_window_was_full(store, enqueue).await;
    pruning_keeps_recent_sends(store).await;
}

async fn runs_of_an_aggregate_go_out_in_order(store: &dyn OutboxStore, enqueue: Enqueue<'_>) {
    let lease = Duration::from_std(LEASE).unwrap();
    // Created in commit order: a claim's window follows due times, which start at creation.
    let (a1, b1) = (message("a", 1), message("b", 1));
    let a = [a1, message("a", 2), message("a", 3)];
    let b = [b1];
    enqueue(vec![a[0].clone(), b[0].clone()]).await;
    enqueue(vec![a[1].clone(), a[2].clone()]).await;
    let now = Utc::now();
    assert_eq!(store.unsent().await.unwrap(), 4);

    // A window too small for everything: the oldest messages, whole runs or prefixes of them.
    let first = store.claim(2, now, LEASE).await.unwrap().messages;
    assert_eq!(messages(&first), vec![a[0].clone(), b[0].clone()]);
    assert!(
        store
            .claim(10, now, LEASE)
            .await
            .unwrap()
            .messages
            .is_empty(),
        "a later message of an aggregate waits while an earlier one is claimed elsewhere"
    );
    let again = store
        .claim(10, now + lease + Duration::seconds(1), LEASE)
        .await
        .unwrap()
        .messages;
    assert_eq!(
        messages(&again),
        vec![a[0].clone(), b[0].clone(), a[1].clone(), a[2].clone()],
        "leases expire; then the whole run of each aggregate is claimed, in commit order"
    );
    store.mark_sent(&seqs(&again), now).await.unwrap();
    assert_eq!(store.unsent().await.unwrap(), 0);
    assert!(
        store
            .claim(10, now + lease * 3, LEASE)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
}

async fn a_failure_holds_back_the_rest_of_its_aggregate(
    store: &dyn OutboxStore,
    enqueue: Enqueue<'_>,
) {
    let c = [message("c", 1), message("c", 2), message("c", 3)];
    let d = message("d", 1);
    enqueue(c.to_vec()).await;
    let now = Utc::now();
    let run = store.claim(10, now, LEASE).await.unwrap().messages;
    assert_eq!(messages(&run), c.to_vec());

    // c1 failed: it is retried at `retry_at`, and the rest of its run is given back due then.
    let retry_at = now + Duration::seconds(60);
    fail(store, run[0].seq, retry_at).await;
    store.release(&seqs(&run[1..]), retry_at).await.unwrap();
    enqueue(vec![d.clone()]).await;
    let meanwhile = store
        .claim(10, now + Duration::seconds(10), LEASE)
        .await
        .unwrap()
        .messages;
    assert_eq!(
        messages(&meanwhile),
        vec![d.clone()],
        "other aggregates go on"
    );
    store.mark_sent(&seqs(&meanwhile), now).await.unwrap();

    let retried = store.claim(10, retry_at, LEASE).await.unwrap().messages;
    assert_eq!(messages(&retried), c.to_vec(), "the run resumes in order");
    assert_eq!(
        retried.iter().map(|p| p.attempts).collect::<Vec<_>>(),
        vec![1, 0, 0],
        "only the failed message counts an attempt"
    );
    store.mark_sent(&seqs(&retried), now).await.unwrap();
    assert_eq!(store.unsent().await.unwrap(), 0);
}

/// A claim says whether its window was full, which is what the relay paces by: a backlog
/// fills the window even when little of it is claimable (here the rest waits behind a message
/// claimed elsewhere), while a claim that saw every due message had a window to spare.
async fn a_claim_says_whether_its_window_was_full(store: &dyn OutboxStore, enqueue: Enqueue<'_>) {
    let g = [message("g", 1), message("g", 2), message("g", 3)];
    enqueue(g.to_vec()).await;
    let now = Utc::now();
    let head = store.claim(1, now, LEASE).await.unwrap();
    assert_eq!(messages(&head.messages), vec![g[0].clone()]);
    assert!(head.window_full, "three due, a window of one");
    let held = store.claim(1, now, LEASE).await.unwrap();
    assert!(held.messages.is_empty(), "g2 waits for g1");
    assert!(
        held.window_full,
        "g2 and g3 are due behind a full window: a backlog, not a drained outbox"
    );
    store.mark_sent(&seqs(&head.messages), now).await.unwrap();
    let rest = store.claim(10, now, LEASE).await.unwrap();
    assert_eq!(messages(&rest.messages), g[1..].to_vec());
    assert!(!rest.window_full, "every due message seen");
    store.mark_sent(&seqs(&rest.messages), now).await.unwrap();
    let drained = store.claim(10, now, LEASE).await.unwrap();
    assert!(drained.messages.is_empty() && !drained.window_full);
}

/// An unsent message in the middle of a run that is not due (here: given back for later) stops
/// the run there, even when the messages after it are due.
async fn a_gap_in_a_run_stops_the_run(store: &dyn OutboxStore, enqueue: Enqueue<'_>) {
    let e = [message("e", 1), message("e", 2), message("e", 3)];
    enqueue(e.to_vec()).await;
    let now = Utc::now();
    let run = store.claim(10, now, LEASE).await.unwrap().messages;
    assert_eq!(run.len(), 3);
    let later = now + Duration::seconds(60);
    store.release(&[run[0].seq, run[2].seq], now).await.unwrap();
    store.release(&[run[1].seq], later).await.unwrap();
    let claimed = store.claim(10, now, LEASE).await.unwrap().messages;
    assert_eq!(
        messages(&claimed),
        vec![e[0].clone()],
        "e3 must not overtake e2"
    );
    store.mark_sent(&seqs(&claimed), now).await.unwrap();
    let rest = store.claim(10, later, LEASE).await.unwrap().messages;
    assert_eq!(messages(&rest), e[1..].to_vec());
    store.mark_sent(&seqs(&rest), now).await.unwrap();
}

/// Messages of an aggregate whose first message waits for a retry cannot go out before it: a
/// claim defers them to that retry instead of finding them in every window, so a long backlog
/// behind one failure does not stall the other aggregates.
async fn messages_stuck_behind_a_failure_leave_the_window(
    store: &dyn OutboxStore,
    enqueue: Enqueue<'_>,
) {
    enqueue(vec![message("f", 0)]).await;
    let now = Utc::now();
    let head = store.claim(1, now, LEASE).await.unwrap().messages;
    let retry_at = now + Duration::seconds(60);
    fail(store, head[0].seq, retry_at).await;
    let stuck: Vec<OutboxMessage> = (1..=12).map(|n| message("f", n)).collect();
    enqueue(stuck.clone()).await;
    let g = message("g", 1);
    enqueue(vec![g.clone()]).await;

    let claimed = store.claim(4, Utc::now(), LEASE).await.unwrap().messages;
    assert_eq!(
        messages(&claimed),
        vec![g.clone()],
        "windows of 4 behind 12 stuck messages still reach g"
    );
    store.mark_sent(&seqs(&claimed), now).await.unwrap();
    let resumed = store.claim(20, retry_at, LEASE).await.unwrap().messages;
    assert_eq!(resumed.len(), 13, "f resumes whole once its retry is due");
    assert_eq!(
        resumed[1..]
            .iter()
            .map(|p| p.message.clone())
            .collect::<Vec<_>>(),
        stuck
    );
    store.mark_sent(&seqs(&resumed), now).await.unwrap();
    assert_eq!(store.unsent().await.unwrap(), 0);
}

/// The rest of a run can be due before its first message (given back sooner than the failed
/// message's retry). A window full of such successors must still reach the first message.
async fn a_first_message_due_after_its_successors_is_reached(
    store: &dyn OutboxStore,
    enqueue: Enqueue<'_>,
) {
    let h = [message("h", 1), message("h", 2), message("h", 3)];
    enqueue(h.to_vec()).await;
    let now = Utc::now();
    let run = store.claim(10, now, LEASE).await.unwrap().messages;
    let retry_at = now + Duration::seconds(10);
    fail(store, run[0].seq, retry_at).await;
    store.release(&seqs(&run[1..]), now).await.unwrap();
    let after = retry_at + Duration::seconds(1);
    let claimed = store.claim(2, after, LEASE).await.unwrap().messages;
    assert_eq!(
        messages(&claimed),
        h[..2].to_vec(),
        "a window of h2 and h3 alone must not hide h1 for good"
    );
    store.mark_sent(&seqs(&claimed), now).await.unwrap();
    let last = store.claim(2, after, LEASE).await.unwrap().messages;
    store.mark_sent(&seqs(&last), now).await.unwrap();
    assert_eq!(messages(&last), h[2..].to_vec());
}

async fn pruning_keeps_recent_sends(store: &dyn OutboxStore) {
    let now = Utc::now();
    assert_eq!(
        store.prune(now - Duration::seconds(120)).await.unwrap(),
        0,
        "recent sends are kept"
    );
    assert!(store.prune(now + Duration::seconds(120)).await.unwrap() > 0);
    assert_eq!(store.prune(now + Duration::seconds(120)).await.unwrap(), 0);
}

/// A deliberately broken store for [`concurrent_relays_keep_order`]: it claims like `inner`,
/// then gives back the first message of every run of two or more and hands out the rest, so a
/// message goes out while an earlier one of its aggregate is unsent. The checker must catch it.
#[derive(Debug)]
pub struct SkipsRunHeads<'a>(pub &'a dyn OutboxStore);

#[async_trait]
impl OutboxStore for SkipsRunHeads<'_> {
    async fn claim(
        &self,
        max: usize,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> anyhow::Result<Claim> {
        let Claim {
            messages: claimed,
            window_full,
        } = self.0.claim(max, now, lease).await?;
        let mut firsts: HashMap<String, i64> = HashMap::new();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for p in &claimed {
            firsts
                .entry(p.message.aggregate().to_owned())
                .or_insert(p.seq);
            *counts.entry(p.message.aggregate().to_owned()).or_default() += 1;
        }
        let heads: Vec<i64> = firsts
            .iter()
            .filter(|(aggregate, _)| counts[*aggregate] > 1)
            .map(|(_, seq)| *seq)
            .collect();
        self.0.release(&heads, now).await?;
        Ok(Claim {
            messages: claimed
                .into_iter()
                .filter(|p| !heads.contains(&p.seq))
                .collect(),
            window_full,
        })
    }

    async fn mark_sent(&self, seqs: &[i64], now: DateTime<Utc>) -> anyhow::Result<()> {
        self.0.mark_sent(seqs, now).await
    }

    async fn mark_failed(&self, failures: &[Failure]) -> anyhow::Result<()> {
        self.0.mark_failed(failures).await
    }

    async fn release(&self, seqs: &[i64], due: DateTime<Utc>) -> anyhow::Result<()> {
        self.0.release(seqs, due).await
    }

    async fn prune(&self, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        self.0.prune(cutoff).await
    }

    async fn quarantined(&self, max: usize) -> anyhow::Result<Vec<super::Quarantined>> {
        self.0.quarantined(max).await
    }

    async fn unsent(&self) -> anyhow::Result<i64> {
        self.0.unsent().await
    }

    async fn wait_for_work(&self, max_wait: std::time::Duration) {
        self.0.wait_for_work(max_wait).await;
    }

    fn parallel_claims(&self) -> bool {
        self.0.parallel_claims()
    }
}

/// Several relays claim from one outbox at once while writers keep committing and a quarter of
/// publications fail; each relay publishes its claim run by run, as the real relay does. The
/// whole history is then checked: every message published, and within each aggregate no message
/// published before every earlier one was. Returns the violations found (none for a correct
/// store; [`SkipsRunHeads`] must produce some).
pub async fn concurrent_relays_keep_order(
    store: &dyn OutboxStore,
    enqueue: Enqueue<'_>,
) -> Vec<String> {
    const AGGREGATES: u32 = 12;
    const PER_AGGREGATE: u32 = 25;
    const RELAYS: usize = 4;
    // The message numbers published, in publication order, per aggregate.
    let published: Mutex<BTreeMap<String, Vec<u32>>> = Mutex::default();
    let writers_done = std::sync::atomic::AtomicBool::new(false);
    // Claims that held two or more messages of one aggregate: without them the run proves
    // nothing about order within a claim.
    let multi_message_runs = std::sync::atomic::AtomicUsize::new(0);
    let writers = async {
        for n in 0..PER_AGGREGATE {
            // Each round commits message n of every aggregate, in a shuffled order, in two
            // transactions.
            let mut round: Vec<OutboxMessage> = (0..AGGREGATES)
                .map(|a| message(&format!("agg-{a}"), n))
                .collect();
            round.shuffle(&mut rand::rng());
            let second = round.split_off(round.len() / 2);
            enqueue(round).await;
            enqueue(second).await;
            tokio::task::yield_now().await;
        }
        writers_done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let relay = |_: usize| async {
        let mut idle = 0;
        loop {
            let claimed = store.claim(7, Utc::now(), LEASE).await.unwrap().messages;
            if claimed.is_empty() {
                if writers_done.load(std::sync::atomic::Ordering::SeqCst) {
                    idle += 1;
                    if idle > 40 {
                        return;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            }
            idle = 0;
            let mut runs: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
            for p in claimed {
                runs.entry(p.message.aggregate().to_owned())
                    .or_default()
                    .push(p);
            }
            let longer = runs.values().filter(|run| run.len() > 1).count();
            multi_message_runs.fetch_add(longer, std::sync::atomic::Ordering::Relaxed);
            let (mut sent, mut failures, mut released) = (Vec::new(), Vec::new(), Vec::new());
            for (aggregate, run) in runs {
                let mut run = run.into_iter();
                for p in run.by_ref() {
                    if rand::rng().random_bool(0.25) {
                        failures.push(Failure {
                            seq: p.seq,
                            error: "injected".into(),
                            retry_at: Utc::now() + Duration::milliseconds(20),
                        });
                        break;
                    }
                    let n = p.message.envelope.data["n"].as_u64().unwrap() as u32;
                    published
                        .lock()
                        .unwrap()
                        .entry(aggregate.clone())
                        .or_default()
                        .push(n);
                    sent.push(p.seq);
                    tokio::task::yield_now().await;
                }
                released.extend(run.map(|p| p.seq));
            }
            store.mark_sent(&sent, Utc::now()).await.unwrap();
            store.mark_failed(&failures).await.unwrap();
            store
                .release(&released, Utc::now() + Duration::milliseconds(20))
                .await
                .unwrap();
        }
    };
    let relays = futures::future::join_all((0..RELAYS).map(relay));
    tokio::join!(writers, relays);

    let published = published.into_inner().unwrap();
    let mut violations = Vec::new();
    if multi_message_runs.into_inner() == 0 {
        violations.push("no claim held two messages of one aggregate: nothing was tested".into());
    }
    let unsent = store.unsent().await.unwrap();
    if unsent != 0 {
        let later = Utc::now() + Duration::hours(1);
        let claimable = store.claim(1000, later, LEASE).await.unwrap().messages;
        violations.push(format!(
            "{unsent} messages never published; an hour later {} of them are claimable",
            claimable.len()
        ));
    }
    // Each message once (leases do not expire here), each after all earlier ones.
    violations.extend(out_of_order(&published));
    violations
}

/// How the transport of [`relay_keeps_aggregate_order`] treats a batch call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOrder {
    /// Like SNS and SQS standard queues: no order within a call; the relay sends one message
    /// per aggregate per call.
    None,
    /// Like the embedded transport: a call's messages accepted in order, nothing after a
    /// failure; the relay sends an aggregate's consecutive messages in one call.
    Kept,
    /// Deliberately broken: says it keeps a call's order, accepts the call backwards.
    Claimed,
}

/// A transport that records, per aggregate, the message numbers it accepted, in the order it
/// accepted them; a tenth of its messages fail (in a call that keeps order, with every later
/// one of the call).
#[derive(Debug)]
struct Recorder {
    order: CallOrder,
    published: Mutex<BTreeMap<String, Vec<u32>>>,
    /// Calls that carried two or more messages of one aggregate.
    multi_message_calls: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl crate::transport::Publisher for Recorder {
    fn keeps_batch_order(&self) -> bool {
        self.order != CallOrder::None
    }

    async fn publish(
        &self,
        topic: &str,
        envelope: &Envelope,
    ) -> Result<(), crate::transport::TransportError> {
        self.publish_batch(topic, &[envelope]).await.remove(0)
    }

    async fn send(
        &self,
        queue: &str,
        envelope: &Envelope,
    ) -> Result<(), crate::transport::TransportError> {
        self.publish(queue, envelope).await
    }

    async fn send_batch(
        &self,
        queue: &str,
        envelopes: &[&Envelope],
    ) -> Vec<Result<(), crate::transport::TransportError>> {
        self.publish_batch(queue, envelopes).await
    }

    async fn publish_batch(
        &self,
        _topic: &str,
        envelopes: &[&Envelope],
    ) -> Vec<Result<(), crate::transport::TransportError>> {
        let mut subjects: Vec<&str> = envelopes
            .iter()
            .map(|e| e.subject.as_deref().unwrap_or_default())
            .collect();
        subjects.sort_unstable();
        if subjects.windows(2).any(|pair| pair[0] == pair[1]) {
            self.multi_message_calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let mut accepting: Vec<usize> = (0..envelopes.len()).collect();
        if self.order == CallOrder::Claimed {
            accepting.reverse();
        }
        let mut results: Vec<Result<(), crate::transport::TransportError>> =
            envelopes.iter().map(|_| Ok(())).collect();
        let mut failed = false;
        for i in accepting {
            if (failed && self.order != CallOrder::None) || rand::rng().random_bool(0.1) {
                failed = true;
                results[i] = Err(crate::transport::TransportError::Unavailable(
                    anyhow::anyhow!("injected"),
                ));
                continue;
            }
            let envelope = envelopes[i];
            let n = envelope.data["n"].as_u64().unwrap() as u32;
            self.published
                .lock()
                .unwrap()
                .entry(envelope.subject.clone().unwrap_or_default())
                .or_default()
                .push(n);
        }
        tokio::task::yield_now().await;
        results
    }
}

/// The real relay, four paced claim-and-publish loops over `store`, while writers keep committing
/// and a tenth of the transport's messages fail, on a transport whose calls keep `order`. The
/// whole history is then checked: every message accepted once, and within each aggregate none
/// before every earlier one was. Returns the violations found: none for [`CallOrder::None`] and
/// [`CallOrder::Kept`], some for [`CallOrder::Claimed`].
pub async fn relay_keeps_aggregate_order(
    store: std::sync::Arc<dyn OutboxStore>,
    enqueue: Enqueue<'_>,
    order: CallOrder,
) -> Vec<String> {
    const AGGREGATES: u32 = 6;
    const PER_AGGREGATE: u32 = 40;
    let recorder = std::sync::Arc::new(Recorder {
        order,
        published: Mutex::default(),
        multi_message_calls: std::sync::atomic::AtomicUsize::new(0),
    });
    let relay = crate::relay::Relay::new(store.clone(), recorder.clone()).with_batch(50);
    let round = |n: u32| {
        // Every third message of an aggregate is a command to a queue, so that an
        // aggregate's run changes destination (one call carries one destination).
        let mut round: Vec<OutboxMessage> = (0..AGGREGATES)
            .map(|a| {
                let event = message(&format!("agg-{a}"), n);
                match n % 3 {
                    2 => OutboxMessage::command("test-queue", event.envelope),
                    _ => event,
                }
            })
            .collect();
        round.shuffle(&mut rand::rng());
        enqueue(round)
    };
    // A backlog first, so that claims hold runs of several messages per aggregate; then more
    // commits while the relays work.
    for n in 0..PER_AGGREGATE / 2 {
        round(n).await;
    }
    let writers_done = std::sync::atomic::AtomicBool::new(false);
    let writers = async {
        for n in PER_AGGREGATE / 2..PER_AGGREGATE {
            round(n).await;
            tokio::task::yield_now().await;
        }
        writers_done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let worker = |_: usize| async {
        let give_up = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while tokio::time::Instant::now() < give_up {
            // Claims paced as `Relay::run` paces them.
            let outcome = relay.relay_paced().await.unwrap();
            // A message accepted out of order stays a violation whatever happens next.
            if !out_of_order(&recorder.published.lock().unwrap()).is_empty() {
                return;
            }
            if outcome.claimed == 0 {
                if writers_done.load(std::sync::atomic::Ordering::SeqCst)
                    && store.unsent().await.unwrap() == 0
                {
                    return;
                }
                // Failed messages wait out their backoff.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    let workers = futures::future::join_all((0..4).map(worker));
    tokio::join!(writers, workers);

    let mut violations = Vec::new();
    let multi_message_calls = recorder
        .multi_message_calls
        .load(std::sync::atomic::Ordering::Relaxed);
    match order {
        CallOrder::None if multi_message_calls > 0 => violations.push(format!(
            "{multi_message_calls} calls that keep no order carried two messages of one aggregate"
        )),
        CallOrder::Kept | CallOrder::Claimed if multi_message_calls == 0 => violations
            .push("no call carried two messages of one aggregate: nothing was tested".into()),
        _ => {}
    }
    let disorder = out_of_order(&recorder.published.lock().unwrap());
    let unsent = store.unsent().await.unwrap();
    if unsent != 0 && disorder.is_empty() {
        violations.push(format!("{unsent} messages never published"));
    }
    violations.extend(disorder);
    violations
}

/// Each aggregate whose messages were not published once each, in order.
fn out_of_order(published: &BTreeMap<String, Vec<u32>>) -> Vec<String> {
    let mut violations = Vec::new();
    for (aggregate, numbers) in published {
        for (position, n) in numbers.iter().enumerate() {
            if *n as usize != position {
                violations.push(format!(
                    "{aggregate}: message {n} published as number {position}: {numbers:?}"
                ));
                break;
            }
        }
    }
    violations
}
