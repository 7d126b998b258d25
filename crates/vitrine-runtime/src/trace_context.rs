//! W3C trace context (`traceparent`) carried from an HTTP request, through the outbox, into the
//! consumer that handles the resulting message, so one trace id ties the whole flow together.
//!
//! The current context lives in a task-local: the HTTP middleware (in `vitrine-platform`) sets it
//! for the request's task, consumers set it around each handler, and message builders read it
//! with [`current`].
//!
//! When spans are exported over OTLP (see `vitrine_platform::telemetry`), the ids are the
//! exported spans' own: [`adopt`] makes a span the child of a remote parent and [`of_span`]
//! names that span as the parent of the work done inside it, so a trace viewer shows the HTTP
//! request, the relay's publication and the consumer's handling as one tree. Without an
//! exporter the same functions fall back to fresh span ids in the caller's trace.

use std::future::Future;

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use rand::RngCore;
use tracing_opentelemetry::OpenTelemetrySpanExt;

tokio::task_local! {
    static CURRENT: String;
}

pub const HEADER: &str = "traceparent";

/// The `traceparent` of the work in progress, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `work` with `traceparent` as the current context.
pub async fn scope<F: Future>(traceparent: String, work: F) -> F::Output {
    CURRENT.scope(traceparent, work).await
}

/// The trace id of a valid `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    let valid = version == "00"
        && parts.next().is_none()
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    valid.then_some(trace)
}

/// A new span in the trace of `parent` (or a new trace): same trace id, fresh span id.
pub fn child_of(parent: Option<&str>) -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let trace = parent
        .and_then(trace_id)
        .map_or_else(|| hex(&bytes[..16]), str::to_owned);
    format!("00-{trace}-{}-01", hex(&bytes[16..]))
}

/// Makes `span` (not yet entered) a child of the remote `parent` in the exported trace. A no-op
/// when nothing exports spans or `parent` is not a valid `traceparent`.
pub fn adopt(span: &tracing::Span, parent: Option<&str>) {
    if let Some(remote) = parent.and_then(remote_context) {
        // Fails only when no exporting layer is installed, or the span is disabled or started:
        // then the trace is still carried on by `of_span`'s fallback.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}

/// The `traceparent` naming `span` as the parent of the work done inside it: its exported ids
/// when spans are exported, otherwise a new span id in `parent`'s trace ([`child_of`]).
pub fn of_span(span: &tracing::Span, parent: Option<&str>) -> String {
    let context = span.context();
    let own = context.span().span_context().clone();
    if own.is_valid() {
        format!(
            "00-{}-{}-{:02x}",
            own.trace_id(),
            own.span_id(),
            own.trace_flags().to_u8()
        )
    } else {
        child_of(parent)
    }
}

/// [`adopt`] then [`of_span`]: what a consumer does with the `traceparent` a message carries.
pub fn continue_in(span: &tracing::Span, parent: Option<&str>) -> String {
    adopt(span, parent);
    of_span(span, parent)
}

fn remote_context(traceparent: &str) -> Option<SpanContext> {
    let trace = trace_id(traceparent)?;
    let mut parts = traceparent.rsplitn(3, '-');
    let flags = u8::from_str_radix(parts.next()?, 16).ok()?;
    let span = parts.next()?;
    Some(SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_keep_the_trace_and_change_the_span() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let child = child_of(Some(parent));
        assert_eq!(trace_id(&child), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_ne!(child, parent);
    }

    #[test]
    fn invalid_parents_start_a_new_trace() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let child = child_of(Some(bad));
            assert!(trace_id(&child).is_some(), "{child}");
        }
    }

    #[test]
    fn without_an_exporter_spans_fall_back_to_a_child_of_the_parent() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let span = tracing::info_span!("work");
        let context = continue_in(&span, Some(parent));
        assert_eq!(trace_id(&context), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_ne!(context, parent);
    }

    #[test]
    fn remote_parents_keep_their_ids_and_flags() {
        let remote = remote_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
        assert_eq!(
            remote.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(remote.span_id().to_string(), "00f067aa0ba902b7");
        assert!(remote.is_sampled() && remote.is_remote());
        assert!(remote_context("00-abc").is_none());
    }

    #[tokio::test]
    async fn the_scope_is_visible_inside_only() {
        assert_eq!(current(), None);
        let inside = scope("00-abc".to_owned(), async { current() }).await;
        assert_eq!(inside.as_deref(), Some("00-abc"));
    }
}
