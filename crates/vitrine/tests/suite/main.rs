//! The integration tests of this crate, as one test binary: one link for all of them
//! instead of one per file. Each module is one concern; `cargo nextest run -p vitrine
//! --test suite <module>::` runs one.

mod analytics;
mod api;
mod binary;
mod coherence;
mod common;
mod degradation;
mod directory;
mod gateway;
mod messaging;
mod metabase;
mod openapi;
mod processes;
mod products;
mod traces;
