//! user-information: business customers (CNPJ, names, address, contacts) and their payment
//! methods, whose secrets live only in the `SecretStore`.

pub mod api;
pub mod app;
pub mod domain;
pub mod incoming;
pub mod outgoing;
pub mod service;
pub mod store;

/// user-information as a process hosts it.
pub const SERVICE: app::Definition = app::Definition;
