//! Plumbing every Vitrine service shares: configuration, telemetry, the HTTP conventions of
//! API.md (problem+json, JSON extraction, idempotency, ETags, auth, health, metrics), the
//! tables those conventions own (`migrations`), and the secret store port with its local
//! adapter. Database pools and periodic housekeeping are `vitrine-runtime`'s, re-exported.

pub mod backends;
pub mod cache;
pub mod config;
pub mod http;
pub mod keyfile;
pub mod migrations;
pub mod requirements;
pub mod secrets;
pub mod server;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod trace_context;

pub use config::{DirectoryKind, Mode, Settings, TransportKind};
pub use vitrine_runtime::{db, periodic};
