//! The contract between a Vitrine service and the process that hosts it.
//!
//! A [`Service`] is what a service is before it runs: its name, its topics and queues, its API
//! document, its migrations, and how to start it with the adapters every service shares
//! ([`Shared`]). A started service ([`Started`]) offers its routes, its readiness checks and its
//! background work. The host (the `vitrine` crate) serves any list of services with the same
//! code, for the embedded process (all of them) and for each service's own binary; services
//! depend on this contract, never on the host.

pub mod gauges;
pub mod supervisor;

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use tokio_util::task::TaskTracker;
use utoipa::openapi::OpenApi;
use vitrine_messaging::transport::{Topology, Transport};
use vitrine_platform::Settings;
use vitrine_platform::http::ReadinessCheck;
use vitrine_platform::http::auth::Authenticator;
use vitrine_platform::requirements::Requirements;

pub use supervisor::{Supervisor, Task};

/// The adapters a process chooses once, from configuration, for all the services it hosts.
#[derive(Debug, Clone)]
pub struct Shared {
    pub settings: Settings,
    pub authenticator: Arc<Authenticator>,
    /// Provisioned before services start (by the process for the embedded transport, by
    /// `vitrine provision` for SNS/SQS).
    pub transport: Arc<dyn Transport>,
}

/// A service as a process can host it. Each service crate exports one (`SERVICE`).
#[async_trait]
pub trait Service: Send + Sync {
    /// Its name in logs and banners (`user-information`, `products`).
    fn name(&self) -> &'static str;

    /// The topics it publishes to and the queues it consumes, with their subscriptions.
    fn topology(&self) -> Topology;

    /// Its public API document.
    fn openapi(&self) -> OpenApi;

    /// Checks the adapters it will choose (its database, its secret store...) into
    /// `requirements`; the host checks them all, with its own, before starting anything.
    fn requirements(&self, settings: &Settings, requirements: &mut Requirements);

    /// The outbox in its database, for operator commands (the schema is left as it is).
    async fn outbox(
        &self,
        settings: &Settings,
    ) -> anyhow::Result<Arc<dyn vitrine_messaging::outbox::OutboxStore>>;

    /// Applies its migrations (its own tables and those of the libraries it keeps in its
    /// database) to the configured database: which database, and what was applied.
    async fn migrate(
        &self,
        settings: &Settings,
    ) -> anyhow::Result<vitrine_runtime::migrations::Migrated>;

    /// Opens its stores (migrating them) and assembles it, ready to serve.
    async fn start(&self, shared: &Shared) -> anyhow::Result<Arc<dyn Started>>;
}

/// A started service. `Any` lets tests of a composed process reach one service's own type.
pub trait Started: std::any::Any + Send + Sync + std::fmt::Debug {
    /// Its routes, with their service-specific layers (idempotency).
    fn router(&self) -> Router;
    fn readiness(&self) -> Vec<Arc<dyn ReadinessCheck>>;
    /// Relays, consumers and housekeeping, which the host runs under a [`Supervisor`].
    fn background(&self) -> Vec<Task>;

    /// Request work running detached from its connection (handlers holding an
    /// `Idempotency-Key`, steps that span the database and another store): after a shutdown's
    /// grace period cuts connections off, the host gives it a short while more to finish, so a
    /// retry after the restart gets the stored answer instead of a 409, and no step is
    /// stopped halfway.
    fn detached_work(&self) -> Option<TaskTracker> {
        None
    }
}

/// One OpenAPI document for several services: the paths, schemas and tags of each (shared
/// schemas such as `Problem` are identical in all of them).
pub fn merge_openapi(documents: impl IntoIterator<Item = OpenApi>) -> Option<OpenApi> {
    documents.into_iter().reduce(|mut merged, other| {
        merged.merge(other);
        merged
    })
}

/// Every topic and queue of `services`, for provisioning them together.
pub fn topology<'a>(services: impl IntoIterator<Item = &'a dyn Service>) -> Topology {
    services
        .into_iter()
        .map(Service::topology)
        .fold(Topology::default(), |mut all, one| {
            all.topics.extend(one.topics);
            all.queues.extend(one.queues);
            all
        })
}

/// Ready while the service's queue exists on the transport: without it the service can neither
/// receive its events nor answer its requests.
#[derive(Debug)]
pub struct QueueCheck {
    pub name: &'static str,
    pub transport: Arc<dyn Transport>,
    pub queue: &'static str,
}

#[async_trait]
impl ReadinessCheck for QueueCheck {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn check(&self) -> Result<(), String> {
        match self.transport.list_queues(self.queue).await {
            Ok(queues) if queues.iter().any(|q| q == self.queue) => Ok(()),
            Ok(_) => Err("queue not provisioned".to_owned()),
            Err(_) => Err("unreachable".to_owned()),
        }
    }
}
