//! Prometheus metrics: one global recorder, rendered at `/metrics`, and per-route HTTP counters.

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock, RwLock};

use axum::Router;
use axum::http::{Method, StatusCode};
use axum::routing::get;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder (installed on first use; several apps in one test process share it).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("http_request_duration_seconds".to_owned()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            )
            .expect("static bucket list is valid")
            .install_recorder()
            .expect("no other metrics recorder is installed")
    })
}

pub fn router() -> Router {
    handle();
    Router::new().route("/metrics", get(|| async { handle().render() }))
}

/// One route, method and status's series.
type Series = (Method, StatusCode, Counter, Histogram);

/// Records a request in its series, registered on its first request: a `counter!` with labels
/// builds, hashes and looks up its key on every call, which costs more than the count.
pub(crate) fn record(route: &str, method: &Method, status: StatusCode, seconds: f64) {
    static SERIES: LazyLock<RwLock<HashMap<String, Vec<Series>>>> = LazyLock::new(RwLock::default);
    // Handles taken before the recorder exists would count nowhere, for ever.
    handle();
    let known = SERIES
        .read()
        .expect("the series lock is never poisoned")
        .get(route)
        .and_then(|series| {
            series
                .iter()
                .find(|(m, s, ..)| m == method && *s == status)
                .map(|(_, _, counter, histogram)| (counter.clone(), histogram.clone()))
        });
    let (counter, histogram) = match known {
        Some(handles) => handles,
        None => {
            let labels = [
                ("method", method.as_str().to_owned()),
                ("route", route.to_owned()),
                ("status", status.as_u16().to_string()),
            ];
            let counter = metrics::counter!("http_requests_total", &labels);
            let histogram = metrics::histogram!("http_request_duration_seconds", &labels);
            SERIES
                .write()
                .expect("the series lock is never poisoned")
                .entry(route.to_owned())
                .or_default()
                .push((method.clone(), status, counter.clone(), histogram.clone()));
            (counter, histogram)
        }
    };
    counter.increment(1);
    histogram.record(seconds);
}
