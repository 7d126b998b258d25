//! Hosting Vitrine services in one process: the adapters every service shares are chosen here
//! from configuration (token verifier, message transport), and a [`Host`] serves one or more
//! [`Service`]s on one port with the operational endpoints (`/health/*`, `/metrics`) and offline
//! API docs (`/docs`, `/openapi.json`).
//!
//! The embedded `vitrine` process hosts every service; in production each service's own binary
//! hosts just itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::OpenApi;
use utoipa_swagger_ui::SwaggerUi;
use vitrine_messaging::transport::{LocalTransport, SqsTransport, Transport};
use vitrine_platform::http::auth::{Authenticator, load_or_create_hs256_key};
use vitrine_platform::http::{self, Health, ReadinessCheck, metrics};
use vitrine_platform::{Mode, Settings, TransportKind, server};

/// File name of the embedded message transport inside the data directory.
pub const MESSAGING_FILE: &str = "messaging.sqlite3";

/// What a process needs from a service to host it.
pub trait Service: Send + Sync + std::fmt::Debug {
    /// Its routes, with their service-specific layers (idempotency).
    fn router(&self) -> Router;
    fn openapi(&self) -> OpenApi;
    fn readiness(&self) -> Vec<Arc<dyn ReadinessCheck>>;
    /// Relays, consumers and housekeeping, until `shutdown`.
    fn spawn_background(&self, shutdown: CancellationToken) -> Vec<tokio::task::JoinHandle<()>>;
}

/// The message transport the configuration asks for.
pub async fn transport(settings: &Settings) -> anyhow::Result<Arc<dyn Transport>> {
    match (settings.mode, settings.transport) {
        (_, TransportKind::Sqs) => Ok(Arc::new(
            SqsTransport::from_env(&settings.messaging_prefix).await,
        )),
        (Mode::Embedded, TransportKind::Local) => Ok(Arc::new(
            LocalTransport::open(&settings.data_dir.join(MESSAGING_FILE)).await?,
        )),
        (Mode::Production, TransportKind::Local) => {
            anyhow::bail!(
                "mode = production requires VITRINE_TRANSPORT=sqs (SNS topics and SQS queues)"
            )
        }
    }
}

/// Builds the token verifier the configuration asks for.
pub fn authenticator(settings: &Settings) -> anyhow::Result<Authenticator> {
    match (settings.mode, &settings.jwks_url) {
        (_, Some(url)) => Ok(Authenticator::jwks(
            url.clone(),
            settings.jwt_issuer.as_deref(),
            settings.jwt_audience.as_deref(),
        )),
        (Mode::Embedded, None) => {
            Authenticator::hs256(&load_or_create_hs256_key(&settings.data_dir)?)
        }
        (Mode::Production, None) => {
            anyhow::bail!(
                "mode = production requires VITRINE_JWKS_URL (the identity provider's key set)"
            )
        }
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

/// A bound, ready-to-run process serving some services.
#[derive(Debug)]
pub struct Host {
    listener: TcpListener,
    router: Router,
    services: Vec<Arc<dyn Service>>,
    grace: Duration,
}

impl Host {
    /// Binds `settings.listen` (port 0 picks a free one) and assembles the routes of every
    /// service with the operational endpoints. `openapi` is the document `/docs` shows.
    pub async fn build(
        settings: &Settings,
        services: Vec<Arc<dyn Service>>,
        openapi: OpenApi,
    ) -> anyhow::Result<Host> {
        let health = services
            .iter()
            .flat_map(|s| s.readiness())
            .fold(Health::default(), Health::with);
        let routes = services
            .iter()
            .fold(Router::new(), |routes, s| routes.merge(s.router()));
        let router = http::with_common_layers(
            routes
                .merge(health.router())
                .merge(metrics::router())
                .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi)),
            settings.max_body_bytes,
        );
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        Ok(Host {
            listener,
            router,
            services,
            grace: Duration::from_secs(settings.shutdown_grace_secs),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` is cancelled, then drains requests and stops background work.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tasks: Vec<_> = self
            .services
            .iter()
            .flat_map(|s| s.spawn_background(shutdown.clone()))
            .collect();
        server::serve(self.listener, self.router, shutdown, self.grace).await?;
        for task in tasks {
            let _ = task.await;
        }
        Ok(())
    }
}

/// Ready while the service's queue exists on the transport: without it the service can neither
/// receive its events nor answer its requests.
#[derive(Debug)]
pub struct QueueCheck {
    pub name: &'static str,
    pub transport: Arc<dyn Transport>,
    pub queue: &'static str,
}

#[async_trait::async_trait]
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
