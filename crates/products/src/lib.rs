//! products: the catalog sellers list, its stock (a ledger that never oversells), and
//! reservations that hold stock for a while. Writes go to the primary database; reads may come
//! from a streaming replica or the cache, never older than a write the client names.

pub mod api;
pub mod app;
pub mod batches;
pub mod cache;
pub mod domain;
pub mod endpoints;
pub mod imports;
pub mod incoming;
pub mod ndjson;
pub mod outgoing;
pub mod service;
pub mod store;
pub mod webhooks;
pub mod work;

/// products as a process hosts it.
pub const SERVICE: app::Definition = app::Definition;
