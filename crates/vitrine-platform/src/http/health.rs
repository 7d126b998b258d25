//! `/health/live` (the process answers) and `/health/ready` (its dependencies answer).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

/// One dependency that must answer for the process to take traffic.
#[async_trait]
pub trait ReadinessCheck: Send + Sync {
    /// Short stable name shown in `/health/ready` (`database`, `secrets`, ...).
    fn name(&self) -> &'static str;
    /// `Err` carries a short reason, safe to show (no URLs, no credentials).
    async fn check(&self) -> Result<(), String>;
    /// Whether the process can serve without it. A failing optional dependency (a cache) is
    /// reported as `degraded` and keeps the process ready: taking every replica out of the
    /// load balancer because Redis is down would turn a slowdown into an outage.
    fn required(&self) -> bool {
        true
    }
}

/// The readiness checks of one process.
#[derive(Clone, Default)]
pub struct Health {
    checks: Vec<Arc<dyn ReadinessCheck>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.checks.iter().map(|c| c.name()))
            .finish()
    }
}

#[derive(Debug, Serialize)]
struct Report {
    status: &'static str,
    checks: BTreeMap<&'static str, String>,
}

impl Health {
    pub fn with(mut self, check: Arc<dyn ReadinessCheck>) -> Self {
        self.checks.push(check);
        self
    }

    pub fn router(self) -> Router {
        Router::new()
            .route(
                "/health/live",
                get(|| async { Json(serde_json::json!({"status": "ok"})) }),
            )
            .route("/health/ready", get(ready))
            .with_state(self)
    }
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

async fn ready(State(health): State<Health>) -> impl IntoResponse {
    let results = futures::future::join_all(health.checks.iter().map(|check| async move {
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(reason),
            Err(_) => Err("timed out".to_owned()),
        };
        (check.name(), check.required(), outcome)
    }))
    .await;
    let all_ok = results
        .iter()
        .all(|(_, required, outcome)| outcome.is_ok() || !required);
    let degraded = results.iter().any(|(_, _, outcome)| outcome.is_err());
    let checks = results
        .into_iter()
        .map(|(name, required, outcome)| {
            let word = if required { "down" } else { "degraded" };
            (
                name,
                outcome.map_or_else(|reason| format!("{word}: {reason}"), |()| "up".to_owned()),
            )
        })
        .collect();
    let (status, word) = match (all_ok, degraded) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (true, true) => (StatusCode::OK, "degraded"),
        (true, false) => (StatusCode::OK, "ready"),
    };
    (
        status,
        Json(Report {
            status: word,
            checks,
        }),
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    struct Fixed(&'static str, bool, bool);

    #[async_trait]
    impl ReadinessCheck for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        async fn check(&self) -> Result<(), String> {
            if self.1 {
                Ok(())
            } else {
                Err("unreachable".to_owned())
            }
        }
        fn required(&self) -> bool {
            self.2
        }
    }

    async fn ready_with(checks: Vec<Fixed>) -> (StatusCode, serde_json::Value) {
        let health = checks
            .into_iter()
            .fold(Health::default(), |h, c| h.with(Arc::new(c)));
        let response = health
            .router()
            .oneshot(Request::get("/health/ready").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn an_optional_dependency_down_degrades_but_stays_ready() {
        let (status, body) =
            ready_with(vec![Fixed("db", true, true), Fixed("cache", false, false)]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["checks"]["cache"], "degraded: unreachable");
        let (status, body) =
            ready_with(vec![Fixed("db", false, true), Fixed("cache", true, false)]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["checks"]["db"], "down: unreachable");
    }
}
