//! W3C trace context (`traceparent`) carried from an HTTP request, through the outbox, into the
//! consumer that handles the resulting message, so one trace id ties the whole flow together.
//!
//! The current context lives in a task-local: the HTTP middleware (in `vitrine-platform`) sets it
//! for the request's task, consumers set it around each handler, and message builders read it
//! with [`current`].

use std::future::Future;

use rand::RngCore;

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

    #[tokio::test]
    async fn the_scope_is_visible_inside_only() {
        assert_eq!(current(), None);
        let inside = scope("00-abc".to_owned(), async { current() }).await;
        assert_eq!(inside.as_deref(), Some("00-abc"));
    }
}
