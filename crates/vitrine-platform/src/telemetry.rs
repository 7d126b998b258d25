//! Structured logs through `tracing` (JSON for machines, pretty for people at a terminal), and
//! the same spans exported as OpenTelemetry traces over OTLP/HTTP when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.
//!
//! The exporter reads the other standard variables itself (`OTEL_EXPORTER_OTLP_HEADERS`,
//! `_TIMEOUT`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*`; no compression is
//! compiled in). A caller's `traceparent` with the sampled flag off is respected: that request
//! and what follows from it are not exported.
//! Spans leave in batches from a background thread, so a slow or absent collector never holds
//! up a request; what cannot be sent is dropped, never queued without bound.

use std::io::IsTerminal;
use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::LogFormat;

/// The only OTLP protocol compiled in (the specification's default).
const PROTOCOL: &str = "http/protobuf";

static TRACER_PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Standard output that drops what it cannot write. When the reader went away (`vitrine | head
/// -1`), a failed write must not turn into a panic (tracing reports write errors on stderr,
/// which may be the same closed pipe) or keep the process from shutting down.
struct LossyStdout;

impl std::io::Write for LossyStdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stdout().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stdout().flush();
        Ok(())
    }
}

/// Installs the global subscriber for the process `service` (the `service.name` of exported
/// spans unless `OTEL_SERVICE_NAME` says otherwise). Safe to call more than once (later calls
/// are no-ops), which keeps tests that build several apps in one process simple.
pub fn init(service: &'static str, filter: &str, format: LogFormat) {
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(|| LossyStdout)
        .with_span_events(FmtSpan::NONE);
    let logs: Box<dyn Layer<Registry> + Send + Sync> = if json {
        logs.json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        logs.compact().boxed()
    };
    let (traces, failure) = match exporter(service) {
        Ok(provider) => (provider, None),
        Err(error) => (None, Some(error)),
    };
    let traces = traces.map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("vitrine"))
            .with_filter(env_filter(filter))
    });
    let installed = tracing_subscriber::registry()
        .with(logs.with_filter(env_filter(filter)))
        .with(traces)
        .try_init()
        .is_ok();
    if let Some(error) = failure {
        tracing::warn!(%error, "OpenTelemetry trace export is off");
    } else if installed && TRACER_PROVIDER.get().is_some() {
        tracing::info!(protocol = PROTOCOL, "exporting traces over OTLP");
    }
}

/// Sends the spans still buffered. Called once the process has stopped serving.
pub fn flush() {
    if let Some(provider) = TRACER_PROVIDER.get()
        && let Err(error) = provider.shutdown()
    {
        tracing::warn!(%error, "flushing the last spans failed");
    }
}

fn env_filter(filter: &str) -> EnvFilter {
    EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The tracer provider when the environment asks for export (None otherwise), installed once.
fn exporter(service: &'static str) -> anyhow::Result<Option<&'static SdkTracerProvider>> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if disabled
        || !(set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    {
        return Ok(None);
    }
    for name in [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    ] {
        if let Ok(protocol) = std::env::var(name)
            && !protocol.trim().eq_ignore_ascii_case(PROTOCOL)
        {
            anyhow::bail!("{name}={protocol}: only {PROTOCOL} is supported");
        }
    }
    if let Some(provider) = TRACER_PROVIDER.get() {
        return Ok(Some(provider));
    }
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let mut resource = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    let named = set("OTEL_SERVICE_NAME")
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|attributes| {
            attributes
                .split(',')
                .any(|a| a.trim().starts_with("service.name="))
        });
    if !named {
        resource = resource.with_service_name(service);
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .with_resource(resource.build())
        .build();
    Ok(Some(TRACER_PROVIDER.get_or_init(|| provider)))
}
