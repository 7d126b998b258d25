//! Request/reply over queues: `request(message, deadline)` answers found / not found (as the
//! reply payload), fault, or timeout.
//!
//! Design, and why:
//! - **One reply queue per caller process**, created at start as a *temporary* queue named
//!   `<prefix>-replies-<uuid>`. With several replicas of the caller, each replica receives only
//!   the replies to its own requests, so no reply is consumed by a process that is not waiting
//!   for it (a shared reply queue would need every replica to see every reply).
//! - **Correlation by message id**: the request's `id` comes back as the reply's `causationid`;
//!   a map of pending requests hands each reply to its waiter. Late replies (after a timeout) and
//!   replies to a previous incarnation of the process find no waiter and are dropped.
//! - **Deadlines travel with the request** (`deadline` extension): a responder skips requests
//!   whose caller has already given up, so a backlog does not turn into wasted work.
//! - **No orphan queues**: the owner renews its queue's expiry on a heartbeat and deletes it on
//!   shutdown. A process killed without shutdown stops renewing; every requester also runs the
//!   janitor ([`Transport::delete_expired_queues`]), so any live replica (or the restarted one)
//!   deletes the dead one's queue once it expires.
//! - **Self-healing**: a process that stalled longer than the TTL finds its queue deleted by
//!   another's janitor; its listener or heartbeat notices (the queue is unknown) and creates a
//!   new one under a new name (SQS refuses a queue name for 60 s after its deletion), and
//!   [`Requester::reply_path`] reports the reply path down until then (readiness). Requests
//!   sent meanwhile name the old queue and time out, as they would have anyway.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::envelope::Envelope;
use crate::transport::{Transport, TransportError};

/// CloudEvents type suffix of a reply that reports a failure instead of an answer.
pub const FAULT_SUFFIX: &str = ".fault.v1";

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<R> {
    /// The responder answered (found and not found are both answers, inside `R`).
    Reply(R),
    /// The responder answered that it could not serve the request.
    Fault(String),
    /// No answer before the deadline.
    Timeout,
}

#[derive(Debug, Clone)]
pub struct RequesterOptions {
    /// How long a reply queue outlives its last renewal.
    pub queue_ttl: Duration,
    /// How often the owner renews its queue and sweeps expired ones.
    pub heartbeat: Duration,
}

impl Default for RequesterOptions {
    fn default() -> Self {
        Self {
            queue_ttl: Duration::from_secs(120),
            heartbeat: Duration::from_secs(30),
        }
    }
}

type Waiters = Arc<Mutex<HashMap<Uuid, oneshot::Sender<Envelope>>>>;

/// Sends requests and awaits their replies.
#[derive(Debug)]
pub struct Requester {
    transport: Arc<dyn Transport>,
    waiters: Waiters,
    reply_path: Arc<ReplyPath>,
}

/// This process's reply queue: its current name, whether it exists, and how to bring it back.
#[derive(Debug)]
struct ReplyPath {
    prefix: String,
    queue: Mutex<String>,
    ttl: Duration,
    up: AtomicBool,
    /// One recreation at a time (the listener and the heartbeat may both notice).
    recreating: tokio::sync::Mutex<()>,
}

impl ReplyPath {
    fn fresh_name(prefix: &str) -> String {
        format!("{prefix}-replies-{}", Uuid::now_v7().simple())
    }

    fn queue(&self) -> String {
        self.queue.lock().expect("reply queue lock").clone()
    }

    /// The queue `gone` turned out to be deleted: create a new one, reporting the path down
    /// until it exists. A new name, because SQS refuses to create a queue under a name deleted
    /// less than 60 s ago; nothing else knows the old name but requests already lost.
    async fn recreate(&self, transport: &dyn Transport, gone: &str, shutdown: &CancellationToken) {
        let _one = self.recreating.lock().await;
        if self.queue() != gone {
            return; // the other task got here first
        }
        self.up.store(false, Ordering::SeqCst);
        let queue = Self::fresh_name(&self.prefix);
        tracing::warn!(%gone, %queue, "reply queue was deleted (this process stalled past its TTL?); creating a new one");
        match transport.create_temporary_queue(&queue, self.ttl).await {
            Ok(()) => {
                *self.queue.lock().expect("reply queue lock") = queue.clone();
                self.up.store(true, Ordering::SeqCst);
                tracing::info!(%queue, "reply queue recreated");
                // Shutdown began meanwhile: the heartbeat may already have deleted the old
                // name on its way out, so this one would be left behind.
                if shutdown.is_cancelled() {
                    let _ = transport.delete_queue(&queue).await;
                }
            }
            Err(error) => {
                tracing::warn!(%error, %queue, "creating a new reply queue failed; retrying")
            }
        }
    }
}

