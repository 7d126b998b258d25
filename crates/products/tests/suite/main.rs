//! The integration tests of this crate, as one test binary: one link for all of them
//! instead of one per file. Each module is one concern; `cargo nextest run -p products
//! --test suite <module>::` runs one.

mod cache;
mod oversell;
mod read_your_writes;
mod store_conformance;
