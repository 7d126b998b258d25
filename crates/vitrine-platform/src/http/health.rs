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
        (check.name(), outcome)
    }))
    .await;
    let all_ok = results.iter().all(|(_, outcome)| outcome.is_ok());
    let checks = results
        .into_iter()
        .map(|(name, outcome)| {
            (
                name,
                outcome.map_or_else(|reason| format!("down: {reason}"), |()| "up".to_owned()),
            )
        })
        .collect();
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Report {
            status: if all_ok { "ready" } else { "unavailable" },
            checks,
        }),
    )
}
