//! Hosting Vitrine services in one process: the adapters every service shares are chosen here
//! from configuration (token verifier, message transport), and a [`Host`] serves one or more
//! [`Service`]s on one port with the operational endpoints (`/health/*`, `/metrics`) and offline
//! API docs (`/docs`, `/openapi.json`).
//!
//! The embedded `vitrine` process hosts every service; in production each service's own binary
//! hosts just itself ([`crate::run_single`]).

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
use vitrine_platform::backends::TokenCheck;
use vitrine_platform::http::auth::{Authenticator, load_or_create_hs256_key};
use vitrine_platform::http::{self, Health, metrics};
use vitrine_platform::requirements::Requirements;
use vitrine_platform::{Mode, Settings, TransportKind, server};
use vitrine_service::{Service, Shared, Started, Supervisor};

use crate::data_lock::DataDirLock;

/// File name of the embedded message transport inside the data directory.
pub const MESSAGING_FILE: &str = "messaging.sqlite3";

/// The message transport the configuration asks for.
pub async fn transport(settings: &Settings) -> anyhow::Result<Arc<dyn Transport>> {
    Ok(match settings.message_transport()? {
        TransportKind::Sqs => Arc::new(SqsTransport::from_env(&settings.messaging_prefix).await),
        TransportKind::Local => {
            Arc::new(LocalTransport::open(&settings.data_dir.join(MESSAGING_FILE)).await?)
        }
    })
}

/// Builds the token verifier the configuration asks for.
pub fn authenticator(settings: &Settings) -> anyhow::Result<Authenticator> {
    match settings.token_check()? {
        TokenCheck::Jwks {
            url,
            issuer,
            audience,
        } => Ok(Authenticator::jwks(
            url,
            issuer.as_deref(),
            audience.as_deref(),
        )),
        TokenCheck::Generated => {
            Authenticator::hs256(&load_or_create_hs256_key(&settings.data_dir)?)
        }
    }
}

/// In embedded mode, the lock on the data directory for `services`: taken before anything
/// opens the directory's databases, queues or signing key, so a second process is refused
/// before it has touched them.
pub fn lock_data_dir(
    settings: &Settings,
    services: &[&dyn Service],
) -> anyhow::Result<Option<DataDirLock>> {
    match settings.mode {
        Mode::Embedded => Ok(Some(DataDirLock::acquire(
            &settings.data_dir,
            &services.iter().map(|s| s.name()).collect::<Vec<_>>(),
        )?)),
        Mode::Production => Ok(None),
    }
}

/// The adapters every hosted service shares, chosen from configuration. The embedded transport
/// belongs to this process, so its topology (that of `services`) is provisioned here; shared
/// SNS/SQS topology is provisioned once per environment by `vitrine provision`.
pub async fn shared(settings: &Settings, services: &[&dyn Service]) -> anyhow::Result<Shared> {
    check_settings(settings, services)?;
    let authenticator = Arc::new(authenticator(settings)?);
    let transport = transport(settings).await?;
    if settings.transport == TransportKind::Local {
        transport
            .provision(&vitrine_service::topology(services.iter().copied()))
            .await?;
    }
    Ok(Shared {
        settings: settings.clone(),
        authenticator,
        transport,
    })
}

/// Every setting these services and this host need, checked at once: the error names each one
/// missing, unsafe in this mode, or needing another. (The adapters open from the same checked
/// choices, so no path can fall back to an embedded stand-in in production.)
pub fn check_settings(settings: &Settings, services: &[&dyn Service]) -> anyhow::Result<()> {
    let mut requirements = Requirements::default();
    requirements.common(settings);
    for service in services {
        service.requirements(settings, &mut requirements);
    }
    requirements.finish(settings)
}

/// How long idempotent handlers still running after the grace period may take to finish.
const FINISH_WINDOW: Duration = Duration::from_secs(5);

/// A bound, ready-to-run process serving some services.
#[derive(Debug)]
pub struct Host {
    listener: TcpListener,
    router: Router,
    started: Vec<Arc<dyn Started>>,
    supervisor: Supervisor,
    _data_lock: Option<DataDirLock>,
    grace: Duration,
}

impl Host {
    /// Starts each service with the shared adapters, binds `settings.listen` (port 0 picks a
    /// free one) and assembles their routes with the operational endpoints. `openapi` is the
    /// document `/docs` shows; `data_lock` (from [`lock_data_dir`]) is held while it serves.
    pub async fn start(
        shared: &Shared,
        data_lock: Option<DataDirLock>,
        services: &[&dyn Service],
        openapi: OpenApi,
    ) -> anyhow::Result<Host> {
        let settings = &shared.settings;
        let mut started = Vec::with_capacity(services.len());
        for service in services {
            started.push(
                service
                    .start(shared)
                    .await
                    .with_context(|| format!("starting {}", service.name()))?,
            );
        }
        let supervisor = Supervisor::default();
        let health = started
            .iter()
            .flat_map(|s| s.readiness())
            .chain([supervisor.readiness()])
            .fold(Health::default(), Health::with);
        let routes = started
            .iter()
            .fold(Router::new(), |routes, s| routes.merge(s.router()));
        let deadlines = http::deadline::Deadlines::for_api(&openapi);
        let router = http::with_common_layers(
            routes
                .merge(health.router())
                .merge(metrics::router())
                .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi)),
            settings.max_body_bytes,
            deadlines,
        );
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        Ok(Host {
            listener,
            router,
            started,
            supervisor,
            _data_lock: data_lock,
            grace: Duration::from_secs(settings.shutdown_grace_secs),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The started service of type `T`, for tests that inspect state the API does not expose.
    pub fn service<T: Started>(&self) -> Option<&T> {
        self.started.iter().find_map(|s| {
            let any: &dyn std::any::Any = &**s;
            any.downcast_ref::<T>()
        })
    }

    /// Serves until `shutdown` is cancelled, then drains requests and stops background work.
    /// Idempotent handlers cut off by the grace period get [`FINISH_WINDOW`] more (at most the
    /// grace period again; they run detached from their connections) to finish and store their
    /// responses.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tasks = self.started.iter().flat_map(|s| s.background()).collect();
        // Background work (consumers, relays, the reply queue of seller lookups) keeps running
        // while requests drain: a request in its grace period may need it (a product created
        // during the drain still has its seller checked). It stops once serving has ended.
        let background_stop = CancellationToken::new();
        let background = self.supervisor.spawn(tasks, background_stop.clone());
        let cut_off = server::serve(self.listener, self.router, shutdown, self.grace).await?;
        let detached: Vec<_> = self
            .started
            .iter()
            .filter_map(|s| s.detached_work())
            .collect();
        for work in &detached {
            work.close();
        }
        let _ = tokio::time::timeout(FINISH_WINDOW.min(self.grace), async {
            for work in &detached {
                work.wait().await;
            }
        })
        .await;
        let unfinished: usize = detached.iter().map(|work| work.len()).sum();
        background_stop.cancel();
        let _ = background.await;
        tracing::info!(cut_off, unfinished, "shutdown complete");
        if cut_off > 0 || unfinished > 0 {
            anyhow::bail!(
                "{cut_off} request(s) were still running when the {} s shutdown grace period \
                 ended and were cut off (VITRINE_SHUTDOWN_GRACE_SECS); {unfinished} piece(s) of \
                 request work detached from their connections had not finished when the process \
                 stopped: an Idempotency-Key they held stays reserved for up to a minute, since \
                 their effects may have committed",
                self.grace.as_secs()
            );
        }
        Ok(())
    }
}
