//! Request/reply over the embedded transport: answers within the deadline, faults, timeouts,
//! several caller replicas at once, and no reply queue left behind by a dead caller.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use vitrine_messaging::Envelope;
use vitrine_messaging::consumer::{Consumer, ConsumerOptions, Handler};
use vitrine_messaging::request_reply::{Outcome, Requester, RequesterOptions, fault};
use vitrine_messaging::transport::{LocalTransport, QueueSpec, Topology, Transport};

const SERVICE: &str = "squares";

/// Answers `n` with `n * n`; refuses negative numbers with a fault.
struct Squares(Arc<dyn Transport>);

#[async_trait]
impl Handler for Squares {
    async fn handle(&self, request: &Envelope) -> anyhow::Result<()> {
        let n: i64 = request.decode()?;
        let reply_to = request.replyto.as_deref().expect("requests carry replyto");
        let reply = if n < 0 {
            fault("vitrine.test", request, "negative numbers are not served")
        } else {
            Envelope::new("vitrine.test", "vitrine.test.square.reply.v1", &(n * n))?
                .caused_by(request)
        };
        self.0.send(reply_to, &reply).await?;
        Ok(())
    }
}

async fn transport(dir: &tempfile::TempDir) -> Arc<dyn Transport> {
    let transport: Arc<dyn Transport> = Arc::new(
        LocalTransport::open(&dir.path().join("messaging.sqlite3"))
            .await
            .unwrap(),
    );
    let queue = QueueSpec {
        name: SERVICE.into(),
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

fn responder(transport: &Arc<dyn Transport>, stop: &CancellationToken) {
    let options = ConsumerOptions {
        wait: Duration::from_millis(100),
        ..ConsumerOptions::default()
    };
    let consumer = Consumer::new(
        SERVICE,
        Arc::clone(transport),
        Arc::new(Squares(Arc::clone(transport))),
        options,
    );
    tokio::spawn(consumer.run(stop.clone()));
}

fn ask(n: i64) -> Envelope {
    Envelope::new("vitrine.test", "vitrine.test.square.v1", &n).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_faults_and_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let transport = transport(&dir).await;
    let stop = CancellationToken::new();
    let requester = Requester::start(
        Arc::clone(&transport),
        "caller",
        RequesterOptions::default(),
        stop.clone(),
    )
    .await
    .unwrap();

    // Nobody is serving yet: the caller gets a timeout, not a hang.
    let started = tokio::time::Instant::now();
    let outcome = requester
        .request::<i64>(SERVICE, ask(3), Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Timeout);
    assert!(started.elapsed() < Duration::from_secs(2));

    responder(&transport, &stop);
    let outcome = requester
        .request::<i64>(SERVICE, ask(7), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Reply(49));
    let outcome = requester
        .request::<i64>(SERVICE, ask(-1), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Fault(reason) if reason.contains("negative")));
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_replica_gets_its_own_answers() {
    let dir = tempfile::tempdir().unwrap();
    let transport = transport(&dir).await;
    let stop = CancellationToken::new();
    responder(&transport, &stop);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(
            Requester::start(
                Arc::clone(&transport),
                "caller",
                RequesterOptions::default(),
                stop.clone(),
            )
            .await
            .unwrap(),
        );
    }
    let mut calls = Vec::new();
    for n in 0..60_i64 {
        let requester = Arc::clone(&replicas[(n % 3) as usize]);
        calls.push(tokio::spawn(async move {
            (
                n,
                requester
                    .request::<i64>(SERVICE, ask(n), Duration::from_secs(20))
                    .await
                    .unwrap(),
            )
        }));
    }
    for call in calls {
        let (n, outcome) = call.await.unwrap();
        assert_eq!(outcome, Outcome::Reply(n * n), "request {n}");
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_queues_of_dead_callers_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let transport = transport(&dir).await;
    let options = RequesterOptions {
        queue_ttl: Duration::from_secs(1),
        heartbeat: Duration::from_millis(200),
    };

    // A caller killed mid-request leaves its reply queue (and maybe a reply) behind, unrenewed.
    let dead = "caller-replies-deadbeef";
    transport
        .create_temporary_queue(dead, options.queue_ttl)
        .await
        .unwrap();
    transport.send(dead, &ask(1)).await.unwrap();

    let stop = CancellationToken::new();
    let live = Requester::start(Arc::clone(&transport), "caller", options, stop.clone())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let queues = transport.list_queues("caller-replies-").await.unwrap();
        if !queues.contains(&dead.to_owned()) {
            assert_eq!(
                queues,
                vec![live.reply_queue()],
                "the live caller's queue stays"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead caller's queue was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A caller that shuts down cleanly removes its own queue at once.
    stop.cancel();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !transport
        .list_queues("caller-replies-")
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reply queue outlived its owner"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
