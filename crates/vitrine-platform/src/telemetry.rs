//! Structured logs through `tracing`: JSON for machines, pretty for people at a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::LogFormat;

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

/// Installs the global subscriber. Safe to call more than once (later calls are no-ops), which
/// keeps tests that build several apps in one process simple.
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(|| LossyStdout)
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}
