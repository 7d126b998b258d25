//! `products`: this service alone in a process, as production runs it (one process per
//! replica, behind Kong). Configuration as for `vitrine`; see the README's reference.

use std::sync::Arc;

use anyhow::Context;
use products::app::Products;
use tokio_util::sync::CancellationToken;
use vitrine_host::Host;
use vitrine_platform::{Settings, TransportKind, server, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load().context("reading configuration")?;
    telemetry::init(&settings.log, settings.log_format);
    let authenticator = Arc::new(vitrine_host::authenticator(&settings)?);
    let transport = vitrine_host::transport(&settings).await?;
    // Shared SNS/SQS topology is provisioned once per environment by `vitrine provision`.
    if settings.transport == TransportKind::Local {
        transport.provision(&products::app::topology()).await?;
    }
    let service = Arc::new(Products::build(&settings, authenticator, transport).await?);
    let openapi = service.openapi.clone();
    let host = Host::build(&settings, vec![service], openapi).await?;
    tracing::info!(address = %host.local_addr(), "products ready");
    let shutdown = CancellationToken::new();
    server::cancel_on_signal(shutdown.clone());
    host.run(shutdown).await
}
