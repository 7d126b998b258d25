//! The integration tests of this crate, as one test binary: one link for all of them
//! instead of one per file. Each module is one concern; `cargo nextest run -p vitrine-messaging
//! --test suite <module>::` runs one.

mod consumer;
mod local_transport;
mod outbox_quarantine;
mod relay_pace;
mod request_reply;
mod sqs_transport;