impl Requester {
    /// Creates this process's reply queue and starts listening on it until `shutdown`, when the
    /// queue is deleted.
    pub async fn start(
        transport: Arc<dyn Transport>,
        prefix: &str,
        options: RequesterOptions,
        shutdown: CancellationToken,
    ) -> Result<Arc<Requester>, TransportError> {
        let reply_queue = ReplyPath::fresh_name(prefix);
        transport
            .create_temporary_queue(&reply_queue, options.queue_ttl)
            .await?;
        let reply_path = Arc::new(ReplyPath {
            prefix: prefix.to_owned(),
            queue: Mutex::new(reply_queue),
            ttl: options.queue_ttl,
            up: AtomicBool::new(true),
            recreating: tokio::sync::Mutex::new(()),
        });
        let requester = Arc::new(Requester {
            transport: Arc::clone(&transport),
            waiters: Arc::default(),
            reply_path: Arc::clone(&reply_path),
        });
        tokio::spawn(listen(
            Arc::clone(&transport),
            Arc::clone(&reply_path),
            Arc::clone(&requester.waiters),
            shutdown.clone(),
        ));
        tokio::spawn(heartbeat(transport, reply_path, options, shutdown));
        Ok(requester)
    }

    /// The current name of this process's reply queue (it changes if the queue is recreated).
    pub fn reply_queue(&self) -> String {
        self.reply_path.queue()
    }

    /// Whether replies can reach this process: `Err` while its reply queue is gone and not yet
    /// recreated (for readiness).
    pub fn reply_path(&self) -> Result<(), String> {
        if self.reply_path.up.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err("reply queue missing; recreating it".to_owned())
        }
    }

    /// Deletes the reply queue now (for short-lived callers such as CLI commands, which exit
    /// right after their request and cannot wait for the shutdown path).
    pub async fn close(&self) -> Result<(), TransportError> {
        self.transport.delete_queue(&self.reply_queue()).await
    }

    /// Sends `request` to `queue` and waits up to `timeout` for the reply, decoded as `R`.
    pub async fn request<R: DeserializeOwned>(
        &self,
        queue: &str,
        mut request: Envelope,
        timeout: Duration,
    ) -> Result<Outcome<R>, TransportError> {
        request.replyto = Some(self.reply_queue());
        request.deadline =
            Some(Utc::now() + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX));
        let (sender, receiver) = oneshot::channel();
        self.waiters
            .lock()
            .expect("waiters lock")
            .insert(request.id, sender);
        if let Err(error) = self.transport.send(queue, &request).await {
            self.waiters
                .lock()
                .expect("waiters lock")
                .remove(&request.id);
            return Err(error);
        }
        let reply = tokio::time::timeout(timeout, receiver).await;
        self.waiters
            .lock()
            .expect("waiters lock")
            .remove(&request.id);
        let Ok(Ok(reply)) = reply else {
            return Ok(Outcome::Timeout);
        };
        if reply.kind.ends_with(FAULT_SUFFIX) {
            let reason = reply
                .data
                .as_str()
                .unwrap_or("the responder failed")
                .to_owned();
            return Ok(Outcome::Fault(reason));
        }
        match reply.decode() {
            Ok(answer) => Ok(Outcome::Reply(answer)),
            Err(error) => Ok(Outcome::Fault(format!("unreadable reply: {error}"))),
        }
    }
}

async fn listen(
    transport: Arc<dyn Transport>,
    path: Arc<ReplyPath>,
    waiters: Waiters,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let queue = path.queue();
        let received = tokio::select! {
            () = shutdown.cancelled() => break,
            received = transport.receive(&queue, 10, Duration::from_secs(1), Duration::from_secs(30)) => received,
        };
        match received {
            Ok(deliveries) => {
                for delivery in deliveries {
                    let _ = transport.ack(&queue, &delivery).await;
                    let waiter = delivery
                        .envelope
                        .causationid
                        .as_deref()
                        .and_then(|id| Uuid::parse_str(id).ok())
                        .and_then(|id| waiters.lock().expect("waiters lock").remove(&id));
                    match waiter {
                        Some(waiter) => {
                            let _ = waiter.send(delivery.envelope);
                        }
                        None => {
                            tracing::debug!(message_id = %delivery.envelope.id, "reply with no waiter (late) dropped")
                        }
                    }
                }
            }
            Err(TransportError::Unknown(_)) => {
                path.recreate(&*transport, &queue, &shutdown).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => {
                tracing::warn!(%error, %queue, "receiving replies failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn heartbeat(
    transport: Arc<dyn Transport>,
    path: Arc<ReplyPath>,
    options: RequesterOptions,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(options.heartbeat);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {
                let queue = path.queue();
                match transport.renew_queue(&queue, options.queue_ttl).await {
                    Ok(()) => {}
                    // Deleted as expired (this process stalled longer than the TTL): without
                    // its queue every later request would time out, so bring it back.
                    Err(TransportError::Unknown(_)) => path.recreate(&*transport, &queue, &shutdown).await,
                    Err(error) => tracing::warn!(%error, %queue, "renewing the reply queue failed"),
                }
                match transport.delete_expired_queues().await {
                    Ok(deleted) if !deleted.is_empty() => tracing::info!(?deleted, "deleted reply queues of stopped processes"),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "sweeping expired queues failed"),
                }
            }
        }
    }
    let queue = path.queue();
    if let Err(error) = transport.delete_queue(&queue).await {
        tracing::warn!(%error, %queue, "deleting the reply queue on shutdown failed; it will expire");
    }
}

/// Builds the fault reply a responder sends when it cannot serve `request`.
pub fn fault(source: &str, request: &Envelope, reason: &str) -> Envelope {
    let kind = format!("{}{FAULT_SUFFIX}", request.kind.trim_end_matches(".v1"));
    Envelope::new(source, &kind, &reason)
        .expect("a string serialises")
        .caused_by(request)
}
