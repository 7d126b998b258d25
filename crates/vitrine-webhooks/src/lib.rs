//! Webhook delivery, shared by the services that send webhooks (products first).
//!
//! This crate holds what every delivery needs, whatever stores the endpoints and messages:
//! - [`secret`]: endpoint signing secrets (`whsec_...`), generated, parsed and never printed;
//! - [`signature`]: signing and verifying per the Standard Webhooks specification
//!   (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`);
//! - [`schedule`]: when a failed delivery is tried again (Svix's schedule by default);
//! - [`attempt`]: one signed delivery to one endpoint, and what its answer means;
//! - [`dispatcher`]: claims due deliveries, sends them and records each attempt;
//! - [`store`]: endpoints, messages (written with the change they announce), deliveries claimed
//!   under leases, and every attempt, on PostgreSQL and SQLite;
//! - [`address_policy`]: the SSRF guard. A webhook URL is chosen by a customer, so every address
//!   it resolves to is checked when the connection is made (not only at registration, so DNS
//!   rebinding cannot pass), and private, loopback, link-local, metadata and other special
//!   ranges are refused unless an operator allow-lists them.

pub mod address_policy;
pub mod attempt;
pub mod dispatcher;
pub mod housekeeping;
pub mod migrations;
pub mod schedule;
pub mod secret;
pub mod signature;
pub mod store;
