//! The embedded Vitrine: every service in one process on one port, routed by path like Kong
//! would route them in production, with the operational endpoints and offline API docs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use user_information::app::UserInformation;
use utoipa::openapi::OpenApi;
use utoipa_swagger_ui::SwaggerUi;
use vitrine_platform::http::auth::{Authenticator, load_or_create_hs256_key};
use vitrine_platform::http::{self, Health, metrics};
use vitrine_platform::{Mode, Settings, server};

/// The public OpenAPI document of everything this process serves.
pub fn openapi() -> OpenApi {
    user_information::api::openapi()
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
    grace: Duration,
}

impl Server {
    /// Opens every store, runs migrations and binds `settings.listen` (port 0 picks a free one).
    pub async fn build(settings: &Settings) -> anyhow::Result<Server> {
        let authenticator = Arc::new(authenticator(settings)?);
        let user_information = UserInformation::build(settings, authenticator).await?;
        let health = user_information
            .readiness
            .iter()
            .cloned()
            .fold(Health::default(), Health::with);
        let docs = SwaggerUi::new("/docs").url("/openapi.json", user_information.openapi.clone());
        let router = http::with_common_layers(
            Router::new()
                .merge(user_information.router.clone())
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
            grace: Duration::from_secs(settings.shutdown_grace_secs),
        })
    }

    /// The user-information service, for tests that inspect state the API does not expose
    /// (the reveal audit trail).
    pub fn user_information(&self) -> &UserInformation {
        &self.user_information
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` is cancelled, then drains requests and stops background work.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tasks = self.user_information.spawn_background(shutdown.clone());
        server::serve(self.listener, self.router, shutdown, self.grace).await?;
        for task in tasks {
            let _ = task.await;
        }
        Ok(())
    }
}
