//! Plumbing every Vitrine service shares: configuration, telemetry, the HTTP conventions of
//! API.md (problem+json, JSON extraction, idempotency, ETags, auth, health, metrics), database
//! pools, and the secret store port with its local adapter.

pub mod cache;
pub mod config;
pub mod db;
pub mod http;
pub mod keyfile;
pub mod periodic;
pub mod secrets;
pub mod server;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod trace_context;

pub use config::{DirectoryKind, Mode, Settings, TransportKind};
