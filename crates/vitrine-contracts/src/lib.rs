//! The contracts between Vitrine services: what each publishes and answers, and under which
//! names. Services depend on this crate, never on each other.
//!
//! Payloads are versioned by their type name (`...v1`); a breaking change is a new type, published
//! next to the old one until every consumer has moved.

pub mod products;
pub mod user_information;
