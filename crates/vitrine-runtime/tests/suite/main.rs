//! The integration tests of this crate, as one test binary: `cargo nextest run -p
//! vitrine-runtime --test suite <module>::` runs one module.

mod db;
