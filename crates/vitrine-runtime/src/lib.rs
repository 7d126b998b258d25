//! What every Vitrine crate runs on, below HTTP: database pools and the composition of
//! migrations from the libraries that own tables, periodic housekeeping, and the W3C trace
//! context that travels from a request through messages.

pub mod db;
pub mod migrations;
pub mod periodic;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod trace_context;
