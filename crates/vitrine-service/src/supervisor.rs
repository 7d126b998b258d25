//! Background work under supervision. A relay, consumer, sweeper or renewal loop that panics, or
//! returns while the process is not shutting down, is restarted after a backoff (one second,
//! doubling to a minute; back to one second once a run has lasted a minute), counted in
//! `vitrine_background_restarts_total{task}`, and reported by the `background` readiness check
//! until it runs again: a process with a dead worker must not keep answering as healthy.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vitrine_platform::http::ReadinessCheck;

type Run = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A named piece of background work and how to start it (again): given the shutdown signal, a
/// future that runs until it.
pub struct Task {
    name: &'static str,
    start: Box<dyn Fn(CancellationToken) -> Run + Send + Sync>,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task").field("name", &self.name).finish()
    }
}

impl Task {
    pub fn new<F, Fut>(name: &'static str, start: F) -> Task
    where
        F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Task {
            name,
            start: Box::new(move |shutdown| Box::pin(start(shutdown))),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// The housekeeping every service with an inbox and idempotency keys runs: pruning both.
pub fn housekeeping(
    inbox: vitrine_messaging::inbox::Inbox,
    idempotency: Arc<dyn vitrine_platform::http::idempotency::IdempotencyStore>,
) -> [Task; 2] {
    [
        Task::new("inbox-pruner", move |stop| {
            inbox.clone().prune_periodically(stop)
        }),
        Task::new("idempotency-pruner", move |stop| {
            vitrine_platform::http::idempotency::prune_periodically(Arc::clone(&idempotency), stop)
        }),
    ]
}

/// Restart delays.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    /// A run that lasted this long resets the delay to `first`.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
            reset_after: Duration::from_secs(60),
        }
    }
}

/// Runs tasks and knows which are down. Clones share the state.
#[derive(Debug, Clone, Default)]
pub struct Supervisor {
    /// Tasks waiting to be restarted, with why they stopped.
    down: Arc<Mutex<BTreeMap<&'static str, String>>>,
    backoff: Backoff,
}

impl Supervisor {
    pub fn new(backoff: Backoff) -> Self {
        Self {
            down: Arc::default(),
            backoff,
        }
    }

    /// Runs every task until `shutdown`; the handle resolves once all have finished.
    pub fn spawn(
        &self,
        tasks: Vec<Task>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let mut set = tokio::task::JoinSet::new();
        for task in tasks {
            set.spawn(self.clone().keep_running(task, shutdown.clone()));
        }
        tokio::spawn(async move { while set.join_next().await.is_some() {} })
    }

    /// The tasks currently down, with why.
    pub fn down(&self) -> Vec<(&'static str, String)> {
        let down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        down.iter()
            .map(|(name, why)| (*name, why.clone()))
            .collect()
    }

    /// The readiness check reporting tasks that are down.
    pub fn readiness(&self) -> Arc<dyn ReadinessCheck> {
        Arc::new(BackgroundCheck(self.clone()))
    }

    fn set_down(&self, name: &'static str, why: Option<String>) {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        match why {
            Some(why) => down.insert(name, why),
            None => down.remove(name),
        };
    }

    async fn keep_running(self, task: Task, shutdown: CancellationToken) {
        let mut delay = self.backoff.first;
        loop {
            let started = Instant::now();
            let outcome = tokio::spawn((task.start)(shutdown.clone())).await;
            if shutdown.is_cancelled() {
                return;
            }
            let why = match outcome {
                Ok(()) => "stopped on its own".to_owned(),
                Err(error) if error.is_panic() => {
                    let payload = error.into_panic();
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a non-text payload".to_owned());
                    format!("panicked: {message}")
                }
                Err(error) => format!("was cancelled: {error}"),
            };
            if started.elapsed() >= self.backoff.reset_after {
                delay = self.backoff.first;
            }
            tracing::error!(
                task = task.name,
                reason = %why,
                restart_in_ms = delay.as_millis() as u64,
                "background task stopped; restarting"
            );
            metrics::counter!("vitrine_background_restarts_total", "task" => task.name)
                .increment(1);
            self.set_down(task.name, Some(why));
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            self.set_down(task.name, None);
            delay = (delay * 2).min(self.backoff.max);
        }
    }
}

struct BackgroundCheck(Supervisor);

#[async_trait]
impl ReadinessCheck for BackgroundCheck {
    fn name(&self) -> &'static str {
        "background"
    }

    async fn check(&self) -> Result<(), String> {
        let down = self.0.down();
        if down.is_empty() {
            return Ok(());
        }
        Err(down
            .iter()
            .map(|(name, why)| format!("{name} {why}, restarting"))
            .collect::<Vec<_>>()
            .join("; "))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn quick() -> Backoff {
        Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(1),
            reset_after: Duration::from_secs(60),
        }
    }

    /// Waits up to `seconds` for `condition` (a loaded machine may be slow, never fast).
    async fn within(seconds: u64, condition: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        while !condition() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not within {seconds} s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_crashed_task_is_reported_then_restarted() {
        let runs = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&runs);
        let task = Task::new("relay", move |shutdown| {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                assert!(run > 0, "worker bug on the first run");
                shutdown.cancelled().await;
            }
        });
        let supervisor = Supervisor::new(quick());
        let check = supervisor.readiness();
        let shutdown = CancellationToken::new();
        let running = supervisor.spawn(vec![task], shutdown.clone());

        tokio::time::sleep(Duration::from_millis(200)).await;
        let reason = check.check().await.expect_err("down after the panic");
        assert!(reason.contains("relay panicked: worker bug"), "{reason}");

        within(5, || runs.load(Ordering::SeqCst) == 2).await;
        within(5, || supervisor.down().is_empty()).await;
        assert_eq!(check.check().await, Ok(()), "ready again");

        shutdown.cancel();
        running.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2, "not restarted on shutdown");
    }

    #[tokio::test]
    async fn a_task_that_returns_early_is_restarted_too() {
        let runs = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&runs);
        let task = Task::new("sweeper", move |_shutdown| {
            counted.fetch_add(1, Ordering::SeqCst);
            async {}
        });
        let supervisor = Supervisor::new(quick());
        let shutdown = CancellationToken::new();
        let running = supervisor.spawn(vec![task], shutdown.clone());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            supervisor.down(),
            vec![("sweeper", "stopped on its own".to_owned())]
        );
        within(10, || runs.load(Ordering::SeqCst) >= 3).await;
        shutdown.cancel();
        running.await.unwrap();
    }
}
