//! The messages products announces its changes with (contracts in `vitrine-contracts`). Stores
//! build them inside the write transaction from the state after a change and commit them to the
//! outbox with it, so an event exists exactly when its change does.

use vitrine_contracts::products as contract;
use vitrine_messaging::Envelope;
use vitrine_messaging::outbox::OutboxMessage;

use crate::domain::{Product, ProductStatus, Reservation, ReservationStatus};

pub use contract::StockCause;

fn envelope(kind: &str, subject: impl std::fmt::Display, data: &impl serde::Serialize) -> Envelope {
    Envelope::new(contract::SOURCE, kind, data)
        .expect("contract payloads serialise")
        .with_subject(subject.to_string())
        .with_traceparent(vitrine_platform::trace_context::current())
}

fn event(
    kind: &str,
    subject: impl std::fmt::Display,
    data: &impl serde::Serialize,
) -> OutboxMessage {
    OutboxMessage::event(contract::TOPIC, envelope(kind, subject, data))
}

fn status(status: ProductStatus) -> contract::ProductStatus {
    match status {
        ProductStatus::Active => contract::ProductStatus::Active,
        ProductStatus::Inactive => contract::ProductStatus::Inactive,
    }
}

fn catalog(product: &Product, changed: Vec<String>) -> contract::ProductChanged {
    let price = product.details.price.money();
    contract::ProductChanged {
        product_id: product.id.as_uuid(),
        seller_id: product.seller_id.as_uuid(),
        sku: product.sku.as_str().to_owned(),
        name: product.details.name.as_str().to_owned(),
        category: product
            .details
            .category
            .as_ref()
            .map(|c| c.as_str().to_owned()),
        price: contract::Price {
            amount: price.amount(),
            currency: price.currency().as_str().to_owned(),
        },
        status: status(product.status),
        changed,
        version: product.version,
    }
}

pub fn product_created(product: &Product) -> OutboxMessage {
    event(
        contract::PRODUCT_CREATED,
        product.id,
        &catalog(product, Vec::new()),
    )
}

/// `None` when no catalog field changed (a stock change is announced by [`stock_changed`]).
pub fn product_updated(before: &Product, after: &Product) -> Option<OutboxMessage> {
    let (old, new) = (&before.details, &after.details);
    let changed: Vec<String> = [
        ("name", old.name != new.name),
        ("description", old.description != new.description),
        ("category", old.category != new.category),
        ("price", old.price != new.price),
        ("status", before.status != after.status),
    ]
    .into_iter()
    .filter(|(_, differs)| *differs)
    .map(|(name, _)| name.to_owned())
    .collect();
    (!changed.is_empty()).then(|| {
        event(
            contract::PRODUCT_UPDATED,
            after.id,
            &catalog(after, changed),
        )
    })
}

pub fn product_deleted(product: &Product) -> OutboxMessage {
    event(
        contract::PRODUCT_DELETED,
        product.id,
        &contract::ProductDeleted {
            product_id: product.id.as_uuid(),
            seller_id: product.seller_id.as_uuid(),
            version: product.version,
        },
    )
}

pub fn stock_changed(product: &Product, cause: StockCause) -> OutboxMessage {
    event(
        contract::STOCK_CHANGED,
        product.id,
        &contract::StockChanged {
            product_id: product.id.as_uuid(),
            seller_id: product.seller_id.as_uuid(),
            on_hand: product.stock.on_hand,
            reserved: product.stock.reserved,
            available: product.stock.available(),
            cause,
            version: product.version,
        },
    )
}

/// The event of a reservation's current state (`created` while pending).
pub fn reservation_changed(reservation: &Reservation) -> OutboxMessage {
    let (kind, state) = match reservation.status {
        ReservationStatus::Pending => (
            contract::RESERVATION_CREATED,
            contract::ReservationStatus::Pending,
        ),
        ReservationStatus::Committed => (
            contract::RESERVATION_COMMITTED,
            contract::ReservationStatus::Committed,
        ),
        ReservationStatus::Released => (
            contract::RESERVATION_RELEASED,
            contract::ReservationStatus::Released,
        ),
        ReservationStatus::Expired => (
            contract::RESERVATION_EXPIRED,
            contract::ReservationStatus::Expired,
        ),
    };
    event(
        kind,
        reservation.id,
        &contract::ReservationChanged {
            reservation_id: reservation.id.as_uuid(),
            customer_id: reservation.buyer_id.map(|b| b.as_uuid()),
            status: state,
            items: reservation
                .items
                .iter()
                .map(|item| contract::ReservedItem {
                    product_id: item.product_id.as_uuid(),
                    quantity: item.quantity.get(),
                })
                .collect(),
            expires_at: reservation
                .expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        },
    )
}

pub fn webhook_attempts_exhausted(
    endpoint_id: uuid::Uuid,
    tenant: &str,
    message_id: uuid::Uuid,
) -> OutboxMessage {
    event(
        contract::WEBHOOK_ATTEMPTS_EXHAUSTED,
        endpoint_id,
        &contract::WebhookAttemptsExhausted {
            endpoint_id,
            tenant: tenant.to_owned(),
            message_id,
        },
    )
}

pub fn webhook_endpoint_disabled(
    endpoint_id: uuid::Uuid,
    tenant: &str,
    reason: &str,
) -> OutboxMessage {
    event(
        contract::WEBHOOK_ENDPOINT_DISABLED,
        endpoint_id,
        &contract::WebhookEndpointDisabled {
            endpoint_id,
            tenant: tenant.to_owned(),
            reason: reason.to_owned(),
        },
    )
}

/// A command to products' own work queue (not an event: nobody else subscribes to it).
fn command(
    kind: &str,
    subject: impl std::fmt::Display,
    data: &impl serde::Serialize,
) -> OutboxMessage {
    OutboxMessage::command(contract::WORK_QUEUE, envelope(kind, subject, data))
}

/// Part `part` of batch `batch_id` is due.
pub fn batch_part(batch_id: uuid::Uuid, part: u32) -> OutboxMessage {
    command(
        contract::BATCH_PART,
        batch_id,
        &contract::BatchPart { batch_id, part },
    )
}

/// Lines `first_line..=last_line` of import `import_id` are due.
pub fn import_chunk(import_id: uuid::Uuid, first_line: u32, last_line: u32) -> OutboxMessage {
    command(
        contract::IMPORT_CHUNK,
        import_id,
        &contract::ImportChunk {
            import_id,
            first_line,
            last_line,
        },
    )
}
