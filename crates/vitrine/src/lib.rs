//! The embedded Vitrine: every service in one process on one port, routed by path like Kong
//! would route them in production, with the operational endpoints and offline API docs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use products::app::Products;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use user_information::app::UserInformation;
use utoipa::openapi::OpenApi;
use utoipa_swagger_ui::SwaggerUi;
use vitrine_messaging::transport::{LocalTransport, SqsTransport, Topology, Transport};
use vitrine_platform::http::auth::{Authenticator, load_or_create_hs256_key};
use vitrine_platform::http::{self, Health, metrics};
use vitrine_platform::{Mode, Settings, TransportKind, server};

/// File name of the embedded message transport inside the data directory.
pub const MESSAGING_FILE: &str = "messaging.sqlite3";

/// The public OpenAPI document of everything this process serves.
pub fn openapi() -> OpenApi {
    merged_openapi(user_information::api::openapi(), products::api::openapi())
}

/// One document for both services: the paths, schemas and tags of each (shared schemas such as
/// `Problem` are identical in both).
fn merged_openapi(mut base: OpenApi, other: OpenApi) -> OpenApi {
    if let Some(info) = base.info.description.as_mut() {
        *info = "B2B commerce backend: business customers (CNPJ) with payment methods kept in a \
                 secret store; products, stock and reservations that never oversell. Errors are \
                 RFC 9457 problem+json. Product writes return `Consistency-Token`; send it back \
                 on reads to see your own writes."
            .to_owned();
    }
    base.merge(other);
    base
}

/// Every topic and queue of the deployment, across services.
pub fn topology() -> Topology {
    let mut topology = user_information::app::topology();
    let products = products::app::topology();
    topology.topics.extend(products.topics);
    topology.queues.extend(products.queues);
    topology
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

/// A bound, ready-to-run embedded server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    router: Router,
    user_information: UserInformation,
    products: Products,
    transport: Arc<dyn Transport>,
    grace: Duration,
}

impl Server {
    /// Opens every store, runs migrations and binds `settings.listen` (port 0 picks a free one).
    pub async fn build(settings: &Settings) -> anyhow::Result<Server> {
        let authenticator = Arc::new(authenticator(settings)?);
        let transport = transport(settings).await?;
        // The embedded transport is this process's own: it keeps its topology provisioned.
        // Shared SNS/SQS topology is provisioned by `vitrine provision`, not by every replica.
        if settings.transport == TransportKind::Local {
            transport.provision(&topology()).await?;
        }
        Self::build_with(settings, authenticator, transport).await
    }

    /// Builds with a given token verifier and message transport (already provisioned).
    pub async fn build_with(
        settings: &Settings,
        authenticator: Arc<Authenticator>,
        transport: Arc<dyn Transport>,
    ) -> anyhow::Result<Server> {
        let user_information =
            UserInformation::build(settings, Arc::clone(&authenticator), Arc::clone(&transport))
                .await?;
        let products = Products::build(settings, authenticator, Arc::clone(&transport)).await?;
        let health = user_information
            .readiness
            .iter()
            .chain(&products.readiness)
            .cloned()
            .fold(Health::default(), Health::with);
        let docs = SwaggerUi::new("/docs").url(
            "/openapi.json",
            merged_openapi(user_information.openapi.clone(), products.openapi.clone()),
        );
        let router = http::with_common_layers(
            Router::new()
                .merge(user_information.router.clone())
                .merge(products.router.clone())
                .merge(health.router())
                .merge(metrics::router())
                .merge(docs),
            settings.max_body_bytes,
        );
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        Ok(Server {
            listener,
            router,
            user_information,
            products,
            transport,
            grace: Duration::from_secs(settings.shutdown_grace_secs),
        })
    }

    /// The user-information service, for tests that inspect state the API does not expose
    /// (the reveal audit trail).
    pub fn user_information(&self) -> &UserInformation {
        &self.user_information
    }

    /// The products service, for tests that inspect its store.
    pub fn products(&self) -> &Products {
        &self.products
    }

    /// The message transport, for tests that subscribe to the events this process publishes.
    pub fn transport(&self) -> Arc<dyn Transport> {
        Arc::clone(&self.transport)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` is cancelled, then drains requests and stops background work.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut tasks = self.user_information.spawn_background(shutdown.clone());
        tasks.extend(self.products.spawn_background(shutdown.clone()));
        server::serve(self.listener, self.router, shutdown, self.grace).await?;
        for task in tasks {
            let _ = task.await;
        }
        Ok(())
    }
}
