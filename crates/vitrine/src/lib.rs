//! The Vitrine host: every service of [`SERVICES`] in one process on one port (the embedded
//! Vitrine, routed by path as Kong routes them in production), or one service alone in its own
//! process ([`run_single`], the per-service binaries), with the operational endpoints and
//! offline API docs.

pub mod analytics;
pub mod data_lock;
pub mod gateway;
pub mod host;
pub mod product_import;
pub mod webhook_listener;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use products::app::Products;
use tokio_util::sync::CancellationToken;
use user_information::app::UserInformation;
use utoipa::openapi::OpenApi;
use vitrine_messaging::transport::{Topology, Transport};
use vitrine_platform::http::auth::Authenticator;
use vitrine_platform::{Settings, server, telemetry};
use vitrine_runtime::migrations::Migrated;
use vitrine_service::{Service, Shared};

use crate::data_lock::DataDirLock;

pub use host::{Host, MESSAGING_FILE, authenticator, transport};
/// The memory allocator every Vitrine binary declares (`#[global_allocator]`): a request
/// allocates and frees dozens of small blocks on whichever core runs it, where glibc's
/// allocator showed as a sixth of a hot read's CPU time under load (README, Benchmarks).
pub use mimalloc::MiMalloc;

/// Every Vitrine service. A new service is one line here (see the README's checklist).
pub const SERVICES: &[&dyn Service] = &[&user_information::SERVICE, &products::SERVICE];

/// The public OpenAPI document of every service.
pub fn openapi() -> OpenApi {
    describe(
        vitrine_service::merge_openapi(SERVICES.iter().map(|s| s.openapi()))
            .expect("there is at least one service"),
    )
}

/// The merged document's description covers every service.
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
    vitrine_service::topology(SERVICES.iter().copied())
}

/// Applies every service's migrations to its configured database (`vitrine migrate`), handing
/// each service's report to `report` as soon as it is done (so a failure on the second still
/// shows what happened to the first).
pub async fn migrate(
    settings: &Settings,
    mut report: impl FnMut(&str, &Migrated),
) -> anyhow::Result<()> {
    for service in SERVICES {
        let migrated = service
            .migrate(settings)
            .await
            .with_context(|| format!("migrating {}", service.name()))?;
        report(service.name(), &migrated);
    }
    Ok(())
}

/// The exit of a command: an error is printed as `error: ...` with its causes, one per line,
/// and never a backtrace (even with `RUST_BACKTRACE=1`): these are the operator's mistakes
/// and the world's failures, not bugs, and the causes say what to do.
pub fn exit_with(result: anyhow::Result<()>) -> std::process::ExitCode {
    telemetry::flush();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            let mut message = format!("error: {error}\n");
            for cause in error.chain().skip(1) {
                message.push_str(&format!("  caused by: {cause}\n"));
            }
            // Ignored: with stderr gone there is no one left to tell.
            let _ = std::io::Write::write_all(&mut std::io::stderr(), message.as_bytes());
            std::process::ExitCode::FAILURE
        }
    }
}

/// A bound, ready-to-run embedded server: every service in this process.
#[derive(Debug)]
pub struct Server {
    host: Host,
    transport: Arc<dyn Transport>,
}

impl Server {
    /// Opens every store, runs migrations and binds `settings.listen` (port 0 picks a free one).
    pub async fn build(settings: &Settings) -> anyhow::Result<Server> {
        let lock = host::lock_data_dir(settings, SERVICES)?;
        Self::start(host::shared(settings, SERVICES).await?, lock).await
    }

    /// Builds with a given token verifier and message transport (already provisioned).
    pub async fn build_with(
        settings: &Settings,
        authenticator: Arc<Authenticator>,
        transport: Arc<dyn Transport>,
    ) -> anyhow::Result<Server> {
        let lock = host::lock_data_dir(settings, SERVICES)?;
        let shared = Shared {
            settings: settings.clone(),
            authenticator,
            transport,
        };
        Self::start(shared, lock).await
    }

    async fn start(shared: Shared, lock: Option<DataDirLock>) -> anyhow::Result<Server> {
        let host = Host::start(&shared, lock, SERVICES, openapi()).await?;
        Ok(Server {
            host,
            transport: shared.transport,
        })
    }

    /// The user-information service, for tests that inspect state the API does not expose
    /// (the reveal audit trail).
    pub fn user_information(&self) -> &UserInformation {
        self.host
            .service()
            .expect("the embedded server hosts user-information")
    }

    /// The products service, for tests that inspect its store.
    pub fn products(&self) -> &Products {
        self.host
            .service()
            .expect("the embedded server hosts products")
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

/// Runs `service` alone in this process until SIGTERM or SIGINT, as production runs each
/// service (one process per replica, behind Kong): the `user-information` and `products`
/// binaries. Configuration as for `vitrine`; see the README's reference.
pub async fn run_single(service: &'static dyn Service) -> anyhow::Result<()> {
    clap::Command::new(service.name())
        .version(env!("CARGO_PKG_VERSION"))
        .about(format!(
            "Vitrine's {} service alone in this process, as production runs it (one process \
             per replica, behind the gateway).",
            service.name()
        ))
        .after_help(
            "Configured by VITRINE_* environment variables and the TOML file named by \
             VITRINE_CONFIG, as `vitrine` is; see the README's configuration reference.",
        )
        .get_matches();
    let settings = Settings::load()?;
    telemetry::init(service.name(), &settings.log, settings.log_format);
    let lock = host::lock_data_dir(&settings, &[service])?;
    let shared = host::shared(&settings, &[service]).await?;
    let host = Host::start(&shared, lock, &[service], service.openapi()).await?;
    tracing::info!(address = %host.local_addr(), "{} ready", service.name());
    let shutdown = CancellationToken::new();
    server::cancel_on_signal(shutdown.clone());
    host.run(shutdown).await
}
