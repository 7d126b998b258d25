//! The integration tests of this crate, as one test binary: one link for all of them
//! instead of one per file. Each module is one concern; `cargo nextest run -p user-information
//! --test suite <module>::` runs one.

mod exactly_once;
mod store_conformance;
