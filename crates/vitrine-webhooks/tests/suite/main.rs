//! The integration tests of this crate, as one test binary: one link for all of them
//! instead of one per file. Each module is one concern; `cargo nextest run -p vitrine-webhooks
//! --test suite <module>::` runs one.

mod attempts;
mod common;
mod concurrent_dispatch;
mod delivery_guard;
mod dispatcher;
mod standard_webhooks;
mod store_conformance;
