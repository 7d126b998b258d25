//! The messages user-information announces its changes with (contracts in `vitrine-contracts`).
//! They are built inside the store's transaction from the state before and after a change, and
//! written to the outbox with it. None carries a secret.

use vitrine_contracts::user_information as contract;
use vitrine_messaging::Envelope;
use vitrine_messaging::outbox::OutboxMessage;

use crate::domain::{Customer, CustomerStatus, MaskedInstrument, PaymentMethod};

fn status(status: CustomerStatus) -> contract::CustomerStatus {
    match status {
        CustomerStatus::Active => contract::CustomerStatus::Active,
        CustomerStatus::Suspended => contract::CustomerStatus::Suspended,
        CustomerStatus::Closed => contract::CustomerStatus::Closed,
    }
}

fn event(
    kind: &str,
    subject: impl std::fmt::Display,
    data: &impl serde::Serialize,
) -> OutboxMessage {
    let envelope = Envelope::new(contract::SOURCE, kind, data)
        .expect("contract payloads serialise")
        .with_subject(subject.to_string())
        .with_traceparent(vitrine_platform::trace_context::current());
    OutboxMessage::event(contract::TOPIC, envelope)
}

/// What a change to a customer announces: registration, field updates, status transitions.
pub fn customer_changed(before: Option<&Customer>, after: &Customer) -> Vec<OutboxMessage> {
    let id = after.id.as_uuid();
    let Some(before) = before else {
        return vec![event(
            contract::CUSTOMER_REGISTERED,
            after.id,
            &contract::CustomerRegistered {
                customer_id: id,
                cnpj: after.details.cnpj.as_str().to_owned(),
                legal_name: after.details.legal_name.as_str().to_owned(),
                status: status(after.status),
                version: after.version,
            },
        )];
    };
    let (old, new) = (&before.details, &after.details);
    let changed: Vec<String> = [
        ("cnpj", old.cnpj != new.cnpj),
        ("legal_name", old.legal_name != new.legal_name),
        ("trade_name", old.trade_name != new.trade_name),
        ("email", old.email != new.email),
        ("phone", old.phone != new.phone),
        ("address", old.address != new.address),
    ]
    .into_iter()
    .filter(|(_, differs)| *differs)
    .map(|(name, _)| name.to_owned())
    .collect();
    let mut messages = Vec::new();
    if !changed.is_empty() {
        messages.push(event(
            contract::CUSTOMER_UPDATED,
            after.id,
            &contract::CustomerUpdated {
                customer_id: id,
                changed,
                version: after.version,
            },
        ));
    }
    if before.status != after.status {
        messages.push(event(
            contract::CUSTOMER_STATUS_CHANGED,
            after.id,
            &contract::CustomerStatusChanged {
                customer_id: id,
                from: status(before.status),
                to: status(after.status),
                version: after.version,
            },
        ));
    }
    messages
}

pub fn payment_method_added(method: &PaymentMethod) -> OutboxMessage {
    let kind = match method.instrument {
        MaskedInstrument::Card { .. } => contract::PaymentMethodType::Card,
        MaskedInstrument::Pix { .. } => contract::PaymentMethodType::Pix,
    };
    event(
        contract::PAYMENT_METHOD_ADDED,
        method.customer_id,
        &contract::PaymentMethodAdded {
            customer_id: method.customer_id.as_uuid(),
            payment_method_id: method.id.as_uuid(),
            kind,
        },
    )
}

pub fn payment_method_removed(method: &PaymentMethod) -> OutboxMessage {
    event(
        contract::PAYMENT_METHOD_REMOVED,
        method.customer_id,
        &contract::PaymentMethodRemoved {
            customer_id: method.customer_id.as_uuid(),
            payment_method_id: method.id.as_uuid(),
        },
    )
}
