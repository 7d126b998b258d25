//! The embedded Vitrine: every service in one process on one port, routed by path like Kong
//! would route them in production, with the operational endpoints and offline API docs.

use std::net::SocketAddr;
use std::sync::Arc;

use products::app::Products;
use tokio_util::sync::CancellationToken;
use user_information::app::UserInformation;
use utoipa::openapi::OpenApi;
use vitrine_host::{Host, Service};
use vitrine_messaging::transport::{Topology, Transport};
use vitrine_platform::http::auth::Authenticator;
use vitrine_platform::{Settings, TransportKind};

pub use vitrine_host::{MESSAGING_FILE, authenticator, transport};

/// The public OpenAPI document of everything this process serves.
pub fn openapi() -> OpenApi {
    describe(merge([
        user_information::api::openapi(),
        products::api::openapi(),
    ]))
}

fn merge(documents: [OpenApi; 2]) -> OpenApi {
    vitrine_host::merge_openapi(documents).expect("two documents merge into one")
}

/// The merged document's description covers both services.
fn describe(mut openapi: OpenApi) -> OpenApi {
    openapi.info.description = Some(
        "B2B commerce backend: business customers (CNPJ) with payment methods kept in a secret \
         store; products, stock and reservations that never oversell. Errors are RFC 9457 \
         problem+json. Product writes return `Consistency-Token`; send it back on reads to see \
         your own writes."
            .to_owned(),
    );
    openapi
}

/// Every topic and queue of the deployment, across services.
pub fn topology() -> Topology {
    let mut topology = user_information::app::topology();
    let products = products::app::topology();
    topology.topics.extend(products.topics);
    topology.queues.extend(products.queues);
    topology
}

/// A bound, ready-to-run embedded server.
#[derive(Debug)]
pub struct Server {
    host: Host,
    user_information: Arc<UserInformation>,
    products: Arc<Products>,
    transport: Arc<dyn Transport>,
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
        let user_information = Arc::new(
            UserInformation::build(settings, Arc::clone(&authenticator), Arc::clone(&transport))
                .await?,
        );
        let products =
            Arc::new(Products::build(settings, authenticator, Arc::clone(&transport)).await?);
        let openapi = describe(merge([
            user_information.openapi.clone(),
            products.openapi.clone(),
        ]));
        let services: Vec<Arc<dyn Service>> = vec![
            Arc::clone(&user_information) as Arc<dyn Service>,
            Arc::clone(&products) as Arc<dyn Service>,
        ];
        let host = Host::build(settings, services, openapi).await?;
        Ok(Server {
            host,
            user_information,
            products,
            transport,
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
        self.host.local_addr()
    }

    /// Serves until `shutdown` is cancelled, then drains requests and stops background work.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.host.run(shutdown).await
    }
}
